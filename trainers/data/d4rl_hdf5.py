"""Read, write and split offline datasets in the D4RL HDF5 layout (h5py).

Layout (D4RL ``get_dataset()``; one row per transition, N rows, episodes stored back to back):

=====================  ===================  ==========================================================
key                    shape / dtype        meaning
=====================  ===================  ==========================================================
``observations``       (N, obs_dim) f32     s_t
``actions``            (N, act_dim) f32     a_t
``rewards``            (N,) f32             r_t (raw env reward)
``terminals``          (N,) bool            True where the env really terminated after a_t
``timeouts``           (N,) bool            True on the last step of an episode cut by a time limit
``next_observations``  (N, obs_dim) f32     s_{t+1} (optional)
=====================  ===================  ==========================================================

Other datasets/groups in a file (D4RL's ``infos/*``, ``metadata/*``, the kitchen files' flat ``infos``) are
ignored; ``terminals`` stored as float32 (D4RL's kitchen files) is read as ``!= 0``. File attributes hold
free-form metadata: scalars and strings as HDF5 attributes, anything else JSON-encoded (the names of
JSON-encoded attributes are listed in the reserved attribute ``_json_attrs``).

``timeouts`` is required, not inferred. D4RL's hosted files carry it: the MuJoCo ``-v2`` files
(``scripts/generation/mujoco/convert_buffer.py``) and the kitchen files ``kitchen-{complete,partial,mixed}-v0``,
whose generation script (``scripts/generation/generate_kitchen_datasets.py``) writes only ``observations``,
``actions``, ``rewards``, float32 ``terminals`` and ``infos``, but whose hosted copies are read with
``f['timeouts']`` by Farama's Minari conversion scripts (minari-dataset-generation-scripts
``scripts/kitchen/d4rl_datasets/dataset.py`` on the complete file, ``total_steps.py`` on the partial one) and
through ``env.get_dataset()`` by CleanDiffuser (``cleandiffuser/dataset/d4rl_kitchen_dataset.py``, kitchen-mixed,
paths cut at ``timeouts | terminals`` into 280-row buffers). ``terminals`` alone seems not to give every
kitchen boundary (inferred: loaders that split kitchen-mixed at ``terminals`` only insert two boundaries 280
rows, the env's step limit, after a terminal). A file without ``timeouts`` (as D4RL's generation scripts
write; maze2d, D4RL issue #176) is refused: an unflagged time-limit cut cannot be told from a long episode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trainers.util import atomic_path

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL_KEYS = ("next_observations",)
_FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
_BOOL_KEYS = ("terminals", "timeouts")
_MATRIX_KEYS = ("observations", "actions", "next_observations")
_JSON_ATTRS = "_json_attrs"
_MISSING_TIMEOUTS = (
    " 'timeouts' marks the last row of each episode cut by a time limit, so trajectory boundaries cannot be "
    "recovered without it. D4RL's hosted files (MuJoCo -v2, kitchen-*-v0) carry it; files written by D4RL's "
    "scripts/generation/*.py do not: use the hosted file, or add an (N,) bool 'timeouts' that is True on the last "
    "row of every episode that ended without 'terminals' set (all False only if every episode ends at a terminal)."
)


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent. The message names file, key and fix."""


@dataclass
class D4RLData:
    """A loaded dataset.

    Attributes:
        arrays: the keys of the module table (``next_observations`` only when the file has it), with
            the documented shapes and dtypes.
        attrs: the file attributes, JSON values decoded.
        path: the file it came from (``None`` when built in memory).
    """

    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    @property
    def num_transitions(self) -> int:
        """N, the number of rows."""
        return len(self.arrays["observations"])


def _validate(arrays: Mapping[str, Any], where: str, obs_dim: int | None, act_dim: int | None) -> dict:
    """Check keys, shapes, lengths, finiteness and dims; return arrays cast to the layout's dtypes."""
    for key in REQUIRED_KEYS:
        if key not in arrays:
            raise DatasetError(
                f"{where}: missing key {key!r} (found: {sorted(arrays)}). A D4RL-layout dataset needs "
                f"{', '.join(REQUIRED_KEYS)}; re-create the file with trainers.data.collect or add the key."
                + (_MISSING_TIMEOUTS if key == "timeouts" else "")
            )
    out: dict[str, np.ndarray] = {}
    for key in REQUIRED_KEYS + OPTIONAL_KEYS:
        if key not in arrays:
            continue
        arr = np.asarray(arrays[key])
        if key in _MATRIX_KEYS:
            if arr.ndim != 2:
                raise DatasetError(
                    f"{where}: key {key!r} must be 2-D (N, dim), got shape {arr.shape}; reshape it before saving."
                )
        else:
            if arr.ndim == 2 and arr.shape[1] == 1:  # tolerate (N, 1) columns
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise DatasetError(f"{where}: key {key!r} must be 1-D (N,), got shape {arr.shape}; flatten it.")
        out[key] = arr.astype(np.float32 if key in _FLOAT_KEYS else bool, copy=False)

    n = len(out["observations"])
    if n == 0:
        raise DatasetError(f"{where}: key 'observations' is empty (0 transitions); collect at least one episode.")
    for key, arr in out.items():
        if len(arr) != n:
            raise DatasetError(
                f"{where}: key {key!r} has {len(arr)} rows but 'observations' has {n}; every key needs one row "
                "per transition, so re-create the file."
            )
    for key in _FLOAT_KEYS:
        if key in out and not np.isfinite(out[key]).all():
            row = int(np.flatnonzero(~np.isfinite(out[key]).reshape(n, -1).all(axis=1))[0])
            raise DatasetError(
                f"{where}: key {key!r} contains NaN/inf (first at row {row}); drop or repair those "
                "transitions (e.g. a diverged simulation) and re-save."
            )
    for key, dim, what in (("observations", obs_dim, "obs_dim"), ("actions", act_dim, "act_dim")):
        if dim is not None and out[key].shape[1] != dim:
            raise DatasetError(
                f"{where}: key {key!r} has width {out[key].shape[1]} but the task expects {what}={dim}; the file "
                "belongs to a different task/env: point the task at the right dataset."
            )
    if "next_observations" in out and out["next_observations"].shape[1] != out["observations"].shape[1]:
        raise DatasetError(
            f"{where}: key 'next_observations' has width {out['next_observations'].shape[1]} but 'observations' "
            f"has {out['observations'].shape[1]}; re-create the file."
        )
    return out


