"""Do the pre-trained SmolLM2-135M weights reach a LaMo trial intact? (issue #20 §2)

Checked on the real packaged LM (``model.lm: smollm2-135m``, :mod:`trainers.lm.packaged`), built the way a
trial builds it (:class:`trainers.model.DecisionTransformer` from the name, LoRA on q/k/v, MLP embeddings):

1. the frozen weights equal the GGUF file's tensors de-quantised by the ``gguf`` package itself (not by
   transformers, which made the checkpoint);
2. before any RL step (LoRA's B at zero) the first k blocks, and all 30, give exactly the LM's own
   next-token loss on held-out text (the tail of WikiText-103 validation): a ``LlamaForCausalLM`` loaded
   by transformers with ``num_hidden_layers=k``, i.e. the same k blocks + final RMSNorm + tied head;
3. RMSNorm eps, rotary base (theta), head_dim and the attention scale of the loaded blocks are the GGUF
   file's (``llama.attention.layer_norm_rms_epsilon``, ``llama.rope.freq_base``, ``llama.rope.dimension_count``);
4. what trains is LaMo's rule (srzer/LaMo-2023 ``experiment-d4rl/experiment.py``:
   ``lora.mark_only_lora_as_trainable(model, bias='lora_only')`` then every parameter whose name contains
   ``embed`` or ``predict``): LoRA A/B + the DT-side embeddings, ``embed_ln`` and the action head, counted
   from the shapes;
5. the scale of the token embeddings the DT side feeds the blocks vs the scale of the LM's own hidden
   states on text (printed; the numbers are in docs/benchmarks.md, "Pre-trained LM fidelity").

Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from trainers.config import TrialConfig
from trainers.inputs import lm_location
from trainers.lm.corpus import find_text, load_token_blocks
from trainers.lm.packaged import materialise, package_dir, PACKAGED_LMS
from trainers.model import DecisionTransformer, trainable_share
from trainers.tasks import get_task

pytestmark = pytest.mark.slow(reason="unpacks the 135M-parameter SmolLM2 GGUF (~20-70 s) and runs it")

LM = "smollm2-135m"
_TASK = get_task("reacher2d-medium")
OBS, ACT, MAX_EP = _TASK.obs_dim, _TASK.act_dim, _TASK.max_ep_len  # 12, 2, 100


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    materialise(LM, d / "models" / LM)
    return d


@pytest.fixture(scope="module")
def gguf():
    from gguf import GGUFReader

    return GGUFReader(str(package_dir(LM) / PACKAGED_LMS[LM].gguf_file))


def gguf_field(reader, key):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def heldout(data_dir):
    if find_text() is None:
        pytest.skip("no WikiText-103 text (offline mirror or $LAMO_TEXT_DIR): the held-out text is missing")
    tok = AutoTokenizer.from_pretrained(lm_location(LM, data_dir))
    return torch.from_numpy(load_token_blocks("wikitext-103-local-heldout", tok, 256)[:2].astype(np.int64))


def trial_model(data_dir, n_blocks=None, init="pretrained") -> DecisionTransformer:
    """The trial's model for LaMo on SmolLM2 (defaults: LoRA r 16 on q/k/v, MLP embeddings), in eval mode."""
    cfg = TrialConfig(task="reacher2d-medium", model={"lm": LM, "n_blocks": n_blocks, "init": init})
    torch.manual_seed(0)
    return DecisionTransformer(cfg, OBS, ACT, MAX_EP, lm_location(LM, data_dir)).eval()


