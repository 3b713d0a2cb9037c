"""Model shapes, token layout, fine-tuning modes and trainable shares (GPT-2 built from configs, no download)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from trainers.config import TrialConfig
from trainers.presets import get_preset
from trainers.model import DecisionTransformer, ResidualBlock, trainable_share


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    GPT2LMHeadModel(GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4)).save_pretrained(d)
    return str(d)


def batch(B=3, K=5, obs=12, act=2):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(B, K)
    mask[0, :2] = 0  # left padding
    return (torch.randn(B, K, obs, generator=g), torch.randn(B, K, act, generator=g),
            torch.randn(B, K, 1, generator=g), torch.randint(0, 100, (B, K), generator=g), mask)


def lamo_cfg(lm, **model):
    m = dict(lm=lm, init="pretrained", embedding="mlp", finetune="lora")
    m.update(model)
    return TrialConfig(task="reacher2d-medium", model=m, language={"weight": 0.1})


@pytest.mark.parametrize("variant", ["lamo", "dt"])
def test_forward_shapes_both_variants(tiny_lm_dir, variant):
    if variant == "lamo":
        cfg = lamo_cfg(tiny_lm_dir)
        m = DecisionTransformer(cfg, 12, 2, 100, tiny_lm_dir)
        assert isinstance(m.embed_state, ResidualBlock)
        assert not isinstance(m.predict_action[-1], torch.nn.Tanh)
    else:
        cfg = TrialConfig(task="reacher2d-medium", **get_preset("dt"))
        m = DecisionTransformer(cfg, 12, 2, 100)
        assert isinstance(m.embed_state, torch.nn.Linear) and isinstance(m.predict_action[-1], torch.nn.Tanh)
    out = m(*batch())
    assert out.shape == (3, 5, 2) and torch.isfinite(out).all()
    if variant == "dt":
        assert out.abs().max() <= 1.0  # tanh head
    if variant == "lamo":
        ids = torch.randint(0, 97, (2, 16))
        loss = m.language_loss(ids)
        assert loss.ndim == 0 and 2.0 < loss.item() < 10.0  # ~ln(97) = 4.6 for an untrained LM


def test_action_read_at_state_token_is_causal(tiny_lm_dir):
    """The action prediction of step t must not see a_t (it is read at s_t, before a_t)."""
    m = DecisionTransformer(lamo_cfg(tiny_lm_dir), 12, 2, 100, tiny_lm_dir).eval()
    s, a, r, t, mask = batch()
    base = m(s, a, r, t, mask)
    a2 = a.clone()
    a2[:, -1] += 5.0  # change only the last action
    out = m(s, a2, r, t, mask)
    assert torch.allclose(base, out, atol=1e-5)
    s2 = s.clone()
    s2[:, -1] += 1.0  # changing the last state changes the last prediction
    assert not torch.allclose(m(s2, a, r, t, mask)[:, -1], base[:, -1])


def test_padding_is_masked(tiny_lm_dir):
    m = DecisionTransformer(lamo_cfg(tiny_lm_dir), 12, 2, 100, tiny_lm_dir).eval()
    s, a, r, t, mask = batch()
    s2 = s.clone()
    s2[0, :2] = 123.0  # garbage in padded positions of sample 0
    assert torch.allclose(m(s, a, r, t, mask)[0, 2:], m(s2, a, r, t, mask)[0, 2:], atol=1e-5)


def test_gpt2_positions_are_removed(tiny_lm_dir):
    m = DecisionTransformer(lamo_cfg(tiny_lm_dir), 12, 2, 100, tiny_lm_dir)
    assert float(m.trunk.wpe.weight.abs().sum()) == 0.0 and not m.trunk.wpe.weight.requires_grad


def test_finetune_modes_freeze_what_the_spec_says(tiny_lm_dir):
    lora = DecisionTransformer(lamo_cfg(tiny_lm_dir), 12, 2, 100, tiny_lm_dir)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert any(n.endswith("c_attn.base_layer.bias") for n in trainable)  # loralib bias='lora_only'
    assert not any(n.endswith("c_attn.base_layer.weight") for n in trainable)
    for frozen in ("wte", "ln_1", "ln_f", "mlp.c_fc", "attn.c_proj", "wpe"):
        assert not any(frozen in n for n in trainable), frozen
    for dt_side in ("embed_return", "embed_state", "embed_action", "embed_timestep", "embed_ln", "predict_action"):
        assert any(n.startswith(dt_side) for n in trainable), dt_side
    frozen = DecisionTransformer(lamo_cfg(tiny_lm_dir, finetune="frozen"), 12, 2, 100, tiny_lm_dir)
    assert trainable_share(frozen).backbone_trainable == 0 and trainable_share(frozen).trainable > 0
    full = DecisionTransformer(lamo_cfg(tiny_lm_dir, finetune="full"), 12, 2, 100, tiny_lm_dir)
    c = trainable_share(full)
    assert c.backbone_trainable == c.backbone_total - full.trunk.wpe.weight.numel()


def test_random_init_keeps_architecture_but_not_weights(tiny_lm_dir):
    pre = DecisionTransformer(lamo_cfg(tiny_lm_dir, finetune="full"), 12, 2, 100, tiny_lm_dir)
    rnd = DecisionTransformer(lamo_cfg(tiny_lm_dir, finetune="full", init="random"), 12, 2, 100, tiny_lm_dir)
    assert trainable_share(pre).total == trainable_share(rnd).total
    assert not torch.equal(pre.trunk.h[0].attn.c_attn.weight, rnd.trunk.h[0].attn.c_attn.weight)


def test_gpt2_small_lora_share():
    """GPT-2 small from its config: peft's one rank-16 pair on the fused c_attn + its bias.

    The paper's 0.73 % (912,384 / 125,324,544) comes from loralib's per-slice pairs; peft gives
    12 * (16*768 + 2304*16) + 12 * 2304 = 617,472 trainable of 124,439,808 + 589,824 (see trainers.model).
    """
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        GPT2Config().save_pretrained(d)  # architecture only; counts do not depend on the weights
        m = DecisionTransformer(lamo_cfg(d, init="random"), 11, 3, 1000, d)
    c = trainable_share(m)
    assert c.backbone_trainable == 12 * (16 * 768 + 2304 * 16) + 12 * 2304 == 617_472
    assert c.backbone_total == 124_439_808 + 12 * (16 * 768 + 2304 * 16)
    assert 0.0049 < c.backbone_share < 0.0050


def test_n_blocks_truncates(tiny_lm_dir):
    m = DecisionTransformer(lamo_cfg(tiny_lm_dir, n_blocks=1), 12, 2, 100, tiny_lm_dir)
    assert len(m.trunk.h) == 1
    assert m(*batch()).shape == (3, 5, 2)
