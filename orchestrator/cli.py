"""``lamo-sweep``: run a sweep file end to end.

Exit status: 0 every trial finished; 1 some trial failed (its MLflow run is FAILED, the others are
kept); 130 stopped with Ctrl-C before every trial finished (the interrupted trials' runs are KILLED, or
RUNNING if their worker died first, and the parent run is KILLED; rerunning the same command resumes
them from their checkpoints); 2 invalid sweep file or flag, or per-trial resources this machine cannot
give when no ``--address`` is given (nothing started); 3 inputs, cluster resources or tracking server
unavailable (nothing started; an unusable input, such as a dataset with NaNs, is found after ``prepare`` and before
Ray starts). Missing inputs are reported (3) before resources the local machine lacks, which are
then shown as a warning; ``--dry-run`` only warns about resources, so any grid can be listed anywhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.schema import (Sweep, SweepError, local_resource_problems, parse_overrides, set_dotted,
                                 tracking_uri_problem)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _res_txt(res) -> str:
    r = res.ray_resources()
    txt = ", ".join(f"{k}={v:g}" for k, v in r.items() if k != "memory" and (v or k == "cpu"))
    return txt + (f", memory={r['memory'] / 1024**3:g}GiB" if "memory" in r else "")


def _plan_table(sweep: Sweep) -> Table:
    blocks = sweep.resource_blocks()
    if len(blocks) == 1:
        res_txt = _res_txt(blocks[0][1])
    else:
        res_txt = "; ".join(f"{field.removeprefix('variants.').removesuffix('.resources')}: {_res_txt(r)}"
                            for field, r in blocks)
    t = Table(title=f"sweep {sweep.spec.name!r}: {len(sweep.trials)} trials, per-trial resources {res_txt}")
    for col in ("#", "trial", "config hash", "method", "lm", "embedding", "finetune", "λ", "steps", "K"):
        t.add_column(col)
    from trainers.methods import describe

    for i, c in enumerate(sweep.trials):
        if c.baseline.algo != "none":  # a d3rlpy policy: the sequence-model columns do not apply
            t.add_row(str(i + 1), c.slug(), c.config_hash(), describe(c), "-", "-", "-", "-", str(c.train.steps), "-")
            continue
        t.add_row(str(i + 1), c.slug(), c.config_hash(), describe(c), str(c.model.lm), c.model.embedding,
                  c.model.finetune, f"{c.language.weight:g}", str(c.train.steps), str(c.K))
    return t


@app.command()
def run(
    sweep_file: Path = typer.Argument(..., help="sweep YAML file, e.g. sweeps/quickstart.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and list the trials; touch nothing"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="override train.steps for every trial"),
    set_: list[str] = typer.Option([], "--set", help="override a field: a trial-config field goes into base "
                                   "(--set eval.episodes=5); grid., resources., variants. reach those sections "
                                   "(--set grid.seed=[0,1,2], --set variants.lamo.model.lm=gpt2)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: local Ray)"),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI, any scheme MLflow accepts (http://host:5000, databricks, "
        "postgresql://..., sqlite:///PATH); default: the sweep file's tracking.uri, else $MLFLOW_TRACKING_URI, "
        "else sqlite:///<storage>/mlflow.db"),
    log_checkpoints: bool = typer.Option(False, "--log-checkpoints", help="also upload each trial's final "
                                         "checkpoint to its MLflow run (default: record its location only)"),
    ship_code: bool = typer.Option(True, "--ship-code/--no-ship-code", help="with --address: send this checkout "
                                   "to the cluster's workers (Ray runtime_env working_dir; the nodes still need the "
                                   "same packages); --no-ship-code runs the copy installed on each node"),
    storage: Optional[Path] = typer.Option(None, "--storage", help="directory for runs, data, MLflow store"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory (default <storage>/data)"),
    prepare_only: bool = typer.Option(False, "--prepare-only", help="download and make every input it can, "
                                      "list every one it cannot, then stop"),
    no_analysis: bool = typer.Option(False, "--no-analysis", help="skip the table/plot at the end"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="cap parallel trials"),
    gpus: Optional[int] = typer.Option(None, "--gpus", min=0, help="with --dry-run: GPUs the estimate assumes "
                                       "(default: this machine's, else 1)"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="with --dry-run: a JSON written "
                                               "by benchmarks/gpu_check.sh, for measured GPU rates"),
) -> None:
    """Validate SWEEP_FILE, prepare missing inputs, run every trial with Ray Tune, log to MLflow, and
    write the analysis table and plot."""
    sweep = _load_sweep(sweep_file, set_, steps, storage, max_concurrent, tracking_uri)
    _check_local_resources(sweep, address, dry_run, prepare_only, data_dir)
    console.print(_plan_table(sweep))
    if dry_run:
        _dry_run(sweep, data_dir, gpus, calibration)
        return
    if prepare_only:
        _prepare_only(sweep, data_dir)
        return
    res = _run_sweep(sweep, address, tracking_uri, data_dir, no_analysis, log_checkpoints, ship_code)
    _print_outcome(sweep, res)
    raise typer.Exit(res.exit_code)


def _fail(message: str, code: int) -> NoReturn:
    """Print ``error: MESSAGE`` (escaped) on stderr and exit with ``code`` (module docstring)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code) from None


