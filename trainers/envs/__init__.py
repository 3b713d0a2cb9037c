"""The one place that builds environments for trials: :func:`make_env`.

Each domain registers its own gymnasium ids (:meth:`trainers.domains.base.Domain.register_envs`):
``lamo/Reacher2d-v0`` (:mod:`trainers.domains.reacher2d`), ``lamo/FrankaKitchen-complete-v0``
(:mod:`trainers.domains.kitchen`), ``lamo/<Game>-dqn-v0`` (:mod:`trainers.domains.atari`). Any other id
(e.g. ``Hopper-v4``) is passed straight to ``gymnasium.make``.
"""

from __future__ import annotations

import gymnasium

from trainers.domains.base import domains


def register_envs() -> None:
    """Register every domain's env ids with gymnasium. Idempotent (safe to call many times)."""
    for domain in domains().values():
        domain.register_envs()


def make_env(env_id: str, **kwargs) -> gymnasium.Env:
    """Register the domains' envs, then ``gymnasium.make(env_id, **kwargs)``.

    Raises:
        gymnasium.error.Error: (from gymnasium) when ``env_id`` is unknown.
    """
    register_envs()
    return gymnasium.make(env_id, **kwargs)


__all__ = ["make_env", "register_envs"]
