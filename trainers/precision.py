"""Mixed-precision training of the sequence learners (``train.precision``), one helper for every learner.

``fp32`` (the default) trains in full precision, as LaMo's D4RL trainer does (its ``--fp16`` flag is not
wired into ``experiment-d4rl/trainer.py`` / ``seq_trainer.py``; docs/lamo_recipe.md §3.2). ``bf16`` runs the
forward passes (RL sequence and language loss) under ``torch.autocast`` with ``torch.bfloat16``, on CPU
(AMX-BF16 / AVX512-BF16 kernels where the CPU has them) and CUDA; the weights, gradients and AdamW state
stay fp32 (autocast casts per op; PyTorch docs "Automatic Mixed Precision package - torch.amp").
``fp16`` is ``torch.autocast("cuda", torch.float16)`` with a ``torch.amp.GradScaler`` (dynamic loss
scaling; PyTorch "CUDA Automatic Mixed Precision examples"), CUDA only: fp16's 5-bit exponent needs the
scaler, and CPU autocast has no matching scaler path here, so fp16 on CPU is refused.

Evaluation rollouts stay fp32 (the trained fp32 weights, no autocast): the switch is about training cost.

A learner keeps one :class:`MixedPrecision` and calls ``with amp.autocast():`` around its forward passes
and losses, then :meth:`MixedPrecision.step` instead of ``backward`` / clip / ``optimizer.step``.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]

#: autocast dtype per ``train.precision`` (``None``: no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """Autocast context and the backward / clip / optimiser step for one ``train.precision``.

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device: where the model runs.

    Attributes:
        dtype: the autocast dtype (``None`` for fp32).
        scaler: a ``torch.amp.GradScaler`` for fp16 (``None`` otherwise).

    Raises:
        ValueError: unknown precision, or ``fp16`` on a device other than CUDA (the message names
            ``train.precision`` and the fix).
    """

    def __init__(self, precision: str, device: torch.device | str):
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"train.precision {precision!r} is unknown; use one of {list(AUTOCAST_DTYPES)}")
        self.precision = precision
        self.device = torch.device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"train.precision 'fp16' needs a CUDA device (loss scaling with "
                             f"torch.amp.GradScaler), but the trial runs on {self.device.type!r}; "
                             f"use train.precision: bf16 on a CPU (or fp32)")
        self.dtype = AUTOCAST_DTYPES[precision]
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast(self):
        """A context manager: ``torch.autocast(device.type, dtype)`` for bf16 / fp16, a no-op for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
             grad_clip: float) -> None:
        """``zero_grad`` -> backward of ``loss`` (a scalar) -> global-norm clipping of ``params`` at
        ``grad_clip`` -> ``optimizer.step()``. With fp16, the loss is scaled before backward, the gradients
        unscaled before clipping (so the clip threshold is in true gradient units), and a step whose
        gradients overflowed is skipped by the scaler, which then lowers its scale."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict | None:
        """The grad scaler's state (fp16), else ``None`` (nothing to keep)."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        """Restore :meth:`state_dict`'s output (ignored without a scaler; a missing state keeps the fresh
        scaler's initial scale)."""
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast is running at on ``device_type`` right now, or ``None`` when it is off."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None
