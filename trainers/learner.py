"""Learners: what a trial trains, behind one interface, so the trial loop, checkpoints and reporting
(:mod:`trainers.train`, :mod:`trainers.checkpoint`) are the same for every method.

A learner owns its model, optimiser, schedule and data sampling. The loop asks it for one gradient step
at a time (:meth:`Learner.train_step`), for an evaluation (:meth:`Learner.evaluate`, metric keys of
:mod:`trainers.contract`), and for its state (:meth:`Learner.state_dict`), which the checkpoint stores
whole. A new method is a new class with these members and an entry in the method registry
(:mod:`trainers.methods`); nothing else changes.

:class:`SequenceLearner` is LaMo, the Decision Transformer, Wiki-RL and their ablations on every domain: a
Decision Transformer trained on the domain's action loss plus, when the language loss is on, LaMo's
auxiliary language loss (docs/lamo_recipe.md §2-§3). What differs by domain (model, sampler, action loss,
schedule, rollout) is the domain's :class:`SequenceHooks`; :class:`StateHooks` are those of the
vector-state domains. The baselines' learners are in :mod:`trainers.baselines`; which learner a trial
gets is the method registry's (:mod:`trainers.methods`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from trainers.config import TrialConfig
from trainers.data.trajectories import BatchSampler, TrajectorySet
from trainers.evaluate import evaluate
from trainers.lm.runtime import language_blocks, lm_location
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


def load_trajectories(cfg: TrialConfig, data_dir: Path):
    """The trial's sample-ratio subset: its domain's dataset and subset rule
    (:meth:`trainers.domains.base.Domain.load_dataset`, :meth:`~trainers.domains.base.Domain.subset`; for
    vector-state domains a :class:`trainers.data.trajectories.TrajectorySet` seeded by ``cfg.seed``).

    Raises:
        trainers.data.d4rl_hdf5.DatasetError: missing/corrupt/inconsistent file (message names the fix).
    """
    from trainers.domains.base import domain_of

    domain = domain_of(cfg.task)
    return domain.subset(domain.load_dataset(cfg, data_dir), cfg)


class Schedule(Protocol):
    """A learning-rate schedule over an optimiser, advanced once per optimiser step with the batch trained
    on (a token-based schedule counts its real action targets)."""

    def step(self, batch: dict[str, torch.Tensor]) -> None: ...

    def lr(self) -> float: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class SequenceHooks(Protocol):
    """What the one :class:`SequenceLearner` takes from a trial's domain
    (:meth:`trainers.domains.base.Domain.sequence_hooks`): everything that differs between state vectors
    with continuous actions (:class:`StateHooks`) and, say, stacked frames with discrete actions
    (:class:`trainers.domains.atari.learner.AtariHooks`)."""

    def model(self, cfg: TrialConfig, lm_path: str | None) -> torch.nn.Module:
        """The Decision Transformer of the domain (built with the global torch RNG, on the CPU)."""

    def sampler(self, data, cfg: TrialConfig):
        """The seeded batch sampler over the trial's subset ``data`` (``sample(batch_size) -> dict``,
        ``state_dict``/``load_state_dict``)."""

    def schedule(self, optimizer: torch.optim.Optimizer, cfg: TrialConfig) -> Schedule:
        """The learning-rate schedule."""

    def losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrialConfig,
               schedule: Schedule) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The domain's loss of one batch: ``(total, {name: scalar tensor})``, the dict holding at least
        ``action_loss`` (each logged as ``train/<name>``); ``total`` is what is back-propagated (before the
        language loss, which the learner adds)."""

    def rollout(self, model: torch.nn.Module, cfg: TrialConfig, data, device: torch.device) -> dict[str, float]:
        """One evaluation round; metric keys of :mod:`trainers.contract`."""


