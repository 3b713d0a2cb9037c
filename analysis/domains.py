"""What the analysis needs to lay results out as the paper does: which paper table and Figure-1 domain a
task belongs to, display names, score units, data provenance.

Tasks and methods are read from the project's registries (:mod:`trainers.domains`, :mod:`trainers.methods`):
a task's table, Figure-1 domain, row label and row order are its domain's; a method's column header and
order are its registry entry's. A task no registry knows lands in an ``Other`` domain and table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from trainers.methods import METHODS, method_key  # noqa: F401 - method_key is re-exported for the analysis

#: Paper tables (file stem → title). ``other`` collects tasks the paper has no table for.
TABLES: dict[str, str] = {
    "sparse": "Sparse-reward tasks (Kitchen, Reacher2d)",
    "dense": "Dense-reward MuJoCo tasks (medium)",
    "atari": "Atari (gamer-normalised score)",
    "other": "Other tasks",
}
#: The score unit of each paper table (:data:`TABLES` key): the one place every caption takes it from.
#: D4RL-normalised 100 (R - random) / (expert - random) for MuJoCo, Kitchen and Reacher2d (Fu et al. 2020,
#: D4RL), roughly 0-100; Atari gamer-normalised 100 (R - random) / (human - random) with the Nature-DQN
#: scores (Mnih et al. 2015, Extended Data Table 2; LaMo's ``get_hns.py``), 100 = the human gamer and
#: unbounded above (the paper's Figure 1 reports LaMo 165 on Atari).
SCORE_UNITS: dict[str, str] = {
    "sparse": "Normalised score (0–100)",
    "dense": "Normalised score (0–100)",
    "atari": "Gamer-normalised score (100 = human gamer; can exceed 100)",
    "other": "Normalised score (0–100)",
}
#: Caption unit of a table or figure that mixes tables with different units.
MIXED_SCORE_UNIT = "Normalised score (0–100; Atari tasks: gamer-normalised, 100 = human gamer, can exceed 100)"


def score_unit(tasks) -> str:
    """The score unit (:data:`SCORE_UNITS`) of a table whose rows are ``tasks`` (task names):
    the tables' common unit, or :data:`MIXED_SCORE_UNIT` when they differ (none given: the MuJoCo one)."""
    units = {SCORE_UNITS.get(task_info(t).table, SCORE_UNITS["other"]) for t in tasks}
    if len(units) > 1:
        return MIXED_SCORE_UNIT
    return units.pop() if units else SCORE_UNITS["dense"]


#: Figure-1 domain order (the paper's bars: Kitchen, Atari, MuJoCo; then what the paper does not plot).
DOMAIN_ORDER = ("Kitchen", "Atari", "MuJoCo", "Reacher2d", "Other")


@dataclass(frozen=True)
class TaskInfo:
    """Where a task goes in the paper's layout.

    Attributes:
        display: row label, e.g. ``"Hopper-Medium"``.
        domain: Figure-1 domain (``Kitchen``, ``Atari``, ``MuJoCo``, ``Reacher2d``, ``Other``).
        table: paper table key of :data:`TABLES`.
        order: sort key inside the table (the paper's row order).
    """

    display: str
    domain: str
    table: str
    order: int = 99


@lru_cache(maxsize=None)
def task_info(task: str) -> TaskInfo:
    """The :class:`TaskInfo` of ``task`` from the task's domain in the registry
    (:mod:`trainers.domains`: its ``label`` and ``table``, the task's ``display`` and ``order``); a task the
    registry does not know (a run logged by another version, or a user's unregistered domain) goes to the
    ``Other`` domain and table under its own name (never an error, never a guess)."""
    from trainers.domains.base import domain_of, get_task

    try:
        spec = get_task(str(task))
        domain = domain_of(spec)
    except KeyError:
        return TaskInfo(str(task), "Other", "other", 99)
    return TaskInfo(spec.display or spec.name, domain.label, domain.table, spec.order)


def task_sort_key(task: str) -> tuple:
    info = task_info(task)
    return (list(TABLES).index(info.table), info.order, str(task))


def domain_sort_key(domain: str) -> tuple:
    return (DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER), domain)


# --- methods ------------------------------------------------------------------------------------------
#: Display names of the paper's methods, keyed by :func:`method_key`, in the tables' column order: the
#: method registry's (:data:`trainers.methods.METHODS`).
METHOD_NAMES: dict[str, str] = {k: m.display for k, m in METHODS.items()}
#: Display of ablation values (field → value → label); other values print as logged.
VALUE_NAMES: dict[str, dict[str, str]] = {
    "embedding": {"mlp": "MLP", "linear": "Linear"},
    "finetune": {"lora": "LoRA", "full": "Full", "frozen": "Frozen"},
    "init": {"pretrained": "Pre-trained", "random": "Random"},
}


def method_display(value: object, column: str = "variant") -> str:
    """Column header for a method / ablation value."""
    field = column.rsplit(".", 1)[-1]
    if field in ("weight", "language_weight"):
        return f"λ = {value}"
    if field in VALUE_NAMES:
        return VALUE_NAMES[field].get(str(value), str(value))
    return METHOD_NAMES.get(method_key(value), str(value))


def method_sort_key(value: object) -> tuple:
    """Paper methods first in the paper's order (LaMo, DT, Wiki-RL, CQL, IQL, TD3+BC, BC), then the rest."""
    k = method_key(value)
    order = list(METHOD_NAMES)
    if k in METHOD_NAMES:
        return (0, order.index(k), "")
    try:
        return (1, float(value), str(value))  # numeric ablation values (λ) in numeric order
    except (TypeError, ValueError):
        return (2, 0, str(value))


# --- data provenance ----------------------------------------------------------------------------------
#: How a ``data_source`` kind is described; ``collected`` is this project's D4RL-style data.
DATA_SOURCES: dict[str, str] = {
    "d4rl_hdf5": "D4RL",
    "minari": "D4RL (Minari)",
    "d4rl": "D4RL",
    "collected": "collected (D4RL-style, local)",
    "unknown": "unknown",
}
#: Footnote markers used in tables for rows that are not on real D4RL data.
SOURCE_MARKS: dict[str, str] = {"collected": "†", "unknown": "?"}
SOURCE_NOTES: dict[str, str] = {
    "collected": "† locally collected D4RL-style data (this project's behaviour policy), not comparable "
    "one to one with numbers on the paper's datasets.",
    "unknown": "? data source unknown (no `data_source` tag and the task is not in the registry).",
}


def is_d4rl(source: str) -> bool:
    return source in ("d4rl_hdf5", "minari", "d4rl")


def registry_data_source(task: str) -> tuple[str, str]:
    """``(kind, dataset name)`` from :mod:`trainers.tasks`; ``("unknown", task)`` when not registered."""
    try:
        from trainers.tasks import get_task

        spec = get_task(task)
    except (ImportError, KeyError):
        return "unknown", str(task)
    return spec.dataset.kind, spec.dataset.name
