"""Atari offline data: frames stored once as uint8, LaMo's subsampling and batches stacked on the fly.

Layout of a dataset in memory (:class:`AtariDataset`) and on disk (HDF5, ``<data_dir>/datasets/<name>.hdf5``):
``observations (N, 84, 84)`` uint8 single frames (the newest frame of each step, as d4rl-atari returns
with ``stack=False``), ``actions (N,)`` int64 action ids, ``rewards (N,)`` float32 training rewards,
``terminals (N,)`` bool, True at the last step of each episode (a cut last episode is closed too).

Reward units: the training rewards (and so the return-to-go the model is trained on) are what DQN Replay
stores, the game's reward **clipped to [-1, 1]**: Dopamine's runner clips before a transition enters the
replay buffer (github.com/google/dopamine ``dopamine/discrete_domains/run_experiment.py``
``_run_one_episode``: ``reward = np.clip(reward, -1, 1)`` before ``agent.step``/``_end_episode``), and
d4rl-atari serves the buffer's ``reward`` array unchanged (d4rl-atari ``d4rl_atari/offline_env.py``).
Collected data store the same (:data:`REWARD_CLIP`); their raw game return is kept only for the
dataset's reported score (HDF5 attributes ``raw_mean_return`` / ``gamer_normalised``). Evaluation
returns and RTG targets are raw game scores (LaMo ``experiment-atari/core.py``), so, as in LaMo, the
model is conditioned on raw targets after training on clipped returns-to-go (docs/lamo_recipe.md §4.6).

Sources:

* **collected** (offline, this project): :func:`collect_atari_dataset` rolls out a scripted policy that
  reads the game state from the emulator RAM (paddle and ball positions for Breakout and Pong, Q*bert's
  cell and the cube colours for Qbert; :data:`RAM_POLICIES`) with epsilon-random
  actions for a "medium" level, in the envs of :mod:`trainers.domains.atari.env`. **Locally generated data, not
  the DQN Replay data of the paper** (the file's ``provenance`` attribute says so).
* **d4rl** (DQN Replay, Agarwal et al. 2020, the data d4rl-atari serves): the Dopamine replay-buffer
  checkpoint files ``$store$_{observation,action,reward,terminal}_ckpt.<i>.gz`` (gzip-compressed ``.npy``)
  under ``<data_dir>/dqn_replay/<Game>/1/replay_logs`` (:func:`load_dqn_replay`); "medium" is checkpoint
  10 of run 1 (:data:`DQN_REPLAY_MEDIUM_CKPT`).
* **minari**: Minari's ``atari/<game>/expert-v0`` (:func:`load_minari_atari`).

Subsampling and batches follow srzer/LaMo-2023 ``experiment-atari/buffer.py`` (docs/lamo_recipe.md §4):
``floor(N_traj * ratio)`` trajectories (at least 1) drawn without replacement with probability
proportional to their length, with ``numpy.random.default_rng(seed)``; batches pick a trajectory with
probability proportional to its length, an offset uniform in ``[0, T - K)`` (0 when T <= K), K steps from
there with steps past the end padded on the right (mask 0), timesteps counted from the trajectory start,
and 4 frames stacked per step with zeros before the trajectory's first frame.
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainers.data.d4rl_hdf5 import DatasetError
from trainers.data.trajectories import indices_hash, subsample_trajectories

FRAME_SHAPE = (84, 84)
STACK = 4
PROVENANCE_COLLECTED = "locally generated: scripted RAM policy with epsilon noise (not DQN Replay)"
#: the DQN Replay bucket (Agarwal et al. 2020, github.com/google-research/batch_rl); run 1 as d4rl-atari.
DQN_REPLAY_URI = "gs://atari-replay-datasets/dqn/{game}/1/replay_logs/"
#: replay checkpoint of ``[game]-medium-v0``: d4rl-atari registers ``<game>-medium-v{i}`` with
#: ``index = i + 1`` and ``start_epoch = last_epoch = 10`` (``d4rl_atari/__init__.py``) and downloads
#: ``$store$_<name>_ckpt.<epoch>.gz`` (``d4rl_atari/offline_env.py`` ``_download``), so ``-v0`` is
#: ``ckpt.10`` of run 1.
DQN_REPLAY_MEDIUM_CKPT = 10
#: (low, high) the collector clips the stored training rewards to: Dopamine's ``np.clip(reward, -1, 1)``.
REWARD_CLIP = (-1.0, 1.0)
#: HDF5 attribute of collected files saying their rewards are clipped (files without it predate clipping).
REWARDS_ATTR = "rewards"
REWARDS_CLIPPED = "clipped to [-1, 1] as DQN Replay (Dopamine run_experiment.py); raw return in raw_mean_return"


@dataclass
class AtariDataset:
    """A whole Atari dataset, frames stored once.

    Attributes:
        frames: ``(N, 84, 84)`` uint8. actions: ``(N,)`` int64. rewards: ``(N,)`` float32 training
            rewards (clipped to [-1, 1] for DQN Replay and collected data; module docstring).
        terminals: ``(N,)`` bool, last step of each episode (the final step is always True).
        where: the file or dataset id (for messages).
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    where: str = ""

    def __post_init__(self):
        self.terminals = np.asarray(self.terminals, dtype=bool).copy()
        if len(self.terminals):
            self.terminals[-1] = True
        self.ends = np.flatnonzero(self.terminals)  # inclusive
        self.starts = np.concatenate(([0], self.ends[:-1] + 1)).astype(np.int64)
        self.lengths = self.ends - self.starts + 1
        self.returns = np.add.reduceat(self.rewards.astype(np.float64), self.starts) if len(self.starts) else np.zeros(0)
        # return-to-go within each episode (units of ``rewards``)
        csum = np.cumsum(self.rewards[::-1].astype(np.float64))[::-1]
        nxt = np.zeros(len(self.rewards))
        for s, e in zip(self.starts, self.ends):
            nxt[s:e + 1] = csum[e + 1] if e + 1 < len(csum) else 0.0
        self.rtg = (csum - nxt).astype(np.float32)

    def check(self, n_actions: int) -> "AtariDataset":
        """Validate shapes, dtypes, action range and finiteness.

        Raises:
            DatasetError: naming :attr:`where` and the problem.
        """
        w, n = self.where, len(self.rewards)
        if n == 0:
            raise DatasetError(f"{w}: the dataset is empty")
        if self.frames.dtype != np.uint8 or self.frames.shape[1:] != FRAME_SHAPE:
            raise DatasetError(f"{w}: observations are {self.frames.dtype} {self.frames.shape}, Atari data need "
                               f"uint8 (N, 84, 84) single frames (84x84 grayscale, not stacked)")
        if not len(self.frames) == len(self.actions) == n == len(self.terminals):
            raise DatasetError(f"{w}: {len(self.frames)} observations, {len(self.actions)} actions, {n} rewards "
                               f"and {len(self.terminals)} terminals; they must be equal")
        if not np.isfinite(self.rewards).all():
            raise DatasetError(f"{w}: rewards contain NaN or inf")
        if self.actions.min() < 0 or self.actions.max() >= n_actions:
            raise DatasetError(f"{w}: action ids span {self.actions.min()}..{self.actions.max()}, the game has "
                               f"{n_actions} actions (minimal action set); is this another game's data?")
        return self


