"""SB3 behaviour policies (RL Zoo agents) and D4RL-style MuJoCo collection.

Needs the zoo agents in ``$LAMO_SB3_AGENTS_DIR``, else the offline mirror's ``data/sb3_agents``
(:func:`trainers.paths.sb3_agents_dir`); skipped without them.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from trainers.data.collect import collect_dataset, episode_seeds  # noqa: E402
from trainers.data.d4rl_hdf5 import load_d4rl_hdf5, split_trajectories  # noqa: E402
from trainers.data.policies import (  # noqa: E402
    SB3Policy, default_sb3_agents_dir, get_behaviour_policy, load_vecnormalize, sb3_agent_paths)
from trainers.envs import make_env  # noqa: E402
from trainers.tasks import get_task  # noqa: E402

MEDIUM, EXPERT = "sb3:sac/Hopper-v3", "sb3:tqc/Hopper-v3"
TASK = "hopper-medium"

if not sb3_agent_paths("sac", "Hopper-v3")["zip"].is_file():
    pytest.skip(f"RL Zoo agents not found in {default_sb3_agents_dir()}", allow_module_level=True)


def _healthy(obs: np.ndarray) -> np.ndarray:
    """Hopper-v4's health test on observations (rows): z > 0.7, |angle| < 0.2, |obs[1:]| < 100."""
    obs = np.atleast_2d(obs)
    return (obs[:, 0] > 0.7) & (np.abs(obs[:, 1]) < 0.2) & (np.abs(obs[:, 1:]) < 100).all(axis=1)


