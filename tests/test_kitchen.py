"""Franka Kitchen: the env on the pinned MuJoCo, D4RL's 60-d layout, the task registry, the scripted
behaviour policy (real MuJoCo rollouts), bad kitchen data, the per-task sample ratios of the paper's grid,
and one tiny Kitchen trial end to end through Ray Tune and MLflow."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from trainers.domains.kitchen import KITCHEN_ID
from trainers.envs import make_env
from trainers.domains.kitchen.env import KITCHEN_TASKS, flatten_dict_observation, goal_vector

REPO = Path(__file__).resolve().parents[1]


def _dt_config(task: str, **fields):
    from trainers.config import TrialConfig
    from trainers.presets import get_preset

    return TrialConfig.model_validate({**get_preset("dt"), "task": task, **fields})


def _run_policy(env, policy, seed: int, steps: int) -> list[str]:
    obs, _ = env.reset(seed=seed)
    policy.reset()
    info = {"episode_task_completions": []}
    for _ in range(steps):
        obs, _, term, trunc, info = env.step(policy(obs))
        if term or trunc:
            break
    return list(info["episode_task_completions"])


def test_env_resets_and_steps_with_the_pinned_mujoco():
    import mujoco

    from trainers.tasks import get_task

    assert mujoco.__version__ == "3.3.7"  # FrankaKitchen-v1 fails an assertion on mujoco 4.0.0
    env = make_env(KITCHEN_ID)
    assert env.spec.max_episode_steps == 280
    obs, info = env.reset(seed=3)
    assert obs.shape == (60,) and np.isfinite(obs).all()
    assert np.array_equal(obs[30:], goal_vector())
    assert sorted(info["tasks_to_complete"]) == sorted(KITCHEN_TASKS)
    # the wrapper is D4RL's layout of the dict observation: robot qpos, object qpos, goal
    raw = env.unwrapped._get_obs(env.unwrapped.robot_env._get_obs())
    flat = flatten_dict_observation(raw)
    assert np.allclose(flat[:9], raw["observation"][:9]) and np.allclose(flat[9:30], raw["observation"][18:39])
    total = 0.0
    for _ in range(5):
        obs, r, term, trunc, info = env.step(np.zeros(9))
        total += r
    assert obs.shape == (60,) and total == 0.0 and not term
    for name in ("kitchen-complete", "kitchen-partial"):
        t = get_task(name)
        assert (t.env_id, t.obs_dim, t.act_dim, t.rtg_scale) == (KITCHEN_ID, 60, 9, 1.0)
        assert t.rtg_targets == (5.0, 4.0, 3.0, 2.0, 1.0) and t.normalised_score(4.0) == 100.0
        assert t.normalised_score(1.0) == 25.0
    with pytest.raises(ValueError, match="59 wide"):
        flatten_dict_observation({"observation": np.zeros(58)})


@pytest.mark.slow(reason="a scripted episode of real MuJoCo kitchen control per subtask, 1-5 s each (20 s under load)")
@pytest.mark.parametrize("subtask", KITCHEN_TASKS)
def test_scripted_policy_completes_each_subtask_on_its_own(subtask):
    from trainers.domains.kitchen.policy import KitchenParams, KitchenScriptedPolicy

    env = make_env(KITCHEN_ID)
    policy = KitchenScriptedPolicy("single", KitchenParams(subtasks=(subtask,)), seed=0)
    done = _run_policy(env, policy, seed=0, steps=200)
    assert subtask in done, done


@pytest.mark.slow(reason="five scripted 4-subtask episodes of real MuJoCo kitchen control, 5-15 s (76 s under load)")
def test_scripted_policy_completes_the_sequence_in_most_episodes():
    from trainers.data.policies import get_behaviour_policy
    from trainers.tasks import get_task

    task = get_task("kitchen-complete")
    env = make_env(KITCHEN_ID, max_episode_steps=task.dataset.collect_max_steps)
    policy = get_behaviour_policy(task.dataset.behaviour_policy, seed=0)  # the lowest noise level
    runs = [_run_policy(env, policy, seed=s, steps=task.dataset.collect_max_steps) for s in range(5)]
    full = [r for r in runs if r == list(KITCHEN_TASKS)]  # all four, in D4RL's order
    assert len(full) >= 3, runs


def _write(path: Path, obs_dim: int = 60, drop: str | None = None) -> Path:
    n = 6
    arrays = {"observations": np.zeros((n, obs_dim), np.float32), "actions": np.zeros((n, 9), np.float32),
              "rewards": np.zeros(n, np.float32), "terminals": np.zeros(n, bool),
              "timeouts": np.array([0, 0, 1, 0, 0, 1], bool)}
    arrays.pop(drop, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


@pytest.mark.parametrize("case, words", [("width", "60"), ("missing", "timeouts")])
def test_bad_kitchen_data_gets_a_clear_error(tmp_path, case, words):
    from trainers.data.d4rl_hdf5 import DatasetError
    from trainers.data.loaders import load_trajectory_list
    from trainers.inputs import validate_inputs

    cfg = _dt_config("kitchen-complete", data={"source": "collected"})
    path = tmp_path / "datasets" / "kitchen-complete-scripted-v0.hdf5"
    _write(path, obs_dim=59 if case == "width" else 60, drop="timeouts" if case == "missing" else None)
    with pytest.raises(DatasetError) as e:
        load_trajectory_list(cfg, tmp_path)
    assert str(path) in str(e.value) and words in str(e.value)
    problems = validate_inputs([cfg], tmp_path)  # the driver's check before any compute
    assert len(problems) == 1 and "kitchen-complete" in str(problems[0]) and "fix:" in str(problems[0])


def test_missing_d4rl_kitchen_file_names_the_command(tmp_path):
    from trainers.inputs import missing_inputs

    cfg = _dt_config("kitchen-partial")
    (m,) = [x for x in missing_inputs([cfg], tmp_path) if "D4RL" in x.what]
    assert "wget http://rail.eecs.berkeley.edu/datasets/offline_rl/kitchen/" \
           "kitchen_microwave_kettle_light_slider-v0.hdf5 -O " in m.fix
    assert m.path == str(tmp_path / "d4rl" / "kitchen_microwave_kettle_light_slider-v0.hdf5")


def test_paper_grid_has_per_task_ratios(tmp_path):
    from orchestrator.schema import Sweep, SweepError

    sweep = Sweep.load(REPO / "sweeps" / "kitchen.yaml")
    cells = {(t.task, t.sample_ratio) for t in sweep.trials}
    assert cells == {("kitchen-partial", r) for r in (0.01, 0.1, 1.0)} | {("kitchen-complete", r) for r in (0.3, 0.5, 1.0)}
    g = sweep.spec.grid
    assert len(sweep.trials) == len(cells) * len(g.seed) * len(g.variant or sweep.spec.variants)
    text = (REPO / "sweeps" / "kitchen.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("    kitchen-complete: [0.3, 0.5, 1.0]\n", ""))
    with pytest.raises(SweepError, match="missing \\['kitchen-complete'\\]"):
        Sweep.load(bad)
    bad.write_text(text.replace("[0.3, 0.5, 1.0]", "[0.3, 0.0]"))
    with pytest.raises(SweepError, match="kitchen-complete item 1 = 0.0"):
        Sweep.load(bad)


SWEEP = """
name: kitchen_tiny
storage: {root}/runs
data_dir: {root}/data
resources: {{cpu: 1, gpu: 0}}
base:
  data: {{source: collected}}
  train: {{steps: 10, batch_size: 4, warmup_steps: 2, log_every: 5, checkpoint_every: 10}}
  eval: {{every_steps: 10, episodes: 1, max_episode_steps: 10}}
