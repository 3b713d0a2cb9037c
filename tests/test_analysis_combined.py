"""One report over several experiments (``analysis.combined``, ``lamo-analysis report --experiment A
--experiment B``), against an MLflow store written with the orchestrator's own tracking code (parent run,
``TrialRun`` children) with known scores: experiment ``sparse-x`` holds Reacher2d trials, ``mujoco-x``
Hopper trials plus one trial whose config is also in ``sparse-x`` (counted once)."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli import app
from analysis.combined import experiment_dirname, label_shared, write_combined_report
from orchestrator import tracking
from trainers import contract
from trainers.config import TrialConfig
from trainers.tasks import get_task

SPARSE, MUJOCO = "sparse-x", "mujoco/x"  # a "/" as MLflow allows: its directory is mujoco_x
BASE = {("reacher2d-medium", "lamo"): 30.0, ("reacher2d-medium", "dt"): 10.0,
        ("hopper-medium", "lamo"): 60.0, ("hopper-medium", "dt"): 50.0}
SEEDS = (0, 1)  # score = base + 2·seed at the best target: cell mean base + 1
LAMO = {"lm": "gpt2", "init": "pretrained", "embedding": "mlp", "finetune": "lora"}
DT = {"lm": None, "init": "random", "embedding": "linear", "finetune": "full"}


def _cfg(task: str, variant: str, seed: int) -> TrialConfig:
    return TrialConfig(task=task, seed=seed, variant=variant, model=LAMO if variant == "lamo" else DT,
                       language={"weight": 0.1 if variant == "lamo" else 0.0}, train={"steps": 20},
                       eval={"every_steps": 20})


def _log(uri: str, experiment: str, cfgs: list[TrialConfig], root, shift: float = 0.0) -> None:
    exp_id = tracking.ensure_experiment(uri, experiment, root / "artifacts")
    parent = tracking.start_parent_run(uri, exp_id, experiment, None, cfgs, 0)
    for cfg in cfgs:
        run = tracking.TrialRun.open(uri, exp_id, parent, cfg)
        score = BASE[(cfg.task, cfg.variant)] + 2 * cfg.seed + shift
        targets = sorted(get_task(cfg.task).rtg_targets, reverse=True)
        metrics = {contract.TRAIN_ACTION_LOSS: 0.1}
        for i, t in enumerate(targets):  # the largest target is the best one
            metrics[contract.eval_key(t, "normalised_score")] = score - 5 * i
            metrics[contract.eval_key(t, "return_mean")] = (score - 5 * i) * 10
        run.log_metrics(20, metrics)
        run.finish("FINISHED")
    tracking.finish_parent_run(uri, parent, finished=len(cfgs), failed=0, skipped=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_uri):
    root = tmp_path_factory.mktemp("combined")
    uri = new_sqlite_uri(root)
    _log(uri, SPARSE, [_cfg("reacher2d-medium", v, s) for v in ("lamo", "dt") for s in SEEDS], root)
    # the same Reacher2d config once more in the second experiment, 40 points higher: must not count twice
    _log(uri, MUJOCO, [_cfg("hopper-medium", v, s) for v in ("lamo", "dt") for s in SEEDS], root)
    _log(uri, MUJOCO, [_cfg("reacher2d-medium", "lamo", 0)], root, shift=40.0)
    return uri


def test_each_experiment_its_tables_and_figure_1_over_all(store, tmp_path):
    paths = write_combined_report(store, [SPARSE, MUJOCO], tmp_path, parts=("tables", "figures"))
    assert experiment_dirname(MUJOCO) == "mujoco_x"
    for d, has, lacks in (("sparse-x", "reacher2d", "hopper"), ("mujoco_x", "hopper", None)):
        table = (tmp_path / "experiments" / d / "table.md").read_text()
        assert has in table and (lacks is None or lacks not in table)
    assert (tmp_path / "experiments" / "mujoco_x" / "table_dense.md").is_file()
    assert not (tmp_path / "experiments" / "sparse-x" / "table_dense.md").exists()  # Reacher2d only there
    scores = pd.read_csv(paths["scores.csv"])
    assert len(scores) == 8 and scores.groupby("experiment").size().to_dict() == {SPARSE: 4, MUJOCO: 4}
    avg = pd.read_csv(paths["domain_averages.csv"]).set_index(["domain", "method"])
    expected = {("Reacher2d", "lamo"): 31.0, ("Reacher2d", "dt"): 11.0, ("MuJoCo", "lamo"): 61.0,
                ("MuJoCo", "dt"): 51.0}
    assert {k: round(v, 6) for k, v in avg["mean"].to_dict().items()} == expected
    assert avg.loc[("Reacher2d", "lamo"), "experiments"] == SPARSE
    assert avg.loc[("MuJoCo", "dt"), "experiments"] == MUJOCO
    assert paths["domain_bars.png"].stat().st_size > 1000 and paths["domain_bars.pdf"].is_file()
    index = paths["report.md"].read_text()
    assert "[experiments/mujoco_x/report.md](experiments/mujoco_x/report.md)" in index
    assert "| MuJoCo | lamo | 61.0 | 1/1 |" in index
    assert "1 trial(s) whose config hash is also in an earlier experiment counted once" in index


def test_cli_report_over_two_experiments_and_its_errors(store, tmp_path):
    runner = CliRunner()
    base = ["--tracking-uri", store, "--experiment", SPARSE, "--experiment", MUJOCO]
    res = runner.invoke(app, ["report", *base, "--out", str(tmp_path / "r"), "--reps", "50", "--poi-reps", "20"])
    assert res.exit_code == 0, res.output
    assert {"report.md", "scores.csv", "domain_averages.csv", "domain_bars.png"} <= {
        p.name for p in (tmp_path / "r").iterdir()}
    for d in ("sparse-x", "mujoco_x"):  # the full report of each, rliable and claims included
        assert {"report.md", "claims.md", "rliable_aggregates.csv"} <= {
            p.name for p in (tmp_path / "r" / "experiments" / d).iterdir()}
    assert "Figure 1" in res.output
    res = runner.invoke(app, ["export", *base, "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "reads one experiment" in res.output
    res = runner.invoke(app, ["figures", *base, "--out", str(tmp_path / "p"), "--parent-run-id", "abc"])
    assert res.exit_code == 2 and "--parent-run-id" in res.output
    res = runner.invoke(app, ["figures", *base, "--experiment", "nope", "--out", str(tmp_path / "n")])
    assert res.exit_code == 2 and "'nope'" in res.output and "not found" in res.output
    with pytest.raises(ValueError, match="at least two"):
        write_combined_report(store, [SPARSE], tmp_path / "one")


def test_learning_curves_of_every_experiment_in_one_figure(store, tmp_path):
    paths = write_combined_report(store, [SPARSE, MUJOCO], tmp_path, parts=("tables", "figures"))
    assert paths["learning_curves.png"].stat().st_size > 1000 and paths["learning_curves.pdf"].is_file()
    assert "learning_curves.png" in paths["report.md"].read_text()


def test_a_method_two_experiments_have_in_one_cell_gets_a_line_each():
    sel = pd.DataFrame({"task": ["hopper-medium"] * 3 + ["reacher2d-medium"], "sample_ratio": [0.01] * 4,
                        "variant": ["dt", "dt", "lamo", "dt"], "experiment": ["a", "b", "a", "a"]})
    assert label_shared(sel)["variant"].tolist() == ["DT [a]", "DT [b]", "lamo", "dt"]
    assert sel["variant"].tolist() == ["dt", "dt", "lamo", "dt"]  # a copy: the scores keep their labels


def test_legend_columns_shrink_for_long_labels():
    from analysis.figures import _legend_columns

    assert _legend_columns(["LaMo", "DT"], 7.0, 6) == 2
    assert _legend_columns(["DT [pretrained_lm_kitchen_dt_long_cpu]"] * 4, 7.0, 6) == 2
    assert _legend_columns(["x" * 200], 7.0, 6) == 1
