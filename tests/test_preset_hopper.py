"""The official Hopper recipe (``lamo-hopper``, LaMo ``experiment-d4rl/run_hopper.sh``) as a preset."""

from __future__ import annotations

from trainers.config import TrialConfig
from trainers.presets import VARIANT_PRESETS, get_preset, leaves


def test_lamo_hopper_is_run_sh_without_mlp_embedding():
    """``run_hopper.sh`` = ``run.sh`` minus ``--mlp_embedding``: linear embeddings, no language loss,
    every other field LaMo's default (so its config differs from ``lamo`` in exactly these two)."""
    preset = get_preset("lamo-hopper")
    assert leaves(preset) == {"model.embedding": "linear", "language.weight": 0.0}
    base = leaves(TrialConfig(task="hopper-medium").model_dump())
    hop = leaves(TrialConfig.model_validate({"task": "hopper-medium", **preset}).model_dump())
    changed = {k for k in base if base[k] != hop[k]}
    assert changed == {"model.embedding", "language.weight"}
    # the pre-trained LM and LoRA stay (unlike the DT baseline)
    assert hop["model.init"] == "pretrained" and hop["model.finetune"] == base["model.finetune"]


def test_lamo_hopper_is_the_two_ablations_combined():
    combined = leaves(VARIANT_PRESETS["lamo-linear"]) | leaves(VARIANT_PRESETS["lamo-no-lm-loss"])
    assert leaves(VARIANT_PRESETS["lamo-hopper"]) == combined
