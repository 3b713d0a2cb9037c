"""MLflow side of a sweep: the store, the parent run of an invocation and the child run of a trial.

What is written where (tags, params, metric keys) is the tracking contract, :mod:`trainers.contract`;
this module only talks to MLflow. Tracking URIs are always absolute (Ray changes each trial's working
directory); a SQLite store is created by the driver before trials start (concurrent first-time schema
creation fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from trainers import contract as C
from trainers.config import TrialConfig

if TYPE_CHECKING:
    from orchestrator.schema import Sweep


class TrackingError(RuntimeError):
    """The tracking store cannot be used (unreachable server, bad URI); raised before any compute."""


def resolve_tracking_uri(uri: str | None, storage: Path) -> str:
    """The sweep's tracking URI: ``uri`` (the ``--tracking-uri`` flag, else the sweep file's
    ``tracking.uri``), else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<storage>/mlflow.db``; URIs with a
    scheme pass through unchanged except relative SQLite paths, made absolute
    (:func:`trainers.contract.resolve_tracking_uri`, shared with ``lamo-analysis``)."""
    return C.resolve_tracking_uri(uri, storage)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """For ``http(s)`` URIs, GET ``/health`` once, waiting at most ``timeout`` seconds
    (:func:`trainers.contract.server_problem`).

    Raises:
        TrackingError: naming the URI and how to start a server, when it does not answer.
    """
    problem = C.server_problem(uri, timeout)
    if problem:
        raise TrackingError(
            f"{problem}. Start it first (scripts/tracking_server.sh start, or `mlflow server "
            f"--backend-store-uri sqlite:///$PWD/mlflow.db --host 127.0.0.1 --port 5000 --workers 1`), or drop "
            f"--tracking-uri / tracking.uri / ${C.TRACKING_URI_ENV} to use a local SQLite store.")


def open_store(sweep: "Sweep", tracking_uri: str | None = None, log=print) -> str:
    """The sweep's tracking store, resolved and reachable; nothing in it is touched yet.

    The URI is ``tracking_uri`` (``--tracking-uri``), else the sweep's ``tracking.uri``, else
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<storage>/mlflow.db`` (:func:`trainers.contract.resolve_tracking_uri`);
    the sweep's storage directory is created. Returns the absolute URI.

    Raises:
        TrackingError: ``$MLFLOW_TRACKING_URI`` (when it is the one used) is not a URI MLflow accepts, or a
            server does not answer (:func:`check_reachable`).
    """
    storage = sweep.storage
    storage.mkdir(parents=True, exist_ok=True)
    explicit = tracking_uri or sweep.spec.tracking.uri
    uri = C.resolve_tracking_uri(explicit, storage)
    if not explicit and os.environ.get(C.TRACKING_URI_ENV):
        from orchestrator.schema import tracking_uri_problem

        if problem := tracking_uri_problem(os.environ[C.TRACKING_URI_ENV]):
            raise TrackingError(f"${C.TRACKING_URI_ENV}: {problem}")
        log(f"[sweep] tracking URI from ${C.TRACKING_URI_ENV}: {uri}")
    check_reachable(uri)
    return uri


#: Prefixes of the environment variables a trial needs to use the store as the driver does (MLflow's
#: settings and credentials, e.g. ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``; the Databricks
#: SDK's for ``databricks`` URIs); forwarded to every Ray worker (:func:`forwarded_env`).
FORWARDED_ENV_PREFIXES = ("MLFLOW_", "DATABRICKS_")


def forwarded_env(environ=None) -> dict[str, str]:
    """The driver's variables with a :data:`FORWARDED_ENV_PREFIXES` prefix (``environ`` default
    ``os.environ``), for the Ray job's ``runtime_env["env_vars"]`` (:func:`orchestrator.sweep._ray_session`)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def client(uri: str):
    """An ``MlflowClient`` for ``uri`` (absolute, see :func:`resolve_tracking_uri`)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


#: Stores the driver and trials reach directly (no server): a new experiment keeps its artifacts under the
#: sweep's storage (absolute; MLflow's default, ``./mlruns``, would follow each trial's working directory).
LOCAL_ARTIFACT_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file")


def ensure_experiment(uri: str, name: str, artifact_root: Path | None) -> str:
    """Create the store's schema (SQLite) and the experiment if needed; return its id. For the stores
    of :data:`LOCAL_ARTIFACT_SCHEMES` a new experiment's artifact location is ``<artifact_root>/<name>``."""
    c = client(uri)
    c.search_experiments(max_results=1)  # creates/migrates the SQLite schema once, in the driver
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    loc = None  # a server, Databricks or a plugin store chooses its own artifact location
    if artifact_root is not None and C.uri_scheme(uri).split("+", 1)[0] in LOCAL_ARTIFACT_SCHEMES:
        loc = (Path(artifact_root) / name).resolve().as_uri()
    return c.create_experiment(name, artifact_location=loc)


