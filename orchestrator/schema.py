"""Sweep files: typed schema, validation with actionable messages, and grid expansion.

A sweep file is ``base`` defaults + named ``variants`` (partial overrides of the trial config) + a
``grid`` of axes. Expanding it gives fully resolved :class:`trainers.config.TrialConfig` objects; each
one's canonical hash is its identity. Everything is validated before any compute starts; problems are
reported as :class:`SweepError` whose lines name the field (``variants.lamo.model.embeding``) and the
fix. Example::

    name: quickstart
    resources: {cpu: 1, gpu: 0}
    base:  {train: {steps: 600}, eval: {every_steps: 300, episodes: 10}}
    variants:
      lamo: {preset: lamo, model: {lm: lamo-wiki-tiny}}   # LaMo's recipe (the trial-config defaults)
      dt:   {preset: dt}                                  # the DT baseline: its differences from LaMo
    grid: {task: [reacher2d-medium], sample_ratio: [0.1, 1.0], seed: [0, 1], variant: [lamo, dt]}
    # optional extra axes over any trial-config field: grid.axes: {language.weight: [0.0, 0.1]}
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.yaml_loader import SweepError, read_yaml  # noqa: F401 - re-exported (public names)
from trainers.config import TrialConfig
from trainers.contract import DEFAULT_STORAGE
from trainers.tasks import get_task
from trainers.util import did_you_mean


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    """Per-trial resources, mapped to Ray resources (``cpu`` -> CPU, ``gpu`` -> GPU, fractions pack
    several trials on one GPU; ``memory_gb`` -> Ray ``memory``; ``custom`` -> custom resources)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    memory_gb: float | None = Field(None, gt=0)
    custom: dict[str, float] = Field(default_factory=dict)

    def ray_resources(self) -> dict[str, float]:
        r: dict[str, float] = {"cpu": self.cpu, "gpu": self.gpu}
        if self.memory_gb:
            r["memory"] = self.memory_gb * 1024**3
        r.update(self.custom)
        return r


