"""Published datasets from their canonical source: D4RL's HDF5 files and the DQN Replay checkpoints are
downloaded by ``prepare`` (verified, atomic, with a manifest whose sha256 is logged with each trial), and
``--prepare-only`` fetches what it can before listing every input it cannot get.

A local HTTP server (:class:`benchmarks.standins.FileServer`) stands in for D4RL's file server and the DQN
Replay bucket (this machine has no internet), reached through the mirror variables ``LAMO_D4RL_BASE_URL`` / ``LAMO_DQN_REPLAY_BASE_URL``;
the files it serves are written in the real formats by the real writers (D4RL layout with
:func:`trainers.data.d4rl_hdf5.write_d4rl_hdf5`; Dopamine's gzip-compressed ``.npy`` per array)."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from benchmarks.standins import FileServer
from tests.conftest import free_port
from trainers.config import TrialConfig


def _d4rl_bytes(tmp: Path, obs_dim: int, act_dim: int, n: int = 300) -> bytes:
    from trainers.data.d4rl_hdf5 import write_d4rl_hdf5

    rng = np.random.default_rng(0)
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    write_d4rl_hdf5(tmp, {"observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
                          "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
                          "rewards": rng.normal(size=n).astype(np.float32), "terminals": np.zeros(n, bool),
                          "timeouts": timeouts}, {"env_id": "stand-in"})
    return tmp.read_bytes()


def _npy_gz(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return gzip.compress(buf.getvalue())


def _dqn_replay_files(n: int = 120) -> dict[str, bytes]:
    """One stand-in DQN Replay checkpoint in Dopamine's layout (N frames, actions, rewards, terminals)."""
    rng = np.random.default_rng(0)
    terminal = np.zeros(n, np.uint8)
    terminal[[39, 79, 119]] = 1
    return {"observation": _npy_gz(rng.integers(0, 255, (n, 84, 84), dtype=np.uint8)),
            "action": _npy_gz(rng.integers(0, 4, n).astype(np.int32)),
            "reward": _npy_gz(rng.integers(0, 2, n).astype(np.float32)),
            "terminal": _npy_gz(terminal)}


def _cfg(task: str) -> TrialConfig:
    return TrialConfig.model_validate({"task": task, "data": {"source": "d4rl"}, "variant": "dt",
                                       "model": {"lm": None, "init": "random"}, "language": {"weight": 0}})


@pytest.fixture
def d4rl_server(tmp_path, monkeypatch):
    body = _d4rl_bytes(tmp_path / "stand-in.hdf5", 11, 3)
    srv = FileServer({"/gym_mujoco_v2/hopper_medium-v2.hdf5": body,
                      "/gym_mujoco_v2/walker2d_medium-v2.hdf5": body}, short=("/gym_mujoco_v2/walker2d_medium-v2.hdf5",))
    monkeypatch.setenv("LAMO_D4RL_BASE_URL", srv.url)
    yield srv, body
    srv.close()


def test_d4rl_file_is_downloaded_verified_and_its_hash_recorded(d4rl_server, tmp_path):
    from trainers.downloads import dataset_file_sha256
    from trainers.inputs import ensure_inputs, inputs_to_prepare, missing_inputs
    from trainers.paths import trial_dataset_path

    srv, body = d4rl_server
    cfg, dd = _cfg("hopper-medium"), tmp_path / "data"
    assert missing_inputs([cfg], dd) == []  # the source answers: prepare will fetch it
    (line,) = inputs_to_prepare([cfg], dd)
    assert "hopper_medium-v2" in line and srv.url in line
    made = ensure_inputs([cfg], dd, progress=False, log=lambda *_: None)
    path = trial_dataset_path(cfg, dd)
    assert path.read_bytes() == body
    assert dataset_file_sha256(path) == hashlib.sha256(body).hexdigest()
    assert list(made["downloads"]) == [path.name]
    assert [p for p in path.parent.iterdir() if p.name.startswith(".download")] == []
    n = len(srv.requests)
    ensure_inputs([cfg], dd, progress=False, log=lambda *_: None)  # present: nothing downloaded again
    assert len(srv.requests) == n


def test_a_truncated_download_is_refused_and_leaves_nothing(d4rl_server, tmp_path):
    from trainers.downloads import DownloadError
    from trainers.inputs import ensure_inputs
    from trainers.paths import trial_dataset_path

    cfg, dd = _cfg("walker2d-medium"), tmp_path / "data"
    with pytest.raises(DownloadError, match="truncated"):
        ensure_inputs([cfg], dd, progress=False, log=lambda *_: None)
    d = trial_dataset_path(cfg, dd).parent
    assert not d.exists() or list(d.iterdir()) == []


