"""``lamo-analysis``: regenerate a sweep's tables and figures from its MLflow store.

Subcommands share the source and selection options; every option is declared once in :data:`OPTIONS`
and each command lists the groups it takes (:data:`SOURCE`, :data:`RULE`, ``column``, :data:`RLIABLE`,
:data:`PAPER`). The rule options build one :class:`analysis.select.SelectionRule`; ``--reps``,
``--poi-reps`` and ``--seed`` one :class:`analysis.stats.Bootstrap` whose defaults are
:data:`analysis.stats.DEFAULT_BOOTSTRAP`, the same as the report written at the end of a sweep::

    lamo-analysis report  --tracking-uri URI --experiment NAME --out DIR   # everything
    lamo-analysis report  --experiment A --experiment B ... --out DIR     # each one's report + Figure 1 over all
    lamo-analysis tables  ...   # scores.csv, table.md, table_*.md/.tex/.csv, ablation_*.md/.tex/.csv
    lamo-analysis figures ...   # score_vs_ratio, domain_bars, learning_curves (.png + .pdf)
    lamo-analysis rliable ...   # rliable_aggregates, probability_of_improvement (.csv/.png/.pdf)
    lamo-analysis paper   ...   # paper_comparison.md/.csv/.tex
    lamo-analysis claims  ...   # claims.md/.csv: the paper's claims, P(A > B) with CI, runs, verdict
    lamo-analysis export  ...   # evals.csv (tidy: run × step × RTG target) and scores.csv
    lamo-analysis rules   ...   # target_rules.md/.csv: best target per seed vs on the seed mean

``--best-target-by seed_mean`` switches ``--target-rule best`` from each seed's own best RTG target to the
target with the best seed-averaged score per task × sample ratio × variant (default ``trial``: per seed).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from analysis.paper import parse_method_map
from analysis.claims import MIN_RUNS_PER_SIDE
from analysis.report import PARTS, load_selected, write_report
from analysis.rule_compare import write_rule_comparison
from analysis.select import (
    BEST_TARGET_BY,
    CHECKPOINTS,
    DEFAULT_RULE,
    TARGET_RULES,
    SelectionRule,
    parse_fixed_target,
)
from analysis.stats import DEFAULT_BOOTSTRAP, MIN_RUNS, Bootstrap
from trainers import contract as C

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)

TargetRule = Enum("TargetRule", {r: r for r in TARGET_RULES}, type=str)
Checkpoint = Enum("Checkpoint", {c: c for c in CHECKPOINTS}, type=str)
BestTargetBy = Enum("BestTargetBy", {b: b for b in BEST_TARGET_BY}, type=str)

__all__ = ["app", "main", "parse_fixed_target"]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


# --- every option, declared once: name → (annotated type, default) -----------------------------------
_REQUIRED = inspect.Parameter.empty
OPTIONS: dict[str, tuple[object, object]] = {
    "tracking_uri": (Annotated[str | None, typer.Option(
        help="MLflow tracking URI, any scheme MLflow accepts (sqlite:////abs/mlflow.db, http://host:5000, "
             "databricks, ...); default $MLFLOW_TRACKING_URI, else sqlite:///$PWD/lamo_runs/mlflow.db")], None),
    "experiment": (Annotated[list[str], typer.Option(
        help="MLflow experiment of the sweep (the sweep's name unless its file sets tracking.experiment); repeat "
             "it for one report over several (each one's report under experiments/<name>/, Figure 1's per-domain "
             "averages over all of them; report, tables, figures, rliable, paper, claims)")], _REQUIRED),
    "out": (Annotated[Path, typer.Option(help="output directory")], _REQUIRED),
    "parent_run_id": (Annotated[str | None, typer.Option(help="only children of this sweep (parent) run")], None),
    "target_rule": (Annotated[TargetRule, typer.Option(help="RTG target: best (LaMo), largest (CORL), fixed")],
                    TargetRule(DEFAULT_RULE.target_rule)),
    "fixed_target": (Annotated[list[str] | None, typer.Option(
        help="raw return for --target-rule fixed, or TASK=RETURN (repeat)")], None),
    "checkpoint": (Annotated[Checkpoint, typer.Option(help="evaluation: last, best, mean_last_k")],
                   Checkpoint(DEFAULT_RULE.checkpoint)),
    "last_k": (Annotated[int, typer.Option(min=1, help="k for --checkpoint mean_last_k")], DEFAULT_RULE.last_k),
    "best_target_by": (Annotated[BestTargetBy, typer.Option(
        help="for --target-rule best: trial (each seed's own best target, LaMo) or seed_mean (the target "
             "with the best seed-averaged score per task × ratio × variant)")],
        BestTargetBy(DEFAULT_RULE.best_target_by)),
    "include_unfinished": (Annotated[bool, typer.Option(
        "--include-unfinished", help="keep FAILED/RUNNING/KILLED trials")], False),
    "column": (Annotated[str, typer.Option(
        help="table column axis: variant, an ablation field (embedding, finetune, ...) or param.<name>")], "variant"),
    "reference": (Annotated[str, typer.Option(
        help="method whose probability of improvement over the others is shown")], "lamo"),
    "reps": (Annotated[int, typer.Option(min=10, help="bootstrap replications for the rliable aggregates")],
             DEFAULT_BOOTSTRAP.reps),
    "poi_reps": (Annotated[int, typer.Option(min=10, help="bootstrap replications for probability of improvement")],
                 DEFAULT_BOOTSTRAP.poi_reps),
    "seed": (Annotated[int, typer.Option(help="bootstrap seed (fixed: reproducible CIs)")], DEFAULT_BOOTSTRAP.seed),
    "min_runs": (Annotated[int, typer.Option(
        min=2, help="seeds a (task, ratio) cell needs to enter rliable statistics")], MIN_RUNS),
    "claims_min_runs": (Annotated[int, typer.Option(
        min=1, help="runs each side of a claim needs for a verdict (else 'not enough runs')")], MIN_RUNS_PER_SIDE),
    "paper_numbers": (Annotated[Path | None, typer.Option(
        help="YAML of the paper's numbers (default: the packaged one)")], None),
    "method_map": (Annotated[list[str] | None, typer.Option(
        help="'PAPER METHOD=VARIANT' to pair a paper method with our variant (repeat)")], None),
}
SOURCE = ("tracking_uri", "experiment", "out", "parent_run_id")
RULE = ("target_rule", "fixed_target", "checkpoint", "last_k", "best_target_by", "include_unfinished")
RLIABLE = ("reference", "reps", "poi_reps", "seed", "min_runs")
CLAIMS = ("reps", "poi_reps", "seed", "claims_min_runs")
PAPER = ("paper_numbers", "method_map")


def options(*names: str) -> Callable[[Callable], Callable]:
    """Give a ``**kw`` command the options ``names`` of :data:`OPTIONS` (typer reads the signature)."""

    def wrap(func: Callable) -> Callable:
        params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=OPTIONS[n][1], annotation=OPTIONS[n][0])
                  for n in names]
        func.__signature__ = inspect.Signature(params, return_annotation=None)
        func.__annotations__ = {n: OPTIONS[n][0] for n in names} | {"return": None}
        return func

    return wrap


def selection_rule(kw: dict) -> SelectionRule:
    """The :class:`~analysis.select.SelectionRule` of a command's rule options (removed from ``kw``).

    Raises:
        ValueError: a bad ``--fixed-target`` or rule combination (e.g. ``fixed`` without a target).
    """
    return SelectionRule.from_options(kw.pop("target_rule"), kw.pop("checkpoint"), kw.pop("fixed_target"),
                                      kw.pop("last_k"), kw.pop("best_target_by"))


def bootstrap(kw: dict) -> Bootstrap:
    """The :class:`~analysis.stats.Bootstrap` of a command's ``--reps/--poi-reps/--seed`` (removed from
    ``kw``); the defaults are :data:`analysis.stats.DEFAULT_BOOTSTRAP`, as at the end of a sweep."""
    return Bootstrap(reps=kw.pop("reps"), poi_reps=kw.pop("poi_reps"), seed=kw.pop("seed"),
                     confidence=DEFAULT_BOOTSTRAP.confidence)


def resolve_store(kw: dict) -> str:
    """Set ``kw["tracking_uri"]`` to the store to read, in the order of ``lamo-sweep``
    (:func:`trainers.contract.resolve_tracking_uri`): ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``,
    else ``sqlite:///<cwd>/lamo_runs/mlflow.db`` (a sweep's default storage; ``lamo-analysis`` takes no
    sweep file). Returns it.

    Raises:
        typer.Exit: code 3 when the store is not there: a SQLite file that does not exist (reading never
            creates one), or an ``http(s)`` server that does not answer ``/health`` within 5 s
            (:func:`trainers.contract.server_problem`), instead of MLflow's minutes of retries.
    """
    origin = ("--tracking-uri" if kw.get("tracking_uri") else f"${C.TRACKING_URI_ENV}"
              if os.environ.get(C.TRACKING_URI_ENV) else "the default store")
    uri = C.resolve_tracking_uri(kw.get("tracking_uri"), C.DEFAULT_STORAGE)
    kw["tracking_uri"] = uri
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise _fail(f"no MLflow store at {path} ({origin}): pass --tracking-uri URI or set "
                        f"{C.TRACKING_URI_ENV}, or run from the directory that holds {C.DEFAULT_STORAGE}/", code=3)
    problem = C.server_problem(uri, timeout=5.0)
    if problem:
        raise _fail(f"{problem} ({origin}). Start the server, or point --tracking-uri / "
                    f"{C.TRACKING_URI_ENV} at a reachable store.", code=3)
    return uri


def one_experiment(kw: dict, command: str) -> str:
    """``kw["experiment"]`` (a list: ``--experiment`` repeats) as one name, for the commands that read one.

    Raises:
        typer.Exit: code 2 when several were given, naming the command and the ones that take several.
    """
    names = list(dict.fromkeys(kw["experiment"]))
    if len(names) != 1:
        raise _fail(f"`lamo-analysis {command}` reads one experiment, got --experiment {' '.join(names)}: give "
                    f"one, or use `lamo-analysis report` for one report over several")
    kw["experiment"] = names[0]
    return names[0]


def _run(parts: tuple[str, ...], show_table: bool, kw: dict) -> None:
    resolve_store(kw)
    kw["out_dir"] = kw.pop("out")
    several = len(set(kw["experiment"])) > 1
    if several and kw.get("parent_run_id"):
        raise _fail("--parent-run-id selects one invocation of one sweep: give one --experiment with it")
    if not several:
        kw["experiment"] = kw["experiment"][0]
    try:
        kw["rule"] = selection_rule(kw)
        if "reps" in kw:
            kw["bootstrap"] = bootstrap(kw)
        if "method_map" in kw:
            kw["method_map"] = parse_method_map(kw["method_map"])
        if several:
            from analysis.combined import write_combined_report

            kw.pop("parent_run_id", None)
            paths = write_combined_report(experiments=list(dict.fromkeys(kw.pop("experiment"))), parts=parts, **kw)
            show_table = False
        else:
            paths = write_report(parts=parts, **kw)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except MlflowException as exc:
        raise _fail(f"MLflow error at {kw['tracking_uri']}: {exc.message}", code=1) from None
    if show_table and "table" in paths:
        console.print(Markdown(paths["table"].read_text(encoding="utf-8")))
    if several:
        console.print(Markdown((kw["out_dir"] / "report.md").read_text(encoding="utf-8")))
    for name, path in paths.items():
        if name not in ("scores", "table", "figure"):
            console.print(f"[green]wrote[/green] {escape(str(path))}")


@app.callback()
def _root() -> None:
    """Tables and figures for lamo-sweep, read from the MLflow store only."""


@app.command()
@options(*SOURCE, *RULE, "column", *RLIABLE, "claims_min_runs", *PAPER)
def report(**kw) -> None:
    """Everything: scores, the paper's tables (.md/.tex/.csv), figures (.png/.pdf), rliable, paper comparison, claims."""
    _run(PARTS, True, kw)


