"""The d3rlpy baselines (CQL, IQL, TD3+BC, BC) and the Wiki-RL preset, in-process and on real data (a
small collected Reacher2d dataset, real d3rlpy updates, real MuJoCo evaluation):

* each preset names its published source in the presets' docstring;
* a baseline trains on the same seeded trajectory subset as DT and LaMo (equal ``data_subset_hash``);
* a baseline trial interrupted right after a checkpoint and resumed from it ends with the same losses,
  evaluation and d3rlpy state (networks, optimisers) as an uninterrupted one: bit-exact on CPU;
* bad baseline settings are refused with the field named.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from pydantic import ValidationError

import trainers.presets as presets
from trainers.baselines import make_baseline_learner
from trainers.checkpoint import CHECKPOINT_DIR
from trainers.config import TrialConfig
from trainers.learner import load_trajectories
from trainers.train import ConsoleReporter, run_trial

BASELINES = ("cql", "iql", "td3bc", "bc")


def config(name: str, lm=None, **train) -> TrialConfig:
    d = presets.get_preset(name)
    d.update(task="reacher2d-medium", sample_ratio=0.5, seed=3, variant=name, device="cpu")
    d.setdefault("train", {}).update({"steps": 12, "batch_size": 32, "log_every": 2, "checkpoint_every": 6,
                                      **train})
    d["eval"] = {"every_steps": 12, "episodes": 2, "max_episode_steps": 10}
    if lm is not None:
        d.setdefault("model", {})["lm"] = str(lm)
        d["language"] = {"block_size": 32, "batch_size": 2}
    return TrialConfig(**d)


@pytest.mark.parametrize("name", BASELINES)
def test_the_recipe_reaches_d3rlpy(data, name):
    """Every hyperparameter of a baseline's recipe (:data:`trainers.presets.BASELINE_RECIPES`) is the value
    of the same field in the d3rlpy config the learner builds, and the batch size is the trial's."""
    from trainers.baselines import d3rlpy_algorithm
    from trainers.config import BASELINE_FIELDS

    cfg = config(name)
    algo = d3rlpy_algorithm(cfg, load_trajectories(cfg, data), torch.device("cpu"))
    recipe = presets.BASELINE_RECIPES[name]
    fields = [f for f in BASELINE_FIELDS[recipe["algo"]] if f in recipe]
    assert fields, name
    for f in fields:
        assert getattr(algo.config, f) == pytest.approx(recipe[f]), f
    assert algo.config.batch_size == cfg.train.batch_size


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 12-episode collected Reacher2d dataset (as ``make_sweep``'s), its data directory."""
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path

    root = tmp_path_factory.mktemp("baseline-data")
    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", root), episodes=12, seed=0, progress=False)
    return root


def test_baseline_trains_on_the_same_subset_as_dt_and_lamo(data):
    cql = make_baseline_learner(config("cql"), data, torch.device("cpu"))
    dt = load_trajectories(config("dt"), data)
    lamo = load_trajectories(config("lamo", lm="unused-here"), data)  # the subset does not read the LM
    assert cql.data.subset_hash == dt.subset_hash == lamo.subset_hash
    other = load_trajectories(config("dt").model_copy(update={"seed": 4}), data)
    assert other.subset_hash != cql.data.subset_hash  # the hash does tell subsets apart
    # every kept trajectory (time-limit cut: its last step has no next state) gives len - 1 transitions
    assert len(cql.arrays["rewards"]) == sum(len(t["rewards"]) - 1 for t in cql.data.trajectories)


def _lines(wd):
    return [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["cql", "td3bc"])
def test_resume_is_bit_exact(tmp_path, data, name, stop_after_checkpoint):
    """CQL (sampled actions, learned temperature) and TD3+BC (target noise, delayed actor) use d3rlpy's
    own randomness; both resume bit-exactly."""
    torch.set_num_threads(1)
    cfg = config(name)
    ref = run_trial(cfg, tmp_path / "ref", data, ConsoleReporter(tmp_path / "ref", quiet=True))
    wd = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, wd, data, stop_after_checkpoint(wd, 6))
    out = run_trial(cfg, wd, data, ConsoleReporter(wd, quiet=True))
    drop = "eval/episodes_per_s"
    assert {k: v for k, v in out.items() if k != drop} == {k: v for k, v in ref.items() if k != drop}
    # the losses logged after the resume equal the uninterrupted run's, step by step
    ref_train = {m["step"]: m for m in _lines(tmp_path / "ref") if "train/lr" in m}
    resumed = [m for m in _lines(wd) if "train/lr" in m and m["step"] > 6]
    assert [m["step"] for m in resumed] == [8, 10, 12]
    for m in resumed:
        assert {k: v for k, v in m.items() if k != "train/steps_per_s"} == \
               {k: v for k, v in ref_train[m["step"]].items() if k != "train/steps_per_s"}
    a = torch.load(tmp_path / "ref" / CHECKPOINT_DIR / "state.pt", weights_only=False)["learner"]
    b = torch.load(wd / CHECKPOINT_DIR / "state.pt", weights_only=False)["learner"]
    sa = torch.load(io.BytesIO(a["d3rlpy"]), weights_only=False)
    sb = torch.load(io.BytesIO(b["d3rlpy"]), weights_only=False)
    assert sa.keys() == sb.keys() and "critic_optim" in sa
    for mod in sa:
        if mod.endswith("optim"):
            continue
        assert all(torch.equal(sa[mod][k], sb[mod][k]) for k in sa[mod]), mod
    assert a["grad_step"] == b["grad_step"] == 12


