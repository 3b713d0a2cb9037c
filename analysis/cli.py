"""``lamo-analysis``: regenerate a sweep's tables and figures from its MLflow store.

Subcommands share the source and selection options::

    lamo-analysis report  --tracking-uri URI --experiment NAME --out DIR   # everything
    lamo-analysis tables  ...   # scores.csv, table.md, table_*.md/.tex/.csv, ablation_*.md/.tex/.csv
    lamo-analysis figures ...   # score_vs_ratio, domain_bars, learning_curves (.png + .pdf)
    lamo-analysis rliable ...   # rliable_aggregates, probability_of_improvement (.csv/.png/.pdf)
    lamo-analysis paper   ...   # paper_comparison.md/.csv/.tex
    lamo-analysis export  ...   # evals.csv (tidy: run × step × RTG target) and scores.csv
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from analysis.paper import parse_method_map
from analysis.report import load_selected, write_report

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)


class TargetRule(str, Enum):
    best = "best"
    largest = "largest"
    fixed = "fixed"


class Checkpoint(str, Enum):
    last = "last"
    best = "best"
    mean_last_k = "mean_last_k"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def parse_fixed_target(values: list[str] | None) -> float | dict[str, float] | None:
    """``["3600"]`` → 3600.0; ``["hopper=3600", "walker2d=5000"]`` → ``{task: target}``."""
    if not values:
        return None
    try:
        if all("=" in v for v in values):
            return {k.strip(): float(t) for k, t in (v.split("=", 1) for v in values)}
        if len(values) == 1:
            return float(values[0])
    except ValueError:
        pass
    raise ValueError(f"--fixed-target takes one raw return (3600) or TASK=RETURN pairs, got {values}")


# --- shared options ---------------------------------------------------------------------------------
TrackingUri = Annotated[str, typer.Option(help="MLflow tracking URI, e.g. sqlite:////abs/mlflow.db or http://host:5000")]
Experiment = Annotated[str, typer.Option(help="MLflow experiment name of the sweep")]
Out = Annotated[Path, typer.Option(help="output directory")]
ParentRunId = Annotated[str | None, typer.Option(help="only children of this sweep (parent) run")]
TargetOpt = Annotated[TargetRule, typer.Option(help="RTG target: best (LaMo), largest (CORL), fixed")]
FixedOpt = Annotated[
    list[str] | None, typer.Option(help="raw return for --target-rule fixed, or TASK=RETURN (repeat)")
]
CheckpointOpt = Annotated[Checkpoint, typer.Option(help="evaluation: last, best, mean_last_k")]
LastK = Annotated[int, typer.Option(min=1, help="k for --checkpoint mean_last_k")]
Unfinished = Annotated[bool, typer.Option("--include-unfinished", help="keep FAILED/RUNNING/KILLED trials")]
Column = Annotated[
    str, typer.Option(help="table column axis: variant, an ablation field (embedding, finetune, ...) or param.<name>")
]
Reference = Annotated[str, typer.Option(help="method whose probability of improvement over the others is shown")]
Reps = Annotated[int, typer.Option(min=10, help="bootstrap replications for the rliable aggregates")]
PoiReps = Annotated[int, typer.Option(min=10, help="bootstrap replications for probability of improvement")]
Seed = Annotated[int, typer.Option(help="bootstrap seed (fixed: reproducible CIs)")]
MinRuns = Annotated[int, typer.Option(min=2, help="seeds a (task, ratio) cell needs to enter rliable statistics")]
PaperNumbers = Annotated[Path | None, typer.Option(help="YAML of the paper's numbers (default: the packaged one)")]
MethodMap = Annotated[
    list[str] | None, typer.Option(help="'PAPER METHOD=VARIANT' to pair a paper method with our variant (repeat)")
]


def _run(parts: tuple[str, ...], show_table: bool, **kw) -> None:
    kw["out_dir"] = kw.pop("out")
    kw["target_rule"] = kw["target_rule"].value
    kw["checkpoint"] = kw["checkpoint"].value
    try:
        kw["fixed_target"] = parse_fixed_target(kw["fixed_target"])
        kw["method_map"] = parse_method_map(kw.get("method_map"))
        paths = write_report(parts=parts, **kw)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except MlflowException as exc:
        raise _fail(f"MLflow error at {kw['tracking_uri']}: {exc.message}", code=1) from None
    if show_table and "table" in paths:
        console.print(Markdown(paths["table"].read_text(encoding="utf-8")))
    for name, path in paths.items():
        if name not in ("scores", "table", "figure"):
            console.print(f"[green]wrote[/green] {escape(str(path))}")


@app.callback()
def _root() -> None:
    """Tables and figures for lamo-sweep, read from the MLflow store only."""


@app.command()
def report(
    tracking_uri: TrackingUri, experiment: Experiment, out: Out, parent_run_id: ParentRunId = None,
    target_rule: TargetOpt = TargetRule.best, fixed_target: FixedOpt = None,
    checkpoint: CheckpointOpt = Checkpoint.last, last_k: LastK = 3, include_unfinished: Unfinished = False,
    column: Column = "variant", reference: Reference = "lamo", reps: Reps = 2000, poi_reps: PoiReps = 1000,
    seed: Seed = 0, min_runs: MinRuns = 2, paper_numbers: PaperNumbers = None, method_map: MethodMap = None,
) -> None:
    """Everything: scores, the paper's tables (.md/.tex/.csv), figures (.png/.pdf), rliable, paper comparison."""
    _run(("tables", "figures", "rliable", "paper"), True, **locals())


