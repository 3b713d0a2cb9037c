"""End to end on Atari: one tiny Breakout trial (real ALE data collected here, real torch) through the real
``lamo-sweep`` CLI: validation, input checks, Ray Tune, an MLflow SQLite store and the analysis; the
Atari table gets the trial's gamer-normalised score. ONE small sweep (CI budget)."""

from __future__ import annotations

import pytest

from trainers.tasks import get_task

pytestmark = pytest.mark.slow(reason="a 1-trial Ray Tune sweep on Breakout with analysis: ~40-80 s")

SWEEP = """
name: atari-smoke
storage: {root}/runs
data_dir: {root}/data
resources: {{cpu: 1, gpu: 0}}
base:
  context_length: 4
  atari: {{warmup_tokens: 20, final_tokens: 200}}
variants:
  dt:
    preset: dt-atari
    model: {{arch: {{n_layer: 1, n_embd: 16, n_head: 1, n_inner: 32}}}}
    train: {{steps: 4, batch_size: 4, log_every: 2, checkpoint_every: 2}}
    eval: {{every_steps: 4, episodes: 1, max_episode_steps: 6}}
grid: {{task: [breakout-medium], sample_ratio: [1.0], seed: [0], variant: [dt]}}
"""


def test_atari_sweep_through_ray_and_mlflow(tmp_path, run_one_trial_atari_sweep):
    c, run = run_one_trial_atari_sweep(tmp_path, SWEEP, "atari-smoke")
    assert run.data.tags["task"] == "breakout-medium" and len(run.data.tags["data_subset_hash"]) == 16
    assert [m.step for m in c.get_metric_history(run.info.run_id, "train/action_loss")] == [2, 4]
    for target in ("90", "120"):
        ret = c.get_metric_history(run.info.run_id, f"eval/rtg_{target}/return_mean")[-1].value
        score = c.get_metric_history(run.info.run_id, f"eval/rtg_{target}/normalised_score")[-1].value
        assert score == pytest.approx(get_task("breakout-medium").normalised_score(ret))  # gamer-normalised
    tables = list((tmp_path / "runs").rglob("*.md"))
    assert any("Breakout" in p.read_text() for p in tables), [str(p) for p in tables]
