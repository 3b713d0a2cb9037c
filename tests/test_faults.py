"""Fault tolerance with real Ray and a real MLflow store: the driver SIGKILLed mid-sweep and re-run; a
trial's worker process SIGKILLed mid-training and retried by Ray Tune; Ctrl-C mid-sweep, its counts, and
the rerun. Afterwards: exactly one FINISHED child run per trial, every (metric, step) logged exactly once,
and final metrics equal to an uninterrupted run of the same trial."""

from __future__ import annotations

import json
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
from trainers import contract as C
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
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (child,) = c.search_runs([c.get_experiment_by_name("trialkill").experiment_id], "tags.`lamo.role` = 'trial'")
    tags = child.data.tags
    first, second = (json.loads(tags[C.attempt_tag(n)]) for n in (1, 2))
    assert tags[C.ATTEMPT] == "2" and first["parent_run_id"] == second["parent_run_id"] == tags[C.PARENT_RUN]
    assert first["resumed_at_step"] == 0 and second["resumed_at_step"] >= 40, (first, second)
    assert first["pid"] == victim and second["pid"] != victim
    assert_same_as_uninterrupted(tmp_path, sweep, finals, tmp_path / "ref")


def test_ctrl_c_reports_interrupted_trials_and_a_rerun_resumes_them(tmp_path, make_sweep, wait_for,
                                                                   checkpoint_step, check_runs):
    """Ctrl-C in a terminal (SIGINT to the whole foreground process group) while the second of two trials
    trains: Ray Tune stops gracefully and ends ``fit`` without an error, so the counts must come from the
    store. The first trial is finished, the second interrupted (exit 130, parent run KILLED with the
    counts); the rerun skips the first and resumes the second from its checkpoint."""
    sweep_file = make_sweep(tmp_path, "ctrlc")
    sweep = Sweep.load(sweep_file)
    first, second = (trial_workdir(tmp_path / "runs", t) for t in sweep.trials)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", str(sweep_file), "--no-analysis",
                             "--max-concurrent", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # its own group, as a shell's foreground job
    # one trial has finished (its final checkpoint at step 160) and the other one is training
    def one_done_one_training() -> bool:
        training, done = sorted(map(checkpoint_step, (first, second)))
        return training >= 20 and done == 160

    wait_for(one_done_one_training, proc=proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp_id = c.get_experiment_by_name("ctrlc").experiment_id
    children = {ch.data.tags["config_hash"]: ch for ch in c.search_runs([exp_id], "tags.`lamo.role` = 'trial'")}
    stopped = next(t for t in sweep.trials if children[t.config_hash()].info.status != "FINISHED")
    # KILLED by the trial itself as Ray ends its worker (SystemExit); RUNNING if the worker died before that
    assert children[stopped.config_hash()].info.status in {"KILLED", "RUNNING"}, out[-3000:]
    assert sorted(ch.info.status == "FINISHED" for ch in children.values()) == [False, True]
    assert "1 finished, 0 failed, 1 interrupted, 0 skipped" in out, out[-3000:]
    assert f"interrupted: {stopped.slug()}" in out and "rerun the same command" in out
    (parent,) = c.search_runs([exp_id], "tags.`lamo.role` = 'sweep'")
    assert parent.info.status == "KILLED"
    assert {k: parent.data.metrics[k] for k in C.PARENT_METRICS} == {
        "trials_finished": 1, "trials_failed": 0, "trials_skipped": 0, "trials_interrupted": 1}
    resumed_from = checkpoint_step(trial_workdir(tmp_path / "runs", stopped))
    assert 20 <= resumed_from < 160, resumed_from

    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep_file), "--no-analysis"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 finished, 0 failed, 0 interrupted, 1 skipped" in r.stdout, r.stdout[-3000:]
    check_runs(tmp_path, "ctrlc", sweep)  # one FINISHED run per trial, every (metric, step) exactly once
    (rerun,) = [p for p in c.search_runs([exp_id], "tags.`lamo.role` = 'sweep'") if p.info.run_id != parent.info.run_id]
    assert rerun.info.status == "FINISHED" and rerun.data.metrics["trials_interrupted"] == 0
    attempts = json.loads(c.get_run(children[stopped.config_hash()].info.run_id).data.tags[C.attempt_tag(2)])
    assert attempts["resumed_at_step"] == resumed_from, attempts
