"""What a sweep leaves on a real tracking server (scripts/tracking_server.sh: PostgreSQL + ``mlflow server``
with proxied artifacts), read back through the REST API the MLflow UI itself calls (``/ajax-api/2.0/...``
and ``/get-artifact``): runs, params, metrics, tags, the dataset input and the artifacts.

The sweep gets its tracking URI from ``MLFLOW_TRACKING_URI`` only (no flag, nothing in the sweep file) and
MLflow's system metrics through MLflow's own switch, so both reach the trial's Ray worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from orchestrator.schema import Sweep
from trainers import contract as C


def _get(base: str, endpoint: str, **query) -> dict:
    url = f"{base}{endpoint}?{urllib.parse.urlencode(query)}" if query else f"{base}{endpoint}"
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - loopback test server
        return json.loads(r.read())


def _post(base: str, endpoint: str, body: dict) -> dict:
    req = urllib.request.Request(f"{base}{endpoint}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
        return json.loads(r.read())


def _files(base: str, run_id: str, path: str) -> set[str]:
    return {f["path"] for f in _get(base, "/ajax-api/2.0/mlflow/artifacts/list", run_id=run_id, path=path)
            .get("files", [])}


@pytest.mark.slow(reason="tracking server (~15 s) + a one-trial Ray sweep with its report (~1-2 min)")
def test_a_sweep_is_readable_in_the_mlflow_ui(tracking_server, tmp_path, make_sweep):
    base = tracking_server["uri"]
    sweep_file = make_sweep(tmp_path, "ui", ratios="1.0", steps=40, every=40)
    sweep_file.write_text(sweep_file.read_text() + "description: LaMo vs DT on Reacher2d, UI check\n")
    sweep = Sweep.load(sweep_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=base, MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="true",
               MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1")
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep_file), "--log-checkpoints"],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert f"tracking URI from $MLFLOW_TRACKING_URI: {base}" in r.stdout
    from mlflow.tracking import MlflowClient  # the sweep's default store (an empty one is there) stays unused

    assert MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}").get_experiment_by_name("ui") is None

    exp = _get(base, "/ajax-api/2.0/mlflow/experiments/get-by-name", experiment_name="ui")["experiment"]
    runs = _post(base, "/ajax-api/2.0/mlflow/runs/search",
                 {"experiment_ids": [exp["experiment_id"]], "max_results": 50})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    parents = [r for r in runs if tags[r["info"]["run_id"]][C.ROLE] == C.ROLE_SWEEP]
    children = [r for r in runs if tags[r["info"]["run_id"]][C.ROLE] == C.ROLE_TRIAL]
    assert len(parents) == 1 and len(children) == 1
    parent, child = parents[0]["info"]["run_id"], children[0]["info"]["run_id"]

    # the parent: its description, counts, and the sweep file, resolved trials and report as artifacts
    assert tags[parent][C.NOTE] == "LaMo vs DT on Reacher2d, UI check"
    assert {m["key"]: m["value"] for m in parents[0]["data"]["metrics"]}["trials_finished"] == 1
    assert {"ui.yaml", C.RESOLVED_TRIALS_ARTIFACT, C.REPORT_ARTIFACT_DIR} <= _files(base, parent, "")
    report = _files(base, parent, C.REPORT_ARTIFACT_DIR)
    assert {"analysis/table.md", "analysis/scores.csv", "analysis/claims.md"} <= report, report
    assert any(p.endswith(".png") for p in report), report
    with urllib.request.urlopen(f"{base}/get-artifact?" + urllib.parse.urlencode(  # noqa: S310
            {"path": "analysis/table.md", "run_uuid": parent}), timeout=30) as resp:
        assert "reacher2d" in resp.read().decode()

    # the child: nested under the parent, params, metrics with steps, tags, dataset, system metrics, checkpoint
    got = _get(base, "/ajax-api/2.0/mlflow/runs/get", run_id=child)["run"]
    ctags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    trial = sweep.trials[0]
    assert ctags[C.PARENT_RUN] == parent and ctags[C.CONFIG_HASH] == trial.config_hash()
    assert ctags[C.ATTEMPT] == "1"
    record = json.loads(ctags[C.attempt_tag(1)])
    assert record["parent_run_id"] == parent and record["resumed_at_step"] == 0
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    assert params["train.steps"] == "40" and params["sample_ratio"] == "1.0"
    metrics = {m["key"] for m in got["data"]["metrics"]}
    assert C.TRAIN_ACTION_LOSS in metrics and C.EVAL_BEST_SCORE in metrics
    assert any(k.startswith("system/cpu_utilization") for k in metrics), sorted(metrics)
    hist = _get(base, "/ajax-api/2.0/mlflow/metrics/get-history", run_id=child, metric_key=C.TRAIN_ACTION_LOSS)
    assert sorted(int(m["step"]) for m in hist["metrics"]) == [10, 20, 30, 40]
    (ds,) = got["inputs"]["dataset_inputs"]
    assert ds["dataset"]["digest"] == ctags[C.DATA_SUBSET_HASH]
    assert ds["dataset"]["name"] == C.dataset_name(trial.task, trial.sample_ratio)
    from trainers.paths import trial_dataset_path

    assert json.loads(ds["dataset"]["source"]) == {"uri": trial_dataset_path(trial, tmp_path / "data").resolve().as_uri()}
    assert ctags[C.CHECKPOINT_LOCATION].startswith("file://") and ctags[C.CHECKPOINT_LOCATION].endswith("/checkpoint")
    assert _files(base, child, C.CHECKPOINT_ARTIFACT_DIR) == {"checkpoint/state.pt"}
