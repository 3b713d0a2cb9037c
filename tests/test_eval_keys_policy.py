"""Evaluation keys of a Markov policy (the baselines: no return-to-go target) and how the analysis reads
them: ``eval/policy/<field>`` round-trips through :mod:`trainers.contract`, and a synthetic MLflow store
that mixes an RTG-conditioned run (two targets) with a baseline run is read by
:func:`analysis.runs.load_trial_runs` / :func:`analysis.select.select_scores` with no method special
case: the baseline's single score survives every target rule and checkpoint rule (pandas' groupby must
not drop its NaN target).
"""

from __future__ import annotations

import math
import time

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis.runs import load_trial_runs
from analysis.select import SelectionRule, select_scores
from trainers import contract

EXP = "lamo/policy-keys"
TASK, RATIO, SEED = "hopper-medium", 0.1, 0
#: variant -> target (None = policy) -> [(step, normalised score)]
SCORES = {
    "dt": {3600.0: [(100, 10.0), (200, 30.0)], 1800.0: [(100, 20.0), (200, 25.0)]},
    "cql": {None: [(100, 44.0), (200, 41.0)]},
}


def test_policy_key_round_trip():
    for field in contract.EVAL_FIELDS:
        key = contract.eval_key(None, field)
        assert key == f"eval/policy/{field}"
        assert contract.parse_eval_key(key) == (None, field)
        assert contract.parse_eval_key(contract.eval_key(3600.0, field)) == (3600.0, field)
    assert contract.parse_eval_key("eval/policy/normalized_score") == (None, "normalised_score")
    assert contract.parse_eval_key("eval/policy/bogus") is None
    assert contract.parse_eval_key("eval/policyx/return_mean") is None
    with pytest.raises(ValueError, match="unknown evaluation field"):
        contract.eval_key(None, "score")


@pytest.fixture(scope="module")
def tidy(tmp_path_factory, new_sqlite_uri):
    uri = new_sqlite_uri(tmp_path_factory.mktemp("policy-keys"))
    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment(EXP)
    parent = c.create_run(exp, tags={contract.ROLE: contract.ROLE_SWEEP}).info.run_id
    now = int(time.time() * 1000)
    for variant, targets in SCORES.items():
        tags = {contract.ROLE: contract.ROLE_TRIAL, contract.PARENT_RUN: parent,
                **contract.axis_tags(TASK, RATIO, SEED, variant), contract.CONFIG_HASH: variant}
        run = c.create_run(exp, run_name=variant, tags=tags).info.run_id
        metrics = [Metric(contract.eval_key(t, f), v * (30.0 if f == "return_mean" else 1.0), now, step)
                   for t, hist in targets.items() for step, v in hist
                   for f in ("normalised_score", "return_mean")]
        c.log_batch(run, metrics=metrics, params=[Param("variant", variant)])
        c.set_terminated(run)
    c.set_terminated(parent)
    return load_trial_runs(uri, EXP)


def test_tidy_frame_has_nan_target_for_policy(tidy):
    cql = tidy[tidy["variant"] == "cql"]
    assert len(cql) == 2 and cql["rtg_target"].isna().all()
    assert sorted(cql["normalised_score"]) == [41.0, 44.0]
    assert set(tidy.loc[tidy["variant"] == "dt", "rtg_target"]) == {3600.0, 1800.0}


@pytest.mark.parametrize("rule, dt_score, cql_score", [
    (SelectionRule(), 30.0, 41.0),
    (SelectionRule(target_rule="largest"), 30.0, 41.0),
    (SelectionRule(target_rule="fixed", fixed_target=1800.0), 25.0, 41.0),
    (SelectionRule(checkpoint="best"), 30.0, 44.0),
    (SelectionRule(checkpoint="mean_last_k", last_k=2), 22.5, 42.5),
    (SelectionRule(best_target_by="seed_mean"), 30.0, 41.0),
])
def test_every_rule_selects_the_policy_score(tidy, rule, dt_score, cql_score):
    sel = select_scores(tidy, rule).set_index("variant")
    assert set(sel.index) == {"dt", "cql"}
    assert sel.loc["dt", "normalised_score"] == pytest.approx(dt_score)
    assert sel.loc["cql", "normalised_score"] == pytest.approx(cql_score)
    assert math.isnan(sel.loc["cql", "rtg_target"])
