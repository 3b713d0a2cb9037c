"""Vectorised evaluation (trainers.evaluate): one batched rollout of all episodes of all RTG targets
replays exactly the episodes of one-at-a-time rollouts, and feeds the model the DT context layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.config import TrialConfig
from trainers.evaluate import evaluate
from trainers.model import DecisionTransformer
from trainers.presets import get_preset


class Recorder(torch.nn.Module):
    """Calls the real model and keeps every batch of inputs it was given (CPU copies)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, s, a, r, ts, m):
        self.calls.append([x.clone() for x in (s, a, r, ts, m)])
        return self.model(s, a, r, ts, m)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    cfg = TrialConfig(task="hopper-medium", variant="dt", **get_preset("dt"))
    task = cfg.task_spec
    model = DecisionTransformer(cfg, task.obs_dim, task.act_dim, task.max_ep_len).eval()
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=task.obs_dim).astype(np.float32), rng.uniform(0.5, 2, task.obs_dim).astype(np.float32)
    return cfg, task, model, mean, std


def test_vectorised_rollout_equals_one_episode_at_a_time(setup):
    cfg, task, model, mean, std = setup
    kw = dict(state_mean=mean, state_std=std, context_length=cfg.K, rtg_scale=cfg.scale, seed=7,
              max_episode_steps=30)
    targets, episodes = [3600.0, 1800.0], 3
    vec = evaluate(model, task, targets, episodes, **kw)
    for target in targets:
        one = [evaluate(model, task, [target], 1, first_episode=i, **kw) for i in range(episodes)]
        key = f"eval/rtg_{target:g}"
        rets = np.array([o[f"{key}/return_mean"] for o in one])
        assert vec[f"{key}/return_mean"] == pytest.approx(rets.mean(), rel=1e-4, abs=1e-4)
        assert vec[f"{key}/return_std"] == pytest.approx(rets.std(), rel=1e-3, abs=1e-4)
        assert vec[f"{key}/length_mean"] == np.mean([o[f"{key}/length_mean"] for o in one])
    # different targets are compared on the same initial states, but the conditioning changes the actions
    assert vec["eval/rtg_3600/return_mean"] != vec["eval/rtg_1800/return_mean"]
    assert vec["eval/rtg_3600/return_std"] > 0  # the episodes differ (seeds), so the check is not vacuous


def test_context_layout_fed_to_the_model(setup):
    cfg, task, model, mean, std = setup
    rec = Recorder(model).eval()
    K, target, horizon = cfg.K, 3600.0, 25
    evaluate(rec, task, [target, 1800.0], 2, mean, std, K, cfg.scale, seed=1, max_episode_steps=horizon)
    sizes = [c[0].shape[0] for c in rec.calls]
    assert sizes[0] == 4 and sizes == sorted(sizes, reverse=True)  # episodes that ended (fell) drop out
    for t, (s, a, r, ts, m) in enumerate(rec.calls):
        b = sizes[t]
        assert s.shape == (b, K, task.obs_dim) and a.shape == (b, K, task.act_dim) and r.shape == (b, K, 1)
        n_real = min(t + 1, K)
        assert m[0].tolist() == [0.0] * (K - n_real) + [1.0] * n_real  # left padding, masked out
        assert ts[0, K - n_real:].tolist() == list(range(t + 1 - n_real, t + 1))
        assert torch.all(a[:, -1] == 0)  # the current action slot is empty
        assert torch.all(s[:, :K - n_real] == 0) and torch.all(r[:, :K - n_real] == 0)
    # the RTG starts at target / scale and drops by reward / scale (Hopper: healthy reward 1 per step)
    assert rec.calls[0][2][0, -1, 0].item() == pytest.approx(target / cfg.scale)
    assert rec.calls[0][2][2, -1, 0].item() == pytest.approx(1800.0 / cfg.scale)
    last = [c[2][0, -1, 0].item() for c in rec.calls if c[0].shape[0] == 4]  # episode 0 still in row 0
    assert len(last) >= 5
    # replay episode 0 with the actions the model was fed back: each RTG drop is that step's reward / scale
    from trainers.envs import make_env

    env = make_env(task.env_id)
    obs, _ = env.reset(seed=1 * 100_003)
    assert np.allclose(rec.calls[0][0][0, -1].numpy(), (obs - mean) / std, atol=1e-5)
    for t in range(len(last) - 1):
        _, reward, *_ = env.step(rec.calls[t + 1][1][0, -2].numpy())
        assert last[t] - last[t + 1] == pytest.approx(reward / cfg.scale, abs=1e-5)
    env.close()
    # the actions fed back are the model's clamped predictions of the previous step
    s, a, r, ts, m = rec.calls[1]
    with torch.no_grad():
        first = model(*rec.calls[0])[:, -1].clamp(-1, 1)
    assert torch.allclose(a[:, -2], first)
    # states are normalised with the training-set statistics
    obs0 = rec.calls[0][0][0, -1].numpy() * std + mean
    assert np.all(np.isfinite(obs0)) and not np.allclose(rec.calls[0][0][0, -1].numpy(), obs0)


