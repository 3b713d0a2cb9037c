"""End to end for the discrete baselines: ONE tiny discrete-CQL trial on Breakout (real ALE data collected
here, real d3rlpy) through the real ``lamo-sweep`` CLI: validation, Ray Tune, an MLflow SQLite store and the
analysis; the run logs gamer-normalised ``eval/policy/...`` scores and the Atari table shows CQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow(reason="a 1-trial Ray Tune sweep (discrete CQL on Breakout) with analysis: ~30 s")

SWEEP = """
name: atari-cql-smoke
storage: {root}/runs
data_dir: {root}/data
resources: {{cpu: 1, gpu: 0}}
variants:
  cql:
    preset: cql
    baseline: {{n_quantiles: 8}}
    train: {{steps: 4, batch_size: 4, log_every: 2, checkpoint_every: 2}}
    eval: {{every_steps: 4, episodes: 1, max_episode_steps: 6}}
grid: {{task: [breakout-medium], sample_ratio: [1.0], seed: [0], variant: [cql]}}
"""


def test_discrete_cql_sweep_through_ray_and_mlflow(tmp_path):
    from trainers.config import TrialConfig
    from trainers.data.atari import collect_atari_dataset
    from trainers.paths import trial_dataset_path

    path = trial_dataset_path(TrialConfig(task="breakout-medium"), tmp_path / "data")
    collect_atari_dataset("breakout", path, 400, progress=False)  # prepare then finds it: no 50k collection
    sweep = tmp_path / "atari.yaml"
    sweep.write_text(textwrap.dedent(SWEEP.format(root=tmp_path)))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("atari-cql-smoke")
    runs = c.search_runs([exp.experiment_id], "tags.`lamo.role` != 'sweep'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["baseline.algo"] == "discrete_cql" and len(run.data.tags["data_subset_hash"]) == 16
    assert [m.step for m in c.get_metric_history(run.info.run_id, "train/conservative_loss")] == [2, 4]
    ret = c.get_metric_history(run.info.run_id, "eval/policy/return_mean")[-1].value
    score = c.get_metric_history(run.info.run_id, "eval/policy/normalised_score")[-1].value
    assert score == pytest.approx(100 * (ret - 1.7) / (31.8 - 1.7))  # gamer-normalised (Nature DQN)
    tables = [p.read_text() for p in (tmp_path / "runs").rglob("table_atari.md")]
    assert tables and "Gamer-normalised" in tables[0] and "CQL" in tables[0], tables