def _load_sweep(sweep_file: Path, set_: list[str], steps: int | None, storage: Path | None,
                max_concurrent: int | None, tracking_uri: str | None) -> Sweep:
    """The sweep file with the command line's overrides (``--set``, ``--steps``, ``--storage``,
    ``--max-concurrent``) applied, after checking ``--tracking-uri`` and, when neither it nor the file
    names a tracking URI, ``$MLFLOW_TRACKING_URI``.

    Exits 2 on any :class:`~orchestrator.schema.SweepError`, printing its fields and fixes.
    """
    try:
        overrides = parse_overrides(set_)
        if steps is not None:
            set_dotted(overrides, "train.steps", steps)
        sweep = Sweep.load(sweep_file, overrides)
        if storage is not None:
            sweep.spec.storage = str(storage)
        if max_concurrent is not None:
            sweep.spec.max_concurrent_trials = max_concurrent
        if tracking_uri is not None and (problem := tracking_uri_problem(tracking_uri)):
            raise SweepError("command line", [("--tracking-uri", problem)])
        env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if (tracking_uri is None and sweep.spec.tracking.uri is None and env_uri
                and (problem := tracking_uri_problem(env_uri))):
            raise SweepError("environment", [("MLFLOW_TRACKING_URI", problem)])
    except SweepError as e:
        _fail(str(e), 2)
    return sweep


def _check_local_resources(sweep: Sweep, address: str | None, dry_run: bool, prepare_only: bool,
                           data_dir: Path | None) -> None:
    """Check the per-trial resources against this machine before anything starts (a cluster, with
    ``--address``, is checked once connected; ``--prepare-only`` needs none).

    A real run exits 2 when some are short and no input is missing (missing inputs are reported first,
    with exit 3, by the run itself); otherwise a shortage is printed as a warning.
    """
    short = [] if (address or prepare_only) else [
        p for field, res in sweep.resource_blocks() for p in local_resource_problems(res, field)]
    short_txt = "\n".join(f"  - {loc}: {msg}" for loc, msg in short)
    if short and not dry_run:
        from trainers.inputs import missing_inputs

        dd = data_dir or sweep.data_dir
        if not missing_inputs(sweep.trials, dd):
            err.print(f"[bold red]error:[/] {escape(sweep.source)}: per-trial resources this machine cannot "
                      f"give (no --address given); nothing started:\n{escape(short_txt)}", highlight=False)
            raise typer.Exit(2)
    if short:
        err.print(f"[bold yellow]warning:[/] per-trial resources this machine cannot give; a run here without "
                  f"--address will be refused:\n{escape(short_txt)}", highlight=False)


def _dry_run(sweep: Sweep, data_dir: Path | None, gpus: int | None, calibration: Path | None) -> None:
    """``--dry-run``: list the inputs a run would prepare and those missing (a warning), print the
    estimate (:func:`_print_estimate`, exit 2 on a bad ``--calibration``); start nothing."""
    from trainers.inputs import inputs_to_prepare, missing_inputs

    dd = data_dir or sweep.data_dir
    todo = inputs_to_prepare(sweep.trials, dd)
    missing = missing_inputs(sweep.trials, dd)
    if todo:
        console.print(f"inputs a run will prepare first (in {escape(str(dd))}):\n  - "
                      + escape("\n  - ".join(todo)), highlight=False)
    if missing:
        err.print("[bold yellow]warning:[/] inputs missing (a run here exits 3 before any compute):\n  - "
                  + escape("\n  - ".join(map(str, missing))), highlight=False)
    if not todo and not missing:
        console.print(f"inputs: all present in {escape(str(dd))}", highlight=False)
    _print_estimate(sweep, gpus, calibration)
    console.print(f"dry run: {len(sweep.trials)} trials valid; nothing started.")


def _prepare_only(sweep: Sweep, data_dir: Path | None) -> None:
    """``--prepare-only``: make every input that can be made, then stop; exit 3, listing every input
    that cannot (:func:`trainers.inputs.ensure_inputs` with ``keep_going=True``)."""
    from trainers.downloads import DownloadError
    from trainers.inputs import InputsUnavailable, ensure_inputs

    dd = data_dir or sweep.data_dir
    try:
        ensure_inputs(sweep.trials, dd, keep_going=True)
    except (InputsUnavailable, DownloadError) as e:
        _fail(str(e), 3)
    console.print(f"prepared and checked inputs in {dd}")


