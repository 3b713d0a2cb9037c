"""One report over several experiments (``lamo-analysis report --experiment A --experiment B ...``).

The paper's Figure 1 averages each domain (Kitchen, Atari, MuJoCo) over its own sweep, and our sweep
files put the domains in different experiments (``paper_sparse``, ``atari``, ``paper_mujoco``; one
experiment per sweep). This writes, under ``out_dir``:

==========================================  ==========================================================
``experiments/<name>/``                     each experiment's full report (:func:`analysis.report.write_report`:
                                            its tables, figures, rliable, paper comparison, claims)
``scores.csv``                              every experiment's trials, one row each, column ``experiment``
``domain_averages.csv``, ``domain_bars.*``  the Figure-1-style per-domain averages over all of them, with the
                                            paper's value (column ``paper``) and the experiments behind each
                                            domain (``experiments``)
``learning_curves.*``                       every experiment's learning curves in one figure, a panel per
                                            (task, sample ratio); a method that two experiments have in
                                            the same cell gets one line each, labelled ``METHOD [experiment]``
                                            (e.g. the same baseline trained for longer in its own sweep)
``report.md``                               index: source, rule, each experiment's report, the averages, notes
==========================================  ==========================================================

Each experiment's tables stay separate (a cell never pools two experiments). A trial whose config hash
is in more than one experiment (a sweep logged twice under two names) counts once in the combined
averages, from the first experiment given, and ``report.md`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from analysis import figures as F
from analysis import paper as P
from analysis import tables as T
from analysis.report import PARTS, load_selected, write_report
from analysis.select import DEFAULT_RULE, SelectionRule


def experiment_dirname(name: str) -> str:
    """A directory name for experiment ``name`` (MLflow names may hold ``/`` or spaces): runs of other
    characters than letters, digits, ``.``, ``_``, ``-`` become one ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"


