"""The paper's figures (PNG + PDF), drawn with Matplotlib's Agg backend without touching pyplot state.

* :func:`plot_score_vs_ratio` — normalised score vs sample ratio per task (mean line, ±0.5·std band:
  the convention of the LaMo paper's shaded curves, arXiv 2310.20587);
* :func:`plot_domain_bars` — Figure-1-style bars: per-domain average score per method;
* :func:`plot_learning_curves` — score vs training step per method (task × ratio panels);
* :func:`plot_rliable_aggregates` — IQM / mean / optimality gap with 95 % stratified-bootstrap CIs;
* :func:`plot_probability_of_improvement` — P(reference > other) with CIs;
* :func:`plot_message` — a placeholder that says why a figure could not be drawn (too few runs, ...).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.domains import domain_sort_key, method_display, method_sort_key, task_info, task_sort_key
from analysis.tables import format_ratio, score_table

ROWS = ("task", "sample_ratio")
DPI = 130


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``<path stem>.<fmt>`` for each format; returns the written paths (PNG first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(formats) > 1 and fig.get_layout_engine() is not None:
        fig.canvas.draw()  # run the constrained layout once, then keep it for every format
        fig.set_layout_engine("none")
    out = []
    for fmt in formats:
        p = path.with_suffix("." + fmt)
        fig.savefig(p, dpi=DPI, metadata={"CreationDate": None} if fmt == "pdf" else None)
        out.append(p)
    return out


def _min_span(ax, span: float = 10.0) -> None:
    """Widen a score axis to at least ``span`` points (identical scores would zoom to ±0.05)."""
    lo, hi = ax.get_ylim()
    if hi - lo < span:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - span / 2, mid + span / 2)


def _legend_columns(labels: Sequence[str], width_in: float, most: int) -> int:
    """Legend columns that fit ``labels`` side by side in a figure ``width_in`` inches wide (at most
    ``most``): about 13 characters of a "small" label per inch, 5 more per entry for its line and gap."""
    per_row = int(width_in * 13 // (max(map(len, labels)) + 5))
    return max(1, min(len(labels), most, per_row))


def _colours(values) -> dict:
    return {v: f"C{i % 10}" for i, v in enumerate(sorted(values, key=method_sort_key))}


def plot_message(path: str | Path, title: str, message: str, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """A figure that only states why the real one could not be drawn (keeps the output set stable)."""
    fig = _figure(6.4, 2.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, fontsize="medium")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 70)), ha="center", va="center", transform=ax.transAxes,
            fontsize="small", color="0.3")
    return save(fig, path, formats)


def plot_score_vs_ratio(
    selected: pd.DataFrame, path: str | Path, column: str = "variant", formats: Sequence[str] = ("png",)
) -> Path:
    """One subplot per task: x = sample ratio (log scale), y = normalised score (0–100).

    One line per ``column`` value (mean over seeds) with a mean ± 0.5·std band. Returns the first
    written file (``path`` with the first of ``formats``).
    """
    table = score_table(selected, by=(*ROWS, column)) if len(selected) else pd.DataFrame(columns=[*ROWS, column])
    tasks = sorted(table["task"].unique(), key=task_sort_key)
    colours = _colours(table[column].unique())
    ncols = min(3, max(1, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig = _figure(max(4.4 * ncols, 6.4), 3.4 * nrows + 0.4)  # at least wide enough for the title
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        t = table[table["task"] == task]
        for value in sorted(t[column].unique(), key=method_sort_key):
            tv = t[t[column] == value].sort_values("sample_ratio")
            x, m, s = tv["sample_ratio"], tv["mean"], tv["std"]
            ax.plot(x, m, marker="o", color=colours[value], label=method_display(value, column))
            if len(tv) > 1:
                ax.fill_between(x, m - 0.5 * s, m + 0.5 * s, color=colours[value], alpha=0.2, lw=0)
            else:  # a band needs two ratios: show the same ± 0.5·std as an error bar
                ax.errorbar(x, m, yerr=0.5 * s, color=colours[value], capsize=4, lw=1.2)
        ratios = sorted(t["sample_ratio"].unique())
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ratios, [format_ratio(r) for r in ratios])
        if len(ratios) == 1:
            ax.set_xlim(ratios[0] / 2, ratios[0] * 2)
        ax.set(title=task_info(task).display, xlabel="sample ratio", ylabel="normalised score")
        _min_span(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title=column if column != "variant" else None)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    if not tasks:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no trials", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle("Normalised score vs sample ratio (mean ± 0.5·std over seeds)", fontsize="medium")
    path = Path(path)
    return save(fig, path, formats or (path.suffix.lstrip(".") or "png",))[0]


def plot_domain_bars(
    averages: pd.DataFrame, path: str | Path, column: str = "variant", formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Figure-1-style grouped bars: x = domain, one bar per method = average normalised score.

    ``averages`` is :func:`analysis.tables.domain_averages`. Bars carry their value (like the
    paper's figure); a domain averaged over fewer cells than it has is labelled ``k/N cells``. With a
    ``paper`` column (:func:`analysis.paper.with_paper_averages`: Figure 1's values, arXiv 2310.20587),
    each bar with a paper value gets a black horizontal tick at it.
    """
    domains = sorted(averages["domain"].unique(), key=domain_sort_key)
    methods = sorted(averages["method"].unique(), key=method_sort_key)
    colours = _colours(methods)
    per_domain = {d: [m for m in methods if ((averages["domain"] == d) & (averages["method"] == m)).any()]
                  for d in domains}
    widest = max((len(v) for v in per_domain.values()), default=1)
    fig = _figure(min(14.0, max(6.5, 1.5 + 0.5 * sum(len(v) for v in per_domain.values()) + 0.4 * len(domains))), 3.9)
    ax = fig.add_subplot()
    width = 0.8 / max(1, widest)
    top = float(averages["mean"].max()) if len(averages) else 1.0
    if "paper" in averages and averages["paper"].notna().any():
        top = max(top, float(averages["paper"].max()))
    has_paper = False
    for i, d in enumerate(domains):
        present = per_domain[d]
        for j, m in enumerate(present):  # the domain's bars, centred on its tick
            value = float(averages[(averages["domain"] == d) & (averages["method"] == m)]["mean"].iloc[0])
            x = i + (j - (len(present) - 1) / 2) * width
            bars = ax.bar(x, value, width * 0.92, color=colours[m])
            ax.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=2)
            if "paper" in averages:
                ref = averages[(averages["domain"] == d) & (averages["method"] == m)]["paper"].iloc[0]
                if pd.notna(ref):
                    ax.hlines(float(ref), x - width * 0.46, x + width * 0.46, colors="black", linewidths=2)
                    has_paper = True
    labels = []
    for d in domains:
        part = averages[averages["domain"] == d]
        k, n = int(part["n_rows"].min()), int(part["n_rows_total"].max())
        labels.append(d if k == n else f"{d}\n({k}/{n} cells)")
    ax.set_xticks(range(len(domains)), labels)
    ax.set_xlim(-0.6, len(domains) - 0.4)
    ax.set_ylabel("average normalised score")
    ax.set_ylim(min(0.0, float(averages["mean"].min()) * 1.1) if len(averages) else 0.0, max(10.0, top * 1.15))
    ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=colours[m], label=method_display(m, column)) for m in methods]
    if has_paper:
        handles.append(Line2D([], [], color="black", linewidth=2, label="paper (Figure 1)"))
    ax.legend(handles=handles, fontsize="small", ncols=min(len(methods), 4), loc="upper right")
    ax.set_title("Average normalised score per domain (over tasks and sample ratios)", fontsize="medium")
    return save(fig, path, formats)


