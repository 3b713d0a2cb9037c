"""The Atari learner: LaMo / DT on stacked frames with discrete actions (tasks with ``domain == "atari"``).

:func:`trainers.learner.make_learner` picks :class:`AtariLearner` from the task's registry entry, so every
preset (``lamo``, ``dt``, the ablations, ``lamo-atari``, ``dt-atari``) runs on an Atari task unchanged.

Per step (srzer/LaMo-2023 ``experiment-atari/core.py``; docs/lamo_recipe.md §3.2): a batch of K-step
windows (:class:`trainers.data.atari.AtariBatchSampler`), cross-entropy of the action logits at the real
(unpadded) steps, plus ``language.weight`` x the LM loss when on; AdamW; global-norm clipping at
``train.grad_clip``; the token-based learning-rate schedule (:class:`TokenLR`).
Evaluation (:func:`evaluate_atari`): greedy (argmax) actions, return-to-go = target - return so far.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainers.evaluate import evaluation_metrics
from trainers.atari_model import AtariDecisionTransformer
from trainers.config import AtariSettings, TrialConfig
from trainers.data.atari import AtariBatchSampler, AtariSubset
from trainers.inputs import language_blocks, lm_location
from trainers.model_learner import ModelLearner
from trainers.tasks import TaskSpec


def token_lr_multiplier(tokens: float, warmup_tokens: float, final_tokens: float) -> float:
    """DT-Atari / minGPT schedule (srzer/LaMo-2023 ``experiment-atari/core.py`` ``CustomLRScheduler``;
    github.com/karpathy/minGPT ``trainer.py``): ``tokens / warmup`` during warm-up, then
    ``max(0.1, 0.5 (1 + cos(pi * progress)))`` with ``progress = (tokens - warmup) / (final - warmup)``."""
    if tokens < warmup_tokens:
        return float(tokens) / float(max(1.0, warmup_tokens))
    progress = float(tokens - warmup_tokens) / float(max(1.0, final_tokens - warmup_tokens))
    return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


class TokenLR:
    """The token-based schedule as a resumable object over an optimiser.

    ``mode="tokens"`` (intended): the count grows by the real action targets of each batch.
    ``mode="tokens-official"``: the official behaviour: ``cumulative += (actions > 0).sum()`` and the
    scheduler's own total grows by ``cumulative`` every step (so quadratically; docs/deviations.md).
    The first step runs at multiplier 0, as the official scheduler (its count starts at 0).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, settings: AtariSettings):
        self.opt, self.s = optimizer, settings
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.tokens, self.cumulative = 0.0, 0.0
        self._apply()

    def _apply(self) -> None:
        m = token_lr_multiplier(self.tokens, self.s.warmup_tokens, self.s.final_tokens)
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = b * m

    def step(self, actions: torch.Tensor, mask: torch.Tensor) -> None:
        """Advance after an optimiser step: ``actions`` ``(B, K)`` ids, ``mask`` ``(B, K)`` real steps."""
        if self.s.lr_schedule == "tokens":
            self.tokens += float(mask.sum())
        else:
            self.cumulative += float((actions > 0).sum())
            self.tokens += self.cumulative
        self._apply()

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"tokens": self.tokens, "cumulative": self.cumulative, "base": self.base}

    def load_state_dict(self, st: dict) -> None:
        self.tokens, self.cumulative, self.base = st["tokens"], st["cumulative"], list(st["base"])
        self._apply()


