"""Task registry: everything a trial needs to know about one offline-RL task, in one place.

A *task* is an environment plus a dataset plus the evaluation protocol LaMo uses on it: return-to-go
(RTG) targets in raw-return units, the RTG scale, the context length K, the maximum episode length, and
the constants that turn a raw return into a normalised score (0-100).

Sources of the constants (explained in ``docs/lamo_recipe.md``):

* RTG targets, RTG scale and ``max_ep_len``: the official LaMo repo, github.com/srzer/LaMo-2023
  ``experiment-d4rl/experiment.py``; K (20, Reacher2d 5): its ``experiment-d4rl/run.sh`` and
  ``run_cotrain.sh`` (lamo_recipe §1.1, §4.3, §5.1).
* D4RL reference min/max returns: D4RL ``d4rl/infos.py`` (``REF_MIN_SCORE``/``REF_MAX_SCORE``,
  github.com/Farama-Foundation/D4RL). Normalised score = 100 * (R - R_min) / (R_max - R_min), D4RL's
  ``get_normalized_score`` (``d4rl/offline_env.py``) x 100 (lamo_recipe §5.3).
* Reacher2d: LaMo's ``get_normalized_score(x) = x / 100`` in
  ``experiment-d4rl/decision_transformer/envs/reacher_2d.py``, i.e. R_min = 0, R_max = 100
  (lamo_recipe §5.3, §6).
* Sample ratios: LaMo ``data/mujoco/ratio_dataset.py`` and the paper's Appendix B (lamo_recipe §4.2).
* Kitchen: RTG scale 1, targets 5/4/3/2/1 and ``max_ep_len`` 1000 from LaMo ``experiment-d4rl/experiment.py``;
  reference returns 0 and 4 from D4RL ``d4rl/infos.py`` (kitchen-complete/partial-v0), so the normalised
  score is 100 x subtasks completed / 4; ratios from LaMo ``data/kitchen/ratio_dataset.py``; dataset
  files from D4RL ``d4rl/kitchen/__init__.py`` (the ``dataset_url`` of each registration).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainers.util import did_you_mean


@dataclass(frozen=True)
class DatasetSource:
    """Where a task's offline dataset comes from.

    Attributes:
        kind: the default source: ``"collected"`` (produced by this project's ``prepare`` step from a
            behaviour policy) or ``"d4rl_hdf5"`` (a D4RL file the user provides). A trial can pick
            another source with ``data.source`` (:class:`trainers.config.DataConfig`).
        name: file stem of the default source, e.g. ``"reacher2d-medium-v0"`` or ``"hopper_medium-v2"``.
        behaviour_policy: for ``collected``: the behaviour policy (:mod:`trainers.data.policies`); several
            joined by ``+`` are rolled out one after the other and concatenated (D4RL's medium-expert).
        episodes: for ``collected``: episodes per behaviour policy (``None``: use ``transitions``).
        transitions: for ``collected``: transitions per behaviour policy (D4RL: 1M; the last episode
            is cut, as in D4RL).
        collected_name: file stem of the collected dataset (``None``: same as ``name``).
        minari_id: the Minari dataset id for ``data.source: minari``.
        url: where the default ``d4rl`` file is published (quoted in the missing-file message).
        collect_max_steps: for ``collected``: episode length limit while collecting (``None``: the
            task's ``max_ep_len``; Kitchen: the env's own 280, since ``max_ep_len`` 1000 is only the
            size of LaMo's timestep table).
    """

    kind: str
    name: str
    behaviour_policy: str | None = None
    episodes: int | None = None
    transitions: int | None = None
    collected_name: str | None = None
    minari_id: str | None = None
    url: str | None = None
    collect_max_steps: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One task of the registry.

    Attributes:
        name: registry key, e.g. ``"reacher2d-medium"``.
        env_id: gymnasium id used for evaluation rollouts.
        obs_dim: observation size (floats).
        act_dim: action size (floats, continuous in [-1, 1]).
        max_ep_len: maximum episode length (env steps); also the size of the timestep-embedding table.
        context_length: K, the number of (R, s, a) steps the model sees.
        rtg_scale: return-to-go divisor fed to the model (LaMo: 1000 MuJoCo, 10 Reacher2d, 1 Kitchen).
        rtg_targets: evaluation return targets, raw-return units, in LaMo's order.
        ref_min_return / ref_max_return: raw returns mapped to normalised scores 0 and 100.
        dataset: where the offline data comes from.
        paper_sample_ratios: the sample ratios LaMo uses for this task (``docs/lamo_recipe.md`` §4.2).
        domain: the task family: ``"mujoco"`` (Hopper, HalfCheetah, Walker2d), ``"reacher2d"``,
            ``"kitchen"`` (these three: vector observations, continuous actions, the MuJoCo-style model)
            or ``"atari"`` (stacked 84x84 frames, discrete actions: :mod:`trainers.atari`). Code branches
            only on ``"atari"``; the other names select per-domain recipes
            (:data:`trainers.presets.DOMAIN_PRESETS`). For ``atari``, ``obs_dim`` is the flattened frame
            stack (4*84*84) and ``act_dim`` the number of actions.
    """

    name: str
    env_id: str
    obs_dim: int
    act_dim: int
    max_ep_len: int
    context_length: int
    rtg_scale: float
    rtg_targets: tuple[float, ...]
    ref_min_return: float
    ref_max_return: float
    dataset: DatasetSource
    paper_sample_ratios: tuple[float, ...] = field(default=())
    domain: str = "mujoco"

    def normalised_score(self, raw_return: float) -> float:
        """Map a raw episode return to the normalised score (0 = reference min, 100 = reference max).

        Formula: ``100 * (R - R_min) / (R_max - R_min)`` (D4RL ``get_normalized_score`` x 100; for
        Reacher2d LaMo's ``return / 100`` x 100).
        """
        return 100.0 * (raw_return - self.ref_min_return) / (self.ref_max_return - self.ref_min_return)


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

TASKS: dict[str, TaskSpec] = {}


def _register(spec: TaskSpec) -> None:
    TASKS[spec.name] = spec


_register(
    TaskSpec(
        name="reacher2d-medium",
        env_id="lamo/Reacher2d-v0",
        obs_dim=12,
        act_dim=2,
        max_ep_len=100,
        context_length=5,
        rtg_scale=10.0,
        rtg_targets=(76.0, 40.0),
        ref_min_return=0.0,
        ref_max_return=100.0,
        dataset=DatasetSource(
            kind="collected",
            name="reacher2d-medium-v0",
            behaviour_policy="reacher2d-ik-medium",
            episodes=1000,
        ),
        domain="reacher2d",
    )
)

# Behaviour policies of the collected D4RL-style datasets: RL-Zoo agents (DLR-RM/rl-trained-agents),
# found through trainers.paths.sb3_agents_dir() (docs/lamo_recipe.md §4.5, §9). D4RL's "medium" is about
# one third of expert: with mean actions, Hopper SAC scores 34 normalised, HalfCheetah ARS 42, Walker2d
# ARS 31; TQC is expert level on all three (lamo_recipe §4.5). medium-expert = medium
# followed by expert, as D4RL concatenates its medium and expert datasets.
_SB3_MEDIUM = {"hopper": "sac", "halfcheetah": "ars", "walker2d": "ars"}
_D4RL_LEVEL = {"medium": "medium", "expert": "expert", "medium-expert": "medium_expert"}

for _env in ("hopper", "halfcheetah", "walker2d"):
    _lo, _hi = _D4RL_REF[_env]
    _obs, _act = _MUJOCO_DIMS[_env]
    _zoo_env = f"{_GYM_NAMES[_env]}-v3"
    _pol = {"medium": f"sb3:{_SB3_MEDIUM[_env]}/{_zoo_env}", "expert": f"sb3:tqc/{_zoo_env}"}
    _pol["medium-expert"] = f"{_pol['medium']}+{_pol['expert']}"
    for _level in ("medium", "expert", "medium-expert"):
        _register(
            TaskSpec(
                name=f"{_env}-{_level}",
                # v4 keeps the observation layout of the v3 envs D4RL's -v2 data came from.
                env_id=f"{_GYM_NAMES[_env]}-v4",
                obs_dim=_obs,
                act_dim=_act,
                max_ep_len=1000,
                context_length=20,
                rtg_scale=1000.0,
                rtg_targets=_MUJOCO_TARGETS[_env],
                ref_min_return=_lo,
                ref_max_return=_hi,
                dataset=DatasetSource(
                    kind="d4rl_hdf5", name=f"{_env}_{_D4RL_LEVEL[_level]}-v2",
                    behaviour_policy=_pol[_level], transitions=1_000_000,
                    collected_name=f"{_env}-{_level}-sb3-v0", minari_id=f"mujoco/{_env}/{_level}-v0",
                ),
                paper_sample_ratios=(0.005, 0.01, 0.1, 1.0) if _level == "medium" else (),
                domain="mujoco",
            )
        )


# Franka Kitchen (trainers/envs/kitchen.py). Both datasets are evaluated on the complete task's env
# (lamo_recipe §4.1). D4RL file names: d4rl/kitchen/__init__.py dataset_url.
_D4RL_KITCHEN_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/kitchen/"
_KITCHEN_FILES = {"complete": "mini_kitchen_microwave_kettle_light_slider-v0",
                  "partial": "kitchen_microwave_kettle_light_slider-v0"}
_KITCHEN_EPISODES = {"complete": 20, "partial": 60}  # D4RL: 19 complete demos, partial ~600 (CPU-sized here)
for _level in ("complete", "partial"):
    _register(
        TaskSpec(
            name=f"kitchen-{_level}",
            env_id="lamo/FrankaKitchen-complete-v0",  # = trainers.envs.KITCHEN_ID
            obs_dim=60,
            act_dim=9,
            max_ep_len=1000,  # LaMo's value; the env itself truncates at 280 steps (D4RL, FrankaKitchen-v1)
            context_length=20,
            rtg_scale=1.0,
            rtg_targets=(5.0, 4.0, 3.0, 2.0, 1.0),
            ref_min_return=0.0,
            ref_max_return=4.0,
            dataset=DatasetSource(
                kind="d4rl_hdf5", name=_KITCHEN_FILES[_level],
                behaviour_policy=f"kitchen-scripted-{_level}", episodes=_KITCHEN_EPISODES[_level],
                collected_name=f"kitchen-{_level}-scripted-v0", minari_id=f"D4RL/kitchen/{_level}-v2",
                url=_D4RL_KITCHEN_URL + _KITCHEN_FILES[_level] + ".hdf5",
                collect_max_steps=280,  # the env's own episode length (D4RL, FrankaKitchen-v1)
            ),
            paper_sample_ratios=(0.3, 0.5, 1.0) if _level == "complete" else (0.01, 0.1, 1.0),
            domain="kitchen",
        )
    )
# Atari (pixels, discrete actions; trainers/envs/atari.py, trainers/atari.py). LaMo's Atari setup
# (srzer/LaMo-2023 experiment-atari/: cfgs/config.yaml, cfgs/env/breakout.yaml, run.sh, get_hns.py):
# context 30, reward_scale 1, max_timestep 4096, Breakout targets 90 and 120. Qbert and Pong configs are
# not in the repository; their targets are the Decision Transformer's (Chen et al. 2021, kzl/decision-
# transformer atari/run_dt_atari.py: Qbert 14000, Pong 20). Gamer-normalised score = 100 (R - random) /
# (human - random) with the random and human scores of Mnih et al. 2015 (Nature DQN, Extended Data
# Table 2), as LaMo's get_hns.py. Locally collected data: a scripted policy reading the emulator RAM
# plus epsilon noise (trainers/data/atari.py), labelled locally generated (docs/deviations.md).
_ATARI = {
    # game: (actions, RTG targets, random score, human score, collected transitions)
    "breakout": (4, (90.0, 120.0), 1.7, 31.8, 50_000),
    "pong": (6, (20.0,), -20.7, 9.3, 100_000),
    "qbert": (6, (14000.0,), 163.9, 13455.0, 50_000),
}
for _game, (_n_act, _targets, _rand, _human, _n) in _ATARI.items():
    _register(
        TaskSpec(
            name=f"{_game}-medium",
            env_id=f"lamo/{_game[:1].upper() + _game[1:]}-dqn-v0",
            obs_dim=4 * 84 * 84,
            act_dim=_n_act,
            max_ep_len=4096,
            context_length=30,
            rtg_scale=1.0,
            rtg_targets=_targets,
            ref_min_return=_rand,
            ref_max_return=_human,
            dataset=DatasetSource(
                kind="collected", name=f"{_game}-medium-v0", behaviour_policy=f"atari-ram:{_game}",
                transitions=_n, collected_name=f"{_game}-medium-scripted-v0",
                minari_id=f"atari/{_game}/expert-v0",
            ),
            paper_sample_ratios=(0.1, 1.0),
            domain="atari",
        )
    )


def get_task(name: str) -> TaskSpec:
    """Return the registered task ``name``.

    Raises:
        KeyError: with the list of known tasks and the closest match, when ``name`` is unknown.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}.{did_you_mean(name, TASKS)} Known tasks: {', '.join(sorted(TASKS))}") from None
