"""Everything ``lamo-analysis report`` writes, from the MLflow store only.

Statistics follow the LaMo paper (arXiv 2310.20587) and CORL's README tables: mean ± std over seeds of
each trial's selected normalised score (0–100), the score chosen by one :class:`analysis.select.SelectionRule`.
The std is the *sample* std (ddof=1); a cell with a single seed reports std 0 (instead of NaN) so that
every filled cell prints, while ``n`` shows there is one seed. Figure bands are mean ± 0.5·std, the
convention of the LaMo paper's shaded curves. rliable aggregates and probabilities of improvement come
with stratified-bootstrap CIs (Agarwal et al. 2021) under one setting, :data:`analysis.stats.DEFAULT_BOOTSTRAP`
unless given (the end-of-sweep report and ``lamo-analysis`` use the same default).

Output directory (flat):

=================================  ===============================================================
``scores.csv``                     one row per trial: selected score, RTG target, step, rule, axes
``table.md``                       all tasks × ratios × ``column`` (the quick-look table)
``score_vs_ratio.png/.pdf``        normalised score vs sample ratio per task
``table_<sparse|dense|atari|other>.md/.tex/.csv``  the paper's main tables (those with data)
``ablation_<field>.md/.tex/.csv``  ablation tables (fields varying within matching configs)
``domain_averages.csv``, ``domain_bars.png/.pdf``  Figure-1-style per-domain averages
``learning_curves.png/.pdf``       score vs training step per method
``rliable_aggregates.csv/.png/.pdf``          IQM, mean, optimality gap with 95 % CIs
``probability_of_improvement.csv/.png/.pdf``  P(reference > other) with 95 % CIs
``paper_comparison.md/.csv/.tex``  the paper's known numbers beside ours
``claims.md/.csv``                  the paper's claims: P(A > B), CI, runs, p (Holm), verdict
``report.md``                      index: source, rule, every file, all tables, notes
=================================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from analysis import claims as C
from analysis import figures as F
from analysis import paper as P
from analysis import stats as S
from analysis import tables as T
from analysis.figures import plot_score_vs_ratio  # noqa: F401  (re-exported)
from analysis.domains import score_unit
from analysis.runs import load_trial_runs
from analysis.select import DEFAULT_RULE, SelectionRule, rule_text, select_scores
from analysis.stats import DEFAULT_BOOTSTRAP, MIN_RUNS, Bootstrap
from analysis.tables import format_ratio, score_table  # noqa: F401  (re-exported)

ROWS = ("task", "sample_ratio")
MISSING = "—"
PARTS = ("tables", "figures", "rliable", "paper", "claims")
#: Output names this module owns (stale ones from an earlier report in the same directory are removed).
_OWNED_GLOBS = ("table_*.md", "table_*.tex", "table_*.csv", "ablation_*.md", "ablation_*.tex", "ablation_*.csv")


def markdown_table(table: pd.DataFrame, rule: SelectionRule | str, column: str = "variant") -> str:
    """Markdown quick-look table (``table.md``): rows task × sample ratio (as %), one column per value.

    ``table`` is :func:`analysis.tables.score_table` output (normalised scores in the tasks' unit,
    :func:`analysis.domains.score_unit`, named in the caption). Cells read
    ``mean ± std (n=N)`` with one decimal; missing cells ``—``; the best mean of a row is bold when
    the row has at least two filled cells. The first line is the caption, stating the statistics and
    the selection ``rule`` (:meth:`analysis.select.SelectionRule.describe`, or a given text).
    """
    caption = (
        f"**{score_unit(table['task'].unique())}, mean ± std over seeds** (sample std, ddof=1; 0 for a single "
        f"seed; n = number of seeds). {rule_text(rule)}"
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


def load_selected(
    tracking_uri: str,
    experiment: str,
    parent_run_id: str | None = None,
    rule: SelectionRule = DEFAULT_RULE,
    include_unfinished: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(tidy, selected)``: the sweep's evaluations (:func:`analysis.runs.load_trial_runs`) and one
    score per trial under ``rule`` (:func:`analysis.select.select_scores`; normalised scores 0–100,
    returns raw).

    Raises:
        ValueError: unknown experiment / missing local store, or no trial with an evaluation to report.
    """
    tidy = load_trial_runs(tracking_uri, experiment, parent_run_id, include_unfinished)
    selected = select_scores(tidy, rule)
    if selected.empty:
        which = "trial" if include_unfinished else "FINISHED trial"
        parent = f" under parent run {parent_run_id!r}" if parent_run_id else ""
        raise ValueError(
            f"No {which} runs with evaluation metrics in experiment {experiment!r}{parent} at "
            f"{tracking_uri!r}. Hint: check --parent-run-id, or pass --include-unfinished."
        )
    return tidy, selected


