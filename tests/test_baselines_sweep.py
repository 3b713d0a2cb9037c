"""The five new presets (CQL, IQL, TD3+BC, BC from d3rlpy; Wiki-RL) end to end in ONE small real sweep:
real Ray Tune, a real MLflow store, real training and MuJoCo evaluation on a small collected Reacher2d
dataset and the tiny pre-trained LM of ``tiny_inputs``. The TD3+BC trial's worker process is SIGKILLed
mid-training and Ray retries it from its checkpoint. Afterwards:

* one FINISHED child run per trial, every (metric, step) exactly once, ``train/lr`` at every log step;
* every trial trained on the same data subset (one ``data_subset_hash``);
* the baselines logged ``eval/policy/...`` (no RTG target), Wiki-RL ``eval/rtg_<T>/...``, and the
  analysis reads all five with one score each;
* the killed TD3+BC trial's final metrics (d3rlpy draws target-smoothing noise; the actor updates every
  second step) equal an uninterrupted in-process run of it (bit-exact, CPU).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from analysis.runs import load_trial_runs
from analysis.select import select_scores
from orchestrator.schema import Sweep
from orchestrator.sweep import trial_workdir
from trainers import contract
from trainers.train import run_trial

pytestmark = pytest.mark.slow(reason="one real Ray sweep of five trials with a SIGKILLed trial: minutes on 2 cores")

BASELINES = ("cql", "iql", "td3bc", "bc")
SWEEP = """
name: baselines
storage: {root}/runs
data_dir: {data}
resources: {{cpu: 1}}
max_failures: 2
base:
  train: {{steps: 40, log_every: 10, checkpoint_every: 10}}
  eval: {{every_steps: 20, episodes: 1, max_episode_steps: 15}}
variants:
  cql: {{preset: cql, train: {{batch_size: 32}}}}
  iql: {{preset: iql, train: {{batch_size: 32}}}}
  td3bc: {{preset: td3bc, train: {{batch_size: 32, steps: 200}}}}
  bc: {{preset: bc, train: {{batch_size: 32}}}}
  wiki-rl:
    preset: wiki-rl
    model: {{lm: {lm}}}
    alignment: {{clusters: 16}}   # the tiny LM has 300 tokens; Wiki-RL's 1,000 centres need more
    train: {{batch_size: 8, warmup_steps: 5}}
grid: {{task: [reacher2d-medium], sample_ratio: [0.5], seed: [0], variant: [td3bc, cql, iql, bc, wiki-rl]}}  # td3bc first: it starts at once
"""


def test_baselines_sweep_with_a_killed_trial(tmp_path, tiny_inputs, wait_for, checkpoint_step):
    data, lm = tiny_inputs
    sweep_file = tmp_path / "baselines.yaml"
    sweep_file.write_text(textwrap.dedent(SWEEP.format(root=tmp_path, data=data, lm=lm)))
    sweep = Sweep.load(sweep_file)
    trials = {t.variant: t for t in sweep.trials}
    victim_wd = trial_workdir(tmp_path / "runs", trials["td3bc"])
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", str(sweep_file), "--no-analysis"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: checkpoint_step(victim_wd) >= 20, timeout=900, proc=proc)  # Ray start on busy cores
    victim = int((victim_wd / "trial.pid").read_text())
    os.kill(victim, signal.SIGKILL)
    killed_at = checkpoint_step(victim_wd)
    out, _ = proc.communicate(timeout=600)
    print(f"\n[baselines sweep] {time.perf_counter() - t0:.1f} s, TD3+BC killed after its step-{killed_at} checkpoint")
    assert proc.returncode == 0, out[-3000:]
    assert killed_at < 200 and int((victim_wd / "trial.pid").read_text()) != victim  # retried by a new worker

    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("baselines")
    runs = {r.data.tags["variant"]: r for r in c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'")}
    assert sorted(runs) == sorted(trials) and all(r.info.status == "FINISHED" for r in runs.values())
    assert len({r.data.tags[contract.DATA_SUBSET_HASH] for r in runs.values()}) == 1
    for variant, r in runs.items():
        for key in r.data.metrics:
            steps = [m.step for m in c.get_metric_history(r.info.run_id, key)]
            assert len(steps) == len(set(steps)), (variant, key, steps)  # exactly once, across the kill
        lr_steps = [m.step for m in c.get_metric_history(r.info.run_id, contract.TRAIN_LR)]
        assert lr_steps == list(range(10, trials[variant].train.steps + 1, 10)), (variant, lr_steps)
        policy = contract.eval_key(None, "normalised_score") in r.data.metrics
        rtg = any(k.startswith("eval/rtg_") for k in r.data.metrics)
        assert (policy, rtg) == ((True, False) if variant in BASELINES else (False, True)), variant

    scores = select_scores(load_trial_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "baselines"))
    assert sorted(scores["variant"]) == sorted(trials)
    assert scores.set_index("variant").loc[list(BASELINES), "rtg_target"].isna().all()

    torch.set_num_threads(1)
    ref = run_trial(trials["td3bc"], tmp_path / "ref", data)
    final = {k: v for k, v in runs["td3bc"].data.metrics.items() if k.startswith("eval/") and k != "eval/episodes_per_s"}
    assert final == {k: v for k, v in ref.items() if k != "eval/episodes_per_s"}
