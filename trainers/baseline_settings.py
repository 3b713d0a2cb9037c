"""Each d3rlpy method's settings as one typed class: the ``baseline`` section of the trial config.

The section is a pydantic union discriminated on ``algo`` (:func:`settings_union`), in the spirit of d3rlpy's
one config class per algorithm (d3rlpy 2.8.0 ``d3rlpy.algos.CQLConfig``, ``IQLConfig``, ``TD3PlusBCConfig``,
``BCConfig``, ``DiscreteCQLConfig``, ``DiscreteBCConfig``; github.com/takuseno/d3rlpy ``d3rlpy/algos/qlearning/``):
``algo: cql`` is a :class:`CQLSettings`, which has CQL's fields and no other, and so on; ``algo: none`` (the
default) is :class:`NoBaseline`, a sequence model (LaMo, DT, Wiki-RL, the ablations), whose settings are the
trial config's other sections. The method registry (:data:`trainers.methods.METHODS`) names each method's
settings classes; the recipes, each value with its public source, are data in :mod:`trainers.presets`.

**A class is registered by being defined** (a subclass of :class:`BaselineSettings` with a concrete
``algo``), in :data:`BASELINE_SETTINGS`; the union is built from that registry when :mod:`trainers.config`
is imported.

**Validation.** A field of another method is refused, naming the field, the method(s) it belongs to and the
trial's method with its settings (``baseline.expectile is a setting of IQL ..., not of CQL``), before any
compute; an unknown field or ``algo`` gets the closest name.

**Serialized form (what is logged and hashed).** The section serializes flat: every setting name of every
registered method, in registry order, the trial's own fields with their values and the others at their unset
value (``None``; ``reward_scale: none``; ``actor_cosine_schedule: false``), under the config hash's one rule
(:func:`trainers.config_base.later`): a :func:`later` field at its default, the trial's own or another
method's, is left out. This is exactly the layout of the single baseline class that trials were first hashed
with, so every existing trial keeps its record and hash (``tests/test_legacy_hashes.py``), and reading a logged
record back accepts another method's field at its unset value. The same rule covers a new method: its new
setting names are :func:`later` fields (otherwise every existing baseline trial would gain the name and
change its hash, which ``tests/test_legacy_hashes.py`` would report). A dump that leaves fields out
(``exclude_defaults``, ``exclude_unset``, ``exclude_none``, ``include``, ``exclude``) leaves out the other
methods' fields too, but keeps ``algo`` under ``exclude_defaults`` / ``exclude_unset`` (a class's ``algo`` is
its default, yet without it the section would read back as ``algo: none``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, Field, SerializationInfo, model_serializer
from pydantic_core import PydanticUndefined

from trainers.config_base import StrictModel, is_later, later
from trainers.util import did_you_mean

#: The registered settings classes by ``algo``, in definition order (:class:`BaselineSettings`).
BASELINE_SETTINGS: dict[str, type[BaselineSettings]] = {}
#: ``{setting name: (unset value, is a later field)}`` over every registered class, in registry order.
_UNSET: dict[str, tuple[Any, bool]] = {}


class BaselineSettings(StrictModel):
    """Base of the methods' settings classes (module docstring): the discriminator ``algo``, the flat
    serialized form and the registry.

    Class attributes of a concrete subclass:
        label: the method's name in messages (``"CQL"``, ``"discrete CQL"``).
        about: what the class builds, in one phrase (messages and docs).
        d3rlpy_config: the name of its config class in ``d3rlpy.algos`` (``None``: no d3rlpy algorithm).
        discrete_actions: the algorithm is for discrete actions (tasks of a domain with
            ``discrete_actions``, Atari); else continuous.
        builds: fields that build a d3rlpy object (encoder, optimiser, Q-function factory, reward scaler) in
            :func:`trainers.baselines.d3rlpy_algorithm` instead of being passed to the d3rlpy config by name.
    """

    algo: str
    label: ClassVar[str] = ""
    about: ClassVar[str] = ""
    d3rlpy_config: ClassVar[str | None] = None
    discrete_actions: ClassVar[bool] = False
    builds: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        tag = cls.model_fields["algo"].default
        if tag is PydanticUndefined:  # an intermediate base (no concrete algo): not a method's settings
            return
        if tag in BASELINE_SETTINGS:
            raise TypeError(f"baseline.algo {tag!r} is registered twice ({BASELINE_SETTINGS[tag].__name__}, "
                            f"{cls.__name__})")
        for name, f in cls.model_fields.items():
            if name == "algo":
                continue
            mine = (f.get_default(call_default_factory=True), is_later(f))
            if _UNSET.setdefault(name, mine) != mine:
                raise TypeError(f"{cls.__name__}.{name}: default/later {mine} differs from another method's "
                                f"{_UNSET[name]}; a setting name means one thing in the flat record")
        BASELINE_SETTINGS[tag] = cls

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The names of this method's settings (its fields but ``algo``), in declaration order."""
        return tuple(n for n in cls.model_fields if n != "algo")

    @classmethod
    def describe(cls) -> str:
        """``"CQL (baseline.algo 'cql': d3rlpy's CQLConfig ...)"``: the method, its tag and :attr:`about`."""
        tag = cls.model_fields["algo"].default
        return f"{cls.label} (baseline.algo {tag!r}{': ' + cls.about if cls.about else ''})"

    def d3rlpy_kwargs(self) -> dict[str, float | int]:
        """The set fields passed to :attr:`d3rlpy_config` by d3rlpy's names (every field but ``algo``,
        :attr:`builds` and those at ``None`` = d3rlpy's default)."""
        return {f: getattr(self, f) for f in self.settings()
                if f not in self.builds and getattr(self, f) is not None}

    @model_serializer(mode="wrap")
    def _flat(self, handler, info: SerializationInfo) -> dict:
        out = handler(self)
        if info.exclude_defaults or info.exclude_unset:  # the tag is no default: a partial dump reads back
            out = {"algo": out["algo"] if "algo" in out else self.algo, **out}
        if (info.exclude_defaults or info.exclude_unset or info.exclude_none or info.include is not None
                or info.exclude is not None):
            return out
        flat = {"algo": out.pop("algo")}
        for name, (unset, late) in _UNSET.items():
            if name in out:
                flat[name] = out.pop(name)
            elif not late:  # another method's setting, at its unset value; a later one is left out
                flat[name] = unset
        return flat | out


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _fit_method(value: Any) -> Any:
    """Before validation of the ``baseline`` section: default ``algo`` to ``none``; drop another method's
    field given at its unset value (the flat layout of a logged record); refuse an unknown ``algo``, an
    unknown field or another method's field that is set, naming the field, the methods and the fix."""
    if not isinstance(value, dict):
        return value
    algo = value.get("algo", "none")
    cls = BASELINE_SETTINGS.get(algo) if isinstance(algo, str) else None
    if cls is None:
        raise ValueError(f"baseline.algo {algo!r} is no method's algorithm.{did_you_mean(str(algo), BASELINE_SETTINGS)} "
                         f"Choose one of: {', '.join(BASELINE_SETTINGS)} (trainers/methods.py)")
    mine = cls.settings()
    if mine:
        here = f"{cls.describe()}, whose settings are: {', '.join(mine)}"
    else:
        here = (f"{cls.describe()}, which has no baseline settings: set baseline.algo, or start the variant "
                f"from the method's preset")
    kept = {"algo": algo}
    for key, v in value.items():
        if key == "algo":
            continue
        if key in cls.model_fields:
            kept[key] = v
            continue
        if key not in _UNSET:
            raise ValueError(f"baseline.{key} is not a setting of any method.{did_you_mean(str(key), _UNSET)} "
                             f"This trial is {here}")
        unset = _UNSET[key][0]
        if type(v) is type(unset) and v == unset:
            continue  # the flat record's placeholder for another method's field
        owners = [c.label for c in BASELINE_SETTINGS.values() if key in c.model_fields]
        if mine:
            raise ValueError(f"baseline.{key} is a setting of {_and(owners)}, not of {here}. Remove "
                             f"baseline.{key}, or use the preset of the method it belongs to")
        raise ValueError(f"baseline.{key} is a setting of {_and(owners)}; this trial is {here}")
    return kept


