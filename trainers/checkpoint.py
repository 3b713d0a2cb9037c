"""The checkpoint layout of a trial, for saving and restoring, in one place.

A checkpoint is a directory ``<workdir>/checkpoint`` holding one ``state.pt`` (``torch.save`` of a dict):

==================  ================================================================================
key                 what
==================  ================================================================================
``format``          :data:`FORMAT`; a checkpoint of another format is refused with a clear error
``config_hash``     :meth:`trainers.config.TrialConfig.config_hash` of the trial that wrote it
``data_subset_hash`` hash of the trajectory subset trained on (a changed dataset file is refused)
``step``            gradient steps done
``loop``            :class:`LoopState`: running loss sums since the last log, the last evaluation
``learner``         the learner's own state (:meth:`trainers.learner.Learner.state_dict`): trainable
                    weights, optimiser, schedule, batch sampler, ...
``rng``             Python ``random``, NumPy's global RNG, torch CPU (and CUDA) RNG states
``reporter``        the reporter's undelivered records (``None`` for reporters without state)
==================  ================================================================================

Everything needed to continue bit-exactly is in it; frozen weights are not (see
:func:`checkpoint_weights`). Writes are atomic (:func:`save_checkpoint`).
"""

from __future__ import annotations

import hashlib
import shutil
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainers.util import replace_dir

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
FORMAT = 2


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path/state.pt`` atomically: into ``path.tmp`` first, then swapped in with
    :func:`trainers.util.replace_dir`, the previous checkpoint kept as ``path.old`` until the swap is
    done. A kill between the two renames leaves only ``path.old``, which :func:`latest_checkpoint`
    then returns."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / STATE_FILE)
    replace_dir(tmp, path, keep_old=path.name + ".old")


def latest_checkpoint(path: Path) -> Path | None:
    """The ``state.pt`` to resume from: ``path/state.pt``, else ``path.old/state.pt`` (left by a kill in
    the middle of :func:`save_checkpoint`), else ``None``."""
    path = Path(path)
    for d in (path, path.with_name(path.name + ".old")):
        if (d / STATE_FILE).exists():
            return d / STATE_FILE
    return None


def rng_state() -> dict:
    """The global RNG states: Python ``random``, NumPy, torch CPU and every CUDA device."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global RNG and torch (CPU and CUDA). The official LaMo code seeds
    only torch (``experiment-d4rl/experiment.py``); seeding all three makes trials repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- weights ----------------------------------------------------------------------------------------
def _is_frozen(v: torch.Tensor) -> bool:
    return isinstance(v, torch.nn.Parameter) and not v.requires_grad


def checkpoint_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The part of ``model.state_dict()`` a checkpoint stores: trainable parameters and buffers. Frozen
    parameters (the LM under LoRA or ``frozen``: ~99 % of GPT-2 small, ~500 MB in fp32) are rebuilt on
    resume from the same LM directory / seed and checked with :func:`frozen_fingerprint`."""
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items() if not _is_frozen(v)}


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


def load_checkpoint_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], where: Path,
                            saved_fingerprint: dict[str, str] | None,
                            fingerprint: dict[str, str] | None = None) -> None:
    """Load a checkpoint's ``weights`` (:func:`checkpoint_weights`) into ``model``, built as for training.

    Args:
        saved_fingerprint: the :func:`frozen_fingerprint` stored with the weights (``None``: unchecked).
        fingerprint: the model's own fingerprint if the caller has it already (else computed here).

    Raises:
        ValueError: the frozen parameters differ from the checkpoint's (LM directory changed) or the
            checkpoint lacks trainable weights / has unexpected ones.
    """
    if saved_fingerprint is not None:
        now = frozen_fingerprint(model) if fingerprint is None else fingerprint
        if saved_fingerprint != now:
            differ = sorted(k for k in saved_fingerprint.keys() | now.keys()
                            if saved_fingerprint.get(k) != now.get(k))
            raise ValueError(f"checkpoint {where}: the frozen language-model weights differ from those it was "
                             f"trained with ({len(differ)} tensors, e.g. {differ[0]}; was the LM directory "
                             f"replaced?); restore that LM or delete the checkpoint")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    frozen = {k for k, v in model.state_dict(keep_vars=True).items() if _is_frozen(v)}
    bad = sorted(set(missing) - frozen)
    if bad or unexpected:
        raise ValueError(f"checkpoint {where} does not match the model: missing {bad[:5]}, unexpected "
                         f"{list(unexpected)[:5]}; delete it or use a fresh workdir")


