"""The method registry: one entry per method of the paper's tables (LaMo, DT, Wiki-RL, CQL, IQL, TD3+BC,
BC), read by the sweep expansion (which recipe a preset means on a task's domain), the trial runner (which
learner a trial builds), the sweep's plan table and the analysis (display names, column order, which
methods are value-based).

A method's **recipe** is data in :mod:`trainers.presets` (each value with its public source): its default
preset and, where a domain needs other settings, the preset it means on that domain
(:data:`trainers.presets.DOMAIN_VARIANTS`, read by :func:`trainers.presets.get_preset`; e.g. ``cql`` on
Atari is d3rlpy's DiscreteCQL recipe ``cql-atari``, ``lamo`` on Atari is the official Atari script's
``lamo-atari``). Its **settings**: a d3rlpy method names its typed settings classes, one per d3rlpy
algorithm (:mod:`trainers.baseline_settings`: :class:`~trainers.baseline_settings.CQLSettings` and
:class:`~trainers.baseline_settings.DiscreteCQLSettings` for CQL, ...), which make the trial config's
``baseline`` section a union discriminated on ``baseline.algo``; a sequence method's settings are the trial
config's other sections (:class:`trainers.config.TrialConfig`). Its **learner** is built by
:func:`build_learner`: every sequence method (LaMo, DT, Wiki-RL and the ablations) is
:class:`trainers.learner.SequenceLearner` on the task's domain; every d3rlpy method is its domain's baseline learner
(:meth:`trainers.domains.base.Domain.baseline_learner`).

Adding a method = a recipe in :mod:`trainers.presets` + one :class:`Method` entry here (+ for a new d3rlpy
algorithm, its settings class in :mod:`trainers.baseline_settings`; + a learner class if it trains
differently from both families).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from trainers.baseline_settings import (BaselineSettings, BCSettings, CQLSettings, DiscreteBCSettings,
                                        DiscreteCQLSettings, IQLSettings, TD3PlusBCSettings)

#: Method families: return-conditioned sequence models, and the d3rlpy baselines.
SEQUENCE, VALUE_BASED_FAMILY, IMITATION = "sequence", "value-based", "imitation"


@dataclass(frozen=True)
class Method:
    """One method of the paper's tables.

    Attributes:
        key: the method's key (:func:`method_key` of its sweep variant name), e.g. ``"wikirl"``.
        display: the name the paper prints, e.g. ``"Wiki-RL"`` (table column headers, in registry order).
        family: :data:`SEQUENCE`, :data:`VALUE_BASED_FAMILY` or :data:`IMITATION`.
        preset: the default recipe (a preset of :mod:`trainers.presets`).
        settings: the typed settings classes of this method's d3rlpy algorithms, one per action space
            (:mod:`trainers.baseline_settings`; empty for sequence methods, whose settings are the trial
            config's other sections).
    """

    key: str
    display: str
    family: str
    preset: str
    settings: tuple[type[BaselineSettings], ...] = field(default=())

    @property
    def algos(self) -> tuple[str, ...]:
        """The ``baseline.algo`` values of this method's d3rlpy learners (its :attr:`settings` classes' tags)."""
        return tuple(s.model_fields["algo"].default for s in self.settings)


#: The paper's methods, in its column order (LaMo, DT, Wiki-RL, CQL, IQL, TD3+BC, BC).
METHODS: dict[str, Method] = {m.key: m for m in (
    Method("lamo", "LaMo", SEQUENCE, "lamo"),
    Method("dt", "DT", SEQUENCE, "dt"),
    Method("wikirl", "Wiki-RL", SEQUENCE, "wiki-rl"),
    Method("cql", "CQL", VALUE_BASED_FAMILY, "cql", (CQLSettings, DiscreteCQLSettings)),
    Method("iql", "IQL", VALUE_BASED_FAMILY, "iql", (IQLSettings,)),
    Method("td3bc", "TD3+BC", VALUE_BASED_FAMILY, "td3bc", (TD3PlusBCSettings,)),
    Method("bc", "BC", IMITATION, "bc", (BCSettings, DiscreteBCSettings)),
)}


def method_key(name: object) -> str:
    """Case- and punctuation-insensitive key: ``"Wiki-RL"``, ``"wiki_rl"`` -> ``"wikirl"``."""
    return re.sub(r"[^0-9a-z]+", "", str(name).lower())


def methods_of_family(family: str) -> tuple[str, ...]:
    """The keys of the registered methods of ``family``, in registry order."""
    return tuple(k for k, m in METHODS.items() if m.family == family)


def baseline_method(algo: str) -> Method:
    """The d3rlpy method of ``baseline.algo``.

    Raises:
        KeyError: no registered method trains with ``algo``.
    """
    for m in METHODS.values():
        if algo in m.algos:
            return m
    raise KeyError(f"no method trains with baseline.algo {algo!r}")


def describe(cfg) -> str:
    """One line for the sweep's plan table: ``"<algo> (d3rlpy)"`` for a baseline, else ``"sequence model
    (<domain>)"``. ``cfg``: a :class:`trainers.config.TrialConfig`."""
    if cfg.baseline.algo != "none":
        return f"{cfg.baseline.algo} (d3rlpy)"
    return f"sequence model ({cfg.task_spec.domain})"


def make_learner(cfg, data_dir):
    """:func:`build_learner` on the trial's device (:func:`trainers.learner.resolve_device`)."""
    from trainers.learner import resolve_device

    return build_learner(cfg, data_dir, resolve_device(cfg))


def build_learner(cfg, data_dir, device):
    """The learner of trial ``cfg`` (a :class:`trainers.config.TrialConfig`) on ``device``: a d3rlpy
    baseline when ``baseline.algo`` is set (its domain's :meth:`~trainers.domains.base.Domain.baseline_learner`),
    else the sequence learner (:class:`trainers.learner.SequenceLearner` over
    :func:`trainers.learner.build_parts`, the domain supplying what differs).

    Raises:
        KeyError: a ``baseline.algo`` no registered method trains with.
    """
    from trainers.domains.base import domain_of

    if cfg.baseline.algo != "none":
        baseline_method(cfg.baseline.algo)
        return domain_of(cfg.task).baseline_learner(cfg, data_dir, device)
    from trainers.learner import SequenceLearner, build_parts

    return SequenceLearner(cfg, build_parts(cfg, data_dir, device))