class WarmupSchedule:
    """LaMo / DT's schedule: ``LambdaLR`` with factor ``min((step + 1) / warmup_steps, 1)``, linear warm-up
    then constant (``experiment-d4rl/experiment.py``). Its state is the ``LambdaLR`` state."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int):
        warm = max(warmup_steps, 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warm, 1.0))

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        self.sched.step()

    @property
    def updates(self) -> int:
        """Optimiser steps taken so far (restored with the schedule's state on resume)."""
        return self.sched.last_epoch

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def state_dict(self) -> dict:
        return self.sched.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sched.load_state_dict(state)


class StateHooks:
    """The vector-state hooks (MuJoCo, Reacher2d, Kitchen; docs/lamo_recipe.md §3, §5):

    * model: :class:`trainers.model.DecisionTransformer` over ``(obs_dim,)`` states and ``(act_dim,)`` actions;
    * sampler: :class:`trainers.data.trajectories.BatchSampler` (K-step windows, RTG / ``rtg_scale``);
    * losses: mean squared error between predicted and dataset actions over the real (unpadded)
      positions, in normalised action units (plus Wiki-RL's alignment loss when configured);
    * schedule: :class:`WarmupSchedule` over ``train.warmup_steps``;
    * rollout: :func:`trainers.evaluate.evaluate` with the trial's RTG targets, episodes, K, RTG scale and
      the training subset's state statistics.
    """

    def model(self, cfg: TrialConfig, lm_path: str | None) -> DecisionTransformer:
        task = cfg.task_spec
        return DecisionTransformer(cfg, task.obs_dim, task.act_dim, task.max_ep_len, lm_path)

    def sampler(self, data: TrajectorySet, cfg: TrialConfig) -> BatchSampler:
        return BatchSampler(data, cfg.K, cfg.scale, cfg.task_spec.max_ep_len, seed=cfg.seed)

    def schedule(self, optimizer: torch.optim.Optimizer, cfg: TrialConfig) -> WarmupSchedule:
        return WarmupSchedule(optimizer, cfg.train.warmup_steps)

    def losses(self, model: DecisionTransformer, batch: dict[str, torch.Tensor], cfg: TrialConfig,
               schedule: WarmupSchedule) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Action MSE over the real positions; with Wiki-RL's alignment loss (the model holds
        ``alignment_centres``) plus ``alignment.weight x anneal(step) x`` it, ``step`` counting updates from
        1 (read from the schedule, so it resumes with it; :mod:`trainers.alignment`)."""
        centres = getattr(model, "alignment_centres", None)
        out = model(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"],
                    batch["attention_mask"], return_tokens=centres is not None)
        pred, tokens = out if centres is not None else (out, None)
        m = batch["attention_mask"].bool()
        action_loss = torch.mean((pred[m].float() - batch["actions"][m]) ** 2)  # fp32 under bf16 autocast too
        if centres is None:
            return action_loss, {"action_loss": action_loss}
        from trainers.alignment import alignment_loss, anneal

        a = cfg.alignment
        align = alignment_loss(tokens, centres, a.form)
        total = action_loss + a.weight * anneal(schedule.updates + 1, a.anneal_steps) * align
        return total, {"action_loss": action_loss, "alignment_loss": align}

    def rollout(self, model: DecisionTransformer, cfg: TrialConfig, data: TrajectorySet,
                device: torch.device) -> dict[str, float]:
        return evaluate(model, cfg.task_spec, cfg.targets, cfg.eval.episodes, data.state_mean, data.state_std,
                        cfg.K, cfg.scale, seed=cfg.seed, max_episode_steps=cfg.eval.max_episode_steps,
                        device=device)


@dataclass
class SequenceParts:
    """Everything a sequence-model trial (LaMo, DT, Wiki-RL, ablations) trains with, built by
    :func:`build_parts`."""

    data: object  # the domain's subset: TrajectorySet, AtariSubset, ...
    sampler: object
    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Schedule
    batcher: object | None  # trainers.lm.corpus.LanguageBatcher when the language loss is on
    device: torch.device
    hooks: SequenceHooks


def build_parts(cfg: TrialConfig, data_dir: Path, device: torch.device | None = None) -> SequenceParts:
    """Build a sequence-model trial's parts, in a fixed order (the global torch RNG initialises the model,
    so the order is part of reproducibility; seed first with :func:`trainers.checkpoint.seed_everything`):
    data subset -> batch sampler -> model -> AdamW -> schedule -> language batcher. What differs by domain
    comes from the task's domain (:meth:`trainers.domains.base.Domain.sequence_hooks`).

    * AdamW over all trainable parameters, one group (lr, weight decay, eps of ``cfg.train``). The
      official code means to give LM parameters their own lr, but that group is always empty there
      (``experiment-d4rl/utils.py`` ``get_optimizer``; docs/lamo_recipe.md §3), so one group is what
      it runs; the Atari code's ``AdamW(model.parameters())`` is the same group.
    * The language batcher only when :attr:`trainers.config.TrialConfig.language_loss_on`: otherwise no
      corpus is read at all.
    * With ``alignment`` (Wiki-RL), the k-means centres of the LM's token embeddings
      (:func:`trainers.alignment.cosine_kmeans`, seeded with ``cfg.seed`` through a private generator, so
      the global RNG stream is unchanged), computed on ``device`` right after the model is built.

    Inputs must exist (``prepare`` makes them; :mod:`trainers.inputs`).

    Raises:
        trainers.data.d4rl_hdf5.DatasetError: bad dataset; OSError: LM directory unreadable.
    """
    from trainers.domains.base import domain_of

    domain = domain_of(cfg.task)
    hooks = domain.sequence_hooks(cfg)
    device = device or resolve_device(cfg)
    data = domain.subset(domain.load_dataset(cfg, data_dir), cfg)
    sampler = hooks.sampler(data, cfg)
    lm_path = lm_location(cfg.model.lm, data_dir) if cfg.model.lm else None
    model = hooks.model(cfg, lm_path).to(device)
    if hasattr(model, "alignment_centres"):  # Wiki-RL's alignment loss: k-means of the LM's token embeddings
        from trainers.alignment import cosine_kmeans

        a = cfg.alignment
        centres, _ = cosine_kmeans(model.lm.get_input_embeddings().weight, a.clusters, cfg.seed, a.kmeans_iters)
        model.alignment_centres.copy_(centres)
    params = [p for p in model.parameters() if p.requires_grad]
    tc = cfg.train
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, eps=tc.adam_eps)
    sched = hooks.schedule(opt, cfg)
    batcher = None
    if cfg.language_loss_on:
        from trainers.lm.corpus import LanguageBatcher

        batcher = LanguageBatcher(language_blocks(cfg, data_dir), cfg.language.batch_size, seed=cfg.seed)
    return SequenceParts(data, sampler, model, params, opt, sched, batcher, device, hooks)


class SequenceLearner(ModelLearner):
    """LaMo / DT / Wiki-RL and the ablations, on every domain: return-conditioned action prediction with a
    Decision Transformer (the domain's, :func:`build_parts`).

    Loss per step (docs/lamo_recipe.md §3): the domain's losses of a batch of ``train.batch_size`` K-step
    windows (:meth:`SequenceHooks.losses`: the action loss, MSE for continuous actions and cross-entropy for
    discrete ones, over the real (unpadded) positions; with ``alignment`` (Wiki-RL) plus
    ``alignment.weight x anneal(step) x`` the k-means alignment loss of the step's input tokens), plus
    ``language.weight`` x next-token cross-entropy of one batch of text blocks through the same adapted
    trunk; backward; global-norm gradient clipping at ``train.grad_clip``; AdamW step; schedule step.
    Forward passes and losses run at ``train.precision`` (:class:`trainers.precision.MixedPrecision`).
    """

    def train_step(self) -> dict[str, float]:
        """One step (class docstring). Returns the step's losses by name: ``action_loss`` (the domain's),
        ``language_loss`` (nats per token, with the language loss on), ``alignment_loss`` (unweighted, in
        [-1, 1], with Wiki-RL's alignment loss)."""
        p, cfg = self.parts, self.cfg
        batch = {k: v.to(p.device) for k, v in p.sampler.sample(cfg.train.batch_size).items()}
        with self.amp.autocast():  # train.precision (trainers.precision); a no-op in fp32
            loss, parts = p.hooks.losses(p.model, batch, cfg, p.scheduler)
            lang = None
            if p.batcher is not None:
                lang = p.model.language_loss(p.batcher.next_batch().to(p.device))
                loss = loss + cfg.language.weight * lang
        self.amp.step(loss, p.optimizer, p.params, cfg.train.grad_clip)
        p.scheduler.step(batch)
        if lang is not None:
            parts["language_loss"] = lang
        return {name: float(v.detach()) for name, v in parts.items()}

    def current_lr(self) -> float:
        return self.parts.scheduler.lr()

    def evaluate(self) -> dict[str, float]:
        """The domain's rollout (:meth:`SequenceHooks.rollout`)."""
        p = self.parts
        return p.hooks.rollout(p.model, self.cfg, p.data, p.device)