def local_gpu_count() -> int:
    """GPUs this machine offers (``torch.cuda.device_count()``); 0 without importing torch when no GPU
    driver is present or ``CUDA_VISIBLE_DEVICES`` hides every device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/gpus", "/dev/kfd")):
        return 0
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken driver counts as no GPU
        return 0


def local_resource_problems(res: Resources, field: str = "resources") -> list[tuple[str, str]]:
    """Per-trial resources that the local machine cannot give one trial (a local Ray would leave such
    trials pending forever): CPUs (``os.sched_getaffinity``), GPUs (:func:`local_gpu_count`), memory
    (physical RAM) and every custom resource (a local Ray has none). Checked without starting Ray; a
    cluster (``--address``) is checked against its nodes once connected. ``field`` is where ``res`` was
    written (``resources``, or ``variants.<name>.resources`` for a variant's own block); problems are
    named ``<field>.cpu`` etc."""
    probs = [(field + loc.removeprefix("resources"), msg) for loc, msg in _local_resource_problems(res)]
    return probs


def _local_resource_problems(res: Resources) -> list[tuple[str, str]]:
    probs: list[tuple[str, str]] = []
    fix = "lower it, or pass --address to run on a Ray cluster that has it"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if res.cpu > cpus:
        probs.append(("resources.cpu", f"{res.cpu:g} CPUs per trial, but this machine has {cpus}: {fix}"))
    if res.gpu > 0:
        gpus = local_gpu_count()
        if res.gpu > gpus:
            probs.append(("resources.gpu", f"{res.gpu:g} GPU per trial, but this machine has {gpus} GPU"
                                           f"{'s' * (gpus != 1)}: {fix}"))
    if res.memory_gb:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
        except (ValueError, OSError, AttributeError):
            total = None
        if total is not None and res.memory_gb > total:
            probs.append(("resources.memory_gb", f"{res.memory_gb:g} GiB per trial, but this machine has "
                                                 f"{total:.1f} GiB of memory: {fix}"))
    for name, amount in res.custom.items():
        if amount > 0:
            probs.append((f"resources.custom.{name}", f"custom resource {name!r} exists only on a Ray cluster "
                                                      f"that declares it (ray start --resources); pass --address "
                                                      f"to run on one, or remove it"))
    return probs


class Tracking(_Strict):
    """MLflow tracking: ``uri`` (the ``--tracking-uri`` flag wins over it) default ``$MLFLOW_TRACKING_URI``,
    else ``sqlite:///<storage>/mlflow.db`` (absolute); ``experiment``
    default: the sweep's name; ``wait_s``: seconds a trial keeps retrying an unreachable server."""

    uri: str | None = None
    experiment: str | None = None
    wait_s: float = Field(900.0, ge=0, description="how long a trial waits for an unreachable tracking "
                          "server (training goes on meanwhile; metrics are buffered)")

    @field_validator("uri")
    @classmethod
    def _supported_uri(cls, v: str | None) -> str | None:
        problem = tracking_uri_problem(v)
        if problem:
            raise ValueError(problem)
        return v


# The tracking-store schemes MLflow registers itself (mlflow.tracking._tracking_service.utils
# ._register_tracking_stores: the REST stores, Databricks, and SQLAlchemy's DATABASE_ENGINES); plugins add
# theirs through the `mlflow.tracking_store` entry points (tracking_store_schemes). `file` is MLflow's
# file store, refused unless MLFLOW_ALLOW_FILE_STORE is true (MLflow 3 keeps it in maintenance mode);
# `databricks-uc` / `uc` are model-registry URIs MLflow refuses as tracking URIs.
_URI_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")


def tracking_store_schemes() -> set[str]:
    """Schemes MLflow accepts for a tracking URI here: :data:`_URI_SCHEMES` plus those of installed
    plugins (entry-point group ``mlflow.tracking_store``, how MLflow registers them)."""
    from importlib.metadata import entry_points

    return set(_URI_SCHEMES) | {ep.name for ep in entry_points(group="mlflow.tracking_store")}


def tracking_uri_problem(uri: str | None) -> str | None:
    """Why ``uri`` cannot be a sweep's tracking URI, or ``None`` when it can. A value without a scheme is
    a path to a SQLite file; ``databricks`` (bare) is the Databricks workspace, as in MLflow. Any scheme
    MLflow accepts passes (:func:`tracking_store_schemes`; ``postgresql+psycopg2`` counts as
    ``postgresql``); ``file:`` stores only with ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow 3 refuses them
    by default)."""
    from trainers.contract import uri_scheme

    if uri is None:
        return None
    if not uri.strip():
        return "empty tracking URI: leave it out for the default SQLite store"
    scheme = uri_scheme(uri)
    if not scheme:
        return None
    base = scheme.split("+", 1)[0]
    if base in ("databricks-uc", "uc"):
        return (f"{uri!r} is a Unity Catalog model-registry URI, which MLflow refuses as a tracking URI; "
                f"use databricks or databricks://PROFILE")
    if base == "file":
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
            return None
        return (f"{uri!r}: MLflow 3 refuses the file store by default (maintenance mode); use "
                f"sqlite:///ABSOLUTE/PATH/mlflow.db or an http(s):// tracking server (or set "
                f"MLFLOW_ALLOW_FILE_STORE=true, as MLflow's message says)")
    if base not in tracking_store_schemes():
        return (f"{uri!r}: unsupported scheme {scheme!r}; use http(s)://HOST:PORT (an MLflow tracking "
                f"server), sqlite:///PATH/mlflow.db, a database URI (postgresql://, mysql://, mssql://), "
                f"databricks[://PROFILE], or install the MLflow plugin that provides {scheme!r}")
    if base in ("http", "https") and "://" in uri and not uri.split("://", 1)[1].split("/", 1)[0]:
        return f"{uri!r}: no host; e.g. http://127.0.0.1:5000"
    return None


class Grid(_Strict):
    """Grid axes. ``variant`` defaults to every variant; ``axes`` adds axes over any trial-config field
    given as a dotted path (e.g. ``language.weight``). ``sample_ratio_by_task`` (``{task: [ratios]}``, an
    entry per grid task) replaces ``sample_ratio`` when tasks need different ratios (the paper's Kitchen
    grid, ``sweeps/kitchen.yaml``)."""

    task: list[str] = Field(min_length=1)
    sample_ratio: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    sample_ratio_by_task: dict[str, list[float]] | None = None
    seed: list[int] = Field(default_factory=lambda: [0], min_length=1)
    variant: list[str] | None = Field(None, min_length=1)
    axes: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("sample_ratio")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        for i, r in enumerate(v):
            if not 0 < r <= 1:
                raise ValueError(f"item {i} = {r} is not a sample ratio: it must be in (0, 1] "
                                 f"(a fraction of the dataset's trajectories, e.g. 0.01 for 1%)")
        return v

    @field_validator("sample_ratio_by_task")
    @classmethod
    def _ratios_by_task(cls, v):
        for task, ratios in (v or {}).items():
            if not ratios:
                raise ValueError(f"{task}: empty list; give at least 1 ratio")
            for i, r in enumerate(ratios):
                if not 0 < r <= 1:
                    raise ValueError(f"{task} item {i} = {r} is not a sample ratio: it must be in (0, 1] "
                                     f"(a fraction of the dataset's trajectories, e.g. 0.01 for 1%)")
        return v

    @model_validator(mode="after")
    def _by_task_covers_tasks(self):
        if self.sample_ratio_by_task is not None:
            missing = [t for t in self.task if t not in self.sample_ratio_by_task]
            extra = [t for t in self.sample_ratio_by_task if t not in self.task]
            if missing or extra:
                raise ValueError(
                    f"sample_ratio_by_task needs exactly one entry per grid.task: missing "
                    f"{missing or 'none'}, not in grid.task {extra or 'none'}")
            if self.sample_ratio != [1.0]:
                raise ValueError("give either sample_ratio or sample_ratio_by_task, not both")
        return self

    def ratios(self, task: str) -> list[float]:
        """The sample ratios of ``task``: its ``sample_ratio_by_task`` entry, else ``sample_ratio``."""
        return self.sample_ratio_by_task[task] if self.sample_ratio_by_task is not None else self.sample_ratio

    @field_validator("seed")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v


class SweepSpec(_Strict):
    """A validated sweep file (see the module docstring)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    storage: str = DEFAULT_STORAGE
    data_dir: str | None = None
    tracking: Tracking = Field(default_factory=Tracking)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=-1)
    base: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    grid: Grid


# ---------------------------------------------------------------------------------------------------
def _sub_models(ann: Any) -> list[type[BaseModel]]:
    """The config sections (pydantic models) an annotation holds: the model itself, or the members of an
    optional section or of a union such as the ``baseline`` section (one settings class per method)."""
    return [c for c in (ann, *getattr(ann, "__args__", ())) if isinstance(c, type) and issubclass(c, BaseModel)]


def _fields_of(models: list[type[BaseModel]]) -> list[str]:
    """The field names of ``models``, each once, in order."""
    return list(dict.fromkeys(n for m in models for n in m.model_fields))


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed at ``loc`` (a path into ``model``), for "did you mean" hints (of every member of a
    union section)."""
    cur: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int) or not cur:
            continue
        f = next((m.model_fields[part] for m in cur if part in m.model_fields), None)
        if f is None:
            return []
        cur = _sub_models(f.annotation)
    return _fields_of(cur)


