"""The paper's tables from selected trial scores, rendered as Markdown, LaTeX and CSV.

Layout (LaMo, ICLR 2024): rows task × sample ratio, one column per method, cells ``mean ± std`` over
seeds with the seed count; missing cells ``—``; the best mean of a row in bold; average rows per
domain. Tables:

* ``table_sparse`` — Kitchen-Partial, Kitchen-Complete, Reacher2d;
* ``table_dense`` — Hopper / HalfCheetah / Walker2d medium;
* ``table_atari`` — Breakout, Qbert, Pong (gamer-normalised);
* ``table_other`` — tasks the paper has no table for;
* ``ablation_<field>`` — one per ablation field (``embedding``, ``finetune``, ``language_weight``,
  ``init``, ``lm``) that varies *within otherwise-matching configurations*.

Score rule: the paper-layout tables (``table_*``, ``ablation_*``) and the paper comparison default to the
paper's own rule, :data:`PAPER_RULE` (LaMo §5.1: the mean over the evaluations of the last 20k of 100k
training steps, one evaluation every 2,500 steps = the last 8 evaluations; the best RTG target per trial),
and their caption says so (:func:`paper_rule_text`); an explicitly chosen rule replaces it
(:func:`paper_layout_rule`; ``docs/deviations.md`` row 12).

Statistics: per cell, mean and sample std (ddof=1; 0 for one seed) over the trials' selected
normalised scores (:func:`analysis.select.select_scores`); an *average row* is the mean of the row
means over the rows of that domain in which every method of the table that has any score in the
domain has one ("common rows"), so that methods are averaged over the same cells; when fewer than
all rows qualify the label says so (``Average MuJoCo (3/4 rows)``).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.domains import (
    SCORE_UNITS,
    SOURCE_MARKS,
    SOURCE_NOTES,
    TABLES,
    domain_sort_key,
    method_display,
    method_sort_key,
    score_unit,
    task_info,
    task_sort_key,
)
from analysis.runs import ABLATION_FIELDS
from analysis.select import DEFAULT_RULE, SelectionRule, rule_text
from trainers import contract

MISSING = "—"
#: Params that identify a trial inside a grid, not its configuration (ignored when matching configs):
#: the grid axes (:data:`trainers.contract.AXIS_TAGS`, also logged as params) and the device.
PER_TRIAL_PARAMS = (*(f"param.{a}" for a in contract.AXIS_TAGS), "param.device")
#: Params that are inert for one value of an ablation field (ignored when matching configs for it):
#: the language settings when the language weight is 0, the LoRA settings without LoRA.
INERT_PARAMS: dict[str, tuple[str, ...]] = {
    "language_weight": ("param.language.",),
    "finetune": ("param.model.lora.",),
}
ABLATION_TITLES: dict[str, str] = {
    "embedding": "Ablation: linear vs MLP embeddings",
    "finetune": "Ablation: LoRA vs full fine-tuning vs frozen backbone",
    "language_weight": "Ablation: language-loss weight λ",
    "init": "Ablation: pre-trained vs random initialisation",
    "lm": "Ablation: language model",
}


#: Evaluations in the paper's score window: "the average performance over the last 20K training steps out
#: of a total of 100K training steps with evaluations conducted every 2500 training steps" (LaMo, ICLR 2024
#: camera-ready, §5.1) = 20,000 / 2,500 evaluations. (The paper's Appendix D names two exceptions: Reacher2d
#: over the last 12.5K of 37.5K steps, Breakout over the last 10K of 50K; a run evaluated at another cadence
#: than one evaluation per 2,500 steps gets 8 evaluations, not 20k steps.)
PAPER_LAST_K = 20_000 // 2_500
#: The paper's score rule: per trial, the mean normalised score over the last :data:`PAPER_LAST_K`
#: evaluations of the best-performing RTG target (the target rule the paper does not state; LaMo's answer in
#: github.com/srzer/LaMo-2023/issues/1 and :data:`analysis.select.DEFAULT_RULE` take the best target).
PAPER_RULE = SelectionRule(target_rule="best", checkpoint="mean_last_k", last_k=PAPER_LAST_K)


def paper_layout_rule(rule: SelectionRule | None = None) -> SelectionRule:
    """The rule behind the paper-layout tables and the paper comparison.

    :data:`PAPER_RULE` when ``rule`` is ``None`` or the analysis default (:data:`analysis.select.DEFAULT_RULE`,
    i.e. no rule option was given); otherwise ``rule`` (an explicit choice applies to every output). To get
    the final evaluation in these tables, ask for it with another spelling of the same rule, e.g.
    ``--checkpoint mean_last_k --last-k 1``.
    """
    return PAPER_RULE if rule is None or rule == DEFAULT_RULE else rule


def paper_rule_text(rule: SelectionRule | str) -> str:
    """Caption text of the rule behind a paper-layout table: :meth:`SelectionRule.describe`, prefixed by
    "Paper's score rule (...)" when ``rule`` is :data:`PAPER_RULE`; a string is returned as is."""
    if isinstance(rule, SelectionRule) and rule == PAPER_RULE:
        return ("Paper's score rule (LaMo §5.1: mean over the evaluations of the last 20k of 100k training "
                f"steps, one every 2,500 steps = the last {PAPER_LAST_K} evaluations). " + rule.describe())
    return rule_text(rule)


def format_ratio(ratio: float) -> str:
    """Sample ratio as the paper prints it: 0.005 → ``0.5%``, 0.1 → ``10%``, 1 → ``100%``."""
    return f"{ratio * 100:.6g}%"


def score_table(selected: pd.DataFrame, by: Sequence[str] = ("task", "sample_ratio", "variant")) -> pd.DataFrame:
    """Mean, std and n of the selected normalised score (0–100) over seeds, per ``by`` cell.

    Args:
        selected: output of :func:`analysis.select.select_scores` (one row per trial).
        by: grouping columns; the last one is the table's column axis (e.g. ``variant`` or an
            ablation field such as ``embedding`` / ``param.language.weight``).

    Returns:
        Columns ``*by, mean, std, n``. ``std`` is the sample std (ddof=1), 0.0 when ``n == 1``;
        ``n`` counts trials. A ``UserWarning`` is issued when a cell holds the same seed twice
        (e.g. two sweeps in one experiment without ``parent_run_id``, or an ablation axis hidden
        under one variant label).
    """
    import warnings

    by = list(by)
    if selected.duplicated(by + ["seed"]).any():
        warnings.warn("some cells contain the same seed more than once; n counts trials", stacklevel=2)
    g = selected.groupby(by, sort=True, dropna=False)["normalised_score"]
    table = g.agg(mean="mean", std="std", n="count").reset_index()
    table["std"] = table["std"].where(table["n"] > 1, 0.0)
    return table


# --- table model ------------------------------------------------------------------------------------
@dataclass
class Cell:
    mean: float
    std: float = float("nan")  # NaN in average rows
    n: int = 0  # seeds (trials) of a cell; rows averaged in an average row


@dataclass
class Row:
    """One table row: ``kind`` is ``"cell"`` (task × ratio) or ``"average"`` (a domain average)."""

    kind: str
    setting: str
    task: str  # registry name ("" for average rows)
    task_label: str  # display label incl. data-source mark, or the average's label
    sample_ratio: float  # NaN for average rows
    domain: str
    data_source: str  # ";"-joined sources of the row's trials
    cells: dict = field(default_factory=dict)  # column value → Cell

    def best(self) -> set:
        """Column values holding the row's highest mean (none when fewer than two cells are filled)."""
        means = {k: c.mean for k, c in self.cells.items() if c is not None and not math.isnan(c.mean)}
        if len(means) < 2:
            return set()
        top = max(means.values())
        best = {k for k, m in means.items() if np.isclose(m, top, rtol=0, atol=1e-9)}
        return set() if len(best) == len(means) else best  # all tied: nothing stands out


