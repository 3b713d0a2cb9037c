"""Franka Kitchen in D4RL's flat 60-d observation layout (gymnasium-robotics ``FrankaKitchen-v1``).

Source: gymnasium-robotics' ``FrankaKitchen-v1`` (``gymnasium_robotics/envs/franka_kitchen``, docs at
robotics.farama.org/envs/franka_kitchen/franka_kitchen), the maintained successor of D4RL's
``kitchen-*-v0`` envs (github.com/Farama-Foundation/D4RL, ``d4rl/kitchen/kitchen_envs.py``). Needs
``mujoco==3.3.7`` (4.0.0 fails an assertion in ``get_joint_qpos``; pinned in ``pyproject.toml``).

Task: the four subtasks of D4RL's ``kitchen-complete-v0`` / ``kitchen-partial-v0``
(:data:`KITCHEN_TASKS`: microwave, kettle, light switch, slide cabinet). LaMo evaluates both datasets on
the complete task (``docs/lamo_recipe.md`` §4.1). Env reward: +1 in the step a subtask first gets within
0.3 (L2 over its joints) of its goal configuration, so an evaluation return is the number of subtasks
completed, 0..4 (D4RL ``KitchenBase._get_reward_n_score`` with ``REMOVE_TASKS_WHEN_COMPLETE = True``;
``FrankaKitchen-v1`` docs "Rewards").

Dataset reward (not the env's): D4RL's kitchen files were relabelled with
``REMOVE_TASKS_WHEN_COMPLETE = False`` ("This enables a Markovian reward", D4RL
``scripts/generation/generate_kitchen_datasets.py``): row t's reward is the number of the task's
subtasks within 0.3 of their goal in **row t's observation**, so a demo that finishes a subtask early
collects +1 for it on every later step and returns are in the hundreds.
:func:`d4rl_kitchen_rewards` computes exactly that, and the collector stores it
(:mod:`trainers.data.collect`). The episode
terminates when all four are done and is truncated at :data:`trainers.domains.kitchen.KITCHEN_MAX_STEPS` = 280 steps
(D4RL's kitchen registrations and ``FrankaKitchen-v1``'s default), control dt 0.08 s.

Observation layout, float64 ``(60,)`` -- D4RL's (``KitchenBase._get_obs``: ``[qp, obj_qp, goal]``):

======  =================================================================================
index   content
======  =================================================================================
0:9     robot joint positions (7 arm hinges, rad; 2 finger slides, m) = v1 ``observation[0:9]``
9:30    object joint positions (burner knobs and switches, light, slide and hinge cabinets,
        microwave, kettle free joint xyz + quaternion wxyz) = v1 ``observation[18:39]``
30:60   goal: zeros except the goal configuration of each target subtask at that subtask's
        indices in ``[qp, obj_qp]`` (D4RL ``OBS_ELEMENT_INDICES`` / ``OBS_ELEMENT_GOALS``)
======  =================================================================================

Why this layout and not a flattening of v1's dict observation: LaMo trains and evaluates on D4RL's
``kitchen_*-v0`` data, whose observations are exactly these 60 numbers, so the D4RL HDF5 files load
unchanged, the model has the paper's input width, and Minari's ``D4RL/kitchen/*-v2`` dict observations
map onto it without loss of anything the D4RL data holds (:func:`flatten_dict_observation`). It drops
v1's joint velocities (``observation[9:18]`` and ``[39:59]``), which D4RL's kitchen observations never had.
The observation noise of v1 (``robot_noise_ratio`` 0.01, ``object_noise_ratio`` 0.0005) is kept.
"""

from __future__ import annotations

import gymnasium
import numpy as np



#: D4RL's kitchen-complete / kitchen-partial target subtasks, in the order of the complete demos.
KITCHEN_TASKS = ("microwave", "kettle", "light switch", "slide cabinet")
KITCHEN_OBS_DIM = 60
KITCHEN_ACT_DIM = 9  # joint velocities / 2 rad/s (arm) and finger slide velocities, in [-1, 1]


def _constants():
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

    return OBS_ELEMENT_INDICES, OBS_ELEMENT_GOALS


def goal_vector(tasks=KITCHEN_TASKS) -> np.ndarray:
    """D4RL's 30-d goal part of the observation: each task's goal at its indices, zeros elsewhere."""
    indices, goals = _constants()
    g = np.zeros(30)
    for t in tasks:
        g[indices[t]] = goals[t]
    return g


