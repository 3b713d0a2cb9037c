"""Fault tolerance with real Ray and a real MLflow store: the driver SIGKILLed mid-sweep and re-run; a
trial's worker process SIGKILLed mid-training and retried by Ray Tune. Afterwards: exactly one FINISHED
child run per trial, every (metric, step) logged exactly once, and final metrics equal to an
uninterrupted run of the same trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.schema import Sweep
from orchestrator.sweep import trial_workdir
from trainers.checkpoint import CHECKPOINT_DIR
from trainers.train import run_trial

pytestmark = pytest.mark.slow(reason="real Ray sweeps killed mid-run and finished, then re-run in-process: "
                                      "1.5-5 min each on 2 cores")


def start(sweep: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", str(sweep), "--no-analysis", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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


AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def ray_agents_of(pid: int) -> list[psutil.Process]:
    """The Ray agent processes among ``pid``'s descendants (a local Ray: driver -> raylet -> agents)."""
    return [p for p in psutil.Process(pid).children(recursive=True)
            if (p.cmdline() or [""])[0].startswith(AGENTS)]


def orphaned(p: psutil.Process) -> bool:
    """Gone, or re-parented to init."""
    try:
        return p.ppid() == 1 or not alive(p)
    except psutil.NoSuchProcess:
        return True


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Alone (`make test` runs `serial` tests after the parallel part): any other local sweep on the machine would
# reap the killed driver's orphaned Ray agents itself (orchestrator/ray_local.py), before this test's rerun.
@pytest.mark.serial(reason="checks that the rerun reaps the Ray agents the killed driver left on the machine")
def test_driver_sigkill_then_rerun_finishes_exactly_once(tmp_path, make_sweep, wait_for, checkpoint_step,
                                                         check_runs):
    sweep_file = make_sweep(tmp_path, "driverkill")
    sweep = Sweep.load(sweep_file)
    proc = start(sweep_file)
    wds = [trial_workdir(tmp_path / "runs", t) for t in sweep.trials]
    wait_for(lambda: any(checkpoint_step(wd) >= 20 for wd in wds), proc=proc)
    agents = ray_agents_of(proc.pid)
    assert {a.cmdline()[0].split()[0] for a in agents} == set(AGENTS), agents  # the driver's local Ray
    raylets = [p for p in psutil.Process(proc.pid).children(recursive=True) if "raylet" in p.name()]
    proc.send_signal(signal.SIGKILL)  # no clean-up at all
    proc.wait()
    done_before = [checkpoint_step(wd) for wd in wds]
    assert any(0 < s < 160 for s in done_before), done_before
    # Ray 2.60 leaves the killed driver's agents behind: its raylet goes down, they are re-parented to init
    wait_for(lambda: not any(alive(r) for r in raylets), timeout=60)
    wait_for(lambda: all(orphaned(a) for a in agents), timeout=60)
    orphans = [a for a in agents if alive(a)]
    assert orphans, "the killed driver left no orphaned Ray agent: nothing for the rerun to reap"
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep_file), "--no-analysis"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the Ray agents the killed driver's local Ray left behind were stopped by the rerun, and it said so
    assert not [p for p in orphans if alive(p)], orphans
    assert "Ray agent process(es) left by an earlier local Ray" in r.stdout
    finals = check_runs(tmp_path, "driverkill", sweep)
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parents = c.search_runs([c.get_experiment_by_name("driverkill").experiment_id], "tags.`lamo.role` = 'sweep'")
    assert len(parents) == 2  # each invocation is recorded
    assert_same_as_uninterrupted(tmp_path, sweep, finals, tmp_path / "ref")


def test_trial_process_sigkill_is_retried_from_checkpoint(tmp_path, make_sweep, wait_for, checkpoint_step,
                                                          check_runs):
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
    # the retry is visible in the run: attempt 2, opened by the same invocation, resumed from the checkpoint
    import json

    from trainers import contract as C

    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (child,) = c.search_runs([c.get_experiment_by_name("trialkill").experiment_id], "tags.`lamo.role` = 'trial'")
    tags = child.data.tags
    first, second = (json.loads(tags[C.attempt_tag(n)]) for n in (1, 2))
    assert tags[C.ATTEMPT] == "2" and first["parent_run_id"] == second["parent_run_id"] == tags[C.PARENT_RUN]
    assert first["resumed_at_step"] == 0 and second["resumed_at_step"] >= 40, (first, second)
    assert first["pid"] == victim and second["pid"] != victim
    assert_same_as_uninterrupted(tmp_path, sweep, finals, tmp_path / "ref")
