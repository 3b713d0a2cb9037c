"""LaMo's Decision Transformer on any Hugging Face causal language model.

What it computes (``docs/lamo_recipe.md`` §1; the official LaMo code, github.com/srzer/LaMo-2023
``experiment-d4rl/decision_transformer/models/decision_transformer.py``, and paper §4, arXiv 2310.20587):

* Each timestep contributes three tokens in the order (return-to-go R, state s, action a); K steps make a
  sequence of 3K token embeddings.
* Embeddings: ``linear`` (DT: ``Linear(in, H)``) or ``mlp`` (LaMo: :class:`ResidualBlock`).
* The stacked embeddings go through ``embed_ln`` (LayerNorm(H)) **first**, then the learned timestep
  embedding (``Embedding(max_ep_len, H)``, absolute env timestep, clipped to ``max_ep_len - 1``) is added
  to all three tokens of its step. (The original DT adds the timestep before the LayerNorm; LaMo after.)
* The action for step t is read from the hidden state at the state token s_t. Action head: ``linear``
  mode ``Linear(H, act_dim) + Tanh`` (with ``model.tied_action_head``, Wiki-RL's: :class:`TiedActionHead`); ``mlp`` mode ``Linear(H, H) -> GELU -> Linear(H, act_dim)`` with no
  tanh.
* GPT-2 family: the learned absolute position table ``wpe`` is zeroed and frozen, which is exactly
  LaMo's D4RL behaviour (its GPT-2 copy never adds ``wpe``, for RL tokens and language tokens alike,
  ``docs/lamo_recipe.md`` §1.1). The original DT's GPT-2 copy drops ``wpe`` as well, so the DT baseline matches too.
  Deviation: architectures with rotary positions (Llama family) cannot drop positions; they keep them.

Fine-tuning modes (``docs/lamo_recipe.md`` §1.3, paper §4.2), applied to the LM part only; the DT-side modules (embeddings, timestep
table, ``embed_ln``, heads) always train, as LaMo's ``--adapt_embed``:

* ``lora``: peft LoRA on the attention projections, everything else of the LM frozen (``wte``/LM head,
  LayerNorms, MLPs, output projections). With ``lora.train_bias`` the adapted projection's bias trains
  too (loralib ``bias='lora_only'``, as LaMo). Deviation, documented: the official code uses loralib's
  ``MergedLinear`` on GPT-2's fused ``c_attn`` with one rank-r pair *per Q, K, V slice*
  (12 x (48*768 + 2304*16) = 884,736 LoRA weights for GPT-2 small); peft puts one rank-r pair on the
  whole fused layer (12 x (16*768 + 2304*16) = 589,824). peft is the maintained library, so we use it
  (``docs/deviations.md`` row 5); :func:`trainable_share` reports the measured counts.
* ``full``: every LM weight trains (except the zeroed ``wpe``).
* ``frozen``: the whole LM is frozen; only the DT-side modules train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainers.config import ModelConfig, TrialConfig
from trainers.precision import autocast_dtype


#: Rows (predicted tokens) per chunk of the fused head + cross-entropy of the language loss
#: (:meth:`DecisionTransformer.language_loss`): 256 rows x 50,257 GPT-2 logits = 51 MB per chunk instead of
#: 412 MB for the whole 2 x 1,024-token batch. Chosen with ``benchmarks/bench_language_loss.py``
#: (docs/benchmarks.md); PyTorch's automatic pick for fp32 on CPU is 8 rows, much slower here.
LANGUAGE_LOSS_CHUNK_ROWS = 256


def fused_loss_acc_policy(device_type: str, dtype: torch.dtype) -> str:
    """``LinearCrossEntropyOptions.acc_policy`` for the fused language loss at a low-precision ``dtype``.

    ``balanced`` on a CPU with native bf16 matrix units (AMX tiles or AVX512-BF16, as this project's
    machines): measured 0.8 s against 1.3 s for ``auto`` (= ``accurate`` on CPU) and 1.8 s in fp32 for
    forward + backward of 2,046 rows x 576 -> 49,152 classes, 1 thread, same input-gradient error
    (0.25 % relative to fp32; ``benchmarks/bench_language_loss.py``, docs/benchmarks.md). Else ``auto``:
    PyTorch's own pick (``compact`` on CUDA; ``accurate`` on other CPUs, whose bf16 matmul is emulated and
    20-50x slower outside that policy, per the ``LinearCrossEntropyOptions`` docstring).
    """
    if device_type == "cpu" and dtype == torch.bfloat16 and (
            torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()):
        return "balanced"
    return "auto"


class ResidualBlock(nn.Module):
    """LaMo's MLP embedding block (LaMo ``experiment-d4rl/decision_transformer/models/utils.py``;
    ``docs/lamo_recipe.md`` §1.2).

    ``u = W1 x + b1``; ``out = W2 GELU(u) + b2 + u`` (skip from the first layer's pre-activation output).
    Input ``(..., in_dim)`` -> output ``(..., hidden)``. With ``ids=True`` the first layer is an embedding
    of ``in_dim`` ids, ``(...,)`` int64 -> ``(..., hidden)`` (LaMo ``experiment-atari/model.py``'s action
    embedding for discrete actions).
    """

    def __init__(self, in_dim: int, hidden: int, ids: bool = False):
        super().__init__()
        self.fc1 = nn.Embedding(in_dim, hidden) if ids else nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim)`` (ids: ``(...,)``) ``-> (..., hidden)``: ``fc2(GELU(fc1(x))) + fc1(x)``."""
        u = self.fc1(x)
        return self.fc2(self.act(u)) + u


class TiedActionHead(nn.Module):
    """Action head tied to the linear action embedding: ``tanh(h @ W)`` with ``W = embed.weight``
    ``(H, act_dim)``, i.e. the embedding's map transposed, no bias and no weights of its own.

    Wiki-RL's ``--share_input_output_proj`` (github.com/machelreid/can-wikipedia-help-offline-rl
    ``code/decision_transformer/models/decision_transformer.py``: ``tanh(F.linear(x, embed_action.weight.t()))``),
    passed by every command of its ``code/run.sh``. Gradients of the action loss flow into the
    embedding's weight. Input ``(..., H)`` -> output ``(..., act_dim)`` in (-1, 1).
    """

    def __init__(self, embed: nn.Linear):
        super().__init__()
        self.embed = [embed]  # a list: the embedding stays registered once, under ``embed_action``

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(..., H) -> (..., act_dim)``: ``tanh(h @ embed.weight)``."""
        return torch.tanh(torch.nn.functional.linear(h, self.embed[0].weight.t()))


def default_lora_targets(lm: nn.Module) -> list[str]:
    """LoRA target modules per architecture: GPT-2's fused ``c_attn`` (Q, K, V, as LaMo);
    ``q_proj``/``k_proj``/``v_proj`` for Llama-style models.

    Raises:
        ValueError: for an architecture without a known attention projection; set
            ``model.lora.target_modules`` explicitly then.
    """
    names = {n.rsplit(".", 1)[-1] for n, _ in lm.named_modules()}
    if "c_attn" in names:
        return ["c_attn"]
    if {"q_proj", "k_proj", "v_proj"} <= names:
        return ["q_proj", "k_proj", "v_proj"]
    raise ValueError(
        f"no known attention projection in {type(lm).__name__}; set model.lora.target_modules"
    )


def _blocks(trunk: nn.Module) -> tuple[str, nn.ModuleList]:
    for attr in ("h", "layers", "layer", "blocks"):
        mods = getattr(trunk, attr, None)
        if isinstance(mods, nn.ModuleList):
            return attr, mods
    raise ValueError(f"cannot find the transformer blocks of {type(trunk).__name__}")


def build_causal_lm(mcfg: ModelConfig, lm_path: str | Path | None, keep_positions: bool = False) -> nn.Module:
    """Build the causal LM that serves as the trunk (and LM head for the language loss).

    Args:
        mcfg: the trial's model config.
        lm_path: resolved local directory or hub id of ``mcfg.lm`` (``None`` when ``mcfg.lm`` is None).
        keep_positions: keep GPT-2's absolute position table ``wpe`` (LaMo's Atari model runs the HF GPT-2,
            which adds it, ``docs/lamo_recipe.md`` §3.2); ``False`` (D4RL) zeroes and freezes it.

    Returns:
        a ``transformers`` ``*ForCausalLM`` (fp32). Without an LM: ``GPT2LMHeadModel`` from
        :class:`~trainers.config.ArchConfig` (random init, vocabulary of 1: no text).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    resid, attn, embd = mcfg.dropouts  # all = model.dropout unless attn_dropout / embd_dropout are set
    if lm_path is None:
        a = mcfg.arch
        conf = GPT2Config(
            vocab_size=1, n_positions=1024, n_embd=a.n_embd, n_layer=a.n_layer, n_head=a.n_head,
            n_inner=a.n_inner, activation_function=a.activation,
            resid_pdrop=resid, embd_pdrop=embd, attn_pdrop=attn, bos_token_id=0, eos_token_id=0,
        )
        lm = GPT2LMHeadModel(conf)
    else:
        conf = AutoConfig.from_pretrained(lm_path)
        # GPT-2 keys; Llama-style configs have only ``attention_dropout``
        for key, p in (("resid_pdrop", resid), ("embd_pdrop", embd), ("attn_pdrop", attn),
                       ("attention_dropout", attn)):
            if hasattr(conf, key):
                setattr(conf, key, p)
        if mcfg.init == "pretrained":
            lm = AutoModelForCausalLM.from_pretrained(lm_path, config=conf, dtype=torch.float32)
        else:
            lm = AutoModelForCausalLM.from_config(conf, dtype=torch.float32)
    if mcfg.n_blocks is not None:
        attr, blocks = _blocks(lm.base_model)
        if mcfg.n_blocks > len(blocks):
            raise ValueError(f"model.n_blocks={mcfg.n_blocks} but the LM has only {len(blocks)} blocks")
        setattr(lm.base_model, attr, blocks[: mcfg.n_blocks])
        for key in ("n_layer", "num_hidden_layers"):
            if hasattr(lm.config, key):
                setattr(lm.config, key, mcfg.n_blocks)
    wpe = getattr(lm.base_model, "wpe", None)
    if isinstance(wpe, nn.Embedding) and not keep_positions:  # GPT-2 family: LaMo never adds absolute positions (lamo_recipe §1.1)
        with torch.no_grad():
            wpe.weight.zero_()
        wpe.weight.requires_grad_(False)
    return lm