variants:
  dt: {{preset: dt, model: {{arch: {{n_layer: 1, n_embd: 32, n_head: 1, n_inner: 64}}}}, train: {{warmup_steps: 2}}}}
grid: {{task: [kitchen-complete], sample_ratio: [1.0], seed: [0]}}
"""


@pytest.mark.slow(reason="one tiny Kitchen trial through Ray Tune and MLflow (plus 1 collected episode); 35 s at load ~6, 2.4 min at load 10")
def test_tiny_kitchen_trial_end_to_end(tmp_path):
    from mlflow.tracking import MlflowClient

    from trainers import contract
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path

    collect_dataset("kitchen-complete", dataset_path("kitchen-complete", tmp_path / "data", "collected"),
                    episodes=1, seed=0, progress=False)
    sweep = tmp_path / "kitchen_tiny.yaml"
    sweep.write_text(textwrap.dedent(SWEEP.format(root=tmp_path)))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep), "--no-analysis"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("kitchen_tiny")
    (child,) = c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'")
    assert child.info.status == "FINISHED"
    m = child.data.metrics
    for target in (5.0, 4.0, 3.0, 2.0, 1.0):
        ret = m[contract.eval_key(target, "return_mean")]
        # one episode in the env's units: +1 per subtask completed (not the data's relabelled step rewards,
        # which count solved subtasks on every step), so a whole number of subtasks
        assert ret == int(ret) and 0 <= ret <= 4
        assert m[contract.eval_key(target, "normalised_score")] == pytest.approx(25.0 * ret)
        assert m[contract.eval_key(target, "length_mean")] == 10


def test_minari_kitchen_dict_observations_load_in_the_d4rl_layout(tmp_path, monkeypatch):
    """A local Minari store in the shape of ``D4RL/kitchen/*-v2`` (dict observations of real
    FrankaKitchen-v1 steps) loads as 60-d trajectories; a store of another env's width is refused."""
    import warnings

    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    from trainers.data.d4rl_hdf5 import DatasetError
    from trainers.data.loaders import load_trajectory_list

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = make_env(KITCHEN_ID).unwrapped  # KitchenEnv: dict observations
    stack = lambda obs: {  # noqa: E731 - list of dict observations -> dict of stacked arrays
        k: ({g: np.stack([o[k][g] for o in obs]) for g in obs[0][k]} if isinstance(obs[0][k], dict)
            else np.stack([o[k] for o in obs])) for k in obs[0]}
    buffers, raw = [], []
    rng = np.random.default_rng(0)
    for i, n in enumerate((4, 6)):
        obs = [env.reset(seed=i)[0]]
        act = rng.uniform(-1, 1, (n, 9))
        for a in act:
            obs.append(env.step(a)[0])
        buffers.append(EpisodeBuffer(id=i, observations=stack(obs), actions=act, rewards=[0.0] * n,
                                     terminations=[False] * n, truncations=[False] * (n - 1) + [True]))
        raw.append(stack(obs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers("test/kitchen/tiny-v0", buffers, algorithm_name="test",
                                           observation_space=env.observation_space, action_space=env.action_space)
        minari.create_dataset_from_buffers(
            "test/hopper/tiny-v0", [EpisodeBuffer(id=0, observations=np.zeros((3, 11)), actions=np.zeros((2, 9)),
                                                  rewards=[0.0, 0.0], terminations=[False, True],
                                                  truncations=[False, False])],
            algorithm_name="test", observation_space=gym.spaces.Box(-np.inf, np.inf, (11,)),
            action_space=gym.spaces.Box(-1, 1, (9,)))
    trajs = load_trajectory_list(_dt_config("kitchen-partial", data={"source": "minari",
                                                                      "minari_id": "test/kitchen/tiny-v0"}), tmp_path)
    assert [t["observations"].shape for t in trajs] == [(4, 60), (6, 60)]
    for t, r in zip(trajs, raw):
        np.testing.assert_allclose(t["observations"], flatten_dict_observation(r)[:-1], rtol=1e-6)
    with pytest.raises(DatasetError, match=r"\(T, 60\)"):
        load_trajectory_list(_dt_config("kitchen-partial", data={"source": "minari",
                                                                 "minari_id": "test/hopper/tiny-v0"}), tmp_path)


def _kitchen_obs(solved=()) -> np.ndarray:
    """A 60-d D4RL-layout observation with the subtasks in ``solved`` at their goal, the rest at rest
    (zeros: every subtask's rest pose is >= 0.37 from its goal)."""
    from trainers.domains.kitchen.env import _constants

    indices, goals = _constants()
    obs = np.zeros(60)
    obs[30:] = goal_vector()
    for t in solved:
        obs[indices[t]] = goals[t]
    return obs


def test_d4rl_step_reward_counts_the_subtasks_solved_in_each_observation():
    from trainers.domains.kitchen.env import D4RL_BONUS_THRESH, d4rl_kitchen_rewards

    obs = np.stack([_kitchen_obs(), _kitchen_obs(["microwave"]), _kitchen_obs(["microwave", "kettle"]),
                    _kitchen_obs(KITCHEN_TASKS)])
    assert d4rl_kitchen_rewards(obs).tolist() == [0.0, 1.0, 2.0, 4.0]
    near, far = obs[1].copy(), obs[1].copy()
    near[22] += D4RL_BONUS_THRESH - 0.01  # microwave joint (index 22) just inside / outside 0.3
    far[22] += D4RL_BONUS_THRESH + 0.01
    assert d4rl_kitchen_rewards(np.stack([near, far])).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="60 wide"):
        d4rl_kitchen_rewards(np.zeros((2, 59)))


def test_collected_kitchen_rows_store_d4rl_relabelled_step_rewards(tmp_path, monkeypatch):
    """The env pays +1 once per subtask (2 here); the file's rows count the subtasks solved in each row's
    observation, as D4RL's kitchen files (0, 0, 1, 1, 2, 2: return 6); the reported return stays 2."""
    import gymnasium

    import trainers.data.collect as collect
    from trainers.data.d4rl_hdf5 import load_d4rl_hdf5

    solved_at = {"microwave": 2, "kettle": 4}  # the step whose observation first shows the subtask solved

    class FakeKitchen(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (60,), np.float64)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (9,), np.float32)

        def _obs(self):
            return _kitchen_obs([k for k, t in solved_at.items() if self.t >= t])

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return self._obs(), {}

        def step(self, action):
            self.t += 1
            reward = float(sum(t == self.t for t in solved_at.values()))  # +1 once, as the env
            return self._obs(), reward, False, self.t >= 6, {}

    class Idle:
        def __call__(self, obs):
            return np.zeros(9, np.float32)

    monkeypatch.setattr(collect, "make_env", lambda env_id, **kw: FakeKitchen())
    monkeypatch.setattr(collect, "get_behaviour_policy", lambda name, seed, data_dir=None: Idle())
    out = tmp_path / "k.hdf5"
    summary = collect.collect_dataset("kitchen-complete", out, episodes=1, progress=False)
    data = load_d4rl_hdf5(out)
    assert data["rewards"].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert summary["mean_return"] == 2.0 and data.attrs["mean_return"] == 2.0  # env units: subtasks done
    assert "relabelled" in data.attrs["rewards"]


def test_a_kitchen_file_collected_with_env_rewards_is_refused(tmp_path):
    from trainers.data.d4rl_hdf5 import DatasetError
    from trainers.data.loaders import load_trajectory_list

    cfg = _dt_config("kitchen-complete", data={"source": "collected"})
    path = _write(tmp_path / "datasets" / "kitchen-complete-scripted-v0.hdf5")
    with h5py.File(path, "a") as f:
        f.attrs["created_by"] = "lamo-sweep"
    with pytest.raises(DatasetError, match="relabelled step rewards.*delete it"):
        load_trajectory_list(cfg, tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs["rewards"] = "D4RL relabelled"
    assert len(load_trajectory_list(cfg, tmp_path)) == 2
