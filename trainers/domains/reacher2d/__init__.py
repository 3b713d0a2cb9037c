"""The Reacher2d domain: LaMo's sparse-reward 2-link reacher (paper §5, "Reacher2d"; LaMo
``experiment-d4rl/decision_transformer/envs/reacher_2d.py``).

* env ``lamo/Reacher2d-v0`` (:mod:`trainers.domains.reacher2d.env`): 12-d observation, 2-d action in
  [-1, 1], reward 1 per step inside the target zone, 100 steps per episode (LaMo's ``max_ep_len``, so
  episodes end by truncation only);
* data: collected here from the scripted inverse-kinematics controllers of
  :mod:`trainers.domains.reacher2d.policy` (LaMo's PPO agent is not public; ``docs/deviations.md``);
* task constants: RTG targets 76 and 40, RTG scale 10, K 5 (LaMo ``experiment-d4rl/experiment.py``,
  ``run.sh``); normalised score = return (LaMo's ``get_normalized_score(x) = x / 100``, x 100).
"""

from __future__ import annotations

from trainers.domains.base import DatasetSource, TaskSpec, register_domain
from trainers.domains.state import StateDomain

REACHER2D_ID = "lamo/Reacher2d-v0"
REACHER2D_MAX_STEPS = 100  # LaMo/DT max_ep_len for Reacher2d (lamo_recipe §5.1, §6.1)


class Reacher2dDomain(StateDomain):
    """Reacher2d (module docstring): one task, ``reacher2d-medium``, on the sparse-reward table."""

    name = "reacher2d"
    label = "Reacher2d"
    table = "sparse"

    def tasks(self) -> list[TaskSpec]:
        return [TaskSpec(
            name="reacher2d-medium", env_id=REACHER2D_ID, obs_dim=12, act_dim=2, max_ep_len=REACHER2D_MAX_STEPS,
            context_length=5, rtg_scale=10.0, rtg_targets=(76.0, 40.0), ref_min_return=0.0, ref_max_return=100.0,
            dataset=DatasetSource(kind="collected", name="reacher2d-medium-v0",
                                  behaviour_policy="reacher2d-ik-medium", episodes=1000),
            domain=self.name, display="Reacher2d", order=2)]

    def register_envs(self) -> None:
        import gymnasium

        if REACHER2D_ID not in gymnasium.registry:
            gymnasium.register(id=REACHER2D_ID, entry_point="trainers.domains.reacher2d.env:Reacher2dEnv",
                               max_episode_steps=REACHER2D_MAX_STEPS)

    def behaviour_policy_names(self) -> tuple[str, ...]:
        from trainers.domains.reacher2d.policy import POLICIES

        return tuple(POLICIES)

    def behaviour_policy(self, name: str, seed: int, data_dir=None):
        from trainers.domains.reacher2d.policy import POLICIES, BehaviourPolicy

        return BehaviourPolicy(name, POLICIES[name], seed) if name in POLICIES else None


DOMAIN = register_domain(Reacher2dDomain())
