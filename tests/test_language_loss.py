"""The language loss computed without the whole logits tensor (PyTorch's chunked
``linear_cross_entropy``) equals the plain loss and its gradients to float tolerance, for every
fine-tuning mode and both LM families; LMs whose head is not a plain linear map keep the plain path."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from trainers.config import TrialConfig
from trainers.model import LANGUAGE_LOSS_CHUNK_ROWS, DecisionTransformer


def _model(lm_dir, finetune: str) -> DecisionTransformer:
    cfg = TrialConfig(task="reacher2d-medium", language={"weight": 0.1},
                      model=dict(lm=str(lm_dir), init="pretrained", embedding="mlp", finetune=finetune,
                                 lora={"rank": 4, "alpha": 8, "dropout": 0.0}))
    m = DecisionTransformer(cfg, 12, 2, 100, lm_dir).eval()  # eval: no dropout, both paths see the same net
    torch.manual_seed(1)
    for n, p in m.lm.named_parameters():  # LoRA's B starts at 0: make the adapters matter
        if "lora_B" in n:
            p.data.normal_(0, 0.05)
    return m


def _loss_and_grads(m: DecisionTransformer, ids: torch.Tensor, chunk_rows):
    m.zero_grad(set_to_none=True)
    loss = m.language_loss(ids, chunk_rows=chunk_rows)
    if loss.requires_grad:  # frozen LM: the loss has no graph (the learner adds it to the action loss)
        loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(GPT2Config(vocab_size=3001, n_positions=128, n_embd=32, n_layer=2, n_head=4)).save_pretrained(d)
    return d


@pytest.mark.parametrize("finetune", ["lora", "full", "frozen"])
@pytest.mark.parametrize("chunk_rows", [7, LANGUAGE_LOSS_CHUNK_ROWS])  # 7: many chunks, a ragged last one
def test_chunked_language_loss_matches_plain_gpt2(gpt2_dir, finetune, chunk_rows):
    m = _model(gpt2_dir, finetune)
    ids = torch.randint(0, 3001, (3, 41), generator=torch.Generator().manual_seed(0))
    plain, g_plain = _loss_and_grads(m, ids, None)
    chunked, g_chunked = _loss_and_grads(m, ids, chunk_rows)
    assert torch.allclose(plain, chunked, rtol=1e-6, atol=1e-6), (plain, chunked)
    assert set(g_plain) == set(g_chunked)
    if finetune == "frozen":
        assert not g_plain and not chunked.requires_grad  # nothing on this path trains
    else:
        assert g_plain  # LoRA weights, or every LM weight (the tied head/embedding included)
    for n, g in g_plain.items():
        assert torch.allclose(g, g_chunked[n], rtol=1e-4, atol=1e-7), (n, (g - g_chunked[n]).abs().max())
    if finetune == "full":  # the tied head's gradient (head + input-embedding use) went through both paths
        assert any("wte" in n for n in g_plain)


def test_chunked_language_loss_matches_plain_llama(tmp_path):
    LlamaForCausalLM(LlamaConfig(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(tmp_path)
    m = _model(tmp_path, "lora")
    ids = torch.randint(0, 500, (2, 33), generator=torch.Generator().manual_seed(0))
    plain, g_plain = _loss_and_grads(m, ids, None)
    chunked, g_chunked = _loss_and_grads(m, ids, 16)
    assert torch.allclose(plain, chunked, rtol=1e-6, atol=1e-6)
    assert g_plain and all(torch.allclose(g, g_chunked[n], rtol=1e-4, atol=1e-7) for n, g in g_plain.items())


def test_soft_capped_head_keeps_the_plain_path(gpt2_dir, monkeypatch):
    """An LM whose logits are not ``hidden @ W.T`` (here: final-logit soft-capping declared in its config)
    must not take the fused path: the loss is the LM's own, computed through its forward."""
    m = _model(gpt2_dir, "lora")
    ids = torch.randint(0, 3001, (2, 17), generator=torch.Generator().manual_seed(0))
    calls = []
    monkeypatch.setattr(torch.nn.functional, "linear_cross_entropy",
                        lambda *a, **k: calls.append(1) or torch.tensor(0.0))
    m.language_loss(ids)
    assert calls == [1]  # a plain GPT-2 head takes the fused op
    monkeypatch.setattr(m.lm.config, "final_logit_softcapping", 30.0, raising=False)
    loss = m.language_loss(ids)
    assert calls == [1] and loss.item() > 1.0  # plain path: the real loss, the fused op not called again
