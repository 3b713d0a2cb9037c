"""Reacher2d's behaviour policies: scripted inverse-kinematics controllers (``reacher2d-ik-*``).

LaMo's Reacher2d data came from a PPO agent whose checkpoints are not public (LaMo
``data/data_generation_PPO/``; ``docs/lamo_recipe.md`` §6.2), so this project
replaces it with a scripted controller that only reads the 12-d observation
(:mod:`trainers.domains.reacher2d.env`):

1. joint angles from obs ``sin(q)``/``cos(q)`` (the elbow is unwrapped into its range [-2, 3.5] rad),
   joint velocities from ``obs[4:6] / 0.15``;
2. analytic inverse kinematics of the 2-link arm (link 0.6 m, fingertip 0.45 m along link 2, link 1
   mounted at +0.785 rad, ``docs/lamo_recipe.md`` §6.1) putting the fingertip on the aim point; of the two elbow branches, the
   one needing the least joint travel;
3. a saturated PD law on the joint angles, ``u = clip(kp * (q* - q) - kd * qdot, -1, 1)`` (torque, N m).

Policies (normalised score = % of the 100 steps inside the target zone = raw return; measured over
500 episodes, env seeds 0..499, policy seed 0):

* ``reacher2d-ik-expert``: kp 5, kd 3.5, noiseless. Mean normalised score **75.2** (std 11.3, no
  zero-return episodes). (DT/LaMo's highest Reacher2d RTG target is 76.)
* ``reacher2d-ik-medium``: the same controller degraded, seeded: softer gains (kp 2, kd 1), Gaussian
  torque noise (std 0.3 N m), the *wrong* (farther) IK branch in 20% of the episodes, and a per-episode
  aim offset (uniform direction, radius ~ U[0, 0.1] m), so some episodes hover at the rim of the 0.1 L1
  zone or just outside it. Mean normalised score **33.6** (std 26.0; 21% of episodes score 0).

Per-episode perturbations are redrawn when :meth:`BehaviourPolicy.reset` is called or, as a fallback,
whenever the target in the observation changes (the target only moves at env reset).

"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Reacher2d geometry and timing, docs/lamo_recipe.md §6.1 (the DT repo's reacher_2d.xml asset).
_LINK1, _TIP = 0.6, 0.45  # m: link 1 length, fingertip distance along link 2
_MOUNT = 0.785  # rad: rotation of the shoulder body (link 1 heading is q0 + 0.785)
_DT = 0.15  # s: control dt (0.01 s x frame_skip 15); obs[4:6] = dt * qdot
_ELBOW_UNWRAP = -2.39  # rad: atan2 values below this are elbow angles > pi (range [-2, 3.5])


@dataclass(frozen=True)
class IKParams:
    """Controller settings. Gains act on rad and rad/s and produce N m (clipped to [-1, 1])."""

    kp: float = 5.0
    kd: float = 3.5
    action_noise: float = 0.0  # std of Gaussian noise added to the torque, N m
    wrong_branch_prob: float = 0.0  # per-episode probability of taking the farther IK branch
    aim_offset_max: float = 0.0  # per-episode aim offset radius ~ U[0, max], m


def reacher2d_ik(obs: np.ndarray, aim: np.ndarray, far_branch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Joint-angle error to put the Reacher2d fingertip on ``aim``.

    Args:
        obs: Reacher2d observation, shape (12,).
        aim: aim point, shape (2,), m. Points outside the reachable annulus [0.15, 1.05] m are pulled
            onto its boundary.
        far_branch: pick the IK branch needing *more* joint travel (used to degrade the medium policy).

    Returns:
        ``(err, qdot)``: desired-minus-current joint angles (2,), rad (shoulder wrapped to [-pi, pi]),
        and joint velocities (2,), rad/s.
    """
    q0 = np.arctan2(obs[0], obs[2])
    q1 = np.arctan2(obs[1], obs[3])
    if q1 < _ELBOW_UNWRAP:
        q1 += 2.0 * np.pi
    qdot = np.asarray(obs[4:6], dtype=np.float64) / _DT
    r = float(np.hypot(aim[0], aim[1]))
    cos_phi = np.clip((r * r - _LINK1**2 - _TIP**2) / (2.0 * _LINK1 * _TIP), -1.0, 1.0)
    errs = []
    for phi in (np.arccos(cos_phi), -np.arccos(cos_phi)):  # relative link-2 angle, both branches
        heading = np.arctan2(aim[1], aim[0]) - np.arctan2(_TIP * np.sin(phi), _LINK1 + _TIP * np.cos(phi))
        e0 = (heading - _MOUNT - q0 + np.pi) % (2.0 * np.pi) - np.pi
        e1 = phi + _MOUNT - q1
        errs.append(np.array([e0, e1]))
    errs.sort(key=lambda e: float(np.abs(e).sum()))
    return errs[1 if far_branch else 0], qdot


class BehaviourPolicy:
    """A seeded scripted policy: ``policy(obs (obs_dim,)) -> action (act_dim,) float32``.

    Attributes:
        name: registry name (see :func:`get_behaviour_policy`).
        batched: ``False``: one observation per call and per-episode state, so collection runs one env.
    """

    batched = False

    def __init__(self, name: str, params: IKParams, seed: int):
        self.name = name
        self.params = params
        self.rng = np.random.default_rng(seed)
        self._target: np.ndarray | None = None
        self._offset = np.zeros(2)
        self._far = False

    def reset(self) -> None:
        """Start a new episode: redraw the per-episode perturbations (on the next call)."""
        self._target = None

    def _new_episode(self, target: np.ndarray) -> None:
        p = self.params
        self._target = target.copy()
        self._far = bool(p.wrong_branch_prob > 0 and self.rng.random() < p.wrong_branch_prob)
        if p.aim_offset_max > 0:
            angle = self.rng.uniform(0.0, 2.0 * np.pi)
            self._offset = self.rng.uniform(0.0, p.aim_offset_max) * np.array([np.cos(angle), np.sin(angle)])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Torques ``(2,)`` float32 in [-1, 1] N m for one Reacher2d observation ``(12,)``: the PD law on
        the IK joint error (module docstring), plus the policy's noise, clipped to the control range."""
        target = np.asarray(obs[8:10], dtype=np.float64)
        if self._target is None or not np.array_equal(target, self._target):
            self._new_episode(target)
        p = self.params
        err, qdot = reacher2d_ik(obs, target + self._offset, self._far)
        action = p.kp * err - p.kd * qdot
        if p.action_noise > 0:
            action = action + self.rng.normal(0.0, p.action_noise, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


POLICIES: dict[str, IKParams] = {
    "reacher2d-ik-expert": IKParams(),
    "reacher2d-ik-medium": IKParams(
        kp=2.0, kd=1.0, action_noise=0.3, wrong_branch_prob=0.2, aim_offset_max=0.1
    ),
}