def git_commit() -> str:
    """The project's git commit (``unknown`` outside a checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a trial's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "peft", "gymnasium", "mujoco", "numpy", "ray", "mlflow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def finished_hashes(uri: str, experiment_id: str) -> dict[str, str]:
    """``{config_hash: run_id}`` of FINISHED trial runs in the experiment (paginated)."""
    c = client(uri)
    out: dict[str, str] = {}
    token = None
    while True:
        page = c.search_runs([experiment_id], f"tags.`{C.ROLE}` = '{C.ROLE_TRIAL}' and attributes.status = 'FINISHED'",
                             max_results=1000, page_token=token)
        for r in page:
            h = r.data.tags.get(C.CONFIG_HASH)
            if h:
                out[h] = r.info.run_id
        token = page.token
        if not token:
            return out


def start_parent_run(uri: str, experiment_id: str, sweep_name: str, sweep_file: Path | None,
                     trials: list[TrialConfig], skipped: int, changes: str | None = None,
                     description: str = "") -> str:
    """Create the parent run of this invocation (tags, params and artifacts of :mod:`trainers.contract`):
    the sweep file and the resolved trials as artifacts; ``changes`` (a summary of how the sweep changed
    since its last invocation) as a tag; the sweep's ``description`` as the run's description (tag
    :data:`trainers.contract.NOTE`). Returns the run id."""
    import hashlib

    from mlflow.entities import Param

    c = client(uri)
    sha = hashlib.sha256(Path(sweep_file).read_bytes()).hexdigest() if sweep_file else ""
    tags = {C.ROLE: C.ROLE_SWEEP, C.SWEEP: sweep_name, C.SWEEP_FILE_SHA256: sha, C.GIT_COMMIT: git_commit()}
    if changes:
        tags[C.CHANGES] = changes
    if description.strip():
        tags[C.NOTE] = description.strip()
    rid = c.create_run(experiment_id, run_name=f"{sweep_name}-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags).info.run_id
    c.log_batch(rid, params=[Param("n_trials", str(len(trials))), Param("n_skipped_finished", str(skipped))])
    if sweep_file:
        c.log_artifact(rid, str(sweep_file))
    c.log_text(rid, json.dumps([t.record() for t in trials], indent=1), C.RESOLVED_TRIALS_ARTIFACT)
    return rid


@dataclass
class SweepPlan:
    """What this invocation of a sweep runs, from what its experiment already holds (:meth:`read`,
    :func:`plan_sweep`)."""

    experiment_id: str
    todo: list[TrialConfig]  # trials without a FINISHED run, in the sweep's order
    skipped: list[str] = field(default_factory=list)  # slugs of the trials already FINISHED
    changes: dict = field(default_factory=dict)  # previous_parent_run_id, added (slugs), removed (count)

    @classmethod
    def read(cls, uri: str, sweep: "Sweep") -> "SweepPlan":
        """Open the sweep's experiment (created with its artifacts under ``<storage>/mlartifacts`` when new,
        :func:`ensure_experiment`) and compare the sweep's trials with what it holds: a trial whose config
        hash has a FINISHED run is skipped (:func:`finished_hashes`); the trials added or changed since the
        sweep's latest invocation, and the number no longer in it, go to :attr:`changes`
        (:func:`previous_trial_hashes`). Logs nothing (:func:`plan_sweep` tells).

        Raises:
            the MLflow client's errors (the store was found reachable before, :func:`open_store`).
        """
        exp_id = ensure_experiment(uri, sweep.experiment, sweep.storage / "mlartifacts")
        done = finished_hashes(uri, exp_id)
        prev_id, prev = previous_trial_hashes(uri, exp_id, sweep.spec.name)  # (None, []): no earlier one
        prev = set(prev)
        trials = list(zip(sweep.trials, [t.config_hash() for t in sweep.trials]))
        changes = {"previous_parent_run_id": prev_id,
                   "added": [t.slug() for t, h in trials if prev and h not in prev],
                   "removed": len(prev - {h for _, h in trials})}
        return cls(exp_id, [t for t, h in trials if h not in done], [t.slug() for t, h in trials if h in done],
                   changes)


def plan_sweep(uri: str, sweep: "Sweep", log=print) -> SweepPlan:
    """Plan this invocation (:meth:`SweepPlan.read`: the experiment opened, FINISHED trials skipped, what
    changed since the sweep's latest invocation) and say so: the trials skipped, and the trials added or
    changed and the number no longer in the sweep (their runs are kept)."""
    plan = SweepPlan.read(uri, sweep)
    if plan.skipped:
        log(f"[sweep] {len(plan.skipped)} trial(s) already FINISHED in experiment {sweep.experiment!r}: skipped")
    ch = plan.changes  # added or removed: there is an earlier invocation to compare with
    if ch["added"] or ch["removed"]:
        log(f"[sweep] the sweep changed since its last invocation (parent run {ch['previous_parent_run_id']}): "
            f"{len(ch['added'])} new or changed trial(s) will run; {ch['removed']} trial(s) no longer in the sweep "
            f"are left alone (their runs are kept)")
    return plan


@contextlib.contextmanager
def parent_run(uri: str, sweep: "Sweep", plan: SweepPlan) -> Iterator[str]:
    """The parent run of this invocation (:func:`start_parent_run`: the sweep file if it is one, the
    resolved trials, the skipped count, a summary of :attr:`SweepPlan.changes`); yields its id. If the
    block raises (a failed fan-out, Ctrl-C), the run ends ``KILLED`` and the error goes on; otherwise it
    stays open for :func:`finish_parent_run`."""
    ch = plan.changes
    changes = (f"previous={ch['previous_parent_run_id']} added={len(ch['added'])} removed={ch['removed']}"
               if ch.get("previous_parent_run_id") else None)
    source = Path(sweep.source)
    rid = start_parent_run(uri, plan.experiment_id, sweep.spec.name, source if source.is_file() else None,
                           sweep.trials, len(plan.skipped), changes, sweep.spec.description)
    try:
        yield rid
    except BaseException:
        set_run_status(uri, rid, "KILLED")
        raise


def finish_parent_run(uri: str, run_id: str, finished: int, failed: int, skipped: int,
                      interrupted: int = 0) -> None:
    """Log the trial counts (:data:`trainers.contract.PARENT_METRICS`) and end the parent run: FAILED if
    any trial failed, else KILLED if any was interrupted (Ctrl-C), else FINISHED."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    counts = dict(zip(C.PARENT_METRICS, (finished, failed, skipped, interrupted), strict=True))
    c = client(uri)
    c.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in counts.items()])
    c.set_terminated(run_id, "FAILED" if failed else "KILLED" if interrupted else "FINISHED")