@dataclass
class PaperTable:
    """A rendered-agnostic paper table; see :func:`to_markdown`, :func:`to_latex`, :func:`to_csv_frame`."""

    name: str
    title: str
    caption: str
    column: str  # the column axis (variant, or an ablation field)
    columns: list
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    rule: str = ""
    #: The paper's numbers beside ours: ``(task, sample_ratio, column value) → (value, source key)``
    #: (reference data from ``analysis/paper_numbers.yaml``; :func:`analysis.paper.annotate_tables`).
    paper: dict = field(default_factory=dict)

    def paper_value(self, row: Row, column: object) -> float | None:
        """The paper's number for a cell row × column, or ``None`` (average rows never have one)."""
        if row.kind != "cell":
            return None
        for (task, ratio, col), (value, _src) in self.paper.items():
            if task == row.task and col == column and math.isclose(ratio, row.sample_ratio):
                return float(value)
        return None

    @property
    def has_settings(self) -> bool:
        return len({r.setting for r in self.rows}) > 1

    def headers(self) -> list[str]:
        first = ["Setting"] if self.has_settings else []
        return [*first, "Task", "Ratio", *(method_display(c, self.column) for c in self.columns)]


def _sources_of(group: pd.DataFrame) -> str:
    return ";".join(sorted({str(s) for s in group.get("data_source", pd.Series(["unknown"])).fillna("unknown")}))