def _untagged(model: type[BaseModel], loc: tuple) -> tuple:
    """``loc`` without the tags pydantic inserts below a discriminated union (``("baseline", "cql",
    "conservative_weight")`` -> ``("baseline", "conservative_weight")``), so that a problem is reported at the
    config field the user wrote."""
    out: list = []
    cur: list[type[BaseModel]] = [model]
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        out.append(part)
        f = next((m.model_fields[part] for m in cur if isinstance(part, str) and part in m.model_fields), None)
        if f is None:
            cur = [] if not isinstance(part, int) else cur
            continue
        cur = _sub_models(f.annotation)
        if f.discriminator and parts:  # the next element is the member's tag
            tag = parts.pop(0)
            cur = [m for m in cur if m.model_fields.get(f.discriminator) is not None
                   and m.model_fields[f.discriminator].default == tag] or cur
    return tuple(out)


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_problems(err: ValidationError, model: type[BaseModel], prefix: str,
                       skip_prefix: int = 0) -> list[tuple[str, str]]:
    probs = []
    for e in err.errors():
        loc = _untagged(model, tuple(e["loc"])[skip_prefix:])
        field = ".".join(filter(None, [prefix, _fmt_loc(loc)]))
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = did_you_mean(str(loc[-1]), allowed)
            msg = f"unknown key.{hint} Allowed here: {', '.join(allowed)}" if allowed else "unknown key."
        elif e["type"] == "missing":
            msg = "required field is missing; add it"
        elif e["type"] == "list_type":
            msg = f"must be a YAML list, e.g. [{e.get('input')!s}] for one value (got {e.get('input')!r})"
        elif e["type"] in ("dict_type", "model_type"):
            msg = f"must be a mapping of key: value pairs (got {e.get('input')!r})"
        elif e["type"] == "string_pattern_mismatch" and loc == ("name",):
            msg = (f"must start with a letter or digit and use only letters, digits, '_', '.' and '-' (it "
                   f"names the MLflow experiment and directories) (got {e.get('input')!r})")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if "input" in e and e["type"] not in ("value_error",) and not isinstance(e["input"], dict):
                msg += f" (got {e['input']!r})"
        probs.append((field, msg))
    return probs


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict, path: str, value: Any) -> None:
    """``set_dotted(d, "train.steps", 5)`` sets ``d["train"]["steps"] = 5`` (creating mappings)."""
    parts = path.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise KeyError(path)
    d[parts[-1]] = value


