"""Roll out a task's behaviour policies and save the data as a D4RL-layout HDF5 file.

Used by the ``prepare`` step for trials whose data source is ``collected`` (:mod:`trainers.inputs`).

Size and structure (D4RL, Fu et al. 2020, ``d4rl/gym_mujoco``):

* a budget per behaviour policy: ``episodes`` whole episodes, or exactly ``transitions`` rows (D4RL:
  1,000,000); with a transition budget the last episode is cut, so its last row has neither
  ``terminals`` nor ``timeouts`` set (as in D4RL's files);
* episodes run until real termination (``terminals``: Hopper/Walker2d fall) or the task's time limit
  (``timeouts``: the 1000-step limit of the MuJoCo tasks, 100 for Reacher2d), the two never both set;
* ``policy_name`` with ``+`` (e.g. ``"sb3:sac/Hopper-v3+sb3:tqc/Hopper-v3"``): each policy is rolled out
  with its own budget and the parts are concatenated in order (D4RL's medium-expert = medium + expert).
  The cut last episode of every part but the last gets ``timeouts = True`` on its last row: a plain
  concatenation would let trajectory splitting glue it to the next policy's first episode. Only the
  final part's cut episode ends with neither flag.

Vectorised: ``n_envs`` envs are stepped in lockstep with one batched policy call per step (policies with
``batched = True``, the SB3 agents); scripted per-episode policies run one env. Torch runs with one
intra-op thread during collection (restored afterwards): the agents' MLPs are tiny and OpenMP threads
on a busy shared machine made batched calls ~50x slower.

Determinism: episode ``k`` of every policy part resets its env with the ``k``-th seed of
:func:`episode_seeds` and, for stochastic policies, draws its action noise from its own generator
(``SeedSequence(seed, spawn_key=(k,))``), so the noise does not depend on how episodes are scheduled
onto envs. The same arguments (including ``n_envs``) give byte-identical arrays and files. Different
``n_envs`` give statistically equivalent but not identical data: a batched matrix product does not
round exactly like a one-row one, and MuJoCo amplifies such differences. Every part uses the same
``seed``, so a medium-expert file equals the medium file followed by the expert file (except the
boundary ``timeouts`` flag above).

Writes are atomic (temporary file + rename, :func:`trainers.data.d4rl_hdf5.write_d4rl_hdf5`): an
interrupted collection leaves no partial file and is simply re-run.

Reward semantics: rows store the env's reward, except on Franka Kitchen, whose rows store D4RL's
relabelled dataset reward (the number of target subtasks solved in the row's observation,
:func:`trainers.domains.kitchen.env.d4rl_kitchen_rewards`; D4RL ``scripts/generation/generate_kitchen_datasets.py``),
as D4RL's kitchen files do; the reported returns and scores stay in the env's units (subtasks
completed, 0-4), the units of evaluation.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from trainers.data.d4rl_hdf5 import write_d4rl_hdf5
from trainers.data.policies import get_behaviour_policy
from trainers.envs import make_env
from trainers.domains.base import get_domain
from trainers.tasks import get_task

DEFAULT_N_ENVS = 8  # lockstep envs for batched policies: on 2 cores Hopper SAC ran 1.2-1.5x faster than 1 env
# (e.g. 5.4-6.0k vs 3.8-4.5k transitions/s, 20k transitions); 4 and 16 envs were slower than 8.
_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
_DTYPES = {"observations": np.float32, "actions": np.float32, "rewards": np.float32, "terminals": bool,
           "timeouts": bool, "next_observations": np.float32}


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The env reset seed of each episode, derived from ``seed`` (``SeedSequence.generate_state``).

    Prefix-stable: ``episode_seeds(s, n)[:m] == episode_seeds(s, m)`` for ``m <= n``.
    """
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(episodes, dtype=np.uint32)]


class _SeedStream:
    """``episode_seeds(seed, k + 1)[k]`` for any ``k``, generated in growing chunks."""

    def __init__(self, seed: int):
        self.seed, self._seeds = seed, []

    def __getitem__(self, k: int) -> int:
        if k >= len(self._seeds):
            self._seeds = episode_seeds(self.seed, max(2 * len(self._seeds), k + 1, 64))
        return self._seeds[k]


