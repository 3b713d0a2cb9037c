"""trainers.data.loaders end to end: Minari, DT pickles, validation errors, missing-input messages."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from pydantic import ValidationError

from trainers.config import TrialConfig
from trainers.data.d4rl_hdf5 import DatasetError, write_d4rl_hdf5
from trainers.data.loaders import check_trajectories, load_pickle_trajectories, load_trajectory_list, minari_available
from trainers.inputs import missing_inputs
from trainers.presets import get_preset

TASK = "hopper-medium"  # obs 11, act 3
MINARI_ID = "lamotest/hopper/tiny-v0"


def _traj(rng, n: int, obs_dim: int = 11, act_dim: int = 3, done: bool = True) -> dict:
    return {"observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "terminals": np.array([False] * (n - 1) + [done])}


def _cfg(**data) -> TrialConfig:
    return TrialConfig(task=TASK, data=data, **get_preset("dt"))  # DT: no LM input to resolve


@pytest.fixture
def minari_store(tmp_path, monkeypatch):
    """A private Minari store holding MINARI_ID: 2 episodes (lengths 5 and 7) of Hopper-shaped data."""
    minari = pytest.importorskip("minari")
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rng = np.random.default_rng(0)
    buffers, episodes = [], []
    for i, n in enumerate((5, 7)):
        obs = rng.normal(size=(n + 1, 11)).astype(np.float32)
        act = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        rew = rng.normal(size=n)
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=act, rewards=list(rew),
                                     terminations=[False] * (n - 1) + [i == 0], truncations=[False] * (n - 1) + [i == 1]))
        episodes.append((obs, act, rew))
    with warnings.catch_warnings():  # minari nags about missing author/description metadata
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            MINARI_ID, buffers, algorithm_name="test",
            observation_space=gym.spaces.Box(-np.inf, np.inf, (11,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (3,), np.float32))
    return episodes


def test_minari_dataset_loads_as_trajectories(minari_store, tmp_path):
    assert minari_available(MINARI_ID) is None
    trajs = load_trajectory_list(_cfg(source="minari", minari_id=MINARI_ID), tmp_path)
    assert [len(t["rewards"]) for t in trajs] == [5, 7]
    for t, (obs, act, rew) in zip(trajs, minari_store):
        np.testing.assert_array_equal(t["observations"], obs[:-1])  # final observation dropped
        np.testing.assert_array_equal(t["actions"], act)
        np.testing.assert_allclose(t["rewards"], rew, rtol=1e-6)
        assert t["observations"].dtype == np.float32 and t["rewards"].shape == (len(act),)
    assert missing_inputs([_cfg(source="minari", minari_id=MINARI_ID)], tmp_path) == []


def test_missing_minari_dataset_is_reported(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty-store"))
    cfg = _cfg(source="minari")  # the task's id: mujoco/hopper/medium-v0
    (miss,) = missing_inputs([cfg], tmp_path)
    assert "mujoco/hopper/medium-v0" in miss.what
    assert "minari download mujoco/hopper/medium-v0" in miss.fix and "MINARI_DATASETS_PATH" in miss.fix
    assert str(tmp_path / "empty-store") in miss.fix
    with pytest.raises(DatasetError, match="minari download"):
        load_trajectory_list(cfg, tmp_path)


def test_dt_pickle_needs_opt_in(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "hopper-medium-v2.pkl"
    trajs = [_traj(rng, 4), _traj(rng, 6, done=False)]
    trajs[1]["dones"] = trajs[1].pop("terminals")  # the DT pickle may say dones
    path.write_bytes(pickle.dumps(trajs))
    with pytest.raises(ValidationError, match="allow_pickle"):
        _cfg(source="pickle", path=str(path))
    with pytest.raises(DatasetError, match="allow_pickle"):
        load_pickle_trajectories(path, allow_pickle=False)
    out = load_trajectory_list(_cfg(source="pickle", path=str(path), allow_pickle=True), tmp_path)
    assert [len(t["rewards"]) for t in out] == [4, 6]
    np.testing.assert_array_equal(out[1]["observations"], trajs[1]["observations"])
    path.write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(DatasetError, match="list of trajectory dicts"):
        load_trajectory_list(_cfg(source="pickle", path=str(path), allow_pickle=True), tmp_path)
    with pytest.raises(DatasetError, match="no such file"):
        load_trajectory_list(_cfg(source="pickle", path=str(tmp_path / "nope.pkl"), allow_pickle=True), tmp_path)


@pytest.mark.parametrize("corrupt, message", [
    (lambda t: t[0]["observations"].__setitem__((2, 3), np.nan), "trajectory 0 observations contain NaN"),
    (lambda t: t[1]["rewards"].__setitem__(0, np.inf), "trajectory 1 rewards contain NaN or inf"),
    (lambda t: t[1].__setitem__("observations", t[1]["observations"][:, :10]), r"trajectory 1 observations have shape \(6, 10\).*\(T, 11\)"),
    (lambda t: t[0].__setitem__("actions", t[0]["actions"][:, :2]), r"actions have shape \(4, 2\)"),
    (lambda t: t[0].__setitem__("rewards", t[0]["rewards"][:3]), "4 observations, 4 actions and 3 rewards"),
    (lambda t: t.clear(), "no trajectories; the dataset is empty"),
    (lambda t: t[1].pop("actions"), "trajectory 1 has no 'actions'"),
])
def test_corrupt_trajectories_are_named(tmp_path, corrupt, message):
    rng = np.random.default_rng(2)
    trajs = [_traj(rng, 4), _traj(rng, 6)]
    corrupt(trajs)
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(trajs))
    with pytest.raises(DatasetError, match=message) as err:
        load_trajectory_list(_cfg(source="pickle", path=str(path), allow_pickle=True), tmp_path)
    assert str(path) in str(err.value)


def test_collected_hdf5_source_validates(tmp_path):
    """d4rl/collected HDF5 goes through the same checks: wrong obs width and NaN are named."""
    rng = np.random.default_rng(3)
    n = 20
    arrays = {"observations": rng.normal(size=(n, 11)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
              "rewards": np.ones(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    arrays["timeouts"][9] = True
    path = tmp_path / "datasets" / "hopper-medium-sb3-v0.hdf5"
    write_d4rl_hdf5(path, arrays, {})
    trajs = load_trajectory_list(_cfg(source="collected"), tmp_path)
    assert [len(t["rewards"]) for t in trajs] == [10, 10]
    wide = dict(arrays, observations=rng.normal(size=(n, 17)).astype(np.float32))
    write_d4rl_hdf5(path, wide, {})
    with pytest.raises(DatasetError, match="obs_dim=11"):
        load_trajectory_list(_cfg(source="collected"), tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        load_trajectory_list(_cfg(source="d4rl"), tmp_path)


def test_check_trajectories_mismatched_lengths():
    rng = np.random.default_rng(4)
    t = _traj(rng, 5)
    t["actions"] = t["actions"][:4]
    with pytest.raises(DatasetError, match="where-it-is: trajectory 0 has 5 observations, 4 actions"):
        check_trajectories([t], 11, 3, "where-it-is")