def _has_path(d: Any, loc: tuple) -> bool:
    for part in loc:
        if isinstance(d, dict) and part in d:
            d = d[part]
        else:
            return False
    return True


_AXIS_FIXED = {"task", "sample_ratio", "seed", "variant"}


def _axis_path_problem(axis: str) -> str | None:
    """Why the dotted path ``axis`` does not name a trial-config field (with a "did you mean"), or None."""
    cur: list[type[BaseModel]] = [TrialConfig]
    parts = axis.split(".")
    for i, part in enumerate(parts):
        if not cur:
            return (f"{'.'.join(parts[:i])!r} is a value, not a section: {axis!r} is not a path to a "
                    f"trial-config field")
        fields = _fields_of(cur)
        if part not in fields:
            hint = did_you_mean(part, fields)
            where = f" in {'.'.join(parts[:i])!r}" if i else ""
            return f"unknown field {part!r}{where}.{hint} Allowed here: {', '.join(fields)}"
        cur = _sub_models(next(m.model_fields[part] for m in cur if part in m.model_fields).annotation)
    return None


def parse_overrides(pairs: list[str]) -> dict:
    """Parse ``--set key.path=value`` flags into a nested dict (values parsed as YAML scalars).

    Raises:
        SweepError: a pair without ``=``, an empty key, or a value that is not YAML; each named ``--set``.
    """
    out: dict = {}
    probs = []
    for pair in pairs:
        if "=" not in pair:
            probs.append(("--set", f"{pair!r} is not KEY=VALUE (e.g. --set train.steps=2000)"))
            continue
        key, val = pair.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            probs.append(("--set", f"{pair!r}: empty key or key part; write KEY.PATH=VALUE, e.g. "
                                   f"--set grid.seed=[0,1]"))
            continue
        try:
            value = yaml.safe_load(val)
        except yaml.YAMLError as e:
            probs.append((f"--set {key}", f"value {val!r} is not a YAML value ({getattr(e, 'problem', e)}); "
                                          f"quote it or write a list as [0, 1, 2]"))
            continue
        try:
            set_dotted(out, key, value)
        except KeyError:
            probs.append((f"--set {key}", "a shorter key of another --set flag gives this path a value; "
                                          "set the whole mapping in one flag or drop one of them"))
    if probs:
        raise SweepError("command line", probs, what="--set flag")
    return out


def _sweep_sections() -> set[str]:
    """Top-level sections a ``--set`` key can address directly (``grid.seed``, ``resources.gpu``,
    ``variants.lamo.model.lm``, ...); any other key is a trial-config field and goes into ``base``."""
    return set(SweepSpec.model_fields) - {"base"}


