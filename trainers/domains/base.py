"""The domain seam: what a family of tasks (MuJoCo, Reacher2d, Kitchen, Atari, ...) supplies, and the one
registry of domains and tasks.

A **domain** is one module (:mod:`trainers.domains.mujoco`, ``reacher2d``, ``kitchen``, ``atari``) holding a
:class:`Domain` subclass. It owns, for its tasks:

* the task entries (:class:`TaskSpec`: env id, shapes, horizon, context length, RTG scale and targets,
  normalisation constants, dataset source) and their environments' registration with gymnasium;
* the data: where a dataset file lives, how it is loaded and subsampled, how it is collected from a
  behaviour policy, and the behaviour policies it names;
* what the sequence learner needs that differs by domain (model, batch sampler, action loss, learning-rate
  schedule, evaluation rollout) and what the baseline learner needs (:mod:`trainers.baselines`);
* what the analysis needs (paper table, Figure-1 label, display names, score unit).

Everything else (the trial loop, checkpoints, the sweep schema, MLflow, the analysis) asks the registry
(:func:`get_domain`, :func:`domain_of`) and never branches on a domain's name. The default behaviour of
vector-observation, continuous-action domains (D4RL-layout data, the Decision Transformer on state vectors,
MSE action loss, linear warm-up), which MuJoCo, Reacher2d and Kitchen share, is
:class:`trainers.domains.state.StateDomain`. This module imports no implementation module, so the code a
domain points at can use the registry without an import cycle.

**Registration.** This module imports no domain module (so nothing here depends on a domain's code and
``trainers`` keeps no import cycle): the built-in domains are loaded by module name on first use of the
registry (:data:`BUILTIN_DOMAIN_MODULES`), followed by the modules named in ``$LAMO_DOMAIN_MODULES``
(comma-separated; a user's or a test's own domain, e.g. ``tests.pendulum_domain``), the plugin pattern of
Python entry points. A domain module calls :func:`register_domain` at import.

Normalised score (every domain): ``100 * (R - R_min) / (R_max - R_min)`` with the task's reference
returns: D4RL ``get_normalized_score`` x 100 (``d4rl/offline_env.py``) for MuJoCo, Kitchen and Reacher2d
(LaMo's ``return / 100``), gamer-normalised for Atari (Mnih et al. 2015, as LaMo's ``get_hns.py``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trainers.util import did_you_mean

#: The domains that ship with the project, imported by name on first use of the registry.
BUILTIN_DOMAIN_MODULES = ("trainers.domains.reacher2d", "trainers.domains.mujoco", "trainers.domains.kitchen",
                          "trainers.domains.atari")
#: Environment variable naming further domain modules to load (comma-separated module names).
DOMAIN_MODULES_ENV = "LAMO_DOMAIN_MODULES"


@dataclass(frozen=True)
class DatasetSource:
    """Where a task's offline dataset comes from.

    Attributes:
        kind: the default source: ``"collected"`` (produced by this project's ``prepare`` step from a
            behaviour policy) or ``"d4rl_hdf5"`` (a D4RL file the user provides). A trial can pick
            another source with ``data.source`` (:class:`trainers.config.DataConfig`).
        name: file stem of the default source, e.g. ``"reacher2d-medium-v0"`` or ``"hopper_medium-v2"``.
        behaviour_policy: for ``collected``: the behaviour policy (owned by the task's domain,
            :meth:`Domain.behaviour_policy`); several joined by ``+`` are rolled out one after the other and
            concatenated (D4RL's medium-expert).
        episodes: for ``collected``: episodes per behaviour policy (``None``: use ``transitions``).
        transitions: for ``collected``: transitions per behaviour policy (D4RL: 1M; the last episode
            is cut, as in D4RL).
        collected_name: file stem of the collected dataset (``None``: same as ``name``).
        minari_id: the Minari dataset id for ``data.source: minari``.
        url: where the default ``d4rl`` file is published (quoted in the missing-file message).
        collect_max_steps: for ``collected``: episode length limit while collecting (``None``: the
            task's ``max_ep_len``; Kitchen: the env's own 280, since ``max_ep_len`` 1000 is only the
            size of LaMo's timestep table).
    """

    kind: str
    name: str
    behaviour_policy: str | None = None
    episodes: int | None = None
    transitions: int | None = None
    collected_name: str | None = None
    minari_id: str | None = None
    url: str | None = None
    collect_max_steps: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One task of the registry.

    Attributes:
        name: registry key, e.g. ``"reacher2d-medium"``.
        env_id: gymnasium id used for evaluation rollouts.
        obs_dim: observation size (floats; for pixel domains the flattened frame stack, Atari 4*84*84).
        act_dim: action size (floats, continuous in [-1, 1]); for discrete domains the number of actions.
        max_ep_len: maximum episode length (env steps); also the size of the timestep-embedding table.
        context_length: K, the number of (R, s, a) steps the model sees.
        rtg_scale: return-to-go divisor fed to the model (LaMo: 1000 MuJoCo, 10 Reacher2d, 1 Kitchen).
        rtg_targets: evaluation return targets, raw-return units, in LaMo's order.
        ref_min_return / ref_max_return: raw returns mapped to normalised scores 0 and 100.
        dataset: where the offline data comes from.
        paper_sample_ratios: the sample ratios LaMo uses for this task (``docs/lamo_recipe.md`` §4.2).
        domain: the name of the registered :class:`Domain` the task belongs to.
        display: row label in the paper-layout tables (e.g. ``"Hopper-Medium"``).
        order: sort key of the row inside its table (the paper's row order).
    """

    name: str
    env_id: str
    obs_dim: int
    act_dim: int
    max_ep_len: int
    context_length: int
    rtg_scale: float
    rtg_targets: tuple[float, ...]
    ref_min_return: float
    ref_max_return: float
    dataset: DatasetSource
    paper_sample_ratios: tuple[float, ...] = field(default=())
    domain: str = "mujoco"
    display: str = ""
    order: int = 99

    def normalised_score(self, raw_return: float) -> float:
        """Map a raw episode return to the normalised score (0 = reference min, 100 = reference max).

        Formula: ``100 * (R - R_min) / (R_max - R_min)`` (D4RL ``get_normalized_score`` x 100; for
        Reacher2d LaMo's ``return / 100`` x 100; Atari: gamer-normalised).
        """
        return 100.0 * (raw_return - self.ref_min_return) / (self.ref_max_return - self.ref_min_return)


class Domain:
    """A family of tasks and everything that differs between families (module docstring).

    Subclasses set the class attributes and implement the members that raise :class:`NotImplementedError`
    here (:class:`trainers.domains.state.StateDomain` implements all but :meth:`tasks` for vector-state
    domains).

    Attributes:
        name: registry key, the value of :attr:`TaskSpec.domain` (``"mujoco"``, ``"atari"``, ...).
        label: the paper's Figure-1 domain (``"MuJoCo"``, ``"Kitchen"``, ``"Atari"``, ``"Reacher2d"``).
        table: the paper table its tasks go to: ``"dense"``, ``"sparse"``, ``"atari"`` or ``"other"``
            (keys of :data:`analysis.domains.TABLES`).
        discrete_actions: actions are ids (Atari), not vectors in [-1, 1]; baselines pick their discrete
            algorithms (:mod:`trainers.methods`).
    """

    name: str = ""
    label: str = "Other"
    table: str = "other"
    discrete_actions: bool = False

    # --- tasks and environments ------------------------------------------------------------------------
    def tasks(self) -> list[TaskSpec]:
        """The domain's task entries (registered once by :func:`register_domain`)."""
        raise NotImplementedError(f"domain {self.name!r}: implement tasks()")

    def register_envs(self) -> None:
        """Register the domain's own gymnasium ids (idempotent). Default: none (gymnasium's own ids)."""

    def behaviour_policy_names(self) -> tuple[str, ...]:
        """Names of the behaviour policies this domain owns (for messages listing the known ones)."""
        return ()

    def behaviour_policy(self, name: str, seed: int, data_dir=None):
        """The behaviour policy ``name`` if this domain owns it (``act(obs) -> action`` object, see
        :mod:`trainers.data.policies`), else ``None``."""
        return None

    # --- data ------------------------------------------------------------------------------------------
    def dataset_path(self, task: TaskSpec, data_dir, source: str) -> Path | None:
        """Where ``source``'s file of ``task`` lives under ``data_dir``: ``collected`` ->
        ``datasets/<collected_name>.hdf5``, ``d4rl`` -> ``d4rl/<name>.hdf5``; ``None`` for other sources
        (Minari manages its own store; a pickle needs ``data.path``)."""
        src = task.dataset
        if source == "collected":
            return Path(data_dir) / "datasets" / f"{src.collected_name or src.name}.hdf5"
        if source == "d4rl":
            return Path(data_dir) / "d4rl" / f"{src.name}.hdf5"
        return None

    def dataset_downloads(self, cfg, path: Path) -> list[tuple[str, Path]]:
        """Where ``prepare`` downloads the trial's published (``d4rl``) dataset from: ``[(url, file), ...]``
        (empty: no canonical download). Default: the task's ``dataset.url`` into ``path``."""
        url = cfg.task_spec.dataset.url
        return [(url, Path(path))] if url else []

    def missing_dataset_fix(self, cfg, path: Path) -> tuple[str, str] | None:
        """For a trial whose ``d4rl`` dataset is absent: ``(what, fix)`` for the missing-input message, or
        ``None`` when it is present. Default: a D4RL-layout HDF5 file at ``path``."""
        if path.exists():
            return None
        task = cfg.task_spec
        fetch = (f"`lamo-trial fetch --sweep <sweep file>` (or `wget {task.dataset.url} -O {path}`)"
                 if task.dataset.url else f"D4RL's {task.dataset.name}.hdf5")
        return (f"D4RL dataset {task.dataset.name!r} for task {cfg.task!r}",
                f"download {fetch} on a machine with internet and copy it to {path} (or point LAMO_DATA_DIR "
                f"at a directory holding d4rl/{task.dataset.name}.hdf5). The old `d4rl` package does not "
                f"install on modern Python; the file is read directly with h5py. Offline, `data: {{source: "
                f"collected}}` trains on D4RL-style data rolled out from trained behaviour policies instead.")

    def relabel_rewards(self, task: TaskSpec, data: dict) -> str | None:
        """Give a collected dataset's ``data["rewards"]`` ``(N,)`` the reward semantics of the task's
        reference dataset, in place, before it is written; returns the file attribute ``rewards`` that
        describes them, or ``None`` when rows keep the env's reward (the default)."""
        return None

    def check_collected_file(self, task: TaskSpec, attrs: dict, path: Path) -> None:
        """Refuse a file this project collected under older conventions (``attrs``: its HDF5 attributes).
        Default: every file is fine.

        Raises:
            trainers.data.d4rl_hdf5.DatasetError: naming the file and the fix.
        """

    def load_dataset(self, cfg, data_dir):
        """The trial's whole dataset, validated against the task (:class:`trainers.domains.state.StateDomain`:
        a list of trajectory dicts).

        Raises:
            trainers.data.d4rl_hdf5.DatasetError: missing, corrupt or inconsistent data.
        """
        raise NotImplementedError(f"domain {self.name!r}: implement load_dataset()")

    def subset(self, dataset, cfg):
        """The sample-ratio subset of ``dataset`` a trial trains on (has ``subset_hash`` and ``summary()``)."""
        raise NotImplementedError(f"domain {self.name!r}: implement subset()")

    def collect(self, task: TaskSpec, out_path: Path, *, episodes, transitions, seed: int, progress: bool,
                data_dir) -> dict:
        """Roll the task's behaviour policy out into the file ``prepare`` collects; returns a summary dict
        (``episodes``, ``transitions``, ``mean_return``, ...)."""
        raise NotImplementedError(f"domain {self.name!r}: implement collect()")

    def step_embedding_flops(self, cfg, hidden: int) -> float:
        """Forward FLOPs of turning one (return, state, action) step into ``hidden``-wide tokens and of the
        action head, for the sweep's cost estimate (:mod:`orchestrator.estimate`)."""
        raise NotImplementedError(f"domain {self.name!r}: implement step_embedding_flops()")

    # --- learners ----------------------------------------------------------------------------------------
    def sequence_hooks(self, cfg):
        """What the one sequence learner (:class:`trainers.learner.SequenceLearner`: LaMo, DT, Wiki-RL,
        ablations) takes from the domain: a :class:`trainers.learner.SequenceHooks` (model, batch
        sampler, action loss, learning-rate schedule, evaluation rollout)."""
        raise NotImplementedError(f"domain {self.name!r}: implement sequence_hooks()")

    def baseline_learner(self, cfg, data_dir, device):
        """The d3rlpy learner of a value-based or imitation baseline trial (:mod:`trainers.baselines`)."""
        raise NotImplementedError(f"domain {self.name!r}: implement baseline_learner()")


# --- the registry ----------------------------------------------------------------------------------------
_DOMAINS: dict[str, Domain] = {}
_TASKS: dict[str, TaskSpec] = {}
_loaded = False


def register_domain(domain: Domain) -> Domain:
    """Add ``domain`` and its tasks to the registry (a domain module calls this at import; a test may call
    it for a domain of its own). Registering the same name again replaces the domain and its tasks.

    Raises:
        ValueError: the domain has no name, a task names another domain, or a task name is already
            registered by another domain.
    """
    if not domain.name:
        raise ValueError(f"{type(domain).__name__}: a domain needs a name")
    for old in [t for t, spec in _TASKS.items() if spec.domain == domain.name]:
        del _TASKS[old]
    specs = domain.tasks()
    for spec in specs:
        if spec.domain != domain.name:
            raise ValueError(f"task {spec.name!r} says domain {spec.domain!r} but is registered by {domain.name!r}")
        if spec.name in _TASKS:
            raise ValueError(f"task {spec.name!r} is already registered by domain {_TASKS[spec.name].domain!r}")
    _DOMAINS[domain.name] = domain
    _TASKS.update({s.name: s for s in specs})
    return domain


def unregister_domain(name: str) -> None:
    """Remove domain ``name`` and its tasks from the registry (tests that register a domain of their own
    undo it with this). Unknown names are ignored."""
    _DOMAINS.pop(name, None)
    for task in [t for t, spec in _TASKS.items() if spec.domain == name]:
        del _TASKS[task]


def _load() -> None:
    """Import the built-in domain modules and those of ``$LAMO_DOMAIN_MODULES`` (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    extra = [m.strip() for m in os.environ.get(DOMAIN_MODULES_ENV, "").split(",") if m.strip()]
    for module in (*BUILTIN_DOMAIN_MODULES, *extra):
        importlib.import_module(module)


def domains() -> dict[str, Domain]:
    """Every registered domain, by name (built-ins first)."""
    _load()
    return dict(_DOMAINS)


def get_domain(name: str) -> Domain:
    """The registered domain ``name``.

    Raises:
        KeyError: unknown domain, with the registered names.
    """
    _load()
    try:
        return _DOMAINS[name]
    except KeyError:
        raise KeyError(f"unknown domain {name!r}.{did_you_mean(name, _DOMAINS)} Domains: "
                       f"{', '.join(_DOMAINS)} (a domain module registers itself; extra modules: "
                       f"${DOMAIN_MODULES_ENV})") from None


def get_task(name: str) -> TaskSpec:
    """Return the registered task ``name``.

    Raises:
        KeyError: with the list of known tasks and the closest match, when ``name`` is unknown.
    """
    _load()
    try:
        return _TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}.{did_you_mean(name, _TASKS)} Known tasks: "
                       f"{', '.join(sorted(_TASKS))}") from None


def domain_of(task: str | TaskSpec) -> Domain:
    """The domain of a task (a name or a :class:`TaskSpec`).

    Raises:
        KeyError: unknown task.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    return get_domain(spec.domain)


class _TaskTable(Mapping):
    """Read-only view of the registered tasks (``TASKS``) that loads the domains on first use."""

    def __getitem__(self, key: str) -> TaskSpec:
        _load()
        return _TASKS[key]

    def __iter__(self) -> Iterator[str]:
        _load()
        return iter(dict(_TASKS))

    def __len__(self) -> int:
        _load()
        return len(_TASKS)


#: Every registered task by name (a mapping; loads the domains on first use).
TASKS: Mapping[str, TaskSpec] = _TaskTable()
