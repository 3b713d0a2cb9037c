"""Learners: what a trial trains, behind one interface, so the trial loop, checkpoints and reporting
(:mod:`trainers.train`, :mod:`trainers.checkpoint`) are the same for every method.

A learner owns its model, optimiser, schedule and data sampling. The loop asks it for one gradient step
at a time (:meth:`Learner.train_step`), for an evaluation (:meth:`Learner.evaluate`, metric keys of
:mod:`trainers.contract`), and for its state (:meth:`Learner.state_dict`), which the checkpoint stores
whole. A new method (a value-based or imitation baseline, say) is a new class with these five members
and an entry in :func:`make_learner`; nothing else changes.

:class:`SequenceLearner` is LaMo and the Decision Transformer, and their ablations: one
:class:`trainers.model.DecisionTransformer`, trained on action MSE plus, when ``language.weight > 0``,
LaMo's auxiliary language loss (docs/lamo_recipe.md §2-§3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from trainers.config import TrialConfig
from trainers.data.trajectories import BatchSampler, TrajectorySet
from trainers.evaluate import evaluate
from trainers.inputs import language_blocks, lm_location
from trainers.model import DecisionTransformer
from trainers.model_learner import ModelLearner


class Learner(Protocol):
    """The interface between the trial loop and a learning method.

    Attributes:
        data: the trajectory subset trained on (its ``subset_hash`` is part of the trial's identity).
    """

    data: TrajectorySet

    def train_step(self) -> dict[str, float]:
        """One gradient step (and one LR-schedule step). Returns the step's losses as floats, keyed by
        loss name (``action_loss``, ``language_loss``, ...): logged as ``train/<name>`` means."""

    def current_lr(self) -> float:
        """The learning rate the next step will use."""

    def evaluate(self) -> dict[str, float]:
        """Roll out the current policy; metrics keyed as in :mod:`trainers.contract` (per RTG target
        for return-conditioned learners)."""

    def info(self) -> dict[str, object]:
        """Static facts for the reporter's ``start``: ``data/...`` sizes, ``params/...`` counts, ``device``."""

    def state_dict(self) -> dict:
        """Everything needed to continue bit-exactly (trainable weights, optimiser, schedule, sampler...)."""

    def load_state_dict(self, state: dict, where: Path) -> None:
        """Restore :meth:`state_dict`'s output (``where``: the checkpoint file, for error messages).

        Raises:
            ValueError: the state does not fit this learner (message names the fix)."""


def resolve_device(cfg: TrialConfig) -> torch.device:
    """``cfg.device``, with ``auto`` = CUDA when available, else CPU."""
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def load_trajectories(cfg: TrialConfig, data_dir: Path) -> TrajectorySet:
    """Load the trial's dataset (:mod:`trainers.data.loaders`) and keep its sample-ratio subset
    (:meth:`trainers.data.trajectories.TrajectorySet.from_trajectories`, seeded by ``cfg.seed``).

    Raises:
        trainers.data.d4rl_hdf5.DatasetError: missing/corrupt/inconsistent file (message names the fix).
    """
    from trainers.data.loaders import load_trajectory_list

    return TrajectorySet.from_trajectories(load_trajectory_list(cfg, data_dir), cfg.sample_ratio, cfg.seed)


@dataclass
class SequenceParts:
    """Everything a LaMo / DT trial trains with, built by :func:`build_parts`."""

    data: TrajectorySet
    sampler: BatchSampler
    model: DecisionTransformer
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batcher: object | None  # trainers.lm.corpus.LanguageBatcher when language.weight > 0
    device: torch.device


def build_parts(cfg: TrialConfig, data_dir: Path, device: torch.device | None = None) -> SequenceParts:
    """Build a LaMo / DT trial's parts, in a fixed order (the global torch RNG initialises the model, so
    the order is part of reproducibility; seed first with :func:`trainers.checkpoint.seed_everything`):
    data subset -> batch sampler -> model -> AdamW -> schedule -> language batcher.

    * AdamW over all trainable parameters, one group (lr, weight decay, eps of ``cfg.train``). The
      official code means to give LM parameters their own lr, but that group is always empty there
      (``experiment-d4rl/utils.py`` ``get_optimizer``; docs/lamo_recipe.md §3), so one group is what
      it runs.
    * ``LambdaLR`` with factor ``min((step + 1) / warmup_steps, 1)``: linear warm-up, then constant
      (``experiment-d4rl/experiment.py``).
    * The language batcher only when ``language.weight > 0``: otherwise no corpus is read at all.

    Inputs must exist (``prepare`` makes them; :mod:`trainers.inputs`).

    Raises:
        trainers.data.d4rl_hdf5.DatasetError: bad dataset; OSError: LM directory unreadable.
    """
    task = cfg.task_spec
    device = device or resolve_device(cfg)
    data = load_trajectories(cfg, data_dir)
    sampler = BatchSampler(data, cfg.K, cfg.scale, task.max_ep_len, seed=cfg.seed)
    lm_path = lm_location(cfg.model.lm, data_dir) if cfg.model.lm else None
    model = DecisionTransformer(cfg, task.obs_dim, task.act_dim, task.max_ep_len, lm_path).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    tc = cfg.train
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, eps=tc.adam_eps)
    warm = max(tc.warmup_steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 1.0))
    batcher = None
    if cfg.language.weight > 0:
        from trainers.lm.corpus import LanguageBatcher

        batcher = LanguageBatcher(language_blocks(cfg, data_dir), cfg.language.batch_size, seed=cfg.seed)
    return SequenceParts(data, sampler, model, params, opt, sched, batcher, device)


