"""LaMo's Atari model (and the DT baseline on Atari): stacked frames in, discrete action logits out.

What it computes (srzer/LaMo-2023 ``experiment-atari/model.py``; docs/lamo_recipe.md §3.2):

* **State encoder**: the Nature-DQN CNN (Mnih et al. 2015): Conv(4->32, 8, stride 4) -> ReLU ->
  Conv(32->64, 4, 2) -> ReLU -> Conv(64->64, 3, 1) -> ReLU -> Flatten (3136) -> Linear(3136, H), on
  frames divided by 255. MLP mode appends a :class:`trainers.model.ResidualBlock` (H, H).
* **Return-to-go**: ``Linear(1, H)``; MLP mode ``ResidualBlock(1, H)``.
* **Action**: ``Embedding(n_actions, H)``; MLP mode :class:`trainers.model.ResidualBlock` with ``ids=True`` (an embedding as first
  layer, then GELU, Linear(H, H) and the skip).
* Tokens (R_t, s_t, a_t) per step; the learned timestep embedding ``Embedding(max_ep_len, H)`` is added to
  each token **before** ``embed_ln`` (LaMo's Atari order, unlike its D4RL code); GPT-2's absolute
  positions ``wpe`` are kept (the HF GPT-2 trunk adds them on Atari).
* **Head**: ``Linear(H, n_actions) -> Tanh`` in both modes (the official Atari head); its output is the
  logits of a cross-entropy at real (unpadded) steps, read at the state tokens.
* No attention mask: LaMo pads on the right, which causal attention already hides from real steps.

The LM trunk, LoRA and freezing are :class:`trainers.model.DecisionTransformer`'s (peft, ``model.lora``),
so ``model.lm``, ``model.finetune``, ``model.init`` and the presets mean the same on Atari.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainers.config import TrialConfig
from trainers.model import DecisionTransformer, ResidualBlock

FRAMES, SIZE = 4, 84


def nature_cnn(hidden: int) -> nn.Sequential:
    """Nature-DQN encoder ``(N, 4, 84, 84)`` float in [0, 1] -> ``(N, hidden)`` (module docstring)."""
    return nn.Sequential(
        nn.Conv2d(FRAMES, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, hidden),
    )


class AtariDecisionTransformer(DecisionTransformer):
    """Decision Transformer over stacked Atari frames (module docstring).

    Args:
        cfg: trial config (``model``, context length). n_actions: the game's minimal action set size.
        max_ep_len: timestep-table size (LaMo: 4096). lm_path: resolved LM location (``None``: DT).

    Raises:
        ValueError: 3 x context length exceeds the LM's positions (GPT-2's ``wpe`` is used on Atari).
    """

    keep_positions = True

    def __init__(self, cfg: TrialConfig, n_actions: int, max_ep_len: int, lm_path: str | Path | None = None):
        super().__init__(cfg, 1, n_actions, max_ep_len, lm_path)
        n_pos = getattr(self.lm.config, "n_positions", None) or getattr(self.lm.config, "max_position_embeddings", None)
        if n_pos is not None and 3 * cfg.K > n_pos:
            raise ValueError(f"context_length {cfg.K} needs {3 * cfg.K} positions but the LM has {n_pos}; "
                             f"lower context_length to {n_pos // 3} or use an LM with more positions")
        H = self.hidden
        if cfg.model.embedding == "mlp":
            self.embed_state = nn.Sequential(nature_cnn(H), ResidualBlock(H, H))
            self.embed_action = ResidualBlock(n_actions, H, ids=True)
        else:
            self.embed_state = nature_cnn(H)
            self.embed_action = nn.Embedding(n_actions, H)
        self.predict_action = nn.Sequential(nn.Linear(H, n_actions), nn.Tanh())

    def encode_states(self, states: torch.Tensor) -> torch.Tensor:
        """State embeddings before the timestep is added: ``(..., 4, 84, 84)`` uint8 -> ``(..., H)``.
        Each step's embedding depends on its own frames only, so evaluation computes it once per step."""
        lead = states.shape[:-3]
        x = states.reshape(-1, FRAMES, SIZE, SIZE).float() / 255.0
        return self.embed_state(x).reshape(*lead, self.hidden)

    def forward(self, states: torch.Tensor | None, actions: torch.Tensor, returns_to_go: torch.Tensor,
                timesteps: torch.Tensor, attention_mask: torch.Tensor | None = None,
                state_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Action logits.

        Args:
            states: ``(B, K, 4, 84, 84)`` uint8 (or float 0-255) stacked frames.
            actions: ``(B, K)`` int64 action ids (any id at the current step: it is not seen by its own
                prediction, causal attention).
            returns_to_go: ``(B, K, 1)`` raw RTG / RTG scale.
            timesteps: ``(B, K)`` int64, clipped to ``max_ep_len - 1``.
            attention_mask: ignored (right padding; kept for the learner interface).
            state_embeddings: ``(B, K, H)`` from :meth:`encode_states`, used instead of ``states``.

        Returns:
            ``(B, K, n_actions)`` logits in (-1, 1) (Tanh head), read at the state tokens.
        """
        B, K = actions.shape
        t = self.embed_timestep(timesteps.clamp(0, self.max_ep_len - 1))
        s = (self.encode_states(states) if state_embeddings is None else state_embeddings) + t
        a = self.embed_action(actions) + t
        r = self.embed_return(returns_to_go) + t
        tokens = self.embed_ln(torch.stack((r, s, a), dim=2).reshape(B, 3 * K, self.hidden))
        h = self.trunk(inputs_embeds=tokens).last_hidden_state
        return self.predict_action(h.reshape(B, K, 3, self.hidden)[:, :, 1])