def apply_overrides(raw: dict, overrides: dict) -> tuple[dict, dict, dict[str, str], Problems]:
    """Apply ``--set`` overrides (a nested mapping, :func:`parse_overrides`) to a parsed sweep file.

    A key whose first part is a sweep section (``grid``, ``resources``, ``variants``, ``tracking``,
    ``storage``, ...) changes that section (mappings merge, lists and values replace:
    ``--set grid.seed=[0,1,2]``); ``base.X`` and any trial-config field (``train.steps``) go into
    ``base``. A variant must already exist in the file (``--set variants.lamo.model.lm=gpt2``).

    Returns:
        ``(raw', base_overrides, flags, problems)``: a changed copy of ``raw``; the part merged into
        ``base``; ``{field prefix in the file: "--set KEY"}`` for blaming problems on the flag that set
        the value; and problems with unknown keys or variants, each named ``--set KEY``.
    """
    from trainers.presets import leaves

    out = copy.deepcopy(raw)
    base_over: dict = {}
    flags: dict[str, str] = {}
    probs: Problems = []
    sections = _sweep_sections()
    for key, val in overrides.items():
        sub = {key: val}
        if key == "base":
            base_over = deep_merge(base_over, val if isinstance(val, dict) else {})
            if not isinstance(val, dict):
                probs.append(("--set base", "give a field of base, e.g. --set base.train.steps=2000"))
            flags.update({p: f"--set {p}" for p in leaves(sub)})
        elif key in sections:
            if key == "variants" and isinstance(val, dict):
                known = list((raw.get("variants") or {}) if isinstance(raw.get("variants"), dict) else [])
                for name in list(val):
                    if name not in known:
                        probs.append((f"--set {next(iter(leaves({key: {name: val[name]}})))}", (
                            f"the file defines no variant {name!r}.{did_you_mean(str(name), known)} --set can "
                            f"change a variant the file defines ({', '.join(map(str, known)) or 'none'}); add "
                            f"a new variant in the file")))
                        val = {k: v for k, v in val.items() if k != name}
            if isinstance(val, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], val)
            else:
                out[key] = copy.deepcopy(val)
            flags.update({p: f"--set {p}" for p in leaves({key: val})})
        elif key in TrialConfig.model_fields:
            base_over = deep_merge(base_over, sub)
            flags.update({f"base.{p}": f"--set {p}" for p in leaves(sub)})
        else:
            choices = sorted(sections | {"base"}) + list(TrialConfig.model_fields)
            probs.append((f"--set {next(iter(leaves(sub)))}", (
                f"unknown key {key!r}.{did_you_mean(str(key), choices)} A --set key starts with a sweep "
                f"section ({', '.join(sorted(sections | {'base'}))}) or a trial-config field, which goes "
                f"into base ({', '.join(TrialConfig.model_fields)})")))
    if base_over:
        out["base"] = deep_merge(out.get("base") or {}, base_over) if isinstance(out.get("base"), dict) or \
            out.get("base") is None else out.get("base")
    return out, base_over, flags, probs


def _blame_flags(probs: Problems, flags: dict[str, str]) -> tuple[Problems, bool]:
    """Rename each problem whose field a ``--set`` flag set (the field or one inside it) to that flag;
    also return whether every problem is now a flag's."""
    out, all_flags = [], bool(probs)
    for loc, msg in probs:
        hit = next((flag for prefix, flag in sorted(flags.items(), key=lambda kv: -len(kv[0]))
                    if loc == prefix or loc.startswith((prefix + ".", prefix + "["))), None)
        if hit is None:
            all_flags = False
            out.append((loc, msg))
        else:
            out.append((f"{hit} (sets {loc})" if loc != hit.removeprefix("--set ") else hit, msg))
    return out, all_flags