class SequenceLearner(ModelLearner):
    """LaMo / DT (and the ablations): return-conditioned action prediction with a Decision Transformer.

    Loss per step (docs/lamo_recipe.md §3): mean squared error between predicted and dataset actions
    over the real (unpadded) positions of a batch of ``train.batch_size`` K-step windows, plus
    ``language.weight`` x next-token cross-entropy of one batch of text blocks through the same adapted
    trunk; backward; global-norm gradient clipping at ``train.grad_clip``; AdamW step; schedule step.
    Forward passes and losses run at ``train.precision`` (:class:`trainers.precision.MixedPrecision`).
    """

    def train_step(self) -> dict[str, float]:
        """One step (class docstring). Returns ``{"action_loss": MSE in normalised action units,
        "language_loss": nats per token}`` (the latter only with the language loss on)."""
        p, cfg = self.parts, self.cfg
        batch = {k: v.to(p.device) for k, v in p.sampler.sample(cfg.train.batch_size).items()}
        with self.amp.autocast():  # train.precision (trainers.precision); a no-op in fp32
            pred = p.model(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"],
                           batch["attention_mask"])
            m = batch["attention_mask"].bool()
            action_loss = torch.mean((pred[m].float() - batch["actions"][m]) ** 2)
            loss, lang = action_loss, None
            if p.batcher is not None:
                lang = p.model.language_loss(p.batcher.next_batch().to(p.device))
                loss = loss + cfg.language.weight * lang
        self.amp.step(loss, p.optimizer, p.params, cfg.train.grad_clip)
        p.scheduler.step()
        out = {"action_loss": float(action_loss.detach())}
        if lang is not None:
            out["language_loss"] = float(lang.detach())
        return out

    def current_lr(self) -> float:
        return self.parts.scheduler.get_last_lr()[0]

    def evaluate(self) -> dict[str, float]:
        """:func:`trainers.evaluate.evaluate` with the trial's RTG targets, episodes, K, RTG scale and the
        training subset's state statistics."""
        cfg, p = self.cfg, self.parts
        return evaluate(p.model, cfg.task_spec, cfg.targets, cfg.eval.episodes, p.data.state_mean,
                        p.data.state_std, cfg.K, cfg.scale, seed=cfg.seed,
                        max_episode_steps=cfg.eval.max_episode_steps, device=p.device)


def make_learner(cfg: TrialConfig, data_dir: Path) -> Learner:
    """The learner a trial config asks for: a d3rlpy baseline (:class:`trainers.baselines.D3rlpyLearner`)
    when ``cfg.baseline.algo`` is not ``none`` (presets ``cql``, ``iql``, ``td3bc``, ``bc``; on an Atari task
    ``cql`` / ``bc`` are d3rlpy's discrete algorithms, :class:`trainers.baselines.DiscreteD3rlpyLearner`); on an Atari
    task (registry ``domain == "atari"``) the pixel / discrete-action variant,
    :class:`trainers.atari_learner.AtariLearner`; else a :class:`SequenceLearner` (LaMo, DT, Wiki-RL and
    the ablations)."""
    if cfg.baseline.algo != "none":
        from trainers.baselines import make_baseline_learner

        return make_baseline_learner(cfg, data_dir, resolve_device(cfg))
    if cfg.task_spec.domain == "atari":
        from trainers.atari_learner import AtariLearner, build_atari_parts

        return AtariLearner(cfg, build_atari_parts(cfg, data_dir, resolve_device(cfg)))
    return SequenceLearner(cfg, build_parts(cfg, data_dir))
