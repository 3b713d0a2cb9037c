"""Tests for the analysis package against a real sqlite MLflow store with known values."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from analysis import runs as runs_mod
from analysis import stats
from analysis.cli import app
from analysis.report import markdown_table, plot_score_vs_ratio, score_table, write_report
from analysis.runs import BASE_COLUMNS, load_trial_runs
from analysis.select import SelectionRule, select_scores
from trainers import contract

ROOT = Path(__file__).resolve().parents[1]
EXP = "lamo/test"
STEPS = (2500, 5000)
TARGETS = {"hopper": (3600.0, 1800.0), "reacher2d": (76.0, 40.0)}
# Cell offsets; trial score pattern per run (base = offset + 10*seed), targets (high, low):
#   high: step 2500 -> base+30, step 5000 -> base+20;  low: 2500 -> base+5, 5000 -> base+25
OFFSET = {("hopper", 0.01, "dt"): 10, ("hopper", 0.1, "dt"): 20, ("hopper", 0.01, "lamo"): 15,
          ("hopper", 0.1, "lamo"): 40, ("reacher2d", 1.0, "lamo"): 50}
SEEDS = {("hopper", 0.01, "dt"): (0, 1, 2), ("hopper", 0.1, "dt"): (0, 1), ("hopper", 0.01, "lamo"): (0, 1, 2),
         ("hopper", 0.1, "lamo"): (0, 1, 2), ("reacher2d", 1.0, "lamo"): (0,)}
N_MAIN = sum(len(s) for s in SEEDS.values())  # 12 finished trials under the main sweep


def pattern(base: float) -> dict[tuple[int, int], float]:
    """(target index, step) -> normalised score; index 0 = largest target."""
    return {(0, 2500): base + 30, (0, 5000): base + 20, (1, 2500): base + 5, (1, 5000): base + 25}


def make_trial(client, exp_id, parent, task, ratio, variant, seed, status="FINISHED", scores=None, steps=STEPS):
    tags = {contract.ROLE: contract.ROLE_TRIAL, contract.PARENT_RUN: parent,
            **contract.axis_tags(task, ratio, seed, variant), contract.CONFIG_HASH: f"h{variant}{ratio:g}"}
    run = client.create_run(exp_id, run_name=f"{task}_r{ratio:g}_{variant}_s{seed}", tags=tags)
    scores = scores or pattern(OFFSET[(task, ratio, variant)] + 10 * seed)
    now = int(time.time() * 1000)
    metrics = []
    for (i, step), score in scores.items():
        if step not in steps:
            continue
        values = {"normalised_score": score, "return_mean": score * 30, "return_std": 1.0 + seed, "length_mean": 1000.0}
        metrics += [Metric(contract.eval_key(TARGETS[task][i], f), v, now, step) for f, v in values.items()]
    metrics += [Metric(contract.TRAIN_ACTION_LOSS, 0.5, now, s) for s in steps]
    params = {"task": task, "sample_ratio": f"{ratio:g}", "seed": str(seed), "variant": variant,
              "model.lm": "gpt2", "language.weight": "0.1" if variant == "lamo" else "0", "train.steps": "5000"}
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_uri):
    root = tmp_path_factory.mktemp("mlflow")
    uri = new_sqlite_uri(root)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXP)
    sweep_tags = {contract.ROLE: contract.ROLE_SWEEP}
    parent = client.create_run(exp_id, run_name="sweep-a", tags=sweep_tags).info.run_id
    client.log_metric(parent, contract.eval_key(3600, "normalised_score"), 1.0, step=1)  # parent must be ignored
    for (task, ratio, variant), seeds in SEEDS.items():
        for seed in seeds:
            make_trial(client, exp_id, parent, task, ratio, variant, seed)
    failed = make_trial(client, exp_id, parent, "hopper", 0.1, "lamo", 3, status="FAILED",
                        scores={(0, 2500): 99.0, (1, 2500): 98.0})
    client.set_terminated(parent)
    parent_b = client.create_run(exp_id, run_name="sweep-b", tags=sweep_tags).info.run_id
    other = make_trial(client, exp_id, parent_b, "hopper", 0.01, "dt", 9)
    client.create_experiment("lamo/empty")
    return {"uri": uri, "parent": parent, "parent_b": parent_b, "failed": failed, "other": other, "root": root}


@pytest.fixture(scope="module")
def tidy(store):
    return load_trial_runs(store["uri"], EXP, parent_run_id=store["parent"])


def test_tidy_frame_shape_and_types(store, tidy):
    assert len(tidy) == N_MAIN * len(STEPS) * 2  # runs × evaluations × targets
    assert list(tidy.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert {"param.model.lm", "param.language.weight", "param.train.steps"} <= set(tidy.columns)
    assert tidy["run_id"].nunique() == N_MAIN and set(tidy["status"]) == {"FINISHED"}
    assert tidy["sample_ratio"].dtype == "float64" and set(tidy["sample_ratio"]) == {0.01, 0.1, 1.0}
    assert set(tidy["seed"]) == {0, 1, 2} and set(tidy["rtg_target"]) == {3600.0, 1800.0, 76.0, 40.0}
    row = tidy[(tidy.run_name == "hopper_r0.1_lamo_s1") & (tidy.step == 5000) & (tidy.rtg_target == 1800)]
    assert row[["normalised_score", "return_mean", "return_std", "length_mean"]].values.tolist() == [
        [75.0, 2250.0, 2.0, 1000.0]
    ]


def test_filters_unfinished_parent_and_pagination(store, monkeypatch):
    everything = load_trial_runs(store["uri"], EXP, include_unfinished=True)
    assert everything["run_id"].nunique() == N_MAIN + 2
    failed = everything[everything.run_id == store["failed"]]
    assert len(failed) == 2 and set(failed["status"]) == {"FAILED"}
    only_b = load_trial_runs(store["uri"], EXP, parent_run_id=store["parent_b"])
    assert set(only_b["run_id"]) == {store["other"]}
    monkeypatch.setattr(runs_mod, "_PAGE_SIZE", 5)  # force several search_runs pages
    paged = load_trial_runs(store["uri"], EXP, max_workers=1)
    assert paged["run_id"].nunique() == N_MAIN + 1


def test_missing_experiment_and_empty(store, tmp_path):
    with pytest.raises(ValueError, match="nope.*not found.*sqlite") as err:
        load_trial_runs(store["uri"], "nope")
    assert "Hint" in str(err.value) and EXP in str(err.value)
    with pytest.raises(ValueError, match="No MLflow database"):
        load_trial_runs(f"sqlite:///{tmp_path}/absent.db", EXP)
    assert not (tmp_path / "absent.db").exists()
    empty = load_trial_runs(store["uri"], "lamo/empty")
    assert empty.empty and list(empty.columns) == list(BASE_COLUMNS)
    assert select_scores(empty).empty


def test_eval_keys_are_parsed_by_the_contract(store):
    """US spelling is read as the contract's field; a key whose target is not a number is ignored."""
    client = MlflowClient(tracking_uri=store["uri"])
    exp_id = client.create_experiment("lamo/spelling")
    tags = {contract.ROLE: contract.ROLE_TRIAL, **contract.axis_tags("hopper", 0.1, 0, "dt")}
    rid = client.create_run(exp_id, tags=tags).info.run_id
    client.log_metric(rid, "eval/rtg_3600/normalized_score", 42.0, step=10)
    client.log_metric(rid, contract.eval_key(3600, "return_mean"), 1260.0, step=10)
    client.log_metric(rid, "eval/rtg_high/return_mean", 1.0, step=10)
    client.set_terminated(rid)
    tidy = load_trial_runs(store["uri"], "lamo/spelling")
    assert tidy[["rtg_target", "normalised_score", "return_mean"]].values.tolist() == [[3600.0, 42.0, 1260.0]]