def _mark(sources: str) -> str:
    s = set(sources.split(";"))
    return next((m for k, m in SOURCE_MARKS.items() if k in s), "")


def _average_rows(
    rows: list[Row], columns: list, label: str, domain: str, setting: str, min_rows: int = 2
) -> Row | None:
    """Mean of row means over the rows where every column that has any score in ``rows`` has one."""
    if len(rows) < min_rows:
        return None
    present = [c for c in columns if any(r.cells.get(c) is not None for r in rows)]
    common = [r for r in rows if all(r.cells.get(c) is not None for c in present)]
    suffix = "" if len(common) == len(rows) else f" ({len(common)}/{len(rows)} rows)"
    cells = {}
    for c in present:
        if common:
            cells[c] = Cell(float(np.mean([r.cells[c].mean for r in common])), float("nan"), len(common))
    sources = ";".join(sorted({s for r in rows for s in r.data_source.split(";")}))
    return Row("average", setting, "", f"{label}{suffix}", float("nan"), domain, sources, cells)


def build_table(
    selected: pd.DataFrame,
    name: str,
    title: str,
    rule: SelectionRule | str,
    column: str = "variant",
    setting: str | None = None,
    averages: bool = True,
    score_name: str | None = None,
) -> PaperTable:
    """A :class:`PaperTable` of ``selected`` trials: rows (setting ×) task × sample ratio, columns ``column``.

    Args:
        selected: one row per trial (:func:`analysis.select.select_scores`), with ``task``,
            ``sample_ratio``, ``seed``, ``normalised_score``, ``data_source`` and ``column``.
        rule: the selection rule behind ``selected`` (its :meth:`~analysis.select.SelectionRule.describe`
            ends the caption), or a caption text.
        setting: optional column whose values split the table into blocks (ablation contexts).
        averages: add per-domain average rows (and an overall one when the block spans domains).

    Cells are normalised scores in the unit ``score_name`` (default: the tasks' unit,
    :func:`analysis.domains.score_unit`): mean ± sample std over seeds.
    """
    rule = paper_rule_text(rule)
    if score_name is None:
        score_name = score_unit(selected["task"].unique())
    sel = selected.dropna(subset=[column]).copy()
    sel["_setting"] = sel[setting].astype(str) if setting else ""
    columns = sorted(sel[column].unique(), key=method_sort_key)
    stats = score_table(sel, by=("_setting", "task", "sample_ratio", column)) if len(sel) else None
    rows: list[Row] = []
    notes: set[str] = set()
    for st in sorted(sel["_setting"].unique()):
        block = sel[sel["_setting"] == st]
        block_rows: list[Row] = []
        for task in sorted(block["task"].unique(), key=task_sort_key):
            info = task_info(task)
            for ratio in sorted(block.loc[block["task"] == task, "sample_ratio"].unique()):
                trials = block[(block["task"] == task) & (block["sample_ratio"] == ratio)]
                sources = _sources_of(trials)
                mark = _mark(sources)
                if mark:
                    notes.update(SOURCE_NOTES[k] for k in SOURCE_MARKS if k in sources.split(";"))
                s = stats[(stats["_setting"] == st) & (stats["task"] == task) & (stats["sample_ratio"] == ratio)]
                cells = {r[column]: Cell(float(r["mean"]), float(r["std"]), int(r["n"])) for r in s.to_dict("records")}
                block_rows.append(Row("cell", st, task, info.display + mark, float(ratio), info.domain, sources, cells))
        rows.extend(block_rows)
        if not averages:
            continue
        domains = sorted({r.domain for r in block_rows}, key=domain_sort_key)
        for d in domains:
            avg = _average_rows([r for r in block_rows if r.domain == d], columns, f"Average {d}", d, st)
            if avg:
                rows.append(avg)
        if len(domains) > 1:
            avg = _average_rows(block_rows, columns, "Average (all)", "all", st)
            if avg:
                rows.append(avg)
    caption = (
        f"{title}. {score_name}: mean ± std over seeds (sample std, ddof=1; 0 for a single seed), "
        "n = number of seeds; — = no finished trial; best mean per row in bold. Average rows: mean of "
        "the row means over the rows in which every method has a score. "
        f"{rule}"
    )
    return PaperTable(name, title, caption, column, columns, rows, sorted(notes), rule)