class _Writer:
    """Collects written paths (``name → path``) and notes for ``report.md``."""

    def __init__(self, out: Path):
        self.out = out
        self.paths: dict[str, Path] = {}
        self.notes: list[str] = []
        self.sections: list[str] = []
        self.claims: str = ""

    def text(self, name: str, text: str) -> Path:
        p = self.out / name
        p.write_text(text, encoding="utf-8")
        self.paths[name] = p
        return p

    def csv(self, name: str, frame: pd.DataFrame) -> Path:
        p = self.out / name
        frame.to_csv(p, index=False)
        self.paths[name] = p
        return p

    def files(self, paths: Iterable[Path]) -> None:
        for p in paths:
            self.paths[p.name] = p


def _write_table(w: _Writer, t: T.PaperTable, source: str) -> None:
    md = T.to_markdown(t) + f"\n_Source: {source}._\n"
    w.text(f"{t.name}.md", md)
    w.text(f"{t.name}.tex", T.to_latex(t))
    w.csv(f"{t.name}.csv", T.to_csv_frame(t))
    w.sections.append(f"### {t.title}\n\n{md}")


def _paper_reference(paper_numbers: str | Path | None,
                     method_map: dict[str, str] | None) -> tuple[pd.DataFrame, dict, dict]:
    """``(numbers, methods, overrides)`` of the paper's numbers, to put beside ours."""
    numbers, _sources, methods = P.load_paper_numbers(paper_numbers)
    return numbers, methods, method_map or {}


def _write_tables(w: _Writer, selected: pd.DataFrame, rule: SelectionRule | str, column: str, source: str,
                  paper_numbers: str | Path | None = None, method_map: dict[str, str] | None = None) -> None:
    w.notes += T.mixed_configurations(selected, column)
    numbers, methods, overrides = _paper_reference(paper_numbers, method_map)
    cells, _ = P.paper_cells(selected, numbers, methods, column, overrides)
    main = T.paper_tables(selected, rule, column)
    P.annotate_tables(main, cells)
    for t in main:
        _write_table(w, t, source)
    abl, notes = T.ablation_tables(selected, rule)
    for t in abl:
        _write_table(w, t, source)
    w.notes += [f"Ablation {n}" for n in notes]


def _write_figures(w: _Writer, tidy: pd.DataFrame, selected: pd.DataFrame, column: str,
                   paper_numbers: str | Path | None = None, method_map: dict[str, str] | None = None) -> None:
    png = F.plot_score_vs_ratio(selected, w.out / "score_vs_ratio.png", column, formats=("png", "pdf"))
    w.files([png, png.with_suffix(".pdf")])
    numbers, methods, overrides = _paper_reference(paper_numbers, method_map)
    averages = P.with_paper_averages(T.domain_averages(selected, column), selected, numbers, methods, column,
                                     overrides)
    w.csv("domain_averages.csv", averages)
    if len(averages):
        w.files(F.plot_domain_bars(averages, w.out / "domain_bars", column))
    else:
        w.files(F.plot_message(w.out / "domain_bars", "Per-domain averages", "no scores to average"))
    w.files(F.plot_learning_curves(tidy, selected, w.out / "learning_curves", column))


