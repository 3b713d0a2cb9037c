"""End to end on Atari: one tiny Breakout trial (real ALE data collected here, real torch) through the real
``lamo-sweep`` CLI: validation, input checks, Ray Tune, an MLflow SQLite store and the analysis; the
Atari table gets the trial's gamer-normalised score. ONE small sweep (CI budget)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

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


def run_one_trial_atari_sweep(tmp_path, sweep_text: str, experiment: str):
    """Collect 400 Breakout transitions (so ``prepare`` skips the 50k collection), run the one-trial sweep
    ``sweep_text`` (formatted with ``root=tmp_path``) through ``lamo-sweep``, and return the MLflow client
    and the finished trial run. Shared by the Atari sweep tests."""
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


def test_atari_sweep_through_ray_and_mlflow(tmp_path):
    c, run = run_one_trial_atari_sweep(tmp_path, SWEEP, "atari-smoke")
    assert run.data.tags["task"] == "breakout-medium" and len(run.data.tags["data_subset_hash"]) == 16
    assert [m.step for m in c.get_metric_history(run.info.run_id, "train/action_loss")] == [2, 4]
    for target in ("90", "120"):
        ret = c.get_metric_history(run.info.run_id, f"eval/rtg_{target}/return_mean")[-1].value
        score = c.get_metric_history(run.info.run_id, f"eval/rtg_{target}/normalised_score")[-1].value
        assert score == pytest.approx(100 * (ret - 1.7) / (31.8 - 1.7))  # gamer-normalised (Nature DQN)
    tables = list((tmp_path / "runs").rglob("*.md"))
    assert any("Breakout" in p.read_text() for p in tables), [str(p) for p in tables]