def action_loss(logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of ``logits`` ``(B, K, A)`` against ``actions`` ``(B, K)`` over the real
    steps only (``mask`` ``(B, K)``, nonzero = real), as ``experiment-atari/core.py``
    (``F.cross_entropy(logits[mask], actions[mask])``)."""
    m = mask.bool()
    return F.cross_entropy(logits[m], actions[m])


@torch.no_grad()
def evaluate_atari(model: AtariDecisionTransformer, task: TaskSpec, targets: list[float], episodes: int,
                   context_length: int, rtg_scale: float, seed: int, max_episode_steps: int | None = None,
                   device: str | torch.device = "cpu") -> dict[str, float]:
    """Roll out ``len(targets) * episodes`` episodes in parallel (one batched forward per step).

    As LaMo's ``eval`` (``experiment-atari/core.py``): all episodes start together, the model sees the last
    ``min(t + 1, K)`` steps (no padding), timesteps are absolute (clipped to ``max_ep_len - 1``), the RTG
    is ``(target - return so far) / rtg_scale``, the action is the argmax of the logits, and an episode runs
    until the game ends, the env's cap or ``max_episode_steps`` (default ``task.max_ep_len``, LaMo's
    ``max_timestep``). Episode i of each target is reset with seed ``seed * 100_003 + i``. Each step's
    state embedding (the CNN) is computed once and reused while the step is in the context window.

    Returns:
        the contract's keys: per target ``return_mean``/``return_std``/``length_mean`` (raw) and
        ``normalised_score`` (gamer-normalised of the mean return), ``eval/best_normalised_score``,
        ``eval/episodes_per_s``.
    """
    from trainers.envs import make_env

    horizon = max_episode_steps or task.max_ep_len
    n, K = len(targets) * episodes, context_length
    start = time.perf_counter()
    envs = [make_env(task.env_id) for _ in range(n)]
    first = np.stack([env.reset(seed=seed * 100_003 + i % episodes)[0] for i, env in enumerate(envs)])
    acts = np.zeros((n, K), np.int64)  # the last K steps of each episode, newest last (rolling windows)
    rtg = np.zeros((n, K), np.float32)
    returns, lengths, done = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, bool)
    target = np.array([targets[i // episodes] for i in range(n)], np.float64)
    was_training = model.training
    model.eval()
    try:
        # each step's state embedding depends only on its own frames: computed once, kept for K steps
        emb = torch.zeros(n, K, model.hidden, device=device)
        emb[:, -1] = model.encode_states(torch.from_numpy(first).to(device))
        for t in range(horizon):
            active = np.flatnonzero(~done)
            if active.size == 0:
                break
            L = min(t + 1, K)
            rtg[active, -1] = (target[active] - returns[active]) / rtg_scale
            ts = np.minimum(np.arange(t + 1 - L, t + 1), task.max_ep_len - 1)[None].repeat(len(active), 0)
            idx = torch.from_numpy(active).to(device)
            logits = model(None, torch.from_numpy(acts[active, K - L:]).to(device),
                           torch.from_numpy(rtg[active, K - L:, None]).to(device), torch.from_numpy(ts).to(device),
                           state_embeddings=emb[idx, K - L:])[:, -1]
            a = logits.argmax(-1).cpu().numpy()
            acts[active, -1] = a
            obs = np.empty((len(active), 4, 84, 84), np.uint8)
            for j, i in enumerate(active):
                o, r, term, trunc, _ = envs[i].step(int(a[j]))
                obs[j] = o
                returns[i] += r
                lengths[i] += 1
                if term or trunc or lengths[i] >= horizon:
                    done[i] = True
            acts[active] = np.roll(acts[active], -1, axis=1)
            rtg[active] = np.roll(rtg[active], -1, axis=1)
            acts[active, -1] = 0
            emb[idx] = torch.roll(emb[idx], -1, dims=1)
            emb[idx, -1] = model.encode_states(torch.from_numpy(obs).to(device))
    finally:
        model.train(was_training)
        for env in envs:
            env.close()
    return evaluation_metrics(task, targets, returns, lengths, time.perf_counter() - start)


@dataclass
class AtariParts:
    """Everything an Atari trial trains with, built by :func:`build_atari_parts`."""

    data: AtariSubset
    sampler: AtariBatchSampler
    model: AtariDecisionTransformer
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: TokenLR
    batcher: object | None
    device: torch.device


def build_atari_parts(cfg: TrialConfig, data_dir: Path, device: torch.device) -> AtariParts:
    """Data subset -> sampler -> model -> AdamW (one group over the trainable parameters, as the official
    ``AdamW(model.parameters())`` with frozen ones receiving no gradient) -> :class:`TokenLR` -> language
    batcher (only with ``language.weight > 0``). Fixed order; seed first. ``device``: where the model
    runs (:func:`trainers.learner.resolve_device`).

    Raises:
        trainers.data.d4rl_hdf5.DatasetError: bad dataset.
    """
    from trainers.data.atari import load_atari_dataset

    task = cfg.task_spec
    data = AtariSubset(load_atari_dataset(cfg, data_dir), cfg.sample_ratio, cfg.seed)
    sampler = AtariBatchSampler(data, cfg.K, cfg.scale, task.max_ep_len, seed=cfg.seed)
    lm_path = lm_location(cfg.model.lm, data_dir) if cfg.model.lm else None
    model = AtariDecisionTransformer(cfg, task.act_dim, task.max_ep_len, lm_path).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    tc = cfg.train
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, eps=tc.adam_eps)
    sched = TokenLR(opt, cfg.atari or AtariSettings())
    batcher = None
    if cfg.language.weight > 0:
        from trainers.lm.corpus import LanguageBatcher

        batcher = LanguageBatcher(language_blocks(cfg, data_dir), cfg.language.batch_size, seed=cfg.seed)
    return AtariParts(data, sampler, model, params, opt, sched, batcher, device)


class AtariLearner(ModelLearner):
    """LaMo / DT on Atari behind the :class:`trainers.learner.Learner` interface (module docstring);
    construction (``parts`` = :class:`AtariParts`), ``info`` and the checkpoint state are
    :class:`trainers.model_learner.ModelLearner`'s."""

    def train_step(self) -> dict[str, float]:
        """One step. Returns ``{"action_loss": cross-entropy in nats}`` (+ ``language_loss``)."""
        p, cfg = self.parts, self.cfg
        b = {k: v.to(p.device) for k, v in p.sampler.sample(cfg.train.batch_size).items()}
        with self.amp.autocast():  # train.precision (trainers.precision); a no-op in fp32
            logits = p.model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])
            m = b["attention_mask"].bool()
            ce = action_loss(logits, b["actions"], m)
            loss, lang = ce, None
            if p.batcher is not None:
                lang = p.model.language_loss(p.batcher.next_batch().to(p.device))
                loss = loss + cfg.language.weight * lang
        self.amp.step(loss, p.optimizer, p.params, cfg.train.grad_clip)
        p.scheduler.step(b["actions"], m)
        out = {"action_loss": float(ce.detach())}
        if lang is not None:
            out["language_loss"] = float(lang.detach())
        return out

    def current_lr(self) -> float:
        return self.parts.scheduler.lr()

    def evaluate(self) -> dict[str, float]:
        cfg, p = self.cfg, self.parts
        return evaluate_atari(p.model, cfg.task_spec, cfg.targets, cfg.eval.episodes, cfg.K, cfg.scale,
                              seed=cfg.seed, max_episode_steps=cfg.eval.max_episode_steps, device=p.device)
