"""The MuJoCo locomotion domain: Hopper, HalfCheetah and Walker2d with D4RL's datasets (the paper's
dense-reward table).

Sources of the constants (explained in ``docs/lamo_recipe.md``):

* RTG targets, RTG scale 1000 and ``max_ep_len`` 1000: the official LaMo repo, github.com/srzer/LaMo-2023
  ``experiment-d4rl/experiment.py``; K 20: its ``experiment-d4rl/run.sh`` (lamo_recipe §1.1, §4.3, §5.1).
* D4RL reference min/max returns: D4RL ``d4rl/infos.py`` (``REF_MIN_SCORE``/``REF_MAX_SCORE``,
  github.com/Farama-Foundation/D4RL); normalised score = D4RL's ``get_normalized_score`` x 100.
* Sample ratios of the medium datasets: LaMo ``data/mujoco/ratio_dataset.py`` and the paper's Appendix B
  (lamo_recipe §4.2).
* Datasets: D4RL's ``<env>_<level>-v2`` files (read with h5py; published at
  ``.../offline_rl/gym_mujoco_v2/<env>_<level>-v2.hdf5``, D4RL ``d4rl/infos.py``), Minari's ``mujoco/<env>/<level>-v0``, or
  D4RL-style data collected here from RL-Zoo agents (``sb3:<algo>/<Env>-v3``,
  :mod:`trainers.data.policies`): D4RL's "medium" is about one third of expert: with mean actions, Hopper
  SAC scores 34 normalised, HalfCheetah ARS 42, Walker2d ARS 31; TQC is expert level on all three
  (lamo_recipe §4.5). medium-expert = medium followed by expert, as D4RL concatenates its medium and
  expert datasets. Evaluation uses gymnasium's ``-v4`` envs, which keep the observation layout of the v3
  envs D4RL's -v2 data came from.
"""

from __future__ import annotations

from trainers.domains.base import DatasetSource, TaskSpec, register_domain
from trainers.downloads import D4RL_BASE_URL
from trainers.domains.state import StateDomain

# D4RL reference returns, d4rl/infos.py (REF_MIN_SCORE / REF_MAX_SCORE); docs/lamo_recipe.md §5.3.
_D4RL_REF = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}
# LaMo's RTG targets, experiment-d4rl/experiment.py (srzer/LaMo-2023); docs/lamo_recipe.md §5.1.
_MUJOCO_TARGETS = {
    "hopper": (3600.0, 2600.0, 2200.0, 1800.0),
    "halfcheetah": (12000.0, 8000.0, 6000.0, 4500.0),
    "walker2d": (5000.0, 4000.0, 3000.0, 2500.0),
}
_MUJOCO_DIMS = {"hopper": (11, 3), "halfcheetah": (17, 6), "walker2d": (17, 6)}
_GYM_NAMES = {"hopper": "Hopper", "halfcheetah": "HalfCheetah", "walker2d": "Walker2d"}
_SB3_MEDIUM = {"hopper": "sac", "halfcheetah": "ars", "walker2d": "ars"}
_D4RL_LEVEL = {"medium": "medium", "expert": "expert", "medium-expert": "medium_expert"}
_LEVEL_DISPLAY = {"medium": "Medium", "expert": "Expert", "medium-expert": "Medium-Expert"}


class MujocoDomain(StateDomain):
    """Hopper, HalfCheetah, Walker2d at D4RL's medium, expert and medium-expert levels (module docstring)."""

    name = "mujoco"
    label = "MuJoCo"
    table = "dense"

    def tasks(self) -> list[TaskSpec]:
        out = []
        for order, env in enumerate(("hopper", "halfcheetah", "walker2d")):
            lo, hi = _D4RL_REF[env]
            obs, act = _MUJOCO_DIMS[env]
            zoo_env = f"{_GYM_NAMES[env]}-v3"
            pol = {"medium": f"sb3:{_SB3_MEDIUM[env]}/{zoo_env}", "expert": f"sb3:tqc/{zoo_env}"}
            pol["medium-expert"] = f"{pol['medium']}+{pol['expert']}"
            for level in ("medium", "expert", "medium-expert"):
                out.append(TaskSpec(
                    name=f"{env}-{level}", env_id=f"{_GYM_NAMES[env]}-v4", obs_dim=obs, act_dim=act,
                    max_ep_len=1000, context_length=20, rtg_scale=1000.0, rtg_targets=_MUJOCO_TARGETS[env],
                    ref_min_return=lo, ref_max_return=hi,
                    dataset=DatasetSource(
                        kind="d4rl_hdf5", name=f"{env}_{_D4RL_LEVEL[level]}-v2", behaviour_policy=pol[level],
                        transitions=1_000_000, collected_name=f"{env}-{level}-sb3-v0",
                        minari_id=f"mujoco/{env}/{level}-v0",
                        url=f"{D4RL_BASE_URL}gym_mujoco_v2/{env}_{_D4RL_LEVEL[level]}-v2.hdf5"),
                    paper_sample_ratios=(0.005, 0.01, 0.1, 1.0) if level == "medium" else (),
                    domain=self.name, display=f"{_GYM_NAMES[env]}-{_LEVEL_DISPLAY[level]}",
                    order=order if level == "medium" else 50))
        return out


DOMAIN = register_domain(MujocoDomain())
