"""A small domain defined outside the package, as a user's would be: gymnasium's ``Pendulum-v1`` with a
locally collected dataset. It is the proof (``tests/test_domain_plugin.py``) that a domain is one module:
this file is the whole of it, and it reaches the sweep, the trials (in Ray workers too) and the analysis
through ``$LAMO_DOMAIN_MODULES=tests.pendulum_domain`` (:mod:`trainers.domains.base`).

Not a paper task: test data only. The env is ``Pendulum-v1`` (gymnasium docs, "Pendulum"; observation
``(cos θ, sin θ, θ̇)``, torque in [-2, 2] N m, reward ``-(θ² + 0.1 θ̇² + 0.001 u²)`` per step, 200 steps)
with actions rescaled to [-1, 1] (gymnasium's ``RescaleAction``), as the project's models act in [-1, 1].
The behaviour policy is an energy-pumping swing-up with a PD law near the top (Åström & Furuta 2000,
"Swinging up a pendulum by energy control", Automatica 36(2)) plus Gaussian torque noise. Reference
returns for the normalised score: -1500 (about a policy that never swings up) and -150 (upright almost
all of the episode); chosen for the test, not published.
"""

from __future__ import annotations

import numpy as np

from trainers.domains.base import DatasetSource, TaskSpec, register_domain
from trainers.domains.state import StateDomain

ENV_ID = "lamo-test/Pendulum-v0"
POLICY = "pendulum-energy-noisy"


def make_pendulum(**kwargs):
    """``Pendulum-v1`` with actions in [-1, 1] (``RescaleAction``)."""
    import gymnasium
    from gymnasium.wrappers import RescaleAction

    return RescaleAction(gymnasium.make("Pendulum-v1", **kwargs), np.float32(-1.0), np.float32(1.0))


class EnergySwingUp:
    """``policy(obs (3,)) -> action (1,)`` in [-1, 1]: energy pumping far from the top, PD near it, plus
    Gaussian noise (std 0.2 of the action range), seeded."""

    batched = False

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Nothing per episode."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        cos, sin, dtheta = (float(x) for x in obs)
        theta = np.arctan2(sin, cos)  # 0 = upright
        if cos > 0.8:  # near the top: PD on the angle (torque in N m, then / 2 into [-1, 1])
            u = -(10.0 * theta + 2.0 * dtheta) / 2.0
        else:  # pump energy: E = 0.5 θ̇² + g/l (cos θ - 1) (m = l = 1, g = 10), target E = 0 (upright, at rest)
            energy = 0.5 * dtheta**2 + 10.0 * (cos - 1.0)
            u = -np.sign(dtheta * energy) if dtheta != 0 else 1.0
        u += self.rng.normal(0.0, 0.2)
        return np.clip(np.array([u], np.float32), -1.0, 1.0)


class PendulumDomain(StateDomain):
    """One task, ``pendulum-swingup``, collected here (module docstring)."""

    name = "pendulum-test"
    label = "Pendulum (test)"
    table = "other"

    def tasks(self) -> list[TaskSpec]:
        return [TaskSpec(
            name="pendulum-swingup", env_id=ENV_ID, obs_dim=3, act_dim=1, max_ep_len=200, context_length=5,
            rtg_scale=100.0, rtg_targets=(-150.0,), ref_min_return=-1500.0, ref_max_return=-150.0,
            dataset=DatasetSource(kind="collected", name="pendulum-swingup-v0", behaviour_policy=POLICY, episodes=8),
            domain=self.name, display="Pendulum", order=0)]

    def register_envs(self) -> None:
        import gymnasium

        if ENV_ID not in gymnasium.registry:
            gymnasium.register(id=ENV_ID, entry_point="tests.pendulum_domain:make_pendulum", max_episode_steps=200)

    def behaviour_policy_names(self) -> tuple[str, ...]:
        return (POLICY,)

    def behaviour_policy(self, name: str, seed: int, data_dir=None):
        return EnergySwingUp(seed) if name == POLICY else None


DOMAIN = register_domain(PendulumDomain())
