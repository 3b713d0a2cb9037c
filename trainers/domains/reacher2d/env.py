"""LaMo's sparse-reward Reacher2d, on the ``mujoco`` bindings and the gymnasium API.

Source: the ``Reacher2dEnv`` of the Decision Transformer repo (github.com/kzl/decision-transformer,
``gym/decision_transformer/envs/reacher_2d.py`` + ``assets/reacher_2d.xml``), which LaMo copies and
extends with ``get_normalized_score`` (github.com/srzer/LaMo-2023,
``experiment-d4rl/decision_transformer/envs/reacher_2d.py``; ``docs/lamo_recipe.md`` §6.1). It is *not*
gymnasium's ``Reacher``. Re-written here for ``mujoco`` >= 3 and ``gymnasium.Env``.

Physics (``docs/lamo_recipe.md`` §6.1; asset ``assets/reacher2d.xml``): planar 2-link arm, links 0.6 and
0.4 m, fingertip site 0.45 m along link 2, shoulder hinge unlimited, elbow limited to [-2.0, 3.5] rad,
no gravity, RK4, timestep 0.01 s, ``frame_skip`` 15 (control dt 0.15 s), motors gear 1, ctrlrange
[-1, 1]. As in the original asset, the shoulder body is mounted rotated by +0.785 rad and the elbow body by -0.785 rad, so
link 1 points at angle ``q0 + 0.785`` and link 2 at ``q0 + q1`` (world frame). Constants that §6.1 does
not list come from the DT asset too: joint armature 0.05 and damping 1, capsule radius 0.05 m,
density 1000 kg/m^3 (link masses 5.24 and 3.67 kg).

Observation (12 float32, lengths in m, angles in rad):

======  ==============================  ===========================================
index   content                         units
======  ==============================  ===========================================
0:2     sin(q0), sin(q1)                --
2:4     cos(q0), cos(q1)                --
4:6     dt * qdot                       rad per control step (dt = 0.15 s)
6:8     fingertip x, y                  m
8:10    target x, y                     m
10:12   fingertip - target              m
======  ==============================  ===========================================

Action: 2 motor torques (N m, gear 1), clipped to [-1, 1] inside :meth:`Reacher2dEnv.step`.
Reward (sparse): 1.0 if ``|tip - target|_1 < 0.1`` else 0.0, so a 100-step episode returns 0..100
(raw return; LaMo's normalised score is ``return / 100``, x 100 here). The env never terminates: the
100-step horizon is the ``max_episode_steps=100`` of the registration (:mod:`trainers.envs`).
Reset: ``q ~ U[-2, 2]^2`` rad, zero velocity; target ``~ U[-1.5, 1.5]^2`` redrawn until its norm is in
[0.5, 1.0] m.

Deviations from the original (none changes the dynamics):

* Contacts are disabled. The only contact in the original is the permanent overlap of the base capsule
  and link 1; measured effect on joint angles < 1e-9 rad over 100 steps.
* The fingertip in the observation/reward is computed from the *current* joint angles (a kinematics
  pass after stepping); mujoco-py read positions that lag one 0.01 s substep behind.
* Observations are float32 (the original returned float64).

Speed (1 core of this 2-core CPU, random actions, resets included): ~11,300 steps/s for the bare env and
~11,100 steps/s through ``make_env`` (TimeLimit/checker wrappers). ~90% of a step is MuJoCo's 15 RK4
substeps (~80 us); the Python side (clip, observation, info) is ~8 us.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces

ASSET_PATH = Path(__file__).parent / "assets" / "reacher2d.xml"

FRAME_SKIP = 15  # lamo_recipe §6.1: 15 substeps of 0.01 s per control step
SUCCESS_L1 = 0.1  # lamo_recipe §6.1: reward 1 when the L1 fingertip-target distance is below this (m)
QPOS_RESET_RANGE = 2.0  # lamo_recipe §6.1: q ~ U[-2, 2] at reset (rad)
TARGET_BOX = 1.5  # lamo_recipe §6.1: target drawn in U[-1.5, 1.5]^2 (m) ...
TARGET_NORM = (0.5, 1.0)  # ... until its norm lies in this range (m)


class Reacher2dEnv(gymnasium.Env):
    """LaMo/DT sparse Reacher2d (see the module docstring for obs layout, units and sources).

    Args:
        render_mode: ``None`` (default) or ``"rgb_array"`` (offscreen ``mujoco.Renderer``; needs an OpenGL
            backend, e.g. ``MUJOCO_GL=egl`` or ``osmesa``, which headless CPU machines may lack).
        width, height: image size for ``rgb_array``.

    ``info`` of ``reset`` and ``step`` holds ``distance_l1`` (float, m) and ``success`` (bool).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 7}  # 1 / 0.15 s, rounded

    def __init__(self, render_mode: str | None = None, width: int = 240, height: int = 240):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.model = mujoco.MjModel.from_xml_path(str(ASSET_PATH))
        self.data = mujoco.MjData(self.model)
        self.dt = self.model.opt.timestep * FRAME_SKIP  # control dt, 0.15 s
        self._tip_sid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "fingertip")
        self._target_mocap = self.model.body_mocapid[
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "target")
        ]
        self.goal = np.zeros(2)
        self._size = (width, height)
        self._renderer: mujoco.Renderer | None = None
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(12,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    # -- core API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset arm and target (draw order: qpos, then target rejection loop). Returns (obs, info)."""
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = self.np_random.uniform(-QPOS_RESET_RANGE, QPOS_RESET_RANGE, size=2)
        while True:
            goal = self.np_random.uniform(-TARGET_BOX, TARGET_BOX, size=2)
            if TARGET_NORM[0] <= np.linalg.norm(goal) <= TARGET_NORM[1]:
                break
        self.goal = goal
        self.data.mocap_pos[self._target_mocap, :2] = goal
        mujoco.mj_kinematics(self.model, self.data)
        obs, dist = self._obs()
        return obs, {"distance_l1": dist, "success": dist < SUCCESS_L1}

    def step(self, action):
        """Apply clipped torques for 15 substeps. Returns (obs, reward in {0,1}, False, False, info)."""
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        mujoco.mj_kinematics(self.model, self.data)
        obs, dist = self._obs()
        success = dist < SUCCESS_L1
        return obs, 1.0 if success else 0.0, False, False, {"distance_l1": dist, "success": success}

    def _obs(self) -> tuple[np.ndarray, float]:
        q = self.data.qpos
        tip = self.data.site_xpos[self._tip_sid, :2]
        delta = tip - self.goal
        obs = np.concatenate([np.sin(q), np.cos(q), self.dt * self.data.qvel, tip, self.goal, delta])
        return obs.astype(np.float32), float(np.abs(delta).sum())

    # -- helpers --------------------------------------------------------------------------------
    def set_state(self, qpos: np.ndarray, qvel: np.ndarray | None = None, goal: np.ndarray | None = None):
        """Place the arm (``qpos`` (2,), rad; ``qvel`` (2,), rad/s) and optionally the target (2,), m.

        Returns the observation (12,) for the new state. Used by tests and scripted policies.
        """
        self.data.qpos[:] = qpos
        self.data.qvel[:] = 0.0 if qvel is None else qvel
        if goal is not None:
            self.goal = np.asarray(goal, dtype=np.float64).copy()
            self.data.mocap_pos[self._target_mocap, :2] = self.goal
        mujoco.mj_kinematics(self.model, self.data)
        return self._obs()[0]

    def render(self):
        """``rgb_array`` mode: an ``(height, width, 3)`` uint8 image of the current state; else ``None``."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=self._size[1], width=self._size[0])
        mujoco.mj_forward(self.model, self.data)
        self._renderer.update_scene(self.data)
        return self._renderer.render()

    def close(self):
        """Release the offscreen renderer, if one was created."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