def settings_union():
    """The ``baseline`` section's type: ``Annotated[Union[<every registered class>], discriminator "algo",
    before-validator]`` (module docstring). Raises ``TypeError`` when no class is registered."""
    members = tuple(BASELINE_SETTINGS.values())
    if not members:
        raise TypeError("no baseline settings class is registered")
    return Annotated[Union[members], Field(discriminator="algo"), BeforeValidator(_fit_method)]  # noqa: UP007


# --- the classes -----------------------------------------------------------------------------------------


class NoBaseline(BaselineSettings):
    """``algo: none`` (the default): no d3rlpy baseline. The trial is a sequence model (LaMo, DT, Wiki-RL, the
    ablations), whose settings are the trial config's ``model``, ``language``, ``train`` and ``alignment``
    sections; the ``baseline`` section has no other field and, at this default, is left out of the record."""

    algo: Literal["none"] = "none"
    label: ClassVar[str] = "a sequence model"
    about: ClassVar[str] = "no d3rlpy baseline"


class _VectorBaseline(BaselineSettings):
    """Settings every continuous-action (vector-state) d3rlpy baseline has.

    Attributes:
        hidden_units: hidden layer widths of the actor and critic MLP encoders
            (``d3rlpy.models.VectorEncoderFactory``); ``None`` = d3rlpy's default (256, 256).
        reward_scale: ``none`` (raw rewards) or ``return_range_1000`` (rewards x 1000 / (max - min trajectory
            return of the training subset): d3rlpy's ``ReturnBasedRewardScaler(multiplier=1000)``, as d3rlpy's
            IQL reproduction ``reproductions/offline/iql.py`` and the IQL paper, arXiv 2110.06169 App. B, do
            for locomotion).

    ``train.batch_size`` and ``train.steps`` apply; the sequence-model optimiser fields of ``train`` (``lr``,
    ``weight_decay``, ``adam_eps``, ``warmup_steps``, ``grad_clip``), ``context_length`` and ``rtg_scale``
    do not.
    """

    hidden_units: list[int] | None = None
    reward_scale: Literal["none", "return_range_1000"] = "none"
    builds: ClassVar[tuple[str, ...]] = ("hidden_units", "reward_scale")


