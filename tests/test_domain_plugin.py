"""A domain is one module: ``tests/pendulum_domain.py`` (gymnasium's Pendulum with a locally collected
dataset) is registered by naming it in ``$LAMO_DOMAIN_MODULES`` and runs one trial end to end through the
real CLI (validation, prepare = collection with its behaviour policy, Ray Tune, MLflow, analysis), with no
other file of the project changed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

SWEEP = """
name: pendulum
storage: {storage}
resources: {{cpu: 1, gpu: 0}}
base:
  train: {{steps: 20, batch_size: 8, warmup_steps: 5, log_every: 10, checkpoint_every: 10}}
  eval: {{every_steps: 20, episodes: 2, max_episode_steps: 30}}
variants:
  dt:
    preset: dt
    model: {{arch: {{n_layer: 1, n_embd: 32, n_head: 1, n_inner: 64}}}}
    train: {{warmup_steps: 5}}
grid: {{task: [pendulum-swingup], sample_ratio: [1.0], seed: [0], variant: [dt]}}
"""


@pytest.fixture
def pendulum():
    """The plugin domain registered in this process, and removed again afterwards (other tests list the
    registry's tasks)."""
    from trainers.domains.base import register_domain, unregister_domain
    from tests.pendulum_domain import PendulumDomain

    yield register_domain(PendulumDomain())
    unregister_domain(PendulumDomain.name)


def test_the_plugin_registers_its_task_env_and_policy(pendulum):
    import numpy as np

    from trainers.data.policies import get_behaviour_policy
    from trainers.domains.base import domain_of, get_task
    from trainers.envs import make_env

    task = get_task("pendulum-swingup")
    assert domain_of(task).name == "pendulum-test" and task.obs_dim == 3
    env = make_env(task.env_id)
    obs, _ = env.reset(seed=0)
    act = get_behaviour_policy("pendulum-energy-noisy", seed=0)(obs)
    assert act.shape == (1,) and -1.0 <= float(act[0]) <= 1.0
    _, reward, *_ = env.step(act)
    assert reward <= 0.0
    with pytest.raises(KeyError, match="pendulum-energy-noisy"):  # the known names include the plugin's
        get_behaviour_policy("pendulum-energy-nosy", seed=0)
    assert np.isfinite(task.normalised_score(-800.0))


def test_a_registered_task_is_known_only_while_its_domain_is():
    from trainers.domains.base import TASKS, get_task, register_domain, unregister_domain
    from tests.pendulum_domain import PendulumDomain

    unregister_domain("pendulum-test")  # importing the module registered it
    assert "pendulum-swingup" not in TASKS
    register_domain(PendulumDomain())
    try:
        assert get_task("pendulum-swingup").domain == "pendulum-test"
        with pytest.raises(ValueError, match="already registered"):
            class Clash(PendulumDomain):
                name = "another"

                def tasks(self):
                    return [t.__class__(**{**t.__dict__, "domain": "another"}) for t in super().tasks()]
            register_domain(Clash())
    finally:
        unregister_domain("pendulum-test")
    with pytest.raises(KeyError, match="unknown task 'pendulum-swingup'"):
        get_task("pendulum-swingup")


@pytest.mark.slow(reason="a one-trial Ray Tune sweep with dataset collection, MLflow and the analysis: ~40 s")
def test_a_domain_module_runs_a_trial_end_to_end_through_the_cli(tmp_path):
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "pendulum.yaml"
    sweep.write_text(textwrap.dedent(SWEEP.format(storage=tmp_path / "runs")))
    env = {**{k: v for k, v in os.environ.items() if k not in ("LAMO_DATA_DIR", "RAY_ADDRESS")},
           "LAMO_DOMAIN_MODULES": "tests.pendulum_domain", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "collect pendulum-swingup-v0" in r.stdout  # prepare collected the plugin's dataset
    assert (tmp_path / "runs" / "data" / "datasets" / "pendulum-swingup-v0.hdf5").is_file()
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("pendulum")
    (child,) = c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'")
    assert child.info.status == "FINISHED" and child.data.tags["task"] == "pendulum-swingup"
    hist = c.get_metric_history(child.info.run_id, "eval/rtg_-150/return_mean")
    assert [m.step for m in hist] == [20] and -30 * 16.3 <= hist[0].value <= 0.0  # 30 steps of Pendulum reward
    table = (tmp_path / "runs" / "analysis" / "pendulum" / "table.md").read_text()
    assert "pendulum-swingup" in table
