"""Collect the locally generated Franka Kitchen datasets and measure them.

Per dataset: trajectories, transitions, mean env return (= subtasks completed, 0..4, what the env pays
and evaluation reports), normalised score (100 x return / 4, D4RL ``d4rl/infos.py`` reference 0..4), the
mean dataset return (the sum of the stored rows' rewards: D4RL's relabelled step rewards, in the
hundreds; ``trainers.domains.kitchen.env.d4rl_kitchen_rewards``), the share of episodes that completed each
target subtask (a subtask's joints within 0.3 of its goal at any step, the env's own rule:
``FrankaKitchen-v1`` / D4RL ``BONUS_THRESH``), the share that completed all four in D4RL's order, and
the collection speed. Results: ``docs/benchmarks.md`` ("Kitchen").

    .venv/bin/python benchmarks/kitchen_data.py --out /tmp/kitchen --episodes 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from trainers.data.collect import collect_dataset
from trainers.data.d4rl_hdf5 import load_d4rl_hdf5, split_trajectories
from trainers.domains.kitchen.env import KITCHEN_TASKS, goal_vector
from trainers.tasks import get_task


def completion_steps(obs: np.ndarray) -> dict[str, int | None]:
    """First row at which each target subtask is within 0.3 of its goal (``None``: never).

    Args:
        obs: ``(T, 60)`` D4RL-layout kitchen observations of one episode.
    """
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import (BONUS_THRESH, OBS_ELEMENT_GOALS,
                                                                    OBS_ELEMENT_INDICES)

    out = {}
    for t in KITCHEN_TASKS:
        dist = np.linalg.norm(obs[:, OBS_ELEMENT_INDICES[t]] - OBS_ELEMENT_GOALS[t], axis=1)
        hit = np.flatnonzero(dist < BONUS_THRESH)
        out[t] = int(hit[0]) if hit.size else None
    return out


def measure(path: Path) -> dict:
    """The statistics of the module docstring for one D4RL-layout kitchen file."""
    data = load_d4rl_hdf5(path, obs_dim=60, act_dim=9)
    trajs = split_trajectories(data)
    assert np.allclose(trajs[0]["observations"][0, 30:], goal_vector())
    rows = []
    for tr in trajs:
        obs = np.vstack([tr["observations"], tr["next_observations"][-1:]]) if "next_observations" in tr \
            else tr["observations"]
        steps = completion_steps(obs)
        done = [steps[t] for t in KITCHEN_TASKS]
        in_order = all(s is not None for s in done) and done == sorted(done)
        env_return = sum(s is not None for s in done)  # the env pays +1 once per subtask
        rows.append((steps, float(env_return), in_order, len(tr["rewards"]), float(np.sum(tr["rewards"]))))
    n = len(rows)
    ret = np.array([r[1] for r in rows])
    return {
        "file": str(path), "trajectories": n, "transitions": int(sum(r[3] for r in rows)),
        "mean_length": float(np.mean([r[3] for r in rows])),
        "mean_return": float(ret.mean()), "normalised_score": float(100.0 * ret.mean() / 4.0),
        "mean_dataset_return": float(np.mean([r[4] for r in rows])),
        "subtask_success": {t: sum(r[0][t] is not None for r in rows) / n for t in KITCHEN_TASKS},
        "all_four_in_order": sum(r[2] for r in rows) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--episodes", type=int, default=None, help="per dataset (default: the task's)")
    ap.add_argument("--tasks", nargs="+", default=["kitchen-complete", "kitchen-partial"])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.tasks:
        task = get_task(name)
        path = args.out / f"{task.dataset.collected_name}.hdf5"
        info = collect_dataset(name, path, episodes=args.episodes or task.dataset.episodes, seed=0, progress=False)
        stats = measure(path)
        stats.update(seconds=round(info["seconds"], 1), transitions_per_s=round(info["transitions_per_second"], 1))
        print(json.dumps({name: stats}))


if __name__ == "__main__":
    main()
