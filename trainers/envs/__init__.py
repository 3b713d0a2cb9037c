"""Project environments and the one place that builds envs for trials.

* ``lamo/Reacher2d-v0``: LaMo's sparse Reacher2d (:class:`trainers.envs.reacher2d.Reacher2dEnv`,
  ``docs/lamo_recipe.md`` §6.1), 12-d observation, 2-d action in [-1, 1], reward 1 per step inside the target zone,
  registered with ``max_episode_steps=100`` (LaMo's ``max_ep_len``), so episodes end by truncation only.
* ``lamo/FrankaKitchen-complete-v0``: gymnasium-robotics' ``FrankaKitchen-v1`` with D4RL's four
  kitchen-complete subtasks and D4RL's flat 60-d observation (:mod:`trainers.envs.kitchen`), registered
  with ``max_episode_steps=280`` (D4RL's and ``FrankaKitchen-v1``'s episode length).
* ``lamo/<Game>-dqn-v0`` (Breakout, Pong, Qbert): Atari from pixels with the DQN-Replay conventions
  (:mod:`trainers.envs.atari`).
* Any other id (e.g. ``Hopper-v4``) is passed straight to ``gymnasium.make``.
"""

from __future__ import annotations

import gymnasium

REACHER2D_ID = "lamo/Reacher2d-v0"
REACHER2D_MAX_STEPS = 100  # LaMo/DT max_ep_len for Reacher2d (lamo_recipe §5.1, §6.1)
KITCHEN_ID = "lamo/FrankaKitchen-complete-v0"  # trainers.envs.kitchen (the tasks' env_id in trainers/tasks.py)
KITCHEN_MAX_STEPS = 280  # D4RL kitchen-*-v0 and FrankaKitchen-v1 max_episode_steps


def register_envs() -> None:
    """Register the project's env ids with gymnasium. Idempotent (safe to call many times)."""
    if REACHER2D_ID not in gymnasium.registry:
        gymnasium.register(
            id=REACHER2D_ID,
            entry_point="trainers.envs.reacher2d:Reacher2dEnv",
            max_episode_steps=REACHER2D_MAX_STEPS,
        )
    if KITCHEN_ID not in gymnasium.registry:
        gymnasium.register(
            id=KITCHEN_ID,
            entry_point="trainers.envs.kitchen:make_kitchen",
            max_episode_steps=KITCHEN_MAX_STEPS,
        )

    from trainers.envs.atari import register_atari_envs

    register_atari_envs()


def make_env(env_id: str, **kwargs) -> gymnasium.Env:
    """Register the project's envs, then ``gymnasium.make(env_id, **kwargs)``.

    Raises:
        gymnasium.error.Error: (from gymnasium) when ``env_id`` is unknown.
    """
    register_envs()
    return gymnasium.make(env_id, **kwargs)


__all__ = ["KITCHEN_ID", "KITCHEN_MAX_STEPS", "REACHER2D_ID", "REACHER2D_MAX_STEPS", "make_env", "register_envs"]
