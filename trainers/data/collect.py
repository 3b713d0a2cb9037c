"""Roll out a task's behaviour policy and save the episodes as a D4RL-layout HDF5 file.

Used by the ``prepare`` step for tasks whose dataset source is ``kind="collected"`` (trainers.tasks).
Determinism: episode ``i`` resets the env with the ``i``-th seed of ``SeedSequence(seed)`` and the policy
RNG is seeded with ``seed``, so the same arguments give byte-identical arrays (and files).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trainers.data.d4rl_hdf5 import write_d4rl_hdf5
from trainers.data.policies import get_behaviour_policy
from trainers.envs import make_env
from trainers.tasks import get_task


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The env reset seed of each episode, derived from ``seed`` (``SeedSequence.generate_state``)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(episodes, dtype=np.uint32)]


def collect_dataset(
    task_name: str,
    out_path: str | os.PathLike,
    episodes: int,
    seed: int,
    policy_name: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Collect ``episodes`` full episodes of ``task_name`` and write them to ``out_path``.

    Args:
        task_name: a registry task (``trainers.tasks``); its env is built with
            ``max_episode_steps=task.max_ep_len``.
        out_path: destination ``.hdf5`` (written atomically; layout in :mod:`trainers.data.d4rl_hdf5`).
        episodes: number of episodes (each runs until termination or the time limit).
        seed: master seed for env resets and the policy RNG.
        policy_name: behaviour policy (:mod:`trainers.data.policies`); default: the task's
            ``dataset.behaviour_policy``.
        progress: show a ``rich`` progress bar.

    Rows: ``timeouts`` is True on the last step of an episode cut by the time limit, ``terminals`` only
    on real env termination. File attributes: env_id, task, behaviour_policy, seed, episodes,
    mean_return, mean_normalised_score, created_by.

    Returns:
        ``{episodes, transitions, mean_return, std_return, mean_normalised_score, seconds}``; returns are
        raw (undiscounted sums of env rewards), the score is ``task.normalised_score(mean_return)`` (0-100).

    Raises:
        KeyError: unknown task or policy. ValueError: ``episodes < 1`` or no policy for the task.
    """
    task = get_task(task_name)
    policy_name = policy_name or task.dataset.behaviour_policy
    if policy_name is None:
        raise ValueError(f"task {task_name!r} has no behaviour policy; pass policy_name explicitly")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    policy = get_behaviour_policy(policy_name, seed)
    env = make_env(task.env_id, max_episode_steps=task.max_ep_len)

    cols: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts",
                                             "next_observations")}
    returns = []
    t0 = time.perf_counter()
    bar = Progress(
        TextColumn(f"collect {task_name} [{policy_name}]"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), disable=not progress,
    )
    with bar:
        job = bar.add_task("episodes", total=episodes)
        for ep_seed in episode_seeds(seed, episodes):
            obs, _ = env.reset(seed=ep_seed)
            if hasattr(policy, "reset"):
                policy.reset()
            ep_return, done = 0.0, False
            while not done:
                action = policy(obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
                cols["observations"].append(obs)
                cols["actions"].append(action)
                cols["rewards"].append(reward)
                cols["terminals"].append(terminated)
                cols["timeouts"].append(truncated and not terminated)
                cols["next_observations"].append(next_obs)
                ep_return += float(reward)
                obs = next_obs
            returns.append(ep_return)
            bar.advance(job)
    env.close()

    data = {
        "observations": np.asarray(cols["observations"], dtype=np.float32),
        "actions": np.asarray(cols["actions"], dtype=np.float32),
        "rewards": np.asarray(cols["rewards"], dtype=np.float32),
        "terminals": np.asarray(cols["terminals"], dtype=bool),
        "timeouts": np.asarray(cols["timeouts"], dtype=bool),
        "next_observations": np.asarray(cols["next_observations"], dtype=np.float32),
    }
    mean_return = float(np.mean(returns))
    score = task.normalised_score(mean_return)
    write_d4rl_hdf5(
        out_path,
        data,
        {
            "env_id": task.env_id,
            "task": task.name,
            "behaviour_policy": policy_name,
            "seed": int(seed),
            "episodes": int(episodes),
            "mean_return": mean_return,
            "mean_normalised_score": score,
            "created_by": "lamo-sweep",
        },
    )
    return {
        "episodes": episodes,
        "transitions": len(data["rewards"]),
        "mean_return": mean_return,
        "std_return": float(np.std(returns)),
        "mean_normalised_score": score,
        "seconds": time.perf_counter() - t0,
    }