def write_combined_report(
    tracking_uri: str,
    experiments: Sequence[str],
    out_dir: str | Path,
    rule: SelectionRule = DEFAULT_RULE,
    include_unfinished: bool = False,
    column: str = "variant",
    parts: Iterable[str] = PARTS,
    paper_numbers: str | Path | None = None,
    method_map: dict[str, str] | None = None,
    **report_kw,
) -> dict[str, Path]:
    """Write each experiment's report under ``out_dir/experiments/<name>/`` and, over all of them, the
    Figure-1-style domain averages and ``report.md`` (module docstring).

    Args:
        tracking_uri: the MLflow store holding every experiment.
        experiments: MLflow experiment names (a sweep's experiment is its ``tracking.experiment``, else its
            ``name``), at least two, no repeats.
        out_dir: output directory.
        rule, include_unfinished, column, parts, paper_numbers, method_map, report_kw: as for
            :func:`analysis.report.write_report` (``report_kw``: ``reference``, ``bootstrap``, ``min_runs``,
            ``claims_min_runs``); the combined figure is written when ``parts`` has ``figures``.

    Returns:
        ``name → path`` of every written file; per-experiment files as ``<dir>/<file>``.

    Raises:
        ValueError: fewer than two experiments, a repeated one, two names with the same directory name, or
            any error of :func:`analysis.report.write_report` for one of them (prefixed with its name).
    """
    experiments = list(experiments)
    if len(experiments) < 2:
        raise ValueError("a combined report needs at least two experiments (one: lamo-analysis report "
                         "--experiment NAME)")
    if len(set(experiments)) != len(experiments):
        raise ValueError(f"--experiment repeats a name: {experiments}")
    dirs = [experiment_dirname(e) for e in experiments]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"experiments {experiments} map to the same directory names {dirs}: rename one")
    parts = tuple(parts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    frames, tidies, notes = [], [], []
    for name, d in zip(experiments, dirs):
        try:
            written = write_report(tracking_uri, name, out / "experiments" / d, rule=rule,
                                   include_unfinished=include_unfinished, column=column, parts=parts,
                                   paper_numbers=paper_numbers, method_map=method_map, **report_kw)
            tidy, selected = load_selected(tracking_uri, name, None, rule, include_unfinished)
        except ValueError as e:
            raise ValueError(f"experiment {name!r}: {e}") from None
        paths |= {f"{d}/{p.name}": p for p in written.values()}
        frames.append(selected.assign(experiment=name))
        tidies.append(tidy)
    allsel = pd.concat(frames, ignore_index=True)
    if "config_hash" in allsel:
        dup = allsel["config_hash"].notna() & allsel.duplicated("config_hash", keep="first")
        if dup.any():
            notes.append(f"{int(dup.sum())} trial(s) whose config hash is also in an earlier experiment counted once, "
                         f"from the first experiment given (left out of {', '.join(sorted(set(allsel.loc[dup, 'experiment'])))})")
            allsel = allsel[~dup]
    allsel.to_csv(out / "scores.csv", index=False)
    paths["scores.csv"] = out / "scores.csv"
    averages = None
    if "figures" in parts:
        labelled = allsel[allsel[column].notna()] if column in allsel else allsel.iloc[0:0]
        numbers, _sources, methods = P.load_paper_numbers(paper_numbers)
        averages = P.with_paper_averages(T.domain_averages(labelled, column), labelled, numbers, methods, column,
                                         method_map or {})
        by_domain = {dom: ", ".join(sorted(set(labelled.loc[labelled["task"].map(lambda t: _domain(t) == dom),
                                                            "experiment"])))
                     for dom in averages["domain"].unique()}
        averages["experiments"] = averages["domain"].map(by_domain)
        averages.to_csv(out / "domain_averages.csv", index=False)
        paths["domain_averages.csv"] = out / "domain_averages.csv"
        figs = (F.plot_domain_bars(averages, out / "domain_bars", column) if len(averages) else
                F.plot_message(out / "domain_bars", "Per-domain averages", "no scores to average"))
        paths |= {p.name: p for p in figs}
        curves = F.plot_learning_curves(pd.concat(tidies, ignore_index=True), label_shared(allsel, column),
                                        out / "learning_curves", column)
        paths |= {p.name: p for p in curves}
    _write_index(out, tracking_uri, experiments, dirs, allsel, rule, averages, notes)
    paths["report.md"] = out / "report.md"
    return paths


def label_shared(selected: pd.DataFrame, column: str = "variant") -> pd.DataFrame:
    """``selected`` (one row per trial, with its ``experiment``) with ``column`` relabelled
    ``"<display name> [<experiment>]"`` where more than one experiment has that value in the same (task,
    sample ratio) cell, so that their learning curves stay apart; other rows unchanged."""
    from analysis.domains import method_display

    if column not in selected or selected.empty:
        return selected
    shared = selected.groupby(["task", "sample_ratio", column], dropna=False)["experiment"].transform("nunique") > 1
    out = selected.copy()
    out[column] = out[column].astype(object)
    out.loc[shared, column] = [f"{method_display(v, column)} [{e}]"
                               for v, e in zip(out.loc[shared, column], out.loc[shared, "experiment"])]
    return out


def _domain(task: str) -> str:
    from analysis.domains import task_info

    return task_info(task).domain


def _write_index(out: Path, uri: str, experiments: list[str], dirs: list[str], allsel: pd.DataFrame,
                 rule: SelectionRule, averages: pd.DataFrame | None, notes: list[str]) -> None:
    counts = allsel["experiment"].value_counts().to_dict()
    lines = ["# lamo-analysis report: several experiments", "",
             f"- Source: tracking URI `{uri}`; {len(allsel)} trials.",
             f"- Selection rule: {rule.describe()}", "", "## Experiments", "",
             "| experiment | trials | report |", "|---|---:|---|"]
    lines += [f"| `{e}` | {counts.get(e, 0)} | [experiments/{d}/report.md](experiments/{d}/report.md) |"
              for e, d in zip(experiments, dirs)]
    if averages is not None:
        lines += ["", "## Per-domain averages (Figure 1)", "",
                  "Mean over the domain's (task × sample ratio) cells that every method has, normalised score "
                  "(Atari: gamer-normalised); `paper` = the paper's Figure 1 value. `domain_bars.png/.pdf`.", "",
                  "| domain | method | ours | cells | paper | experiments |", "|---|---|---:|---:|---:|---|"]
        for r in averages.to_dict("records"):
            paper = "" if pd.isna(r.get("paper")) else f"{r['paper']:.1f}"
            lines.append(f"| {r['domain']} | {r['method']} | {r['mean']:.1f} | {r['n_rows']}/{r['n_rows_total']} | "
                         f"{paper} | {r['experiments']} |")
    if averages is not None:
        lines += ["", "Learning curves of every experiment, a panel per (task, sample ratio): "
                  "`learning_curves.png/.pdf` (a method two experiments have in one cell: `METHOD [experiment]`)."]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["write_combined_report", "experiment_dirname", "label_shared"]