def log_report(uri: str, run_id: str, report_dir: Path) -> None:
    """Attach the end-of-sweep report (every file under ``report_dir``: tables, figures, claims) to the
    parent run ``run_id``, under :data:`trainers.contract.REPORT_ARTIFACT_DIR`."""
    client(uri).log_artifacts(run_id, str(report_dir), C.REPORT_ARTIFACT_DIR)


def set_run_status(uri: str, run_id: str, status: str) -> None:
    """End a run with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``)."""
    client(uri).set_terminated(run_id, status)


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean "tracking server unreachable or overloaded, try again later"."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (OSError, requests.exceptions.RequestException)):
        return True
    if isinstance(exc, MlflowException):
        text = str(exc).lower()
        return any(w in text for w in ("connection", "max retries", "timed out", "timeout", "503", "502",
                                       "504", "database is locked", "refused", "unavailable"))
    return False


def retry(fn, wait_s: float, first_delay: float = 1.0, max_delay: float = 30.0):
    """Call ``fn`` until it succeeds, retrying transient tracking errors (:func:`is_transient`) with
    exponential back-off for up to ``wait_s`` seconds; other errors, and the last transient one, raise."""
    deadline = time.monotonic() + wait_s
    delay = first_delay
    while True:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            if not is_transient(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, max_delay)