def _variant_resources(spec: SweepSpec) -> tuple[dict[str, Resources], Problems]:
    """Each variant's per-trial resources: the sweep's ``resources`` with the variant's own
    ``resources`` block merged over it (``variants.lamo.resources: {gpu: 0.25}`` keeps the sweep's
    ``cpu``). Problems are named ``variants.<name>.resources.<field>``."""
    out: dict[str, Resources] = {}
    probs: Problems = []
    for name, own in spec.variants.items():
        mine = own.get("resources")
        if mine is None:
            out[name] = spec.resources
            continue
        where = f"variants.{name}.resources"
        if not isinstance(mine, dict):
            probs.append((where, f"must be a mapping such as {{gpu: 0.25, cpu: 2}} (got {mine!r})"))
            continue
        try:
            out[name] = Resources.model_validate(deep_merge(spec.resources.model_dump(), mine))
        except ValidationError as e:
            probs += _pydantic_problems(e, Resources, where)
    return out, probs


def _variant_methods(spec: SweepSpec) -> tuple[dict[str, str], Problems]:
    """Each variant's ``method:`` (the paper method it stands for in the analysis, e.g. ``method: lamo`` on
    a variant ``lamo-smollm2``), as a method key of :data:`trainers.methods.METHODS`. Not part of any
    trial's config hash: it names the trials, it does not change them. Problems are named
    ``variants.<name>.method``."""
    from trainers.methods import METHODS, method_key

    out: dict[str, str] = {}
    probs: Problems = []
    for name, own in spec.variants.items():
        if not isinstance(own, dict) or own.get("method") is None:
            continue
        key = method_key(own["method"])
        if key not in METHODS:
            probs.append((f"variants.{name}.method", f"{own['method']!r} is not a method of the paper's tables; "
                          f"use one of {', '.join(m.key for m in METHODS.values())} (or leave it out: the "
                          f"variant's name is then its method when it names one)"))
        else:
            out[name] = key
    return out, probs


