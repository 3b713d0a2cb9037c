"""The trial config: one typed object that describes a trial completely.

A sweep file expands into a list of these (see :mod:`orchestrator.schema`); the single-trial command
``lamo-trial`` takes one as YAML/JSON. Its canonical hash (:meth:`TrialConfig.config_hash`) is the
trial's identity in MLflow and on disk.

**The defaults are one thing: LaMo's recipe for D4RL**, as the official code runs it with
``experiment-d4rl/run_cotrain.sh`` (docs/lamo_recipe.md §1-§3): pre-trained GPT-2, LoRA r=16, alpha=32,
dropout 0.1 on the attention projection with the rest of the LM frozen, MLP embeddings, language loss
lambda = 0.1 on 2 blocks of 1,024 tokens per step; AdamW lr 1e-4, weight decay 1e-5, eps 1e-6, linear
warm-up over 2,500 steps then constant, gradient clip 0.25, dropout 0.1, batch 64, 100k steps,
evaluation every 2,500 steps with 20 episodes per RTG target. Every other recipe (the DT baseline, the
ablations) is a *preset* that lists only its differences from these defaults (:mod:`trainers.presets`).
Per-task settings (context length, RTG scale and targets, normalisation) live in :mod:`trainers.tasks`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trainers.baseline_settings import (  # noqa: F401 - re-exported: the settings classes
    BASELINE_SETTINGS, DISCRETE_BASELINES, BaselineSettings, NoBaseline, settings_union)
from trainers.config_base import LATER, StrictModel, is_later, later, omit_later_at_default  # noqa: F401
from trainers.contract import flatten  # noqa: F401 - re-exported: the params of a child run
from trainers.domains.base import domain_of
from trainers.tasks import get_task

# The strict base model and the config hash's one rule (:func:`later`) live in :mod:`trainers.config_base`
# (so that sections defined in their own module use them too); re-exported here.
_Strict = StrictModel
_omit_later_at_default = omit_later_at_default


class ArchConfig(_Strict):
    """GPT-2 shape of the backbone when there is no LM (``model.lm: null``), randomly initialised.

    Defaults: the original Decision Transformer's, which LaMo's DT baseline keeps: ``GPT2Config(n_embd=128,
    n_layer=3, n_head=1, n_inner=4*128, activation_function="relu")`` (kzl/decision-transformer
    ``gym/experiment.py`` and ``srzer/LaMo-2023:experiment-d4rl/experiment.py`` argument defaults;
    docs/lamo_recipe.md §1).
    """

    n_layer: int = Field(3, ge=1)
    n_embd: int = Field(128, ge=8)
    n_head: int = Field(1, ge=1)
    n_inner: int | None = Field(512, ge=8)
    activation: str = "relu"

    @model_validator(mode="after")
    def _heads_divide(self) -> "ArchConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class LoraSettings(_Strict):
    """LoRA hyperparameters: r = 16, alpha = 32, dropout 0.1 on the fused Q/K/V projection (paper §4.2 and
    ``experiment-d4rl/decision_transformer/models/trajectory_gpt2_LoRA.py``; docs/lamo_recipe.md §1).

    ``target_modules=None`` picks the attention projections per architecture
    (:func:`trainers.model.default_lora_targets`).
    """

    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] | None = None
    train_bias: bool = Field(
        True, description="train the bias of the adapted projection (loralib bias='lora_only', as LaMo)"
    )


class ModelConfig(_Strict):
    """Backbone, embeddings and fine-tuning mode.

    Attributes:
        lm: the pre-trained causal LM: a Hugging Face hub id (default ``"gpt2"``, the paper's), a local
            directory, or the name of an LM this project pre-trains itself (``"lamo-wiki-tiny"``, see
            :mod:`trainers.lm.pretrain`). ``None`` builds a GPT-2 from :attr:`arch` (DT); :attr:`arch`
            is used only then, and setting it next to an ``lm`` is refused (it would be ignored).
        init: ``pretrained`` loads the LM's weights; ``random`` keeps its architecture with fresh
            weights (the paper's "random initialisation" ablation).
        embedding: ``mlp`` (LaMo's residual two-layer blocks, action head without tanh) or ``linear``
            (DT's linear projections, action head with tanh).
        finetune: ``lora`` (backbone frozen, LoRA on attention), ``full`` or ``frozen`` (only
            embeddings and heads train).
        n_blocks: keep only the first n transformer blocks of the LM (``None`` = all).
        dropout: residual/attention/embedding dropout of the backbone (probability); the two fields
            below override its attention and embedding parts.
        attn_dropout: dropout on the attention weights (GPT-2 ``attn_pdrop``); ``None`` = :attr:`dropout`.
        embd_dropout: dropout on the input token embeddings (GPT-2 ``embd_pdrop``); ``None`` =
            :attr:`dropout`. Wiki-RL (github.com/machelreid/can-wikipedia-help-offline-rl
            ``code/experiment.py`` and ``decision_transformer/models/decision_transformer.py``) sets
            residual dropout from ``--dropout`` (0.2 in ``run.sh``), attention dropout to 0.1 and keeps the
            pre-trained config's embedding dropout (GPT-2: 0.1).
        tied_action_head: with ``embedding: linear``, predict actions as ``tanh(h @ W_a)`` where ``W_a``
            ``(H, act_dim)`` is the action embedding's weight (``embed_action.weight``), i.e. the action
            embedding transposed, without bias and without weights of its own (Wiki-RL's
            ``--share_input_output_proj``, passed by every command of its ``code/run.sh``).
        extend_positions: initialise the timestep embedding ``(max_ep_len, H)`` from the pre-trained LM's
            absolute position table ``wpe`` (extended by repetition beyond its length,
            :func:`trainers.alignment.extend_positions`) instead of at random: Wiki-RL's
            ``--extend_positions`` (``run.sh``). GPT-2-family LMs only; the trunk still adds no positions.
        The four fields above are left out of the logged / hashed config while at their defaults
        (:meth:`TrialConfig.record`), so configs written before they existed keep their hash.
    """

    lm: str | None = "gpt2"
    init: Literal["pretrained", "random"] = "pretrained"
    arch: ArchConfig = Field(default_factory=ArchConfig)
    embedding: Literal["mlp", "linear"] = "mlp"
    finetune: Literal["lora", "full", "frozen"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    n_blocks: int | None = Field(None, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    attn_dropout: float | None = later(None, ge=0, lt=1)
    embd_dropout: float | None = later(None, ge=0, lt=1)
    tied_action_head: bool = later(False)
    extend_positions: bool = later(False)

    @property
    def dropouts(self) -> tuple[float, float, float]:
        """``(residual, attention, embedding)`` dropout probabilities actually used."""
        attn = self.dropout if self.attn_dropout is None else self.attn_dropout
        embd = self.dropout if self.embd_dropout is None else self.embd_dropout
        return self.dropout, attn, embd

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
        if self.tied_action_head and self.embedding != "linear":
            raise ValueError("model.tied_action_head ties the action head to the linear action embedding; "
                             f"it needs model.embedding: linear (got {self.embedding!r}), or set "
                             "tied_action_head: false")
        if self.lm is None and self.init == "pretrained":
            raise ValueError("init='pretrained' needs an `lm` (hub id, local dir or project LM name); "
                             "set model.lm, or use init: random (the DT baseline is `preset: dt`)")
        if self.lm is not None and self.arch != ArchConfig():
            raise ValueError(f"model.arch shapes the backbone only when model.lm is null, but model.lm is "
                             f"{self.lm!r} (its own architecture would be built and arch ignored); set "
                             f"model.lm: null to build from arch, or remove model.arch")
        return self


class LanguageConfig(_Strict):
    """The auxiliary language-modelling loss (paper §4, "auxiliary language prediction loss"; docs/lamo_recipe.md §2).

    ``weight`` is LaMo's ``co_lambda``: total loss = action MSE + weight * LM cross-entropy. With
    ``weight == 0`` the corpus is never loaded and no language forward pass runs.
    ``corpus`` names a text source (:mod:`trainers.lm.corpus`); ``block_size`` tokens per sequence
    (LaMo: 1024), ``batch_size`` sequences per training step (LaMo: 2).
    """

    weight: float = Field(0.1, ge=0)
    corpus: str = "wikitext-103-local"
    block_size: int = Field(1024, ge=8)
    batch_size: int = Field(2, ge=1)


class AlignmentConfig(_Strict):
    """Wiki-RL's k-means alignment loss (:mod:`trainers.alignment`; Reid et al. 2022, arXiv 2201.12122 §3.2,
    github.com/machelreid/can-wikipedia-help-offline-rl ``code/run.sh``: ``--gpt_kmeans 1000
    --gpt_kmeans_const 0.1``; schedule ``seq_trainer.py`` ``kmeans_anneal``).

    Total loss = action MSE (+ language loss) + ``weight * anneal(step) * alignment_loss``, with the
    centres a cosine k-means of the LM's token embeddings computed once when the trial is built.

    Attributes:
        weight: ``--gpt_kmeans_const`` (Wiki-RL: 0.1); 0 turns the loss off (no k-means is computed).
        clusters: ``--gpt_kmeans``, the number of k-means centres (Wiki-RL: 1,000).
        anneal_steps: the 5,000 of ``kmeans_anneal``: the weight factor falls from 0.993 to 0.5 at half of it
            and 0.0067 at it.
        form: ``code`` (the official code's per-dimension max) or ``paper`` (the paper's cosine formula);
            :func:`trainers.alignment.alignment_loss`.
        kmeans_iters: at most this many k-means rounds (``kmeans_pytorch`` runs until its tolerance 1e-4).
    """

    weight: float = Field(0.1, ge=0)
    clusters: int = Field(1000, ge=1)
    anneal_steps: int = Field(5000, ge=1)
    form: Literal["code", "paper"] = "code"
    kmeans_iters: int = Field(100, ge=1)


class TrainConfig(_Strict):
    """Optimisation (``experiment-d4rl/experiment.py`` and ``run*.sh``; docs/lamo_recipe.md §3).
    ``steps`` are gradient steps; ``log_every`` / ``checkpoint_every`` in steps.

    ``precision``: ``fp32`` (default; LaMo's D4RL trainer runs fp32, docs/lamo_recipe.md §3.2), ``bf16``
    (forward passes and losses under ``torch.autocast`` with bfloat16, CPU or CUDA) or ``fp16`` (autocast
    float16 with a gradient scaler, CUDA only); weights and optimiser state stay fp32 and evaluation runs
    fp32 (:mod:`trainers.precision`). Sequence learners only (LaMo, DT and ablations, Atari too). Left out
    of the logged / hashed config while ``fp32``, so configs from before the field keep their hash.
    """

    steps: int = Field(100_000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    adam_eps: float = Field(1e-6, gt=0)
    warmup_steps: int = Field(2500, ge=0)
    grad_clip: float = Field(0.25, gt=0)
    log_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(2500, ge=1)
    precision: Literal["fp32", "bf16", "fp16"] = later("fp32")


class EvalConfig(_Strict):
    """Evaluation cadence (docs/lamo_recipe.md §5): every ``every_steps`` gradient steps and after the last one,
    ``episodes`` episodes per RTG target. ``rtg_targets=None`` uses the task's targets (raw return).
    ``max_episode_steps=None`` uses the task's ``max_ep_len``."""

    every_steps: int = Field(2500, ge=1)
    episodes: int = Field(20, ge=1)
    rtg_targets: list[float] | None = None
    max_episode_steps: int | None = Field(None, ge=1)


class DataConfig(_Strict):
    """Which dataset a trial trains on (see :mod:`trainers.data.loaders`).

    ``source``: ``default`` (the task's: D4RL for MuJoCo, collected for Reacher2d), ``d4rl`` (D4RL-layout
    HDF5: ``path`` or ``<data_dir>/d4rl/<name>.hdf5``), ``collected`` (D4RL-style data this project rolls
    out from the task's behaviour policies: ``<data_dir>/datasets/<name>.hdf5``), ``minari`` (a local
    Minari dataset, ``minari_id`` or the task's), or ``pickle`` (the DT/LaMo trajectory pickle at
    ``path``; loading a pickle runs code, so it needs ``allow_pickle: true``).
    """

    source: Literal["default", "d4rl", "collected", "minari", "pickle"] = "default"
    path: str | None = None
    minari_id: str | None = None
    allow_pickle: bool = False

    @model_validator(mode="after")
    def _pickle_opt_in(self) -> "DataConfig":
        if self.source == "pickle":
            if not self.path:
                raise ValueError("data.source 'pickle' needs data.path (the trajectory pickle file)")
            if not self.allow_pickle:
                raise ValueError("loading a pickle runs code from the file: set data.allow_pickle: true "
                                 "only for files you trust, or convert it to D4RL-layout HDF5")
        return self


#: The ``baseline`` section's type: each d3rlpy method's settings as one typed class, a pydantic union
#: discriminated on ``algo`` (:mod:`trainers.baseline_settings`: ``algo: none`` = :class:`NoBaseline`, a
#: sequence model; ``cql`` = :class:`CQLSettings`, ``iql``, ``td3bc``, ``bc``, ``discrete_cql``,
#: ``discrete_bc``). Another method's field is refused, naming both methods; the section serializes in the
#: flat layout trials were first hashed with (the module's docstring).
BaselineConfig = settings_union()
#: Per ``baseline.algo``, the settings other than the general ``hidden_units`` / ``reward_scale`` /
#: ``actor_cosine_schedule`` (derived from the settings classes; kept for callers of the former table).
BASELINE_FIELDS: dict[str, tuple[str, ...]] = {
    algo: tuple(f for f in cls.settings() if f not in ("hidden_units", "reward_scale", "actor_cosine_schedule"))
    for algo, cls in BASELINE_SETTINGS.items() if algo != "none"}


class AtariSettings(_Strict):
    """Atari-only training settings (tasks whose registry ``domain`` is ``atari``; :mod:`trainers.domains.atari`).

    The learning-rate schedule is DT-Atari's token-based one, which LaMo keeps (srzer/LaMo-2023
    ``experiment-atari/core.py`` ``CustomLRScheduler``, after minGPT's trainer, github.com/karpathy/minGPT):
    linear warm-up over ``warmup_tokens`` trained tokens, then cosine decay to ``final_tokens`` with a
    floor of 0.1 x lr. Defaults: LaMo's ``cfgs/config.yaml`` (375e6, 260e9).

    Attributes:
        lr_schedule: ``tokens`` (default): the token count is the number of real (unpadded) action targets
            trained on so far, the intended count. ``tokens-official``: the official code's behaviour: each
            step adds the *cumulative* count of non-zero action ids to the scheduler's running total, so
            the effective count grows quadratically (warm-up ends after a few hundred steps;
            docs/deviations.md).
        warmup_tokens / final_tokens: in tokens (action targets).
        eval_env: the env evaluation runs in (:func:`trainers.domains.atari.env.make_atari_eval_env`):
            ``d4rl-atari`` (default): LaMo's, d4rl-atari's ``AtariEnv`` defaults (no sticky actions, 1-30
            no-op starts, frame stack filled with the first frame; LaMo ``experiment-atari/core.py``);
            ``dopamine``: the data-collection env (sticky actions 0.25, no no-op starts, zero padding).
            Left out of the canonical JSON while at its default, so existing trials keep their hash.
    """

    lr_schedule: Literal["tokens", "tokens-official"] = "tokens"
    warmup_tokens: float = Field(375e6, ge=0)
    final_tokens: float = Field(260e9, gt=0)
    eval_env: Literal["d4rl-atari", "dopamine"] = later("d4rl-atari")


class TrialConfig(_Strict):
    """A fully described trial.

    Attributes:
        task: registry name (:data:`trainers.tasks.TASKS`).
        sample_ratio: fraction of whole trajectories kept, in (0, 1] (paper §5 and Appendix B; docs/lamo_recipe.md §4).
        seed: seeds torch, NumPy, Python ``random``, the data subset and the evaluation envs.
        variant: the sweep's label for this model/training recipe (``lamo``, ``dt``, ...).
        context_length: K; ``None`` = the task's (20 MuJoCo, 5 Reacher2d).
        rtg_scale: ``None`` = the task's.
        device: ``auto`` picks CUDA when available.
        baseline: a d3rlpy baseline's settings, one typed class per algorithm discriminated on ``algo``
            (:data:`BaselineConfig`, :mod:`trainers.baseline_settings`), or ``algo: none`` (the default,
            :class:`~trainers.baseline_settings.NoBaseline`: a sequence model, LaMo, DT, ablations). A
            :func:`later` field.
        atari: Atari-only settings (:class:`AtariSettings`); ``None`` = its defaults. A :func:`later` field.

        alignment: Wiki-RL's k-means alignment loss (:class:`AlignmentConfig`); ``None`` (the default) = none.
            A :func:`later` field.

    Fields added after trials were first hashed are :func:`later` fields: left out of the logged and hashed
    record while at their default, so adding one changes no existing trial's identity.
    """

    task: str
    sample_ratio: float = Field(1.0, gt=0, le=1)
    seed: int = Field(0, ge=0)
    variant: str = "custom"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    context_length: int | None = Field(None, ge=1)
    rtg_scale: float | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    atari: AtariSettings | None = later(None)
    baseline: BaselineConfig = later(default_factory=NoBaseline)
    alignment: AlignmentConfig | None = later(None)

    @model_validator(mode="after")
    def _wiki_rl_options_fit(self) -> "TrialConfig":
        discrete = domain_of(self.task).discrete_actions
        if self.alignment is not None and self.alignment.weight > 0:
            if self.model.lm is None:
                raise ValueError("alignment (Wiki-RL's k-means alignment loss) clusters the LM's token "
                                 "embeddings and needs model.lm; set model.lm, or remove alignment")
            if discrete or self.baseline.algo != "none":
                raise ValueError("alignment applies to the sequence model on vector-state tasks only; remove "
                                 "alignment for tasks with discrete actions (Atari) and d3rlpy baselines")
        if discrete and (self.model.tied_action_head or self.model.extend_positions):
            raise ValueError("model.tied_action_head / model.extend_positions apply to the vector-state "
                             "model (continuous actions); set them false for Atari tasks")
        if self.model.extend_positions and self.model.lm is None:
            raise ValueError("model.extend_positions copies the pre-trained LM's position table and needs "
                             "model.lm; set model.lm, or extend_positions: false")
        return self

    @model_validator(mode="after")
    def _baseline_has_no_lm(self) -> "TrialConfig":
        if self.baseline.algo != "none" and self.model.lm is not None:
            raise ValueError(f"baseline.algo {self.baseline.algo!r} trains a d3rlpy MLP policy, not a language "
                             f"model, but model.lm is {self.model.lm!r}; set model.lm: null (the presets "
                             f"cql/iql/td3bc/bc do), or remove baseline")
        return self

    @model_validator(mode="after")
    def _baseline_fits_action_space(self) -> "TrialConfig":
        algo = self.baseline.algo
        if algo == "none":
            return self
        discrete = domain_of(self.task).discrete_actions
        if discrete and not self.baseline.discrete_actions:
            raise ValueError(f"baseline.algo {algo!r} is d3rlpy's continuous-action algorithm, but task "
                             f"{self.task!r} has discrete actions; use {' or '.join(DISCRETE_BASELINES)} (the "
                             f"presets cql and bc choose them on such tasks)")
        if not discrete and self.baseline.discrete_actions:
            continuous = [a for a, c in BASELINE_SETTINGS.items() if a != "none" and not c.discrete_actions]
            raise ValueError(f"baseline.algo {algo!r} is for discrete actions (Atari tasks), but task "
                             f"{self.task!r} has continuous actions; use {', '.join(continuous[:-1])} or {continuous[-1]}")
        return self

    @model_validator(mode="after")
    def _precision_fits(self) -> "TrialConfig":
        p = self.train.precision
        if p != "fp32" and self.baseline.algo != "none":
            raise ValueError(f"train.precision {p!r} applies to the sequence learners (LaMo, DT); d3rlpy "
                             f"baseline {self.baseline.algo!r} trains in fp32: remove train.precision")
        if p == "fp16" and self.device == "cpu":
            raise ValueError("train.precision 'fp16' needs CUDA (loss scaling with torch.amp.GradScaler), "
                             "but device is 'cpu'; use train.precision: bf16 on a CPU")
        return self

    @model_validator(mode="after")
    def _language_needs_lm(self) -> "TrialConfig":
        if self.language.weight > 0 and self.model.lm is None:
            raise ValueError("language.weight > 0 needs a language model with a tokenizer (model.lm); "
                             "set language.weight: 0 for a model without an LM (the DT baseline is `preset: dt`)")
        return self

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        try:
            get_task(v)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        return v

    # --- resolved views -------------------------------------------------------------------------
    @property
    def task_spec(self):
        return get_task(self.task)

    @property
    def data_source(self) -> str:
        """The dataset source actually used: ``collected``, ``d4rl``, ``minari`` or ``pickle``."""
        if self.data.source != "default":
            return self.data.source
        return "collected" if self.task_spec.dataset.kind == "collected" else "d4rl"

    @property
    def K(self) -> int:
        """Context length actually used."""
        return self.context_length or self.task_spec.context_length

    @property
    def scale(self) -> float:
        """RTG scale actually used."""
        return self.rtg_scale or self.task_spec.rtg_scale

    @property
    def targets(self) -> list[float]:
        """Evaluation RTG targets actually used (raw return units)."""
        return list(self.eval.rtg_targets or self.task_spec.rtg_targets)

    # --- identity -------------------------------------------------------------------------------
    @property
    def language_loss_on(self) -> bool:
        """Whether the trial trains with LaMo's auxiliary language loss: ``language.weight > 0`` (with an
        LM, which the validation requires for a positive weight)."""
        return self.language.weight > 0 and self.model.lm is not None

    def canonical_json(self) -> str:
        """Sorted, compact JSON of :meth:`record`: the input of :meth:`config_hash`."""
        return json.dumps(self.record(), sort_keys=True, separators=(",", ":"))

    def record(self) -> dict:
        """The config as logged and hashed: ``model_dump(mode="json")`` (defaults included) without the
        :func:`later` fields that are at their default (one rule, so trials from before a field existed
        keep their hash and params)."""
        return _omit_later_at_default(self, self.model_dump(mode="json"))

    def config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of :meth:`canonical_json`: the trial's identity."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def slug(self) -> str:
        """A readable, deterministic trial name, e.g. ``reacher2d-medium_r0.1_lamo_s0``."""
        return f"{self.task}_r{self.sample_ratio:g}_{self.variant}_s{self.seed}"