# --- storage ------------------------------------------------------------------------------------

def save_atari_hdf5(ds: AtariDataset, path: Path, attrs: dict | None = None) -> None:
    """Write ``ds`` to ``path`` atomically (a temporary file renamed into place); frames gzip-compressed
    in per-frame chunks."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("observations", data=ds.frames, chunks=(256, *FRAME_SHAPE), compression="gzip",
                         compression_opts=1)
        f.create_dataset("actions", data=ds.actions.astype(np.int64))
        f.create_dataset("rewards", data=ds.rewards.astype(np.float32))
        f.create_dataset("terminals", data=ds.terminals.astype(bool))
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    os.replace(tmp, path)


def load_atari_hdf5(path: Path, n_actions: int) -> AtariDataset:
    """Read a dataset written by :func:`save_atari_hdf5`.

    Raises:
        DatasetError: missing file (run ``lamo-trial prepare``), unreadable HDF5, missing keys, bad
            content (:meth:`AtariDataset.check`), or a locally collected file from before the training
            rewards were clipped (rewards outside [-1, 1] and no :data:`REWARDS_ATTR` attribute).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; `lamo-trial prepare --sweep <sweep.yaml>` collects it")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in f]
            if missing:
                raise DatasetError(f"{path}: missing key(s) {missing}; expected the Atari layout of "
                                   f"trainers/domains/atari/data.py")
            ds = AtariDataset(f["observations"][...], f["actions"][...].astype(np.int64),
                              f["rewards"][...].astype(np.float32), f["terminals"][...], str(path))
            stale = (f.attrs.get("provenance") == PROVENANCE_COLLECTED and REWARDS_ATTR not in f.attrs
                     and len(ds.rewards) and np.abs(ds.rewards).max() > REWARD_CLIP[1])
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError/KeyError for truncated files
        raise DatasetError(f"{path}: not a readable HDF5 file ({type(e).__name__}: {e}); delete it and run "
                           f"`lamo-trial prepare` again") from e
    if stale:
        raise DatasetError(f"{path}: collected before training rewards were clipped to [-1, 1] (raw rewards up "
                           f"to {np.abs(ds.rewards).max():g}); delete it and run `lamo-trial prepare` again")
    return ds.check(n_actions)


