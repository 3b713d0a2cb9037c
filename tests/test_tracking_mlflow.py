"""MLflow as MLflow users expect it, without a server or Ray: where the store is (flag, sweep file,
``MLFLOW_TRACKING_URI``, default), every scheme MLflow accepts passed through, the variables forwarded to
Ray workers, ``lamo-analysis`` failing fast on a store that is not there, and what a child run carries
(dataset input, attempts, checkpoint, system metrics) and a parent run (description, report).
The same against a real tracking server, read through the REST API the UI uses: tests/test_tracking_ui.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import tracking
from orchestrator.schema import Sweep, tracking_store_schemes, tracking_uri_problem
from trainers import contract as C
from trainers.config import TrialConfig

SWEEP = """
name: where
storage: {storage}
{tracking}
variants: {{dt: {{preset: dt}}}}
grid: {{task: [reacher2d-medium], sample_ratio: [1.0], seed: [0]}}
"""


def _sweep(tmp_path: Path, tracking_line: str = "") -> Path:
    p = tmp_path / "where.yaml"
    p.write_text(SWEEP.format(storage=tmp_path / "runs", tracking=tracking_line))
    return p


# --- where the store is ------------------------------------------------------------------------------
def test_tracking_uri_order_flag_then_sweep_then_env_then_default(tmp_path, monkeypatch):
    """The order of ``run_sweep`` (``tracking_uri or sweep.spec.tracking.uri``, then the resolution)."""
    storage = tmp_path / "runs"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env-server:5000")
    sweep = Sweep.load(_sweep(tmp_path, "tracking: {uri: 'http://sweep-server:5000'}"))
    assert tracking.resolve_tracking_uri("http://flag:5000" or sweep.spec.tracking.uri, storage) == "http://flag:5000"
    assert tracking.resolve_tracking_uri(None or sweep.spec.tracking.uri, storage) == "http://sweep-server:5000"
    assert tracking.resolve_tracking_uri(None, storage) == "http://env-server:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.resolve_tracking_uri(None, storage) == f"sqlite:///{storage.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # set but empty: as if unset
    assert tracking.resolve_tracking_uri(None, storage) == f"sqlite:///{storage.resolve() / 'mlflow.db'}"


@pytest.mark.parametrize("uri", ["databricks", "databricks://my-profile", "http://127.0.0.1:5000",
                                 "https://mlflow.example.org/prefix", "postgresql+psycopg2://u@db:5432/mlflow",
                                 "mysql+pymysql://u@db/mlflow", "mssql+pyodbc://u@db/mlflow", "sqlite:////abs/mlflow.db"])
def test_every_scheme_mlflow_accepts_passes_through_unchanged(uri, tmp_path):
    assert tracking_uri_problem(uri) is None
    assert tracking.resolve_tracking_uri(uri, tmp_path) == uri


def test_only_paths_become_sqlite_and_relative_sqlite_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_tracking_uri("runs/mlflow.db", "x") == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert tracking.resolve_tracking_uri("sqlite:///rel.db", "x") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert C.uri_scheme("databricks") == "databricks" and C.uri_scheme("C:/runs/mlflow.db") == ""


def test_our_scheme_list_is_mlflows_own():
    """:data:`orchestrator.schema._URI_SCHEMES` = the schemes MLflow registers itself, less the file store
    (allowed only with MLFLOW_ALLOW_FILE_STORE), the bare path ("") and the Unity Catalog registry names."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    mlflow_schemes = set(_tracking_store_registry._registry)
    assert tracking_store_schemes() | {"", "file", "databricks-uc", "uc"} == mlflow_schemes


