"""Load a trial's dataset as a list of trajectories, whatever its source.

Sources (``data.source`` of :class:`trainers.config.DataConfig`):

* ``d4rl`` / ``collected``: D4RL-layout HDF5 (``observations, actions, rewards, terminals, timeouts``),
  split into trajectories at terminals and timeouts (:mod:`trainers.data.d4rl_hdf5`). This is how D4RL's
  own files are read now that the ``d4rl`` package no longer installs on modern Python.
* ``minari``: a Minari dataset in Minari's local store (``minari.load_dataset``); each episode becomes a
  trajectory (``observations[:-1]``, the final observation is dropped as in D4RL's layout). Franka
  Kitchen's dict observations (``D4RL/kitchen/*-v2``) are flattened to D4RL's 60-d layout
  (:func:`trainers.domains.kitchen.env.flatten_dict_observation`, goals of the episode's ``desired_goal`` tasks).
* ``pickle``: the Decision Transformer / LaMo trajectory pickle (a list of dicts with ``observations``,
  ``actions``, ``rewards`` and ``terminals`` or ``dones``). Explicit opt-in only (``allow_pickle``):
  unpickling runs code from the file.

Every trajectory is checked against the task (observation/action sizes, finite values, equal lengths);
problems raise :class:`trainers.data.d4rl_hdf5.DatasetError` naming the file and the fix.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from trainers.config import TrialConfig
from trainers.domains.base import get_domain
from trainers.data.d4rl_hdf5 import DatasetError, load_d4rl_hdf5, split_trajectories
from trainers.paths import trial_dataset_path


def check_trajectories(trajs: list[dict], obs_dim: int, act_dim: int, where: str) -> list[dict]:
    """Validate trajectories: keys present, ``observations (T, obs_dim)``, ``actions (T, act_dim)``,
    ``rewards (T,)``, finite values, at least one trajectory.

    Raises:
        DatasetError: naming ``where`` (file or dataset id), the trajectory index and the problem.
    """
    if not trajs:
        raise DatasetError(f"{where}: no trajectories; the dataset is empty")
    out = []
    for i, t in enumerate(trajs):
        for key in ("observations", "actions", "rewards"):
            if key not in t:
                raise DatasetError(f"{where}: trajectory {i} has no {key!r}")
        o = np.asarray(t["observations"], dtype=np.float32)
        a = np.asarray(t["actions"], dtype=np.float32)
        r = np.asarray(t["rewards"], dtype=np.float32).reshape(-1)
        if o.ndim != 2 or o.shape[1] != obs_dim:
            raise DatasetError(f"{where}: trajectory {i} observations have shape {o.shape}, the task needs "
                               f"(T, {obs_dim}); is this the dataset of another environment?")
        if a.ndim != 2 or a.shape[1] != act_dim:
            raise DatasetError(f"{where}: trajectory {i} actions have shape {a.shape}, the task needs (T, {act_dim})")
        if not len(o) == len(a) == len(r) or len(r) == 0:
            raise DatasetError(f"{where}: trajectory {i} has {len(o)} observations, {len(a)} actions and "
                               f"{len(r)} rewards; they must be equal and non-zero")
        for key, arr in (("observations", o), ("actions", a), ("rewards", r)):
            if not np.isfinite(arr).all():
                raise DatasetError(f"{where}: trajectory {i} {key} contain NaN or inf values")
        out.append({"observations": o, "actions": a, "rewards": r})
    return out


def load_pickle_trajectories(path: Path, allow_pickle: bool) -> list[dict]:
    """Read a DT/LaMo trajectory pickle.

    Raises:
        DatasetError: without ``allow_pickle``, for a missing file, or for content that is not a list of
            trajectory dicts.
    """
    path = Path(path)
    if not allow_pickle:
        raise DatasetError(f"{path}: refusing to unpickle without data.allow_pickle: true (pickles run code)")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; check data.path")
    with open(path, "rb") as f:
        obj = pickle.load(f)  # noqa: S301 - explicit user opt-in above
    if not isinstance(obj, list) or not all(isinstance(t, dict) for t in obj):
        raise DatasetError(f"{path}: expected a list of trajectory dicts (the DT/LaMo pickle layout), "
                           f"got {type(obj).__name__}")
    return obj


def _minari_dataset_dir(dataset_id: str) -> Path:
    """Minari's directory for ``dataset_id``: ``$MINARI_DATASETS_PATH/<id>`` or ``~/.minari/datasets/<id>``
    (``minari.storage.get_dataset_path``; Minari creates the store's root directory if absent)."""
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(dataset_id))


