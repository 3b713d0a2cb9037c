"""Scripted Franka Kitchen behaviour policy: task-space control from MuJoCo's Jacobians through
per-subtask waypoints (microwave -> kettle -> light switch -> slide cabinet).

D4RL's kitchen data are human VR teleoperation demos (Gupta et al. 2019, "Relay Policy Learning",
arXiv 1910.11956; D4RL, Fu et al. 2020) that cannot be produced here, so the project's locally
generated kitchen datasets come from this controller instead (``docs/deviations.md``).

How it acts (it reads only the 60-d D4RL-layout observation, :mod:`trainers.domains.kitchen.env`):

1. **Kinematics.** The policy owns a copy of ``FrankaKitchen-v1``'s MuJoCo model. Each call writes the
   observed robot and object joint positions (``obs[0:30]``) into its ``qpos`` and runs
   ``mj_kinematics`` + ``mj_comPos``; the end-effector site's position ``p`` (m), rotation ``R`` and
   Jacobians ``J_p, J_r`` (3 x 7 over the arm joints) come from ``mj_jacSite`` (MuJoCo docs,
   "mj_jacSite").
2. **Task-space law.** Towards the current waypoint ``p*``: linear velocity
   ``v = clip_norm(k_p e + k_i sum(e dt), v_max)`` with ``e = p* - p`` (m/s; the integral only within
   0.1 m of the waypoint, to remove the position servos' sag) and angular velocity
   ``w = k_r * rotvec(Rz(yaw) R0 R^T)`` (rad/s), which holds the initial gripper orientation ``R0``
   turned by the waypoint's yaw about the vertical. Joint velocities by damped least squares,
   ``qdot = J^T (J J^T + lambda^2 I)^-1 [v; w]`` with ``J = [J_p; J_r]`` (Nakamura & Hanafusa 1986;
   Wampler 1986), plus a null-space pull towards the initial arm posture. The env's action is a joint
   velocity scaled by 2 rad/s (``FrankaKitchen-v1``: ``ctrl = q + 2 a dt``), so ``a = qdot / 2``,
   scaled down uniformly when a component exceeds 1. Fingers: ``+1`` opens, ``-1`` closes.
3. **Waypoints** (world frame, m), computed from the object sites at the episode's first observation:
   microwave: in front of the handle, onto it, close, then a feedback waypoint on the door's arc about
   its hinge kept 0.1 rad ahead of the observed door angle (``obs[22]``), the hand turning with the
   door, until -0.5 rad; release, back off. Kettle: hook the closed fingers under its handle (a bar
   between two posts), lift 0.13 m, carry +0.4 m in y to the top-left burner, set down, slide out.
   Light switch: to the right of the switch lever, sweep 0.19 m left. Slide cabinet: left of its
   handle, push 0.28 m right. A waypoint is passed within ``tol`` (m) or after its step budget.

Noise (per :class:`KitchenParams`): Gaussian action noise, a Gaussian offset of the waypoints per subtask
and episode, and, for "partial"-like data, a per-episode chance of attempting only a prefix of the four
subtasks and then idling near the last waypoint (so only some episodes finish the target subtasks, as
in D4RL's kitchen-partial, whose non-target demos do other subtasks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KitchenParams:
    """Settings of :class:`KitchenScriptedPolicy`.

    Attributes:
        action_noise: std of Gaussian noise added to every action component (action units, [-1, 1]).
        waypoint_noise: std (m) of a per-episode Gaussian offset added to every waypoint.
        full_prob: per-episode probability of attempting all four subtasks; otherwise a prefix of
            1..3 subtasks (uniform) is attempted, then the arm idles.
        subtasks: the subtasks attempted, in order (default: the four of D4RL's complete task).
    """

    action_noise: float = 0.0
    waypoint_noise: float = 0.0
    full_prob: float = 1.0
    subtasks: tuple[str, ...] = ("microwave", "kettle", "light switch", "slide cabinet")


#: The project's kitchen behaviour policies (``trainers.data.policies.get_behaviour_policy``).
#: complete: all four subtasks every episode, no action noise (variation from the env's observation
#: noise); partial: half of the episodes stop
#: after 1-3 subtasks, more action and waypoint noise (measured rates: docs/benchmarks.md, "Kitchen").
KITCHEN_POLICIES: dict[str, KitchenParams] = {
    "kitchen-scripted-complete": KitchenParams(),  # variation: the env's observation noise only
    "kitchen-scripted-partial": KitchenParams(action_noise=0.05, waypoint_noise=0.005, full_prob=0.5),
}

_KP, _KI, _KR, _VMAX, _LAMBDA, _KNULL = 18.0, 20.0, 8.0, 1.5, 0.05, 0.3
_DT = 0.08  # s, FrankaKitchen-v1 control step (frame_skip 40 x 0.002 s)
_OPEN, _CLOSE = 1.0, -1.0


class KitchenScriptedPolicy:
    """``policy(obs (60,)) -> action (9,) float32`` in [-1, 1]; per-episode state (``reset()``).

    Attributes:
        name: registry name. batched: ``False`` (one env, episodes in sequence).
    """

    batched = False

    def __init__(self, name: str, params: KitchenParams, seed: int):
        import mujoco

        from trainers.domains.kitchen.env import kitchen_model_path

        self.name, self.params = name, params
        self.rng = np.random.default_rng(seed)
        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_path(kitchen_model_path())
        self.data = mujoco.MjData(self.model)
        self._site = {s: self.model.site(s).id for s in
                      ("end_effector", "microhandle_site", "kettle_site", "light_site", "slide_site")}
        self._hinge = self.model.joint("microwave").id
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))
        self._plan: list | None = None

    def reset(self) -> None:
        """Start a new episode: the plan is rebuilt (and its noise redrawn) at the next call."""
        self._plan = None

    # -- kinematics --------------------------------------------------------------------------------
    def _sync(self, obs: np.ndarray) -> None:
        self.data.qpos[:30] = obs[:30]
        self._mj.mj_kinematics(self.model, self.data)
        self._mj.mj_comPos(self.model, self.data)

    def _ee(self) -> tuple[np.ndarray, np.ndarray]:
        sid = self._site["end_effector"]
        return self.data.site_xpos[sid].copy(), self.data.site_xmat[sid].reshape(3, 3).copy()

    # -- plan --------------------------------------------------------------------------------------
    def _build_plan(self, obs: np.ndarray) -> None:
        p = self.params
        d = self.data
        ee, rot = self._ee()
        self._R0, self._q0 = rot, np.asarray(obs[:7], dtype=np.float64).copy()
        site = {k: d.site_xpos[v].copy() for k, v in self._site.items()}
        plan: list[tuple[np.ndarray, float, float, int]] = []  # (waypoint, grip, tol, max_steps)

        def wp(x, grip=_OPEN, tol=0.02, steps=40, yaw=0.0):
            plan.append((np.asarray(x, dtype=np.float64), grip, tol, steps, yaw))

        def hold(grip, steps):
            plan.append((None, grip, 0.0, steps, None))

        subtasks = list(p.subtasks)
        if p.full_prob < 1.0 and self.rng.random() >= p.full_prob:
            subtasks = subtasks[: int(self.rng.integers(1, len(subtasks)))]
        for task in subtasks:
            start = len(plan)
            if task == "microwave":
                h = site["microhandle_site"]
                hinge = d.xanchor[self._hinge].copy()
                wp(h + [0.0, -0.12, 0.0], tol=0.03)
                wp(h + [0.0, -0.01, 0.0], tol=0.015, steps=25)
                hold(_CLOSE, 4)
                rel = h[:2] - hinge[:2]
                radius, a0 = np.hypot(*rel), np.arctan2(rel[1], rel[0])

                def door(o, hinge=hinge, radius=radius, a0=a0, z=h[2]):
                    # feedback on the observed door angle (obs[22]): keep the hand 0.1 rad ahead of it
                    ang = min(float(o[22]) - 0.1, 0.0)
                    pos = [hinge[0] + radius * np.cos(a0 + ang), hinge[1] + radius * np.sin(a0 + ang), z]
                    return np.array(pos), ang, float(o[22]) < -0.5

                plan.append((door, _CLOSE, 0.0, 30, None))
                hold(_OPEN, 3)
                wp(h + [0.05, -0.42, 0.0], tol=0.08, steps=10)
            elif task == "kettle":
                # hook the closed fingers under the handle (a bar along x between two posts), lift,
                # carry +0.4 m in y to the top-left burner, set down, slide out
                k = site["kettle_site"]
                wp([k[0], k[1] - 0.2, k[2] - 0.07], grip=_CLOSE, tol=0.04)
                wp([k[0], k[1], k[2] - 0.07], grip=_CLOSE, tol=0.025, steps=20)
                wp([k[0], k[1], k[2] + 0.06], grip=_CLOSE, tol=0.03, steps=20)
                wp([k[0] + 0.04, k[1] + 0.4, k[2] + 0.06], grip=_CLOSE, tol=0.03, steps=30)
                wp([k[0] + 0.04, k[1] + 0.4, k[2] - 0.07], grip=_CLOSE, tol=0.03, steps=12)
                wp([k[0] + 0.04, k[1] + 0.15, k[2] - 0.07], grip=_CLOSE, tol=0.06, steps=10)
            elif task == "light switch":
                s = site["light_site"]
                wp([s[0] + 0.08, s[1] - 0.1, s[2]], tol=0.04)
                wp([s[0] + 0.07, s[1] - 0.03, s[2]], tol=0.015, steps=20)
                wp([s[0] - 0.03, s[1] - 0.03, s[2]], tol=0.015, steps=15)
                wp([s[0] - 0.12, s[1] - 0.03, s[2]], tol=0.02, steps=15)
                wp([s[0] - 0.05, s[1] - 0.15, s[2]], tol=0.08, steps=8)
            elif task == "slide cabinet":
                s = site["slide_site"]
                wp([s[0] - 0.1, s[1] - 0.15, s[2] - 0.05], tol=0.04)
                wp([s[0] - 0.08, s[1] - 0.01, s[2] - 0.05], tol=0.02)
                wp([s[0] + 0.2, s[1] - 0.01, s[2] - 0.05], tol=0.02, steps=30)
            else:
                raise KeyError(f"unknown kitchen subtask {task!r}")
            if p.waypoint_noise > 0:  # one offset per subtask per episode
                off = self.rng.normal(0.0, p.waypoint_noise, 3)
                plan[start:] = [(w + off if isinstance(w, np.ndarray) else w, g, t, n, y)
                                for w, g, t, n, y in plan[start:]]
        self._plan, self._i, self._n = plan, 0, 0
        self._grip = _OPEN
        self._last = ee
        self._integral = np.zeros(3)
        self._yaw = 0.0

    # -- control -----------------------------------------------------------------------------------
    def _joint_velocity(self, target: np.ndarray) -> np.ndarray:
        mj = self._mj
        ee, rot = self._ee()
        err_p = target - ee
        if np.linalg.norm(err_p) < 0.1:  # integral term near the waypoint: removes the servo's sag
            self._integral = np.clip(self._integral + err_p * _DT, -0.05, 0.05)
        else:
            self._integral[:] = 0.0
        v = _KP * err_p + _KI * self._integral / _DT * _DT
        speed = np.linalg.norm(v)
        if speed > _VMAX:
            v *= _VMAX / speed
        c, s_ = np.cos(self._yaw), np.sin(self._yaw)
        err = np.array([[c, -s_, 0.0], [s_, c, 0.0], [0.0, 0.0, 1.0]]) @ self._R0 @ rot.T
        w = _KR * _rotvec(err)
        mj.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self._site["end_effector"])
        J = np.vstack([self._jacp[:, :7], self._jacr[:, :7]])
        JJt = J @ J.T + _LAMBDA**2 * np.eye(6)
        pinv = J.T @ np.linalg.solve(JJt, np.eye(6))
        qdot = pinv @ np.concatenate([v, w])
        q = self.data.qpos[:7]
        qdot += (np.eye(7) - pinv @ J) @ (_KNULL * (self._q0 - q))
        return qdot

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Action ``(9,)`` float32 in [-1, 1] for one 60-d observation (module docstring)."""
        obs = np.asarray(obs, dtype=np.float64)
        self._sync(obs)
        if self._plan is None:
            self._build_plan(obs)
        ee, _ = self._ee()
        # advance through reached / timed-out waypoints
        while self._i < len(self._plan):
            target, grip, tol, steps, yaw = self._plan[self._i]
            if callable(target):  # a feedback waypoint: (position, yaw, finished) from the observation
                target, yaw, finished = target(obs)
                self._dyn = (target, yaw)
                done = self._n >= steps or finished
            else:
                done = self._n >= steps or (target is not None and np.linalg.norm(target - ee) < tol)
            if not done:
                break
            if target is not None:
                self._last, self._yaw = target, yaw
            self._i, self._n = self._i + 1, 0
        if self._i < len(self._plan):
            target, grip, _, _, yaw = self._plan[self._i]
            if callable(target):
                target, yaw = self._dyn
            self._grip = grip
            if yaw is not None:
                self._yaw = yaw
            self._n += 1
        if self._i >= len(self._plan) or target is None:
            target = self._last
        action = np.zeros(9)
        arm = self._joint_velocity(target) / 2.0
        peak = np.abs(arm).max()
        action[:7] = arm / peak if peak > 1.0 else arm  # keep the direction when saturating
        action[7:] = self._grip
        if self.params.action_noise > 0:
            action += self.rng.normal(0.0, self.params.action_noise, 9)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, rad) of a rotation matrix (log map; angle < pi)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2.0 * np.sin(angle))
    return axis * angle