def dqn_replay_files(directory: Path, ckpt: int = DQN_REPLAY_MEDIUM_CKPT) -> dict[str, Path]:
    """The four Dopamine replay checkpoint files of checkpoint ``ckpt`` in ``directory``."""
    return {k: Path(directory) / ("$store$_" + f"{k}_ckpt.{ckpt}.gz") for k in ("observation", "action", "reward", "terminal")}


def load_dqn_replay(directory: Path, game: str, n_actions: int, ckpt: int = DQN_REPLAY_MEDIUM_CKPT) -> AtariDataset:
    """Read one DQN Replay checkpoint (Dopamine's ``OutOfGraphReplayBuffer`` layout: each file a
    gzip-compressed ``.npy``; observations ``(N, 84, 84)`` uint8).

    Raises:
        DatasetError: a missing file (the message gives the ``gsutil`` command that fetches it), a file
            that is not gzip/npy (corrupt or truncated download), or inconsistent content.
    """
    files = dqn_replay_files(directory, ckpt)
    absent = [str(p) for p in files.values() if not p.is_file()]
    if absent:
        src = DQN_REPLAY_URI.format(game=game[:1].upper() + game[1:])
        raise DatasetError(
            f"DQN Replay files missing: {', '.join(absent)}. On a machine with internet run "
            f"`mkdir -p '{directory}' && gsutil -m cp '{src}$store$_*_ckpt.{ckpt}.gz' '{directory}/'` "
            f"(or point data.path at a replay_logs directory holding them)")
    arrays = {}
    for key, p in files.items():
        try:
            with gzip.open(p, "rb") as f:
                arrays[key] = np.load(f, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - BadGzipFile, EOFError, ValueError for a bad .npy
            raise DatasetError(f"{p}: corrupt DQN Replay file ({type(e).__name__}: {e}); delete it and "
                               f"download it again with gsutil") from e
    obs = arrays["observation"]
    if obs.ndim == 4 and obs.shape[1] == 1:
        obs = obs[:, 0]
    ds = AtariDataset(obs, arrays["action"].astype(np.int64), arrays["reward"].astype(np.float32),
                      arrays["terminal"].astype(bool), str(directory))
    return ds.check(n_actions)


def load_atari_dataset(cfg, data_dir: Path) -> AtariDataset:
    """The Atari dataset of a trial (``cfg.data_source``: ``collected``, ``d4rl`` = DQN Replay, ``minari``),
    checked against the task's action count.

    Raises:
        DatasetError: missing or bad data (the message names the file and the fix).
    """
    from trainers.paths import trial_dataset_path

    task = cfg.task_spec
    game = task.name.split("-")[0]
    if cfg.data_source == "collected":
        return load_atari_hdf5(trial_dataset_path(cfg, data_dir), task.act_dim)
    if cfg.data_source == "d4rl":
        return load_dqn_replay(trial_dataset_path(cfg, data_dir), game, task.act_dim)
    if cfg.data_source == "minari":
        return load_minari_atari(cfg.data.minari_id or task.dataset.minari_id, task.act_dim)
    raise DatasetError(f"data.source {cfg.data_source!r} is not available for Atari task {task.name!r}; use "
                       f"collected, d4rl (DQN Replay files) or minari")


def load_minari_atari(dataset_id: str, n_actions: int) -> AtariDataset:
    """A local Minari Atari dataset (``atari/<game>/expert-v0``): each episode's observations (all but the
    final one) converted to 84x84 grayscale (``cv2.cvtColor`` + ``cv2.resize(INTER_AREA)``, as gymnasium's
    ``AtariPreprocessing``) unless already so.

    Raises:
        DatasetError: Minari cannot open it (with the ``minari download`` command) or the content is bad.
    """
    import cv2
    import minari

    try:
        ds = minari.load_dataset(dataset_id)
        episodes = list(ds.iterate_episodes())
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"minari:{dataset_id}: cannot load the dataset ({type(e).__name__}: {e}); on a machine "
                           f"with internet run `minari download {dataset_id}`") from e
    frames, acts, rews, terms = [], [], [], []
    for ep in episodes:
        obs = np.asarray(ep.observations)[: len(ep.actions)]
        if obs.shape[1:] != FRAME_SHAPE:
            if obs.ndim == 4 and obs.shape[-1] == 3:
                obs = np.stack([cv2.cvtColor(o, cv2.COLOR_RGB2GRAY) for o in obs])
            obs = np.stack([cv2.resize(o, FRAME_SHAPE[::-1], interpolation=cv2.INTER_AREA) for o in obs])
        frames.append(obs.astype(np.uint8))
        acts.append(np.asarray(ep.actions, dtype=np.int64).reshape(-1))
        rews.append(np.asarray(ep.rewards, dtype=np.float32))
        t = np.zeros(len(ep.actions), dtype=bool)
        t[-1] = True
        terms.append(t)
    if not frames:
        raise DatasetError(f"minari:{dataset_id}: no episodes")
    return AtariDataset(np.concatenate(frames), np.concatenate(acts), np.concatenate(rews), np.concatenate(terms),
                        f"minari:{dataset_id}").check(n_actions)


