"""Vectorised return-conditioned evaluation (LaMo/DT protocol, ``../shared/docs/lamo_spec.md`` §5).

For every RTG target, ``episodes`` episodes are rolled out; *all* episodes of *all* targets run at once,
one environment each, with one batched model forward pass per environment step. The return-to-go
starts at ``target / rtg_scale`` and drops by ``reward / rtg_scale`` after each step; the model sees the
last K steps, left-padded (padding is masked out of attention). Episode ``i`` of every target uses the
same environment seed, so targets are compared on the same initial states.

Reported per target (raw-return units unless stated): ``return_mean``, ``return_std``, ``length_mean``
and ``normalised_score`` = the task's normalised score of ``return_mean`` (0-100; D4RL convention:
score of the mean return).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from trainers.tasks import TaskSpec


def target_key(target: float) -> str:
    """Metric-key form of an RTG target: ``76.0 -> "76"``, ``0.5 -> "0.5"``."""
    return f"{target:g}"


@torch.no_grad()
def evaluate(model, task: TaskSpec, targets: list[float], episodes: int, state_mean: np.ndarray,
             state_std: np.ndarray, context_length: int, rtg_scale: float, seed: int,
             max_episode_steps: int | None = None, device: str | torch.device = "cpu") -> dict[str, float]:
    """Roll out ``len(targets) * episodes`` episodes in parallel and return flat metrics.

    Args:
        model: a :class:`trainers.model.DecisionTransformer` (put in eval mode here, restored after).
        task: the task (env id, normalisation, ``max_ep_len``).
        targets: RTG targets, raw return units.
        episodes: episodes per target.
        state_mean / state_std: ``(obs_dim,)`` training-set state statistics.
        context_length: K.
        rtg_scale: RTG divisor.
        seed: base seed; episode i's environment is reset with ``seed * 100_003 + i``.
        max_episode_steps: horizon; default ``task.max_ep_len``.

    Returns:
        ``{"eval/rtg_<T>/return_mean": ..., ".../return_std", ".../length_mean",
        ".../normalised_score", "eval/best_normalised_score", "eval/episodes_per_s"}``.
    """
    from trainers.envs import make_env

    horizon = max_episode_steps or task.max_ep_len
    n = len(targets) * episodes
    envs = [make_env(task.env_id) for _ in range(n)]
    K, obs_dim, act_dim = context_length, task.obs_dim, task.act_dim
    mean = torch.as_tensor(state_mean, device=device)
    std = torch.as_tensor(state_std, device=device)
    states = torch.zeros((n, horizon + 1, obs_dim), device=device)
    actions = torch.zeros((n, horizon, act_dim), device=device)
    rtg = torch.zeros((n, horizon + 1), device=device)
    steps = torch.arange(horizon + 1, device=device)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    start = time.perf_counter()
    for i, env in enumerate(envs):
        obs, _ = env.reset(seed=seed * 100_003 + i % episodes)
        states[i, 0] = torch.as_tensor(obs, dtype=torch.float32)
        rtg[i, 0] = targets[i // episodes] / rtg_scale
    was_training = model.training
    model.eval()
    try:
        for t in range(horizon):
            active = np.flatnonzero(~done)
            if active.size == 0:
                break
            lo = max(0, t + 1 - K)
            n_real = t + 1 - lo
            idx = torch.as_tensor(active, device=device)
            s = torch.zeros((len(active), K, obs_dim), device=device)
            a = torch.zeros((len(active), K, act_dim), device=device)
            r = torch.zeros((len(active), K, 1), device=device)
            ts = torch.zeros((len(active), K), dtype=torch.long, device=device)
            m = torch.zeros((len(active), K), device=device)
            s[:, K - n_real:] = (states[idx, lo:t + 1] - mean) / std
            a[:, K - n_real:K - 1] = actions[idx, lo:t]  # the current step's action slot stays 0
            r[:, K - n_real:, 0] = rtg[idx, lo:t + 1]
            ts[:, K - n_real:] = steps[lo:t + 1]
            m[:, K - n_real:] = 1.0
            pred = model(s, a, r, ts, m)[:, -1]
            pred = pred.clamp(-1.0, 1.0)  # the executed action (envs' control range is [-1, 1])
            act_np = pred.cpu().numpy()
            actions[idx, t] = pred
            for j, i in enumerate(active):
                obs, rew, term, trunc, _ = envs[i].step(act_np[j])
                returns[i] += rew
                lengths[i] += 1
                states[i, t + 1] = torch.as_tensor(obs, dtype=torch.float32)
                rtg[i, t + 1] = rtg[i, t] - rew / rtg_scale
                if term or trunc or lengths[i] >= horizon:
                    done[i] = True
    finally:
        model.train(was_training)
        for env in envs:
            env.close()
    seconds = time.perf_counter() - start
    out: dict[str, float] = {}
    best = -np.inf
    for k, target in enumerate(targets):
        sl = slice(k * episodes, (k + 1) * episodes)
        key = f"eval/rtg_{target_key(target)}"
        ret = returns[sl]
        score = task.normalised_score(float(ret.mean()))
        out[f"{key}/return_mean"] = float(ret.mean())
        out[f"{key}/return_std"] = float(ret.std())
        out[f"{key}/length_mean"] = float(lengths[sl].mean())
        out[f"{key}/normalised_score"] = float(score)
        best = max(best, score)
    out["eval/best_normalised_score"] = float(best)
    out["eval/episodes_per_s"] = n / max(seconds, 1e-9)
    return out
