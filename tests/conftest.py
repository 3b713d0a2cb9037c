"""Shared fixtures. Tests run offline on CPU with real MuJoCo, torch, Ray and MLflow.

Test modules share helpers through the fixtures here, never by importing each other:

* ``tiny_inputs`` (session): a collected Reacher2d dataset and a tiny pre-trained GPT-2, made once;
* ``new_sqlite_uri`` (session): a factory of fresh MLflow SQLite stores (schema created once);
* ``tracking_server`` (module) and ``tracking_script``: ``scripts/tracking_server.sh`` (PostgreSQL + MLflow);
* ``make_sweep``, ``wait_for``, ``checkpoint_step``, ``check_runs``: building and watching small sweeps
  that run through the ``lamo-sweep`` CLI (fault-tolerance, multi-node and outage tests).

``REPO`` stays importable (``from tests.conftest import REPO``) for module-level parametrisation.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    """Run every test in its own directory (MuJoCo writes MUJOCO_LOG.TXT into the cwd)."""
    monkeypatch.chdir(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- tiny real inputs ------------------------------------------------------------------------------
def _make_tiny_inputs(root: Path, episodes: int, seed: int, lm_steps: int) -> tuple[Path, Path]:
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path
    from trainers.lm.pretrain import PretrainRecipe, pretrain_lm

    data = root / "data"
    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", data), episodes=episodes, seed=seed,
                    progress=False)
    lm = root / "lm"
    pretrain_lm(PretrainRecipe(vocab_size=300, n_layer=1, n_embd=32, n_head=2, n_positions=64, block_size=32,
                               batch_size=4, steps=lm_steps), lm, progress=False)
    return data, lm


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """``(data_dir, lm_dir)``: a small collected Reacher2d dataset (12 episodes) under ``data_dir`` and a
    tiny real pre-trained GPT-2 (5 stage-1 steps on WikiText, vocab 300, 1 layer) at ``lm_dir``. Made
    once per session (the LM's tokenizer + tokenisation take ~20 s on 2 busy cores). Treat as read-only:
    trials only add their token-block cache (``data_dir/corpus_cache``, written atomically)."""
    return _make_tiny_inputs(tmp_path_factory.mktemp("tiny-inputs"), episodes=12, seed=0, lm_steps=5)


# --- MLflow stores ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def new_sqlite_uri(tmp_path_factory):
    """``new_sqlite_uri(directory) -> uri``: a fresh MLflow SQLite store ``directory/mlflow.db``, a copy
    of an empty store whose schema is created once per session (MLflow's migrations take seconds)."""
    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"

    def new(directory: Path) -> str:
        if not template.exists():
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments(max_results=1)
        shutil.copy(template, Path(directory) / "mlflow.db")
        return f"sqlite:///{Path(directory) / 'mlflow.db'}"

    return new


# --- tracking server (scripts/tracking_server.sh) --------------------------------------------------
def _tracking_script(cmd: str, srv: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAMO_MLFLOW": str(Path(sys.executable).parent / "mlflow")}
    return subprocess.run(["bash", str(REPO / "scripts" / "tracking_server.sh"), cmd, "--dir", srv["dir"],
                           "--port", str(srv["port"]), "--pg-port", str(srv["pg_port"])],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def tracking_script():
    """``tracking_script(cmd, server, timeout=240)``: run ``scripts/tracking_server.sh CMD`` for ``server``."""
    return _tracking_script


@pytest.fixture(scope="module")
def tracking_server():
    """A running tracking server (PostgreSQL + ``mlflow server``) for one test module: a dict with
    ``dir``, ``port``, ``pg_port``, ``uri``, ``start_s``; a test that stops it sets ``stopped``.

    Needs PostgreSQL (Debian's ``postgresql``; the script installs it with apt-get when run as root) and
    ``psycopg2-binary``; skipped, with the reason, only when PostgreSQL cannot be installed."""
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed in the venv (pyproject pin)")
    # the PostgreSQL cluster runs as the `postgres` user when we are root: it needs a traversable path,
    # which pytest's tmp_path (/tmp/pytest-of-root, mode 700) is not
    d = tempfile.mkdtemp(prefix="lamo-tracking-", dir="/tmp")
    os.chmod(d, 0o755)
    srv = {"dir": d, "port": free_port(), "pg_port": free_port()}
    t0 = time.perf_counter()
    r = _tracking_script("start", srv)
    srv["start_s"] = time.perf_counter() - t0
    if r.returncode != 0:
        _tracking_script("stop", srv, timeout=60)
        if "PostgreSQL (initdb, pg_ctl) not found" in r.stderr or "apt-get install postgresql failed" in r.stderr:
            shutil.rmtree(d, ignore_errors=True)
            pytest.skip(f"PostgreSQL cannot be installed here: {r.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"tracking_server.sh start failed (rc {r.returncode}):\n{r.stderr}")
    srv["uri"] = r.stdout.strip().splitlines()[-1]
    print(f"\n[tracking server] started in {srv['start_s']:.1f} s at {srv['uri']}")
    yield srv
    if not srv.get("stopped"):
        _tracking_script("stop", srv, timeout=60)
    shutil.rmtree(d, ignore_errors=True)


# --- small sweeps through the CLI ------------------------------------------------------------------
_SWEEP = """
name: {name}
storage: {root}/runs
data_dir: {root}/data
resources: {{cpu: 1}}
max_failures: 2
base:
  train: {{steps: {steps}, batch_size: 16, warmup_steps: 5, log_every: 10, checkpoint_every: 20}}
  eval: {{every_steps: {every}, episodes: 2, max_episode_steps: 15}}
variants:
  dt: {{preset: dt, model: {{arch: {{n_layer: 1, n_embd: 32, n_head: 1, n_inner: 64}}}}, train: {{warmup_steps: 5}}}}
grid: {{task: [reacher2d-medium], sample_ratio: [{ratios}], seed: [0]}}
"""


def _make_sweep(root: Path, name: str, ratios="0.5, 1.0", steps=160, every=80, *, new_store=None) -> Path:
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path

    if new_store is not None:  # an empty store with its schema, instead of MLflow's migrations in the driver
        (root / "runs").mkdir(parents=True, exist_ok=True)
        new_store(root / "runs")
    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", root / "data"), episodes=12, seed=0,
                    progress=False)
    p = root / f"{name}.yaml"
    p.write_text(textwrap.dedent(_SWEEP.format(name=name, root=root, ratios=ratios, steps=steps, every=every)))
    return p


@pytest.fixture(scope="session")
def make_sweep(new_sqlite_uri):
    """``make_sweep(root, name, ratios="0.5, 1.0", steps=160, every=80) -> sweep file``: a DT sweep over
    ``ratios`` on a 12-episode Reacher2d dataset collected into ``root/data``; storage ``root/runs``
    (MLflow store ``root/runs/mlflow.db``, created empty with its schema from the session's template, which
    saves each sweep the seconds of MLflow's schema migrations); logs every 10 steps, checkpoints every
    20, ``max_failures: 2``."""
    return functools.partial(_make_sweep, new_store=new_sqlite_uri)


def _wait_for(pred, timeout=300, proc=None):
    deadline = time.time() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("sweep ended early:\n" + proc.stdout.read()[-3000:])
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def wait_for():
    """``wait_for(pred, timeout=300, proc=None)``: poll ``pred`` every 0.2 s; fails on timeout or when
    ``proc`` (a sweep started with ``stdout=PIPE``) ends first."""
    return _wait_for


def _checkpoint_step(wd: Path) -> int:
    import torch

    from trainers.checkpoint import CHECKPOINT_DIR

    try:
        return torch.load(wd / CHECKPOINT_DIR / "state.pt", weights_only=False)["step"]
    except Exception:  # noqa: BLE001 - not there yet / being replaced
        return -1


@pytest.fixture(scope="session")
def checkpoint_step():
    """``checkpoint_step(trial_workdir) -> int``: the step of its latest checkpoint, -1 when none (yet)."""
    return _checkpoint_step


def _check_runs(root: Path, name: str, sweep) -> dict:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name(name)
    children = c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'")
    assert sorted(ch.data.tags["config_hash"] for ch in children) == sorted(t.config_hash() for t in sweep.trials)
    assert all(ch.info.status == "FINISHED" for ch in children), [ch.info.status for ch in children]
    finals = {}
    for ch in children:
        steps = [m.step for m in c.get_metric_history(ch.info.run_id, "train/action_loss")]
        assert steps == list(range(10, sweep.trials[0].train.steps + 1, 10)), steps  # no gap, no duplicate
        for key in ch.data.metrics:
            hist = [m.step for m in c.get_metric_history(ch.info.run_id, key)]
            assert len(hist) == len(set(hist)), (key, hist)
        finals[ch.info.run_name] = {k: v for k, v in ch.data.metrics.items()
                                    if k.startswith(("eval/", "train/action_loss")) and k != "eval/episodes_per_s"}
    return finals


@pytest.fixture(scope="session")
def check_runs():
    """``check_runs(root, name, sweep) -> {slug: final eval metrics}``: one FINISHED child run per trial of
    ``sweep`` in ``root/runs/mlflow.db``, ``train/action_loss`` at every 10th step exactly once, no
    (key, step) twice."""
    return _check_runs


# --- Atari trials shared by the Atari test modules ----------------------------------------------------
def _run_cut_and_resumed(cfg, tmp_path, data):
    """Run trial ``cfg`` uninterrupted (into ``tmp_path/ref``) and once killed by an exception right after
    the step-3 metrics (``tmp_path/cut``; the step-2 checkpoint is asserted), then resumed; returns both
    final metric dicts. Shared by the Atari resume tests."""
    import torch

    from trainers.checkpoint import CHECKPOINT_DIR
    from trainers.train import ConsoleReporter, run_trial

    ref = run_trial(cfg, tmp_path / "ref", data)

    class Boom(Exception):
        pass

    class Dies(ConsoleReporter):
        def log(self, step, metrics):
            super().log(step, metrics)
            if step == 3:
                raise Boom

    with pytest.raises(Boom):
        run_trial(cfg, tmp_path / "cut", data, reporter=Dies(tmp_path / "cut"))
    assert torch.load(tmp_path / "cut" / CHECKPOINT_DIR / "state.pt", weights_only=False)["step"] == 2
    resumed = run_trial(cfg, tmp_path / "cut", data)
    return ref, resumed


@pytest.fixture(scope="session")
def run_cut_and_resumed():
    """``run_cut_and_resumed(cfg, tmp_path, data) -> (reference metrics, resumed metrics)``."""
    return _run_cut_and_resumed


def _run_one_trial_atari_sweep(tmp_path, sweep_text: str, experiment: str):
    """Collect 400 Breakout transitions (so ``prepare`` skips the 50k collection), run the one-trial sweep
    ``sweep_text`` (formatted with ``root=tmp_path``) through ``lamo-sweep``, and return the MLflow client
    and the finished trial run. Shared by the Atari sweep tests."""
    import textwrap

    from mlflow.tracking import MlflowClient

    from trainers.config import TrialConfig
    from trainers.domains.atari.data import collect_atari_dataset
    from trainers.paths import trial_dataset_path

    path = trial_dataset_path(TrialConfig(task="breakout-medium"), tmp_path / "data")
    collect_atari_dataset("breakout", path, 400, progress=False)  # prepare then finds it: no 50k collection
    sweep = tmp_path / "atari.yaml"
    sweep.write_text(textwrap.dedent(sweep_text.format(root=tmp_path)))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], "tags.`lamo.role` != 'sweep'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    return c, runs[0]


@pytest.fixture(scope="session")
def run_one_trial_atari_sweep():
    """``run_one_trial_atari_sweep(tmp_path, sweep_text, experiment) -> (MlflowClient, finished run)``."""
    return _run_one_trial_atari_sweep


# --- a trial killed right after a checkpoint ------------------------------------------------------------
def _stop_after_checkpoint(workdir, step):
    """A console reporter that raises ``KeyboardInterrupt`` right after the checkpoint of ``step`` is
    written: the trial is killed there (the resume tests then continue it)."""
    from trainers.train import ConsoleReporter

    class StopAfterCheckpoint(ConsoleReporter):
        def checkpoint(self, at, path, metrics):
            if at == step:
                raise KeyboardInterrupt(f"killed after the checkpoint of step {step}")

    return StopAfterCheckpoint(workdir, quiet=True)


@pytest.fixture(scope="session")
def stop_after_checkpoint():
    """``stop_after_checkpoint(workdir, step) -> reporter`` (:func:`_stop_after_checkpoint`)."""
    return _stop_after_checkpoint

