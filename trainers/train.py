"""One trial, start to finish: data -> model -> training with evaluation -> checkpoints.

Importable and runnable without Ray or MLflow (``lamo-trial`` binds it to the console); the sweep
driver binds the same :class:`Reporter` interface to Ray Tune and MLflow.

Training follows LaMo's D4RL recipe (``../shared/docs/lamo_spec.md`` §3.1): action MSE over non-padded
steps, plus ``language.weight`` x next-token cross-entropy on a batch of text blocks through the same
adapted trunk (skipped entirely when the weight is 0); AdamW (lr, weight decay, eps 1e-6) over all
trainable parameters (LaMo's intended lr split for LM parameters is dead code in the official repo, so
one group is what it actually runs); ``LambdaLR`` with ``min((step+1)/warmup, 1)``; global-norm gradient
clipping. Unlike the official code, every RNG is seeded and checkpoints hold the full training state.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from trainers.config import TrialConfig
from trainers.data.trajectories import BatchSampler, TrajectorySet
from trainers.evaluate import evaluate
from trainers.inputs import lm_location
from trainers.model import DecisionTransformer, trainable_share

CHECKPOINT_DIR = "checkpoint"


class Reporter(Protocol):
    """Where a trial's results go. Metrics keys are ``train/...`` and ``eval/...`` (see README)."""

    def start(self, cfg: TrialConfig, info: dict) -> None:
        """Called once with static facts (data-subset hash, sizes, parameter counts)."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Called with metrics at training step ``step``."""

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        """Called each time a checkpoint of the full state is written at ``path`` (``metrics`` are the
        evaluation metrics when the checkpoint follows an evaluation, else empty). Everything logged up
        to ``step`` is now reproducible from the checkpoint, so a reporter that buffers metrics until
        here logs each metric exactly once even if the trial is killed and resumed."""

    # Optional: ``state_dict() -> object`` and ``load_state_dict(state)``. A reporter that has them has its
    # state (e.g. metrics not yet delivered) saved inside every checkpoint, *before* ``checkpoint`` is
    # called, and handed back on resume; that closes the gap between "checkpoint written" and "metrics
    # delivered" (a kill there would otherwise lose the metrics, which the resumed trial never re-creates).


class ConsoleReporter:
    """Prints progress lines and appends every metric to ``<workdir>/metrics.jsonl``."""

    def __init__(self, workdir: Path, quiet: bool = False):
        self.path = Path(workdir) / "metrics.jsonl"
        self.quiet = quiet

    def start(self, cfg: TrialConfig, info: dict) -> None:
        if not self.quiet:
            print(f"[trial {cfg.slug()}] {json.dumps(info)}", flush=True)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if not self.quiet:
            shown = {k: round(v, 4) for k, v in metrics.items()
                     if k.startswith("train/") or k.endswith("normalised_score")}
            print(f"[step {step}] {shown}", flush=True)

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        pass


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_trajectories(cfg: TrialConfig, data_dir: Path) -> TrajectorySet:
    """Load the trial's dataset (:mod:`trainers.data.loaders`) and keep its sample-ratio subset
    (:mod:`trainers.data.trajectories`).

    Raises:
        trainers.data.d4rl_hdf5.DatasetError: missing/corrupt/inconsistent file (message names the fix).
    """
    from trainers.data.loaders import load_trajectory_list

    return TrajectorySet.from_trajectories(load_trajectory_list(cfg, data_dir), cfg.sample_ratio, cfg.seed)


