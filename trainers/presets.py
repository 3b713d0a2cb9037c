"""Variant presets: the paper's recipes and its ablations, each as its differences from the trial
config's defaults.

The defaults of :class:`trainers.config.TrialConfig` *are* LaMo's recipe, so the ``lamo`` preset is
empty; every other preset lists only the fields it changes (a test checks that no preset restates a
default). A sweep variant may start from a preset (``variants: {dt: {preset: dt}}``). Layering, lowest
first: defaults <- preset <- the sweep's ``base`` <- the variant's own fields <- grid axes.

A field a preset sets is part of what the preset *means* (``dt`` means "no LM"): the sweep validation
refuses a ``base`` (or ``--set``) value that would silently replace it (:func:`overridden_by_base`), and
asks for it to be said in the variant instead.

Sources (docs/lamo_recipe.md, which cites the official code):

* ``lamo``: the defaults, ``experiment-d4rl/run_cotrain.sh`` (paper §4): pre-trained GPT-2, LoRA, MLP
  embeddings, language loss 0.1. ``model.lm`` is ``gpt2``; offline, set it to ``lamo-wiki-tiny``.
* ``dt``: the original Decision Transformer (Chen et al. 2021; kzl/decision-transformer
  ``gym/experiment.py`` defaults, which ``experiment-d4rl/experiment.py`` keeps when no script flag is
  given): random-init GPT-2 with 3 layers x 128, 1 head, inner 512, ReLU (the ``model.arch`` defaults),
  linear embeddings with a tanh action head, full training, no language loss, weight decay 1e-4,
  warm-up 10,000 steps, AdamW eps 1e-8 (plain AdamW, as the official code without a pre-trained LM).
  Which of these the paper's DT baseline used is not published; the DT defaults are the likeliest
  (docs/deviations.md).
* ablations (paper §5.5): ``lamo-linear`` (linear embeddings, tanh head), ``lamo-full`` (full
  fine-tuning), ``lamo-frozen`` (LM frozen, only embeddings and heads train), ``lamo-no-lm-loss``
  (lambda = 0), ``lamo-random-init`` (the LM's architecture with random weights). An ablation changes
  one thing, so ``lamo-random-init`` keeps every other LaMo setting, AdamW eps 1e-6 included, although
  the official code's path without a pre-trained LM would use eps 1e-8: the comparison then isolates
  pre-training.
* ``lamo-hopper``: the official Hopper recipe, ``experiment-d4rl/run_hopper.sh`` (srzer/LaMo-2023, added
  in the repository's last commit, 11 Apr 2024, after issue 1 reported Hopper 46 against the paper's
  74.1: https://github.com/srzer/LaMo-2023/issues/1). The script is ``run.sh`` without
  ``--mlp_embedding``: linear embeddings with the tanh action head and, like ``run.sh``, no
  ``--co_training`` (language loss off); everything else is LaMo's (pre-trained LM, LoRA, lr, wd,
  warm-up, eps). It equals ``lamo-linear`` + ``lamo-no-lm-loss``. Which recipe the paper's Hopper numbers
  used is not published; docs/deviations.md (row 14) gives the evidence.
* Atari (any preset runs on an Atari task: the task's registry ``domain`` selects the pixel model,
  :mod:`trainers.atari`; these two carry the official Atari hyperparameters):
  ``lamo-atari`` = srzer/LaMo-2023 ``experiment-atari/run.sh``: LoRA r = alpha = 32 (alpha is the default) with peft's defaults
  (dropout 0, bias frozen), lr 1e-3, weight decay 0.01, batch 128, gradient clip 1.0 (``core.py``), no
  language loss (``co_training=0``), evaluation every 200 steps with 5 episodes per target
  (``cfgs/config.yaml``). ``dt-atari`` = ``dt`` with the ``cfgs/config.yaml`` optimiser (lr 3e-4,
  weight decay 0.1, batch 128, clip 1.0, AdamW eps 1e-8 = torch's default) and GELU blocks of GPT-2's
  defaults (``GPT2Config(n_layer=3, n_head=1, n_embed=128)``: intended width 128). ``dt-atari-official``
  reproduces the official typo ``n_embed`` (GPT-2's key is ``n_embd``), which leaves the width at 768
  with GPT-2's inner size 3072 (docs/deviations.md).
"""

from __future__ import annotations

import copy

from trainers.util import did_you_mean

VARIANT_PRESETS: dict[str, dict] = {
    "lamo": {},
    "dt": {
        "model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full"},
        "language": {"weight": 0.0},
        "train": {"weight_decay": 1e-4, "warmup_steps": 10_000, "adam_eps": 1e-8},
    },
    "lamo-linear": {"model": {"embedding": "linear"}},
    "lamo-full": {"model": {"finetune": "full"}},
    "lamo-frozen": {"model": {"finetune": "frozen"}},
    "lamo-random-init": {"model": {"init": "random"}},
    "lamo-no-lm-loss": {"language": {"weight": 0.0}},
    "lamo-hopper": {"model": {"embedding": "linear"}, "language": {"weight": 0.0}},
    "lamo-atari": {
        "model": {"lora": {"rank": 32, "dropout": 0.0, "train_bias": False}},
        "language": {"weight": 0.0},
        "train": {"lr": 1e-3, "weight_decay": 0.01, "batch_size": 128, "grad_clip": 1.0},
        "eval": {"every_steps": 200, "episodes": 5},
    },
    "dt-atari": {
        "model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full",
                  "arch": {"n_inner": None, "activation": "gelu_new"}},
        "language": {"weight": 0.0},
        "train": {"lr": 3e-4, "weight_decay": 0.1, "batch_size": 128, "grad_clip": 1.0, "adam_eps": 1e-8},
        "eval": {"every_steps": 200, "episodes": 5},
    },
    "dt-atari-official": {
        "model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full",
                  "arch": {"n_embd": 768, "n_inner": None, "activation": "gelu_new"}},
        "language": {"weight": 0.0},
        "train": {"lr": 3e-4, "weight_decay": 0.1, "batch_size": 128, "grad_clip": 1.0, "adam_eps": 1e-8},
        "eval": {"every_steps": 200, "episodes": 5},
    },
}


def get_preset(name: str) -> dict:
    """A deep copy of preset ``name`` (a partial trial config).

    Raises:
        KeyError: unknown preset, with the closest name and the list of presets.
    """
    try:
        return copy.deepcopy(VARIANT_PRESETS[name])
    except KeyError:
        raise KeyError(f"unknown preset {name!r}.{did_you_mean(name, VARIANT_PRESETS)} "
                       f"Presets: {', '.join(VARIANT_PRESETS)}") from None


def leaves(d: dict, prefix: str = "") -> dict[str, object]:
    """``{"model.lm": None, ...}``: the dotted paths of a nested mapping's leaves (mappings recurse)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def overridden_by_base(preset: dict, base: dict, own: dict) -> list[tuple[str, object, object]]:
    """Fields a preset sets that ``base`` would replace with another value, and the variant's own fields
    (``own``) do not restate: ``[(dotted path, preset value, base value)]``.

    Such a mixture is refused by the sweep validation: with ``base: {model: {lm: X}}``, ``preset: dt``
    would otherwise become a randomly initialised copy of X's architecture, not the DT baseline.
    """
    mine, theirs = leaves(preset), leaves(base)
    stated = leaves(own)
    out = []
    for path, value in mine.items():
        if path in theirs and theirs[path] != value and path not in stated:
            out.append((path, value, theirs[path]))
    return out
