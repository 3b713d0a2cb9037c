"""Project environments and the one place that builds envs for trials.

* ``lamo/Reacher2d-v0``: LaMo's sparse Reacher2d (:class:`trainers.envs.reacher2d.Reacher2dEnv`,
  ``docs/lamo_recipe.md`` §6.1), 12-d observation, 2-d action in [-1, 1], reward 1 per step inside the target zone,
  registered with ``max_episode_steps=100`` (LaMo's ``max_ep_len``), so episodes end by truncation only.
* ``lamo/<Game>-dqn-v0`` (Breakout, Pong, Qbert): Atari from pixels with the DQN-Replay conventions
  (:mod:`trainers.envs.atari`).
* Any other id (e.g. ``Hopper-v4``) is passed straight to ``gymnasium.make``.
"""

from __future__ import annotations

import gymnasium

REACHER2D_ID = "lamo/Reacher2d-v0"
REACHER2D_MAX_STEPS = 100  # LaMo/DT max_ep_len for Reacher2d (lamo_recipe §5.1, §6.1)


def register_envs() -> None:
    """Register the project's env ids with gymnasium. Idempotent (safe to call many times)."""
    if REACHER2D_ID not in gymnasium.registry:
        gymnasium.register(
            id=REACHER2D_ID,
            entry_point="trainers.envs.reacher2d:Reacher2dEnv",
            max_episode_steps=REACHER2D_MAX_STEPS,
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


__all__ = ["REACHER2D_ID", "REACHER2D_MAX_STEPS", "make_env", "register_envs"]
