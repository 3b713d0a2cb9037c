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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainers.contract import flatten  # noqa: F401 - re-exported: the params of a child run
from trainers.tasks import get_task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
        dropout: residual/attention/embedding dropout of the backbone.
    """

    lm: str | None = "gpt2"
    init: Literal["pretrained", "random"] = "pretrained"
    arch: ArchConfig = Field(default_factory=ArchConfig)
    embedding: Literal["mlp", "linear"] = "mlp"
    finetune: Literal["lora", "full", "frozen"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    n_blocks: int | None = Field(None, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
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
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


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


#: d3rlpy config fields a baseline may set, per ``baseline.algo`` (names as in d3rlpy 2.8.0's
#: ``CQLConfig``, ``IQLConfig``, ``TD3PlusBCConfig``, ``BCConfig``).
BASELINE_FIELDS: dict[str, tuple[str, ...]] = {
    "cql": ("actor_learning_rate", "critic_learning_rate", "temp_learning_rate", "alpha_learning_rate",
            "n_action_samples", "conservative_weight"),
    "iql": ("actor_learning_rate", "critic_learning_rate", "expectile", "weight_temp", "max_weight"),
    "td3bc": ("actor_learning_rate", "critic_learning_rate", "alpha", "target_smoothing_sigma",
              "target_smoothing_clip", "update_actor_interval"),
    "bc": ("learning_rate",),
    # discrete actions (Atari tasks): d3rlpy 2.8.0's DiscreteCQLConfig / DiscreteBCConfig; ``n_quantiles``
    # and ``adam_eps`` are not config fields but build its Q-function / optimiser factories
    "discrete_cql": ("learning_rate", "alpha", "target_update_interval", "n_quantiles", "adam_eps"),
    "discrete_bc": ("learning_rate", "beta", "adam_eps"),
}
#: Baseline algorithms for discrete actions (Atari tasks: registry ``domain == "atari"``); the others act
#: in continuous action spaces.
DISCRETE_BASELINES = ("discrete_cql", "discrete_bc")
#: Baseline fields added with the discrete baselines: left out of the logged / hashed config while unset,
#: so the continuous baselines' trials keep their hash.
_LATER_BASELINE_FIELDS = ("target_update_interval", "n_quantiles", "adam_eps", "beta")


class BaselineConfig(_Strict):
    """A value-based or imitation baseline trained with d3rlpy (:mod:`trainers.baselines`) instead of a
    sequence model. Set by the presets ``cql``, ``iql``, ``td3bc`` and ``bc`` (hyperparameters and their
    published sources: :mod:`trainers.presets`; on Atari tasks ``cql`` / ``bc`` mean ``cql-atari`` /
    ``bc-atari``); ``algo: none`` (the default) = a sequence model.

    Attributes:
        algo: ``none`` or the d3rlpy algorithm (``CQLConfig``, ``IQLConfig``, ``TD3PlusBCConfig``,
            ``BCConfig``; on Atari tasks ``discrete_cql`` = ``DiscreteCQLConfig``, ``discrete_bc`` =
            ``DiscreteBCConfig``, with d3rlpy's Nature-DQN ``PixelEncoderFactory`` and
            ``PixelObservationScaler``).
        hidden_units: hidden layer widths of the actor and critic MLP encoders
            (``d3rlpy.models.VectorEncoderFactory``); ``None`` = d3rlpy's default (256, 256).
        reward_scale: ``none`` (raw rewards) or ``return_range_1000`` (rewards x 1000 / (max - min
            trajectory return of the training subset): d3rlpy's ``ReturnBasedRewardScaler(multiplier=1000)``,
            as d3rlpy's IQL reproduction and the IQL paper do for locomotion) or ``clip`` (rewards clipped to
            [-1, 1], d3rlpy's ``ClipRewardScaler``, as its discrete CQL reproduction on Atari).
        actor_cosine_schedule: cosine-anneal the actor learning rate to 0 over ``train.steps``
            (``d3rlpy.optimizers.CosineAnnealingLRFactory``; d3rlpy's IQL reproduction).
        the other fields: d3rlpy config fields of the same name (learning rates per network, CQL's
            ``conservative_weight`` and ``n_action_samples``, IQL's ``expectile``, ``weight_temp``,
            ``max_weight``, TD3+BC's ``alpha``, target smoothing and actor interval; discrete CQL's
            ``alpha`` and ``target_update_interval`` (gradient steps), discrete BC's ``beta``);
            ``None`` = d3rlpy's default. ``n_quantiles``: discrete CQL's Q-function is quantile
            regression with that many quantiles (``QRQFunctionFactory``; ``None`` = d3rlpy's mean
            Q-function). ``adam_eps``: Adam's epsilon (``AdamFactory(eps=...)``; ``None`` = torch's 1e-8).
            Unset, the four fields added with the discrete baselines are left out of the logged config.
            Which apply to which algorithm: :data:`BASELINE_FIELDS`; setting another is refused.

    ``train.batch_size`` and ``train.steps`` apply; the sequence-model optimiser fields of
    :class:`TrainConfig` (``lr``, ``weight_decay``, ``adam_eps``, ``warmup_steps``, ``grad_clip``),
    ``context_length`` and ``rtg_scale`` do not.
    """

    algo: Literal["none", "cql", "iql", "td3bc", "bc", "discrete_cql", "discrete_bc"] = "none"
    hidden_units: list[int] | None = None
    reward_scale: Literal["none", "return_range_1000", "clip"] = "none"
    actor_cosine_schedule: bool = False
    learning_rate: float | None = Field(None, ge=0)
    actor_learning_rate: float | None = Field(None, ge=0)
    critic_learning_rate: float | None = Field(None, ge=0)
    temp_learning_rate: float | None = Field(None, ge=0)
    alpha_learning_rate: float | None = Field(None, ge=0)
    n_action_samples: int | None = Field(None, ge=1)
    conservative_weight: float | None = Field(None, ge=0)
    expectile: float | None = Field(None, gt=0, lt=1)
    weight_temp: float | None = Field(None, gt=0)
    max_weight: float | None = Field(None, gt=0)
    alpha: float | None = Field(None, ge=0)
    target_smoothing_sigma: float | None = Field(None, ge=0)
    target_smoothing_clip: float | None = Field(None, ge=0)
    update_actor_interval: int | None = Field(None, ge=1)
    target_update_interval: int | None = Field(None, ge=1)
    n_quantiles: int | None = Field(None, ge=1)
    adam_eps: float | None = Field(None, gt=0)
    beta: float | None = Field(None, ge=0)

    def d3rlpy_kwargs(self) -> dict[str, float | int]:
        """The set d3rlpy config fields of :attr:`algo` (:data:`BASELINE_FIELDS`), by d3rlpy's names
        (``n_quantiles`` and ``adam_eps`` build factories instead: :func:`trainers.baselines.d3rlpy_algorithm`)."""
        return {f: getattr(self, f) for f in BASELINE_FIELDS.get(self.algo, ())
                if getattr(self, f) is not None and f not in ("n_quantiles", "adam_eps")}

    @model_validator(mode="after")
    def _fields_fit_algo(self) -> "BaselineConfig":
        allowed = set(BASELINE_FIELDS.get(self.algo, ()))
        every = {f for fs in BASELINE_FIELDS.values() for f in fs}
        wrong = sorted(f for f in every - allowed if getattr(self, f) is not None)
        if wrong:
            raise ValueError(f"baseline.algo {self.algo!r} has no field(s) {wrong}; it takes "
                             f"{sorted(allowed) or 'none of them'} (remove the others)")
        if self.algo == "none" and (self.hidden_units is not None or self.reward_scale != "none"
                                    or self.actor_cosine_schedule):
            raise ValueError("baseline.hidden_units / reward_scale / actor_cosine_schedule apply only to a "
                             "baseline; set baseline.algo (or use preset cql/iql/td3bc/bc)")
        if self.algo in DISCRETE_BASELINES and (self.hidden_units is not None or self.actor_cosine_schedule
                                                or self.reward_scale == "return_range_1000"):
            raise ValueError(f"baseline.algo {self.algo!r} uses d3rlpy's pixel encoder and one optimiser: "
                             f"remove baseline.hidden_units / actor_cosine_schedule, and use reward_scale "
                             f"none or clip")
        return self


class AtariSettings(_Strict):
    """Atari-only training settings (tasks whose registry ``domain`` is ``atari``; :mod:`trainers.atari`).

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
    """

    lr_schedule: Literal["tokens", "tokens-official"] = "tokens"
    warmup_tokens: float = Field(375e6, ge=0)
    final_tokens: float = Field(260e9, gt=0)


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
        baseline: a d3rlpy baseline (:class:`BaselineConfig`), or ``algo: none`` (the default: a
            sequence model, LaMo, DT, ablations). Left out of :meth:`canonical_json` while at its
            default, so configs written before the field existed keep their hash.
        atari: Atari-only settings (:class:`AtariSettings`); ``None`` = its defaults. Left out of the
            canonical JSON while ``None``, so configs written before it existed keep their hash.
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
    atari: AtariSettings | None = None
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)

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
        atari = self.task_spec.domain == "atari"
        if atari and algo not in DISCRETE_BASELINES:
            raise ValueError(f"baseline.algo {algo!r} is d3rlpy's continuous-action algorithm, but task "
                             f"{self.task!r} is Atari (discrete actions, pixels); use discrete_cql or "
                             f"discrete_bc (the presets cql and bc choose them on Atari tasks)")
        if not atari and algo in DISCRETE_BASELINES:
            raise ValueError(f"baseline.algo {algo!r} is for Atari tasks (discrete actions, pixels), but task "
                             f"{self.task!r} has continuous actions; use cql, iql, td3bc or bc")
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
    def canonical_json(self) -> str:
        """Sorted, compact JSON of every field (defaults included; ``baseline`` only when not at its
        default, ``atari`` only when set): the input of :meth:`config_hash`."""
        return json.dumps(self.record(), sort_keys=True, separators=(",", ":"))

    def record(self) -> dict:
        """The config as logged and hashed: ``model_dump(mode="json")`` without ``baseline`` while it is
        at its default (a sequence model), without ``atari`` while it is unset and without
        ``train.precision`` while it is ``fp32``, so trials from before these fields existed keep their
        hash and params."""
        d = self.model_dump(mode="json")
        if self.baseline == BaselineConfig():
            d.pop("baseline")
        else:
            for f in _LATER_BASELINE_FIELDS:
                if d["baseline"][f] is None:
                    d["baseline"].pop(f)
        if d.get("atari") is None:
            d.pop("atari", None)
        if d["train"]["precision"] == "fp32":  # added later: absent at its default, so old hashes hold
            d["train"].pop("precision")
        return d

    def config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of :meth:`canonical_json`: the trial's identity."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def slug(self) -> str:
        """A readable, deterministic trial name, e.g. ``reacher2d-medium_r0.1_lamo_s0``."""
        return f"{self.task}_r{self.sample_ratio:g}_{self.variant}_s{self.seed}"
