"""Training-loop properties from the spec: frozen LM weights stay bit-identical under LoRA and frozen
fine-tuning, and lambda = 0 runs no language forward pass (nor loads a corpus)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from trainers.config import TrialConfig
from trainers.model import DecisionTransformer
from trainers.checkpoint import CHECKPOINT_DIR
from trainers.train import run_trial


@pytest.fixture(scope="module")
def inputs(tiny_inputs):
    return tiny_inputs


def cfg(lm, finetune="lora", weight=0.1):
    return TrialConfig(task="reacher2d-medium", seed=0, model={"lm": str(lm), "init": "pretrained",
                       "embedding": "mlp", "finetune": finetune, "lora": {"rank": 4, "alpha": 8}},
                       language={"weight": weight, "block_size": 32, "batch_size": 2},
                       train={"steps": 8, "batch_size": 8, "warmup_steps": 1, "log_every": 4, "lr": 1e-2},
                       eval={"every_steps": 8, "episodes": 1, "max_episode_steps": 5}, device="cpu")


@pytest.mark.parametrize("finetune", ["lora", "frozen"])
def test_frozen_lm_weights_are_bit_identical_after_training(inputs, tmp_path, finetune):
    from trainers.methods import make_learner

    data, lm = inputs
    c = cfg(lm, finetune)
    learner = make_learner(c, data)  # the trainer's own learner and step (lr 1e-2: LoRA weights move)
    for _ in range(c.train.steps):
        learner.train_step()
    after = learner.parts.model.state_dict()
    fresh = DecisionTransformer(c, 12, 2, 100, str(lm)).state_dict()
    original = AutoModelForCausalLM.from_pretrained(lm).state_dict()
    frozen = [k for k in fresh if k.startswith("lm.") and "lora_" not in k and not k.endswith("c_attn.base_layer.bias")
              and not k.endswith("c_attn.bias") and "wpe" not in k]
    assert frozen
    for k in frozen:
        assert torch.equal(after[k], fresh[k]), k
    # ... and equal to the pre-trained LM's own weights
    assert torch.equal(after[[k for k in frozen if k.endswith("h.0.mlp.c_fc.weight")][0]],
                       original["transformer.h.0.mlp.c_fc.weight"])
    trained = [k for k in after if k.startswith(("embed_state", "predict_action"))]
    assert any(not torch.equal(after[k], fresh[k]) for k in trained)  # the DT side did learn
    if finetune == "lora":
        lora_b = [k for k in after if "lora_B" in k]
        assert any(after[k].abs().sum() > 0 for k in lora_b)  # LoRA B starts at 0 and moved


def test_lambda_zero_runs_no_language_forward(inputs, tmp_path, monkeypatch):
    data, lm = inputs
    calls = {"n": 0}
    real = DecisionTransformer.language_loss

    def counting(self, ids):
        calls["n"] += 1
        return real(self, ids)

    monkeypatch.setattr(DecisionTransformer, "language_loss", counting)
    run_trial(cfg(lm, weight=0.1), tmp_path / "with", data)
    assert calls["n"] == 8  # one language batch per step

    calls["n"] = 0
    import trainers.lm.corpus as corpus

    monkeypatch.setattr(corpus, "load_token_blocks", lambda *a, **k: pytest.fail("corpus loaded with lambda 0"))
    run_trial(cfg(lm, weight=0.0), tmp_path / "without", data)
    assert calls["n"] == 0


def test_the_same_trial_run_twice_gives_identical_metrics(inputs, tmp_path):
    """Determinism on one machine (the quickstart's record, ``benchmarks/quickstart_check.py``, relies on
    it): LaMo with its language loss, trained and evaluated twice from scratch in fresh work directories,
    gives bit-identical losses, learning rates and evaluation returns (timings aside)."""
    data, lm = inputs
    c = cfg(lm)
    runs = [run_trial(c, tmp_path / f"run{i}", data) for i in range(2)]
    timing = ("eval/episodes_per_s", "train/steps_per_s")
    a, b = ({k: v for k, v in r.items() if k not in timing} for r in runs)
    assert a == b and any(k.startswith("eval/rtg_") for k in a)