class _CountingEnv:
    """An env whose episode seeded ``s`` lasts ``s % 5 + 1`` steps; reward = the action; obs = steps so
    far. Records its seed, the actions it got and whether it was closed."""

    def __init__(self, log):
        self.log, self.closed, self.actions = log, False, []
        log.append(self)

    def reset(self, seed):
        self.seed, self.t = seed, 0
        return np.array([0.0]), {}

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        return np.array([float(self.t)]), float(action), self.t >= self.seed % 5 + 1, False, {}

    def close(self):
        self.closed = True


class _RecordingPolicy:
    """Action of episode i = i + 1; records what the loop hands it."""

    def __init__(self):
        self.acted, self.observed = [], []

    def start(self, obs, horizon):
        self.first, self.horizon = obs.copy(), horizon

    def act(self, t, active, obs, returns):
        self.acted.append((t, active.tolist(), obs[:, 0].tolist(), returns.tolist()))
        return [i + 1 for i in active]

    def observe(self, t, active, obs, rewards):
        self.observed.append((t, active.tolist(), obs[:, 0].tolist(), rewards.tolist()))


def test_the_one_rollout_loop_seeds_steps_and_counts():
    from trainers.evaluate import run_episodes
    from trainers.tasks import get_task

    task = get_task("hopper-medium")
    envs, policy = [], _RecordingPolicy()
    out = run_episodes(policy, task, [10.0, 20.0], 3, seed=2, max_episode_steps=4, make=lambda: _CountingEnv(envs),
                       first_episode=1)
    seeds = [e.seed for e in envs]
    assert seeds == [2 * 100_003 + 1 + i % 3 for i in range(6)]  # target-major, same seeds per target
    lengths = [min(s % 5 + 1, 4) for s in seeds]  # the env's end or the horizon, whichever first
    assert [len(e.actions) for e in envs] == lengths and all(e.closed for e in envs)
    assert all(e.actions == [i + 1] * lengths[i] for i, e in enumerate(envs))  # each env got its own action
    assert policy.first.shape == (6, 1) and policy.horizon == 4
    for t, active, obs, returns in policy.acted:  # only running episodes, their returns so far
        assert active == [i for i in range(6) if lengths[i] > t]
        assert obs == [float(t)] * len(active) and returns == [float(t * (i + 1)) for i in active]
    assert [o[1] for o in policy.observed] == [a[1] for a in policy.acted]  # an ending step is observed too
    for k, target in enumerate([10.0, 20.0]):
        rets = [lengths[i] * (i + 1.0) for i in range(3 * k, 3 * k + 3)]
        assert out[f"eval/rtg_{target:g}/return_mean"] == pytest.approx(np.mean(rets))
        assert out[f"eval/rtg_{target:g}/length_mean"] == pytest.approx(np.mean(lengths[3 * k:3 * k + 3]))


def test_the_rollout_loop_closes_its_envs_when_the_policy_fails():
    from trainers.evaluate import run_episodes
    from trainers.tasks import get_task

    class Broken(_RecordingPolicy):
        def act(self, t, active, obs, returns):
            raise RuntimeError("boom")

    envs = []
    with pytest.raises(RuntimeError, match="boom"):
        run_episodes(Broken(), get_task("hopper-medium"), [None], 2, seed=0, make=lambda: _CountingEnv(envs))
    assert len(envs) == 2 and all(e.closed for e in envs)