# --- subsampling and batches --------------------------------------------------------------------

def subsample_by_length(lengths: np.ndarray, sample_ratio: float, seed: int) -> np.ndarray:
    """LaMo's Atari subset: ``max(1, floor(n * ratio))`` trajectory indices drawn without replacement with
    probability proportional to ``lengths`` (:func:`trainers.data.trajectories.subsample_trajectories`
    with ``weights=lengths``), sorted; all at ratio 1.

    Raises:
        ValueError: ratio outside (0, 1] or no trajectories.
    """
    return subsample_trajectories(len(lengths), sample_ratio, seed, weights=lengths)


class AtariSubset:
    """The trajectories a trial trains on: views into one :class:`AtariDataset` (no frame is copied).

    Attributes:
        dataset: the whole dataset. indices: ``(n,)`` chosen trajectory ids. starts / lengths: ``(n,)``.
    """

    def __init__(self, dataset: AtariDataset, sample_ratio: float, seed: int):
        self.dataset = dataset
        self.indices = subsample_by_length(dataset.lengths, sample_ratio, seed)
        self.starts = dataset.starts[self.indices]
        self.lengths = dataset.lengths[self.indices]

    @property
    def subset_hash(self) -> str:
        """:func:`trainers.data.trajectories.indices_hash` of the chosen trajectories (logged with the run)."""
        return indices_hash(self.indices)

    def summary(self) -> dict[str, float]:
        """Size and mean return of the subset (units of the dataset's rewards: clipped for DQN Replay and
        collected data)."""
        return {"n_trajectories": len(self.indices), "n_transitions": int(self.lengths.sum()),
                "mean_return": float(self.dataset.returns[self.indices].mean())}