# --- the paper's tables -----------------------------------------------------------------------------
def paper_tables(selected: pd.DataFrame, rule: SelectionRule | str, column: str = "variant") -> list[PaperTable]:
    """The main tables (sparse, dense MuJoCo, Atari, other) that have at least one task in ``selected``.

    Layout of the LaMo paper's result tables (arXiv 2310.20587: sparse-reward Kitchen / Reacher2d,
    dense-reward MuJoCo, Atari), each captioned with its unit (:data:`analysis.domains.SCORE_UNITS`: 0–100
    normalised; Atari gamer-normalised, which can exceed 100); ``rule`` as in
    :func:`build_table`.
    """
    tables = []
    kinds = selected["task"].map(lambda t: task_info(t).table)
    for key, title in TABLES.items():
        part = selected[kinds == key]
        if part.empty:
            continue
        tables.append(build_table(part, f"table_{key}", title, rule, column, score_name=SCORE_UNITS[key]))
    return tables


def _context_key(selected: pd.DataFrame, field_name: str) -> pd.Series:
    """Per trial: the configuration without ``field_name`` (and its inert params), as one string."""
    param = f"param.{ABLATION_FIELDS[field_name]}"
    inert = INERT_PARAMS.get(field_name, ())
    cols = sorted(
        c
        for c in selected.columns
        if c.startswith("param.") and c != param and c not in PER_TRIAL_PARAMS and not c.startswith(inert)
    )
    if not cols:
        return pd.Series("", index=selected.index)
    return selected[cols].astype(str).agg("|".join, axis=1)


def ablation_settings(selected: pd.DataFrame, field_name: str) -> tuple[pd.DataFrame, str | None]:
    """The trials of ``selected`` that take part in an ablation of ``field_name``, with a ``setting`` column.

    Trials are grouped by their configuration without the field (all ``param.*`` except the grid
    axes task / sample ratio / seed / variant / device, the field itself and params that are inert
    for it, :data:`INERT_PARAMS`); a group in which the field takes two or more values is an ablation
    *setting*, labelled by its variants (``"variants lamo, lamo-linear"``). Inside a setting only the
    tasks on which the field was varied are kept. Used by :func:`ablation_tables` and by the claims
    (:mod:`analysis.claims`), so both compare the same trials.

    Args:
        selected: one row per trial (:func:`analysis.select.select_scores`).
        field_name: a key of :data:`analysis.runs.ABLATION_FIELDS` (``embedding``, ``finetune``, ...).

    Returns:
        ``(trials, why_not)``: the participating trials (a copy, with ``setting``), and ``None``; or an
        empty frame and the reason there is no ablation of the field in the data.

    Raises:
        KeyError: ``field_name`` is not an ablation field.
    """
    if field_name not in ABLATION_FIELDS:
        raise KeyError(f"unknown ablation field {field_name!r}; one of {', '.join(ABLATION_FIELDS)}")
    empty = selected.iloc[0:0].assign(setting=pd.Series(dtype="object"))
    if field_name not in selected or selected[field_name].dropna().nunique() < 2:
        values = sorted(selected[field_name].dropna().astype(str).unique()) if field_name in selected else []
        return empty, f"not an ablation here (one value in the data: {', '.join(values) or 'none'})."
    sel = selected.dropna(subset=[field_name]).copy()
    sel["_context"] = _context_key(sel, field_name)
    keep = sel.groupby("_context")[field_name].transform("nunique") >= 2
    if not keep.any():
        values = ", ".join(sorted(sel[field_name].astype(str).unique()))
        return empty, (f"values {values} occur only together with other config differences "
                       "(no otherwise-matching configurations), so no ablation table.")
    sel = sel[keep]
    # inside a setting, keep the tasks on which the field was actually varied (other tasks of the
    # same variants belong to the main tables); a task × ratio cell missing for one value stays "—"
    sel = sel[sel.groupby(["_context", "task"])[field_name].transform("nunique") >= 2]
    labels = sel.groupby("_context")["variant"].agg(lambda v: "variants " + ", ".join(sorted(set(map(str, v)))))
    sel["setting"] = sel["_context"].map(labels)
    return sel.drop(columns="_context"), None


