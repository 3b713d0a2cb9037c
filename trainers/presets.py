"""Variant presets: the paper's model/training recipes and its ablations, in one place.

A sweep variant may start from a preset (``variants: {lamo: {preset: lamo, model: {lm: gpt2}}}``).
Layering, lowest first: :class:`trainers.config.TrialConfig` defaults (LaMo's D4RL hyperparameters)
<- preset <- the sweep's ``base`` <- the variant's own overrides <- grid axes. Task-specific settings
(context length, RTG scale and targets, normalisation) live in :mod:`trainers.tasks`.

Sources (``../shared/docs/lamo_spec.md``):

* ``lamo``: §1.2, §1.3, §2, §3.1 and ``run_cotrain.sh``: pre-trained LM, MLP embeddings, LoRA r=16,
  alpha=32, dropout 0.1 on Q/K/V with the rest frozen, language loss lambda 0.1 on 1024-token blocks x 2.
  ``model.lm`` defaults to ``gpt2`` (the paper's backbone); offline, set it to ``lamo-wiki-tiny``.
* ``dt``: §1.1 and §3.1 "defaults when no script is used" (the original DT): random-init GPT-2 with 3
  layers x 128, 1 head, inner 512, ReLU, linear embeddings with a tanh action head, full training, no
  language loss, weight decay 1e-4, warmup 10,000, AdamW eps 1e-8. Which of these the paper's DT baseline
  used is not stated (Appendix E unavailable); the DT defaults are the likeliest (spec §3.1).
* ablations (§5.5 of the paper, spec §8): ``lamo-linear`` (linear embeddings, tanh head),
  ``lamo-full`` (full fine-tuning), ``lamo-frozen`` (LM frozen, only embeddings/heads train),
  ``lamo-random-init`` (same architecture, random weights), ``lamo-no-lm-loss`` (lambda = 0).
"""

from __future__ import annotations

import copy
import difflib

from trainers.config import TrialConfig

_LAMO = {
    "model": {"lm": "gpt2", "init": "pretrained", "embedding": "mlp", "finetune": "lora", "dropout": 0.1,
              "lora": {"rank": 16, "alpha": 32.0, "dropout": 0.1, "train_bias": True}},
    "language": {"weight": 0.1, "block_size": 1024, "batch_size": 2},
}


def _lamo(**changes) -> dict:
    p = copy.deepcopy(_LAMO)
    for section, values in changes.items():
        p[section].update(values)
    return p


VARIANT_PRESETS: dict[str, dict] = {
    "lamo": _lamo(),
    "dt": {
        "model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full", "dropout": 0.1,
                  "arch": {"n_layer": 3, "n_embd": 128, "n_head": 1, "n_inner": 512, "activation": "relu"}},
        "language": {"weight": 0.0},
        "train": {"weight_decay": 1e-4, "warmup_steps": 10_000, "adam_eps": 1e-8},
    },
    "lamo-linear": _lamo(model={"embedding": "linear"}),
    "lamo-full": _lamo(model={"finetune": "full"}),
    "lamo-frozen": _lamo(model={"finetune": "frozen"}),
    "lamo-random-init": _lamo(model={"init": "random"}),
    "lamo-no-lm-loss": _lamo(language={"weight": 0.0}),
}


def get_preset(name: str) -> dict:
    """A deep copy of preset ``name`` (a partial trial config).

    Raises:
        KeyError: unknown preset, with the closest name and the list of presets.
    """
    try:
        return copy.deepcopy(VARIANT_PRESETS[name])
    except KeyError:
        close = difflib.get_close_matches(name, VARIANT_PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown preset {name!r}.{hint} Presets: {', '.join(VARIANT_PRESETS)}") from None


def _validate_presets() -> None:
    for name, p in VARIANT_PRESETS.items():
        TrialConfig.model_validate({"task": "hopper-medium", **p})  # raises if a preset drifts from the schema


_validate_presets()