def test_frozen_weights_are_the_gguf_tensors(data_dir, gguf):
    from gguf.quants import dequantize

    m = trial_model(data_dir, n_blocks=2)
    trunk = m.trunk
    ours = {"token_embd.weight": trunk.embed_tokens.weight, "output_norm.weight": trunk.norm.weight,
            "blk.0.attn_norm.weight": trunk.layers[0].input_layernorm.weight,
            "blk.1.ffn_norm.weight": trunk.layers[1].post_attention_layernorm.weight,
            "blk.1.ffn_down.weight": trunk.layers[1].mlp.down_proj.weight,
            "blk.0.attn_v.weight": trunk.layers[0].self_attn.v_proj.base_layer.weight,  # under LoRA
            "blk.1.attn_output.weight": trunk.layers[1].self_attn.o_proj.weight}
    found = {t.name: t for t in gguf.tensors if t.name in ours}
    assert found.keys() == ours.keys()
    for name, t in found.items():
        want = torch.from_numpy(dequantize(t.data, t.tensor_type).reshape(ours[name].shape).copy())
        assert torch.equal(ours[name].detach(), want), name
    assert m.lm.get_output_embeddings().weight is trunk.embed_tokens.weight  # tied head (tie_word_embeddings)


@pytest.mark.parametrize("n_blocks", [2, 8, None])
def test_loaded_blocks_give_the_lms_own_next_token_loss(data_dir, heldout, n_blocks):
    m = trial_model(data_dir, n_blocks)
    lora_b = [p for n, p in m.lm.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b)  # before any RL step
    k = n_blocks or 30
    ref = LlamaForCausalLM.from_pretrained(lm_location(LM, data_dir), num_hidden_layers=k).eval()
    assert len(ref.model.layers) == len(m.trunk.layers) == k
    with torch.no_grad():
        want = ref(input_ids=heldout, labels=heldout).loss.item()
        fused = m.language_loss(heldout).item()  # the trial's path (chunked head + cross-entropy)
        plain = m.language_loss(heldout, chunk_rows=None).item()  # through peft's wrapper and labels
        rand = trial_model(data_dir, n_blocks, init="random").language_loss(heldout).item()
    print(f"\n[fidelity] SmolLM2 first {k} blocks, held-out WikiText-103 ({heldout.numel()} tokens): "
          f"trial {fused:.4f}, LM's own {want:.4f} nats/token (ppl {math.exp(want):.0f}); random init {rand:.3f}")
    assert fused == pytest.approx(want, abs=2e-4) and plain == pytest.approx(want, abs=2e-5)
    assert rand > math.log(49152) - 1.0  # random weights: near-uniform over the 49,152 tokens
    if n_blocks is None:
        assert want < 4.0 < rand - 5  # the whole LM predicts English text


def test_block_settings_are_the_checkpoints(data_dir, gguf):
    eps = float(gguf_field(gguf, "llama.attention.layer_norm_rms_epsilon"))
    theta = float(gguf_field(gguf, "llama.rope.freq_base"))
    head_dim = int(gguf_field(gguf, "llama.rope.dimension_count"))
    n_head, n_kv = int(gguf_field(gguf, "llama.attention.head_count")), int(gguf_field(gguf, "llama.attention.head_count_kv"))
    assert int(gguf_field(gguf, "llama.embedding_length")) == n_head * head_dim
    m = trial_model(data_dir, n_blocks=4)
    norms = [m.trunk.norm] + [getattr(b, n) for b in m.trunk.layers for n in ("input_layernorm", "post_attention_layernorm")]
    assert all(n.variance_epsilon == pytest.approx(eps, rel=1e-6) for n in norms)
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    torch.testing.assert_close(m.trunk.rotary_emb.inv_freq.double(), inv_freq, rtol=1e-6, atol=0)
    for b in m.trunk.layers:
        att = b.self_attn
        assert att.head_dim == head_dim and att.scaling == head_dim ** -0.5 and att.is_causal
        assert att.num_key_value_groups == n_head // n_kv
        assert att.q_proj.base_layer.out_features == n_head * head_dim
        assert att.k_proj.base_layer.out_features == n_kv * head_dim
    print(f"\n[fidelity] RMSNorm eps {eps:g}, rope theta {theta:g}, head_dim {head_dim} (scale {head_dim ** -0.5}), "
          f"{n_head} heads / {n_kv} kv heads: equal to the GGUF metadata")


