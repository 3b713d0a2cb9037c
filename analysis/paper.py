"""The paper beside us: the LaMo paper's numbers (``paper_numbers.yaml``) next to the reproduced ones.

The YAML holds the paper's numbers (LaMo, ICLR 2024, arXiv 2310.20587) cell by cell, each with its
provenance (``sources:`` in the YAML; ``docs/analysis.md``): every cell of the camera-ready paper's
Tables 1-4, 8-13, 15 and 16 (mean and the printed ``±`` std over its 3 seeds; read from the camera-ready
PDF on the project page, github.com/lamo2023/lamo2023.github.io), Figure 1's per-domain averages (its bar
labels, also the official repository's README image ``assets/lamo-perf.png``), and a third party's rerun
with the official scripts (https://github.com/srzer/LaMo-2023/issues/1; labelled ``reproduction``, not
the paper). They are reference data only: they are put beside our numbers, never into our tables.

Every table number was produced by the paper's score rule (§5.1, :data:`analysis.tables.PAPER_RULE`)
except Table 13's (``metric: top-3``: the mean of the 3 best checkpoints), which is listed in the
comparison but never put beside our cells.

Each comparison row says where *our* number comes from: ``D4RL`` when all trials behind it used real
D4RL data, ``collected`` when they used this project's locally collected D4RL-style data (not
comparable one to one with the paper), mixed/unknown otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis.domains import DATA_SOURCES, is_d4rl, method_key, task_info
from analysis.select import SelectionRule, rule_text
from analysis.tables import domain_averages, format_ratio, latex_escape, score_table

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")
COMPARISON_COLUMNS = [
    "item", "domain", "task", "sample_ratio", "paper_method", "our_method", "paper", "paper_std", "paper_metric",
    "reproduction_3rd_party", "ours_mean", "ours_std", "ours_n", "delta", "our_data_source", "comparable",
    "provenance",
]
#: Fields of a ``numbers`` entry (``std`` and ``metric`` are optional; ``domain``/``task``/``sample_ratio``
#: depend on the kind of number, see the YAML's header).
NUMBER_FIELDS = ("item", "domain", "task", "sample_ratio", "method", "value", "std", "metric", "kind", "source")
#: ``metric`` value of Table 13 (mean of the 3 best checkpoints), the one table not under the paper's rule.
TOP3_METRIC = "top-3"


def load_paper_numbers(path: str | Path | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """``(numbers, sources, methods)`` from the YAML (default: the packaged ``paper_numbers.yaml``).

    ``numbers`` has the columns :data:`NUMBER_FIELDS`: ``value`` and ``std`` are normalised scores
    (0–100; Atari gamer-normalised × 100), ``std`` NaN where the paper prints none, ``metric`` NaN for
    the paper's score rule (:data:`TOP3_METRIC` for Table 13), ``sample_ratio`` a fraction (NaN for
    Figure-1 averages).

    Raises:
        ValueError: a number refers to an unknown source, lacks ``item``/``value``/``method``/``kind``, has
            an unknown ``kind``, a per-task number lacks ``sample_ratio``, or a source lacks ``where``
            (the fix: complete that entry of the YAML).
    """
    data = yaml.safe_load(Path(path or PAPER_NUMBERS).read_text(encoding="utf-8"))
    sources, methods = data.get("sources", {}), data.get("methods", {})
    numbers = pd.DataFrame(data.get("numbers", []))
    for col in NUMBER_FIELDS:
        if col not in numbers:
            numbers[col] = np.nan
    bad = numbers[numbers["value"].isna() | numbers["method"].isna() | numbers["item"].isna()
                  | ~numbers["kind"].isin(["paper", "reproduction"])]
    if len(bad):
        raise ValueError(f"paper numbers without item/value/method or with a kind other than paper|reproduction: "
                         f"{bad.to_dict('records')[:3]}")
    unknown = set(numbers["source"]) - set(sources)
    if unknown:
        raise ValueError(f"paper numbers cite unknown sources {sorted(unknown)}; known: {sorted(sources)}")
    nowhere = sorted(k for k, v in sources.items() if not (v or {}).get("where"))
    if nowhere:
        raise ValueError(f"paper-number sources without `where` (the public address): {nowhere}")
    numbers["sample_ratio"] = pd.to_numeric(numbers["sample_ratio"], errors="coerce")
    no_ratio = numbers[numbers["task"].notna() & numbers["sample_ratio"].isna()]
    if len(no_ratio):
        raise ValueError(f"per-task paper numbers need a sample_ratio: {no_ratio.to_dict('records')[:3]}")
    numbers["value"] = numbers["value"].astype(float)
    numbers["std"] = pd.to_numeric(numbers["std"], errors="coerce")
    return numbers, sources, methods


def load_printed_averages(path: str | Path | None = None) -> pd.DataFrame:
    """The "Average" rows the paper's tables print (YAML ``printed_averages``), to check the transcription.

    Returns:
        Columns ``item`` (e.g. ``"Table 3"``), ``sample_ratios`` (tuple of the block's ratios),
        ``method`` and ``value`` (normalised score, as printed, rounded to 0.1).
    """
    data = yaml.safe_load(Path(path or PAPER_NUMBERS).read_text(encoding="utf-8"))
    rows = data.get("printed_averages", []) or []
    frame = pd.DataFrame(rows, columns=["item", "sample_ratios", "method", "value"])
    frame["sample_ratios"] = frame["sample_ratios"].map(lambda r: tuple(float(x) for x in r))
    frame["value"] = frame["value"].astype(float)
    return frame


def parse_method_map(values: list[str] | None) -> dict[str, str]:
    """``["LaMo w/o language loss=lamo_nolang"]`` → ``{paper method: our variant}``."""
    out = {}
    for v in values or []:
        if "=" not in v:
            raise ValueError(f"--method-map takes PAPER_METHOD=VARIANT, got {v!r}")
        k, val = v.split("=", 1)
        out[k.strip()] = val.strip()
    return out


def _config_matches(trials: pd.DataFrame, config: dict) -> bool:
    for col, want in config.items():
        if col not in trials:
            return False
        vals = trials[col].dropna().unique()
        if len(vals) != 1:
            return False
        have = vals[0]
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            try:
                if not np.isclose(float(have), float(want)):
                    return False
            except (TypeError, ValueError):
                return False
        elif str(have) != str(want):
            return False
    return True


def match_methods(selected: pd.DataFrame, methods: dict, column: str = "variant",
                  overrides: dict[str, str] | None = None) -> tuple[dict[str, object], list[str]]:
    """Map each paper method to one of our ``column`` values.

    Order: an explicit override; else a label in the method's ``variants`` (case/punctuation-
    insensitive); else, if the method has a ``config``, the single value whose trials all have that
    configuration (ablation columns such as ``language_weight``). Ambiguous or absent → unmatched.
    """
    overrides = overrides or {}
    ours = list(selected[column].dropna().unique()) if column in selected else []
    by_key = {method_key(v): v for v in ours}
    out, notes = {}, []
    for name, spec in methods.items():
        spec = spec or {}
        if name in overrides:
            if overrides[name] in map(str, ours):
                out[name] = next(v for v in ours if str(v) == overrides[name])
            else:
                notes.append(f"--method-map {name}={overrides[name]}: no such {column} in the data")
            continue
        hit = next((by_key[method_key(a)] for a in spec.get("variants", []) if method_key(a) in by_key), None)
        if hit is None and spec.get("config"):
            cands = [v for v in ours if _config_matches(selected[selected[column] == v], spec["config"])]
            if len(cands) == 1:
                hit = cands[0]
                notes.append(f"{name} ↔ {column} {hit!r} matched by config {spec['config']}")
            elif len(cands) > 1:
                notes.append(f"{name}: several {column} values match {spec['config']} ({cands}); "
                             "pick one with --method-map")
        if hit is not None:
            out[name] = hit
    return out, notes


def paper_cells(
    selected: pd.DataFrame, numbers: pd.DataFrame, methods: dict, column: str = "variant",
    overrides: dict[str, str] | None = None,
) -> tuple[dict[tuple[str, float, object], tuple[float, str]], list[str]]:
    """The paper's per-task numbers (``kind: paper`` only, not third-party reruns) keyed like our cells.

    Returns:
        ``({(task, sample_ratio, our column value): (value, source key)}, notes)`` for every paper
        number whose method matches one of our ``column`` values (:func:`match_methods`) and that was
        scored by the paper's rule (no ``metric``: Table 13's top-3 numbers are left out); values are
        normalised scores (0–100). Used to print the paper's number beside ours in the paper tables
        (:attr:`analysis.tables.PaperTable.paper`).
    """
    mapping, notes = match_methods(selected, methods, column, overrides)
    out = {}
    metric = numbers["metric"] if "metric" in numbers else pd.Series(np.nan, index=numbers.index)
    rows = numbers[(numbers["kind"] == "paper") & numbers["task"].notna() & numbers["sample_ratio"].notna()
                   & metric.isna()]
    for r in rows.to_dict("records"):
        ours = mapping.get(r["method"])
        if ours is not None:  # the first entry of a cell wins (the YAML lists the main tables first)
            out.setdefault((str(r["task"]), float(r["sample_ratio"]), ours), (float(r["value"]), str(r["source"])))
    return out, notes


def annotate_tables(tables: list, cells: dict) -> None:
    """Attach :func:`paper_cells` output to each :class:`analysis.tables.PaperTable` whose columns it
    concerns (in place); ablation tables, whose columns are field values, get nothing."""
    for t in tables:
        if t.name.startswith("ablation_"):
            continue
        rows = [(r.task, r.sample_ratio) for r in t.rows if r.kind == "cell"]
        t.paper = {k: v for k, v in cells.items()
                   if k[2] in t.columns and any(k[0] == task and np.isclose(k[1], ratio) for task, ratio in rows)}


def with_paper_averages(
    averages: pd.DataFrame, selected: pd.DataFrame, numbers: pd.DataFrame, methods: dict,
    column: str = "variant", overrides: dict[str, str] | None = None,
) -> pd.DataFrame:
    """:func:`analysis.tables.domain_averages` plus ``paper`` (Figure 1's per-domain average of that
    method, normalised score 0–100; NaN where the paper shows none) and ``paper_source``.

    The paper's Figure-1 average is over its own tasks and sample ratios (MuJoCo: medium; Kitchen:
    complete + partial; Appendix B's ratios), ours over the cells our sweep has, so the two agree in
    meaning only when the grids do (``n_rows`` says how many cells ours has).
    """
    mapping, _ = match_methods(selected, methods, column, overrides)
    ours_to_paper = {v: k for k, v in mapping.items()}
    fig = numbers[(numbers["kind"] == "paper") & numbers["domain"].notna() & numbers["task"].isna()]
    out = averages.copy()
    vals, srcs = [], []
    for r in out.to_dict("records"):
        hit = fig[(fig["domain"] == r["domain"]) & (fig["method"] == ours_to_paper.get(r["method"]))]
        vals.append(float(hit["value"].iloc[0]) if len(hit) else np.nan)
        srcs.append(str(hit["source"].iloc[0]) if len(hit) else "")
    out["paper"] = pd.Series(vals, index=out.index, dtype="float64")
    out["paper_source"] = pd.Series(srcs, index=out.index, dtype="object")
    return out


def _source_label(sources: set[str]) -> tuple[str, str]:
    """``(label, comparable)`` for the data sources behind one of our numbers."""
    if not sources:
        return "", ""
    if all(is_d4rl(s) for s in sources):
        return "D4RL", "yes"
    if sources == {"collected"}:
        return DATA_SOURCES["collected"], "no (locally collected data)"
    return " + ".join(sorted(DATA_SOURCES.get(s, s) for s in sources)), "partly"


def compare(
    selected: pd.DataFrame,
    numbers: pd.DataFrame,
    sources: dict,
    methods: dict,
    column: str = "variant",
    overrides: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per paper number (paper and third-party reproduction side by side) with our number.

    Our number for a Figure-1 domain average is :func:`analysis.tables.domain_averages` (same
    selection rule as the tables); for a task at a ratio it is the cell's mean ± std (n). ``delta``
    = ours − paper. Rows without a number of ours keep empty ``ours_*`` cells; so do rows whose paper
    number used another metric than the paper's rule (``paper_metric``, Table 13's ``top-3``), which
    say so in ``comparable``. ``paper_std`` is the paper's printed ± (NaN where none).

    Args:
        selected: one row per trial (:func:`analysis.select.select_scores`), normalised scores 0–100.
        numbers, sources, methods: :func:`load_paper_numbers`.
        column: our method axis; overrides: ``{paper method: our value}`` (:func:`match_methods`).

    Returns:
        ``(frame with :data:`COMPARISON_COLUMNS`, notes)``: one row per distinct (item, domain, task,
        sample ratio, paper method) of ``numbers``, in the YAML's order.
    """
    mapping, notes = match_methods(selected, methods, column, overrides)
    doms = domain_averages(selected, column) if len(selected) else pd.DataFrame(columns=["domain", "method"])
    cells = score_table(selected, by=("task", "sample_ratio", column)) if len(selected) else None
    key_cols = ["item", "domain", "task", "sample_ratio", "method"]
    numbers = numbers.copy()
    numbers["_k"] = numbers[key_cols].astype(str).agg("|".join, axis=1)
    recs = []
    for _, grp in numbers.groupby("_k", sort=False):
        first = grp.iloc[0]
        paper = grp[grp["kind"] == "paper"]
        repro = grp[grp["kind"] == "reproduction"]
        ours = mapping.get(first["method"])
        rec = {
            "item": first["item"], "domain": first["domain"] if isinstance(first["domain"], str) else "",
            "task": first["task"] if isinstance(first["task"], str) else "",
            "sample_ratio": first["sample_ratio"], "paper_method": first["method"],
            "our_method": "" if ours is None else ours,
            "paper": float(paper["value"].iloc[0]) if len(paper) else np.nan,
            "paper_std": float(paper["std"].iloc[0]) if len(paper) and "std" in paper else np.nan,
            "paper_metric": _metric_of(first),
            "reproduction_3rd_party": float(repro["value"].iloc[0]) if len(repro) else np.nan,
            "ours_mean": np.nan, "ours_std": np.nan, "ours_n": 0, "delta": np.nan,
            "our_data_source": "", "comparable": "",
            "provenance": "; ".join(f"{s}: {sources[s].get('where', '')}" for s in dict.fromkeys(grp["source"])),
        }
        if rec["task"] and not rec["domain"]:
            rec["domain"] = task_info(rec["task"]).domain
        if ours is not None and rec["task"] and rec["paper_metric"] != PAPER_METRIC_LABEL:
            rec["comparable"] = f"no (paper metric: {rec['paper_metric']})"
        elif ours is not None and rec["task"]:
            c = cells[(cells["task"] == rec["task"]) & np.isclose(cells["sample_ratio"], rec["sample_ratio"])
                      & (cells[column] == ours)] if cells is not None else []
            if len(c):
                rec.update(ours_mean=float(c["mean"].iloc[0]), ours_std=float(c["std"].iloc[0]), ours_n=int(c["n"].iloc[0]))
                trials = selected[(selected["task"] == rec["task"]) & np.isclose(selected["sample_ratio"], rec["sample_ratio"])
                                  & (selected[column] == ours)]
                rec["our_data_source"], rec["comparable"] = _source_label(set(trials["data_source"].astype(str)))
        elif ours is not None and rec["domain"]:
            d = doms[(doms["domain"] == rec["domain"]) & (doms["method"] == ours)]
            if len(d):
                rec.update(ours_mean=float(d["mean"].iloc[0]), ours_n=int(d["n_rows"].iloc[0]))
                rec["our_data_source"], rec["comparable"] = _source_label(set(str(d["data_source"].iloc[0]).split(";")))
        if not np.isnan(rec["ours_mean"]) and not np.isnan(rec["paper"]):
            rec["delta"] = rec["ours_mean"] - rec["paper"]
        recs.append(rec)
    unmatched = [m for m in methods if m not in mapping]
    if unmatched:
        notes.append(f"paper methods with no counterpart in our {column} values: {', '.join(unmatched)}")
    return pd.DataFrame(recs, columns=COMPARISON_COLUMNS), notes


