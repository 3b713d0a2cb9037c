"""End to end for the discrete baselines: ONE tiny discrete-CQL trial on Breakout (real ALE data collected
here, real d3rlpy) through the real ``lamo-sweep`` CLI: validation, Ray Tune, an MLflow SQLite store and the
analysis; the run logs gamer-normalised ``eval/policy/...`` scores and the Atari table shows CQL."""

from __future__ import annotations

import pytest


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


def test_discrete_cql_sweep_through_ray_and_mlflow(tmp_path, run_one_trial_atari_sweep):
    c, run = run_one_trial_atari_sweep(tmp_path, SWEEP, "atari-cql-smoke")
    assert run.data.params["baseline.algo"] == "discrete_cql" and len(run.data.tags["data_subset_hash"]) == 16
    assert [m.step for m in c.get_metric_history(run.info.run_id, "train/conservative_loss")] == [2, 4]
    ret = c.get_metric_history(run.info.run_id, "eval/policy/return_mean")[-1].value
    score = c.get_metric_history(run.info.run_id, "eval/policy/normalised_score")[-1].value
    assert score == pytest.approx(100 * (ret - 1.7) / (31.8 - 1.7))  # gamer-normalised (Nature DQN)
    tables = [p.read_text() for p in (tmp_path / "runs").rglob("table_atari.md")]
    assert tables and "Gamer-normalised" in tables[0] and "CQL" in tables[0], tables
