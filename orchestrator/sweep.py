"""Run a sweep: validate -> check inputs -> prepare -> Ray Tune fan-out -> MLflow runs -> analysis.

The driver (``lamo-sweep``, :func:`run_sweep`) does, in order, one call per step, and stops at the first
problem before any compute:

1. load: validate and expand the sweep file (:mod:`orchestrator.schema`, before :func:`run_sweep`);
2. the tracking store, resolved and reachable (:func:`orchestrator.tracking.open_store`);
3. check inputs: every input can be had here (D4RL files and hub LMs offline cannot:
   :func:`trainers.inputs.require_available`, through :func:`_inputs`), before the store is touched;
4. plan: open the experiment, skip trials whose config hash already has a FINISHED child run, note what
   changed since the last invocation (:func:`orchestrator.tracking.plan_sweep`: it reads the plan,
   :meth:`orchestrator.tracking.SweepPlan.read`, and says what it skips and what changed);
5. fan out (:func:`_fan_out`): the inputs of the trials to run, with :func:`trainers.inputs.ensure_inputs`
   (the sequence every entry point shares): ``prepare`` what is absent (collect datasets, pre-train
   project LMs, downloads; once, in the driver), then validate every distinct input once (each dataset
   with the trials' own loader, each LM, each corpus): a missing or bad input stops the sweep here, before
   Ray starts and before any MLflow run is opened (with ``--address``, the driver connects to the cluster
   and checks its resources before preparing); then start (or connect to) Ray, open the parent MLflow run
   (:func:`orchestrator.tracking.parent_run`) and run one Tune trial per trial config with the sweep's
   per-trial resources;
6. record and analyse: close the parent run, write the analysis (tables, figures, claims) from the
   MLflow store and attach it to the parent run's artifacts (:func:`_analyse`).

Each Tune trial runs :func:`trial_trainable`: it opens (or reattaches to) its MLflow child run, trains
with :func:`trainers.train.run_trial` in a stable per-trial directory under ``<storage>/trials`` (so a
retried or restarted trial resumes from its last checkpoint), and reports evaluations to Tune.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import tracking
# the local-Ray workarounds live in orchestrator.ray_local; their names stay importable from here
from orchestrator.ray_local import (_RAY_CLUSTER_ENV, RAY_NON_LOOPBACK_SOCKETS,  # noqa: F401
                                    loopback_node_ip as _loopback_node_ip, reap_orphaned_ray_agents)
from trainers import contract as C
from orchestrator.schema import Sweep
from trainers.config import TrialConfig
from trainers.downloads import DownloadError
from trainers.inputs import InputsMissing, InputsUnusable, ensure_inputs, require_available


class MissingInputsError(RuntimeError):
    """Inputs the sweep needs are absent and cannot be produced here; the message says how to get them."""


class InvalidInputsError(MissingInputsError):
    """Inputs the sweep needs exist but are unusable (a corrupt dataset, an unreadable LM directory); the
    message has the loader's words and the fix. A subclass of :class:`MissingInputsError`: same exit 3."""