def _write_rliable(w: _Writer, selected: pd.DataFrame, column: str, reference: str, boot: Bootstrap,
                   min_runs: int) -> None:
    try:
        agg, notes = S.aggregate_estimates(selected, column, reps=boot.reps, seed=boot.seed, min_runs=min_runs,
                                           confidence=boot.confidence)
        poi, poi_notes = S.probability_of_improvement(selected, reference, column, reps=boot.poi_reps,
                                                      seed=boot.seed, min_runs=min_runs, confidence=boot.confidence)
    except S.RliableUnavailable as e:
        agg, notes = pd.DataFrame(columns=S.AGG_COLUMNS), [str(e)]
        poi, poi_notes = pd.DataFrame(columns=S.POI_COLUMNS), [str(e)]
    w.csv("rliable_aggregates.csv", agg)
    w.csv("probability_of_improvement.csv", poi)
    w.notes += [f"rliable aggregates: {n}" for n in notes] + [f"Probability of improvement: {n}" for n in poi_notes]
    if len(agg):
        w.files(F.plot_rliable_aggregates(agg, w.out / "rliable_aggregates", column))
    else:
        why = "; ".join(notes) or "no data"
        w.files(F.plot_message(w.out / "rliable_aggregates", "rliable aggregates: skipped",
                               f"Needs at least {min_runs} seeds per (task, ratio) cell for every method. {why}"))
    if len(poi):
        w.files(F.plot_probability_of_improvement(poi, w.out / "probability_of_improvement", column))
    else:
        why = "; ".join(poi_notes) or "no data"
        w.files(F.plot_message(w.out / "probability_of_improvement", "Probability of improvement: skipped",
                               f"Needs the reference method {reference!r} and another method with at least "
                               f"{min_runs} seeds in common (task, ratio) cells. {why}"))


def _write_paper(w: _Writer, selected: pd.DataFrame, rule: str, column: str, paper_numbers: str | Path | None,
                 method_map: dict[str, str] | None) -> None:
    numbers, sources, methods = P.load_paper_numbers(paper_numbers)
    comp, notes = P.compare(selected, numbers, sources, methods, column, method_map)
    md = P.comparison_markdown(comp, sources, rule, notes)
    w.text("paper_comparison.md", md)
    w.csv("paper_comparison.csv", comp)
    w.text("paper_comparison.tex", P.comparison_latex(comp, rule))
    w.sections.append(f"### The paper beside us\n\n{md}")


def _write_claims(w: _Writer, selected: pd.DataFrame, rule: str, boot: Bootstrap, min_runs: int) -> None:
    try:
        frame = C.check_claims(selected, boot, min_runs)
    except S.RliableUnavailable as e:
        w.notes.append(f"Claims: {e}")
        return
    md = C.claims_markdown(frame, rule, boot, min_runs)
    w.text("claims.md", md)
    w.csv("claims.csv", frame)
    w.claims = md