def write_d4rl_hdf5(path: str | os.PathLike, data: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Write ``data`` (keys and shapes of the module table) and ``attrs`` to ``path`` atomically.

    The file is written to a temporary sibling and moved into place with ``os.replace``
    (:func:`trainers.util.atomic_path`), so readers never see a half-written file. Parent directories are created. Datasets
    are written without HDF5 timestamps, so equal inputs give byte-identical files.

    Raises:
        DatasetError: ``data`` violates the layout (same checks as :func:`load_d4rl_hdf5`).
    """
    path = Path(path)
    arrays = _validate(data, f"{path} (writing)", None, None)
    # atomic_path writes through a unique sibling name, not mkstemp (which would force mode 0600 instead
    # of the umask's default), and removes it if writing fails.
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for key, arr in arrays.items():
            f.create_dataset(key, data=arr, track_times=False)
        json_keys = []
        for name, value in attrs.items():
            if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
                f.attrs[name] = value
            else:
                f.attrs[name] = json.dumps(value)
                json_keys.append(name)
        f.attrs[_JSON_ATTRS] = json.dumps(json_keys)


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_d4rl_hdf5(path: str | os.PathLike, obs_dim: int | None = None, act_dim: int | None = None) -> D4RLData:
    """Load and validate a D4RL-layout HDF5 file (ours or an original D4RL download).

    Args:
        path: the ``.hdf5`` file.
        obs_dim, act_dim: when given, the observation/action widths the task expects.

    Returns:
        :class:`D4RLData` with ``arrays`` cast to float32 (observations, actions, rewards,
        next_observations) and bool (terminals, timeouts), and the decoded file ``attrs``.

    Raises:
        DatasetError: the file is missing or not HDF5; a required key is missing; lengths differ; a float
            key holds NaN/inf; the dataset is empty; obs/act widths differ from ``obs_dim``/``act_dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"{path}: dataset file not found (key 'observations' cannot be read); run the prepare step "
            "(trainers.data.collect) or download/copy the file there."
        )
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an HDF5 file; expected a D4RL-layout .hdf5 file, re-download or re-create it.")
    try:
        with h5py.File(path, "r") as f:
            raw = {k: f[k][()] for k in REQUIRED_KEYS + OPTIONAL_KEYS if isinstance(f.get(k), h5py.Dataset)}
            attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the HDF5 file ({exc}); re-download or re-create it.") from exc
    for name in json.loads(attrs.pop(_JSON_ATTRS, "[]")):
        if name in attrs:
            attrs[name] = json.loads(attrs[name])
    return D4RLData(_validate(raw, str(path), obs_dim, act_dim), attrs, path)


def split_trajectories(data: D4RLData | Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Cut a D4RL-layout dataset into trajectories.

    A trajectory ends at each row where ``terminals | timeouts`` is True (that row is its last step); rows
    after the last flag form a final partial trajectory, which is kept. These are the cuts of D4RL's own
    ``sequence_dataset`` for files with ``timeouts`` (D4RL ``d4rl/__init__.py``; it drops such a tail);
    LaMo's converter cuts differently (docs/deviations.md rows 16 and 45).

    Returns:
        A list of dicts with ``observations`` (T, obs_dim), ``actions`` (T, act_dim), ``rewards`` (T,),
        ``terminals`` (T,) and, when present, ``next_observations`` (T, obs_dim). Arrays are views.
    """
    arrays = data.arrays if isinstance(data, D4RLData) else data
    done = np.asarray(arrays["terminals"], dtype=bool) | np.asarray(arrays["timeouts"], dtype=bool)
    n = len(done)
    ends = np.flatnonzero(done) + 1
    if n and (len(ends) == 0 or ends[-1] != n):
        ends = np.append(ends, n)
    keys = [k for k in ("observations", "actions", "rewards", "terminals", "next_observations") if k in arrays]
    trajs, start = [], 0
    for end in ends:
        trajs.append({k: arrays[k][start:end] for k in keys})
        start = end
    return trajs