def flatten_dict_observation(obs: dict, tasks=KITCHEN_TASKS) -> np.ndarray:
    """Map a ``FrankaKitchen-v1`` dict observation to the 60-d D4RL layout (module table).

    Args:
        obs: ``{"observation": (59,) or (T, 59), ...}`` (the goal dicts are not needed: the goal part is
            fixed for a fixed task list, as in D4RL).
        tasks: the target subtasks whose goals fill indices 30:60.

    Returns:
        ``(60,)`` or ``(T, 60)`` float64.

    Raises:
        ValueError: ``obs["observation"]`` is not 59 wide (names the width found).
    """
    o = np.asarray(obs["observation"], dtype=np.float64)
    if o.shape[-1] != 59:
        raise ValueError(f"FrankaKitchen-v1 'observation' must be 59 wide, got shape {o.shape}")
    goal = np.broadcast_to(goal_vector(tasks), o.shape[:-1] + (30,))
    return np.concatenate([o[..., 0:9], o[..., 18:39], goal], axis=-1)


class D4RLKitchenObservation(gymnasium.ObservationWrapper):
    """``FrankaKitchen-v1`` with D4RL's 60-d observation (module docstring); ``info`` passes through
    (``episode_task_completions`` lists the subtasks done so far)."""

    def __init__(self, env: gymnasium.Env, tasks=KITCHEN_TASKS):
        super().__init__(env)
        self.tasks = tuple(tasks)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (KITCHEN_OBS_DIM,), np.float64)

    def observation(self, observation: dict) -> np.ndarray:
        """Dict observation -> ``(60,)`` float64."""
        return flatten_dict_observation(observation, self.tasks)


#: D4RL ``d4rl/kitchen/kitchen_envs.py`` ``BONUS_THRESH``: a subtask is solved within this L2 distance.
D4RL_BONUS_THRESH = 0.3


def d4rl_kitchen_rewards(observations: np.ndarray, tasks=KITCHEN_TASKS) -> np.ndarray:
    """D4RL's relabelled kitchen dataset reward of each row: how many of ``tasks`` are solved in that row's
    observation (D4RL ``scripts/generation/generate_kitchen_datasets.py`` with
    ``REMOVE_TASKS_WHEN_COMPLETE = False``, scoring ``KitchenBase._get_reward_n_score`` on each stored
    observation: ``||obs[idx] - goal[idx]|| < 0.3`` with the goal taken from the observation's own goal
    part ``obs[30:]``, D4RL ``OBS_ELEMENT_INDICES``).

    Args:
        observations: ``(..., 60)`` D4RL-layout observations (module table).
        tasks: the task's subtasks (default: the complete task's four).

    Returns:
        ``(...)`` float32 counts in ``0..len(tasks)``.

    Raises:
        ValueError: observations not 60 wide (names the width found).
    """
    obs = np.asarray(observations, dtype=np.float64)
    if obs.shape[-1] != KITCHEN_OBS_DIM:
        raise ValueError(f"kitchen observations must be {KITCHEN_OBS_DIM} wide (D4RL layout), got shape {obs.shape}")
    indices, _ = _constants()
    goal = obs[..., 30:]
    count = np.zeros(obs.shape[:-1], dtype=np.float32)
    for t in tasks:
        idx = np.asarray(indices[t])
        count += np.linalg.norm(obs[..., idx] - goal[..., idx], axis=-1) < D4RL_BONUS_THRESH
    return count


def make_kitchen(tasks=KITCHEN_TASKS, **kwargs) -> gymnasium.Env:
    """The kitchen env of :data:`trainers.domains.kitchen.KITCHEN_ID` (entry point of the registration): ``KitchenEnv`` with
    ``tasks_to_complete=tasks``, wrapped by :class:`D4RLKitchenObservation`; ``kwargs`` go to
    ``KitchenEnv`` (e.g. ``robot_noise_ratio``)."""
    from gymnasium_robotics.envs.franka_kitchen import KitchenEnv

    return D4RLKitchenObservation(KitchenEnv(tasks_to_complete=list(tasks), **kwargs), tasks)


def kitchen_model_path() -> str:
    """Path of ``FrankaKitchen-v1``'s MuJoCo model (``kitchen_env_model.xml`` in gymnasium-robotics)."""
    import os

    import gymnasium_robotics

    return os.path.join(os.path.dirname(gymnasium_robotics.__file__), "envs", "assets", "kitchen_franka",
                        "kitchen_assets", "kitchen_env_model.xml")