def test_refused_uris_say_why(monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert "MLFLOW_ALLOW_FILE_STORE" in tracking_uri_problem("file:///tmp/mlruns")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's own opt-in: then it is accepted
    assert tracking_uri_problem("file:///tmp/mlruns") is None
    assert "plugin" in tracking_uri_problem("nosuchscheme://x")
    assert "Unity Catalog" in tracking_uri_problem("databricks-uc")
    assert "no host" in tracking_uri_problem("http://")


def test_a_bad_mlflow_tracking_uri_variable_is_a_flag_error(tmp_path, monkeypatch):
    from orchestrator.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://x")
    res = CliRunner().invoke(app, [str(_sweep(tmp_path)), "--dry-run"])
    assert res.exit_code == 2 and "MLFLOW_TRACKING_URI" in res.output and "nosuchscheme" in res.output
    # a flag or the sweep file wins over the variable: then it is not looked at
    res = CliRunner().invoke(app, [str(_sweep(tmp_path)), "--dry-run", "--tracking-uri", "http://127.0.0.1:5000"])
    assert res.exit_code == 0, res.output


def test_mlflow_variables_are_forwarded_to_ray_workers(monkeypatch):
    env = {"MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_TRACKING_USERNAME": "u", "DATABRICKS_HOST": "h",
           "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "no"}
    assert tracking.forwarded_env(env) == {"MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_TRACKING_USERNAME": "u",
                                           "DATABRICKS_HOST": "h"}
    # _ray_session passes them as the job's runtime_env, merged with what the caller gave
    import ray

    from orchestrator.sweep import _ray_session

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "secret")
    with _ray_session("127.0.0.1:1", {"runtime_env": {"env_vars": {"OTHER": "1"}}}):
        pass
    assert seen["address"] == "127.0.0.1:1"
    assert seen["runtime_env"]["env_vars"]["MLFLOW_TRACKING_TOKEN"] == "secret"
    assert seen["runtime_env"]["env_vars"]["OTHER"] == "1"


# --- lamo-analysis: same order, fast failure -----------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_analysis_fails_within_seconds_on_an_unreachable_server(tmp_path, monkeypatch):
    from analysis.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dead = f"http://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["report", "--tracking-uri", dead, "--experiment", "x", "--out", str(tmp_path)])
    took = time.perf_counter() - t0
    assert res.exit_code == 3 and "not reachable" in res.output and "--tracking-uri" in res.output, res.output
    assert took < 10, took
    # the variable when there is no flag (and the flag over the variable)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    res = CliRunner().invoke(app, ["export", "--experiment", "x", "--out", str(tmp_path)])
    assert res.exit_code == 3 and dead in res.output and "$MLFLOW_TRACKING_URI" in res.output, res.output
    res = CliRunner().invoke(app, ["export", "--tracking-uri", str(tmp_path / "none.db"), "--experiment", "x",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 3 and "no MLflow store" in res.output and "none.db" in res.output
    assert not (tmp_path / "none.db").exists()  # reading never creates a store


def test_analysis_default_store_is_lamo_runs_of_the_working_directory(tmp_path, monkeypatch, new_sqlite_uri):
    from analysis.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["export", "--experiment", "x", "--out", "out"])
    assert res.exit_code == 3 and str(tmp_path / "lamo_runs" / "mlflow.db") in res.output
    (tmp_path / "lamo_runs").mkdir()
    new_sqlite_uri(tmp_path / "lamo_runs")
    res = CliRunner().invoke(app, ["export", "--experiment", "x", "--out", "out"])
    assert "no MLflow store" not in res.output and "not found" in res.output  # found the store, not the experiment


def test_help_texts_carry_no_docstring_markup():
    from analysis.cli import app as analysis_app
    from orchestrator.cli import app as sweep_app
    from orchestrator.trial_cli import app as trial_app

    runner = CliRunner()
    for app, commands in ((sweep_app, [[]]), (trial_app, [[], ["run"], ["prepare"], ["fetch"]]),
                          (analysis_app, [[], ["report"], ["tables"], ["export"], ["rules"], ["claims"]])):
        for cmd in commands:
            res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
            assert res.exit_code == 0, res.output
            for mark in ("``", ":func:", ":class:", ":data:", ":meth:", ":mod:"):
                assert mark not in res.output, (cmd, mark, res.output)


# --- what the runs carry ---------------------------------------------------------------------------------
def _cfg(**kw) -> TrialConfig:
    return TrialConfig(task="reacher2d-medium", sample_ratio=0.5, seed=0, variant="dt", **kw)


def test_child_run_dataset_attempts_and_checkpoint(tmp_path, new_sqlite_uri):
    from mlflow.tracking import MlflowClient

    uri = new_sqlite_uri(tmp_path)
    exp = tracking.ensure_experiment(uri, "carry", tmp_path / "art")
    p1 = tracking.start_parent_run(uri, exp, "carry", None, [_cfg()], 0, description="  what this sweep asks  ")
    p2 = tracking.start_parent_run(uri, exp, "carry", None, [_cfg()], 0)
    c = MlflowClient(uri)
    assert c.get_run(p1).data.tags[C.NOTE] == "what this sweep asks" and C.NOTE not in c.get_run(p2).data.tags

    run = tracking.TrialRun.open(uri, exp, p1, _cfg())
    data = tmp_path / "reacher2d-medium.hdf5"
    data.write_bytes(b"not read")
    for _ in range(2):  # a resumed attempt logs it again: still one input
        run.log_dataset(_cfg(), "abc123", data, {"n_trajectories": 10.0})
    run.set_tags(run.attempt_tags(resumed_at_step=0))
    inputs = c.get_run(run.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert (ds.name, ds.digest, ds.source_type) == ("reacher2d-medium@0.5", "abc123", "local")
    assert json.loads(ds.source) == {"uri": data.resolve().as_uri()}
    assert json.loads(ds.profile) == {"n_trajectories": 10.0}
    assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "training")]

    # the trial dies (run FAILED); the next invocation's parent reopens it: attempt 2, resumed at step 20
    run.finish("FAILED")
    again = tracking.TrialRun.open(uri, exp, p2, _cfg())
    assert again.run_id == run.run_id and again.attempt == 2
    again.set_tags(again.attempt_tags(resumed_at_step=20))
    tags = c.get_run(run.run_id).data.tags
    assert tags[C.ATTEMPT] == "2" and tags[C.LAST_PARENT_RUN] == p2 and tags[C.PARENT_RUN] == p1
    first, second = json.loads(tags[C.attempt_tag(1)]), json.loads(tags[C.attempt_tag(2)])
    assert (first["parent_run_id"], first["resumed_at_step"]) == (p1, 0)
    assert (second["parent_run_id"], second["resumed_at_step"]) == (p2, 20)

    ckpt = tmp_path / "trial" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "state.pt").write_bytes(b"weights")
    again.log_checkpoint(ckpt)
    assert c.get_run(run.run_id).data.tags[C.CHECKPOINT_LOCATION] == ckpt.resolve().as_uri()
    assert c.list_artifacts(run.run_id, C.CHECKPOINT_ARTIFACT_DIR) == []  # location only, by default
    again.log_checkpoint(ckpt, upload=True)
    assert [a.path for a in c.list_artifacts(run.run_id, C.CHECKPOINT_ARTIFACT_DIR)] == ["checkpoint/state.pt"]

    report = tmp_path / "report"
    (report / "figs").mkdir(parents=True)
    (report / "table.md").write_text("| a |\n")
    (report / "figs" / "f.png").write_bytes(b"png")
    tracking.log_report(uri, p1, report)
    assert sorted(a.path for a in c.list_artifacts(p1, C.REPORT_ARTIFACT_DIR)) == ["analysis/figs", "analysis/table.md"]


