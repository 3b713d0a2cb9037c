"""A tracking-server outage mid-sweep (PostgreSQL + ``mlflow server`` stopped, then started again):
training goes on, metrics are buffered and arrive once the server is back, each exactly once."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.schema import Sweep
from orchestrator.sweep import trial_workdir

pytestmark = pytest.mark.slow(reason="PostgreSQL + mlflow server stopped and restarted under a Ray sweep: ~1.5 min")


def test_server_outage_mid_sweep_loses_nothing(tracking_server, tracking_script, tmp_path, make_sweep, wait_for,
                                               checkpoint_step):
    server, _script = tracking_server, tracking_script
    sweep_file = make_sweep(tmp_path, "outage", ratios="1.0", steps=600, every=300)
    sweep = Sweep.load(sweep_file)
    (trial,) = sweep.trials
    wd = trial_workdir(tmp_path / "runs", trial)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", str(sweep_file), "--no-analysis",
                             "--tracking-uri", server["uri"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    wait_for(lambda: checkpoint_step(wd) >= 20, proc=proc)
    r = _script("stop", server, timeout=120)
    assert r.returncode == 0, r.stderr
    down_at = checkpoint_step(wd)
    # training goes on without the server (it may even reach the last step and wait there to deliver)
    wait_for(lambda: checkpoint_step(wd) >= min(down_at + 40, 600), proc=proc)
    r = _script("start", server)
    assert r.returncode == 0, r.stderr
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "tracking server unreachable" in out and "buffered metrics delivered" in out
    c = MlflowClient(server["uri"])
    (run,) = c.search_runs([c.get_experiment_by_name("outage").experiment_id], "tags.`lamo.role` = 'trial'")
    assert run.info.status == "FINISHED"
    assert [m.step for m in c.get_metric_history(run.info.run_id, "train/action_loss")] == list(range(10, 601, 10))
    assert [m.step for m in c.get_metric_history(run.info.run_id, "eval/rtg_76/normalised_score")] == [300, 600]