def stack_frames(frames: np.ndarray, index: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The 4-frame states of steps ``index`` (global step ids, any shape ``S``) whose trajectories begin at
    ``start`` (shape ``S``): ``(*S, 4, 84, 84)`` uint8, oldest frame first, zeros before the trajectory's
    first frame (the envs' padding, ``FrameStackObservation(padding_type="zero")``). The only copy is the
    result."""
    lag = np.arange(-STACK + 1, 1)
    fidx = index[..., None] + lag  # (*S, 4)
    valid = fidx >= start[..., None]
    out = frames[np.where(valid, fidx, 0)]
    out[~valid] = 0
    return out


class AtariBatchSampler:
    """Seeded LaMo Atari batches (module docstring); resumable through :meth:`state_dict`.

    Args:
        data: the subset. context_length: K. rtg_scale: RTG divisor (LaMo Atari: 1).
        max_ep_len: timestep-table size (timesteps clipped to ``max_ep_len - 1``). seed: generator seed.
    """

    def __init__(self, data: AtariSubset, context_length: int, rtg_scale: float, max_ep_len: int, seed: int):
        self.data, self.K, self.scale, self.max_ep_len = data, context_length, rtg_scale, max_ep_len
        self.p = data.lengths / data.lengths.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Returns CPU tensors, B = ``batch_size``:

        * ``states`` ``(B, K, 4, 84, 84)`` uint8 (oldest frame first, zeros before the trajectory start);
        * ``actions`` ``(B, K)`` int64 (0 at padding); ``returns_to_go`` ``(B, K, 1)`` float32 RTG in the
          dataset's reward units (clipped for DQN Replay and collected data) / ``rtg_scale``; ``timesteps`` ``(B, K)`` int64 from the trajectory start;
          ``attention_mask`` ``(B, K)`` float32, 1 real step, 0 right padding.
        """
        K, d, ds = self.K, self.data, self.data.dataset
        which = self.rng.choice(len(d.lengths), size=batch_size, p=self.p)
        T = d.lengths[which]
        offset = np.floor(self.rng.random(batch_size) * (T - K)).astype(np.int64).clip(min=0)
        step = offset[:, None] + np.arange(K)  # (B, K) step within the trajectory
        real = step < T[:, None]
        g = d.starts[which][:, None] + np.minimum(step, T[:, None] - 1)  # global index (padding: last step)
        start = np.broadcast_to(d.starts[which][:, None], g.shape)
        states = stack_frames(ds.frames, g, start)  # (B, K, 4, 84, 84) uint8: the only copy, per batch
        states[~real] = 0
        actions = np.where(real, ds.actions[g], 0)
        rtg = np.where(real, ds.rtg[g], 0.0).astype(np.float32)[..., None] / self.scale
        ts = np.where(real, np.minimum(step, self.max_ep_len - 1), 0)
        return {"states": torch.from_numpy(states), "actions": torch.from_numpy(actions.astype(np.int64)),
                "returns_to_go": torch.from_numpy(rtg.astype(np.float32)),
                "timesteps": torch.from_numpy(ts.astype(np.int64)),
                "attention_mask": torch.from_numpy(real.astype(np.float32))}

    def state_dict(self) -> dict:
        """``{"rng": <bit-generator state>}``; restoring it continues the batch sequence exactly."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the subset is rebuilt by the caller first)."""
        self.rng.bit_generator.state = state["rng"]


# --- behaviour policies and collection -----------------------------------------------------------

def breakout_ram_policy(ram: np.ndarray) -> int:
    """Follow the ball with the paddle: ball x at RAM byte 99, ball y at 101 (0 = no ball in play, then
    FIRE), paddle x at 72 (byte addresses as in the Atari RAM annotations of AtariARI, Anand et al. 2019,
    github.com/mila-iqia/atari-representation-learning). Actions: 0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT."""
    ball_x, ball_y, paddle = int(ram[99]), int(ram[101]), int(ram[72])
    if ball_y == 0:
        return 1
    d = ball_x - (paddle + 8)
    return 2 if d > 4 else 3 if d < -4 else 0


def pong_ram_policy(ram: np.ndarray) -> int:
    """Keep the agent's (right) paddle level with the ball: paddle y at RAM byte 51, ball y at 54
    (AtariARI annotations). Actions: 0 NOOP, 1 FIRE, 2 RIGHT (= up), 3 LEFT (= down)."""
    paddle, ball_y = int(ram[51]), int(ram[54])
    if ball_y == 0:
        return 1
    d = ball_y - (paddle + 8)
    return 3 if d > 4 else 2 if d < -4 else 0


#: Q*bert RAM bytes of the 21 cubes' top colours, pyramid rows top to bottom, left to right within a row,
#: and the x pixel centres of their top faces per row, as read by OCAtari's Q*bert RAM
#: extraction (Delfosse et al. 2023, "OCAtari: Object-Centric Atari 2600 Reinforcement Learning
#: Environments", github.com/k4ntz/OC_Atari ``ocatari/ram/qbert.py``).
QBERT_CUBE_RAM = (21, 52, 54, 83, 85, 87, 98, 100, 102, 104, 1, 3, 5, 7, 9, 32, 34, 36, 38, 40, 42)
QBERT_CUBE_X = ((68,), (56, 84), (44, 68, 96), (32, 56, 84, 108), (20, 44, 68, 96, 120), (8, 32, 56, 84, 108, 132))
#: Q*bert's minimal action set: 2 UP hops up-right, 3 RIGHT down-right, 4 LEFT up-left, 5 DOWN down-left
#: (checked here by stepping the emulator); value = (row change, index-in-row change) on the pyramid.
QBERT_HOPS = {2: (-1, 0), 3: (1, 1), 4: (-1, -1), 5: (1, 0)}


def qbert_cell(ram: np.ndarray) -> tuple[int, int] | None:
    """Q*bert's pyramid cell ``(row 0-5, index 0-row)`` while he stands on a cube, else ``None`` (game
    start, mid-hop, falling). His position is RAM bytes 43 (x) and 67 (y) (AtariARI annotations, Anand et
    al. 2019); standing = within 2 units of a rest position: x = the cube's top-face centre
    (:data:`QBERT_CUBE_X`) + 9, y = 25 + 28 x row (both measured here by stepping the emulator)."""
    x, y = int(ram[43]), int(ram[67])
    if x == 0:
        return None
    row = int(round((y - 25) / 28))
    if not 0 <= row < 6 or abs(y - 25 - 28 * row) > 2:
        return None
    col = min(range(row + 1), key=lambda c: abs(x - 9 - QBERT_CUBE_X[row][c]))
    if abs(x - 9 - QBERT_CUBE_X[row][col]) > 2:
        return None
    return row, col


class QbertRamPolicy:
    """Hop to cubes not yet turned to the target colour, never off the pyramid (a scripted Q*bert player).

    Reads Q*bert's cell (:func:`qbert_cell`) and the 21 cube colours (:data:`QBERT_CUBE_RAM`) from the
    emulator RAM. The target colour is learnt from play: the colour of the cube Q*bert stands on once he
    has hopped at least once (a hop onto a cube turns it to the level's colour). While he stands on a
    cube: among the hops that stay on the pyramid (:data:`QBERT_HOPS`), one onto a cube of another colour
    (uniform among them, from its own seeded generator); if none, the first hop of a shortest path
    (breadth-first) to the nearest such cube. Mid-hop and off the pyramid: NOOP. Enemies (balls, Coily)
    and the escape discs are ignored. Stateful: call :meth:`reset` at every episode start.
    """

    def __init__(self, seed: int = 0):
        self.reset(seed)

    def reset(self, seed: int = 0) -> None:
        """Forget the episode: last cell, target colour; reseed the tie-break generator."""
        self.last: tuple[int, int] | None = None
        self.target: int | None = None
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def _hops(cell: tuple[int, int]) -> list[tuple[int, tuple[int, int]]]:
        r, c = cell
        out = []
        for a, (dr, dc) in QBERT_HOPS.items():
            nr, nc = r + dr, c + dc
            if 0 <= nr < 6 and 0 <= nc <= nr:
                out.append((a, (nr, nc)))
        return out

    def __call__(self, ram: np.ndarray) -> int:
        """The action id for this RAM state (0 NOOP unless Q*bert stands on a cube)."""
        cell = qbert_cell(ram)
        if cell is None:
            return 0

        def colour(rc: tuple[int, int]) -> int:
            return int(ram[QBERT_CUBE_RAM[rc[0] * (rc[0] + 1) // 2 + rc[1]]])

        if self.last is not None and (cell != self.last or self.target is not None):
            self.target = colour(cell)  # he has hopped: the cube under him has the target colour
        self.last = cell
        hops = self._hops(cell)
        todo = [a for a, rc in hops if self.target is None or colour(rc) != self.target]
        if todo:
            return todo[int(self.rng.integers(len(todo)))]
        parent = {cell: None}  # breadth-first search to the nearest cube of another colour
        queue = [cell]
        for cur in queue:
            if cur != cell and colour(cur) != self.target:
                while parent[cur][0] != cell:
                    cur = parent[cur][0]
                return parent[cur][1]
            for a, nxt in self._hops(cur):
                if nxt not in parent:
                    parent[nxt] = (cur, a)
                    queue.append(nxt)
        return hops[0][0]  # every cube done: the level is ending


#: game -> (RAM policy: a function of the RAM, or a class whose instances are, with ``reset(seed)``;
#: epsilon of the "medium" level: probability of a uniformly random action).
RAM_POLICIES = {"breakout": (breakout_ram_policy, 0.1), "pong": (pong_ram_policy, 0.1),
                "qbert": (QbertRamPolicy, 0.1)}


def make_ram_policy(game: str):
    """``(policy, epsilon)`` of ``game`` from :data:`RAM_POLICIES`, a class instantiated (seed 0).

    Raises:
        ValueError: no scripted policy for ``game`` (use ``data.source: d4rl`` or ``minari`` then).
    """
    if game not in RAM_POLICIES:
        raise ValueError(f"no scripted RAM policy for {game!r} (have: {', '.join(RAM_POLICIES)}); use "
                         f"data.source: d4rl (DQN Replay) or minari for this game")
    policy, eps = RAM_POLICIES[game]
    return (policy() if isinstance(policy, type) else policy), eps


def _policy_name(policy) -> str:
    return getattr(policy, "__name__", type(policy).__name__)


def _reset_policy(policy, seed: int) -> None:
    if hasattr(policy, "reset"):
        policy.reset(seed)


def measure_ram_policy(game: str, episodes: int, epsilon: float | None = None, seed: int = 0,
                       random_policy: bool = False) -> dict:
    """Play ``episodes`` whole episodes of ``game`` with its RAM policy (:data:`RAM_POLICIES`) plus
    ``epsilon``-random actions (default: the policy's "medium" epsilon), or with uniformly random actions
    (``random_policy``), in the collection env (:func:`trainers.domains.atari.env.make_atari_env`, sticky
    actions, 27,000-step cap). Episode ``i`` is reset with seed ``seed + i`` (as collection).

    Returns:
        ``episodes``, ``mean_return`` / ``std_return`` (raw), ``mean_length`` (agent steps),
        ``gamer_normalised`` (of the mean return, :meth:`trainers.tasks.TaskSpec.normalised_score`),
        ``seconds``.
    """
    from trainers.domains.atari.env import make_atari_env
    from trainers.tasks import get_task

    policy, eps = make_ram_policy(game)
    eps = 1.0 if random_policy else (eps if epsilon is None else epsilon)
    env = make_atari_env(game, stack=False)
    rng = np.random.default_rng(seed)
    n_act = env.action_space.n
    returns, lengths = [], []
    t0 = time.perf_counter()
    for i in range(episodes):
        env.reset(seed=seed + i)
        _reset_policy(policy, seed + i)
        ret, n, done = 0.0, 0, False
        while not done:
            a = policy(env.unwrapped.ale.getRAM()) if rng.random() >= eps else int(rng.integers(n_act))
            _, r, term, trunc, _ = env.step(a)
            ret, n, done = ret + r, n + 1, term or trunc
        returns.append(ret)
        lengths.append(n)
    env.close()
    mean = float(np.mean(returns))
    return {"episodes": episodes, "mean_return": mean, "std_return": float(np.std(returns)),
            "mean_length": float(np.mean(lengths)),
            "gamer_normalised": get_task(f"{game}-medium").normalised_score(mean),
            "seconds": time.perf_counter() - t0}


def collect_atari_dataset(game: str, path: Path, transitions: int, seed: int = 0, progress: bool = True,
                          log=print) -> dict:
    """Roll out the epsilon-noisy RAM policy of ``game`` for ``transitions`` agent steps (the last episode
    is cut and closed, as D4RL) in :func:`trainers.domains.atari.env.make_atari_env` (``stack=False``, Dopamine's
    collection convention), and write the single frames with :func:`save_atari_hdf5` (atomic). The
    stored rewards are the game's rewards clipped to :data:`REWARD_CLIP`, as DQN Replay's (module
    docstring); the reported returns are raw game scores.

    Returns:
        summary: ``episodes``, ``transitions``, ``mean_return`` (raw game score, complete episodes),
        ``mean_clipped_return`` (the stored rewards' units, same episodes), ``gamer_normalised``
        (100 (R - random) / (human - random) of the raw mean), ``seconds``, ``provenance``. The file's
        attributes: ``provenance``, ``policy``, ``seed``, ``env``, :data:`REWARDS_ATTR`,
        ``raw_mean_return``, ``gamer_normalised``.

    Raises:
        ValueError: no scripted policy for ``game`` (use ``data.source: d4rl`` or ``minari`` then).
    """
    from trainers.domains.atari.env import make_atari_env
    from trainers.tasks import get_task

    policy, eps = make_ram_policy(game)
    env = make_atari_env(game, stack=False)
    rng = np.random.default_rng(seed)
    n_act = env.action_space.n
    frames = np.empty((transitions, *FRAME_SHAPE), np.uint8)
    actions = np.empty(transitions, np.int64)
    rewards = np.empty(transitions, np.float32)
    terms = np.zeros(transitions, bool)
    returns, clipped, ep_ret, ep_clip, episode = [], [], 0.0, 0.0, 0
    obs, _ = env.reset(seed=seed)
    _reset_policy(policy, seed)
    t0 = time.perf_counter()
    for i in range(transitions):
        a = policy(env.unwrapped.ale.getRAM()) if rng.random() >= eps else int(rng.integers(n_act))
        frames[i], actions[i] = obs, a
        obs, r, term, trunc, _ = env.step(a)
        rewards[i] = np.clip(r, *REWARD_CLIP)  # what Dopamine stores in the replay buffer
        ep_ret += r
        ep_clip += float(rewards[i])
        if term or trunc:
            terms[i] = True
            returns.append(ep_ret)
            clipped.append(ep_clip)
            ep_ret, ep_clip, episode = 0.0, 0.0, episode + 1
            obs, _ = env.reset(seed=seed + episode)
            _reset_policy(policy, seed + episode)
        if progress and (i + 1) % 10_000 == 0:
            log(f"[collect {game}] {i + 1:,}/{transitions:,} steps, {len(returns)} episodes, "
                f"{(i + 1) / (time.perf_counter() - t0):.0f} steps/s")
    env.close()
    if not returns:
        returns, clipped = [ep_ret], [ep_clip]
    task = get_task(f"{game}-medium")
    mean = float(np.mean(returns))
    summary = {"episodes": int(terms.sum() + (0 if terms[-1] else 1)), "transitions": transitions,
               "mean_return": mean, "mean_clipped_return": float(np.mean(clipped)),
               "gamer_normalised": task.normalised_score(mean),
               "seconds": time.perf_counter() - t0, "provenance": PROVENANCE_COLLECTED}
    save_atari_hdf5(AtariDataset(frames, actions, rewards, terms, str(path)), path,
                    {"provenance": PROVENANCE_COLLECTED, "policy": f"{_policy_name(policy)} eps={eps}", "seed": seed,
                     "env": f"lamo/{game}-dqn-v0 (trainers/domains/atari/env.py)", REWARDS_ATTR: REWARDS_CLIPPED,
                     "raw_mean_return": mean, "gamer_normalised": summary["gamer_normalised"]})
    return summary