class _ActorCriticBaseline(_VectorBaseline):
    """Settings of the continuous actor-critic baselines (CQL, IQL, TD3+BC).

    Attributes:
        actor_cosine_schedule: cosine-anneal the actor learning rate to 0 over ``train.steps``
            (``d3rlpy.optimizers.CosineAnnealingLRFactory``; d3rlpy's IQL reproduction).
        actor_learning_rate / critic_learning_rate: d3rlpy's fields of the same name; ``None`` = its default.
    """

    actor_cosine_schedule: bool = False
    actor_learning_rate: float | None = Field(None, ge=0)
    critic_learning_rate: float | None = Field(None, ge=0)
    builds: ClassVar[tuple[str, ...]] = ("hidden_units", "reward_scale", "actor_cosine_schedule")


class CQLSettings(_ActorCriticBaseline):
    """CQL (Kumar et al. 2020, arXiv 2006.04779) as d3rlpy 2.8.0's ``CQLConfig``. Recipe: preset ``cql``
    (:data:`trainers.presets.BASELINE_RECIPES`, d3rlpy's ``reproductions/offline/cql.py``).

    Attributes (``None`` = d3rlpy's default):
        temp_learning_rate / alpha_learning_rate: of the SAC temperature and the conservative weight
            (``alpha_learning_rate: 0`` keeps the weight fixed).
        n_action_samples: actions sampled for the log-sum-exp of the conservative term.
        conservative_weight: the conservative term's weight.
    """

    algo: Literal["cql"] = "cql"
    temp_learning_rate: float | None = Field(None, ge=0)
    alpha_learning_rate: float | None = Field(None, ge=0)
    n_action_samples: int | None = Field(None, ge=1)
    conservative_weight: float | None = Field(None, ge=0)
    label: ClassVar[str] = "CQL"
    about: ClassVar[str] = "d3rlpy's CQLConfig"
    d3rlpy_config: ClassVar[str | None] = "CQLConfig"


