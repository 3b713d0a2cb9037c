"""The Atari domain: Breakout, Pong and Qbert from pixels with discrete actions (the paper's Atari table).

Its modules: :mod:`~trainers.domains.atari.env` (the games with the DQN-Replay conventions),
:mod:`~trainers.domains.atari.data` (frames stored once as uint8, DQN Replay / Minari / locally generated
data, LaMo's length-weighted subset, the scripted RAM behaviour policies), :mod:`~trainers.domains.atari.model`
(the Decision Transformer with a Nature-DQN CNN state encoder) and :mod:`~trainers.domains.atari.learner`
(cross-entropy action loss, the token-based schedule, batched greedy evaluation).

Task constants: LaMo's Atari setup (srzer/LaMo-2023 ``experiment-atari/``: ``cfgs/config.yaml``,
``cfgs/env/breakout.yaml``, ``run.sh``, ``get_hns.py``): context 30, reward scale 1, max timestep 4096,
Breakout targets 90 and 120. Qbert and Pong configs are not in the repository; their targets are the
Decision Transformer's (Chen et al. 2021, kzl/decision-transformer ``atari/run_dt_atari.py``: Qbert 14000,
Pong 20). Gamer-normalised score = 100 (R - random) / (human - random) with the random and human scores of
Mnih et al. 2015 (Nature DQN, Extended Data Table 2), as LaMo's ``get_hns.py``. Locally collected data: a
scripted policy reading the emulator RAM plus epsilon noise, labelled locally generated (docs/deviations.md).
"""

from __future__ import annotations

from pathlib import Path

from trainers.domains.base import DatasetSource, Domain, TaskSpec, register_domain

_ATARI = {
    # game: (actions, RTG targets, random score, human score, collected transitions)
    "breakout": (4, (90.0, 120.0), 1.7, 31.8, 50_000),
    "pong": (6, (20.0,), -20.7, 9.3, 100_000),
    "qbert": (6, (14000.0,), 163.9, 13455.0, 50_000),
}
_ORDER = {"breakout": 0, "qbert": 1, "pong": 2}


def game_of(task: TaskSpec) -> str:
    """The game key of an Atari task (``breakout-medium`` -> ``breakout``)."""
    return task.name.split("-")[0]