# --- the loop's own state -----------------------------------------------------------------------------
@dataclass
class LoopState:
    """What the trial loop itself carries between steps.

    Attributes:
        step: gradient steps done.
        loss_sums: per loss name (``action_loss``, ``language_loss``, ...), the sum of the per-step losses
            since the last training log; ``n`` steps went into them.
        last_eval: ``{"step": s, "metrics": {...}}`` of the latest evaluation, or ``None``.
    """

    step: int = 0
    loss_sums: dict[str, float] = field(default_factory=dict)
    n: int = 0
    last_eval: dict | None = None

    def add(self, losses: dict[str, float]) -> None:
        """Count one step's losses (floats, as the learner returns them)."""
        for k, v in losses.items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + v
        self.n += 1

    def take_means(self) -> dict[str, float]:
        """Mean of each loss since the last call, then reset the sums."""
        out = {k: v / self.n for k, v in self.loss_sums.items()}
        self.loss_sums, self.n = {}, 0
        return out

    def state_dict(self) -> dict:
        return {"loss_sums": dict(self.loss_sums), "n": self.n, "last_eval": self.last_eval}

    def load_state_dict(self, st: dict, step: int) -> None:
        self.step, self.loss_sums, self.n, self.last_eval = step, dict(st["loss_sums"]), st["n"], st["last_eval"]


class TrialCheckpoint:
    """Saves and restores the whole state of a trial (module table) from ``<workdir>/checkpoint``.

    Args:
        workdir: the trial's directory.
        config_hash / data_subset_hash: the identity a checkpoint must match to be resumed.
        learner: :class:`trainers.learner.Learner` (``state_dict`` / ``load_state_dict``).
        reporter: saved when it has ``state_dict`` / ``load_state_dict`` (undelivered metrics).
    """

    def __init__(self, workdir: Path, config_hash: str, data_subset_hash: str, learner, reporter):
        self.path = Path(workdir) / CHECKPOINT_DIR
        self.config_hash, self.data_subset_hash = config_hash, data_subset_hash
        self.learner, self.reporter = learner, reporter

    def save(self, loop: LoopState) -> Path:
        """Write the checkpoint of ``loop`` and the learner now; returns its directory."""
        rep = self.reporter.state_dict() if hasattr(self.reporter, "state_dict") else None
        save_checkpoint(self.path, {
            "format": FORMAT, "config_hash": self.config_hash, "data_subset_hash": self.data_subset_hash,
            "step": loop.step, "loop": loop.state_dict(), "learner": self.learner.state_dict(),
            "rng": rng_state(), "reporter": rep,
        })
        return self.path

    def restore(self, loop: LoopState, resume_from: Path | None = None, map_location=None) -> bool:
        """Load the latest checkpoint under ``resume_from`` (default: this trial's) into ``loop``, the
        learner, the RNGs and the reporter. Returns ``False`` when there is none.

        Raises:
            ValueError: the checkpoint belongs to another config or data subset, or has another format
                (the message says to delete it or use a fresh workdir).
        """
        where = Path(resume_from) if resume_from else self.path
        state_file = latest_checkpoint(where)
        if state_file is None:
            return False
        st = torch.load(state_file, map_location=map_location, weights_only=False)
        for key, want, what in (("format", FORMAT, "format"), ("config_hash", self.config_hash, "config"),
                                ("data_subset_hash", self.data_subset_hash, "data subset")):
            if st.get(key) != want:
                raise ValueError(f"checkpoint {where} belongs to {what} {st.get(key)!r}, not {want!r}; "
                                 f"delete it or use a fresh workdir")
        self.learner.load_state_dict(st["learner"], where=state_file)
        set_rng_state(st["rng"])
        loop.load_state_dict(st["loop"], st["step"])
        if st.get("reporter") is not None and hasattr(self.reporter, "load_state_dict"):
            self.reporter.load_state_dict(st["reporter"])
        return True