@app.command()
@options(*SOURCE, *RULE, "column")
def tables(**kw) -> None:
    """scores.csv, table.md and the paper's sparse / dense / Atari / ablation tables."""
    _run(("tables",), True, kw)


@app.command()
@options(*SOURCE, *RULE, "column")
def figures(**kw) -> None:
    """Score vs sample ratio, Figure-1-style domain bars, learning curves (PNG + PDF)."""
    _run(("figures",), False, kw)


@app.command()
@options(*SOURCE, *RULE, "column", *RLIABLE)
def rliable(**kw) -> None:
    """IQM / mean / optimality gap and probability of improvement with stratified-bootstrap CIs."""
    _run(("rliable",), False, kw)


@app.command()
@options(*SOURCE, *RULE, "column", *PAPER)
def paper(**kw) -> None:
    """The paper's known numbers (with provenance) beside ours: paper_comparison.md/.csv/.tex."""
    out = kw["out"]
    _run(("paper",), False, kw)
    comp = out / "paper_comparison.md"
    if comp.exists():
        console.print(Markdown(comp.read_text(encoding="utf-8")))


@app.command()
@options(*SOURCE, *RULE, *CLAIMS)
def claims(**kw) -> None:
    """claims.md/.csv: each of the paper's claims with P(A > B), its bootstrap CI, runs per side, a verdict."""
    out = kw["out"]
    _run(("claims",), False, kw)
    path = out / "claims.md"
    if path.exists():
        console.print(Markdown(path.read_text(encoding="utf-8")))