@app.command()
def tables(
    tracking_uri: TrackingUri, experiment: Experiment, out: Out, parent_run_id: ParentRunId = None,
    target_rule: TargetOpt = TargetRule.best, fixed_target: FixedOpt = None,
    checkpoint: CheckpointOpt = Checkpoint.last, last_k: LastK = 3, include_unfinished: Unfinished = False,
    column: Column = "variant",
) -> None:
    """scores.csv, table.md and the paper's sparse / dense / Atari / ablation tables."""
    _run(("tables",), True, **locals())


@app.command()
def figures(
    tracking_uri: TrackingUri, experiment: Experiment, out: Out, parent_run_id: ParentRunId = None,
    target_rule: TargetOpt = TargetRule.best, fixed_target: FixedOpt = None,
    checkpoint: CheckpointOpt = Checkpoint.last, last_k: LastK = 3, include_unfinished: Unfinished = False,
    column: Column = "variant",
) -> None:
    """Score vs sample ratio, Figure-1-style domain bars, learning curves (PNG + PDF)."""
    _run(("figures",), False, **locals())


@app.command()
def rliable(
    tracking_uri: TrackingUri, experiment: Experiment, out: Out, parent_run_id: ParentRunId = None,
    target_rule: TargetOpt = TargetRule.best, fixed_target: FixedOpt = None,
    checkpoint: CheckpointOpt = Checkpoint.last, last_k: LastK = 3, include_unfinished: Unfinished = False,
    column: Column = "variant", reference: Reference = "lamo", reps: Reps = 2000, poi_reps: PoiReps = 1000,
    seed: Seed = 0, min_runs: MinRuns = 2,
) -> None:
    """IQM / mean / optimality gap and probability of improvement with stratified-bootstrap CIs."""
    _run(("rliable",), False, **locals())


@app.command()
def paper(
    tracking_uri: TrackingUri, experiment: Experiment, out: Out, parent_run_id: ParentRunId = None,
    target_rule: TargetOpt = TargetRule.best, fixed_target: FixedOpt = None,
    checkpoint: CheckpointOpt = Checkpoint.last, last_k: LastK = 3, include_unfinished: Unfinished = False,
    column: Column = "variant", paper_numbers: PaperNumbers = None, method_map: MethodMap = None,
) -> None:
    """The paper's known numbers (with provenance) beside ours: paper_comparison.md/.csv/.tex."""
    _run(("paper",), False, **locals())
    comp = out / "paper_comparison.md"
    if comp.exists():
        console.print(Markdown(comp.read_text(encoding="utf-8")))


@app.command()
def export(
    tracking_uri: TrackingUri, experiment: Experiment, out: Out, parent_run_id: ParentRunId = None,
    target_rule: TargetOpt = TargetRule.best, fixed_target: FixedOpt = None,
    checkpoint: CheckpointOpt = Checkpoint.last, last_k: LastK = 3, include_unfinished: Unfinished = False,
) -> None:
    """evals.csv (one row per trial × evaluation step × RTG target) and scores.csv (one per trial)."""
    try:
        tidy, selected, _ = load_selected(tracking_uri, experiment, parent_run_id, target_rule.value,
                                          checkpoint.value, parse_fixed_target(fixed_target), last_k,
                                          include_unfinished)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except MlflowException as exc:
        raise _fail(f"MLflow error at {tracking_uri}: {exc.message}", code=1) from None
    out.mkdir(parents=True, exist_ok=True)
    tidy.to_csv(out / "evals.csv", index=False)
    selected.to_csv(out / "scores.csv", index=False)
    console.print(f"[green]wrote[/green] {escape(str(out / 'evals.csv'))} ({len(tidy)} rows), "
                  f"{escape(str(out / 'scores.csv'))} ({len(selected)} trials)")


def main() -> None:
    """Console-script entry point (``lamo-analysis``)."""
    app()
