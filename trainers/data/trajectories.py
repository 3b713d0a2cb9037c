"""Trajectory-level subsampling, state normalisation and DT batch sampling.

Follows LaMo's D4RL pipeline (``docs/lamo_recipe.md`` §4; official code github.com/srzer/LaMo-2023
``data/mujoco/ratio_dataset.py`` for the subsets and ``experiment-d4rl/experiment.py`` for statistics and
batches, which keeps the original DT's ``gym/experiment.py``):

* **Sample ratio** = a uniformly random subset of *whole trajectories*, ``max(1, int(N * ratio))`` of
  them, drawn without replacement (LaMo: ``random.sample(trajs, int(N*ratio))``). Unlike LaMo (unseeded)
  the draw is seeded, and the chosen indices and their hash are returned so they can be logged.
* **State mean/std** (+1e-6) are computed over the subset actually used.
* **Batches**: a trajectory is picked with probability proportional to its length, a start index
  uniformly in the trajectory, and up to K steps are taken. Short windows are left-padded: states with
  zeros *before* normalisation, actions with -10, return-to-go with 0, timesteps with 0, mask 0.
  The return-to-go is the undiscounted suffix sum of rewards divided by the RTG scale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


def subsample_trajectories(n_trajectories: int, sample_ratio: float, seed: int) -> np.ndarray:
    """Choose the trajectories kept at ``sample_ratio``.

    Returns:
        sorted int64 indices, ``max(1, int(n_trajectories * sample_ratio))`` of them (all of them at
        ratio 1).

    Raises:
        ValueError: if ``sample_ratio`` is not in (0, 1] or there are no trajectories.
    """
    if not 0.0 < sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be in (0, 1], got {sample_ratio}")
    if n_trajectories < 1:
        raise ValueError("the dataset holds no trajectories")
    if sample_ratio == 1.0:
        return np.arange(n_trajectories, dtype=np.int64)
    n_keep = max(1, int(n_trajectories * sample_ratio))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_trajectories, size=n_keep, replace=False)).astype(np.int64)


def indices_hash(indices: np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of the int64 index array (the data-subset identity)."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def returns_to_go_of(rewards: np.ndarray) -> np.ndarray:
    """Undiscounted return-to-go: ``rtg[t] = sum_{t' >= t} r[t']``. ``(T,) -> (T,)`` raw-return units."""
    return np.cumsum(rewards[::-1], dtype=np.float64)[::-1].astype(np.float32)


@dataclass
class TrajectorySet:
    """The trajectories one trial trains on.

    Attributes:
        trajectories: list of dicts with ``observations (T, obs_dim)``, ``actions (T, act_dim)``,
            ``rewards (T,)`` (raw units), ``rtg (T,)`` (raw return-to-go).
        indices: indices of these trajectories in the full dataset.
        state_mean / state_std: ``(obs_dim,)`` statistics of the subset (std + 1e-6).
    """

    trajectories: list[dict[str, np.ndarray]]
    indices: np.ndarray
    state_mean: np.ndarray
    state_std: np.ndarray

    @classmethod
    def from_trajectories(cls, all_trajectories: list[dict[str, np.ndarray]], sample_ratio: float,
                          seed: int) -> "TrajectorySet":
        idx = subsample_trajectories(len(all_trajectories), sample_ratio, seed)
        trajs = []
        for i in idx:
            t = all_trajectories[int(i)]
            trajs.append({
                "observations": np.asarray(t["observations"], dtype=np.float32),
                "actions": np.asarray(t["actions"], dtype=np.float32),
                "rewards": np.asarray(t["rewards"], dtype=np.float32),
                "rtg": returns_to_go_of(np.asarray(t["rewards"], dtype=np.float32)),
            })
        states = np.concatenate([t["observations"] for t in trajs], axis=0)
        return cls(trajs, idx, states.mean(0).astype(np.float32), (states.std(0) + 1e-6).astype(np.float32))

    @property
    def subset_hash(self) -> str:
        return indices_hash(self.indices)

    @property
    def n_transitions(self) -> int:
        return int(sum(len(t["rewards"]) for t in self.trajectories))

    def summary(self) -> dict[str, float]:
        """Size and mean raw return of the subset."""
        returns = [float(t["rewards"].sum()) for t in self.trajectories]
        return {"n_trajectories": len(self.trajectories), "n_transitions": self.n_transitions,
                "mean_return": float(np.mean(returns))}


class BatchSampler:
    """Samples DT training windows from a :class:`TrajectorySet` with a seeded NumPy generator.

    ``sample(batch_size)`` returns a dict of float32/int64 torch tensors: ``states (B, K, obs_dim)``
    (normalised), ``actions (B, K, act_dim)``, ``returns_to_go (B, K, 1)`` (RTG / scale),
    ``timesteps (B, K)`` (long), ``attention_mask (B, K)``.
    The generator state is exposed via :meth:`state_dict` for exact resume.
    """

    def __init__(self, data: TrajectorySet, context_length: int, rtg_scale: float, max_ep_len: int,
                 seed: int):
        self.data, self.K, self.scale, self.max_ep_len = data, context_length, rtg_scale, max_ep_len
        lengths = np.array([len(t["rewards"]) for t in data.trajectories], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        K, d = self.K, self.data
        obs_dim = d.trajectories[0]["observations"].shape[1]
        act_dim = d.trajectories[0]["actions"].shape[1]
        s = np.zeros((batch_size, K, obs_dim), np.float32)
        a = np.full((batch_size, K, act_dim), -10.0, np.float32)
        r = np.zeros((batch_size, K, 1), np.float32)
        ts = np.zeros((batch_size, K), np.int64)
        m = np.zeros((batch_size, K), np.float32)
        which = self.rng.choice(len(d.trajectories), size=batch_size, p=self.p)
        for b, ti in enumerate(which):
            traj = d.trajectories[int(ti)]
            T = len(traj["rewards"])
            start = int(self.rng.integers(0, T))
            end = min(start + K, T)
            n = end - start
            s[b, K - n:] = traj["observations"][start:end]
            a[b, K - n:] = traj["actions"][start:end]
            r[b, K - n:, 0] = traj["rtg"][start:end] / self.scale
            ts[b, K - n:] = np.minimum(np.arange(start, end), self.max_ep_len - 1)
            m[b, K - n:] = 1.0
        s = (s - d.state_mean) / d.state_std  # padding normalised too (zeros before normalisation, as LaMo)
        return {
            "states": torch.from_numpy(s), "actions": torch.from_numpy(a), "returns_to_go": torch.from_numpy(r),
            "timesteps": torch.from_numpy(ts), "attention_mask": torch.from_numpy(m),
        }

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
