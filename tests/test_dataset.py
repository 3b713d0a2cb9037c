"""D4RL-layout HDF5 I/O, trajectory splitting and dataset collection."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from trainers.data.collect import collect_dataset, episode_seeds
from trainers.data.d4rl_hdf5 import D4RLData, DatasetError, load_d4rl_hdf5, split_trajectories, write_d4rl_hdf5
from trainers.envs import make_env
from trainers.tasks import get_task

TASK = "reacher2d-medium"


def _arrays(n: int = 10, obs_dim: int = 12, act_dim: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    timeouts = np.zeros(n, bool)
    timeouts[n // 2 - 1] = True
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": rng.integers(0, 2, n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": timeouts,
    }


def _raw_h5(path, arrays: dict) -> None:
    """Write arrays with plain h5py (bypassing write_d4rl_hdf5's validation)."""
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "r2d.hdf5"
    summary = collect_dataset(TASK, path, episodes=6, seed=11, progress=False)
    return path, summary


# -- round trips -------------------------------------------------------------------------------------
def test_write_load_roundtrip_exact(tmp_path):
    arrays = _arrays()
    arrays["next_observations"] = np.roll(arrays["observations"], -1, axis=0)
    attrs = {"env_id": "x", "seed": 3, "score": 1.5, "flag": True, "ratios": [0.1, 1.0], "meta": {"a": 1}}
    path = tmp_path / "sub" / "d.hdf5"
    write_d4rl_hdf5(path, arrays, attrs)
    data = load_d4rl_hdf5(path, obs_dim=12, act_dim=2)
    assert isinstance(data, D4RLData) and data.num_transitions == 10 and data.path == path
    assert set(data.arrays) == set(arrays)
    for k, v in arrays.items():
        assert data[k].dtype == v.dtype
        np.testing.assert_array_equal(data[k], v)
    assert data.attrs == attrs
    assert [p.name for p in path.parent.iterdir()] == ["d.hdf5"]  # no temp file left behind


def test_collect_roundtrip(collected):
    path, summary = collected
    data = load_d4rl_hdf5(path, obs_dim=12, act_dim=2)
    n = summary["transitions"]
    assert summary["episodes"] == 6 and n == 600 and summary["seconds"] > 0
    assert data["observations"].shape == (n, 12) and data["actions"].shape == (n, 2)
    assert data["observations"].dtype == np.float32 and data["terminals"].dtype == bool
    np.testing.assert_array_equal(np.flatnonzero(data["timeouts"]), np.arange(99, n, 100))
    assert not data["terminals"].any()
    returns = data["rewards"].reshape(6, 100).sum(axis=1)
    assert summary["mean_return"] == pytest.approx(returns.mean())
    assert summary["std_return"] == pytest.approx(returns.std())
    task = get_task(TASK)
    assert summary["mean_normalised_score"] == pytest.approx(task.normalised_score(returns.mean()))
    assert data.attrs == {
        "env_id": task.env_id, "task": TASK, "behaviour_policy": task.dataset.behaviour_policy, "seed": 11,
        "episodes": 6, "mean_return": summary["mean_return"],
        "mean_normalised_score": summary["mean_normalised_score"], "created_by": "lamo-sweep",
        "transitions": 600, "n_envs": 1, "policies": summary["policies"],
    }
    assert summary["policies"] == [{
        "name": task.dataset.behaviour_policy, "transitions": 600, "trajectories": 6, "complete_episodes": 6,
        "mean_return": summary["mean_return"], "std_return": summary["std_return"],
        "mean_normalised_score": summary["mean_normalised_score"],
    }]
    trajs = split_trajectories(data)
    assert [len(t["rewards"]) for t in trajs] == [100] * 6
    for t in trajs:
        np.testing.assert_array_equal(t["next_observations"][:-1], t["observations"][1:])


def test_collect_replays_exactly(collected):
    """Replaying the recorded actions from the recorded episode seed reproduces the observations."""
    path, _ = collected
    traj = split_trajectories(load_d4rl_hdf5(path))[2]
    env = make_env(get_task(TASK).env_id)
    obs, _ = env.reset(seed=episode_seeds(11, 6)[2])
    for t in range(100):
        np.testing.assert_array_equal(obs, traj["observations"][t])
        obs, r, *_ = env.step(traj["actions"][t])
        assert r == traj["rewards"][t]


def test_collect_determinism(collected, tmp_path):
    path, summary = collected
    again = tmp_path / "again.hdf5"
    summary2 = collect_dataset(TASK, again, episodes=6, seed=11, progress=False)
    a, b = load_d4rl_hdf5(path), load_d4rl_hdf5(again)
    for k in a.arrays:
        np.testing.assert_array_equal(a[k], b[k])
    assert path.read_bytes() == again.read_bytes()
    assert summary2["mean_return"] == summary["mean_return"]
    other = collect_dataset(TASK, tmp_path / "other.hdf5", episodes=6, seed=12, progress=False)
    assert not np.array_equal(load_d4rl_hdf5(tmp_path / "other.hdf5")["observations"], a["observations"])
    assert other["transitions"] == 600


def test_collect_errors(tmp_path):
    with pytest.raises(KeyError, match="known"):
        collect_dataset(TASK, tmp_path / "x.hdf5", episodes=1, seed=0, policy_name="nope", progress=False)
    with pytest.raises(KeyError):
        collect_dataset("no-such-task", tmp_path / "x.hdf5", episodes=1, seed=0, progress=False)


# -- split_trajectories --------------------------------------------------------------------------------
def test_split_terminals_timeouts_trailing():
    n = 10
    data = {
        "observations": np.arange(n, dtype=np.float32)[:, None].repeat(3, 1),
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.isin(np.arange(n), [2]),
        "timeouts": np.isin(np.arange(n), [6]),
    }
    trajs = split_trajectories(data)
    assert [t["rewards"].tolist() for t in trajs] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    assert [t["terminals"].tolist() for t in trajs] == [[False, False, True], [False] * 4, [False] * 3]
    assert set(trajs[0]) == {"observations", "actions", "rewards", "terminals"}
    np.testing.assert_array_equal(trajs[1]["observations"][:, 0], [3, 4, 5, 6])

    data["timeouts"] = np.isin(np.arange(n), [6, 9])  # flag on the last row: no empty trailing piece
    data["next_observations"] = data["observations"] + 1
    trajs = split_trajectories(data)
    assert [len(t["rewards"]) for t in trajs] == [3, 4, 3] and "next_observations" in trajs[0]

    data["terminals"] = np.zeros(n, bool)
    data["timeouts"] = np.zeros(n, bool)
    assert [len(t["rewards"]) for t in split_trajectories(data)] == [10]  # no flag at all: one piece


# -- DatasetError cases --------------------------------------------------------------------------------
def test_error_missing_file(tmp_path):
    path = tmp_path / "absent.hdf5"
    with pytest.raises(DatasetError, match="not found") as e:
        load_d4rl_hdf5(path)
    assert str(path) in str(e.value) and "collect" in str(e.value)


def test_error_not_hdf5(tmp_path):
    path = tmp_path / "text.hdf5"
    path.write_text("definitely not hdf5")
    with pytest.raises(DatasetError, match="not an HDF5 file") as e:
        load_d4rl_hdf5(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals", "timeouts"])
def test_error_missing_key(tmp_path, key):
    arrays = _arrays()
    del arrays[key]
    path = tmp_path / "d.hdf5"
    _raw_h5(path, arrays)
    with pytest.raises(DatasetError, match=f"missing key '{key}'") as e:
        load_d4rl_hdf5(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("key", ["actions", "rewards", "timeouts"])
def test_error_length_mismatch(tmp_path, key):
    arrays = _arrays()
    arrays[key] = arrays[key][:-1]
    path = tmp_path / "d.hdf5"
    _raw_h5(path, arrays)
    with pytest.raises(DatasetError, match=f"key '{key}' has 9 rows but 'observations' has 10") as e:
        load_d4rl_hdf5(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("key, bad", [("observations", np.nan), ("actions", np.inf), ("rewards", -np.inf)])
def test_error_non_finite(tmp_path, key, bad):
    arrays = _arrays()
    arrays[key][4] = bad
    path = tmp_path / "d.hdf5"
    _raw_h5(path, arrays)
    with pytest.raises(DatasetError, match=f"key '{key}' contains NaN/inf \\(first at row 4\\)") as e:
        load_d4rl_hdf5(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("key, kwargs", [("observations", {"obs_dim": 11}), ("actions", {"act_dim": 3})])
def test_error_wrong_dims(tmp_path, key, kwargs):
    path = tmp_path / "d.hdf5"
    write_d4rl_hdf5(path, _arrays(), {})
    with pytest.raises(DatasetError, match=f"key '{key}' has width") as e:
        load_d4rl_hdf5(path, **kwargs)
    assert str(path) in str(e.value) and "different task" in str(e.value)


def test_error_empty(tmp_path):
    path = tmp_path / "d.hdf5"
    _raw_h5(path, {k: v[:0] for k, v in _arrays().items()})
    with pytest.raises(DatasetError, match="key 'observations' is empty") as e:
        load_d4rl_hdf5(path)
    assert str(path) in str(e.value)


def test_write_validates_and_leaves_nothing(tmp_path):
    arrays = _arrays()
    arrays["rewards"] = arrays["rewards"][:-2]
    path = tmp_path / "d.hdf5"
    with pytest.raises(DatasetError, match="key 'rewards'"):
        write_d4rl_hdf5(path, arrays, {})
    assert list(tmp_path.iterdir()) == []
    assert issubclass(DatasetError, ValueError)