def _run_sweep(sweep: Sweep, address: str | None, tracking_uri: str | None, data_dir: Path | None,
               no_analysis: bool, log_checkpoints: bool, ship_code: bool):
    """Run the sweep (:func:`orchestrator.sweep.run_sweep`) and return its result.

    Exits 2 when the checkout cannot be shipped to the cluster (``--ship-code``), 3 on missing or
    unusable inputs, an unreachable tracking server or cluster resources that cannot be had.
    """
    from orchestrator.runtime_env import ShipCodeError
    from orchestrator.sweep import MissingInputsError, ResourceError, run_sweep
    from orchestrator.tracking import TrackingError

    try:
        return run_sweep(sweep, address=address, tracking_uri=tracking_uri, data_dir=data_dir,
                         analysis=not no_analysis, log_checkpoints=log_checkpoints, ship_code=ship_code)
    except ShipCodeError as e:
        _fail(str(e), 2)
    except (MissingInputsError, TrackingError, ResourceError) as e:
        _fail(str(e), 3)


def _print_outcome(sweep: Sweep, res) -> None:
    """Print a sweep's counts, failed and interrupted trials (with how to resume the latter), MLflow
    location (with an ``mlflow ui`` command for a local SQLite store) and, when the analysis ran, its table
    and output paths."""
    ended = "interrupted after" if res.interrupted else "done in"
    console.print(f"\n[bold]sweep {sweep.spec.name!r} {ended} {res.seconds:.0f} s[/]: "
                  f"{len(res.finished)} finished, {len(res.failed)} failed, {len(res.interrupted)} interrupted, "
                  f"{len(res.skipped)} skipped (already finished)")
    if res.failed:
        console.print("failed: " + ", ".join(res.failed))
    if res.interrupted:
        console.print("interrupted: " + ", ".join(res.interrupted) + "\n  rerun the same command to resume them "
                      "from their latest checkpoints (finished trials are skipped); ignore Ray Tune's "
                      "`Tuner.restore` hint above")
    console.print(f"MLflow: experiment {res.experiment!r} at {res.tracking_uri}"
                  + (f" (parent run {res.parent_run_id})" if res.parent_run_id else ""))
    if res.tracking_uri.startswith("sqlite:"):  # a server or Databricks has its own UI
        console.print(f"  browse: mlflow ui --backend-store-uri {res.tracking_uri} --host 127.0.0.1 --port 5000 "
                      f"--workers 1")
    if res.report:
        table = res.report.get("table")
        if table and Path(table).exists():
            console.print(Path(table).read_text())
        for name in ("table", "figure", "scores"):
            if name in res.report:
                console.print(f"  {name}: {res.report[name]}")
        console.print(f"  all outputs: {Path(res.report['table']).parent} (report.md lists them)")


def _print_estimate(sweep: Sweep, gpus: int | None, calibration: Path | None) -> None:
    """Print :func:`orchestrator.estimate.estimate_sweep`'s GPU-hours and wall time, labelled as an
    estimate, with every input it used (exit 2 on an unreadable ``--calibration`` file)."""
    import os

    from orchestrator.estimate import estimate_sweep, load_calibration
    from orchestrator.schema import local_gpu_count

    assumed = gpus is None
    n = gpus if gpus is not None else (local_gpu_count() or 1)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cal = load_calibration(calibration)
    except (OSError, ValueError) as e:
        err.print(f"[bold red]error:[/] --calibration: {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    est = estimate_sweep(sweep, n, cpus, cal)
    t = Table(title=f"ESTIMATE (not a measurement) on {n} GPU{'s' * (n != 1)}"
                    + (" (assumed; pass --gpus N)" if assumed else ""))
    for col in ("variant", "trials", "device", "GFLOP/step", "train h/trial", "eval h/trial"):
        t.add_column(col)
    by: dict[str, list] = {}
    for e in est.trials:
        by.setdefault(e.variant, []).append(e)
    for v, es in by.items():
        e = es[0]
        dev = f"GPU x{e.gpu:g}" if e.gpu > 0 else f"CPU x{e.cpu:g}"
        fl = "-" if e.train_flops_per_step is None else f"{e.train_flops_per_step / 1e9:,.1f}"
        t.add_row(v, str(len(es)), dev, fl, f"{sum(x.train_s for x in es) / len(es) / 3600:.2f}",
                  f"{sum(x.eval_s for x in es) / len(es) / 3600:.2f}")
    console.print(t)
    console.print(f"[bold]estimate[/]: {est.gpu_hours:,.1f} GPU-hours; wall time {est.wall_s / 3600:,.2f} h on "
                  f"{n} GPU{'s' * (n != 1)}. Inputs of this estimate (orchestrator/estimate.py):", highlight=False)
    console.print("\n".join(f"  - {escape(x)}" for x in est.inputs), highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