class IQLSettings(_ActorCriticBaseline):
    """IQL (Kostrikov et al. 2021, arXiv 2110.06169) as d3rlpy 2.8.0's ``IQLConfig``. Recipes: presets ``iql``
    (d3rlpy's ``reproductions/offline/iql.py``) and, on Kitchen, ``iql-kitchen``
    (github.com/ikostrikov/implicit_q_learning ``configs/kitchen_config.py``).

    Attributes (``None`` = d3rlpy's default):
        expectile: the value function's expectile.
        weight_temp: the inverse temperature of advantage-weighted regression.
        max_weight: the clip of the advantage weights.
        actor_dropout: dropout probability after each hidden layer of the actor's MLP
            (``VectorEncoderFactory(dropout_rate=...)`` as ``actor_encoder_factory``; ``None`` = none), as the
            IQL paper's policy on Kitchen and Adroit (``configs/kitchen_config.py`` ``dropout_rate = 0.1``;
            CORL ``algorithms/offline/iql.py`` ``actor_dropout``). Not an ``IQLConfig`` field: it builds the
            actor's encoder factory. A :func:`later` field.
    """

    algo: Literal["iql"] = "iql"
    expectile: float | None = Field(None, gt=0, lt=1)
    weight_temp: float | None = Field(None, gt=0)
    max_weight: float | None = Field(None, gt=0)
    actor_dropout: float | None = later(None, ge=0, lt=1)
    label: ClassVar[str] = "IQL"
    about: ClassVar[str] = "d3rlpy's IQLConfig"
    d3rlpy_config: ClassVar[str | None] = "IQLConfig"
    builds: ClassVar[tuple[str, ...]] = (*_ActorCriticBaseline.builds, "actor_dropout")


class TD3PlusBCSettings(_ActorCriticBaseline):
    """TD3+BC (Fujimoto & Gu 2021, arXiv 2106.06860) as d3rlpy 2.8.0's ``TD3PlusBCConfig``. Recipe: preset
    ``td3bc`` (d3rlpy's ``reproductions/offline/td3_plus_bc.py``).

    Attributes (``None`` = d3rlpy's default):
        alpha: the weight of the Q term against behaviour cloning.
        target_smoothing_sigma / target_smoothing_clip: the target policy noise and its clip.
        update_actor_interval: gradient steps between actor updates.
    """

    algo: Literal["td3bc"] = "td3bc"
    alpha: float | None = Field(None, ge=0)
    target_smoothing_sigma: float | None = Field(None, ge=0)
    target_smoothing_clip: float | None = Field(None, ge=0)
    update_actor_interval: int | None = Field(None, ge=1)
    label: ClassVar[str] = "TD3+BC"
    about: ClassVar[str] = "d3rlpy's TD3PlusBCConfig"
    d3rlpy_config: ClassVar[str | None] = "TD3PlusBCConfig"