@dataclass
class _Episode:
    """One episode being recorded: rows appended per step, packed into arrays (layout dtypes) by
    :meth:`pack` when it ends or is cut."""

    index: int
    rng: np.random.Generator | None
    obs: np.ndarray
    rows: dict[str, list] = field(default_factory=lambda: {k: [] for k in _KEYS})
    arrays: dict[str, np.ndarray] | None = None
    length: int = 0
    ret: float = 0.0
    done: bool = False

    def __len__(self) -> int:
        return self.length

    def pack(self) -> None:
        self.arrays = {k: np.asarray(v, dtype=_DTYPES[k]) for k, v in self.rows.items()}
        self.rows = {}

    def record(self, action, next_obs, reward, terminated: bool, truncated: bool) -> bool:
        """Append one env step's row (``timeouts`` only when truncated without terminating) and move on
        to ``next_obs``; an episode that ends is marked done and packed. Returns whether it ended."""
        r = self.rows
        r["observations"].append(self.obs)
        r["actions"].append(action)
        r["rewards"].append(reward)
        r["terminals"].append(terminated)
        r["timeouts"].append(truncated and not terminated)
        r["next_observations"].append(next_obs)
        self.ret += float(reward)
        self.length += 1
        self.obs = next_obs
        if terminated or truncated:
            self.done = True
            self.pack()
        return self.done


@dataclass
class PartResult:
    """One behaviour policy's share of a dataset.

    Attributes:
        arrays: the layout keys, N_p rows. returns: raw returns of the *complete* episodes (a cut last
        episode is excluded). trajectories: episodes in the part, the cut one included.
    """

    arrays: dict[str, np.ndarray]
    returns: list[float]
    trajectories: int


def _rollout(task, policy, seed: int, episodes: int | None, transitions: int | None, n_envs: int,
             on_progress) -> PartResult:
    """Collect one policy's part: ``episodes`` whole episodes or exactly ``transitions`` rows.

    Episodes get indices 0, 1, ... in the order they start and are stored in index order. With a
    transition budget a free env starts a new episode only while the rows of all started episodes are
    below the budget, and collection stops once episodes 0..j (complete) plus the in-progress episode
    j + 1 hold the budget; later in-progress episodes are dropped. ``on_progress(steps, episodes)`` is
    called after every lockstep step with the env steps taken and the episodes finished in it.
    """
    batched = bool(getattr(policy, "batched", False))
    if not batched:
        n_envs = 1  # scripted policies keep per-episode state: one env, episodes in sequence
    if episodes is not None:
        n_envs = min(n_envs, episodes)
    stochastic = batched and not getattr(policy, "deterministic", True)
    act_dim = getattr(policy, "act_dim", None)
    horizon = task.dataset.collect_max_steps or task.max_ep_len
    envs = [make_env(task.env_id, max_episode_steps=horizon) for _ in range(n_envs)]
    seeds = _SeedStream(seed)
    slots: list[_Episode | None] = [None] * n_envs
    finished: dict[int, _Episode] = {}
    next_k = 0
    prefix_end, prefix_rows = 0, 0  # episodes 0..prefix_end-1 are finished and hold prefix_rows rows

    def want_new() -> bool:
        if episodes is not None:
            return next_k < episodes
        started = sum(len(e) for e in finished.values()) + sum(len(e) for e in slots if e is not None)
        return started < transitions

    def start(i: int) -> None:
        nonlocal next_k
        k = next_k
        next_k += 1
        obs, _ = envs[i].reset(seed=seeds[k])
        if hasattr(policy, "reset"):
            policy.reset()
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,))) if stochastic else None
        slots[i] = _Episode(k, rng, obs)

    def complete() -> bool:
        if episodes is not None:
            return len(finished) == episodes
        if prefix_rows >= transitions:
            return True
        cur = next((e for e in slots if e is not None and e.index == prefix_end), None)
        return cur is not None and prefix_rows + len(cur) >= transitions

    try:
        for i in range(n_envs):
            if want_new():
                start(i)
        while not complete():
            active = [i for i in range(n_envs) if slots[i] is not None]
            actions = _act(policy, [slots[i] for i in active], batched, stochastic, act_dim)
            for j, i in enumerate(active):
                ep = slots[i]
                next_obs, reward, terminated, truncated, _ = envs[i].step(actions[j])
                if ep.record(actions[j], next_obs, reward, terminated, truncated):
                    finished[ep.index] = ep
                    slots[i] = None
            on_progress(len(active), sum(slots[i] is None for i in active))
            while prefix_end in finished:
                prefix_rows += len(finished[prefix_end])
                prefix_end += 1
            for i in range(n_envs):
                if slots[i] is None and not complete() and want_new():
                    start(i)
    finally:
        for env in envs:
            env.close()
    return _assemble(finished, [e for e in slots if e is not None], episodes, transitions)