def _device(cfg: TrialConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path/state.pt`` atomically (temp dir + rename). A kill between the two renames
    leaves only ``path.old``, which :func:`latest_checkpoint` then returns."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    old = path.with_name(path.name + ".old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)  # stale, from a kill after the last rename
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The part of ``model.state_dict()`` a checkpoint stores: trainable parameters and buffers. Frozen
    parameters (the LM under LoRA or ``frozen``: ~99 % of GPT-2 small, ~500 MB in fp32) are rebuilt on
    resume from the same LM directory / seed and checked with :func:`frozen_fingerprint`."""
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items() if not _is_frozen(v)}


def _is_frozen(v: torch.Tensor) -> bool:
    return isinstance(v, torch.nn.Parameter) and not v.requires_grad


def _frozen_keys(model: torch.nn.Module) -> set[str]:
    """``state_dict`` keys of frozen parameters, aliases of tied weights included."""
    return {k for k, v in model.state_dict(keep_vars=True).items() if _is_frozen(v)}


def frozen_fingerprint(model: torch.nn.Module) -> dict[str, str]:
    """``{name: BLAKE2b digest of the tensor's bytes}`` of every frozen parameter. Equal fingerprints mean
    the rebuilt frozen weights are bit-identical to those the checkpoint was trained with, on any device
    (hashing the bytes, unlike a floating-point sum, does not depend on reduction order)."""
    out = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            raw = p.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy()
            out[n] = hashlib.blake2b(raw.tobytes(), digest_size=8).hexdigest()
    return out


def load_checkpoint_weights(model: torch.nn.Module, st: dict, where: Path,
                            fingerprint: dict[str, str] | None = None) -> None:
    """Load a checkpoint's weights into ``model`` (built as for training). ``fingerprint``: the model's
    :func:`frozen_fingerprint` if the caller has it already (else computed here).

    Raises:
        ValueError: the frozen parameters differ from the checkpoint's (LM directory changed) or the
            checkpoint lacks trainable weights.
    """
    saved = st.get("frozen_fingerprint")
    if saved is not None and saved != (now := frozen_fingerprint(model) if fingerprint is None else fingerprint):
        differ = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
        raise ValueError(f"checkpoint {where}: the frozen language-model weights differ from those it was "
                         f"trained with ({len(differ)} tensors, e.g. {differ[0]}; was the LM directory "
                         f"replaced?); restore that LM or delete the checkpoint")
    missing, unexpected = model.load_state_dict(st["model"], strict=False)
    bad = sorted(set(missing) - _frozen_keys(model))
    if bad or unexpected:
        raise ValueError(f"checkpoint {where} does not match the model: missing {bad[:5]}, unexpected "
                         f"{list(unexpected)[:5]}; delete it or use a fresh workdir")


def train_step(model, sampler: BatchSampler, batcher, opt: torch.optim.Optimizer, params: list,
               cfg: TrialConfig, device: torch.device) -> tuple[float, float | None]:
    """One optimisation step of LaMo / DT (spec §3): sample a batch of ``cfg.train.batch_size``
    K-step windows, action MSE at the real (unpadded) positions, plus ``cfg.language.weight`` times the
    next-token cross-entropy on one language batch when ``batcher`` is given; backward, clip the gradient
    norm at ``cfg.train.grad_clip``, optimiser step. The LR schedule is the caller's.

    Returns:
        ``(action_loss, language_loss or None)`` as floats (MSE in normalised action units; nats/token).
    """
    batch = {k: v.to(device) for k, v in sampler.sample(cfg.train.batch_size).items()}
    pred = model(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"],
                 batch["attention_mask"])
    m = batch["attention_mask"].bool()
    action_loss = torch.mean((pred[m] - batch["actions"][m]) ** 2)
    loss, lang = action_loss, None
    if batcher is not None:
        lang = model.language_loss(batcher.next_batch().to(device))
        loss = loss + cfg.language.weight * lang
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
    opt.step()
    return float(action_loss.detach()), (float(lang.detach()) if lang is not None else None)


def latest_checkpoint(path: Path) -> Path | None:
    """The ``state.pt`` to resume from: ``path/state.pt``, else ``path.old/state.pt`` (left by a kill in
    the middle of :func:`save_checkpoint`), else ``None``."""
    path = Path(path)
    for d in (path, path.with_name(path.name + ".old")):
        if (d / "state.pt").exists():
            return d / "state.pt"
    return None


def run_trial(cfg: TrialConfig, workdir: Path, data_dir: Path, reporter: Reporter | None = None,
              resume_from: Path | None = None) -> dict[str, float]:
    """Train and evaluate one trial.

    Args:
        cfg: the trial.
        workdir: the trial's own directory (checkpoints under ``workdir/checkpoint``).
        data_dir: the data directory (:mod:`trainers.inputs`); inputs must exist (``prepare``).
        reporter: where metrics go; default :class:`ConsoleReporter`.
        resume_from: a checkpoint directory to resume from; default ``workdir/checkpoint`` if present.

    Returns:
        the metrics of the final evaluation plus ``train/steps_per_s``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    reporter = reporter or ConsoleReporter(workdir)
    task = cfg.task_spec
    device = _device(cfg)
    seed_everything(cfg.seed)

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
    if cfg.language.weight > 0:  # otherwise no corpus and no language forward pass at all
        from transformers import AutoTokenizer

        from trainers.lm.corpus import LanguageBatcher, load_token_blocks

        tok = AutoTokenizer.from_pretrained(lm_path)
        blocks = load_token_blocks(cfg.language.corpus, tok, cfg.language.block_size,
                                   cache_dir=Path(data_dir) / "corpus_cache")
        batcher = LanguageBatcher(blocks, cfg.language.batch_size, seed=cfg.seed)

    step = 0
    last_eval = None  # {"step": s, "metrics": {...}} of the latest evaluation (kept in checkpoints)
    frozen_fp = frozen_fingerprint(model)  # frozen weights never change: computed once
    acc = {"action": 0.0, "language": 0.0, "n": 0}  # running means between two train-metric logs
    resume_from = Path(resume_from) if resume_from else workdir / CHECKPOINT_DIR
    if (state_file := latest_checkpoint(resume_from)) is not None:
        st = torch.load(state_file, map_location=device, weights_only=False)
        if st["config_hash"] != cfg.config_hash():
            raise ValueError(f"checkpoint {resume_from} belongs to config {st['config_hash']}, "
                             f"not {cfg.config_hash()}; delete it or use a fresh workdir")
        load_checkpoint_weights(model, st, state_file, frozen_fp)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        sampler.load_state_dict(st["sampler"])
        if batcher is not None:
            batcher.load_state_dict(st["language_batcher"])
        _set_rng_state(st["rng"])
        step = st["step"]
        acc = st["loss_accumulator"]
        last_eval = st.get("last_eval")
        if st.get("reporter") is not None and hasattr(reporter, "load_state_dict"):
            reporter.load_state_dict(st["reporter"])

    counts = trainable_share(model)
    reporter.start(cfg, {
        "data_subset_hash": data.subset_hash, **{f"data/{k}": v for k, v in data.summary().items()},
        "params/total": counts.total, "params/trainable": counts.trainable,
        "params/backbone_trainable_share": round(counts.backbone_share, 6), "resumed_at_step": step,
        "device": str(device), "config_hash": cfg.config_hash(), "data_source": cfg.data_source,
    })

    def do_eval() -> dict[str, float]:
        return evaluate(model, task, cfg.targets, cfg.eval.episodes, data.state_mean, data.state_std,
                        cfg.K, cfg.scale, seed=cfg.seed, max_episode_steps=cfg.eval.max_episode_steps,
                        device=device)

    def checkpoint(metrics: dict[str, float]) -> None:
        path = workdir / CHECKPOINT_DIR
        save_checkpoint(path, {
            "config_hash": cfg.config_hash(), "step": step, "model": checkpoint_weights(model),
            "frozen_fingerprint": frozen_fp,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "sampler": sampler.state_dict(),
            "language_batcher": batcher.state_dict() if batcher is not None else None,
            "rng": _rng_state(), "loss_accumulator": dict(acc), "data_indices": data.indices, "state_mean": data.state_mean,
            "state_std": data.state_std,
            "reporter": reporter.state_dict() if hasattr(reporter, "state_dict") else None,
            "last_eval": last_eval,
        })
        reporter.checkpoint(step, path, metrics)

    model.train()
    train_seconds = 0.0  # time in training steps only (evaluation excluded)
    final: dict[str, float] = {}
    while step < tc.steps:
        t_step = time.perf_counter()
        action_loss, lang = train_step(model, sampler, batcher, opt, params, cfg, device)
        sched.step()
        if lang is not None:
            acc["language"] += lang
        step += 1
        acc["action"] += action_loss
        acc["n"] += 1
        train_seconds += time.perf_counter() - t_step
        if step % tc.log_every == 0 or step == tc.steps:
            metrics = {"train/action_loss": acc["action"] / acc["n"], "train/lr": sched.get_last_lr()[0],
                       "train/steps_per_s": acc["n"] / max(train_seconds, 1e-9)}
            train_seconds = 0.0
            if batcher is not None:
                metrics["train/language_loss"] = acc["language"] / acc["n"]
            reporter.log(step, metrics)
            acc = {"action": 0.0, "language": 0.0, "n": 0}
        if step % cfg.eval.every_steps == 0 or step == tc.steps:
            final = do_eval()
            reporter.log(step, final)
            last_eval = {"step": step, "metrics": final}
            checkpoint(final)
        elif step % tc.checkpoint_every == 0:
            checkpoint({})
    if not final:  # resumed at the very end
        if last_eval is not None and last_eval["step"] == step:  # its final evaluation is in the checkpoint
            final = last_eval["metrics"]
        else:
            final = do_eval()
            reporter.log(step, final)
        reporter.checkpoint(step, workdir / CHECKPOINT_DIR, final)
    return final