class DecisionTransformer(nn.Module):
    """Decision Transformer whose trunk is a (possibly pre-trained, possibly LoRA-adapted) causal LM.

    Args:
        cfg: trial config (model, context length, ...).
        obs_dim / act_dim: state and action sizes.
        max_ep_len: size of the timestep-embedding table (env steps).
        lm_path: resolved LM location (see :func:`build_causal_lm`).

    Attributes:
        lm: the causal LM (peft-wrapped in ``lora`` mode); ``lm(input_ids=..., labels=...)`` gives the
            language-model loss through the same adapted trunk and the tied LM head.
        trunk: the LM's base model, used with ``inputs_embeds`` for RL tokens.
    """

    #: keep GPT-2's ``wpe`` (see :func:`build_causal_lm`); subclasses for other domains may set it.
    keep_positions = False

    def __init__(self, cfg: TrialConfig, obs_dim: int, act_dim: int, max_ep_len: int,
                 lm_path: str | Path | None = None):
        super().__init__()
        m = cfg.model
        self.obs_dim, self.act_dim, self.max_ep_len = obs_dim, act_dim, max_ep_len
        lm = build_causal_lm(m, lm_path, keep_positions=self.keep_positions or m.extend_positions)
        trunk = lm.base_model  # modules are modified in place by peft, so this handle stays valid
        hidden = lm.config.hidden_size
        timestep_init = None
        if m.extend_positions:  # Wiki-RL: the pre-trained position table initialises the timestep table
            wpe = getattr(trunk, "wpe", None)
            if not isinstance(wpe, nn.Embedding):
                raise ValueError(f"model.extend_positions needs an LM with a learned absolute position table "
                                 f"(GPT-2 family: wpe); {type(trunk).__name__} has none: set "
                                 f"extend_positions: false")
            from trainers.alignment import extend_positions

            timestep_init = extend_positions(wpe.weight, max_ep_len)[:max_ep_len]
            if not self.keep_positions:  # then drop it from the trunk, as build_causal_lm does
                with torch.no_grad():
                    wpe.weight.zero_()
                wpe.weight.requires_grad_(False)
        if m.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            targets = m.lora.target_modules or default_lora_targets(lm)
            lcfg = LoraConfig(
                r=m.lora.rank, lora_alpha=m.lora.alpha, lora_dropout=m.lora.dropout,
                target_modules=targets, bias="lora_only" if m.lora.train_bias else "none",
                fan_in_fan_out="c_attn" in targets,  # GPT-2 uses Conv1D (weights stored transposed)
            )
            lm = get_peft_model(lm, lcfg)
        elif m.finetune == "frozen":
            lm.requires_grad_(False)
        self.lm = lm
        self.trunk = trunk
        self.hidden = hidden

        if m.embedding == "mlp":
            self.embed_return = ResidualBlock(1, hidden)
            self.embed_state = ResidualBlock(obs_dim, hidden)
            self.embed_action = ResidualBlock(act_dim, hidden)
            self.predict_action = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, act_dim))
        else:
            self.embed_return = nn.Linear(1, hidden)
            self.embed_state = nn.Linear(obs_dim, hidden)
            self.embed_action = nn.Linear(act_dim, hidden)
            if m.tied_action_head:
                self.predict_action = TiedActionHead(self.embed_action)
            else:
                self.predict_action = nn.Sequential(nn.Linear(hidden, act_dim), nn.Tanh())
        self.embed_timestep = nn.Embedding(max_ep_len, hidden)
        if timestep_init is not None:
            with torch.no_grad():
                self.embed_timestep.weight.copy_(timestep_init)
        self.embed_ln = nn.LayerNorm(hidden)
        if cfg.alignment is not None and cfg.alignment.weight > 0:
            # Wiki-RL's k-means centres of the LM's token embeddings (trainers.alignment); filled by the
            # learner (trainers.learner.build_parts) and stored with the checkpoint, never trained
            self.register_buffer("alignment_centres", torch.zeros(cfg.alignment.clusters, hidden))

    def forward(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
                timesteps: torch.Tensor, attention_mask: torch.Tensor,
                return_tokens: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict actions.

        Args:
            states: ``(B, K, obs_dim)`` normalised states.
            actions: ``(B, K, act_dim)``.
            returns_to_go: ``(B, K, 1)`` return-to-go divided by the RTG scale.
            timesteps: ``(B, K)`` long, absolute env timesteps (clipped to ``max_ep_len - 1``).
            attention_mask: ``(B, K)``, 1 for real steps, 0 for left padding.

            return_tokens: also return the input token embeddings after ``embed_ln`` and before the
                timestep embedding, ``(B, 3K, H)`` (Wiki-RL's alignment loss reads them).

        Returns:
            ``(B, K, act_dim)`` action predictions, read at the state tokens (with ``return_tokens``: the
            pair ``(predictions, tokens)``).
        """
        B, K, _ = states.shape
        tokens = torch.stack(
            (self.embed_return(returns_to_go), self.embed_state(states), self.embed_action(actions)), dim=2
        ).reshape(B, 3 * K, self.hidden)
        normed = self.embed_ln(tokens)
        t = self.embed_timestep(timesteps.clamp(0, self.max_ep_len - 1))  # (B, K, H)
        tokens = normed + t.repeat_interleave(3, dim=1)
        mask = attention_mask.repeat_interleave(3, dim=1).to(tokens.dtype)
        h = self.trunk(inputs_embeds=tokens, attention_mask=mask).last_hidden_state
        h = h.reshape(B, K, 3, self.hidden)[:, :, 1]  # state tokens
        pred = self.predict_action(h)
        return (pred, normed) if return_tokens else pred

    def language_loss(self, input_ids: torch.Tensor,
                      chunk_rows: int | None = LANGUAGE_LOSS_CHUNK_ROWS) -> torch.Tensor:
        """Next-token cross-entropy (nats/token, mean over the ``B * (T - 1)`` predicted tokens) of
        ``input_ids`` ``(B, T)`` through the same adapted trunk and the LM's tied head
        (``docs/lamo_recipe.md`` §2; the same quantity as transformers' shifted causal-LM loss).

        With ``chunk_rows`` (the default, :data:`LANGUAGE_LOSS_CHUNK_ROWS`) the head and the
        cross-entropy are fused: ``torch.nn.functional.linear_cross_entropy`` with
        ``LinearCrossEntropyOptions(batch_chunk_size=chunk_rows)`` (PyTorch >= 2.13) takes the trunk's
        hidden states ``(B * (T - 1), H)`` and the head weight ``(V, H)`` and never materialises the
        whole ``(B * (T - 1), V)`` logits tensor (412 MB in fp32 for 2 x 1,024 tokens and GPT-2's 50,257
        tokens); its gradients are computed chunk by chunk during the forward pass. Equal to the plain
        loss to float tolerance, not bit for bit (summation order; ``tests/test_language_loss.py``).
        ``chunk_rows=None``, or an LM whose head is not a bias-free linear map of the last hidden state
        (final-logit soft-capping, a logit scale, LoRA on the head), uses the plain path: the LM's own
        forward with ``labels``.

        Under ``torch.autocast`` (``train.precision`` bf16 / fp16, :mod:`trainers.precision`) the fused op,
        which autocast leaves in the dtype of its inputs, gets the hidden states and head weight in the
        autocast dtype and accumulates in fp32 (``LinearCrossEntropyOptions.acc_dtype``'s default for
        bf16 / fp16 inputs), with the accumulation policy of :func:`fused_loss_acc_policy`. Its loss value
        comes back in the low dtype (bf16: rounded to 8 significant bits, at most 0.2 % relative) and is
        returned as fp32; the gradients are unaffected by that rounding.
        """
        head = self.lm.get_output_embeddings()
        config = self.lm.config
        plain_head = (type(head) is nn.Linear and head.bias is None
                      and getattr(config, "final_logit_softcapping", None) is None
                      and getattr(config, "logit_scale", None) is None)
        if chunk_rows is None or not plain_head:
            return self.lm(input_ids=input_ids, labels=input_ids).loss
        h = self.trunk(input_ids=input_ids).last_hidden_state  # (B, T, H)
        weight, options = head.weight, {}
        low = autocast_dtype(h.device.type)
        if low is not None:  # train.precision bf16/fp16: autocast does not cover the fused op itself
            h, weight = h.to(low), weight.to(low)
            options = {"acc_policy": fused_loss_acc_policy(h.device.type, low)}
        return torch.nn.functional.linear_cross_entropy(
            h[:, :-1].reshape(-1, h.shape[-1]), weight, input_ids[:, 1:].reshape(-1),
            options=torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk_rows, **options)).float()


@dataclass
class ParamCounts:
    """Parameter counts (numbers of scalars).

    ``backbone_*`` count the LM incl. LoRA weights (what LaMo's 0.7 % figure divides by, ``docs/lamo_recipe.md`` §1.4);
    ``total_*`` count the whole model incl. the DT-side embeddings and heads.
    """

    backbone_total: int
    backbone_trainable: int
    total: int
    trainable: int

    @property
    def backbone_share(self) -> float:
        """Trainable fraction of the LM (0-1): the quantity LaMo's ~0.7 % refers to
        (``docs/lamo_recipe.md`` §1.4)."""
        return self.backbone_trainable / self.backbone_total

    @property
    def share(self) -> float:
        """Trainable fraction of the whole model (0-1), DT-side embeddings and heads included."""
        return self.trainable / self.total


def trainable_share(model: DecisionTransformer) -> ParamCounts:
    """Count trainable vs all parameters of the LM part and of the whole model (see :class:`ParamCounts`)."""
    def count(params, trainable_only):
        return sum(p.numel() for p in params if p.requires_grad or not trainable_only)

    lm_params = list(model.lm.parameters())
    all_params = list(model.parameters())
    return ParamCounts(count(lm_params, False), count(lm_params, True), count(all_params, False),
                       count(all_params, True))