def minari_available(dataset_id: str | None) -> str | None:
    """``None`` if the Minari dataset is in the local store, else a message saying how to get it.

    A dataset is present when ``<store>/<dataset_id>/data`` exists, the check ``minari.load_dataset``
    itself makes (minari 0.5).
    """
    if not dataset_id:
        return "this task has no Minari id; set data.minari_id"
    try:
        import minari  # noqa: F401
    except ImportError:
        return "the minari package is not installed: pip install minari==0.5.4"
    try:
        where = _minari_dataset_dir(dataset_id)
    except Exception as e:  # noqa: BLE001 - unreadable store, bad id
        return f"cannot locate it in Minari's local store ({e})"
    if (where / "data").is_dir():
        return None
    return (f"not in Minari's local store (expected {where}): on a machine with internet run "
            f"`minari download {dataset_id}` with MINARI_DATASETS_PATH pointing at shared storage, "
            f"and set MINARI_DATASETS_PATH to the same directory here (now: "
            f"{os.environ.get('MINARI_DATASETS_PATH', 'unset, so ~/.minari/datasets')}); or create a local "
            f"dataset with minari.create_dataset_from_buffers")


def load_minari_trajectories(dataset_id: str) -> list[dict]:
    """Episodes of a local Minari dataset as trajectories (``observations`` without the final one).

    Raises:
        DatasetError: Minari cannot open the dataset, or its observations are not flat arrays.
    """
    import minari

    try:
        ds = minari.load_dataset(dataset_id)
        episodes = list(ds.iterate_episodes())
    except Exception as e:  # noqa: BLE001 - Minari raises assorted errors for broken stores
        raise DatasetError(f"minari:{dataset_id}: cannot load the dataset ({type(e).__name__}: {e}); "
                           f"re-download it with `minari download {dataset_id}`") from e
    trajs = []
    for i, ep in enumerate(episodes):
        if isinstance(ep.observations, dict) and {"observation", "desired_goal"} <= set(ep.observations):
            from trainers.domains.kitchen.env import flatten_dict_observation

            try:
                flat = flatten_dict_observation(ep.observations, tuple(ep.observations["desired_goal"]))
            except (KeyError, ValueError) as e:
                raise DatasetError(f"minari:{dataset_id}: episode {i} is not a Franka Kitchen episode the "
                                   f"60-d D4RL layout can be built from ({e})") from e
            trajs.append({"observations": flat[: len(ep.actions)], "actions": np.asarray(ep.actions),
                          "rewards": np.asarray(ep.rewards), "terminals": np.asarray(ep.terminations)})
            continue
        if isinstance(ep.observations, (dict, tuple)):
            raise DatasetError(f"minari:{dataset_id}: episode {i} has structured (Dict/Tuple) observations; "
                               "only flat Box observations are supported")
        obs = np.asarray(ep.observations)
        trajs.append({"observations": obs[: len(ep.actions)], "actions": np.asarray(ep.actions),
                      "rewards": np.asarray(ep.rewards), "terminals": np.asarray(ep.terminations)})
    return trajs


def load_trajectory_list(cfg: TrialConfig, data_dir: Path) -> list[dict]:
    """All trajectories of the trial's dataset, validated against the task.

    Returns:
        list of dicts with ``observations (T, obs_dim)`` float32, ``actions (T, act_dim)`` float32,
        ``rewards (T,)`` float32 (raw reward units).

    This is the vector-state domains' loader (:class:`trainers.domains.state.StateDomain`); a domain with
    other data (Atari's frames) has its own :meth:`~trainers.domains.base.Domain.load_dataset`.

    Raises:
        DatasetError: missing, corrupt or inconsistent data (the message names the fix).
    """
    task = cfg.task_spec
    source = cfg.data_source
    if source in ("d4rl", "collected"):
        path = trial_dataset_path(cfg, data_dir)
        data = load_d4rl_hdf5(path, obs_dim=task.obs_dim, act_dim=task.act_dim)
        get_domain(task.domain).check_collected_file(task, data.attrs, path)
        return check_trajectories(split_trajectories(data), task.obs_dim, task.act_dim, str(path))
    if source == "pickle":
        path = trial_dataset_path(cfg, data_dir)
        return check_trajectories(load_pickle_trajectories(path, cfg.data.allow_pickle), task.obs_dim,
                                  task.act_dim, str(path))
    mid = cfg.data.minari_id or task.dataset.minari_id
    problem = minari_available(mid)
    if problem:
        raise DatasetError(f"Minari dataset {mid!r}: {problem}")
    return check_trajectories(load_minari_trajectories(mid), task.obs_dim, task.act_dim, f"minari:{mid}")