def previous_trial_hashes(uri: str, experiment_id: str, sweep_name: str) -> tuple[str | None, list[str]]:
    """Run id and trial config hashes of the latest earlier invocation of ``sweep_name`` (from its
    ``resolved_trials.json`` artifact); ``(None, [])`` when there is none."""
    import mlflow.artifacts

    from trainers.config import TrialConfig as _TC

    c = client(uri)
    runs = c.search_runs([experiment_id], f"tags.`{C.ROLE}` = '{C.ROLE_SWEEP}' and tags.`{C.SWEEP}` = '{sweep_name}'",
                         max_results=1, order_by=["attributes.start_time DESC"])
    if not runs:
        return None, []
    rid = runs[0].info.run_id
    try:  # the store's own URI for every scheme (load_text("runs:/...") would ask the process-wide default)
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(mlflow.artifacts.download_artifacts(run_id=rid, artifact_path=C.RESOLVED_TRIALS_ARTIFACT,
                                                            tracking_uri=uri, dst_path=tmp)).read_text()
    except Exception:  # noqa: BLE001 - an old or partial parent run: nothing to compare
        return rid, []
    return rid, [_TC.model_validate(t).config_hash() for t in json.loads(text)]


def _attempt_record(parent_run_id: str) -> dict:
    """The record of a new attempt (:func:`trainers.contract.attempt_tag`), ``resumed_at_step`` not yet known."""
    return {"parent_run_id": parent_run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


class TrialRun:
    """The MLflow child run of one trial, used from inside the trial process.

    :meth:`open` reattaches to an unfinished child run of the same config hash (a retry or resume) or
    creates a new one; metrics are sent with ``log_batch`` and explicit steps. Each opening is an
    attempt (``attempt``: 1 for a new run), recorded as tags (:data:`trainers.contract.ATTEMPT`,
    :func:`trainers.contract.attempt_tag`) so the MLflow UI shows every resumed attempt and the parent
    run that resumed it.
    """

    def __init__(self, uri: str, run_id: str, attempt: int = 1, attempt_record: dict | None = None):
        self.uri, self.run_id, self.c = uri, run_id, client(uri)
        self.attempt, self.attempt_record = attempt, attempt_record

    @classmethod
    def open(cls, uri: str, experiment_id: str, parent_run_id: str, cfg: TrialConfig,
             wait_s: float = 0.0, method: str | None = None) -> "TrialRun":
        """Reattach to the trial's child run, or create it: the run of experiment ``experiment_id`` whose
        ``config_hash`` tag is ``cfg.config_hash()`` and that did not finish (so a retried or resumed trial
        continues its own run: one FINISHED child per config hash), else a new child of ``parent_run_id``
        with the config as params and the grid axes as tags (:mod:`trainers.contract`).

        Args:
            uri: the tracking URI (absolute; Ray changes each trial's working directory).
            wait_s: retry for up to this many seconds while the tracking server is unreachable.
            method: the paper method the trial's variant stands for (a sweep variant's ``method:``), set as
                the tag :data:`trainers.contract.METHOD`; ``None`` sets none.

        Raises:
            the MLflow client's last transient error (:func:`is_transient`: connection refused, HTTP 5xx)
            when the server stayed unreachable for ``wait_s`` seconds; other errors at once.
        """
        return retry(lambda: cls._open(uri, experiment_id, parent_run_id, cfg, method), wait_s)

    @classmethod
    def _open(cls, uri: str, experiment_id: str, parent_run_id: str, cfg: TrialConfig,
              method: str | None = None) -> "TrialRun":
        c = client(uri)
        h = cfg.config_hash()
        existing = c.search_runs([experiment_id], f"tags.{C.CONFIG_HASH} = '{h}' and tags.`{C.ROLE}` = '{C.ROLE_TRIAL}' "
                                 f"and attributes.status != 'FINISHED'", max_results=1,
                                 order_by=["attributes.start_time DESC"])
        if existing:
            rid = existing[0].info.run_id
            try:
                attempt = int(existing[0].data.tags.get(C.ATTEMPT, "1")) + 1
            except ValueError:
                attempt = 2
            c.update_run(rid, status="RUNNING")
            run = cls(uri, rid, attempt, _attempt_record(parent_run_id))
            run.set_tags({C.LAST_PARENT_RUN: parent_run_id, **run.attempt_tags(),
                          **({C.METHOD: method} if method else {})})
            return run
        record = _attempt_record(parent_run_id)
        tags = {C.ROLE: C.ROLE_TRIAL, C.PARENT_RUN: parent_run_id,
                C.ATTEMPT: "1", C.attempt_tag(1): json.dumps(record),
                **C.axis_tags(cfg.task, cfg.sample_ratio, cfg.seed, cfg.variant),
                C.CONFIG_HASH: h, C.GIT_COMMIT: git_commit(), **({C.METHOD: method} if method else {}),
                **{f"{C.VERSION_PREFIX}{k}": v for k, v in package_versions().items()}}
        run = c.create_run(experiment_id, run_name=cfg.slug(), tags=tags)
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in C.flatten(cfg.record()).items()]
        for i in range(0, len(params), 100):
            c.log_batch(run.info.run_id, params=params[i:i + 100])
        return cls(uri, run.info.run_id, 1, record)

    def attempt_tags(self, resumed_at_step: int | None = None) -> dict[str, str]:
        """Tags of this attempt: :data:`trainers.contract.ATTEMPT` and its record
        (:func:`trainers.contract.attempt_tag`), with ``resumed_at_step`` (the step of the checkpoint it
        continued from, 0 for a fresh start) once known; ``{}`` for a run object not made by :meth:`open`."""
        if self.attempt_record is None:
            return {}
        record = dict(self.attempt_record)
        if resumed_at_step is not None:
            record["resumed_at_step"] = int(resumed_at_step)
        return {C.ATTEMPT: str(self.attempt), C.attempt_tag(self.attempt): json.dumps(record)}

    def log_dataset(self, cfg: TrialConfig, subset_hash: str, path: Path | None, profile: dict) -> None:
        """Log the trial's data subset as the run's dataset input (what ``mlflow.log_input`` records):
        name :func:`trainers.contract.dataset_name`, digest ``subset_hash``, source the dataset file
        (``local``, a ``file://`` URI) or, without a file (Minari), the dataset's source name; ``profile``
        (e.g. ``{"n_trajectories": 100}``) as the dataset's profile; context
        :data:`trainers.contract.DATASET_CONTEXT`. MLflow keeps one input per (run, dataset), so logging
        it again on a resumed attempt adds nothing."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        if path is not None:
            source_type, source = "local", json.dumps({"uri": Path(path).resolve().as_uri()})
        else:
            source_type, source = cfg.data_source, json.dumps({"name": cfg.data_source, "task": cfg.task})
        ds = Dataset(name=C.dataset_name(cfg.task, cfg.sample_ratio), digest=subset_hash, source_type=source_type,
                     source=source, profile=json.dumps(profile, sort_keys=True) if profile else None)
        self.c.log_inputs(self.run_id, [DatasetInput(ds, [InputTag(MLFLOW_DATASET_CONTEXT, C.DATASET_CONTEXT)])])

    def log_checkpoint(self, checkpoint_dir: Path, upload: bool = False) -> None:
        """Record where the final checkpoint is (tag :data:`trainers.contract.CHECKPOINT_LOCATION`, a
        ``file://`` URI on the machine that trained it); with ``upload``, also copy the directory's files
        (``state.pt``: trainable weights, optimiser, RNG states; :mod:`trainers.checkpoint`) into the run's
        artifacts under :data:`trainers.contract.CHECKPOINT_ARTIFACT_DIR`."""
        checkpoint_dir = Path(checkpoint_dir).resolve()
        self.set_tags({C.CHECKPOINT_LOCATION: checkpoint_dir.as_uri()})
        if upload:
            self.c.log_artifacts(self.run_id, str(checkpoint_dir), C.CHECKPOINT_ARTIFACT_DIR)

    def system_metrics(self):
        """MLflow's own system-metrics monitor for this run (CPU, memory, disk, network, GPU under
        ``system/``), started, when MLflow's switch ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` is on; else
        ``None``. It continues the steps of an earlier attempt (``resume_logging``), so no (key, step)
        repeats; stop it with its ``finish()`` before the run ends."""
        from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING

        if not MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get():
            return None
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(self.run_id, resume_logging=True, tracking_uri=self.uri)
        monitor.start()
        return monitor

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags on the child run (values turned into strings)."""
        from mlflow.entities import RunTag

        self.c.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Send ``metrics`` (keys of :mod:`trainers.contract`, values as floats) at training step ``step``,
        in ``log_batch`` calls of at most 1,000 metrics (MLflow's limit per call).

        Raises:
            mlflow.exceptions.MlflowException / requests errors: the server refused or is unreachable
                (callers retry transient ones, :func:`retry`).
        """
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        ms = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        for i in range(0, len(ms), 1000):
            self.c.log_batch(self.run_id, metrics=ms[i:i + 1000])

    def logged_steps(self, key: str) -> set[int]:
        """Steps at which metric ``key`` already reached this run (empty if never logged)."""
        return {m.step for m in self.c.get_metric_history(self.run_id, key)}

    def finish(self, status: str) -> None:
        """End the child run with ``status`` (``FINISHED``, ``FAILED``, or ``KILLED`` when interrupted)."""
        self.c.set_terminated(self.run_id, status)
