"""Vectorised return-conditioned evaluation (LaMo/DT protocol, ``docs/lamo_recipe.md`` §5).

Sources: LaMo ``experiment-d4rl/decision_transformer/evaluation/evaluate_episodes.py`` and
``experiment-d4rl/experiment.py`` (github.com/srzer/LaMo-2023), after the original DT's
``gym/decision_transformer/evaluation/evaluate_episodes.py`` (github.com/kzl/decision-transformer).

For every RTG target, ``episodes`` episodes are rolled out; *all* episodes of *all* targets run at once,
one environment each, with one batched model forward pass per environment step (episodes that ended
drop out of the batch). The return-to-go
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

from trainers import contract
from trainers.tasks import TaskSpec


@torch.no_grad()
def evaluate(model, task: TaskSpec, targets: list[float], episodes: int, state_mean: np.ndarray,
             state_std: np.ndarray, context_length: int, rtg_scale: float, seed: int,
             max_episode_steps: int | None = None, device: str | torch.device = "cpu",
             first_episode: int = 0) -> dict[str, float]:
    """Roll out ``len(targets) * episodes`` episodes in parallel and return flat metrics.

    Args:
        model: a :class:`trainers.model.DecisionTransformer` (put in eval mode here, restored after).
        task: the task (env id, normalisation, ``max_ep_len``).
        targets: RTG targets, raw return units.
        episodes: episodes per target.
        state_mean / state_std: ``(obs_dim,)`` training-set state statistics.
        context_length: K.
        rtg_scale: RTG divisor.
        seed: base seed; episode i (of each target) is reset with ``seed * 100_003 + first_episode + i``.
        max_episode_steps: horizon; default ``task.max_ep_len``.
        device: where the model runs; histories stay on the host.
        first_episode: offset of the episode numbers (so that one-episode-at-a-time calls with
            ``episodes=1, first_episode=i`` replay exactly the episodes of one vectorised call).

    Returns:
        ``{"eval/rtg_<T>/return_mean": ..., ".../return_std", ".../length_mean",
        ".../normalised_score", "eval/best_normalised_score", "eval/episodes_per_s"}``.
    """
    from trainers.envs import make_env

    horizon = max_episode_steps or task.max_ep_len
    n = len(targets) * episodes
    envs = [make_env(task.env_id) for _ in range(n)]
    K, obs_dim, act_dim = context_length, task.obs_dim, task.act_dim
    # Histories live in NumPy on the host (the environments produce NumPy anyway); per step, only the
    # K-step context of the active episodes is built and moved to ``device``, and the per-environment
    # work is just ``env.step`` -- every other update is one vectorised NumPy operation.
    mean = np.asarray(state_mean, dtype=np.float32)
    std = np.asarray(state_std, dtype=np.float32)
    states = np.zeros((n, horizon + 1, obs_dim), dtype=np.float32)
    actions = np.zeros((n, horizon, act_dim), dtype=np.float32)
    rtg = np.zeros((n, horizon + 1), dtype=np.float32)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    start = time.perf_counter()
    for i, env in enumerate(envs):
        obs, _ = env.reset(seed=seed * 100_003 + first_episode + i % episodes)
        states[i, 0] = obs
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
            b = len(active)
            s = np.zeros((b, K, obs_dim), dtype=np.float32)
            a = np.zeros((b, K, act_dim), dtype=np.float32)
            r = np.zeros((b, K, 1), dtype=np.float32)
            ts = np.zeros((b, K), dtype=np.int64)
            m = np.zeros((b, K), dtype=np.float32)
            s[:, K - n_real:] = (states[active, lo:t + 1] - mean) / std
            a[:, K - n_real:K - 1] = actions[active, lo:t]  # the current step's action slot stays 0
            r[:, K - n_real:, 0] = rtg[active, lo:t + 1]
            ts[:, K - n_real:] = np.arange(lo, t + 1)
            m[:, K - n_real:] = 1.0
            pred = model(*(torch.from_numpy(x).to(device) for x in (s, a, r, ts, m)))[:, -1]
            act_np = pred.clamp(-1.0, 1.0).float().cpu().numpy()  # executed action; control range [-1, 1]
            actions[active, t] = act_np
            obs_b = np.empty((b, obs_dim), dtype=np.float32)
            rew_b = np.empty(b)
            end_b = np.empty(b, dtype=bool)
            for j, i in enumerate(active):
                obs, rew, term, trunc, _ = envs[i].step(act_np[j])
                obs_b[j], rew_b[j], end_b[j] = obs, rew, term or trunc
            returns[active] += rew_b
            lengths[active] += 1
            states[active, t + 1] = obs_b
            rtg[active, t + 1] = rtg[active, t] - rew_b / rtg_scale
            done[active] = end_b | (lengths[active] >= horizon)
    finally:
        model.train(was_training)
        for env in envs:
            env.close()
    return evaluation_metrics(task, targets, returns, lengths, time.perf_counter() - start)


def evaluation_metrics(task: TaskSpec, targets, returns: np.ndarray, lengths: np.ndarray,
                       seconds: float) -> dict[str, float]:
    """The contract's evaluation metrics of one evaluation call.

    Args:
        task: gives the normalised score (:meth:`trainers.tasks.TaskSpec.normalised_score`).
        targets: the RTG targets (raw return), or ``[None]`` for a policy without one (keys
            ``eval/policy/...``, :func:`trainers.contract.eval_key`).
        returns / lengths: ``(len(targets) * episodes,)`` raw episode returns and lengths (env steps),
            target-major (the episodes of target ``k`` are ``k * episodes : (k + 1) * episodes``).
        seconds: wall time of the rollouts.

    Returns:
        per target, ``return_mean`` / ``return_std`` (raw return), ``length_mean`` and
        ``normalised_score`` of the episodes' mean return; :data:`trainers.contract.EVAL_BEST_SCORE`
        (the best target's score) and :data:`trainers.contract.EVAL_EPISODES_PER_S`.
    """
    targets = list(targets)
    episodes = len(returns) // len(targets)
    out: dict[str, float] = {}
    best = -np.inf
    for k, target in enumerate(targets):
        sl = slice(k * episodes, (k + 1) * episodes)
        ret = returns[sl]
        score = task.normalised_score(float(ret.mean()))
        values = {"return_mean": ret.mean(), "return_std": ret.std(), "length_mean": lengths[sl].mean(),
                  "normalised_score": score}
        out.update({contract.eval_key(target, f): float(v) for f, v in values.items()})
        best = max(best, score)
    out[contract.EVAL_BEST_SCORE] = float(best)
    out[contract.EVAL_EPISODES_PER_S] = len(returns) / max(seconds, 1e-9)
    return out


def evaluate_policy(act, task: TaskSpec, episodes: int, state_mean: np.ndarray, state_std: np.ndarray,
                    seed: int, max_episode_steps: int | None = None) -> dict[str, float]:
    """Roll out a Markov policy (no return-to-go: the value-based and imitation baselines) for
    ``episodes`` episodes in parallel, with the same environments, env seeds, horizon, action clipping and
    normalised score as :func:`evaluate`.

    Args:
        act: ``(b, obs_dim)`` float32 standardised states -> ``(b, act_dim)`` actions (NumPy).
        task / episodes / state_mean / state_std / seed / max_episode_steps: as :func:`evaluate`
            (episode i is reset with ``seed * 100_003 + i``).

    Returns:
        ``{contract.eval_key(None, f): ...}`` for ``f`` in ``return_mean`` / ``return_std`` (raw return),
        ``length_mean`` (env steps), ``normalised_score`` (0-100, of the mean return), plus
        ``eval/best_normalised_score`` (= that score) and ``eval/episodes_per_s``.
    """
    mean = np.asarray(state_mean, dtype=np.float32)
    std = np.asarray(state_std, dtype=np.float32)

    def choose(obs: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(act((obs.astype(np.float32) - mean) / std), dtype=np.float32), -1.0, 1.0)

    return _markov_rollouts(choose, task, episodes, seed, max_episode_steps)


def evaluate_discrete_policy(act, task: TaskSpec, episodes: int, seed: int,
                             max_episode_steps: int | None = None, eval_env: str = "d4rl-atari") -> dict[str, float]:
    """Roll out a Markov policy on an Atari task (the discrete baselines) for ``episodes`` episodes in
    parallel, with the envs, env seeds (episode i: ``seed * 100_003 + i``), horizon (default
    ``task.max_ep_len``) and gamer-normalised score of :func:`trainers.domains.atari.learner.evaluate_atari`.

    Args:
        act: ``(b, 4, 84, 84)`` float32 stacked frames, values 0-255 (oldest first; at an episode's
            start the stack holds copies of the first frame in the default env, zeros in ``dopamine``)
            -> ``(b,)`` action ids (NumPy); greedy, no epsilon.
        eval_env: ``atari.eval_env``, the env of :func:`trainers.domains.atari.env.make_atari_eval_env`
            (default ``d4rl-atari``, LaMo's evaluation env).

    Returns:
        as :func:`evaluate_policy`: ``eval/policy/<field>`` keys (raw return, length, gamer-normalised
        score), ``eval/best_normalised_score``, ``eval/episodes_per_s``.
    """
    def choose(obs: np.ndarray) -> list[int]:
        return [int(a) for a in np.asarray(act(obs.astype(np.float32))).reshape(-1)]

    from trainers.domains.atari.env import game_of, make_atari_eval_env

    return _markov_rollouts(choose, task, episodes, seed, max_episode_steps,
                            make=lambda: make_atari_eval_env(game_of(task.env_id), eval_env))


def _markov_rollouts(choose, task: TaskSpec, episodes: int, seed: int,
                     max_episode_steps: int | None, make=None) -> dict[str, float]:
    """The rollout loop of :func:`evaluate_policy` and :func:`evaluate_discrete_policy`: ``episodes``
    envs of ``task`` (episode i reset with ``seed * 100_003 + i``), stepped together until each ends or
    reaches the horizon (``max_episode_steps`` or ``task.max_ep_len``); ``choose`` maps the raw
    observations of the active episodes ``(b, *obs_shape)`` (the env's dtype) to their ``b`` actions;
    ``make`` builds one env (default: ``make_env(task.env_id)``).

    Returns:
        :func:`evaluation_metrics` with no RTG target (``eval/policy/<field>`` keys).
    """
    from trainers.envs import make_env

    horizon = max_episode_steps or task.max_ep_len
    envs = [make() if make is not None else make_env(task.env_id) for _ in range(episodes)]
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    done = np.zeros(episodes, dtype=bool)
    start = time.perf_counter()
    try:
        obs = np.stack([env.reset(seed=seed * 100_003 + i)[0] for i, env in enumerate(envs)])
        for _ in range(horizon):
            active = np.flatnonzero(~done)
            if active.size == 0:
                break
            actions = choose(obs[active])
            for j, i in enumerate(active):
                o, rew, term, trunc, _ = envs[i].step(actions[j])
                obs[i] = o
                returns[i] += rew
                lengths[i] += 1
                done[i] = term or trunc or lengths[i] >= horizon
    finally:
        for env in envs:
            env.close()
    return evaluation_metrics(task, [None], returns, lengths, time.perf_counter() - start)