class BCSettings(_VectorBaseline):
    """Behaviour cloning as d3rlpy 2.8.0's ``BCConfig`` (one optimiser, deterministic policy). Recipe: preset
    ``bc`` (CORL ``algorithms/offline/any_percent_bc.py``, ``configs/offline/bc/*/medium_v2.yaml``).

    Attributes:
        learning_rate: ``BCConfig.learning_rate``; ``None`` = d3rlpy's default.
    """

    algo: Literal["bc"] = "bc"
    learning_rate: float | None = Field(None, ge=0)
    label: ClassVar[str] = "BC"
    about: ClassVar[str] = "d3rlpy's BCConfig"
    d3rlpy_config: ClassVar[str | None] = "BCConfig"


class _PixelBaseline(BaselineSettings):
    """Settings every discrete-action d3rlpy baseline has (Atari tasks: d3rlpy's Nature-DQN
    ``PixelEncoderFactory`` and ``PixelObservationScaler``, one optimiser).

    Attributes:
        reward_scale: ``none`` (raw rewards) or ``clip`` (rewards clipped to [-1, 1], d3rlpy's
            ``ClipRewardScaler``, as its discrete CQL reproduction ``reproductions/offline/discrete_cql.py``).
        learning_rate: the optimiser's; ``None`` = d3rlpy's default.
        adam_eps: Adam's epsilon (``AdamFactory(eps=...)``; ``None`` = torch's 1e-8). A :func:`later` field.
    """

    reward_scale: Literal["none", "clip"] = "none"
    learning_rate: float | None = Field(None, ge=0)
    adam_eps: float | None = later(None, gt=0)
    discrete_actions: ClassVar[bool] = True
    builds: ClassVar[tuple[str, ...]] = ("reward_scale", "adam_eps")


class DiscreteCQLSettings(_PixelBaseline):
    """Discrete CQL (on a QR-DQN by default in d3rlpy's reproduction) as d3rlpy 2.8.0's ``DiscreteCQLConfig``.
    Recipe: preset ``cql-atari`` (``cql`` on an Atari task; d3rlpy's ``reproductions/offline/discrete_cql.py``).

    Attributes (``None`` = d3rlpy's default; the three last are :func:`later` fields):
        alpha: the conservative term's weight.
        target_update_interval: gradient steps between target-network synchronisations.
        n_quantiles: the Q-function is quantile regression with that many quantiles (``QRQFunctionFactory``;
            ``None`` = d3rlpy's mean Q-function).
    """

    algo: Literal["discrete_cql"] = "discrete_cql"
    alpha: float | None = Field(None, ge=0)
    target_update_interval: int | None = later(None, ge=1)
    n_quantiles: int | None = later(None, ge=1)
    label: ClassVar[str] = "discrete CQL"
    about: ClassVar[str] = "d3rlpy's DiscreteCQLConfig with its pixel encoder and one optimiser"
    d3rlpy_config: ClassVar[str | None] = "DiscreteCQLConfig"
    builds: ClassVar[tuple[str, ...]] = (*_PixelBaseline.builds, "n_quantiles")


class DiscreteBCSettings(_PixelBaseline):
    """Discrete behaviour cloning as d3rlpy 2.8.0's ``DiscreteBCConfig``. Recipe: preset ``bc-atari`` (``bc`` on
    an Atari task; the config's documented defaults, d3rlpy.readthedocs.io "Behavior Cloning").

    Attributes:
        beta: the logit-norm regulariser's weight; ``None`` = d3rlpy's default. A :func:`later` field.
    """

    algo: Literal["discrete_bc"] = "discrete_bc"
    beta: float | None = later(None, ge=0)
    label: ClassVar[str] = "discrete BC"
    about: ClassVar[str] = "d3rlpy's DiscreteBCConfig with its pixel encoder and one optimiser"
    d3rlpy_config: ClassVar[str | None] = "DiscreteBCConfig"


#: ``baseline.algo`` values of the discrete-action algorithms (Atari tasks); the others are continuous.
DISCRETE_BASELINES: tuple[str, ...] = tuple(a for a, c in BASELINE_SETTINGS.items() if c.discrete_actions)
