"""LaMo's sparse Reacher2d (spec §6) and the scripted behaviour policies."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from trainers.data.policies import get_behaviour_policy
from trainers.domains.reacher2d.policy import reacher2d_ik
from trainers.domains.reacher2d import REACHER2D_ID
from trainers.envs import make_env, register_envs
from trainers.domains.reacher2d.env import Reacher2dEnv
from trainers.tasks import get_task


def _tip_fk(q0: float, q1: float) -> np.ndarray:
    """Fingertip from joint angles (link 0.6 mounted at +0.785 rad, fingertip 0.45 along link 2)."""
    return 0.6 * np.array([np.cos(q0 + 0.785), np.sin(q0 + 0.785)]) + 0.45 * np.array(
        [np.cos(q0 + q1), np.sin(q0 + q1)]
    )


def test_spaces_and_registration():
    register_envs()
    register_envs()  # idempotent
    env = make_env(REACHER2D_ID)
    task = get_task("reacher2d-medium")
    assert task.env_id == REACHER2D_ID
    assert env.spec.max_episode_steps == task.max_ep_len == 100
    assert env.observation_space.shape == (task.obs_dim,) and env.observation_space.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (task.act_dim,), np.float32)
    env.close()


def test_observation_layout():
    env = Reacher2dEnv()
    rng = np.random.default_rng(0)
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        for _ in range(3):
            obs, _, _, _, info = env.step(rng.uniform(-1, 1, 2))
        assert obs.shape == (12,) and obs.dtype == np.float32
        q, qvel = env.data.qpos, env.data.qvel
        np.testing.assert_allclose(obs[0:2] ** 2 + obs[2:4] ** 2, 1.0, atol=1e-5)
        np.testing.assert_allclose(obs[0:2], np.sin(q), atol=1e-6)
        np.testing.assert_allclose(obs[2:4], np.cos(q), atol=1e-6)
        np.testing.assert_allclose(obs[4:6], 0.15 * qvel, atol=1e-6)  # dt * qdot, dt = 0.01 * 15
        np.testing.assert_allclose(obs[6:8], _tip_fk(*q), atol=1e-5)
        np.testing.assert_allclose(obs[10:12], obs[6:8] - obs[8:10], atol=1e-6)
        assert 0.5 <= np.linalg.norm(obs[8:10]) <= 1.0 + 1e-6
        assert info["distance_l1"] == pytest.approx(np.abs(obs[10:12]).sum(), abs=1e-5)
        assert -2.0 - 0.05 <= q[1] <= 3.5 + 0.05  # elbow limit (soft constraint)


def test_reset_distribution():
    env = Reacher2dEnv()
    qs = np.array([(env.reset(seed=s), env.data.qpos.copy())[1] for s in range(200)])
    assert np.all(np.abs(qs) <= 2.0) and qs.std() > 0.8
    assert np.all(env.data.qvel == 0.0)


@pytest.mark.parametrize(
    "offset, reward",
    [((0.0, 0.0), 1.0), ((0.09, 0.0), 1.0), ((0.0, -0.099), 1.0), ((0.06, 0.05), 0.0), ((0.3, 0.2), 0.0)],
)
def test_sparse_reward_l1(offset, reward):
    # (0.06, 0.05): L2 distance 0.078 < 0.1 but L1 distance 0.11 -> no reward (the metric is L1).
    env = Reacher2dEnv()
    env.reset(seed=0)
    q = np.array([0.7, 1.2])
    goal = _tip_fk(*q) + np.array(offset)
    env.set_state(q, goal=goal)
    obs, r, terminated, truncated, info = env.step(np.zeros(2))  # no gravity, zero torque: arm stays
    np.testing.assert_allclose(obs[6:8], _tip_fk(*q), atol=1e-6)
    assert r == reward and info["success"] is (reward == 1.0)
    assert info["distance_l1"] == pytest.approx(abs(offset[0]) + abs(offset[1]), abs=1e-5)
    assert not terminated and not truncated


def test_action_clipping():
    a, b = Reacher2dEnv(), Reacher2dEnv()
    a.reset(seed=3)
    b.reset(seed=3)
    for _ in range(5):
        oa = a.step(np.array([7.0, -3.0]))[0]
        ob = b.step(np.array([1.0, -1.0]))[0]
        np.testing.assert_array_equal(oa, ob)


def test_truncation_at_100_never_terminated():
    env = make_env(REACHER2D_ID)
    env.reset(seed=1)
    for t in range(1, 101):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (t == 100)


def test_seeding_determinism():
    def rollout(seed):
        env = make_env(REACHER2D_ID)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in np.random.default_rng(0).uniform(-1, 1, (20, 2)):
            out.append(env.step(a)[0])
        return np.array(out)

    np.testing.assert_array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5)[0], rollout(6)[0])


def test_ik_recovers_current_pose():
    env = Reacher2dEnv()
    env.reset(seed=0)
    for q in [(0.3, 0.5), (-2.5, 3.4), (4.0, -1.9), (1.0, 2.9), (-0.2, -1.0)]:
        obs = env.set_state(np.array(q))
        err, qdot = reacher2d_ik(obs, obs[6:8].astype(np.float64))
        np.testing.assert_allclose(err, 0.0, atol=1e-3)
        np.testing.assert_allclose(qdot, 0.0)


def _mean_score(policy, episodes: int) -> float:
    env = make_env(REACHER2D_ID)
    task = get_task("reacher2d-medium")
    scores = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=1000 + ep)
        if hasattr(policy, "reset"):
            policy.reset()
        ret, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs))
            ret += r
            done = term or trunc
        scores.append(task.normalised_score(ret))
    return float(np.mean(scores))


def test_policies_ordering():
    rng = np.random.default_rng(0)
    random_score = _mean_score(lambda obs: rng.uniform(-1, 1, 2).astype(np.float32), 30)
    medium = _mean_score(get_behaviour_policy("reacher2d-ik-medium", 0), 40)
    expert = _mean_score(get_behaviour_policy("reacher2d-ik-expert", 0), 40)
    assert random_score < 10.0
    assert 20.0 < medium < 50.0
    assert expert > 65.0
    assert expert - medium > 20.0 and medium - random_score > 10.0


def test_policy_interface():
    pol = get_behaviour_policy("reacher2d-ik-medium", 3)
    assert pol.name == "reacher2d-ik-medium"
    obs, _ = Reacher2dEnv().reset(seed=0)
    a = pol(obs)
    assert a.shape == (2,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)
    with pytest.raises(KeyError, match="reacher2d-ik-expert"):
        get_behaviour_policy("reacher2d-ik-bogus", 0)