def _act(policy, eps: list[_Episode], batched: bool, stochastic: bool, act_dim: int | None):
    """The actions of the running episodes ``eps``, in order: one batched policy call on their stacked
    observations (with each episode's own standard-normal noise, ``(len(eps), act_dim)``, when
    ``stochastic``), else one call per episode."""
    if batched:
        obs = np.stack([ep.obs for ep in eps])
        noise = np.stack([ep.rng.standard_normal(act_dim) for ep in eps]) if stochastic else None
        return policy(obs, noise=noise) if stochastic else policy(obs)
    return [policy(ep.obs) for ep in eps]


def _assemble(finished: dict[int, _Episode], running: list[_Episode], episodes: int | None,
              transitions: int | None) -> PartResult:
    """One policy's :class:`PartResult` from its ``finished`` episodes (by index) and those still
    ``running`` when collection stopped: episodes 0..``episodes``-1, or episodes in index order cut to
    exactly ``transitions`` rows (see :func:`_rollout`)."""
    if episodes is not None:
        order, returns = [finished[k] for k in range(episodes)], None
    else:
        # Episodes 0, 1, ... in index order until they hold the budget. The last one is cut unless it
        # ends exactly at the budget; it may be in progress, or finished but longer than needed (the
        # prefix can jump past the budget when a long episode finishes after shorter later ones).
        in_progress = {e.index: e for e in running}
        order, rows = [], 0
        while rows < transitions:
            ep = finished.get(len(order)) or in_progress[len(order)]
            order.append(ep)
            rows += len(ep)
        last = order[-1]
        if last.arrays is None:
            last.pack()  # in progress: no terminal/timeout row yet
        whole = last.done and rows == transitions
        returns = [e.ret for e in (order if whole else order[:-1])]
    arrays = {k: np.concatenate([e.arrays[k] for e in order]) for k in _KEYS}
    if transitions is not None:
        arrays = {k: v[:transitions] for k, v in arrays.items()}
    return PartResult(arrays, returns if returns is not None else [e.ret for e in order], len(order))


@contextlib.contextmanager
def _torch_single_thread(enabled: bool):
    if not enabled:
        yield
        return
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _stats(task, returns: list[float]) -> dict[str, float]:
    if not returns:
        return {"mean_return": float("nan"), "std_return": float("nan"), "mean_normalised_score": float("nan")}
    mean = float(np.mean(returns))
    return {"mean_return": mean, "std_return": float(np.std(returns)),
            "mean_normalised_score": task.normalised_score(mean)}


def _resolve_budget(task_name: str, task, policy_name: str | None, episodes: int | None, transitions: int | None,
                    n_envs: int) -> tuple[str, int | None, int | None]:
    """``(policy_name, episodes, transitions)`` of a collection, defaults from ``task.dataset``.

    Exactly one of the returned ``episodes`` / ``transitions`` is set (a task giving both uses
    ``episodes``); it is the budget per behaviour policy.

    Raises:
        ValueError: no behaviour policy (argument or task), both budgets given, a budget < 1 (also a
            task's own), or ``n_envs`` < 1.
    """
    policy_name = policy_name or task.dataset.behaviour_policy
    if policy_name is None:
        raise ValueError(f"task {task_name!r} has no behaviour policy; pass policy_name explicitly")
    if episodes is not None and transitions is not None:
        raise ValueError("give either episodes or transitions, not both")
    if episodes is None and transitions is None:
        episodes, transitions = task.dataset.episodes, task.dataset.transitions
        if episodes is not None and transitions is not None:
            transitions = None
    budget = episodes if episodes is not None else transitions
    if budget is None or budget < 1:
        what = "episodes" if episodes is not None else "transitions"
        raise ValueError(f"{what} must be >= 1, got {budget}")
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    return policy_name, episodes, transitions