def ablation_tables(selected: pd.DataFrame, rule: SelectionRule | str) -> tuple[list[PaperTable], list[str]]:
    """One table per ablation field that varies within otherwise-matching configurations.

    The trials and settings are those of :func:`ablation_settings`: a group of otherwise-identical
    configurations in which the field takes two or more values is an ablation *setting*, labelled by
    its variants, with the tasks on which the field varies. Fields that vary only together with other
    settings (e.g. LaMo vs DT differ in embedding, fine-tuning, λ and init at once) are skipped.

    Returns:
        ``(tables, notes)`` — notes say which fields were skipped and why.
    """
    tables, notes = [], []
    for f in ABLATION_FIELDS:
        sel, why_not = ablation_settings(selected, f)
        if why_not:
            notes.append(f"`{f}`: {why_not}")
            continue
        tables.append(build_table(sel, f"ablation_{f}", ABLATION_TITLES[f], rule, column=f, setting="setting"))
    return tables, notes


def domain_averages(selected: pd.DataFrame, column: str = "variant") -> pd.DataFrame:
    """Figure-1 numbers: per domain and method, the mean of the (task × ratio) cell means.

    Same "common rows" rule as the tables' average rows (a domain's cells in which every method with
    any score in that domain has one), so methods are compared over the same cells.

    Returns:
        Columns ``domain, method, mean, n_rows`` (cells averaged), ``n_rows_total`` (cells of the
        domain), ``data_source``; domains in Figure-1 order, methods in the paper's order.
    """
    if selected.empty:
        return pd.DataFrame(columns=["domain", "method", "mean", "n_rows", "n_rows_total", "data_source"])
    t = build_table(selected, "domains", "", "", column, averages=False)
    recs = []
    for d in sorted({r.domain for r in t.rows}, key=domain_sort_key):
        rows = [r for r in t.rows if r.domain == d]
        avg = _average_rows(rows, t.columns, "", d, "", min_rows=1)
        for c in t.columns:
            if avg is not None and c in avg.cells:
                recs.append({"domain": d, "method": c, "mean": avg.cells[c].mean, "n_rows": avg.cells[c].n,
                             "n_rows_total": len(rows), "data_source": avg.data_source})
    return pd.DataFrame(recs, columns=["domain", "method", "mean", "n_rows", "n_rows_total", "data_source"])


def mixed_configurations(selected: pd.DataFrame, column: str = "variant") -> list[str]:
    """Notes for ``column`` values whose trials differ in more than the grid axes (e.g. a sweep's extra
    ``grid.axes`` over ``language.weight`` under one variant label): their table cells pool several
    configurations, so the tables say so and point at ``--column`` / the ablation tables."""
    own = f"param.{ABLATION_FIELDS.get(column, column.removeprefix('param.'))}"
    params = [c for c in selected.columns if c.startswith("param.") and c not in PER_TRIAL_PARAMS and c != own]
    notes = []
    for value, grp in selected.groupby(column, sort=True):
        varying = [c[len("param."):] for c in params if grp[c].astype(str).nunique() > 1]
        if varying:
            notes.append(f"`{column}` = {value!r} pools trials that differ in {', '.join(varying)}; its cells mix "
                         "configurations (see the ablation tables, or pass --column).")
    return notes


# --- renderers --------------------------------------------------------------------------------------
def _fmt_cell(c: Cell | None, kind: str) -> str | None:
    if c is None or math.isnan(c.mean):
        return None
    if kind == "average":
        return f"{c.mean:.1f}"
    return f"{c.mean:.1f} ± {c.std:.1f} (n={c.n})"


def _row_labels(t: PaperTable, r: Row) -> list[str]:
    ratio = "" if r.kind == "average" else format_ratio(r.sample_ratio)
    return ([r.setting] if t.has_settings else []) + [r.task_label, ratio]


def _paper_note(t: PaperTable, marker: str = "[paper X]") -> str:
    srcs = sorted({src for _v, src in t.paper.values()})
    return (f"A cell followed by {marker} has the paper's number X beside ours (reference data, not ours; "
            f"`analysis/paper_numbers.yaml`, source {', '.join(srcs)}; see `paper_comparison.md`).")


