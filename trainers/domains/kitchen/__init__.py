"""The Franka Kitchen domain: D4RL's kitchen-complete and kitchen-partial (the paper's sparse-reward table).

* env ``lamo/FrankaKitchen-complete-v0`` (:mod:`trainers.domains.kitchen.env`): gymnasium-robotics'
  ``FrankaKitchen-v1`` with D4RL's four kitchen-complete subtasks and D4RL's flat 60-d observation,
  280 steps per episode (D4RL's and ``FrankaKitchen-v1``'s episode length). Both datasets are evaluated on
  the complete task's env (lamo_recipe §4.1).
* data: D4RL's files (``d4rl/kitchen/__init__.py``, the ``dataset_url`` of each registration), Minari's
  ``D4RL/kitchen/*-v2``, or data collected here by the scripted controllers of
  :mod:`trainers.domains.kitchen.policy` (locally generated; ``docs/deviations.md``).
* task constants: RTG scale 1, targets 5/4/3/2/1 and ``max_ep_len`` 1000 from LaMo
  ``experiment-d4rl/experiment.py``; reference returns 0 and 4 from D4RL ``d4rl/infos.py``
  (kitchen-complete/partial-v0), so the normalised score is 100 x subtasks completed / 4; ratios from LaMo
  ``data/kitchen/ratio_dataset.py``.
"""

from __future__ import annotations

from trainers.domains.base import DatasetSource, TaskSpec, register_domain
from trainers.downloads import D4RL_BASE_URL
from trainers.domains.state import StateDomain

KITCHEN_ID = "lamo/FrankaKitchen-complete-v0"
KITCHEN_MAX_STEPS = 280  # D4RL kitchen-*-v0 and FrankaKitchen-v1 max_episode_steps

_D4RL_KITCHEN_URL = D4RL_BASE_URL + "kitchen/"
_KITCHEN_FILES = {"complete": "mini_kitchen_microwave_kettle_light_slider-v0",
                  "partial": "kitchen_microwave_kettle_light_slider-v0"}
_KITCHEN_EPISODES = {"complete": 20, "partial": 60}  # D4RL: 19 complete demos, partial ~600 (CPU-sized here)
#: File attribute ``rewards`` of collected kitchen files (absent elsewhere: rows hold the env's reward).
KITCHEN_REWARDS_NOTE = ("D4RL relabelled: subtasks solved in the row's observation "
                        "(REMOVE_TASKS_WHEN_COMPLETE=False, d4rl generate_kitchen_datasets.py)")
_PAPER_RATIOS = {"complete": (0.3, 0.5, 1.0), "partial": (0.01, 0.1, 1.0)}


class KitchenDomain(StateDomain):
    """kitchen-partial and kitchen-complete (module docstring)."""

    name = "kitchen"
    label = "Kitchen"
    table = "sparse"

    def tasks(self) -> list[TaskSpec]:
        return [TaskSpec(
            name=f"kitchen-{level}", env_id=KITCHEN_ID, obs_dim=60, act_dim=9,
            max_ep_len=1000,  # LaMo's value; the env itself truncates at 280 steps (D4RL, FrankaKitchen-v1)
            context_length=20, rtg_scale=1.0, rtg_targets=(5.0, 4.0, 3.0, 2.0, 1.0),
            ref_min_return=0.0, ref_max_return=4.0,
            dataset=DatasetSource(
                kind="d4rl_hdf5", name=_KITCHEN_FILES[level], behaviour_policy=f"kitchen-scripted-{level}",
                episodes=_KITCHEN_EPISODES[level], collected_name=f"kitchen-{level}-scripted-v0",
                minari_id=f"D4RL/kitchen/{level}-v2", url=_D4RL_KITCHEN_URL + _KITCHEN_FILES[level] + ".hdf5",
                collect_max_steps=KITCHEN_MAX_STEPS),
            paper_sample_ratios=_PAPER_RATIOS[level], domain=self.name,
            display=f"Kitchen-{level.title()}", order=0 if level == "partial" else 1)
            for level in ("complete", "partial")]

    def relabel_rewards(self, task: TaskSpec, data: dict) -> str | None:
        """D4RL's relabelled step reward: the number of target subtasks solved in each row's observation
        (:func:`trainers.domains.kitchen.env.d4rl_kitchen_rewards`; D4RL
        ``scripts/generation/generate_kitchen_datasets.py``, ``REMOVE_TASKS_WHEN_COMPLETE = False``),
        instead of the env's +1 once per subtask."""
        import numpy as np

        from trainers.domains.kitchen.env import d4rl_kitchen_rewards

        data["rewards"] = d4rl_kitchen_rewards(data["observations"]).astype(np.float32)
        return KITCHEN_REWARDS_NOTE

    def check_collected_file(self, task: TaskSpec, attrs: dict, path) -> None:
        """A kitchen file collected before rows got D4RL's relabelled step rewards has env rewards, another
        unit of return-to-go: refused."""
        if attrs.get("created_by") == "lamo-sweep" and "rewards" not in attrs:
            from trainers.data.d4rl_hdf5 import DatasetError

            raise DatasetError(f"{path}: collected before kitchen rows stored D4RL's relabelled step rewards "
                               f"(subtasks solved per step); delete it and run `lamo-trial prepare` again")

    def register_envs(self) -> None:
        import gymnasium

        if KITCHEN_ID not in gymnasium.registry:
            gymnasium.register(id=KITCHEN_ID, entry_point="trainers.domains.kitchen.env:make_kitchen",
                               max_episode_steps=KITCHEN_MAX_STEPS)

    def behaviour_policy_names(self) -> tuple[str, ...]:
        from trainers.domains.kitchen.policy import KITCHEN_POLICIES

        return tuple(KITCHEN_POLICIES)

    def behaviour_policy(self, name: str, seed: int, data_dir=None):
        from trainers.domains.kitchen.policy import KITCHEN_POLICIES, KitchenScriptedPolicy

        return KitchenScriptedPolicy(name, KITCHEN_POLICIES[name], seed) if name in KITCHEN_POLICIES else None


DOMAIN = register_domain(KitchenDomain())