def _collect_parts(task_name: str, task, names: list[str], policies: list, seed: int, episodes: int | None,
                   transitions: int | None, n_envs: int, progress: bool, batched: bool) -> list[PartResult]:
    """Roll out each behaviour policy in turn (:func:`_rollout`), one :class:`PartResult` per policy.

    ``progress`` shows one ``rich`` bar, labelled ``task_name`` and the policy, over all parts (unit:
    transitions with a transition budget, else episodes; total ``budget × len(policies)``). With
    ``batched`` (any policy batched) torch runs with one intra-op thread meanwhile
    (:func:`_torch_single_thread`).
    """
    budget = episodes if episodes is not None else transitions
    unit = "transitions" if transitions is not None else "episodes"
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn(unit), TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not progress,
    )
    parts: list[PartResult] = []
    with bar, _torch_single_thread(batched):
        job = bar.add_task(f"collect {escape(task_name)}", total=budget * len(policies))
        for p_idx, policy in enumerate(policies):
            part_of = f" ({p_idx + 1}/{len(policies)})" if len(policies) > 1 else ""
            bar.update(job, description=f"collect {escape(task_name)} {escape(names[p_idx])}{part_of}")
            done = [0]

            def on_progress(steps: int, finished: int, _base: int = p_idx * budget) -> None:
                done[0] += steps if transitions is not None else finished
                bar.update(job, completed=_base + min(done[0], budget))

            parts.append(_rollout(task, policy, seed, episodes, transitions, n_envs, on_progress))
            bar.update(job, completed=(p_idx + 1) * budget)
    return parts


def _join_parts(task, parts: list[PartResult]) -> tuple[dict[str, np.ndarray], str | None]:
    """``(data, reward_note)``: the parts' arrays concatenated in order, rewards relabelled by the domain.

    Every part but the last whose final row has neither flag (a cut episode) gets ``timeouts = True``
    there, in place, so no trajectory spans two policies (module docstring). ``reward_note`` is the
    domain's :meth:`~trainers.domains.base.Domain.relabel_rewards` note (``None``: env rewards kept).
    """
    for part in parts[:-1]:  # part boundary: end a cut episode there so no trajectory spans two policies
        if not (part.arrays["terminals"][-1] or part.arrays["timeouts"][-1]):
            part.arrays["timeouts"][-1] = True
    data = {k: np.concatenate([p.arrays[k] for p in parts]) for k in _KEYS}
    reward_note = get_domain(task.domain).relabel_rewards(task, data)
    return data, reward_note