@pytest.mark.parametrize("n_blocks", [2, 8])
def test_only_lora_embeddings_and_heads_train(data_dir, n_blocks):
    m = trial_model(data_dir, n_blocks)
    H, r = 576, 16
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    lamo_rule = {n for n, _ in m.named_parameters() if "lora_" in n or n.startswith(("embed_", "predict_"))}
    assert trainable == lamo_rule  # nothing else of the LM: norms, MLPs, o_proj, embed_tokens/head frozen
    lora = n_blocks * sum(r * H + out * r for out in (H, 192, 192))  # q (576 out), k and v (3 kv heads x 64)

    def res_block(i):  # trainers.model.ResidualBlock(i, H)
        return i * H + H + H * H + H

    dt_side = (res_block(1) + res_block(OBS) + res_block(ACT) + (H * H + H + H * ACT + ACT)  # action head
               + MAX_EP * H + 2 * H)  # timestep table, embed_ln
    c = trainable_share(m)
    assert c.backbone_trainable == lora and c.trainable == lora + dt_side
    print(f"\n[fidelity] first {n_blocks} blocks: trainable {c.trainable:,} = LoRA {lora:,} + DT side {dt_side:,}; "
          f"LM {c.backbone_total:,} ({100 * c.backbone_share:.3f} % trainable)")


def test_embedding_scale_of_the_dt_tokens_vs_the_lm_hidden_states(data_dir, heldout):
    """Per-token RMS of what enters block 0: the DT tokens (embed_ln + timestep table, at init, on a
    Reacher2d-like batch) against SmolLM2's own input embeddings and residual stream on held-out text."""
    k = 8
    m = trial_model(data_dir, n_blocks=k)
    g = torch.Generator().manual_seed(0)
    B, K = 16, 5
    states, actions = torch.randn(B, K, OBS, generator=g), torch.rand(B, K, ACT, generator=g) * 2 - 1
    rtg, ts = torch.rand(B, K, 1, generator=g), torch.randint(0, MAX_EP, (B, K), generator=g)
    seen = {}

    def grab(mod, args, kw):  # the residual stream as block 0 receives it
        seen.setdefault("dt", (args[0] if args else kw["hidden_states"]).detach())

    m.trunk.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        m(states, actions, rtg, ts, torch.ones(B, K))
        hs = m.lm(input_ids=heldout, output_hidden_states=True).hidden_states  # k+1: input, after each block
        direct = m.trunk.embed_tokens(heldout)

    def rms(x):
        return x.pow(2).mean(-1).sqrt().mean().item()

    dt, lm_in = rms(seen["dt"]), rms(hs[0])
    assert lm_in == pytest.approx(rms(direct), rel=1e-6)  # hidden_states[0] is the embedding lookup
    assert len(hs) == k + 1 and all(math.isfinite(rms(h)) for h in hs)
    # the DT tokens are LayerNorm output (RMS 1 per token) + the N(0, 1) timestep rows: sqrt(2) at init
    assert dt == pytest.approx(math.sqrt(2), rel=0.05)
    stream = ", ".join(f"{rms(h):.2f}" for h in hs[1:-1])
    print(f"\n[fidelity] per-token RMS entering block 0: DT tokens {dt:.3f} vs SmolLM2 token embeddings "
          f"{lm_in:.3f} ({dt / lm_in:.1f}x); residual stream after blocks 1..{k - 1}: {stream}")


def test_cost_estimate_counts_the_loaded_blocks_matrix_weights(data_dir):
    """``lamo-sweep --dry-run``'s FLOP model (``orchestrator.estimate.trunk_of``) for ``smollm2-135m`` cut
    to k blocks counts the matrix-multiply weights the trial's Llama blocks really have (LoRA excluded)."""
    from orchestrator.estimate import trunk_of

    cfg = TrialConfig(task="reacher2d-medium", model={"lm": LM, "n_blocks": 2})
    trunk = trunk_of(cfg)
    m = trial_model(data_dir, n_blocks=2)
    weights = sum(mod.weight.numel() for name, mod in m.trunk.layers.named_modules()
                  if isinstance(mod, torch.nn.Linear) and "lora_" not in name)  # base layers, not LoRA's A / B
    assert trunk.known and trunk.n_layer == 2 == len(m.trunk.layers)
    assert trunk.matmul_params == weights
