"""The Atari domain's part of the one sequence learner: LaMo / DT on stacked frames with discrete actions.

:class:`AtariHooks` is what :class:`trainers.learner.SequenceLearner` takes from the Atari domain
(:meth:`trainers.domains.atari.AtariDomain.sequence_hooks`), so every preset (``lamo``, ``dt``, the
ablations, ``lamo-atari``, ``dt-atari``) runs on an Atari task unchanged.

Per step (srzer/LaMo-2023 ``experiment-atari/core.py``; docs/lamo_recipe.md §3.2): a batch of K-step
windows (:class:`trainers.domains.atari.data.AtariBatchSampler`), cross-entropy of the action logits at the real
(unpadded) steps, plus ``language.weight`` x the LM loss when on; AdamW; global-norm clipping at
``train.grad_clip``; the token-based learning-rate schedule (:class:`TokenLR`).
Evaluation (:func:`evaluate_atari`): greedy (argmax) actions, return-to-go = target - return so far.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from trainers.evaluate import eval_mode, run_episodes
from trainers.domains.atari.model import AtariDecisionTransformer
from trainers.config import AtariSettings, TrialConfig
from trainers.domains.atari.data import AtariBatchSampler, AtariSubset
from trainers.tasks import TaskSpec


def token_lr_multiplier(tokens: float, warmup_tokens: float, final_tokens: float) -> float:
    """DT-Atari / minGPT schedule (srzer/LaMo-2023 ``experiment-atari/core.py`` ``CustomLRScheduler``;
    github.com/karpathy/minGPT ``trainer.py``): ``tokens / warmup`` during warm-up, then
    ``max(0.1, 0.5 (1 + cos(pi * progress)))`` with ``progress = (tokens - warmup) / (final - warmup)``."""
    if tokens < warmup_tokens:
        return float(tokens) / float(max(1.0, warmup_tokens))
    progress = float(tokens - warmup_tokens) / float(max(1.0, final_tokens - warmup_tokens))
    return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


class TokenLR:
    """The token-based schedule as a resumable object over an optimiser.

    ``mode="tokens"`` (intended): the count grows by the real action targets of each batch.
    ``mode="tokens-official"``: the official behaviour: ``cumulative += (actions > 0).sum()`` and the
    scheduler's own total grows by ``cumulative`` every step (so quadratically; docs/deviations.md).
    The first step runs at multiplier 0, as the official scheduler (its count starts at 0).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, settings: AtariSettings):
        self.opt, self.s = optimizer, settings
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.tokens, self.cumulative = 0.0, 0.0
        self._apply()

    def _apply(self) -> None:
        m = token_lr_multiplier(self.tokens, self.s.warmup_tokens, self.s.final_tokens)
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = b * m

    def step(self, actions: torch.Tensor, mask: torch.Tensor) -> None:
        """Advance after an optimiser step: ``actions`` ``(B, K)`` ids, ``mask`` ``(B, K)`` real steps."""
        if self.s.lr_schedule == "tokens":
            self.tokens += float(mask.sum())
        else:
            self.cumulative += float((actions > 0).sum())
            self.tokens += self.cumulative
        self._apply()

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"tokens": self.tokens, "cumulative": self.cumulative, "base": self.base}

    def load_state_dict(self, st: dict) -> None:
        self.tokens, self.cumulative, self.base = st["tokens"], st["cumulative"], list(st["base"])
        self._apply()