#: ``paper_metric`` of a comparison row scored by the paper's own rule (§5.1).
PAPER_METRIC_LABEL = "paper rule"


def _metric_of(row: pd.Series) -> str:
    """``paper_metric`` of a number: :data:`PAPER_METRIC_LABEL`, or the YAML's ``metric`` (e.g. ``top-3``)."""
    m = row.get("metric") if hasattr(row, "get") else None
    return PAPER_METRIC_LABEL if m is None or (isinstance(m, float) and np.isnan(m)) else str(m)


def _paper_text(r: dict) -> str:
    """The paper's number as printed: ``46.6 ± 5.3``, ``56.4`` (no std), ``—`` (none)."""
    if np.isnan(r["paper"]):
        return "—"
    std = r.get("paper_std", np.nan)
    return f"{r['paper']:.1f}" + ("" if std is None or np.isnan(std) else f" ± {std:.1f}")


def _num(x: float, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def comparison_markdown(comp: pd.DataFrame, sources: dict, rule: SelectionRule | str, notes: list[str]) -> str:
    """The comparison as Markdown: items with at least one number of ours first, then the rest."""
    lines = [
        "**The paper beside us.** Paper numbers (reference data, with provenance) next to ours: mean ± std "
        f"over seeds (n) for a task cell, the domain average (n = cells averaged) for Figure 1; the paper's "
        "number as printed (mean ± std over its 3 seeds; its tables' score rule: the mean over the evaluations "
        "of the last 20k of 100k training steps, paper §5.1; Table 13: the mean of the 3 best checkpoints, "
        f"not compared). {rule_text(rule)} "
        "Our data source: `D4RL` = real D4RL data (comparable); `collected` = locally collected "
        "D4RL-style data (not comparable one to one).",
        "",
        "| item | domain / task | ratio | paper method | our method | paper | 3rd-party rerun | ours | Δ (ours − paper) | our data | comparable |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---|---|",
    ]
    comp = comp.assign(_has=comp["ours_n"] > 0).sort_values("_has", ascending=False, kind="stable")
    for r in comp.to_dict("records"):
        where = task_info(r["task"]).display if r["task"] else r["domain"]
        ratio = format_ratio(r["sample_ratio"]) if not np.isnan(r["sample_ratio"]) else "all"
        if r["ours_n"] and r["task"]:
            ours = f"{r['ours_mean']:.1f} ± {r['ours_std']:.1f} (n={r['ours_n']})"
        elif r["ours_n"]:
            ours = f"{r['ours_mean']:.1f} (n={r['ours_n']} cells)"
        else:
            ours = "—"
        delta = "—" if np.isnan(r["delta"]) else f"{r['delta']:+.1f}"
        item = r["item"] if r.get("paper_metric", PAPER_METRIC_LABEL) == PAPER_METRIC_LABEL else (
            f"{r['item']} ({r['paper_metric']})")
        lines.append(
            f"| {item} | {where} | {ratio} | {r['paper_method']} | {r['our_method'] or '—'} | "
            f"{_paper_text(r)} | {_num(r['reproduction_3rd_party'], 2)} | {ours} | {delta} | "
            f"{r['our_data_source'] or '—'} | {r['comparable'] or '—'} |"
        )
    lines += ["", "Sources:", ""]
    for key, s in sources.items():
        lines.append(f"- `{key}`: {s.get('what', '')} — {s.get('where', '')} ({s.get('how', '')})")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def comparison_latex(comp: pd.DataFrame, rule: SelectionRule | str) -> str:
    """A compact LaTeX table of the rows that have a number of ours (all rows when none has)."""
    part = comp[comp["ours_n"] > 0]
    part = part if len(part) else comp
    lines = [
        "% Generated by lamo-analysis (analysis/paper.py); needs \\usepackage{booktabs}.",
        "\\begin{table}[t]", "\\centering",
        "\\caption{" + latex_escape("Paper numbers (reference data) next to ours. " + rule_text(rule)) + "}",
        "\\label{tab:paper-comparison}",
        "\\begin{tabular}{lllrrrl}", "\\toprule",
        "Item & Domain / task & Method & Paper & 3rd-party & Ours & Our data \\\\", "\\midrule",
    ]
    for r in part.to_dict("records"):
        where = task_info(r["task"]).display if r["task"] else r["domain"]
        if r["task"] and not np.isnan(r["sample_ratio"]):
            where += f" ({format_ratio(r['sample_ratio'])})"
        ours = "---" if not r["ours_n"] else (
            f"{r['ours_mean']:.1f} $\\pm$ {r['ours_std']:.1f}" if r["task"] else f"{r['ours_mean']:.1f}")
        cells = [latex_escape(r["item"]), latex_escape(where), latex_escape(r["paper_method"]),
                 latex_escape(_paper_text(r)), latex_escape(_num(r["reproduction_3rd_party"], 2)), ours,
                 latex_escape(r["our_data_source"] or "—")]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"