def plot_learning_curves(
    tidy: pd.DataFrame,
    selected: pd.DataFrame,
    path: str | Path,
    column: str = "variant",
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """Normalised score vs training step, one panel per (task, sample ratio), one line per method.

    Each trial contributes the history of the RTG target its selection rule chose (``selected``'s
    ``rtg_target``); lines are means over seeds at each evaluation step, bands mean ± 0.5·std.
    """
    chosen = selected[["run_id", "rtg_target"]]
    curves = tidy.merge(chosen, on=["run_id", "rtg_target"], how="inner").dropna(subset=["normalised_score"])
    runs = selected[["run_id", column]].drop_duplicates("run_id")
    curves = curves.drop(columns=[column], errors="ignore").merge(runs, on="run_id")
    g = curves.groupby(["task", "sample_ratio", column, "step"])["normalised_score"]
    stats = g.agg(mean="mean", std="std").reset_index().fillna({"std": 0.0})
    panels = sorted({(t, r) for t, r in zip(stats["task"], stats["sample_ratio"])},
                    key=lambda p: (task_sort_key(p[0]), p[1]))
    colours = _colours(stats[column].unique())
    nc = min(4, max(1, len(panels)))
    nr = max(1, math.ceil(len(panels) / nc))
    fig = _figure(max(3.6 * nc, 7.0), 2.6 * nr + 0.9)  # at least wide enough for the title and the legend
    axes = fig.subplots(nr, nc, squeeze=False).ravel()
    handles = {}
    for k, (ax, (task, ratio)) in enumerate(zip(axes, panels)):
        part = stats[(stats["task"] == task) & (stats["sample_ratio"] == ratio)]
        for value in sorted(part[column].unique(), key=method_sort_key):
            pv = part[part[column] == value].sort_values("step")
            (line,) = ax.plot(pv["step"], pv["mean"], color=colours[value], marker="." if len(pv) < 15 else None)
            ax.fill_between(pv["step"], pv["mean"] - 0.5 * pv["std"], pv["mean"] + 0.5 * pv["std"],
                            color=colours[value], alpha=0.2, lw=0)
            handles[value] = line
        ax.set_title(f"{task_info(task).display}, {format_ratio(ratio)}", fontsize="small")
        _min_span(ax)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize="x-small")
        if k % nc == 0:
            ax.set_ylabel("normalised score", fontsize="small")
        if k + nc >= len(panels):  # bottom panel of its column
            ax.set_xlabel("training step", fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if not panels:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no evaluations", ha="center", va="center", transform=axes[0].transAxes)
    order = sorted(handles, key=method_sort_key)
    if order:
        labels = [method_display(v, column) for v in order]
        fig.legend([handles[v] for v in order], labels, loc="outside lower center", fontsize="small",
                   ncols=_legend_columns(labels, fig.get_figwidth(), 6))
    fig.suptitle("Learning curves: score of the selected RTG target, mean ± 0.5·std over seeds", fontsize="medium")
    return save(fig, path, formats)


def plot_rliable_aggregates(
    agg: pd.DataFrame, path: str | Path, column: str = "variant", formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """rliable-style interval plot: rows = subsets (all cells, then per sample ratio), columns = metrics.

    Each method: a bar spanning the 95 % CI with a tick at the point estimate (0–100 scale; the
    optimality gap is the mean shortfall below 100, lower is better).
    """
    subsets = list(dict.fromkeys(agg["subset"]))
    metrics = list(dict.fromkeys(agg["metric"]))
    methods = sorted(agg["method"].unique(), key=method_sort_key)
    colours = _colours(methods)
    fig = _figure(3.4 * len(metrics) + 0.8, (0.42 * len(methods) + 0.75) * len(subsets) + 0.6)
    axes = fig.subplots(len(subsets), len(metrics), squeeze=False)
    for i, sub in enumerate(subsets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            part = agg[(agg["subset"] == sub) & (agg["metric"] == metric)].set_index("method")
            for idx, m in enumerate(methods):
                if m not in part.index:
                    continue
                k = len(methods) - 1 - idx  # first method on top, as rliable draws it
                r = part.loc[m]
                ax.barh(k, r["ci_high"] - r["ci_low"], left=r["ci_low"], height=0.6, color=colours[m], alpha=0.75)
                ax.vlines(r["estimate"], k - 0.3, k + 0.3, color="black", lw=1.5)
            names = [method_display(m, column) for m in reversed(methods)]
            ax.set_yticks(range(len(methods)), names if j == 0 else [])
            ax.set_ylim(-0.6, len(methods) - 0.4)
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(labelsize="small")
            n_tasks = int(part["n_tasks"].max()) if len(part) else 0
            title = metric + (" (lower is better)" if metric == "Optimality gap" else "")
            ax.set_title(title if i == 0 else "", fontsize="small")
            if j == 0:
                ax.set_ylabel(f"{sub}\n({n_tasks} task cells)", fontsize="small")
            if i == len(subsets) - 1:
                ax.set_xlabel("normalised score", fontsize="small")
    reps = int(agg["reps"].iloc[0]) if len(agg) else 0
    seed = int(agg["seed"].iloc[0]) if len(agg) else 0
    fig.suptitle(f"rliable aggregates with 95% stratified-bootstrap CIs ({reps} reps, seed {seed})",
                 fontsize="medium")
    return save(fig, path, formats)


def plot_probability_of_improvement(
    poi: pd.DataFrame, path: str | Path, column: str = "variant", formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """One row per other method Y: P(reference > Y) with its 95 % CI; 0.5 = no difference."""
    poi = poi.iloc[::-1]
    ref = method_display(poi["reference"].iloc[0], column) if len(poi) else "reference"
    fig = _figure(6.0, 0.5 * len(poi) + 1.5)
    ax = fig.add_subplot()
    for k, r in enumerate(poi.to_dict("records")):
        ax.barh(k, r["ci_high"] - r["ci_low"], left=r["ci_low"], height=0.55, color="C0", alpha=0.7)
        ax.vlines(r["estimate"], k - 0.28, k + 0.28, color="black", lw=1.5)
        ax.text(1.01, k, f"{r['estimate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] · {r['n_tasks']} cells",
                va="center", fontsize="x-small", transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(poi)), [f"{ref} > {method_display(m, column)}" for m in poi["method"]])
    ax.axvline(0.5, color="0.4", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(poi) - 0.4)
    ax.set_xlabel("probability of improvement")
    ax.grid(axis="x", alpha=0.3)
    reps = int(poi["reps"].iloc[0]) if len(poi) else 0
    ax.set_title(f"Probability of improvement of {ref} (95% CI, {reps} bootstrap reps)", fontsize="medium")
    return save(fig, path, formats)