def action_loss(logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of ``logits`` ``(B, K, A)`` against ``actions`` ``(B, K)`` over the real
    steps only (``mask`` ``(B, K)``, nonzero = real), as ``experiment-atari/core.py``
    (``F.cross_entropy(logits[mask], actions[mask])``)."""
    m = mask.bool()
    return F.cross_entropy(logits[m], actions[m])


class _FrameContext:
    """The Atari model's side of :func:`evaluate_atari` (a :class:`trainers.evaluate.RolloutPolicy`): the
    last ``min(t + 1, K)`` steps (no padding), absolute timesteps clipped to ``max_ep_len - 1``, RTG
    ``(target - return so far) / rtg_scale``, argmax action; each step's state embedding (the CNN) is
    computed once, when its frames arrive, and kept while the step is in the window."""

    def __init__(self, model: AtariDecisionTransformer, task: TaskSpec, targets: list[float], episodes: int,
                 context_length: int, rtg_scale: float, device):
        self.model, self.K, self.rtg_scale, self.device = model, context_length, rtg_scale, device
        self.max_ep_len = task.max_ep_len
        self.target = np.array([targets[i // episodes] for i in range(len(targets) * episodes)], np.float64)

    def start(self, obs: np.ndarray, horizon: int) -> None:
        n, K = len(obs), self.K
        self.acts = np.zeros((n, K), np.int64)  # the last K steps of each episode, newest last (rolling windows)
        self.rtg = np.zeros((n, K), np.float32)
        self.emb = torch.zeros(n, K, self.model.hidden, device=self.device)
        self.emb[:, -1] = self.model.encode_states(torch.from_numpy(obs).to(self.device))

    def act(self, t: int, active: np.ndarray, obs: np.ndarray, returns: np.ndarray) -> list[int]:
        K, dev = self.K, self.device
        L = min(t + 1, K)
        self.rtg[active, -1] = (self.target[active] - returns) / self.rtg_scale
        ts = np.minimum(np.arange(t + 1 - L, t + 1), self.max_ep_len - 1)[None].repeat(len(active), 0)
        idx = torch.from_numpy(active).to(dev)
        logits = self.model(None, torch.from_numpy(self.acts[active, K - L:]).to(dev),
                            torch.from_numpy(self.rtg[active, K - L:, None]).to(dev), torch.from_numpy(ts).to(dev),
                            state_embeddings=self.emb[idx, K - L:])[:, -1]
        a = logits.argmax(-1).cpu().numpy()
        self.acts[active, -1] = a
        return [int(x) for x in a]

    def observe(self, t: int, active: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        idx = torch.from_numpy(active).to(self.device)
        self.acts[active] = np.roll(self.acts[active], -1, axis=1)
        self.rtg[active] = np.roll(self.rtg[active], -1, axis=1)
        self.acts[active, -1] = 0
        self.emb[idx] = torch.roll(self.emb[idx], -1, dims=1)
        self.emb[idx, -1] = self.model.encode_states(torch.from_numpy(obs).to(self.device))


@torch.no_grad()
def evaluate_atari(model: AtariDecisionTransformer, task: TaskSpec, targets: list[float], episodes: int,
                   context_length: int, rtg_scale: float, seed: int, max_episode_steps: int | None = None,
                   device: str | torch.device = "cpu", eval_env: str = "d4rl-atari") -> dict[str, float]:
    """Roll out ``len(targets) * episodes`` episodes in parallel (one batched forward per step), with the
    one rollout loop :func:`trainers.evaluate.run_episodes`.

    As LaMo's ``eval`` (``experiment-atari/core.py``): all episodes start together, the model sees the last
    ``min(t + 1, K)`` steps (no padding), timesteps are absolute (clipped to ``max_ep_len - 1``), the RTG
    is ``(target - return so far) / rtg_scale``, the action is the argmax of the logits, and an episode runs
    until the game ends, the env's cap or ``max_episode_steps`` (default ``task.max_ep_len``, LaMo's
    ``max_timestep``). Episode i of each target is reset with seed ``seed * 100_003 + i``. Each step's
    state embedding (the CNN) is computed once and reused while the step is in the context window.
    The envs are :func:`trainers.domains.atari.env.make_atari_eval_env` with ``eval_env`` (``atari.eval_env``;
    default ``d4rl-atari``, LaMo's evaluation env: no sticky actions, no-op starts, first-frame stacking,
    raw rewards, so targets and returns are game scores).

    Returns:
        the contract's keys: per target ``return_mean``/``return_std``/``length_mean`` (raw) and
        ``normalised_score`` (gamer-normalised of the mean return), ``eval/best_normalised_score``,
        ``eval/episodes_per_s``.
    """
    from trainers.domains.atari.env import game_of, make_atari_eval_env

    policy = _FrameContext(model, task, targets, episodes, context_length, rtg_scale, device)
    with eval_mode(model):
        return run_episodes(policy, task, targets, episodes, seed, max_episode_steps,
                            make=lambda: make_atari_eval_env(game_of(task.env_id), eval_env))


class _TokenSchedule:
    """:class:`TokenLR` behind the :class:`trainers.learner.Schedule` interface: each step counts the
    batch's action targets (``actions`` ``(B, K)``, real steps ``attention_mask`` ``(B, K)``)."""

    def __init__(self, lr: TokenLR):
        self.tokens = lr

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        self.tokens.step(batch["actions"], batch["attention_mask"].bool())

    def lr(self) -> float:
        return self.tokens.lr()

    def state_dict(self) -> dict:
        return self.tokens.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.tokens.load_state_dict(state)


class AtariHooks:
    """The Atari domain's part of the sequence learner (:class:`trainers.learner.SequenceHooks`; module
    docstring): :class:`AtariDecisionTransformer` (Nature-DQN CNN state encoder, action-id embedding and
    logits head), :class:`trainers.domains.atari.data.AtariBatchSampler` (frames stacked per batch),
    cross-entropy of the action logits (:func:`action_loss`), the token-based schedule (:class:`TokenLR`)
    and :func:`evaluate_atari`."""

    def model(self, cfg: TrialConfig, lm_path: str | None) -> AtariDecisionTransformer:
        task = cfg.task_spec
        return AtariDecisionTransformer(cfg, task.act_dim, task.max_ep_len, lm_path)

    def sampler(self, data: AtariSubset, cfg: TrialConfig) -> AtariBatchSampler:
        return AtariBatchSampler(data, cfg.K, cfg.scale, cfg.task_spec.max_ep_len, seed=cfg.seed)

    def schedule(self, optimizer: torch.optim.Optimizer, cfg: TrialConfig) -> _TokenSchedule:
        return _TokenSchedule(TokenLR(optimizer, cfg.atari or AtariSettings()))

    def losses(self, model: AtariDecisionTransformer, batch: dict[str, torch.Tensor], cfg: TrialConfig,
               schedule) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy (nats) of the action logits at the real steps (:func:`action_loss`)."""
        logits = model(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"])
        ce = action_loss(logits, batch["actions"], batch["attention_mask"].bool())
        return ce, {"action_loss": ce}

    def rollout(self, model: AtariDecisionTransformer, cfg: TrialConfig, data: AtariSubset,
                device: torch.device) -> dict[str, float]:
        return evaluate_atari(model, cfg.task_spec, cfg.targets, cfg.eval.episodes, cfg.K, cfg.scale,
                              seed=cfg.seed, max_episode_steps=cfg.eval.max_episode_steps, device=device,
                              eval_env=(cfg.atari or AtariSettings()).eval_env)