@app.command()
@options(*SOURCE, *RULE)
def export(**kw) -> None:
    """evals.csv (one row per trial × evaluation step × RTG target) and scores.csv (one per trial)."""
    out = kw["out"]
    one_experiment(kw, "export")
    resolve_store(kw)
    try:
        rule = selection_rule(kw)
        tidy, selected = load_selected(kw["tracking_uri"], kw["experiment"], kw["parent_run_id"], rule,
                                       kw["include_unfinished"])
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except MlflowException as exc:
        raise _fail(f"MLflow error at {kw['tracking_uri']}: {exc.message}", code=1) from None
    out.mkdir(parents=True, exist_ok=True)
    tidy.to_csv(out / "evals.csv", index=False)
    selected.to_csv(out / "scores.csv", index=False)
    console.print(f"[green]wrote[/green] {escape(str(out / 'evals.csv'))} ({len(tidy)} rows), "
                  f"{escape(str(out / 'scores.csv'))} ({len(selected)} trials)")


@app.command()
@options(*SOURCE, "checkpoint", "last_k", "include_unfinished")
def rules(**kw) -> None:
    """target_rules.md/.csv: per task × ratio × variant, the best-target score per seed vs on the seed mean."""
    out = kw.pop("out")
    one_experiment(kw, "rules")
    resolve_store(kw)
    try:
        rule = SelectionRule.from_options("best", kw.pop("checkpoint"), None, kw.pop("last_k"))
        paths = write_rule_comparison(kw["tracking_uri"], kw["experiment"], out, kw["parent_run_id"], rule,
                                      kw["include_unfinished"])
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except MlflowException as exc:
        raise _fail(f"MLflow error at {kw['tracking_uri']}: {exc.message}", code=1) from None
    console.print(Markdown(paths["target_rules.md"].read_text(encoding="utf-8")))
    for path in paths.values():
        console.print(f"[green]wrote[/green] {escape(str(path))}")


def main() -> None:
    """Console-script entry point (``lamo-analysis``)."""
    app()