def test_reporter_delivers_dataset_and_attempt_record(tmp_path, new_sqlite_uri):
    """The trial's reporter turns ``start``'s facts into the dataset input and the attempt's
    ``resumed_at_step``, delivered with the next flush."""
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep import _MlflowTuneReporter
    from trainers.paths import trial_dataset_path

    uri = new_sqlite_uri(tmp_path)
    exp = tracking.ensure_experiment(uri, "rep", tmp_path / "art")
    parent = tracking.start_parent_run(uri, exp, "rep", None, [_cfg()], 0)
    run = tracking.TrialRun.open(uri, exp, parent, _cfg())
    path = trial_dataset_path(_cfg(), tmp_path / "data")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    rep = _MlflowTuneReporter(run, wait_s=0, data_dir=tmp_path / "data")
    rep.start(_cfg(), {C.DATA_SUBSET_HASH: "d1g3st", C.DEVICE: "cpu", C.DATA_SOURCE: "collected",
                       "data/n_trajectories": 6.0, "resumed_at_step": 40})
    rep.flush(wait=True)
    r = MlflowClient(uri).get_run(run.run_id)
    assert [(i.dataset.digest, json.loads(i.dataset.source)["uri"]) for i in r.inputs.dataset_inputs] == \
        [("d1g3st", path.resolve().as_uri())]
    assert json.loads(r.data.tags[C.attempt_tag(1)])["resumed_at_step"] == 40


def test_system_metrics_when_mlflow_switch_is_on(tmp_path, new_sqlite_uri, monkeypatch):
    """MLflow's own monitor, only when ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` is on; a second attempt
    continues its steps (no (key, step) twice)."""
    from mlflow.tracking import MlflowClient

    uri = new_sqlite_uri(tmp_path)
    exp = tracking.ensure_experiment(uri, "sys", tmp_path / "art")
    parent = tracking.start_parent_run(uri, exp, "sys", None, [_cfg()], 0)
    run = tracking.TrialRun.open(uri, exp, parent, _cfg())
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    assert run.system_metrics() is None
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    c = MlflowClient(uri)
    for _ in range(2):
        mon = run.system_metrics()
        deadline = time.time() + 20
        n = len(c.get_metric_history(run.run_id, "system/cpu_utilization_percentage"))
        while len(c.get_metric_history(run.run_id, "system/cpu_utilization_percentage")) < n + 2:
            assert time.time() < deadline, "no system metrics logged"
            time.sleep(0.2)
        mon.finish()
    steps = [m.step for m in c.get_metric_history(run.run_id, "system/cpu_utilization_percentage")]
    assert len(steps) >= 4 and len(steps) == len(set(steps)), steps