class Sweep:
    """A validated sweep: the spec, its source file, and the expanded trial configs.

    Build with :meth:`load`. ``trials`` are in grid order (task, sample ratio, seed, variant, extra
    axes); ``storage`` is absolute.
    """

    def __init__(self, spec: SweepSpec, trials: list[TrialConfig], source: str, raw: dict,
                 variant_resources: dict[str, Resources] | None = None,
                 variant_methods: dict[str, str] | None = None):
        self.spec, self.trials, self.source, self.raw = spec, trials, source, raw
        #: per-variant ``method:`` (:func:`_variant_methods`), tagged on each trial's run (``lamo.method``)
        self.variant_methods: dict[str, str] = dict(variant_methods or {})
        #: per-variant resources (:func:`_variant_resources`); a variant missing here uses ``spec.resources``
        self.variant_resources: dict[str, Resources] = dict(variant_resources or {})

    def trial_resources(self, cfg: TrialConfig) -> Resources:
        """The resources one trial asks Ray for: its variant's ``resources`` block merged over the sweep's.
        Not part of the trial's config hash (where a trial runs does not change what it computes)."""
        return self.variant_resources.get(cfg.variant, self.spec.resources)

    def resource_blocks(self) -> list[tuple[str, Resources]]:
        """``(field, resources)`` for each distinct request the grid's trials make: ``("resources", ...)``
        for trials on the sweep-wide block, ``("variants.<name>.resources", ...)`` for a variant's own."""
        out: dict[str, Resources] = {}
        for variant in dict.fromkeys(t.variant for t in self.trials):
            own = isinstance(self.spec.variants.get(variant), dict) and "resources" in self.spec.variants[variant]
            out[f"variants.{variant}.resources" if own else "resources"] = self.trial_resources_of(variant)
        return list(out.items()) or [("resources", self.spec.resources)]

    def trial_resources_of(self, variant: str) -> Resources:
        """The resources of ``variant``'s trials (see :meth:`trial_resources`)."""
        return self.variant_resources.get(variant, self.spec.resources)

    @property
    def storage(self) -> Path:
        return Path(self.spec.storage).expanduser().resolve()

    @property
    def data_dir(self) -> Path:
        """The data directory: the sweep's ``data_dir`` field, else ``$LAMO_DATA_DIR``, else
        ``<storage>/data`` (absolute)."""
        from trainers.paths import default_data_dir

        if self.spec.data_dir:
            return Path(self.spec.data_dir).expanduser().resolve()
        return default_data_dir(self.storage)

    @property
    def experiment(self) -> str:
        return self.spec.tracking.experiment or self.spec.name

    @classmethod
    def load(cls, path: str | Path, overrides: dict | None = None) -> "Sweep":
        """Read, validate and expand a sweep file; ``overrides`` are merged into ``base`` first.

        Raises:
            SweepError: every problem found, each naming its field and the fix.
        """
        raw = read_yaml(Path(path))
        return cls.from_dict(raw, str(path), overrides)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<sweep>", overrides: dict | None = None) -> "Sweep":
        """Validate and expand an already parsed sweep file (the mapping :func:`read_yaml` returns).

        Each trial is ``TrialConfig`` defaults <- its variant's preset <- ``base`` (with ``overrides``,
        the ``--set`` flags, merged in) <- the variant's own fields <- the grid axes, then validated.

        Args:
            raw: the sweep mapping (``name``, ``base``, ``variants``, ``grid``, ...).
            source: the file name used in messages.
            overrides: the ``--set`` / ``--steps`` flags as a nested mapping (:func:`apply_overrides`): a
                sweep section (``grid``, ``resources``, ``variants``, ...) is changed in place, any other
                key (a trial-config field) is merged into ``base``. A problem in a value a flag set is
                named after the flag (``--set grid.seed``), and the message blames the command line when
                every problem is a flag's.

        Raises:
            SweepError: every problem found, each as ``(field, message)`` naming the field and the fix:
                schema errors, unknown presets / variants / axes, a ``base`` value that would replace a
                field the variant's preset sets (:func:`trainers.presets.overridden_by_base`), invalid
                resolved trials, and identical trials (same config hash).
        """
        flags: dict[str, str] = {}
        base_over: dict = {}
        if overrides:
            raw, base_over, flags, probs = apply_overrides(raw, overrides)
            if probs:
                raise SweepError("command line", probs, what="--set flag")
        try:
            return cls._from_dict(raw, source, base_over)
        except SweepError as e:
            if not flags:
                raise
            probs, only_flags = _blame_flags(e.problems, flags)
            raise SweepError("command line" if only_flags else source, probs,
                             what="--set flag" if only_flags else "sweep file") from None

    @classmethod
    def _from_dict(cls, raw: dict, source: str, base_over: dict) -> "Sweep":
        try:
            spec = SweepSpec.model_validate(raw)
        except ValidationError as e:
            raise SweepError(source, _pydantic_problems(e, SweepSpec, "")) from None
        layers, probs = _variant_layers(spec, base_over)
        resources, res_probs = _variant_resources(spec)
        methods, method_probs = _variant_methods(spec)
        probs += res_probs + method_probs + _grid_problems(spec)
        if probs:
            raise SweepError(source, probs)
        trials, probs = _expand(spec, layers)
        if probs:
            raise SweepError(source, list(dict.fromkeys(probs)))  # one line per distinct problem
        hashes: dict[str, TrialConfig] = {}
        for t in trials:
            h = t.config_hash()
            if h in hashes:
                raise SweepError(source, [("grid", f"trials {hashes[h].slug()} and {t.slug()} are identical "
                                                   f"(config hash {h}); remove the duplicate axis value")])
            hashes[h] = t
        return cls(spec, trials, source, raw, resources, methods)


Problems = list[tuple[str, str]]


def _task_domain(task: str) -> str | None:
    """The registry domain of ``task`` (``None`` for an unknown task, reported by the trial validation)."""
    try:
        return get_task(task).domain
    except KeyError:
        return None