def _summaries(task, names: list[str], parts: list[PartResult]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """``(per_policy, overall)``: one dict per part (name, transitions, trajectories, complete_episodes and
    :func:`_stats`) and :func:`_stats` over the complete episodes of all parts (raw env-reward returns)."""
    per_policy = [
        {"name": name, "transitions": int(len(p.arrays["rewards"])), "trajectories": p.trajectories,
         "complete_episodes": len(p.returns), **_stats(task, p.returns)}
        for name, p in zip(names, parts)
    ]
    return per_policy, _stats(task, [r for p in parts for r in p.returns])


def collect_dataset(
    task_name: str,
    out_path: str | os.PathLike,
    episodes: int | None = None,
    seed: int = 0,
    policy_name: str | None = None,
    progress: bool = True,
    transitions: int | None = None,
    n_envs: int = DEFAULT_N_ENVS,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Collect a task's dataset from its behaviour policies and write it to ``out_path``.

    Args:
        task_name: a registry task (``trainers.tasks``); envs are built with
            ``max_episode_steps=task.dataset.collect_max_steps or task.max_ep_len``.
        out_path: destination ``.hdf5`` (written atomically; layout in :mod:`trainers.data.d4rl_hdf5`).
        episodes: whole episodes per behaviour policy, or
        transitions: rows per behaviour policy (the last episode is cut). Give at most one; with neither,
            the task's ``dataset.episodes`` / ``dataset.transitions`` is used.
        seed: master seed for env resets and action noise (the same for every ``+`` part).
        policy_name: behaviour policy name(s) (:mod:`trainers.data.policies`), ``+``-joined parts are
            concatenated; default: the task's ``dataset.behaviour_policy``.
        progress: show a ``rich`` progress bar (unit: transitions with a transition budget, else episodes).
        n_envs: envs stepped in lockstep for batched policies (1 for scripted ones).
        data_dir: the data directory whose agent cache ``sb3_agents/`` SB3 policies are looked up in
            (:func:`trainers.paths.sb3_agent_roots`); ``None``: ``$LAMO_SB3_AGENTS_DIR`` or the mirror.

    Rows store the env's rewards, except kitchen: D4RL's relabelled step rewards
    (the domain's :meth:`~trainers.domains.base.Domain.relabel_rewards`; Kitchen: returns in the hundreds, as D4RL's kitchen files).

    File attributes: env_id, task, behaviour_policy, seed, episodes (trajectories in the file, a cut
    one included), mean_return and mean_normalised_score (env-reward returns, the evaluation's units,
    over the complete episodes of all parts), ``rewards`` (where the domain relabels them, its note),
    created_by, transitions, n_envs, and ``policies``: one dict per part with name, transitions,
    trajectories, complete_episodes, mean_return, std_return, mean_normalised_score.

    Returns:
        ``{episodes, transitions, mean_return, std_return, mean_normalised_score, seconds,
        transitions_per_second, n_envs, policies}`` (``policies`` as in the attributes). Returns are raw
        (undiscounted sums of env rewards); scores are ``task.normalised_score(mean_return)`` (0 = D4RL
        random, 100 = D4RL expert reference). Means are NaN when a part has no complete episode.

    Raises:
        KeyError: unknown task or policy. ValueError: a budget < 1, both budgets given, or no
        behaviour policy. FileNotFoundError / ImportError: an SB3 agent or its packages are missing
        (:func:`trainers.data.policies.get_behaviour_policy`).
    """
    task = get_task(task_name)
    policy_name, episodes, transitions = _resolve_budget(task_name, task, policy_name, episodes, transitions, n_envs)
    names = [p.strip() for p in policy_name.split("+")]
    policies = [get_behaviour_policy(name, seed, data_dir=data_dir) for name in names]  # fail fast, before any rollout
    batched = any(getattr(p, "batched", False) for p in policies)

    t0 = time.perf_counter()
    parts = _collect_parts(task_name, task, names, policies, seed, episodes, transitions, n_envs, progress, batched)
    seconds = time.perf_counter() - t0

    data, reward_note = _join_parts(task, parts)
    per_policy, overall = _summaries(task, names, parts)
    n_rows = int(len(data["rewards"]))
    n_traj = sum(p.trajectories for p in parts)
    used_envs = n_envs if batched else 1
    write_d4rl_hdf5(
        out_path,
        data,
        {
            "env_id": task.env_id,
            "task": task.name,
            "behaviour_policy": policy_name,
            "seed": int(seed),
            "episodes": int(n_traj),
            "mean_return": overall["mean_return"],
            "mean_normalised_score": overall["mean_normalised_score"],
            "created_by": "lamo-sweep",
            "transitions": n_rows,
            "n_envs": int(used_envs),
            "policies": per_policy,
            **({"rewards": reward_note} if reward_note else {}),
        },
    )
    return {
        "episodes": n_traj,
        "transitions": n_rows,
        **overall,
        "seconds": seconds,
        "transitions_per_second": n_rows / seconds if seconds > 0 else float("nan"),
        "n_envs": used_envs,
        "policies": per_policy,
    }