class _MlflowTuneReporter:
    """Binds :class:`trainers.train.Reporter` to the trial's MLflow child run and to Ray Tune.

    * Exactly once: metrics are buffered and sent to MLflow right after a checkpoint is written; the
      checkpoint itself holds the records not yet delivered (:meth:`state_dict`). A trial killed between
      two checkpoints resumes from the last one and re-creates the metrics logged after it; the records
      the checkpoint carried are compared with what the run already has (:meth:`load_state_dict`) and
      only the missing ones are sent. So each (key, step) reaches MLflow once, whether the kill came
      before, during or after a delivery, and even during a tracking outage.
    * Outages: if the tracking server is unreachable, the buffer is kept and training goes on; the next
      checkpoint tries again, and the end of the trial waits (with back-off, up to ``wait_s``) until
      everything is delivered. Nothing is lost unless the outage outlasts ``wait_s``.
    """

    def __init__(self, run: tracking.TrialRun, wait_s: float, say=print, data_dir: Path | None = None):
        self.run, self.wait_s, self.say, self.data_dir = run, wait_s, say, data_dir
        self.buffer: list[tuple[int, dict[str, float]]] = []
        self.tags: dict[str, str] = {}
        self.dataset: tuple | None = None  # (cfg, subset hash, file or None, profile): the run's dataset input
        self.outage_since: float | None = None
        self.unverified = 0  # leading buffer records restored from a checkpoint, maybe delivered already
        self.action_loss = self.best_score = float("nan")  # latest values, for Tune's progress table

    def start(self, cfg: TrialConfig, info: dict) -> None:
        self.tags.update({k: info[k] for k in (C.DATA_SUBSET_HASH, C.DEVICE, C.DATA_SOURCE)})
        if info.get(C.TEXT_SOURCE):
            self.tags[C.TEXT_SOURCE] = str(info[C.TEXT_SOURCE])[:5000]
        if info.get(C.DATASET_SHA256):
            self.tags[C.DATASET_SHA256] = str(info[C.DATASET_SHA256])
        if self.run is not None:  # this attempt's record gets the step it resumed from
            self.tags.update(self.run.attempt_tags(int(info.get("resumed_at_step", 0))))
        if self.data_dir is not None:
            from trainers.paths import trial_dataset_path

            path = trial_dataset_path(cfg, self.data_dir)
            profile = {k.split("/", 1)[1]: v for k, v in info.items() if k.startswith("data/")}
            self.dataset = (cfg, str(info[C.DATA_SUBSET_HASH]), path if path and path.exists() else None, profile)
        if info.get("resumed_at_step", 0) == 0:
            self.buffer.append((0, {k: float(v) for k, v in info.items() if k.startswith(C.STATIC_PREFIXES)}))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.buffer.append((step, dict(metrics)))
        self.action_loss = metrics.get(C.TRAIN_ACTION_LOSS, self.action_loss)

    def state_dict(self) -> dict:
        """Undelivered records and tags, saved in the trial's checkpoint (before delivery is tried)."""
        return {"buffer": [(s, dict(m)) for s, m in self.buffer], "tags": dict(self.tags)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the undelivered records of a checkpoint. Some may have reached the run already (a
        delivery under way or done when the trial died): the next delivery first drops the (key, step)
        pairs the run has, so a tracking outage at resume time does not hold training up."""
        restored = [(int(s), dict(m)) for s, m in state.get("buffer", [])]
        self.buffer = restored + self.buffer
        self.unverified = len(restored)
        self.tags.update(state.get("tags", {}))

    def _drop_delivered(self) -> None:
        head = self.buffer[:self.unverified]
        keys = sorted({k for _, m in head for k in m})
        have = {k: self.run.logged_steps(k) for k in keys}
        head = [(s, m2) for s, m in head if (m2 := {k: v for k, v in m.items() if s not in have[k]})]
        self.buffer = head + self.buffer[self.unverified:]
        self.unverified = 0

    def _send(self) -> None:
        if self.unverified:
            self._drop_delivered()
        if self.tags:
            self.run.set_tags(self.tags)
            self.tags = {}
        if self.dataset is not None:
            self.run.log_dataset(*self.dataset)
            self.dataset = None
        while self.buffer:
            step, metrics = self.buffer[0]
            self.run.log_metrics(step, metrics)
            self.buffer.pop(0)

    def flush(self, wait: bool = False) -> None:
        """Send what is buffered; on a transient error keep it (or, with ``wait``, retry up to ``wait_s``).
        The first failed delivery of an outage is reported (whether it happens mid-training or in the final
        wait), and so is the delivery that ends it."""
        try:
            self._send()
        except Exception as e:  # noqa: BLE001
            if not tracking.is_transient(e):
                raise
            if self.outage_since is None:
                self.outage_since = time.monotonic()
                self.say(f"[trial] tracking server unreachable ({type(e).__name__}); "
                         + (f"waiting up to {self.wait_s:.0f} s to deliver" if wait else "training goes on")
                         + f", {len(self.buffer)} metric records buffered")
            if not wait:
                return
            tracking.retry(self._send, self.wait_s)  # raises once wait_s has passed
        if self.outage_since is not None:
            self.say(f"[trial] tracking server back after {time.monotonic() - self.outage_since:.0f} s; "
                     f"buffered metrics delivered")
            self.outage_since = None

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        self.flush()
        from ray import tune

        # progress for Tune's console table (its columns are the first keys reported); MLflow has the rest
        if C.EVAL_BEST_SCORE in metrics:
            self.best_score = metrics[C.EVAL_BEST_SCORE]
        tune.report({"step": step, "action_loss": self.action_loss, "best_normalised_score": self.best_score})


def trial_workdir(storage: Path, cfg: TrialConfig) -> Path:
    """Stable directory of a trial: ``<storage>/trials/<slug>-<config hash>``."""
    return Path(storage) / "trials" / f"{cfg.slug()}-{cfg.config_hash()}"


def trial_trainable(config: dict, trials: dict[str, dict], ctx: dict) -> None:
    """Ray Tune function trainable. ``config = {"trial": <config hash>}`` (so Tune's tables and trial
    directories stay small); ``trials`` maps hashes to TrialConfig dicts and ``ctx`` is the sweep context,
    both passed once through the object store (``tune.with_parameters``). The trial's child run ends
    FINISHED, FAILED on an error, or KILLED when the worker is stopped from outside (``SystemExit`` or
    ``KeyboardInterrupt``, as on Ctrl-C); a worker killed outright (SIGKILL) leaves it RUNNING. A rerun
    resumes every run that is not FINISHED (:meth:`orchestrator.tracking.TrialRun.open`)."""
    import torch

    cfg = TrialConfig.model_validate(trials[config["trial"]])
    torch.set_num_threads(max(1, int(ctx.get("cpu_by_trial", {}).get(config["trial"], ctx["cpu"]))))
    # fail fast on an unreachable server (we buffer and retry ourselves) instead of MLflow's minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    wait_s = float(ctx.get("tracking_wait_s", 900))
    run = tracking.TrialRun.open(ctx["tracking_uri"], ctx["experiment_id"], ctx["parent_run_id"], cfg, wait_s,
                                 method=ctx.get("method_by_trial", {}).get(config["trial"]))
    from trainers.train import run_trial

    from trainers.checkpoint import CHECKPOINT_DIR

    reporter = _MlflowTuneReporter(run, wait_s, data_dir=Path(ctx["data_dir"]))
    workdir = trial_workdir(Path(ctx["storage"]), cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "trial.pid").write_text(f"{os.getpid()}\n")  # which process trains this trial (ops, fault tests)
    try:
        monitor = run.system_metrics()  # MLflow's own, when MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING is on
    except Exception as e:  # noqa: BLE001 - system metrics are a convenience, never a reason to fail
        print(f"[trial] MLflow system metrics not started: {e}")
        monitor = None
    try:
        run_trial(cfg, workdir, Path(ctx["data_dir"]), reporter)
        reporter.flush(wait=True)
        if monitor is not None:
            monitor.finish()
            monitor = None
        tracking.retry(lambda: run.log_checkpoint(workdir / CHECKPOINT_DIR, bool(ctx.get("log_checkpoints"))),
                       wait_s)
    except BaseException as e:
        if monitor is not None:
            monitor.finish()
        # Stopped from outside, not broken: on Ctrl-C in the driver's terminal Ray ends this worker (its own
        # process group) with SystemExit (measured: SystemExit(0)); a KeyboardInterrupt is treated alike.
        # The run is then KILLED (MLflow's status for that); a rerun resumes it either way.
        status = "FAILED" if isinstance(e, Exception) else "KILLED"
        try:
            tracking.retry(lambda: run.finish(status), min(wait_s, 60))
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise
    tracking.retry(lambda: run.finish("FINISHED"), wait_s)


@dataclass
class SweepResult:
    """What a sweep invocation did, trial by trial (slugs): ``finished`` (its child run is FINISHED in the
    store), ``failed`` (Ray Tune reports an error after its retries), ``interrupted`` (stopped before it
    finished: Ctrl-C / SIGINT or SIGUSR1 to the driver, which Ray Tune turns into a graceful stop; its child
    run is KILLED, or RUNNING if its worker died first, and a rerun resumes it from its checkpoint),
    ``skipped`` (already FINISHED before this invocation). ``exit_code``: 1 some trial failed, else 130 (the shell's code for SIGINT) some trial was
    interrupted, else 0."""

    experiment: str
    tracking_uri: str
    parent_run_id: str | None
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: dict[str, Path] = field(default_factory=dict)
    changes: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 130 if self.interrupted else 0


def run_sweep(sweep: Sweep, *, address: str | None = None, tracking_uri: str | None = None,
              data_dir: Path | None = None, analysis: bool = True, progress: bool = True,
              log=print, ray_init_kwargs: dict | None = None, log_checkpoints: bool = False,
              ship_code: bool = True) -> SweepResult:
    """Run ``sweep`` end to end (see the module docstring): check, prepare, fan out, record, analyse.

    Args:
        sweep: a validated sweep (:meth:`orchestrator.schema.Sweep.load`).
        address: a Ray cluster address (``HOST:6379`` or ``auto``); ``None`` starts a local Ray bound to
            this machine and stops it afterwards.
        tracking_uri: MLflow URI; default the sweep's ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else
            ``sqlite:///<storage>/mlflow.db`` (:func:`orchestrator.tracking.resolve_tracking_uri`).
        data_dir: inputs directory; default :attr:`orchestrator.schema.Sweep.data_dir`.
        analysis: write the table, figure and report under ``<storage>/analysis/<experiment>`` at the end,
            and attach it to the parent run's artifacts (``analysis/``).
        progress: show progress bars while preparing inputs.
        log: where driver messages go (one string per call).
        ray_init_kwargs: extra ``ray.init`` arguments for a local Ray (tests).
        log_checkpoints: also upload each trial's final checkpoint (``state.pt``) to its run's artifacts;
            by default only its location is recorded (tag ``lamo.checkpoint_uri``).
        ship_code: with ``address``, ship this checkout to the cluster's workers through Ray's
            ``runtime_env`` ``working_dir`` (:func:`orchestrator.runtime_env.code_runtime_env`), so that the
            nodes need the same packages but not the same copy of this project; ``False`` (``--no-ship-code``)
            runs whatever each node has installed. A local Ray never ships (its workers see this checkout).

    Returns:
        a :class:`SweepResult` (finished / failed / interrupted / skipped trial slugs, the parent run id,
        report paths); its ``exit_code`` is 1 when a trial failed, 130 when the sweep was interrupted.

    Raises:
        MissingInputsError: a D4RL file, hub LM or corpus is absent (before any compute).
        InvalidInputsError: a dataset, LM directory or corpus exists but is unusable (checked once, after
            ``prepare`` and before a local Ray starts or any MLflow run is opened).
        tracking.TrackingError: the tracking server is unreachable (before any compute).
        ResourceError: no node of the Ray cluster can give a trial's resources (before any trial starts).
    """
    t0 = time.perf_counter()
    # absolute: a cluster's workers (and a shipped working_dir) do not share the driver's current directory
    data_dir = Path(data_dir or sweep.data_dir).expanduser().resolve()
    uri = tracking.open_store(sweep, tracking_uri, log)  # resolved and reachable, not touched yet
    _inputs(sweep.trials, data_dir, prepare=False)  # what cannot be had here stops the sweep first
    plan = tracking.plan_sweep(uri, sweep, log)  # the experiment; FINISHED trials skipped; what changed
    result = SweepResult(sweep.experiment, uri, None, skipped=plan.skipped, changes=plan.changes)
    result.parent_run_id, statuses = _fan_out(sweep, plan, uri, data_dir, address=address, progress=progress,
                                              log=log, ray_init_kwargs=ray_init_kwargs or {},
                                              log_checkpoints=log_checkpoints, ship_code=ship_code)
    for slug, outcome in statuses.items():
        getattr(result, outcome).append(slug)
    tracking.finish_parent_run(uri, result.parent_run_id, finished=len(result.finished), failed=len(result.failed),
                               skipped=len(result.skipped), interrupted=len(result.interrupted))
    result.seconds = time.perf_counter() - t0
    if analysis:
        result.report = _analyse(sweep, uri, result.parent_run_id, log)
    return result


def _inputs(configs: list[TrialConfig], data_dir: Path, *, prepare: bool, progress: bool = True,
            log=print) -> None:
    """The inputs of ``configs``, as the sweep's errors. Without ``prepare``: only whether each can be had
    here (:func:`trainers.inputs.require_available`; the driver asks before it touches the tracking store).
    With it: :func:`trainers.inputs.ensure_inputs` (prepare what is absent, once, then open every distinct
    input once).

    Raises:
        MissingInputsError: inputs absent that cannot be had here, or a failed or unverifiable download.
        InvalidInputsError: inputs that exist but do not open (after ``prepare``).
    """
    try:
        if prepare:
            ensure_inputs(configs, data_dir, progress=progress, log=log)
        else:
            require_available(configs, data_dir)
    except InputsMissing as e:
        raise MissingInputsError("the sweep needs inputs that are not available here:\n  - "
                                 + "\n  - ".join(str(m) for m in e.missing)) from None
    except DownloadError as e:  # a failed or unverifiable download: an input problem, exit 3
        raise MissingInputsError(f"an input could not be downloaded; nothing was started: {e}") from None
    except InputsUnusable as e:
        raise InvalidInputsError(f"{len(e.problems)} input(s) of the sweep are unusable; nothing was "
                                 f"started:\n  - " + "\n  - ".join(map(str, e.problems))) from None


def _fan_out(sweep: Sweep, plan: tracking.SweepPlan, uri: str, data_dir: Path, *, address: str | None,
             progress: bool, log, ray_init_kwargs: dict, log_checkpoints: bool,
             ship_code: bool = True) -> tuple[str, dict[str, str]]:
    """Run the plan's trials: prepare and check their inputs (:func:`_inputs`), start (or connect to) Ray
    with the sweep's resources checked, open the parent run (:func:`orchestrator.tracking.parent_run`) and
    run one Tune trial per config (:func:`_run_tune`). With ``address`` the cluster is connected to (and
    its resources checked) before anything is prepared; a local Ray starts only once the inputs are known
    to be good. With nothing to run, only the parent run is opened (it records the invocation).

    Returns:
        the parent run id and ``{slug: outcome}`` (:func:`_run_tune`).
    """
    if not plan.todo:
        with tracking.parent_run(uri, sweep, plan) as rid:
            return rid, {}
    with contextlib.ExitStack() as stack:
        if address:
            code = _shipped_code(sweep, data_dir, ship_code, log)
            stack.enter_context(_ray_session(address, ray_init_kwargs, sweep, code))
        _inputs(plan.todo, data_dir, prepare=True, progress=progress, log=log)
        if not address:
            stack.enter_context(_ray_session(address, ray_init_kwargs, sweep))
        rid = stack.enter_context(tracking.parent_run(uri, sweep, plan))
        return rid, _run_tune(sweep, plan.todo, uri, plan.experiment_id, rid, data_dir, log_checkpoints)


def _shipped_code(sweep: Sweep, data_dir: Path, ship_code: bool, log) -> dict | None:
    """The ``runtime_env`` part that ships this checkout to a cluster's workers
    (:func:`orchestrator.runtime_env.code_runtime_env`), or ``None`` with ``ship_code`` off or outside a
    source checkout (the workers then run the lamo-sweep installed on each node)."""
    if not ship_code:
        return None
    from orchestrator.runtime_env import code_runtime_env

    code = code_runtime_env(sweep.storage, data_dir)
    log(f"[sweep] shipping the code in {code['working_dir']} to the cluster's workers (runtime_env "
        f"working_dir; {len(code['excludes'])} exclude patterns)" if code else
        "[sweep] not a source checkout: the workers run the lamo-sweep installed on each node")
    return code


def _analyse(sweep: Sweep, uri: str, parent_run_id: str, log) -> dict[str, Path]:
    """Write the report (tables, figures, claims) under ``<storage>/analysis/<experiment>`` from the
    store and attach it to the parent run; a failure is logged, never raised (the runs are safe in MLflow).
    Returns the report's paths (empty when it failed)."""
    from analysis.report import write_report

    out = sweep.storage / "analysis" / sweep.experiment
    try:
        report = write_report(uri, sweep.experiment, out)
    except Exception as e:  # noqa: BLE001 - the sweep's runs are safe in MLflow either way
        log(f"[sweep] analysis failed ({e}); rerun it with `lamo-analysis report`")
        return {}
    try:
        tracking.retry(lambda: tracking.log_report(uri, parent_run_id, out), sweep.spec.tracking.wait_s)
    except Exception as e:  # noqa: BLE001 - the report is on disk either way
        log(f"[sweep] the report in {out} could not be attached to the parent run ({e})")
    return report


class ResourceError(RuntimeError):
    """Per-trial resources that no node of the Ray cluster can provide (trials would wait forever)."""


@contextlib.contextmanager
def _ray_session(address: str | None, ray_init_kwargs: dict, sweep: Sweep | None = None,
                 code: dict | None = None):
    """Connect to ``address`` (a running cluster) or start a local Ray; shut down what we started. With
    ``sweep``, its per-trial resources are checked against the cluster first (:func:`check_cluster_resources`,
    which raises :class:`ResourceError`).

    ``code``: the ``working_dir`` / ``excludes`` of :func:`orchestrator.runtime_env.code_runtime_env`, merged
    into the job's ``runtime_env`` (a ``working_dir`` already in ``ray_init_kwargs`` wins).

    A local Ray listens on 127.0.0.1 only (:func:`orchestrator.ray_local.loopback_node_ip`; exceptions,
    if any: :data:`orchestrator.ray_local.RAY_NON_LOOPBACK_SOCKETS`); a cluster connection is left as Ray
    makes it. The driver's MLflow settings (:func:`orchestrator.tracking.forwarded_env`: ``MLFLOW_*``
    and ``DATABRICKS_*``, e.g. ``MLFLOW_TRACKING_TOKEN``) reach every worker through the job's
    ``runtime_env`` (``env_vars``): a cluster's workers are started by its raylets and do not inherit the
    driver's environment.
    """
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    started_here = not ray.is_initialized()
    if started_here and not address:
        reap_orphaned_ray_agents()
    if started_here:
        kw = {"include_dashboard": False, "log_to_driver": True, **ray_init_kwargs}
        env = tracking.forwarded_env()
        if env:
            runtime_env = dict(kw.get("runtime_env") or {})
            runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
            kw["runtime_env"] = runtime_env
        if code and "working_dir" not in (kw.get("runtime_env") or {}):
            kw["runtime_env"] = {**(kw.get("runtime_env") or {}), **code}
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                with _loopback_node_ip():
                    ray.init(**{"_node_ip_address": "127.0.0.1", **kw})
        except Exception as e:  # noqa: BLE001
            if address and "token" in str(e).lower():
                raise ResourceError(
                    f"the Ray cluster at {address} uses token authentication and this driver has no token: "
                    f"export RAY_AUTH_TOKEN=$(ray get-auth-token) with the head node's token "
                    f"(or copy ~/.ray/auth_token from the head)") from None
            if address:
                raise ResourceError(f"cannot connect to the Ray cluster at {address}: {e}. Start it with "
                                    f"`ray start --head` or drop --address for a local Ray") from None
            raise
    try:
        if sweep is not None:
            check_cluster_resources(sweep)
        yield
    finally:
        if started_here:
            ray.shutdown()


def check_cluster_resources(sweep: Sweep) -> None:
    """Refuse per-trial resources that exceed what the biggest Ray node offers.

    Raises:
        ResourceError: naming the ``resources.<field>`` and what the cluster has.
    """
    import ray

    names = {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    problems = []
    for block, res in sweep.resource_blocks():  # the sweep's block and each variant's own
        for key, amount in res.ray_resources().items():
            if not amount:
                continue
            rname = names.get(key, key)
            best = max((n.get(rname, 0.0) for n in nodes), default=0.0)
            if amount > best:
                field = f"{block}.{key}" if key in names else f"{block}.custom.{key}"
                have = f"{best / 1024**3:.1f} GiB" if key == "memory" else f"{best:g}"
                problems.append(f"{field} = {amount if key != 'memory' else amount / 1024**3:g} per trial, but the "
                                f"largest Ray node offers {have}: lower {field} or connect to a cluster that has "
                                f"it (--address)")
    if problems:
        raise ResourceError("; ".join(problems))


def trial_resource_request(sweep: Sweep, todo: list[TrialConfig]):
    """What ``tune.with_resources`` gets: the resource dict when every trial asks for the same
    (:meth:`orchestrator.schema.Sweep.trial_resources`), else a function of the trial's Tune config
    (``{"trial": <config hash>}``) returning that trial's ``PlacementGroupFactory`` (one bundle, as Ray
    builds from a dict), so e.g. a CQL variant asks for less GPU than a GPT-2 LaMo variant."""
    per = {t.config_hash(): sweep.trial_resources(t).ray_resources() for t in todo}
    distinct = {tuple(sorted(r.items())) for r in per.values()}
    if len(distinct) <= 1:
        return next(iter(per.values()), sweep.spec.resources.ray_resources())
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    pgfs = {h: resource_dict_to_pg_factory(r) for h, r in per.items()}
    return lambda config: pgfs[config["trial"]]


def _run_tune(sweep: Sweep, todo: list[TrialConfig], uri: str, experiment_id: str, parent_run_id: str,
              data_dir: Path, log_checkpoints: bool) -> dict[str, str]:
    """Run the trials with Ray Tune (Ray already initialised), each trial a child run of ``parent_run_id``
    (:func:`trial_trainable`, with its per-trial resources); return ``{slug: outcome}`` for every trial of
    ``todo``: ``"failed"`` when Tune reports an error, else ``"finished"`` when its child run is FINISHED in
    the store, else ``"interrupted"``. Tune ends ``fit`` without an error on Ctrl-C (SIGINT) or SIGUSR1 and
    reports the trials it stopped like finished ones, so the store, not Tune's error field, says which
    trials finished."""
    from ray import tune

    ctx = {  # what every trial needs besides its config, passed once through the object store
        "tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_run_id,
        "storage": str(sweep.storage), "data_dir": str(data_dir), "cpu": sweep.spec.resources.cpu,
        "cpu_by_trial": {t.config_hash(): sweep.trial_resources(t).cpu for t in todo},
        "method_by_trial": {t.config_hash(): sweep.variant_methods[t.variant] for t in todo
                            if t.variant in sweep.variant_methods},
        "tracking_wait_s": sweep.spec.tracking.wait_s, "log_checkpoints": log_checkpoints,
    }
    trials = {t.config_hash(): t.model_dump(mode="json") for t in todo}
    slugs = {h: t.slug() for h, t in zip(trials, todo)}
    trainable = tune.with_resources(tune.with_parameters(trial_trainable, trials=trials, ctx=ctx),
                                    trial_resource_request(sweep, todo))
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(list(trials))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=sweep.spec.max_concurrent_trials,
            trial_name_creator=lambda tr: slugs[tr.config["trial"]],
            trial_dirname_creator=lambda tr: slugs[tr.config["trial"]],
        ),
        run_config=tune.RunConfig(
            name=f"{sweep.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(sweep.storage / "ray"),
            failure_config=tune.FailureConfig(max_failures=sweep.spec.max_failures),
            verbose=1,
        ),
    )
    grid = tuner.fit()
    errored = {res.config["trial"] for res in grid if res.error is not None}
    done = tracking.retry(lambda: tracking.finished_hashes(uri, experiment_id), sweep.spec.tracking.wait_s)
    return {slugs[h]: "failed" if h in errored else "finished" if h in done else "interrupted" for h in trials}
