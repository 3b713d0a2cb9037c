"""Paper-style outputs from selected trial scores: mean ± std table (Markdown) and score-vs-ratio plot.

Statistics follow the LaMo paper and CORL's README tables: mean ± std over seeds of each trial's
selected normalised score (0–100). The std is the *sample* std (ddof=1); a cell with a single seed
reports std 0 (instead of NaN) so that every filled cell prints, while ``n`` shows there is one seed.
The figure's bands are mean ± 0.5·std, the LaMo paper's convention for shaded curves (spec §0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.runs import load_trial_runs
from analysis.select import FixedTarget, describe_rule, select_scores

ROWS = ("task", "sample_ratio")
MISSING = "—"


def format_ratio(ratio: float) -> str:
    """Sample ratio as the paper prints it: 0.005 → ``0.5%``, 0.1 → ``10%``, 1 → ``100%``."""
    return f"{ratio * 100:.6g}%"


def score_table(selected: pd.DataFrame, by: Sequence[str] = ("task", "sample_ratio", "variant")) -> pd.DataFrame:
    """Mean, std and n of the selected normalised score (0–100) over seeds, per ``by`` cell.

    Args:
        selected: output of :func:`analysis.select.select_scores` (one row per trial).
        by: grouping columns; the last one is the table's column axis (e.g. ``variant`` or an
            ablation field such as ``param.language.weight``).

    Returns:
        Columns ``*by, mean, std, n``. ``std`` is the sample std (ddof=1), 0.0 when ``n == 1``;
        ``n`` counts trials. A ``UserWarning`` is issued when a cell holds the same seed twice
        (e.g. two sweeps in one experiment without ``parent_run_id``, or an ablation axis hidden
        under one variant label).
    """
    by = list(by)
    if selected.duplicated(by + ["seed"]).any():
        warnings.warn("some cells contain the same seed more than once; n counts trials", stacklevel=2)
    g = selected.groupby(by, sort=True, dropna=False)["normalised_score"]
    table = g.agg(mean="mean", std="std", n="count").reset_index()
    table["std"] = table["std"].where(table["n"] > 1, 0.0)
    return table


def markdown_table(table: pd.DataFrame, rule: str, column: str = "variant") -> str:
    """Markdown table: rows task × sample ratio (as %), one column per ``column`` value.

    Cells read ``mean ± std (n=N)`` with one decimal; missing cells ``—``; the best mean of a row
    is bold when the row has at least two filled cells. The first line is the caption, stating
    the statistics and the selection ``rule`` (:func:`analysis.select.describe_rule`).
    """
    caption = (
        "**Normalised score (0–100), mean ± std over seeds** (sample std, ddof=1; 0 for a single "
        f"seed; n = number of seeds). {rule}"
    )
    cols = sorted(table[column].unique(), key=str)
    header = ["task", "sample ratio", *(str(c).replace("|", "\\|") for c in cols)]
    lines = [caption, "", "| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * len(cols)]
    for (task, ratio), grp in table.groupby(list(ROWS), sort=True):
        cells = {r[column]: r for r in grp.to_dict("records")}
        best = grp["mean"].max() if len(grp) > 1 else None
        row = [str(task), format_ratio(ratio)]
        for c in cols:
            r = cells.get(c)
            if r is None or pd.isna(r["mean"]):
                row.append(MISSING)
                continue
            text = f"{r['mean']:.1f} ± {r['std']:.1f} (n={r['n']})"
            row.append(f"**{text}**" if best is not None and r["mean"] == best else text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_score_vs_ratio(selected: pd.DataFrame, path: str | Path, column: str = "variant") -> Path:
    """PNG with one subplot per task: x = sample ratio (log scale), y = normalised score (0–100).

    One line per ``column`` value (mean over seeds) with a mean ± 0.5·std band (LaMo paper's
    convention for shaded regions). Rendered with the Agg backend, without touching pyplot state.
    """
    path = Path(path)
    table = score_table(selected, by=(*ROWS, column))
    tasks = sorted(table["task"].unique(), key=str)
    colours = {v: f"C{i % 10}" for i, v in enumerate(sorted(table[column].unique(), key=str))}
    ncols = min(3, max(1, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig = Figure(figsize=(4.4 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        t = table[table["task"] == task]
        for value, tv in t.groupby(column, sort=True):
            tv = tv.sort_values("sample_ratio")
            x, m, s = tv["sample_ratio"], tv["mean"], tv["std"]
            ax.plot(x, m, marker="o", color=colours[value], label=str(value))
            ax.fill_between(x, m - 0.5 * s, m + 0.5 * s, color=colours[value], alpha=0.2, lw=0)
        ratios = sorted(t["sample_ratio"].unique())
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ratios, [format_ratio(r) for r in ratios])
        ax.set(title=str(task), xlabel="sample ratio", ylabel="normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title=column if column != "variant" else None)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    if not tasks:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no trials", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle("normalised score vs sample ratio (mean ± 0.5·std over seeds)", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_report(
    tracking_uri: str,
    experiment: str,
    out_dir: str | Path,
    parent_run_id: str | None = None,
    target_rule: str = "best",
    checkpoint: str = "last",
    fixed_target: FixedTarget = None,
    last_k: int = 3,
    include_unfinished: bool = False,
    column: str = "variant",
) -> dict[str, Path]:
    """Load a sweep from MLflow and write ``scores.csv``, ``table.md``, ``score_vs_ratio.png``.

    ``scores.csv`` holds one row per trial (selected score, chosen RTG target and step, the rule,
    config axes and params); ``table.md`` the :func:`markdown_table` with a provenance line;
    the PNG the :func:`plot_score_vs_ratio` figure. Rule arguments as in
    :func:`analysis.select.select_scores`.

    Returns:
        ``{"scores": ..., "table": ..., "figure": ...}`` paths inside ``out_dir`` (created).

    Raises:
        ValueError: bad rule arguments, unknown experiment / missing local store (see
            :func:`analysis.runs.load_trial_runs`), or no trial with an evaluation to report.
    """
    rule = describe_rule(target_rule, checkpoint, fixed_target, last_k)  # fail fast on bad args
    df = load_trial_runs(tracking_uri, experiment, parent_run_id, include_unfinished)
    selected = select_scores(df, target_rule, checkpoint, fixed_target, last_k)
    if selected.empty:
        which = "trial" if include_unfinished else "FINISHED trial"
        parent = f" under parent run {parent_run_id!r}" if parent_run_id else ""
        raise ValueError(
            f"No {which} runs with evaluation metrics in experiment {experiment!r}{parent} at "
            f"{tracking_uri!r}. Hint: check --parent-run-id, or pass --include-unfinished."
        )
    if column not in selected:
        raise ValueError(f"column {column!r} not in the trial runs; try 'variant' or a 'param.<name>'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"scores": out / "scores.csv", "table": out / "table.md", "figure": out / "score_vs_ratio.png"}
    selected.to_csv(paths["scores"], index=False)
    source = f"experiment `{experiment}`" + (f", parent run `{parent_run_id}`" if parent_run_id else "")
    md = markdown_table(score_table(selected, by=(*ROWS, column)), rule, column)
    paths["table"].write_text(md + f"\n_Source: {source}; {len(selected)} trials._\n", encoding="utf-8")
    plot_score_vs_ratio(selected, paths["figure"], column)
    return paths