# -- policies -----------------------------------------------------------------------------------------
def test_sb3_policy_loads_and_acts():
    env = make_env("Hopper-v4")
    obs, _ = env.reset(seed=0)
    pol = get_behaviour_policy(MEDIUM, seed=3)
    assert isinstance(pol, SB3Policy) and pol.batched and not pol.deterministic
    assert (pol.obs_dim, pol.act_dim) == (11, 3) and pol.normaliser is None
    a = pol(obs)
    assert a.shape == (3,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    batch = np.stack([env.observation_space.sample() * 0.1 for _ in range(5)])
    acts = pol(batch)
    assert acts.shape == (5, 3) and acts.dtype == np.float32 and np.all(np.abs(acts) <= 1)
    # determinism by seed (the policy's own RNG), and different seeds differ
    again = get_behaviour_policy(MEDIUM, seed=3)
    np.testing.assert_array_equal(again(obs), a)
    assert not np.array_equal(get_behaviour_policy(MEDIUM, seed=4)(obs), a)
    # explicit noise fixes the sample; batched == row by row (up to float rounding)
    z = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_array_equal(pol(batch, noise=z), pol(batch, noise=z))
    rows = np.stack([pol(batch[i], noise=z[i]) for i in range(5)])
    np.testing.assert_allclose(pol(batch, noise=z), rows, atol=1e-5)
    # deterministic mode: the mean action, no noise
    det = get_behaviour_policy(MEDIUM, seed=0, deterministic=True)
    np.testing.assert_array_equal(det(batch), det(batch))


def test_sb3_normalised_and_deterministic_agents():
    ars = get_behaviour_policy("sb3:ars/Hopper-v3", seed=0)
    assert ars.deterministic and ars.normaliser is not None
    assert ars.normaliser.mean.shape == (11,)
    obs = make_env("Hopper-v4").reset(seed=1)[0]
    np.testing.assert_array_equal(ars(obs), get_behaviour_policy("sb3:ars/Hopper-v3", seed=9)(obs))
    trpo = get_behaviour_policy("sb3:trpo/HalfCheetah-v3", seed=0)
    assert not trpo.deterministic and trpo.normaliser is not None and (trpo.obs_dim, trpo.act_dim) == (17, 6)
    assert trpo(np.zeros((4, 17))).shape == (4, 6)


def test_sb3_policy_errors(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="sb3:<algo>"):
        get_behaviour_policy("sb3:ppo/Hopper-v3", 0)
    with pytest.raises(KeyError, match="sb3:"):
        get_behaviour_policy("no-such-policy", 0)
    monkeypatch.setenv("LAMO_SB3_AGENTS_DIR", str(tmp_path))
    expected = tmp_path / "sac" / "Hopper-v3_1" / "Hopper-v3.zip"
    with pytest.raises(FileNotFoundError) as err:
        get_behaviour_policy(MEDIUM, 0)
    assert str(expected) in str(err.value) and "rl-trained-agents" in str(err.value)
    assert "LAMO_SB3_AGENTS_DIR" in str(err.value) and "load_from_hub" in str(err.value)


class _Evil:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_vecnormalize_unpickler_allow_list(tmp_path):
    stats = load_vecnormalize(sb3_agent_paths("ars", "Walker2d-v3")["vecnormalize"])
    assert stats.mean.shape == (17,) and stats.clip_obs > 0
    bad = tmp_path / "vecnormalize.pkl"
    bad.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(pickle.UnpicklingError, match="allow-list"):
        load_vecnormalize(bad)


# -- collection -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    path = tmp_path_factory.mktemp("mj") / "hopper-medium.hdf5"
    summary = collect_dataset(TASK, path, transitions=3000, seed=0, policy_name=MEDIUM, progress=False,
                              n_envs=4)
    return path, summary


def test_collect_d4rl_structure(medium):
    path, summary = medium
    data = load_d4rl_hdf5(path, obs_dim=11, act_dim=3)
    assert summary["transitions"] == data.num_transitions == 3000 and summary["n_envs"] == 4
    term, tout = data["terminals"], data["timeouts"]
    assert not (term & tout).any()
    # terminals exactly where Hopper fell (the next observation is unhealthy)
    np.testing.assert_array_equal(term, ~_healthy(data["next_observations"]))
    trajs = split_trajectories(data)
    lengths = [len(t["rewards"]) for t in trajs]
    assert sum(lengths) == 3000 and max(lengths) <= 1000 and len(trajs) == summary["episodes"]
    ends = np.cumsum(lengths) - 1
    for end, n in zip(ends[:-1], lengths[:-1]):  # every complete episode ends by a fall or at step 1000
        assert term[end] or (tout[end] and n == 1000)
    assert tout.sum() == sum(1 for e, n in zip(ends, lengths) if n == 1000 and tout[e])
    assert not term[-1] and not tout[-1]  # the last episode is cut, as in D4RL
    for t in trajs:
        np.testing.assert_array_equal(t["next_observations"][:-1], t["observations"][1:])
    # per-policy attrs: mean over the complete episodes only
    returns = [float(t["rewards"].sum(dtype=np.float64)) for t in trajs[:-1]]
    (pol,) = data.attrs["policies"]
    assert pol["name"] == MEDIUM and pol["transitions"] == 3000 and pol["complete_episodes"] == len(returns)
    assert pol["mean_return"] == pytest.approx(np.mean(returns), rel=1e-5)
    assert data.attrs["mean_normalised_score"] == pytest.approx(get_task(TASK).normalised_score(np.mean(returns)),
                                                                rel=1e-5)
    assert data.attrs["n_envs"] == 4 and data.attrs["transitions"] == 3000


def test_collect_replays_and_is_deterministic(medium, tmp_path):
    path, summary = medium
    data = load_d4rl_hdf5(path)
    first = split_trajectories(data)[0]
    env = make_env("Hopper-v4", max_episode_steps=1000)
    obs, _ = env.reset(seed=episode_seeds(0, 1)[0])
    for t in range(len(first["rewards"])):
        np.testing.assert_array_equal(obs.astype(np.float32), first["observations"][t])
        obs, *_ = env.step(first["actions"][t])
    again = tmp_path / "again.hdf5"
    collect_dataset(TASK, again, transitions=3000, seed=0, policy_name=MEDIUM, progress=False, n_envs=4)
    assert again.read_bytes() == path.read_bytes()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp file left


def test_medium_expert_is_concatenation(tmp_path):
    kw = dict(transitions=1500, seed=5, progress=False, n_envs=3)
    med = collect_dataset(TASK, tmp_path / "m.hdf5", policy_name=MEDIUM, **kw)
    exp = collect_dataset(TASK, tmp_path / "e.hdf5", policy_name=EXPERT, **kw)
    both = collect_dataset("hopper-medium-expert", tmp_path / "me.hdf5", **kw)
    m, e, me = (load_d4rl_hdf5(tmp_path / f) for f in ("m.hdf5", "e.hdf5", "me.hdf5"))
    assert both["transitions"] == me.num_transitions == 3000
    assert not (m["terminals"][-1] or m["timeouts"][-1])  # medium alone: its last episode is cut
    boundary = np.zeros(3000, bool)
    boundary[1499] = True  # in medium-expert the cut medium episode ends with a timeout flag
    for k in m.arrays:
        expected = np.concatenate([m[k], e[k]])
        np.testing.assert_array_equal(me[k], expected | boundary if k == "timeouts" else expected)
    assert len(split_trajectories(me)) == both["episodes"]
    assert me.attrs["behaviour_policy"] == f"{MEDIUM}+{EXPERT}"
    assert [p["name"] for p in me.attrs["policies"]] == [MEDIUM, EXPERT]
    assert me.attrs["policies"] == med["policies"] + exp["policies"]
    assert all(p["complete_episodes"] >= 1 for p in me.attrs["policies"])
    assert both["episodes"] == med["episodes"] + exp["episodes"]


def test_expert_scores_above_medium(tmp_path):
    kw = dict(episodes=3, seed=1, progress=False, n_envs=3)
    med = collect_dataset(TASK, tmp_path / "m.hdf5", policy_name=MEDIUM, **kw)
    exp = collect_dataset(TASK, tmp_path / "e.hdf5", policy_name=EXPERT, **kw)
    assert med["episodes"] == exp["episodes"] == 3
    assert exp["mean_normalised_score"] > med["mean_normalised_score"] + 20
    assert exp["mean_normalised_score"] > 70
    data = load_d4rl_hdf5(tmp_path / "e.hdf5")
    assert (data["terminals"] | data["timeouts"]).sum() == 3 and (data["terminals"] | data["timeouts"])[-1]


def test_collect_budget_errors(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        collect_dataset(TASK, tmp_path / "x.hdf5", episodes=1, transitions=10, progress=False)
    with pytest.raises(ValueError, match=">= 1"):
        collect_dataset(TASK, tmp_path / "x.hdf5", transitions=0, progress=False)
    assert not (tmp_path / "x.hdf5").exists()


def test_collect_stats_match_file_when_episodes_finish_out_of_order(tmp_path):
    """Regression: with 8 envs, episode 0 (1000 steps) finishes after episodes 1..4; only the episodes
    that fit the budget are kept, the last one is cut, and the stats count exactly the kept complete ones."""
    path = tmp_path / "j.hdf5"
    s = collect_dataset(TASK, path, transitions=2200, seed=2, policy_name=MEDIUM, progress=False, n_envs=8)
    data = load_d4rl_hdf5(path)
    trajs = split_trajectories(data)
    done = data["terminals"] | data["timeouts"]
    assert len(trajs) == s["episodes"] == data.attrs["episodes"] and len(trajs) >= 3
    assert len(trajs[0]["rewards"]) == 1000 and data["timeouts"][999]
    (pol,) = s["policies"]
    assert pol["complete_episodes"] == done.sum() == len(trajs) - 1 and not done[-1]
    returns = [float(t["rewards"].sum(dtype=np.float64)) for t in trajs[:-1]]
    assert s["mean_return"] == pytest.approx(np.mean(returns), rel=1e-5)
