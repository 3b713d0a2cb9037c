"""``lamo-sweep``: run a sweep file end to end.

Exit status: 0 every trial finished; 1 some trial failed (its MLflow run is FAILED, the others are
kept); 2 invalid sweep file or flag, or per-trial resources this machine cannot give when no
``--address`` is given (nothing started); 3 inputs, cluster resources or tracking server unavailable
(nothing started; an unusable input, such as a dataset with NaNs, is found after ``prepare`` and before
Ray starts). Missing inputs are reported (3) before resources the local machine lacks, which are
then shown as a warning; ``--dry-run`` only warns about resources, so any grid can be listed anywhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.schema import (Sweep, SweepError, local_resource_problems, parse_overrides, set_dotted,
                                 tracking_uri_problem)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _plan_table(sweep: Sweep) -> Table:
    res = sweep.spec.resources.ray_resources()
    res_txt = ", ".join(f"{k}={v:g}" for k, v in res.items() if k != "memory" and (v or k == "cpu"))
    if "memory" in res:
        res_txt += f", memory={res['memory'] / 1024**3:g}GiB"
    t = Table(title=f"sweep {sweep.spec.name!r}: {len(sweep.trials)} trials, per-trial resources {res_txt}")
    for col in ("#", "trial", "config hash", "method", "lm", "embedding", "finetune", "λ", "steps", "K"):
        t.add_column(col)
    for i, c in enumerate(sweep.trials):
        if c.baseline.algo != "none":  # a d3rlpy MLP policy: the sequence-model columns do not apply
            t.add_row(str(i + 1), c.slug(), c.config_hash(), f"{c.baseline.algo} (d3rlpy)", "-", "-", "-", "-",
                      str(c.train.steps), "-")
            continue
        method = "atari sequence model" if c.task_spec.domain == "atari" else "sequence model"
        t.add_row(str(i + 1), c.slug(), c.config_hash(), method, str(c.model.lm), c.model.embedding,
                  c.model.finetune, f"{c.language.weight:g}", str(c.train.steps), str(c.K))
    return t


@app.command()
def run(
    sweep_file: Path = typer.Argument(..., help="sweep YAML file, e.g. sweeps/quickstart.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and list the trials; touch nothing"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="override train.steps for every trial"),
    set_: list[str] = typer.Option([], "--set", help="override a base field, e.g. --set eval.episodes=5"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: local Ray)"),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI, any scheme MLflow accepts (http://host:5000, databricks, "
        "postgresql://..., sqlite:///PATH); default: the sweep file's tracking.uri, else $MLFLOW_TRACKING_URI, "
        "else sqlite:///<storage>/mlflow.db"),
    log_checkpoints: bool = typer.Option(False, "--log-checkpoints", help="also upload each trial's final "
                                         "checkpoint to its MLflow run (default: record its location only)"),
    storage: Optional[Path] = typer.Option(None, "--storage", help="directory for runs, data, MLflow store"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory (default <storage>/data)"),
    prepare_only: bool = typer.Option(False, "--prepare-only", help="make missing datasets/LMs, then stop"),
    no_analysis: bool = typer.Option(False, "--no-analysis", help="skip the table/plot at the end"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="cap parallel trials"),
) -> None:
    """Validate SWEEP_FILE, prepare missing inputs, run every trial with Ray Tune, log to MLflow, and
    write the analysis table and plot."""
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
        err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    # per-trial resources against this machine (a cluster is checked once connected): before anything starts
    short = [] if (address or prepare_only) else local_resource_problems(sweep.spec.resources)
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
    console.print(_plan_table(sweep))
    if dry_run:
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
        console.print(f"dry run: {len(sweep.trials)} trials valid; nothing started.")
        return

    from orchestrator.sweep import MissingInputsError, ResourceError, run_sweep
    from orchestrator.tracking import TrackingError

    if prepare_only:
        from trainers.inputs import missing_inputs, prepare_inputs

        dd = data_dir or sweep.data_dir
        missing = missing_inputs(sweep.trials, dd)
        if missing:
            err.print("[bold red]error:[/] inputs missing:\n  - " + escape("\n  - ".join(map(str, missing))))
            raise typer.Exit(3)
        from trainers.downloads import DownloadError

        try:
            prepare_inputs(sweep.trials, dd)
        except DownloadError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(3) from None
        from trainers.inputs import validate_inputs

        problems = validate_inputs(sweep.trials, dd)
        if problems:
            err.print("[bold red]error:[/] inputs unusable:\n  - " + escape("\n  - ".join(map(str, problems))),
                      highlight=False)
            raise typer.Exit(3)
        console.print(f"prepared and checked inputs in {dd}")
        return
    try:
        res = run_sweep(sweep, address=address, tracking_uri=tracking_uri, data_dir=data_dir,
                        analysis=not no_analysis, log_checkpoints=log_checkpoints)
    except (MissingInputsError, TrackingError, ResourceError) as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(3) from None
    console.print(f"\n[bold]sweep {sweep.spec.name!r} done in {res.seconds:.0f} s[/]: "
                  f"{len(res.finished)} finished, {len(res.failed)} failed, {len(res.skipped)} skipped "
                  f"(already finished)")
    if res.failed:
        console.print("failed: " + ", ".join(res.failed))
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
    raise typer.Exit(res.exit_code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
