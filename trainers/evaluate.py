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

Every evaluation of the project steps its environments in one loop, :func:`run_episodes` (env seeds,
horizon, episode lengths and returns); what differs is a :class:`RolloutPolicy`: the Decision
Transformer's context here (:func:`evaluate`), a Markov policy (:func:`evaluate_policy`,
:func:`evaluate_discrete_policy`: the d3rlpy baselines), the Atari model's frame context
(:func:`trainers.domains.atari.learner.evaluate_atari`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from trainers import contract
from trainers.tasks import TaskSpec


class RolloutPolicy(Protocol):
    """What :func:`run_episodes` asks of whatever chooses the actions (a sequence model with its context,
    a Markov policy). The loop owns the environments, seeds, horizon, lengths and returns; the policy owns
    its context (histories, return-to-go, frame embeddings) and how an action is chosen from it.

    ``n`` is the number of episodes, ``b`` the number still running at step ``t`` (``active``: their
    indices, ascending); observations have the env's shape and dtype (stacked from the first reset).
    """

    def start(self, obs: np.ndarray, horizon: int) -> None:
        """The ``(n, *obs_shape)`` first observations, before step 0; ``horizon``: the most steps an
        episode can take."""

    def act(self, t: int, active: np.ndarray, obs: np.ndarray, returns: np.ndarray) -> Sequence:
        """The ``b`` actions of step ``t``, one per active episode, each passed to ``env.step`` as is;
        ``obs`` ``(b, *obs_shape)``: their latest observations; ``returns`` ``(b,)`` float64: their raw
        returns so far."""

    def observe(self, t: int, active: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        """After step ``t``: the active episodes' new observations ``(b, *obs_shape)`` and raw rewards
        ``(b,)`` float64 (an episode that ended here is still in ``active``; it is left out from the next
        step on)."""


def run_episodes(policy: RolloutPolicy, task: TaskSpec, targets: list, episodes: int, seed: int,
                 max_episode_steps: int | None = None, make=None, first_episode: int = 0) -> dict[str, float]:
    """The one rollout loop of every evaluation (:func:`evaluate`, :func:`evaluate_policy`,
    :func:`evaluate_discrete_policy`, :func:`trainers.domains.atari.learner.evaluate_atari`).

    ``len(targets) * episodes`` environments (target-major: episode ``i`` belongs to target
    ``i // episodes``) are built with ``make`` (default ``make_env(task.env_id)``), reset in order with seed
    ``seed * 100_003 + first_episode + i % episodes`` (so every target is compared on the same initial
    states, and ``episodes=1, first_episode=i`` replays episode ``i`` of a vectorised call), then stepped
    together: per step, one :meth:`RolloutPolicy.act` for all running episodes, ``env.step`` of each in
    index order, then :meth:`RolloutPolicy.observe`. An episode ends when the env terminates or truncates,
    or after the horizon (``max_episode_steps``, default ``task.max_ep_len``) steps; it then drops out of
    the batch. The environments are closed whatever happens.

    Args:
        policy: a :class:`RolloutPolicy`.
        targets: the RTG targets (raw return), or ``[None]`` for a policy without one.

    Returns:
        :func:`evaluation_metrics` of the episodes' raw returns and lengths (env steps).
    """
    from trainers.envs import make_env

    horizon = max_episode_steps or task.max_ep_len
    n = len(targets) * episodes
    envs = [make() if make is not None else make_env(task.env_id) for _ in range(n)]
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    start = time.perf_counter()
    try:
        obs = np.stack([env.reset(seed=seed * 100_003 + first_episode + i % episodes)[0]
                        for i, env in enumerate(envs)])
        policy.start(obs, horizon)
        for t in range(horizon):
            active = np.flatnonzero(~done)
            if active.size == 0:
                break
            actions = policy.act(t, active, obs[active], returns[active])
            rewards = np.empty(len(active))
            ended = np.empty(len(active), dtype=bool)
            for j, i in enumerate(active):
                o, rew, term, trunc, _ = envs[i].step(actions[j])
                obs[i], rewards[j], ended[j] = o, rew, term or trunc
            returns[active] += rewards
            lengths[active] += 1
            done[active] = ended | (lengths[active] >= horizon)
            policy.observe(t, active, obs[active], rewards)
    finally:
        for env in envs:
            env.close()
    return evaluation_metrics(task, targets, returns, lengths, time.perf_counter() - start)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """``model`` in eval mode inside the block, its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class _StateContext:
    """The Decision Transformer's side of :func:`evaluate` (:class:`RolloutPolicy`): histories on the host
    in NumPy, per step the K-step context of the running episodes, left-padded and masked, moved to
    ``device``; the executed action is the prediction clamped to the control range [-1, 1]; the RTG starts
    at ``target / rtg_scale`` and drops by ``reward / rtg_scale``."""

    def __init__(self, model, task: TaskSpec, targets: list[float], episodes: int, state_mean: np.ndarray,
                 state_std: np.ndarray, context_length: int, rtg_scale: float, device):
        self.model, self.K, self.rtg_scale, self.device = model, context_length, rtg_scale, device
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        self.mean = np.asarray(state_mean, dtype=np.float32)
        self.std = np.asarray(state_std, dtype=np.float32)
        self.target = np.array([targets[i // episodes] for i in range(len(targets) * episodes)], np.float64)

    def start(self, obs: np.ndarray, horizon: int) -> None:
        n = len(obs)
        self.states = np.zeros((n, horizon + 1, self.obs_dim), dtype=np.float32)
        self.actions = np.zeros((n, horizon, self.act_dim), dtype=np.float32)
        self.rtg = np.zeros((n, horizon + 1), dtype=np.float32)
        self.states[:, 0] = obs
        self.rtg[:, 0] = self.target / self.rtg_scale

    def act(self, t: int, active: np.ndarray, obs: np.ndarray, returns: np.ndarray) -> np.ndarray:
        K = self.K
        lo = max(0, t + 1 - K)
        n_real = t + 1 - lo
        b = len(active)
        s = np.zeros((b, K, self.obs_dim), dtype=np.float32)
        a = np.zeros((b, K, self.act_dim), dtype=np.float32)
        r = np.zeros((b, K, 1), dtype=np.float32)
        ts = np.zeros((b, K), dtype=np.int64)
        m = np.zeros((b, K), dtype=np.float32)
        s[:, K - n_real:] = (self.states[active, lo:t + 1] - self.mean) / self.std
        a[:, K - n_real:K - 1] = self.actions[active, lo:t]  # the current step's action slot stays 0
        r[:, K - n_real:, 0] = self.rtg[active, lo:t + 1]
        ts[:, K - n_real:] = np.arange(lo, t + 1)
        m[:, K - n_real:] = 1.0
        pred = self.model(*(torch.from_numpy(x).to(self.device) for x in (s, a, r, ts, m)))[:, -1]
        act_np = pred.clamp(-1.0, 1.0).float().cpu().numpy()  # executed action; control range [-1, 1]
        self.actions[active, t] = act_np
        return act_np

    def observe(self, t: int, active: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        self.states[active, t + 1] = obs
        self.rtg[active, t + 1] = self.rtg[active, t] - rewards / self.rtg_scale


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
    policy = _StateContext(model, task, targets, episodes, state_mean, state_std, context_length, rtg_scale,
                           device)
    with eval_mode(model):
        return run_episodes(policy, task, targets, episodes, seed, max_episode_steps,
                            first_episode=first_episode)


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

    return run_episodes(_Markov(choose), task, [None], episodes, seed, max_episode_steps)


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

    return run_episodes(_Markov(choose), task, [None], episodes, seed, max_episode_steps,
                        make=lambda: make_atari_eval_env(game_of(task.env_id), eval_env))


class _Markov:
    """A Markov policy as a :class:`RolloutPolicy`: ``choose`` maps the running episodes' latest
    observations ``(b, *obs_shape)`` to their ``b`` actions; no context."""

    def __init__(self, choose):
        self.choose = choose

    def start(self, obs: np.ndarray, horizon: int) -> None:
        pass

    def act(self, t: int, active: np.ndarray, obs: np.ndarray, returns: np.ndarray):
        return self.choose(obs)

    def observe(self, t: int, active: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        pass
