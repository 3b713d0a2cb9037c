"""Vector-state domains: the defaults MuJoCo, Reacher2d and Kitchen share (:class:`StateDomain`).

Observations are float vectors ``(obs_dim,)``, actions float vectors in [-1, 1] ``(act_dim,)``. Data are
D4RL-layout HDF5 files (D4RL's own or collected here from a behaviour policy), Minari datasets or DT/LaMo
trajectory pickles (:mod:`trainers.data.loaders`); the subset is LaMo's uniform draw of whole
trajectories; the sequence learner is the Decision Transformer on state vectors with an MSE action loss and
a linear warm-up (:class:`trainers.learner.StateHooks`); the baselines are d3rlpy's continuous-action
algorithms (:class:`trainers.baselines.D3rlpyLearner`).
"""

from __future__ import annotations

from pathlib import Path

from trainers.domains.base import Domain, TaskSpec


class StateDomain(Domain):
    """The vector-state defaults of every :class:`trainers.domains.base.Domain` member but
    :meth:`~trainers.domains.base.Domain.tasks` (module docstring)."""

    def load_dataset(self, cfg, data_dir):
        """A list of trajectory dicts (``observations (T, obs_dim)``, ``actions (T, act_dim)``, ``rewards
        (T,)`` raw units), validated (:func:`trainers.data.loaders.load_trajectory_list`).

        Raises:
            trainers.data.d4rl_hdf5.DatasetError: missing, corrupt or inconsistent data.
        """
        from trainers.data.loaders import load_trajectory_list

        return load_trajectory_list(cfg, data_dir)

    def subset(self, dataset, cfg):
        """LaMo's uniform draw of whole trajectories, ``cfg.sample_ratio`` of them, seeded by ``cfg.seed``
        (:meth:`trainers.data.trajectories.TrajectorySet.from_trajectories`, LaMo
        ``data/mujoco/ratio_dataset.py``)."""
        from trainers.data.trajectories import TrajectorySet

        return TrajectorySet.from_trajectories(dataset, cfg.sample_ratio, cfg.seed)

    def collect(self, task: TaskSpec, out_path: Path, *, episodes, transitions, seed: int, progress: bool,
                data_dir) -> dict:
        """Roll the task's behaviour policy out into D4RL-layout HDF5
        (:func:`trainers.data.collect.collect_dataset`; its docstring has the summary's keys)."""
        from trainers.data.collect import collect_dataset

        return collect_dataset(task.name, out_path, episodes=episodes, seed=seed, progress=progress,
                               transitions=transitions, data_dir=data_dir)

    def step_embedding_flops(self, cfg, hidden: int) -> float:
        """State, action and return embeddings plus the action head: ``2 d (obs + 2 act + 1)`` multiply-adds
        x 2, doubled for LaMo's two-layer MLP embeddings."""
        task = cfg.task_spec
        return 2 * hidden * (task.obs_dim + 2 * task.act_dim + 1) * (2 if cfg.model.embedding == "mlp" else 1)

    def sequence_hooks(self, cfg):
        """:class:`trainers.learner.StateHooks`."""
        from trainers.learner import StateHooks

        return StateHooks()

    def baseline_learner(self, cfg, data_dir, device):
        """:func:`trainers.baselines.make_baseline_learner` (d3rlpy's continuous-action algorithms)."""
        from trainers.baselines import make_baseline_learner

        return make_baseline_learner(cfg, data_dir, device)