def test_bad_baseline_settings_name_the_field():
    with pytest.raises(ValidationError, match=r"baseline.expectile is a setting of IQL, not of BC \(baseline.algo"):
        TrialConfig(task="hopper-medium", **{**presets.get_preset("bc"),
                                             "baseline": {"algo": "bc", "expectile": 0.7}})
    with pytest.raises(ValidationError, match="set model.lm: null"):
        TrialConfig(task="hopper-medium", baseline={"algo": "cql"})
    # the default (no baseline) leaves the canonical form, so existing trial hashes are unchanged
    assert "baseline" not in TrialConfig(task="hopper-medium").canonical_json()
    assert "baseline" not in TrialConfig(task="hopper-medium").record()  # nor in the logged params
    assert "baseline" in TrialConfig(task="hopper-medium", **presets.get_preset("iql")).canonical_json()


def test_registry_domains_name_the_task_family():
    """Each task's registry domain (trainers/tasks.py): the key of the per-domain recipes."""
    from trainers.tasks import TASKS

    assert {n: t.domain for n, t in TASKS.items() if not n.startswith(("hopper", "halfcheetah", "walker2d"))} == {
        "reacher2d-medium": "reacher2d", "kitchen-partial": "kitchen", "kitchen-complete": "kitchen",
        "breakout-medium": "atari", "pong-medium": "atari", "qbert-medium": "atari"}
    assert {t.domain for n, t in TASKS.items() if n.startswith(("hopper", "halfcheetah", "walker2d"))} == {"mujoco"}


def test_iql_on_kitchen_is_the_iql_papers_kitchen_recipe():
    """IQL paper App. B / github.com/ikostrikov/implicit_q_learning configs/kitchen_config.py: temperature
    0.5, dropout 0.1 on the policy, raw rewards; the locomotion recipe elsewhere."""
    import d3rlpy
    from trainers.baselines import d3rlpy_algorithm

    kitchen = TrialConfig(task="kitchen-partial", **presets.get_preset("iql", "kitchen"))
    b = kitchen.baseline
    assert (b.weight_temp, b.actor_dropout, b.expectile, b.reward_scale) == (0.5, 0.1, 0.7, "none")
    for task, domain in (("hopper-medium", "mujoco"), ("reacher2d-medium", "reacher2d")):
        loco = TrialConfig(task=task, **presets.get_preset("iql", domain)).baseline
        assert (loco.weight_temp, loco.actor_dropout, loco.reward_scale) == (3.0, None, "return_range_1000")
    assert presets.get_preset("cql", "kitchen") == presets.get_preset("cql")  # no published kitchen recipe
    algo = d3rlpy_algorithm(kitchen, None, torch.device("cpu"))
    drops = [m.p for m in algo.impl.modules.policy.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.1, 0.1]  # after each of the two hidden layers (d3rlpy VectorEncoder)
    assert not any(isinstance(m, torch.nn.Dropout) for q in algo.impl.modules.q_funcs for m in q.modules())
    assert isinstance(algo.config, d3rlpy.algos.IQLConfig) and algo.config.weight_temp == 0.5
    with pytest.raises(ValidationError, match=r"baseline.actor_dropout is a setting of IQL, not of CQL"):
        TrialConfig(task="kitchen-partial", **{**presets.get_preset("cql"),
                                               "baseline": {"algo": "cql", "actor_dropout": 0.1}})
