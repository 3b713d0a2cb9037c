"""Fault tolerance with real Ray and a real MLflow store: the driver SIGKILLed mid-sweep and re-run; a
trial's worker process SIGKILLed mid-training and retried by Ray Tune. Afterwards: exactly one FINISHED
child run per trial, every (metric, step) logged exactly once, and final metrics equal to an
uninterrupted run of the same trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.schema import Sweep
from orchestrator.sweep import trial_workdir
from trainers.data.collect import collect_dataset
from trainers.paths import dataset_path
from trainers.train import CHECKPOINT_DIR, run_trial

pytestmark = pytest.mark.slow

SWEEP = """
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


def make_sweep(root: Path, name: str, ratios="0.5, 1.0", steps=160, every=80) -> Path:
    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", root / "data"), episodes=12, seed=0,
                    progress=False)
    p = root / f"{name}.yaml"
    p.write_text(textwrap.dedent(SWEEP.format(name=name, root=root, ratios=ratios, steps=steps, every=every)))
    return p


def start(sweep: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", str(sweep), "--no-analysis", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(pred, timeout=300, proc=None):
    deadline = time.time() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("sweep ended early:\n" + proc.stdout.read()[-3000:])
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def checkpoint_step(wd: Path) -> int:
    try:
        return torch.load(wd / CHECKPOINT_DIR / "state.pt", weights_only=False)["step"]
    except Exception:  # noqa: BLE001 - not there yet / being replaced
        return -1


def check_runs(root: Path, name: str, sweep: Sweep) -> dict:
    """One FINISHED child per trial, each (key, step) once; returns {slug: final eval metrics}."""
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


def assert_same_as_uninterrupted(root: Path, sweep: Sweep, finals: dict, tmp: Path) -> None:
    """Re-run every trial without interruption in-process; the logged final metrics and the final
    weights must be identical (CPU, 1 thread as a trial with resources.cpu = 1)."""
    import json

    torch.set_num_threads(1)
    for t in sweep.trials:
        ref = run_trial(t, tmp / t.slug(), root / "data")
        last_loss = [json.loads(x) for x in (tmp / t.slug() / "metrics.jsonl").read_text().splitlines()
                     if "train/action_loss" in x][-1]["train/action_loss"]
        expect = {k: v for k, v in ref.items() if k != "eval/episodes_per_s"} | {"train/action_loss": last_loss}
        assert finals[t.slug()] == expect, t.slug()
        a = torch.load(tmp / t.slug() / CHECKPOINT_DIR / "state.pt", weights_only=False)["learner"]["model"]
        b = torch.load(trial_workdir(root / "runs", t) / CHECKPOINT_DIR / "state.pt", weights_only=False)["learner"]["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), t.slug()


def orphaned_ray_agents() -> list:
    """Live ``ray::*Agent`` processes re-parented to init (their local Ray's driver and raylet are gone)."""
    out = []
    for p in psutil.process_iter(["ppid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if p.info["ppid"] == 1 and cmd and cmd[0].startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
            out.append(p)
    return out


def test_driver_sigkill_then_rerun_finishes_exactly_once(tmp_path):
    sweep_file = make_sweep(tmp_path, "driverkill")
    sweep = Sweep.load(sweep_file)
    proc = start(sweep_file)
    wds = [trial_workdir(tmp_path / "runs", t) for t in sweep.trials]
    wait_for(lambda: any(checkpoint_step(wd) >= 20 for wd in wds), proc=proc)
    proc.send_signal(signal.SIGKILL)  # no clean-up at all
    proc.wait()
    done_before = [checkpoint_step(wd) for wd in wds]
    assert any(0 < s < 160 for s in done_before), done_before
    time.sleep(2)  # let the killed driver's raylet go down
    orphans = orphaned_ray_agents()
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep_file), "--no-analysis"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # Ray agents the killed driver's local Ray left behind were stopped by the rerun
    assert not [p for p in orphans if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], orphans
    if orphans:
        assert "Ray agent process(es) left by an earlier local Ray" in r.stdout
    finals = check_runs(tmp_path, "driverkill", sweep)
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parents = c.search_runs([c.get_experiment_by_name("driverkill").experiment_id], "tags.`lamo.role` = 'sweep'")
    assert len(parents) == 2  # each invocation is recorded
    assert_same_as_uninterrupted(tmp_path, sweep, finals, tmp_path / "ref")


def test_trial_process_sigkill_is_retried_from_checkpoint(tmp_path):
    sweep_file = make_sweep(tmp_path, "trialkill", ratios="1.0")
    sweep = Sweep.load(sweep_file)
    (trial,) = sweep.trials
    wd = trial_workdir(tmp_path / "runs", trial)
    proc = start(sweep_file)
    wait_for(lambda: checkpoint_step(wd) >= 40, proc=proc)
    victim = int((wd / "trial.pid").read_text())
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert int((wd / "trial.pid").read_text()) != victim  # a new worker process finished the trial
    finals = check_runs(tmp_path, "trialkill", sweep)
    assert_same_as_uninterrupted(tmp_path, sweep, finals, tmp_path / "ref")
