"""One trial, start to finish: build the learner, resume if a checkpoint exists, train with periodic
evaluation and checkpoints, report metrics.

Importable and runnable without Ray or MLflow (``lamo-trial`` binds it to the console); the sweep
driver binds the same :class:`Reporter` interface to Ray Tune and MLflow. The method being trained is a
:class:`trainers.learner.Learner`; the checkpoint layout is :mod:`trainers.checkpoint`'s; metric keys
are :mod:`trainers.contract`'s. Unlike the official LaMo code, every RNG is seeded and checkpoints hold
the full training state, so a resumed trial continues bit-exactly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

from trainers import contract
from trainers.checkpoint import LoopState, TrialCheckpoint, seed_everything
from trainers.config import TrialConfig
from trainers.downloads import dataset_file_sha256
from trainers.inputs import text_source_of
from trainers.paths import trial_dataset_path
from trainers.learner import resolve_device
from trainers.methods import make_learner


class Reporter(Protocol):
    """Where a trial's results go. Metric keys: :mod:`trainers.contract`."""

    def start(self, cfg: TrialConfig, info: dict) -> None:
        """Called once with static facts (data-subset hash, sizes, parameter counts, resumed step)."""

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


def run_trial(cfg: TrialConfig, workdir: Path, data_dir: Path, reporter: Reporter | None = None,
              resume_from: Path | None = None) -> dict[str, float]:
    """Train and evaluate one trial: evaluation every ``eval.every_steps`` steps and after the last one,
    each followed by a checkpoint; a checkpoint every ``train.checkpoint_every`` steps in between;
    training metrics (means since the last log) every ``train.log_every`` steps.

    Args:
        cfg: the trial.
        workdir: the trial's own directory (checkpoints under ``workdir/checkpoint``).
        data_dir: the data directory (:mod:`trainers.inputs`); inputs must exist (``prepare``).
        reporter: where metrics go; default :class:`ConsoleReporter`.
        resume_from: a checkpoint directory to resume from; default ``workdir/checkpoint`` if present.

    Returns:
        the metrics of the final evaluation.

    Raises:
        ValueError: a checkpoint of another config / data subset is in the way.
        trainers.data.d4rl_hdf5.DatasetError: bad dataset.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    reporter = reporter or ConsoleReporter(workdir)
    seed_everything(cfg.seed)
    learner = make_learner(cfg, data_dir)
    loop = LoopState()
    ckpt = TrialCheckpoint(workdir, cfg.config_hash(), learner.data.subset_hash, learner, reporter)
    ckpt.restore(loop, resume_from, map_location=resolve_device(cfg))
    reporter.start(cfg, {contract.DATA_SUBSET_HASH: learner.data.subset_hash, **learner.info(),
                         "resumed_at_step": loop.step, contract.CONFIG_HASH: cfg.config_hash(),
                         contract.DATA_SOURCE: cfg.data_source,
                         contract.DATASET_SHA256: dataset_file_sha256(trial_dataset_path(cfg, data_dir)),
                         contract.TEXT_SOURCE: text_source_of(cfg, Path(data_dir))})

    def evaluate_and_checkpoint() -> dict[str, float]:
        metrics = learner.evaluate()
        reporter.log(loop.step, metrics)
        loop.last_eval = {"step": loop.step, "metrics": metrics}
        reporter.checkpoint(loop.step, ckpt.save(loop), metrics)
        return metrics

    tc, final, train_seconds = cfg.train, {}, 0.0  # train_seconds: time in training steps only
    while loop.step < tc.steps:
        t0 = time.perf_counter()
        loop.add(learner.train_step())
        loop.step += 1
        train_seconds += time.perf_counter() - t0
        last = loop.step == tc.steps
        if loop.step % tc.log_every == 0 or last:
            n = loop.n
            metrics = {contract.train_key(k): v for k, v in loop.take_means().items()}
            metrics |= {contract.TRAIN_LR: learner.current_lr(), contract.TRAIN_STEPS_PER_S: n / max(train_seconds, 1e-9)}
            reporter.log(loop.step, metrics)
            train_seconds = 0.0
        if loop.step % cfg.eval.every_steps == 0 or last:
            final = evaluate_and_checkpoint()
        elif loop.step % tc.checkpoint_every == 0:
            reporter.checkpoint(loop.step, ckpt.save(loop), {})
    if not final:  # resumed after the last step: the final evaluation is in the checkpoint, or is redone
        if loop.last_eval is not None and loop.last_eval["step"] == loop.step:
            final = loop.last_eval["metrics"]
            reporter.checkpoint(loop.step, ckpt.path, final)
        else:
            final = evaluate_and_checkpoint()
    return final