class AtariDomain(Domain):
    """Atari (module docstring): ``<game>-medium`` tasks, pixels ``(4, 84, 84)`` uint8, discrete actions."""

    name = "atari"
    label = "Atari"
    table = "atari"
    discrete_actions = True

    def tasks(self) -> list[TaskSpec]:
        return [TaskSpec(
            name=f"{game}-medium", env_id=f"lamo/{game[:1].upper() + game[1:]}-dqn-v0", obs_dim=4 * 84 * 84,
            act_dim=n_act, max_ep_len=4096, context_length=30, rtg_scale=1.0, rtg_targets=targets,
            ref_min_return=rand, ref_max_return=human,
            dataset=DatasetSource(kind="collected", name=f"{game}-medium-v0", behaviour_policy=f"atari-ram:{game}",
                                  transitions=n, collected_name=f"{game}-medium-scripted-v0",
                                  minari_id=f"atari/{game}/expert-v0"),
            paper_sample_ratios=(0.1, 1.0), domain=self.name, display=game[:1].upper() + game[1:],
            order=_ORDER[game])
            for game, (n_act, targets, rand, human, n) in _ATARI.items()]

    def register_envs(self) -> None:
        from trainers.domains.atari.env import register_atari_envs

        register_atari_envs()

    def behaviour_policy_names(self) -> tuple[str, ...]:
        from trainers.domains.atari.data import RAM_POLICIES

        return tuple(f"atari-ram:{g}" for g in RAM_POLICIES)

    def dataset_path(self, task: TaskSpec, data_dir, source: str) -> Path | None:
        """``d4rl`` = the DQN Replay directory ``<data_dir>/dqn_replay/<Game>/1/replay_logs`` (Dopamine's
        layout, as d4rl-atari downloads it); other sources as every domain."""
        if source == "d4rl":
            game = game_of(task)
            return Path(data_dir) / "dqn_replay" / (game[:1].upper() + game[1:]) / "1" / "replay_logs"
        return super().dataset_path(task, data_dir, source)

    def dataset_downloads(self, cfg, path: Path) -> list[tuple[str, Path]]:
        """The four files of the "medium" DQN Replay checkpoint of run 1 (d4rl-atari's ``<game>-medium-v0``)
        from the dataset's public bucket over HTTPS (:data:`trainers.downloads.DQN_REPLAY_BASE_URL`)."""
        from trainers.domains.atari.data import dqn_replay_files
        from trainers.downloads import DQN_REPLAY_BASE_URL

        game = game_of(cfg.task_spec)
        base = f"{DQN_REPLAY_BASE_URL}{game[:1].upper() + game[1:]}/1/replay_logs/"
        return [(base + f.name, f) for f in dqn_replay_files(path).values()]

    def missing_dataset_fix(self, cfg, path: Path) -> tuple[str, str] | None:
        """DQN Replay: absent when any of the checkpoint's four files is; the fix is the loader's message."""
        from trainers.domains.atari.data import DatasetError, dqn_replay_files, load_dqn_replay

        if all(p.is_file() for p in dqn_replay_files(path).values()):
            return None
        task = cfg.task_spec
        try:
            load_dqn_replay(path, game_of(task), task.act_dim)
        except DatasetError as e:  # its message has the download command
            return f"DQN Replay data for task {cfg.task!r}", str(e)
        return None

    def load_dataset(self, cfg, data_dir):
        """A :class:`trainers.domains.atari.data.AtariDataset` (:func:`~trainers.domains.atari.data.load_atari_dataset`)."""
        from trainers.domains.atari.data import load_atari_dataset

        return load_atari_dataset(cfg, data_dir)

    def subset(self, dataset, cfg):
        """LaMo's Atari subset: trajectories drawn with probability proportional to their length
        (:class:`trainers.domains.atari.data.AtariSubset`)."""
        from trainers.domains.atari.data import AtariSubset

        return AtariSubset(dataset, cfg.sample_ratio, cfg.seed)

    def collect(self, task: TaskSpec, out_path: Path, *, episodes, transitions, seed: int, progress: bool,
                data_dir) -> dict:
        """The scripted RAM policy with epsilon noise (:func:`trainers.domains.atari.data.collect_atari_dataset`)."""
        from trainers.domains.atari.data import collect_atari_dataset

        return collect_atari_dataset(game_of(task), Path(out_path), transitions or task.dataset.transitions,
                                     seed=seed, progress=progress)

    def step_embedding_flops(self, cfg, hidden: int) -> float:
        """The Nature-DQN CNN on one 4 x 84 x 84 stack (:mod:`trainers.domains.atari.model`): conv outputs
        20x20x32 (8x8x4 kernels), 9x9x64 (4x4x32), 7x7x64 (3x3x64), then Linear(3136, hidden); 2 FLOPs per
        multiply-add. The action and return embeddings are negligible beside it."""
        return 2 * (20 * 20 * 32 * 256 + 9 * 9 * 64 * 512 + 7 * 7 * 64 * 576 + 3136 * hidden)

    def sequence_hooks(self, cfg):
        """:class:`trainers.domains.atari.learner.AtariHooks`."""
        from trainers.domains.atari.learner import AtariHooks

        return AtariHooks()

    def baseline_learner(self, cfg, data_dir, device):
        """d3rlpy's discrete algorithms on LaMo's Atari subset (:class:`trainers.baselines.DiscreteD3rlpyLearner`)."""
        from trainers.baselines import DiscreteD3rlpyLearner

        return DiscreteD3rlpyLearner(cfg, self.subset(self.load_dataset(cfg, data_dir), cfg), device)


DOMAIN = register_domain(AtariDomain())
