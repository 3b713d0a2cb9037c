"""d3rlpy's discrete CQL and BC on Atari (presets cql / bc on an Atari task): the presets switch by the task's
domain without changing any other trial, configs refuse an algorithm of the wrong action space, and a tiny
discrete CQL and BC trial train on LaMo's Atari subset (the DT trial's subset hash), evaluate gamer-normalised
under eval/policy/<field>, and resume exactly (real ALE Breakout, real d3rlpy 2.8.0 and torch; CPU)."""

from __future__ import annotations

import pytest

import trainers.presets as presets
import torch
from pydantic import ValidationError

from orchestrator.schema import Sweep
from trainers.config import TrialConfig

SWEEP = {
    "name": "span", "storage": "runs",
    "variants": {"cql": {"preset": "cql"}, "bc": {"preset": "bc"}, "dt": {"preset": "dt-atari"}},
    "grid": {"task": ["hopper-medium", "breakout-medium"], "sample_ratio": [0.5], "seed": [1],
             "variant": ["cql", "bc", "dt"]},
}


def _by(sweep):
    return {(t.task, t.variant): t for t in sweep.trials}


def test_cql_and_bc_presets_switch_to_the_discrete_algorithms_on_atari_tasks():
    by = _by(Sweep.from_dict(SWEEP))
    assert by["hopper-medium", "cql"].baseline.algo == "cql" and by["hopper-medium", "bc"].baseline.algo == "bc"
    cql, bc = by["breakout-medium", "cql"], by["breakout-medium", "bc"]
    assert cql.baseline.algo == "discrete_cql" and bc.baseline.algo == "discrete_bc"
    # on Atari the trials carry the Atari recipes, whatever they hold (the recipes' values are data)
    for trial, preset in ((cql, "cql-atari"), (bc, "bc-atari")):
        recipe = presets.VARIANT_PRESETS[preset]
        assert trial.baseline.model_dump(exclude_defaults=True) == recipe["baseline"]
        assert trial.train.batch_size == recipe["train"]["batch_size"]
    # the continuous baselines' logged config has no trace of the discrete fields (hashes unchanged)
    assert "n_quantiles" not in by["hopper-medium", "cql"].canonical_json()
    assert "n_quantiles" in cql.canonical_json()


def test_a_baseline_of_the_other_action_space_is_refused():
    with pytest.raises(ValidationError, match="continuous-action.*discrete_cql"):
        TrialConfig(task="breakout-medium", model={"lm": None, "init": "random"}, language={"weight": 0}, baseline={"algo": "cql"})
    with pytest.raises(ValidationError, match="for discrete actions"):
        TrialConfig(task="hopper-medium", model={"lm": None, "init": "random"}, language={"weight": 0},
                    baseline={"algo": "discrete_bc"})
    with pytest.raises(ValidationError, match="pixel encoder"):
        TrialConfig(task="breakout-medium", model={"lm": None, "init": "random"}, language={"weight": 0},
                    baseline={"algo": "discrete_bc", "hidden_units": [64]})


def _tiny(trial: TrialConfig) -> TrialConfig:
    return trial.model_copy(update={
        "device": "cpu",
        "train": trial.train.model_copy(update={"steps": 4, "batch_size": 4, "log_every": 1, "checkpoint_every": 2}),
        "eval": trial.eval.model_copy(update={"every_steps": 4, "episodes": 1, "max_episode_steps": 8}),
        "baseline": trial.baseline.model_copy(update={"n_quantiles": 8} if getattr(trial.baseline, "n_quantiles", None)
                                              else {}),
    })


@pytest.mark.slow(reason="collects a short real Breakout dataset, runs tiny discrete CQL and BC trials, "
                         "CQL twice more (interrupted, resumed): 7 s on 2 idle cores, more under load")
def test_tiny_discrete_cql_and_bc_trials_train_evaluate_and_resume(tmp_path, run_cut_and_resumed):
    from trainers.checkpoint import CHECKPOINT_DIR
    from trainers.domains.atari.data import collect_atari_dataset
    from trainers.methods import make_learner
    from trainers.paths import trial_dataset_path

    torch.set_num_threads(1)
    by = _by(Sweep.from_dict({**SWEEP, "grid": {**SWEEP["grid"], "task": ["breakout-medium"], "sample_ratio": [1.0]}}))
    cql, bc, dt = (_tiny(by["breakout-medium", v]) for v in ("cql", "bc", "dt"))
    data = tmp_path / "data"
    collect_atari_dataset("breakout", trial_dataset_path(cql, data), 400, progress=False)

    learners = {name: make_learner(c, data) for name, c in (("cql", cql), ("bc", bc))}
    dt_hash = make_learner(dt, data).data.subset_hash
    for name, learner in learners.items():
        assert learner.data.subset_hash == dt_hash  # LaMo's Atari subset, as the DT trial beside it
        assert learner.data.dataset.frames.dtype.name == "uint8"
        losses = learner.train_step()
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
        assert ("conservative_loss" in losses) == (name == "cql") and ("imitation_loss" in losses) == (name == "bc")
        ev = learner.evaluate()
        ret, score = ev["eval/policy/return_mean"], ev["eval/policy/normalised_score"]
        assert score == pytest.approx(cql.task_spec.normalised_score(ret))  # gamer-normalised, as LaMo's trials
        assert ev["eval/policy/length_mean"] <= 8

    ref, resumed = run_cut_and_resumed(cql, tmp_path, data)
    drop = "eval/episodes_per_s"
    assert {k: v for k, v in resumed.items() if k != drop} == {k: v for k, v in ref.items() if k != drop}
    assert "eval/policy/normalised_score" in ref
    weights = []
    for run in ("ref", "cut"):  # the final networks and optimiser states, bit for bit
        state = torch.load(tmp_path / run / CHECKPOINT_DIR / "state.pt", weights_only=False)["learner"]
        learner = make_learner(cql, data)
        learner.load_state_dict(state, tmp_path / run)
        assert state["grad_step"] == 4
        weights.append({k: v.clone() for k, v in learner.algo.impl.modules.q_funcs.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
