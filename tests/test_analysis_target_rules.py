"""Best RTG target per seed vs on the seed-averaged score, on a small hand-checkable MLflow store.

Two cells (hopper-medium, ratio 0.1), three seeds, targets 3600 and 1800, one evaluation (step 5000)
plus an earlier one (step 2500) that only ``--checkpoint best`` may pick:

* ``lamo``: 3600 → 80, 20, 70; 1800 → 50, 60, 55.  Per seed: 80 (3600), 60 (1800), 70 (3600), mean 70.
  Seed means: 3600 → 56.67, 1800 → 55, so 3600 for every seed: 80, 20, 70, mean 56.67.
* ``dt``: 3600 → 40, 0, 10; 1800 → 30, 35, 33.  Per seed: 40 (3600), 35, 33 (1800), mean 36.
  Seed means: 3600 → 16.67, 1800 → 32.67, so 1800 for every seed: 30, 35, 33, mean 32.67.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from analysis.cli import app
from analysis.report import write_report
from analysis.rule_compare import compare_target_rules, rule_comparison_markdown, rules_pair
from analysis.runs import load_trial_runs
from analysis.select import DEFAULT_RULE, SelectionRule, select_scores
from trainers import contract

EXP = "lamo/target-rules"
TASK, RATIO = "hopper-medium", 0.1
#: variant → seed → {target (raw return): normalised score at the last evaluation}
LAST = {
    "lamo": {0: {3600.0: 80.0, 1800.0: 50.0}, 1: {3600.0: 20.0, 1800.0: 60.0}, 2: {3600.0: 70.0, 1800.0: 55.0}},
    "dt": {0: {3600.0: 40.0, 1800.0: 30.0}, 1: {3600.0: 0.0, 1800.0: 35.0}, 2: {3600.0: 10.0, 1800.0: 33.0}},
}
EARLY = 1.0  # every target's score at step 2500 (below every last score: "best" checkpoint = last)


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_uri):
    uri = new_sqlite_uri(tmp_path_factory.mktemp("target-rules"))
    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment(EXP)
    parent = c.create_run(exp, tags={contract.ROLE: contract.ROLE_SWEEP}).info.run_id
    now = int(time.time() * 1000)
    for variant, seeds in LAST.items():
        for seed, scores in seeds.items():
            tags = {contract.ROLE: contract.ROLE_TRIAL, contract.PARENT_RUN: parent,
                    **contract.axis_tags(TASK, RATIO, seed, variant), contract.CONFIG_HASH: f"{variant}-{seed}"}
            run = c.create_run(exp, run_name=f"{variant}_s{seed}", tags=tags).info.run_id
            metrics = []
            for target, score in scores.items():
                for step, value in ((2500, EARLY), (5000, score)):
                    metrics += [Metric(contract.eval_key(target, "normalised_score"), value, now, step),
                                Metric(contract.eval_key(target, "return_mean"), value * 32.5, now, step)]
            params = {"task": TASK, "sample_ratio": f"{RATIO:g}", "seed": str(seed), "variant": variant}
            c.log_batch(run, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
            c.set_terminated(run)
    c.set_terminated(parent)
    return uri


@pytest.fixture(scope="module")
def tidy(store):
    return load_trial_runs(store, EXP)


def by_seed(selected: pd.DataFrame, variant: str) -> dict[int, tuple[float, float]]:
    rows = selected[selected["variant"] == variant]
    return {int(r.seed): (r.rtg_target, r.normalised_score) for r in rows.itertuples()}


def test_the_two_rules_pick_different_targets(tidy):
    per_seed = select_scores(tidy, SelectionRule())
    assert by_seed(per_seed, "lamo") == {0: (3600, 80), 1: (1800, 60), 2: (3600, 70)}
    assert by_seed(per_seed, "dt") == {0: (3600, 40), 1: (1800, 35), 2: (1800, 33)}
    seed_mean = select_scores(tidy, SelectionRule(best_target_by="seed_mean"))
    assert by_seed(seed_mean, "lamo") == {0: (3600, 80), 1: (3600, 20), 2: (3600, 70)}
    assert by_seed(seed_mean, "dt") == {0: (1800, 30), 1: (1800, 35), 2: (1800, 33)}
    # same columns as the default rule's frame; only the rule text differs
    assert list(seed_mean.columns) == list(per_seed.columns)
    assert seed_mean["selection_rule"].nunique() == 1
    assert seed_mean["selection_rule"].iloc[0] != per_seed["selection_rule"].iloc[0]
    assert "seed-averaged" in seed_mean["selection_rule"].iloc[0]


def test_comparison_table(tidy):
    t = compare_target_rules(tidy).set_index("variant")
    lamo, dt = t.loc["lamo"], t.loc["dt"]
    assert lamo["per_seed_mean"] == pytest.approx(70.0) and lamo["per_seed_n"] == 3
    assert lamo["per_seed_targets"] == "3600 ×2, 1800"
    assert lamo["seed_mean_mean"] == pytest.approx(170 / 3) and lamo["seed_mean_target"] == 3600
    assert lamo["per_seed_std"] == pytest.approx(np.std([80, 60, 70], ddof=1))
    assert lamo["seed_mean_std"] == pytest.approx(np.std([80, 20, 70], ddof=1))
    assert dt["per_seed_mean"] == pytest.approx(36.0) and dt["per_seed_targets"] == "3600, 1800 ×2"
    assert dt["seed_mean_mean"] == pytest.approx(98 / 3) and dt["seed_mean_target"] == 1800
    assert (t["difference"] >= 0).all()
    assert t["difference"].to_dict() == pytest.approx({"lamo": 70 - 170 / 3, "dt": 36 - 98 / 3})
    md = rule_comparison_markdown(compare_target_rules(tidy))
    caption = md.splitlines()[0]
    for r in rules_pair():
        assert r.describe() in caption  # both rules named
    assert "| hopper-medium | 10% | lamo | 70.0 ± 10.0 (n=3) | 3600 ×2, 1800 | 56.7 ± 32.1 (n=3) | 3600 | 13.3 |" in md


def test_ties_go_to_the_larger_target_and_incomplete_cells_warn():
    rows = []
    for seed, (hi, lo) in enumerate([(10.0, 20.0), (30.0, 20.0)]):  # seed means 20 and 20: a tie
        for target, score in ((3600.0, hi), (1800.0, lo)):
            rows.append({"run_id": f"r{seed}", "task": TASK, "sample_ratio": RATIO, "seed": seed, "variant": "lamo",
                         "step": 10, "rtg_target": target, "normalised_score": score, "return_mean": score,
                         "return_std": 0.0, "length_mean": 1.0})
    rows.append({**rows[0], "run_id": "x", "variant": "solo", "rtg_target": 76.0})
    rows.append({**rows[0], "run_id": "y", "variant": "solo", "seed": 1, "rtg_target": 40.0})
    df = pd.DataFrame(rows)
    with pytest.warns(UserWarning, match="share no evaluated RTG target"):
        sel = select_scores(df, SelectionRule(best_target_by="seed_mean"))
    assert set(sel["run_id"]) == {"r0", "r1"} and set(sel["rtg_target"]) == {3600.0}


def test_rule_validation_and_default_unchanged():
    assert DEFAULT_RULE.best_target_by == "trial"
    assert DEFAULT_RULE == SelectionRule.from_options()
    with pytest.raises(ValueError, match="best_target_by must be one of"):
        SelectionRule(best_target_by="mean")
    with pytest.raises(ValueError, match="applies to target_rule='best' only"):
        SelectionRule(target_rule="largest", best_target_by="seed_mean")
    with pytest.raises(ValueError, match="needs target_rule='best'"):
        rules_pair(SelectionRule(target_rule="largest"))


def test_captions_name_the_rule_and_cli(store, tmp_path):
    runner = CliRunner()
    base = ["--tracking-uri", store, "--experiment", EXP]
    res = runner.invoke(app, ["tables", *base, "--out", str(tmp_path / "sm"), "--best-target-by", "seed_mean"])
    assert res.exit_code == 0, res.output
    text = SelectionRule(best_target_by="seed_mean").describe()
    table = (tmp_path / "sm" / "table.md").read_text(encoding="utf-8")
    assert text in table.splitlines()[0]
    assert "56.7 ± 32.1 (n=3)" in table and "32.7 ± 2.5 (n=3)" in table
    dense = (tmp_path / "sm" / "table_dense.md").read_text(encoding="utf-8")
    assert text in dense.splitlines()[0]
    # the default invocation is unchanged by the new option: same files, byte for byte
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_report(store, EXP, tmp_path / "api", parts=("tables",))
    res = runner.invoke(app, ["tables", *base, "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    for name in ("table.md", "table_dense.md", "scores.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()
    assert DEFAULT_RULE.describe() in (tmp_path / "cli" / "table.md").read_text(encoding="utf-8")
    res = runner.invoke(app, ["rules", *base, "--out", str(tmp_path / "rules")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rules" / "target_rules.md").read_text(encoding="utf-8")
    assert "| hopper-medium | 10% | dt | 36.0 ± 3.6 (n=3) | 3600, 1800 ×2 | 32.7 ± 2.5 (n=3) | 1800 | 3.3 |" in md
    csv = pd.read_csv(tmp_path / "rules" / "target_rules.csv")
    assert len(csv) == 2 and set(csv["seed_mean_target"]) == {3600.0, 1800.0}
    res = runner.invoke(app, ["tables", *base, "--out", str(tmp_path / "x"), "--target-rule", "largest",
                              "--best-target-by", "seed_mean"])
    assert res.exit_code == 2 and "applies to target_rule='best' only" in res.output
