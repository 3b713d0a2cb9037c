"""``lamo-analysis``: regenerate a sweep's tables and figures from its MLflow store."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from analysis.report import write_report

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


@app.callback()
def _root() -> None:
    """Tables and figures for lamo-sweep, read from the MLflow store only."""


@app.command()
def report(
    tracking_uri: Annotated[str, typer.Option(help="MLflow tracking URI, e.g. sqlite:////abs/mlflow.db")],
    experiment: Annotated[str, typer.Option(help="MLflow experiment name of the sweep")],
    out: Annotated[Path, typer.Option(help="output directory")],
    parent_run_id: Annotated[str | None, typer.Option(help="only children of this sweep run")] = None,
    target_rule: Annotated[
        TargetRule, typer.Option(help="RTG target: best (LaMo), largest (CORL), fixed")
    ] = TargetRule.best,
    fixed_target: Annotated[
        list[str] | None, typer.Option(help="raw return for --target-rule fixed, or TASK=RETURN (repeat)")
    ] = None,
    checkpoint: Annotated[Checkpoint, typer.Option(help="evaluation: last, best, mean_last_k")] = Checkpoint.last,
    last_k: Annotated[int, typer.Option(min=1, help="k for --checkpoint mean_last_k")] = 3,
    include_unfinished: Annotated[bool, typer.Option("--include-unfinished", help="keep FAILED/RUNNING trials")] = False,
    column: Annotated[str, typer.Option(help="table column axis: variant or param.<name>")] = "variant",
) -> None:
    """Write scores.csv, table.md and score_vs_ratio.png for one sweep experiment."""
    try:
        paths = write_report(
            tracking_uri,
            experiment,
            out,
            parent_run_id=parent_run_id,
            target_rule=target_rule.value,
            checkpoint=checkpoint.value,
            fixed_target=parse_fixed_target(fixed_target),
            last_k=last_k,
            include_unfinished=include_unfinished,
            column=column,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except MlflowException as exc:
        raise _fail(f"MLflow error at {tracking_uri}: {exc.message}", code=1) from None
    console.print(Markdown(paths["table"].read_text(encoding="utf-8")))
    for name, path in paths.items():
        console.print(f"[green]wrote[/green] {name}: {escape(str(path))}")


def main() -> None:
    """Console-script entry point (``lamo-analysis``)."""
    app()