@pytest.mark.slow(reason="a fresh interpreter that imports the analysis and reads a store: ~8 s")
def test_reading_a_store_needs_no_torch_or_ray(store):
    """The analysis reads a store with MLflow and the standard-library contract only."""
    code = (
        "import sys\n"
        "import analysis.cli, analysis.report\n"
        "from analysis.runs import load_trial_runs\n"
        f"assert len(load_trial_runs({store['uri']!r}, {EXP!r}))\n"
        "print(sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


def _pick(sel, name):
    r = sel.set_index("run_name").loc[name]
    return r["normalised_score"], r["rtg_target"], r["step"]


@pytest.mark.parametrize(
    "kwargs, expected",  # run hopper_r0.1_lamo_s1: base = 40 + 10 = 50
    [
        (dict(), (75.0, 1800.0, 5000)),  # LaMo: best target's final score
        (dict(target_rule="largest"), (70.0, 3600.0, 5000)),  # CORL last
        (dict(target_rule="largest", checkpoint="best"), (80.0, 3600.0, 2500)),  # CORL best
        (dict(checkpoint="best"), (80.0, 3600.0, 2500)),
        (dict(target_rule="fixed", fixed_target={"hopper": 1800, "reacher2d": 76}), (75.0, 1800.0, 5000)),
        (dict(target_rule="fixed", fixed_target={"hopper": 3600, "reacher2d": 40}, checkpoint="best"),
         (80.0, 3600.0, 2500)),
        (dict(checkpoint="mean_last_k", last_k=2), (75.0, 3600.0, 5000)),  # (80+70)/2 > (55+75)/2
        (dict(checkpoint="mean_last_k", last_k=1), (75.0, 1800.0, 5000)),
    ],
)
def test_selection_rules(tidy, kwargs, expected):
    sel = select_scores(tidy, SelectionRule(**kwargs))
    assert len(sel) == N_MAIN and sel["run_id"].is_unique
    assert _pick(sel, "hopper_r0.1_lamo_s1") == expected
    assert set(sel["selection_rule"]) == {SelectionRule(**kwargs).describe()}


def test_mean_last_k_values_and_fixed_missing(tidy):
    sel = select_scores(tidy, SelectionRule("largest", "mean_last_k", last_k=5))
    r = sel.set_index("run_name").loc["hopper_r0.1_dt_s0"]  # base 20: (50 + 40) / 2, returns ×30
    assert (r["normalised_score"], r["return_mean"], r["n_evals"]) == (45.0, 1350.0, 2)
    with pytest.warns(UserWarning, match="left out"):
        sel = select_scores(tidy, SelectionRule("fixed", fixed_target=3600))
    assert set(sel["task"]) == {"hopper"}


def test_rule_validation_and_text():
    assert "LaMo" in SelectionRule().describe() and "final evaluation" in SelectionRule().describe()
    corl = SelectionRule("largest", "best").describe()
    assert "CORL" in corl and "best evaluation" in corl
    assert "last 4 evaluations" in SelectionRule(checkpoint="mean_last_k", last_k=4).describe()
    for bad in [dict(target_rule="max"), dict(checkpoint="final"), dict(target_rule="fixed"),
                dict(checkpoint="mean_last_k", last_k=0), dict(target_rule="fixed", fixed_target={})]:
        with pytest.raises(ValueError):
            SelectionRule(**bad)
    # a per-task target is stored sorted and hashable; the CLI's strings give the same rule
    rule = SelectionRule("fixed", fixed_target={"walker2d": 5000, "hopper": 3600})
    assert rule.targets == {"hopper": 3600.0, "walker2d": 5000.0} and hash(rule) == hash(
        SelectionRule.from_options("fixed", "last", ["hopper=3600", "walker2d=5000"]))
    assert "hopper: 3600, walker2d: 5000" in rule.describe()
    assert SelectionRule.from_options("fixed", fixed_target=["76"]).targets == 76.0
    with pytest.raises(ValueError, match="TASK=RETURN"):
        SelectionRule.from_options("fixed", fixed_target=["76", "40"])


def test_score_table_and_markdown(tidy):
    table = score_table(select_scores(tidy)).set_index(["task", "sample_ratio", "variant"])
    cell = table.loc[("hopper", 0.1, "lamo")]  # seeds 0,1,2 → 65, 75, 85
    assert (cell["mean"], cell["std"], cell["n"]) == (75.0, 10.0, 3)
    cell = table.loc[("hopper", 0.1, "dt")]  # seeds 0,1 → 45, 55
    assert cell["mean"] == 50.0 and math.isclose(cell["std"], math.sqrt(50)) and cell["n"] == 2
    assert tuple(table.loc[("reacher2d", 1.0, "lamo")]) == (75.0, 0.0, 1)  # single seed → std 0
    md = markdown_table(table.reset_index(), SelectionRule())
    lines = md.splitlines()
    assert "LaMo: best target's final score" in lines[0] and "mean ± std" in lines[0]
    assert lines[2] == "| task | sample ratio | dt | lamo |"
    assert "| hopper | 1% | 45.0 ± 10.0 (n=3) | **50.0 ± 10.0 (n=3)** |" in lines
    assert "| hopper | 10% | 50.0 ± 7.1 (n=2) | **75.0 ± 10.0 (n=3)** |" in lines
    assert "| reacher2d | 100% | — | 75.0 ± 0.0 (n=1) |" in lines


def test_plot(tidy, tmp_path):
    path = plot_score_vs_ratio(select_scores(tidy), tmp_path / "fig.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_write_report(store, tmp_path):
    paths = write_report(store["uri"], EXP, tmp_path / "out", parent_run_id=store["parent"], rule=SelectionRule("largest"),
                         parts=("tables", "figures"))
    assert {"scores", "table", "figure"} <= set(paths) and all(p.is_file() for p in paths.values())
    assert paths["figure"].name == "score_vs_ratio.png" and paths["table"].name == "table.md"
    scores = pd.read_csv(paths["scores"])
    assert len(scores) == N_MAIN and set(scores["target_rule"]) == {"largest"}
    assert "CORL" in paths["table"].read_text()
    with pytest.raises(ValueError, match="No FINISHED trial runs"):
        write_report(store["uri"], "lamo/empty", tmp_path / "none")


def test_cli(store, tmp_path):
    runner = CliRunner()
    base = ["report", "--tracking-uri", store["uri"], "--experiment", EXP]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "r"), "--parent-run-id", store["parent"],
                              "--checkpoint", "mean_last_k", "--last-k", "2", "--reps", "50", "--poi-reps", "20"])
    assert res.exit_code == 0, res.output
    assert {"scores.csv", "table.md", "score_vs_ratio.png"} <= {p.name for p in (tmp_path / "r").iterdir()}
    assert "hopper" in res.output and "table.md" in res.output
    res = runner.invoke(app, ["tables", *base[1:], "--out", str(tmp_path / "f"), "--target-rule", "fixed",
                              "--fixed-target", "hopper=3600", "--fixed-target", "reacher2d=76"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", "--tracking-uri", store["uri"], "--experiment", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, [*base, "--out", str(tmp_path), "--target-rule", "max"])
    assert res.exit_code == 2
    res = runner.invoke(app, [*base, "--out", str(tmp_path), "--target-rule", "fixed"])
    assert res.exit_code == 2 and "fixed_target" in res.output


@pytest.mark.slow(reason="two full reports with 2000/1000 bootstrap replications: ~12 s")
def test_sweep_end_report_and_cli_give_identical_intervals(store, tmp_path):
    """The end of a sweep and ``lamo-analysis report`` share one bootstrap default (same CIs)."""
    calls = [n for n in ast.walk(ast.parse((ROOT / "orchestrator" / "sweep.py").read_text()))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "write_report"]
    # the sweep passes (tracking URI, experiment, out dir) and leaves the bootstrap to the default
    assert len(calls) == 1 and len(calls[0].args) == 3 and not calls[0].keywords
    write_report(store["uri"], EXP, tmp_path / "sweep")
    res = CliRunner().invoke(app, ["report", "--tracking-uri", store["uri"], "--experiment", EXP,
                                   "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    boot = stats.DEFAULT_BOOTSTRAP
    for name, reps in (("rliable_aggregates.csv", boot.reps), ("probability_of_improvement.csv", boot.poi_reps)):
        sweep_end, cli = (pd.read_csv(tmp_path / d / name) for d in ("sweep", "cli"))
        assert len(sweep_end) and set(sweep_end["reps"]) == {reps} and set(sweep_end["seed"]) == {boot.seed}
        pd.testing.assert_frame_equal(sweep_end, cli)
    # the comparison is sensitive: other replications give other intervals on this store
    other, _ = stats.aggregate_estimates(select_scores(load_trial_runs(store["uri"], EXP)), reps=boot.reps // 4)
    agg = pd.read_csv(tmp_path / "sweep" / "rliable_aggregates.csv")
    assert not np.allclose(agg["ci_low"], other["ci_low"]) or not np.allclose(agg["ci_high"], other["ci_high"])