def _variant_layers(spec: SweepSpec, overrides: dict) -> tuple[dict[str, tuple[str | None, dict]], Problems]:
    """Each variant's ``(preset name, own fields)``, and the problems: unknown presets, and ``base`` (or
    ``--set``) values that would replace a field the variant's preset sets (checked for the preset of each
    domain of the grid's tasks, :data:`trainers.presets.DOMAIN_VARIANTS`)."""
    from trainers.presets import get_preset, leaves, overridden_by_base

    from_cli = leaves(overrides)
    domains = sorted({d for d in map(_task_domain, spec.grid.task) if d is not None}) or [None]
    layers: dict[str, tuple[str | None, dict]] = {}
    probs: Problems = []
    for name, own in spec.variants.items():
        own = dict(own)
        own.pop("resources", None)  # where the trials run, not what they compute: see _variant_resources
        own.pop("method", None)  # what the analysis calls the variant, not what it computes: see _variant_methods
        preset = own.pop("preset", None)
        if preset is None:
            layers[name] = (None, own)
            continue
        try:
            get_preset(str(preset))
        except KeyError as e:
            probs.append((f"variants.{name}.preset", e.args[0]))
            continue
        layers[name] = (str(preset), own)
        seen = set()
        for domain in domains:
            for path, mine, theirs in overridden_by_base(get_preset(str(preset), domain), spec.base, own):
                if (path, repr(mine)) in seen:
                    continue
                seen.add((path, repr(mine)))
                src = f"--set {path}" if path in from_cli else f"base.{path}"
                probs.append((f"variants.{name}", (
                    f"preset {preset!r} sets {path} = {mine!r}, but {src} = {theirs!r} would replace it for "
                    f"this variant; say which one it uses: set variants.{name}.{path} (to {theirs!r} to keep "
                    f"the base value), or move {path} from base into the variants that need it")))
    return layers, probs


def _grid_problems(spec: SweepSpec) -> Problems:
    """Unknown or repeated variants in ``grid.variant``; extra axes that are fixed axes, empty, or not a
    trial-config field."""
    g, probs = spec.grid, []
    variants = g.variant or list(spec.variants)
    for i, v in enumerate(variants):
        if v not in spec.variants:
            probs.append((f"grid.variant[{i}]", f"unknown variant {v!r}.{did_you_mean(v, spec.variants)} "
                          f"Defined variants: {', '.join(spec.variants)}"))
    for axis, values in g.axes.items():
        if axis.split(".")[0] in _AXIS_FIXED:
            probs.append((f"grid.axes.{axis}", f"use grid.{axis.split('.')[0]} for this axis"))
        elif not values:
            probs.append((f"grid.axes.{axis}", "empty axis: give at least one value"))
        elif (bad := _axis_path_problem(axis)):
            probs.append((f"grid.axes.{axis}", bad))
    if len(set(variants)) != len(variants):
        probs.append(("grid.variant", "a variant is listed twice; list each once"))
    return probs


def _expand(spec: SweepSpec, layers: dict[str, tuple[str | None, dict]]) -> tuple[list[TrialConfig], Problems]:
    """The grid's trials in order (task, sample ratio, seed, variant, extra axes), each ``preset <- base
    <- own fields <- axes`` validated, the preset the one of the task's domain
    (:func:`trainers.presets.get_preset`); a problem is reported at the sweep field that set the bad value."""
    from trainers.presets import get_preset

    g = spec.grid
    axes = list(g.axes.items())
    trials: list[TrialConfig] = []
    probs: Problems = []
    combos = [(task, ratio, *rest) for task in g.task for ratio in g.ratios(task)
              for rest in itertools.product(g.seed, g.variant or list(spec.variants), *[vals for _, vals in axes])]
    for task, ratio, seed, variant, *extra in combos:
        preset_name, own = layers[variant]
        preset = get_preset(preset_name, _task_domain(task)) if preset_name else {}
        merged = deep_merge(deep_merge(preset, spec.base), own)
        for (axis, _), val in zip(axes, extra):
            try:
                set_dotted(merged, axis, val)
            except KeyError:
                probs.append((f"grid.axes.{axis}", "not a path to a trial-config field"))
        merged.update(task=task, sample_ratio=ratio, seed=seed, variant=variant)
        try:
            trials.append(TrialConfig.model_validate(merged))
        except ValidationError as e:
            for loc, msg in _pydantic_problems(e, TrialConfig, ""):
                path = tuple(loc.split(".")) if loc else ()
                if loc.startswith("task"):
                    where = f"grid.task ({task!r})"
                elif _has_path(own, path) or (loc.split(".")[0] not in merged and path[:1] in own):
                    where = f"variants.{variant}.{loc}"
                elif _has_path(spec.base, path):
                    where = f"base.{loc}"
                elif any(loc == a or loc.startswith(a + ".") for a, _ in axes):
                    where = f"grid.axes.{loc}"
                else:
                    where = f"variants.{variant}.{loc}"
                probs.append((where.rstrip("."), msg))
    return trials, probs