def test_unreachable_source_is_missing_with_the_fetch_command(tmp_path, monkeypatch):
    from trainers.inputs import missing_inputs

    monkeypatch.setenv("LAMO_D4RL_BASE_URL", f"http://127.0.0.1:{free_port()}/")
    (m,) = missing_inputs([_cfg("hopper-medium")], tmp_path / "data")
    assert "D4RL dataset 'hopper_medium-v2'" in m.what
    assert "lamo-trial fetch --sweep" in m.fix and "download here impossible" in m.fix


def test_prepare_only_fetches_what_it_can_then_lists_every_gap(tmp_path, monkeypatch):
    """D4RL unreachable, the DQN Replay mirror reachable: the Atari checkpoint is downloaded and loads, and
    the one error lists the D4RL file."""
    from trainers.domains.atari.data import dqn_replay_files, load_dqn_replay
    from trainers.inputs import InputsMissing, ensure_inputs
    from trainers.paths import trial_dataset_path

    atari, hopper, dd = _cfg("breakout-medium"), _cfg("hopper-medium"), tmp_path / "data"
    replay_dir = trial_dataset_path(atari, dd)
    arrays = _dqn_replay_files()
    files = {f"/Breakout/1/replay_logs/{p.name}": arrays[k] for k, p in dqn_replay_files(replay_dir).items()}
    srv = FileServer(files)
    try:
        monkeypatch.setenv("LAMO_DQN_REPLAY_BASE_URL", srv.url)
        monkeypatch.setenv("LAMO_D4RL_BASE_URL", f"http://127.0.0.1:{free_port()}/")
        with pytest.raises(InputsMissing) as e:
            ensure_inputs([hopper, atari], dd, keep_going=True, progress=False, log=lambda *_: None)
    finally:
        srv.close()
    assert [m.what for m in e.value.missing] == ["D4RL dataset 'hopper_medium-v2' for task 'hopper-medium'"]
    assert sorted(srv.requests) == sorted(files)
    ds = load_dqn_replay(replay_dir, "breakout", 4)
    assert ds.frames.shape == (120, 84, 84) and int(ds.terminals.sum()) == 3
    # the checkpoint's value of the trials' dataset_sha256 tag: the hash of its four files' hashes
    from trainers.downloads import dataset_file_sha256

    lines = sorted(f"{p.name} {hashlib.sha256(arrays[k]).hexdigest()}\n" for k, p in dqn_replay_files(replay_dir).items())
    assert dataset_file_sha256(replay_dir) == hashlib.sha256("".join(lines).encode()).hexdigest()


def test_lamo_trial_fetch_sweep_downloads_and_names_what_fails(d4rl_server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from orchestrator.trial_cli import app

    srv, body = d4rl_server
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"""
name: fetchme
storage: {tmp_path / 'st'}
base: {{data: {{source: d4rl}}}}
variants: {{dt: {{preset: dt}}}}
grid: {{task: [hopper-medium, kitchen-partial], sample_ratio: [1.0], seed: [0], variant: [dt]}}
""")
    r = CliRunner().invoke(app, ["fetch", "--sweep", str(sweep)])
    assert r.exit_code == 3, r.output  # kitchen-partial's file is not on the stand-in server: a failed download
    assert (tmp_path / "st" / "data" / "d4rl" / "hopper_medium-v2.hdf5").read_bytes() == body
    assert "kitchen_microwave_kettle_light_slider-v0" in r.output


def test_minari_dataset_is_planned_as_a_download_when_its_remote_answers(tmp_path, monkeypatch):
    """Minari's default remote is the Hugging Face hub: with a hub that answers, an absent Minari dataset
    is a ``prepare`` download (``minari.load_dataset(download=True)``), not a missing input. (The download
    itself needs Minari's real hub repositories and is not run here.)"""
    import huggingface_hub.constants

    from trainers.inputs import inputs_to_prepare, missing_inputs

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty-store"))
    monkeypatch.delenv("MINARI_REMOTE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # tests/conftest.py sets it; this hub is local
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    cfg = TrialConfig.model_validate({"task": "hopper-medium", "data": {"source": "minari"}, "variant": "dt",
                                      "model": {"lm": None, "init": "random"}, "language": {"weight": 0}})
    srv = FileServer({})
    try:
        monkeypatch.setenv("HF_ENDPOINT", srv.url.rstrip("/"))
        assert missing_inputs([cfg], tmp_path) == []
        (line,) = inputs_to_prepare([cfg], tmp_path)
        assert "Minari dataset mujoco/hopper/medium-v0" in line and "hf://farama-minari" in line
    finally:
        srv.close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    (m,) = missing_inputs([cfg], tmp_path)
    assert "minari download mujoco/hopper/medium-v0" in m.fix and "download impossible here" in m.fix
