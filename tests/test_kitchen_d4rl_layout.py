"""D4RL's hosted Kitchen files through the real loader (issue #19).

The hosted ``kitchen-*-v0`` files hold six datasets: ``observations`` (N, 60), ``actions`` (N, 9), ``rewards``,
float32 ``terminals`` (D4RL ``scripts/generation/generate_kitchen_datasets.py``), a flat ``infos`` (the demo
index) and ``timeouts``, which that script does not write but the hosted files carry (Farama
minari-dataset-generation-scripts ``scripts/kitchen/d4rl_datasets/dataset.py`` and ``total_steps.py`` read
``f['timeouts']`` from the hosted complete and partial files). A demo stopped by the kitchen envs' 280-step limit
ends with ``timeouts`` set and no terminal (inferred, see ``trainers/data/d4rl_hdf5.py``). These tests write
such a file with plain h5py and read it with ``load_trajectory_list`` (the trainer's loader), checking where the
trajectories start and end against the demo index stored in ``infos``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

# (rows, how the demo ends) in file order; "limit" = cut by the 280-step limit: timeouts set, terminals 0
DEMOS = [(131, "terminal"), (280, "limit"), (57, "terminal"), (280, "limit"), (212, "terminal"), (1, "terminal")]
KITCHEN_PARTIAL_FILE = "kitchen_microwave_kettle_light_slider-v0.hdf5"  # D4RL d4rl/infos.py, kitchen-partial-v0


def _config(task: str = "kitchen-partial"):
    from trainers.config import TrialConfig
    from trainers.presets import get_preset

    return TrialConfig.model_validate({**get_preset("dt"), "task": task, "data": {"source": "d4rl"}})


def _write_hosted_layout(path: Path, demos=DEMOS, seed: int = 0, with_timeouts: bool = True) -> dict:
    """Write the hosted layout with h5py, gzip-compressed as D4RL does; return the arrays written."""
    rng = np.random.default_rng(seed)
    lengths = [rows for rows, _ in demos]
    n, ends = sum(lengths), np.cumsum(lengths) - 1
    terminals, timeouts = np.zeros(n, np.float32), np.zeros(n, bool)
    for end, (_, how) in zip(ends, demos):
        if how == "terminal":
            terminals[end] = 1.0
        else:
            timeouts[end] = True
    arrays = {"observations": rng.normal(size=(n, 60)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (n, 9)).astype(np.float32),
              "rewards": rng.integers(0, 5, n).astype(np.float32), "terminals": terminals,
              "infos": np.repeat(np.arange(len(demos), dtype=np.int64), lengths)}
    if with_timeouts:
        arrays["timeouts"] = timeouts
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value, compression="gzip")
    return arrays


def _demo_of_each_row(trajs: list[dict], arrays: dict) -> list[np.ndarray]:
    """For each trajectory, the ``infos`` demo index of its rows, found by matching its observations to the
    file's rows (the loader does not return ``infos``)."""
    obs = arrays["observations"]
    out, start = [], 0
    for t in trajs:
        stop = start + len(t["observations"])
        assert np.array_equal(t["observations"], obs[start:stop])  # rows in file order, none dropped
        assert np.array_equal(t["actions"], arrays["actions"][start:stop])
        out.append(arrays["infos"][start:stop])
        start = stop
    assert start == len(obs)
    return out


def test_hosted_kitchen_layout_splits_into_its_demos_at_terminals_and_timeouts(tmp_path):
    from trainers.data.loaders import load_trajectory_list

    arrays = _write_hosted_layout(tmp_path / "d4rl" / KITCHEN_PARTIAL_FILE)
    trajs = load_trajectory_list(_config(), tmp_path)

    assert [len(t["observations"]) for t in trajs] == [131, 280, 57, 280, 212, 1]
    # each trajectory is exactly one demo: one infos label per trajectory, labels 0..5 in order
    labels = _demo_of_each_row(trajs, arrays)
    assert [np.unique(x).tolist() for x in labels] == [[d] for d in range(len(DEMOS))]
    assert all(len(t["observations"]) <= 280 for t in trajs)  # within the kitchen envs' step limit
    # the two demos cut by the step limit are separate trajectories only because of `timeouts`:
    # cutting at `terminals` alone would glue each onto the demo after it
    terminal_only = np.flatnonzero(arrays["terminals"]) + 1
    assert np.diff(np.concatenate([[0], terminal_only])).tolist() == [131, 337, 492, 1]


def test_hosted_kitchen_layout_without_timeouts_is_refused_naming_file_and_key(tmp_path):
    from trainers.data.d4rl_hdf5 import DatasetError
    from trainers.data.loaders import load_trajectory_list

    path = tmp_path / "d4rl" / KITCHEN_PARTIAL_FILE
    _write_hosted_layout(path, with_timeouts=False)  # what generate_kitchen_datasets.py itself writes
    with pytest.raises(DatasetError) as e:
        load_trajectory_list(_config(), tmp_path)
    msg = str(e.value)
    assert str(path) in msg and "missing key 'timeouts'" in msg
    assert "time limit" in msg and "cannot be recovered" in msg  # why it is refused, and the fix
    assert "'terminals'" in msg  # the keys that were found


def test_rehearsal_standin_kitchen_file_is_the_hosted_layout_and_loads_per_demo(tmp_path):
    from benchmarks.standins import KITCHEN_STEP_LIMIT, kitchen_demos, write_d4rl_kitchen
    from trainers.data.loaders import load_trajectory_list

    path = tmp_path / "d4rl" / KITCHEN_PARTIAL_FILE
    write_d4rl_kitchen(path, seed=3)
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["actions", "infos", "observations", "rewards", "terminals", "timeouts"]
        assert f["terminals"].dtype == np.float32 and f["infos"].shape == f["rewards"].shape
        assert all(f[k].compression == "gzip" for k in f)
        arrays = {k: f[k][()] for k in f}
    demos = kitchen_demos()
    assert any(cut for _, cut in demos) and any(not cut for _, cut in demos)  # both kinds of ending

    trajs = load_trajectory_list(_config(), tmp_path)
    assert [len(t["observations"]) for t in trajs] == [rows for rows, _ in demos]
    labels = _demo_of_each_row(trajs, arrays)
    assert [np.unique(x).tolist() for x in labels] == [[d] for d in range(len(demos))]
    ends = np.cumsum([len(t["observations"]) for t in trajs]) - 1
    for end, (rows, cut) in zip(ends, demos):  # how each demo ends: a terminal, or the step limit's timeout
        assert (bool(arrays["timeouts"][end]), arrays["terminals"][end]) == ((True, 0.0) if cut else (False, 1.0))
        assert rows == (KITCHEN_STEP_LIMIT if cut else 60)
    assert arrays["timeouts"].sum() + arrays["terminals"].sum() == len(demos)  # no other flags
