"""``train.precision`` (issue #20 §4): config, hash and logged params; the autocast / grad-scaler helper;
the fused language loss and the sequence learner's step under bf16 autocast on CPU."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from trainers.config import TrialConfig
from trainers.contract import flatten
from trainers.model import DecisionTransformer
from trainers.precision import MixedPrecision


def test_fp32_default_keeps_hash_and_params_and_bf16_changes_them():
    base = TrialConfig(task="reacher2d-medium")
    explicit = TrialConfig(task="reacher2d-medium", train={"precision": "fp32"})
    assert base.train.precision == "fp32"
    assert "precision" not in base.record()["train"] and "train.precision" not in flatten(base.record())
    assert explicit.config_hash() == base.config_hash()
    bf16 = TrialConfig(task="reacher2d-medium", train={"precision": "bf16"})
    assert bf16.config_hash() != base.config_hash()
    assert flatten(bf16.record())["train.precision"] == "bf16"  # logged as a param
    assert TrialConfig.model_validate(bf16.record()) == bf16  # the record round-trips


@pytest.mark.parametrize("kw, field", [
    (dict(train={"precision": "fp16"}, device="cpu"), "fp16"),
    (dict(train={"precision": "bf16"}, model={"lm": None, "init": "random"}, language={"weight": 0},
          baseline={"algo": "bc"}), "baseline"),
    (dict(train={"precision": "fp8"}), "precision"),
])
def test_bad_precision_is_refused_with_the_fix(kw, field):
    with pytest.raises(ValueError, match="precision") as e:
        TrialConfig(task="hopper-medium", **kw)
    assert field in str(e.value)


def test_fp16_needs_cuda_and_unknown_precision_is_named():
    with pytest.raises(ValueError, match="train.precision 'fp16' needs a CUDA device.*bf16"):
        MixedPrecision("fp16", "cpu")
    with pytest.raises(ValueError, match="train.precision 'half' is unknown"):
        MixedPrecision("half", "cpu")
    assert MixedPrecision("bf16", "cpu").scaler is None and MixedPrecision("fp32", "cpu").state_dict() is None


def test_fp32_step_is_the_plain_step():
    """fp32: the helper's step is exactly zero_grad -> backward -> clip -> AdamW (bit-identical weights)."""
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(16, 5)
    oa, ob = torch.optim.AdamW(a.parameters(), lr=0.1), torch.optim.AdamW(b.parameters(), lr=0.1)
    amp = MixedPrecision("fp32", "cpu")
    for _ in range(3):
        with amp.autocast():
            la = (a(x) ** 2).mean()
        amp.step(la, oa, list(a.parameters()), 0.25)
        ob.zero_grad()
        (b(x) ** 2).mean().backward()
        torch.nn.utils.clip_grad_norm_(list(b.parameters()), 0.25)
        ob.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(GPT2Config(vocab_size=3001, n_positions=128, n_embd=64, n_layer=2, n_head=4)).save_pretrained(d)
    return d


def test_fused_language_loss_runs_in_bf16_and_matches_fp32(gpt2_dir, monkeypatch):
    cfg = TrialConfig(task="reacher2d-medium", language={"weight": 0.1},
                      model=dict(lm=str(gpt2_dir), lora={"rank": 4, "alpha": 8, "dropout": 0.0}))
    m = DecisionTransformer(cfg, 12, 2, 100, gpt2_dir).eval()
    torch.manual_seed(1)
    for n, p in m.lm.named_parameters():  # LoRA's B starts at 0: make the adapters carry gradient
        if "lora_B" in n:
            p.data.normal_(0, 0.05)
    ids = torch.randint(0, 3001, (2, 64), generator=torch.Generator().manual_seed(0))
    seen = []
    real = torch.nn.functional.linear_cross_entropy

    def spy(inp, weight, *a, **k):
        seen.append((inp.dtype, weight.dtype))
        return real(inp, weight, *a, **k)

    monkeypatch.setattr(torch.nn.functional, "linear_cross_entropy", spy)

    def loss_and_grads(precision):
        m.zero_grad(set_to_none=True)
        with MixedPrecision(precision, "cpu").autocast():
            loss = m.language_loss(ids)
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}

    l32, g32 = loss_and_grads("fp32")
    l16, g16 = loss_and_grads("bf16")
    assert seen == [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16)]
    assert l16.dtype == torch.float32 and l16.item() != l32.item()  # it really ran at lower precision ...
    assert l16.item() == pytest.approx(l32.item(), rel=1e-2)  # ... and stays close (ln 3001 = 8.0 nats)
    assert g16.keys() == g32.keys() and any("lora_B" in n for n in g16)
    for n in g32:
        assert g16[n].dtype == torch.float32, n  # gradients land on the fp32 weights
        cos = torch.nn.functional.cosine_similarity(g16[n].flatten(), g32[n].flatten(), dim=0)
        assert cos > 0.98, (n, cos)


def test_sequence_learner_bf16_step(tiny_inputs):
    """The trainer's own step at bf16: the model's matmuls run in bf16, weights and optimiser stay fp32,
    the step learns (LoRA B leaves zero, the action loss falls on a repeated batch)."""
    from trainers.methods import make_learner

    data, lm = tiny_inputs
    c = TrialConfig(task="reacher2d-medium", seed=0, device="cpu",
                    model={"lm": str(lm), "lora": {"rank": 4, "alpha": 8}},
                    language={"weight": 0.1, "block_size": 32, "batch_size": 2},
                    train={"steps": 6, "batch_size": 8, "warmup_steps": 1, "lr": 1e-2, "precision": "bf16"})
    learner = make_learner(c, data)
    dtypes = []
    learner.parts.model.embed_state.fc1.register_forward_hook(lambda mod, i, o: dtypes.append(o.dtype))
    losses = [learner.train_step() for _ in range(6)]
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in learner.parts.model.parameters())
    assert all(v == v and abs(v) < 1e3 for out in losses for v in out.values())  # finite
    assert "language_loss" in losses[0]
    assert any(p.abs().sum() > 0 for n, p in learner.parts.model.named_parameters() if "lora_B" in n)
    assert "grad_scaler" not in learner.state_dict()  # bf16 needs no loss scaling: checkpoint unchanged


def test_scaled_step_clips_true_gradients_and_round_trips():
    """The fp16 path's step (scale -> backward -> unscale -> clip -> step -> update), exercised with a CPU
    GradScaler: with power-of-two scales and no overflow it moves the weights exactly as the plain step,
    so clipping sees true (unscaled) gradients; the scaler state survives a checkpoint round trip."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(16, 5)
    oa, ob = torch.optim.AdamW(a.parameters(), lr=0.1), torch.optim.AdamW(b.parameters(), lr=0.1)
    scaled, plain = MixedPrecision("fp32", "cpu"), MixedPrecision("fp32", "cpu")
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
    for _ in range(4):
        scaled.step((a(x) ** 2).mean() * 50, oa, list(a.parameters()), 0.25)  # large: the clip is active
        plain.step((b(x) ** 2).mean() * 50, ob, list(b.parameters()), 0.25)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    state = scaled.state_dict()
    assert state["scale"] == 2.0 ** 12  # grew twice (every 2 overflow-free steps)
    fresh = MixedPrecision("fp32", "cpu")
    fresh.scaler = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == 2.0 ** 12
