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


def subsample_trajectories(n_trajectories: int, sample_ratio: float, seed: int,
                           weights: np.ndarray | None = None) -> np.ndarray:
    """Choose the trajectories kept at ``sample_ratio``: ``max(1, int(n * ratio))`` drawn without
    replacement by ``numpy.random.default_rng(seed)``, uniformly (LaMo's D4RL subset,
    ``data/mujoco/ratio_dataset.py``) or with probability proportional to ``weights`` ``(n,)`` (LaMo's
    Atari subset weights trajectories by length, ``experiment-atari``).

    Returns:
        sorted int64 indices (all of them at ratio 1).

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
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    return np.sort(rng.choice(n_trajectories, size=n_keep, replace=False, p=p)).astype(np.int64)


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
        """Keep the subset :func:`subsample_trajectories` picks and compute its state statistics.

        Args:
            all_trajectories: every trajectory of the dataset, dicts with ``observations (T, obs_dim)``,
                ``actions (T, act_dim)`` and ``rewards (T,)`` (raw reward units), e.g. from
                :func:`trainers.data.d4rl_hdf5.split_trajectories`.
            sample_ratio: fraction of whole trajectories to keep, in (0, 1] (``docs/lamo_recipe.md`` §4.2).
            seed: seed of the subset draw.

        Returns:
            the subset as float32 arrays plus ``rtg (T,)`` (:func:`returns_to_go_of`, raw units), with
            ``state_mean`` and ``state_std`` (+1e-6) over all states of the subset (LaMo and DT compute
            them on the data actually loaded, ``docs/lamo_recipe.md`` §4.3).

        Raises:
            ValueError: ``sample_ratio`` outside (0, 1] or no trajectories.
        """
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
        """:func:`indices_hash` of :attr:`indices`: identifies the data subset (logged with the run)."""
        return indices_hash(self.indices)

    @property
    def n_transitions(self) -> int:
        """Number of transitions (env steps) over all trajectories of the subset."""
        return int(sum(len(t["rewards"]) for t in self.trajectories))

    def summary(self) -> dict[str, float]:
        """Size and mean raw return of the subset."""
        returns = [float(t["rewards"].sum()) for t in self.trajectories]
        return {"n_trajectories": len(self.trajectories), "n_transitions": self.n_transitions,
                "mean_return": float(np.mean(returns))}


class BatchSampler:
    """Samples DT training windows from a :class:`TrajectorySet` with a seeded NumPy generator.

    The sampling scheme is the original DT's ``get_batch`` (github.com/kzl/decision-transformer,
    ``gym/experiment.py``), which LaMo keeps (github.com/srzer/LaMo-2023, ``experiment-d4rl/
    experiment.py``); ``docs/lamo_recipe.md`` §4.4. Unlike the official code, which draws from NumPy's
    unseeded global generator, every draw comes from this object's own generator, so a batch sequence
    is reproducible from ``seed`` and resumable through :meth:`state_dict`.

    Args:
        data: the trajectories to sample from (non-empty; each trajectory at least one step).
        context_length: K, steps per window.
        rtg_scale: the task's RTG divisor (LaMo: 1000 MuJoCo, 10 Reacher2d, 1 Kitchen;
            ``docs/lamo_recipe.md`` §4.3).
        max_ep_len: size of the model's timestep table; timesteps are clipped to ``max_ep_len - 1``.
        seed: seed of the generator (``numpy.random.default_rng``).

    Attributes:
        p: ``(n_trajectories,)`` float64, the probability of drawing each trajectory (its share of all
            steps).
        rng: the generator.
    """

    def __init__(self, data: TrajectorySet, context_length: int, rtg_scale: float, max_ep_len: int,
                 seed: int):
        self.data, self.K, self.scale, self.max_ep_len = data, context_length, rtg_scale, max_ep_len
        lengths = np.array([len(t["rewards"]) for t in data.trajectories], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Draw ``batch_size`` windows of (up to) K consecutive steps.

        Per window: a trajectory with probability proportional to its length (:attr:`p`), a start index
        uniform over all of its steps, then the steps ``start .. min(start + K, T) - 1``. A window that
        runs past the trajectory's end is shorter than K and is left-padded to K: states with 0 *before*
        normalisation (so padding becomes ``-mean / std``), actions with -10, returns-to-go with 0,
        timesteps with 0, attention mask 0 (the values of DT's and LaMo's ``get_batch``).

        Returns:
            CPU torch tensors, B = ``batch_size``:

            * ``states`` ``(B, K, obs_dim)`` float32, ``(s - state_mean) / state_std``;
            * ``actions`` ``(B, K, act_dim)`` float32, the dataset's actions (targets and inputs);
            * ``returns_to_go`` ``(B, K, 1)`` float32, the raw return-to-go divided by ``rtg_scale``
              (model units, not a normalised score);
            * ``timesteps`` ``(B, K)`` int64, absolute step in the trajectory, clipped to
              ``max_ep_len - 1``;
            * ``attention_mask`` ``(B, K)`` float32, 1 for real steps, 0 for padding.

        Advances the generator: the same state gives the same batch.
        """
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
        """The generator's state, ``{"rng": <bit-generator state dict>}`` (plain Python values, JSON- and
        pickle-friendly). Restoring it with :meth:`load_state_dict` continues the exact batch sequence."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`. The data, K, scale and ``max_ep_len`` are not part of the state:
        the caller rebuilds the sampler from the same inputs first.

        Raises:
            KeyError: ``state`` has no ``"rng"`` entry. ValueError / TypeError (from NumPy): it is not a
            state of this generator type (PCG64).
        """
        self.rng.bit_generator.state = state["rng"]