def to_markdown(t: PaperTable) -> str:
    """Markdown: caption line, the table (best per row bold), footnotes; the paper's known numbers
    (:attr:`PaperTable.paper`) follow our cell as ``[paper X]``."""
    heads = [h.replace("|", "\\|") for h in t.headers()]
    n_lab = len(heads) - len(t.columns)
    lines = [f"**{t.caption}**", "", "| " + " | ".join(heads) + " |", "|" + "---|" * (n_lab - 1) + "---:|" + "---:|" * len(t.columns)]
    for r in t.rows:
        best = r.best()
        cells = []
        for c in t.columns:
            text = _fmt_cell(r.cells.get(c), r.kind)
            text = MISSING if text is None else (f"**{text}**" if c in best else text)
            ref = t.paper_value(r, c)
            cells.append(text if ref is None else f"{text} [paper {ref:.1f}]")
        labels = _row_labels(t, r)
        if r.kind == "average":
            labels = [f"*{x}*" if x else x for x in labels]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in labels + cells) + " |")
    out = "\n".join(lines) + "\n"
    notes = t.notes + ([_paper_note(t)] if t.paper else [])
    if notes:
        out += "\n" + "\n".join(f"{n}  " for n in notes) + "\n"
    return out


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "λ": r"$\lambda$",
    "†": r"$^\dagger$",
    "·": r"$\cdot$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "Δ": r"$\Delta$",
    "→": r"$\rightarrow$",
    "–": "--",
    "—": "---",
    "’": "'",
    "‘": "`",
    "“": "``",
    "”": "''",
    "…": r"\ldots{}",
    "§": r"\S{}",
    "`": "",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the Unicode this package writes to LaTeX; output is pure ASCII."""
    out = []
    for ch in str(text):
        if ch in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append(unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode())
    return "".join(out)


def to_latex(t: PaperTable, label: str | None = None) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); pure ASCII."""
    heads = t.headers()
    n_lab = len(heads) - len(t.columns)
    spec = "l" * n_lab + "r" * len(t.columns)
    lines = [
        "% Generated by lamo-analysis (analysis/tables.py) from MLflow runs; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(t.caption)}}}",
        f"\\label{{{label or 'tab:' + t.name.replace('_', '-')}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in heads) + " \\\\",
        "\\midrule",
    ]
    prev_kind, prev_setting = "cell", None
    for r in t.rows:
        if (r.kind != prev_kind or (prev_setting is not None and r.setting != prev_setting)) and lines[-1] != "\\midrule":
            lines.append("\\midrule")
        prev_kind, prev_setting = r.kind, r.setting
        best = r.best()
        cells = []
        for c in t.columns:
            cell = r.cells.get(c)
            if cell is None or math.isnan(cell.mean):
                cells.append("---")
            elif r.kind == "average":
                cells.append(f"\\textbf{{{cell.mean:.1f}}}" if c in best else f"{cell.mean:.1f}")
            else:
                core = f"{cell.mean:.1f} $\\pm$ {cell.std:.1f}"
                core = f"\\textbf{{{core}}}" if c in best else core
                cells.append(f"{core} {{\\scriptsize ({cell.n})}}")
            ref = t.paper_value(r, c)
            if ref is not None:
                cells[-1] += f" {{\\scriptsize [{ref:.1f}]}}"
        labels = [latex_escape(x) for x in _row_labels(t, r)]
        lines.append(" & ".join(labels + cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    notes = t.notes + ([_paper_note(t, "[X]")] if t.paper else [])  # no note starts with "[" (a length after LaTeX's line break)
    if notes:
        lines.append("\\par\\smallskip{\\footnotesize " + " \\\\ ".join(latex_escape(n) for n in notes) + "}")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = [
    "table", "setting", "row_kind", "task", "task_label", "domain", "sample_ratio", "data_source",
    "column", "method", "method_label", "mean", "std", "n", "best", "selection_rule", "paper",
]


def to_csv_frame(t: PaperTable) -> pd.DataFrame:
    """Long format, one line per (row, column) with full-precision numbers; missing cells are absent."""
    recs = []
    for r in t.rows:
        best = r.best()
        for c in t.columns:
            cell = r.cells.get(c)
            if cell is None:
                continue
            recs.append({
                "table": t.name, "setting": r.setting, "row_kind": r.kind, "task": r.task,
                "task_label": r.task_label, "domain": r.domain, "sample_ratio": r.sample_ratio,
                "data_source": r.data_source, "column": t.column, "method": c,
                "method_label": method_display(c, t.column), "mean": cell.mean, "std": cell.std,
                "n": cell.n, "best": c in best, "selection_rule": t.rule, "paper": t.paper_value(r, c),
            })
    return pd.DataFrame(recs, columns=CSV_COLUMNS)