def write_report(
    tracking_uri: str,
    experiment: str,
    out_dir: str | Path,
    parent_run_id: str | None = None,
    rule: SelectionRule = DEFAULT_RULE,
    include_unfinished: bool = False,
    column: str = "variant",
    parts: Iterable[str] = PARTS,
    reference: str = "lamo",
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    min_runs: int = MIN_RUNS,
    paper_numbers: str | Path | None = None,
    method_map: dict[str, str] | None = None,
    claims_min_runs: int = C.MIN_RUNS_PER_SIDE,
) -> dict[str, Path]:
    """Load a sweep from MLflow and write its tables, figures and comparisons (module docstring).

    Always written: ``scores.csv`` (one row per trial) and ``report.md`` (index). ``parts`` picks
    the rest: ``tables`` (``table.md`` + paper and ablation tables), ``figures`` (score vs ratio,
    domain bars, learning curves), ``rliable`` (aggregates and probability of improvement of
    ``reference`` over each other ``column`` value, with ``bootstrap``'s replications, seed and
    coverage; cells need ``min_runs`` seeds), ``paper`` (comparison with ``paper_numbers``, default
    the packaged YAML; ``method_map`` = ``{paper method: our value}`` overrides; the paper's numbers are
    also put beside ours in the paper tables and ``domain_averages.csv`` when ``tables`` / ``figures``
    run) and ``claims`` (:mod:`analysis.claims`: each of the paper's claims with rliable's probability
    of improvement, its CI under ``bootstrap``, the runs per side and a verdict from a within-cell
    permutation test at level 1 − ``bootstrap.confidence`` with Holm's correction across the tested
    rows; a side with fewer than ``claims_min_runs`` runs, or runs that cannot reach the level, gives
    "not enough runs"). One score per trial
    by ``rule`` (:class:`analysis.select.SelectionRule`, default LaMo's); every caption states it. The
    paper-layout tables (``table_*``, ``ablation_*``) and the paper comparison use
    :func:`analysis.tables.paper_layout_rule` of ``rule``: the paper's own rule (:data:`analysis.tables.PAPER_RULE`)
    when ``rule`` is the default, else ``rule``; ``report.md`` notes which.
    Scores are normalised (0–100; Atari gamer-normalised × 100), probabilities of improvement 0–1.
    ``lamo-sweep`` calls this at the end of a sweep with the defaults, so its CIs equal those of
    ``lamo-analysis report`` on the same store.

    Returns:
        ``name → path`` of every written file. With the default ``parts`` it includes the keys
        ``"scores"`` (scores.csv), ``"table"`` (table.md) and ``"figure"`` (score_vs_ratio.png).

    Raises:
        ValueError: ``parts`` not a subset of :data:`PARTS`, unknown experiment / missing local store
            (see :func:`analysis.runs.load_trial_runs`), no trial with an evaluation, ``column``
            without values, or an invalid ``paper_numbers`` file (:func:`analysis.paper.load_paper_numbers`). (Bad rule or bootstrap settings
            already fail when the :class:`~analysis.select.SelectionRule` / :class:`~analysis.stats.Bootstrap`
            is built.)
    """
    parts = set(parts)
    if not parts <= set(PARTS):
        raise ValueError(f"parts must be a subset of {PARTS}, got {sorted(parts)}")
    tidy, selected = load_selected(tracking_uri, experiment, parent_run_id, rule, include_unfinished)
    text = rule.describe()
    _check_column(selected, column)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w = _Writer(out)
    source = _source_text(tracking_uri, experiment, parent_run_id, len(selected))
    w.csv("scores.csv", selected)
    selected = _drop_unlabelled(w, selected, column)
    paper_rule, paper_sel, paper_text = _paper_selection(w, tidy, selected, rule, column, parts)
    if "tables" in parts:
        md = markdown_table(score_table(selected, by=(*ROWS, column)), text, column)
        w.text("table.md", md + f"\n_Source: {source}._\n")
        _write_tables(w, paper_sel, paper_rule, column, source, paper_numbers, method_map)
    if "figures" in parts:
        _write_figures(w, tidy, selected, column, paper_numbers, method_map)
    if "rliable" in parts:
        _write_rliable(w, selected, column, reference, bootstrap, min_runs)
    if "paper" in parts:
        _write_paper(w, paper_sel, paper_text, column, paper_numbers, method_map)
    if "claims" in parts:
        _write_claims(w, selected, text, bootstrap, claims_min_runs)
    if parts == set(PARTS):
        _remove_stale(w)
    _write_index(w, source, text, selected, bootstrap if {"rliable", "claims"} & parts else None)
    return _with_aliases(w.paths)


def _check_column(selected: pd.DataFrame, column: str) -> None:
    """Raise ``ValueError`` (with the columns to try instead) when ``column`` has no value in ``selected``."""
    if column not in selected or selected[column].isna().all():
        raise ValueError(f"column {column!r} has no values in the trial runs; try 'variant', an ablation field "
                         "(embedding, finetune, language_weight, init, lm) or a 'param.<name>'")


def _source_text(tracking_uri: str, experiment: str, parent_run_id: str | None, trials: int) -> str:
    """The source line of every table and ``report.md``: experiment, parent run, tracking URI, trials."""
    source = f"experiment `{experiment}`" + (f", parent run `{parent_run_id}`" if parent_run_id else "")
    return source + f", tracking URI `{tracking_uri}`; {trials} trials"


