"""What a learner built around one torch model has: construction, the static facts logged once, and the
learner part of the checkpoint (:class:`ModelLearner`).

:class:`trainers.learner.SequenceLearner` (LaMo, DT, Wiki-RL, the ablations, on every domain) derives from
it and adds its step, learning rate and evaluation.
"""

from __future__ import annotations

from pathlib import Path

from trainers import contract
from trainers.checkpoint import checkpoint_weights, frozen_fingerprint, load_checkpoint_weights
from trainers.config import TrialConfig
from trainers.model import trainable_share
from trainers.precision import MixedPrecision


class ModelLearner:
    """Base of the learners whose ``parts`` hold ``data``, ``model``, ``optimizer``, ``scheduler``,
    ``sampler``, ``batcher`` (``None`` without the language loss) and ``device``.

    Attributes:
        cfg: the trial config.
        parts: the built parts (:class:`trainers.learner.SequenceParts`).
        data: the trajectory subset trained on (its hash is part of the checkpoint's identity).
        fingerprint: fingerprint of the frozen weights (they never change, so computed once; frozen
            weights are rebuilt on resume, not stored, and checked against it).
        amp: ``train.precision``'s autocast context and backward / clip / optimiser step
            (:class:`trainers.precision.MixedPrecision`); a subclass's ``train_step`` runs its forward passes
            in ``with self.amp.autocast():`` and ends with ``self.amp.step(...)``.

    Raises:
        ValueError: ``train.precision`` is ``fp16`` but the model is not on CUDA.
    """

    def __init__(self, cfg: TrialConfig, parts):
        self.cfg, self.parts, self.data = cfg, parts, parts.data
        parts.model.train()  # a loaded LM comes in eval mode; training runs with dropout
        self.fingerprint = frozen_fingerprint(parts.model)
        self.amp = MixedPrecision(cfg.train.precision, parts.device)

    def info(self) -> dict[str, object]:
        """Data sizes (``data/...``), parameter counts (``params/...``, numbers of scalars), the device, and
        with a language loss the corpus size and passes over it (``language/...``,
        :func:`trainers.lm.runtime.corpus_passes`)."""
        from trainers.lm.runtime import corpus_passes

        counts = trainable_share(self.parts.model)
        batcher = self.parts.batcher
        lang = ({} if batcher is None else
                corpus_passes(len(batcher.blocks), batcher.batch_size, self.cfg.train.steps))
        return {**{f"data/{k}": v for k, v in self.data.summary().items()}, **lang,
                "params/total": counts.total, "params/trainable": counts.trainable,
                "params/backbone_trainable_share": round(counts.backbone_share, 6),
                contract.DEVICE: str(self.parts.device)}

    def state_dict(self) -> dict:
        """Trainable weights (:func:`trainers.checkpoint.checkpoint_weights`), the frozen-weight
        fingerprint, optimiser, schedule, sampler and language-batcher states (and with fp16 the gradient
        scaler's, under ``grad_scaler``)."""
        p = self.parts
        state = {"model": checkpoint_weights(p.model), "frozen_fingerprint": self.fingerprint,
                 "optimizer": p.optimizer.state_dict(), "scheduler": p.scheduler.state_dict(),
                 "sampler": p.sampler.state_dict(),
                 "language_batcher": p.batcher.state_dict() if p.batcher is not None else None}
        if self.amp.scaler is not None:
            state["grad_scaler"] = self.amp.state_dict()
        return state

    def load_state_dict(self, state: dict, where: Path) -> None:
        """Restore :meth:`state_dict`'s output (read from checkpoint directory ``where``).

        Raises:
            the errors of :func:`trainers.checkpoint.load_checkpoint_weights` (frozen weights that no
            longer match the fingerprint, missing or unexpected weights), naming ``where``.
        """
        p = self.parts
        load_checkpoint_weights(p.model, state["model"], where, state["frozen_fingerprint"], self.fingerprint)
        p.optimizer.load_state_dict(state["optimizer"])
        p.scheduler.load_state_dict(state["scheduler"])
        p.sampler.load_state_dict(state["sampler"])
        if p.batcher is not None:
            p.batcher.load_state_dict(state["language_batcher"])
        self.amp.load_state_dict(state.get("grad_scaler"))