def _drop_unlabelled(w: _Writer, selected: pd.DataFrame, column: str) -> pd.DataFrame:
    """``selected`` without the trials that have no value of ``column`` (a note in ``report.md`` counts them)."""
    unlabelled = selected[column].isna()
    if unlabelled.any():
        w.notes.append(f"{int(unlabelled.sum())} trial(s) without a value of `{column}` left out of tables and figures")
        selected = selected[~unlabelled]
    return selected


def _paper_selection(w: _Writer, tidy: pd.DataFrame, selected: pd.DataFrame, rule: SelectionRule, column: str,
                     parts: set[str]) -> tuple[SelectionRule, pd.DataFrame, str]:
    """``(paper_rule, paper_selected, paper_text)`` for the paper-layout tables and the paper comparison.

    ``paper_rule`` is :func:`analysis.tables.paper_layout_rule` of ``rule`` (the paper's own rule unless a
    rule was chosen); ``paper_selected`` is ``selected`` when it equals ``rule``, else ``tidy`` re-selected
    under it, in both cases without trials lacking ``column``. When the rules differ and ``tables`` or
    ``paper`` is in ``parts``, ``report.md`` gets a note naming the paper rule.
    """
    paper_rule = T.paper_layout_rule(rule)
    paper_sel = selected if paper_rule == rule else select_scores(tidy, paper_rule)
    paper_sel = paper_sel[paper_sel[column].notna()]
    paper_text = T.paper_rule_text(paper_rule)
    if paper_rule != rule and {"tables", "paper"} & parts:
        w.notes.append(f"Paper-layout tables and the paper comparison: {paper_text}")
    return paper_rule, paper_sel, paper_text


def _remove_stale(w: _Writer) -> None:
    """Delete files of :data:`_OWNED_GLOBS` in ``w.out`` that this report did not write (an earlier
    report's tables that this data no longer produces), each with a note in ``report.md``."""
    for pattern in _OWNED_GLOBS:
        for stale in w.out.glob(pattern):
            if stale.name not in w.paths:
                stale.unlink()
                w.notes.append(f"removed stale `{stale.name}` from an earlier report")


def _with_aliases(paths: dict[str, Path]) -> dict[str, Path]:
    """``paths`` (``name → path``) preceded by the aliases ``scores``, ``table`` and ``figure`` of the
    files that were written (scores.csv, table.md, score_vs_ratio.png)."""
    paths = dict(paths)
    aliases = {"scores": "scores.csv", "table": "table.md", "figure": "score_vs_ratio.png"}
    front = {k: paths[v] for k, v in aliases.items() if v in paths}
    return {**front, **paths}


def _write_index(w: _Writer, source: str, rule: str, selected: pd.DataFrame, boot: Bootstrap | None) -> None:
    statuses = selected["status"].value_counts().to_dict() if "status" in selected else {}
    stats = "- Statistics: mean ± std over seeds (sample std, ddof=1); figure bands mean ± 0.5·std"
    if boot is not None:
        stats += (f"; rliable CIs are {boot.confidence * 100:g} % stratified-bootstrap intervals ({boot.reps} "
                  f"replications, {boot.poi_reps} for the probability of improvement, seed {boot.seed})")
    lines = [
        "# lamo-analysis report", "",
        f"- Source: {source} ({', '.join(f'{v} {k}' for k, v in statuses.items())}).",
        f"- Selection rule: {rule}",
        stats + ".", "",
        "## Files", "",
    ]
    lines += [f"- `{name}`" for name in sorted(w.paths)] + ["- `report.md` (this file)"]
    if w.claims:
        lines += ["", "## Claims", "", w.claims]
    if w.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in w.notes]
    if w.sections:
        lines += ["", "## Tables", ""] + w.sections
    w.text("report.md", "\n".join(lines) + "\n")


__all__ = ["markdown_table", "score_table", "format_ratio", "plot_score_vs_ratio", "load_selected",
           "write_report", "PARTS", "SelectionRule", "Bootstrap", "DEFAULT_BOOTSTRAP"]
