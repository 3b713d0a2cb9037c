"""Best RTG target per seed vs on the seed-averaged score: both selection rules side by side.

LaMo reports the best-performing RTG target's score (srzer/LaMo-2023 issue 1,
https://github.com/srzer/LaMo-2023/issues/1) without saying whether "best" is chosen per run or on the
mean over seeds. :class:`analysis.select.SelectionRule` offers both (``best_target_by="trial"``, the
default, and ``"seed_mean"``); this module tabulates them for one checkpoint rule, per task × sample
ratio × variant: mean ± std over seeds of the normalised score (0–100) under each rule, the targets each
rule picked (raw return), and the difference. Per-seed choice can only be ≥ the seed-mean choice
cell by cell, since each seed's own best is at least its score at any common target.

``lamo-analysis rules`` writes ``target_rules.md`` and ``target_rules.csv``; the end-of-sweep report
does not (its outputs stay as they were).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from analysis.domains import score_unit
from analysis.report import load_selected
from analysis.select import DEFAULT_RULE, SEED_GROUP, SelectionRule, select_scores
from analysis.tables import format_ratio

#: Columns of :func:`compare_target_rules`.
COMPARE_COLUMNS = [
    *SEED_GROUP,
    "per_seed_mean", "per_seed_std", "per_seed_n", "per_seed_targets",
    "seed_mean_mean", "seed_mean_std", "seed_mean_n", "seed_mean_target",
    "difference",
]


def rules_pair(rule: SelectionRule = DEFAULT_RULE) -> tuple[SelectionRule, SelectionRule]:
    """``(per seed, on the seed mean)``: ``rule``'s checkpoint with ``target_rule="best"`` and each
    ``best_target_by``.

    Raises:
        ValueError: ``rule`` is not a ``"best"`` target rule (the comparison is about that rule).
    """
    if rule.target_rule != "best":
        raise ValueError(f"the target-rule comparison needs target_rule='best', got {rule.target_rule!r}")
    return replace(rule, best_target_by="trial"), replace(rule, best_target_by="seed_mean")


def _targets_text(targets: pd.Series) -> str:
    counts = targets.value_counts()
    order = sorted(counts.index, reverse=True)
    return ", ".join(f"{t:g}" + (f" ×{counts[t]}" if counts[t] > 1 else "") for t in order)


def compare_target_rules(tidy: pd.DataFrame, rule: SelectionRule = DEFAULT_RULE) -> pd.DataFrame:
    """Per task × sample ratio × variant, the best-target score chosen per seed and on the seed mean.

    Args:
        tidy: the tidy frame of :func:`analysis.runs.load_trial_runs`.
        rule: supplies the checkpoint rule (``checkpoint``, ``last_k``); see :func:`rules_pair`.

    Returns:
        :data:`COMPARE_COLUMNS`: ``per_seed_*`` and ``seed_mean_*`` are the mean, sample std (ddof=1,
        0 for one seed) and count of the trials' normalised scores (0–100) under each rule;
        ``per_seed_targets`` lists the targets the seeds picked (raw return, ``"3600 ×2, 1800"``),
        ``seed_mean_target`` the cell's one target (raw return; NaN when the cell's trials share no
        target); ``difference`` = ``per_seed_mean − seed_mean_mean`` (normalised points, ≥ 0).

    Raises:
        ValueError: as :func:`rules_pair`.
    """
    per_seed, seed_mean = rules_pair(rule)
    g = list(SEED_GROUP)
    frames = {}
    for name, r in (("per_seed", per_seed), ("seed_mean", seed_mean)):
        sel = select_scores(tidy, r)
        agg = sel.groupby(g, dropna=False, sort=True).agg(
            mean=("normalised_score", "mean"), std=("normalised_score", "std"), n=("normalised_score", "size"),
            targets=("rtg_target", _targets_text), target=("rtg_target", "max"))
        agg["std"] = agg["std"].where(agg["n"] > 1, 0.0)
        frames[name] = agg.add_prefix(f"{name}_")
    out = frames["per_seed"].join(frames["seed_mean"], how="left").reset_index()
    out["difference"] = out["per_seed_mean"] - out["seed_mean_mean"]
    return out[COMPARE_COLUMNS]


def rule_comparison_markdown(table: pd.DataFrame, rule: SelectionRule = DEFAULT_RULE) -> str:
    """Markdown of :func:`compare_target_rules`: a caption that names both rules (their
    :meth:`~analysis.select.SelectionRule.describe`), then one row per task × ratio × variant."""
    per_seed, seed_mean = rules_pair(rule)
    caption = (
        f"**Best RTG target per seed vs on the seed-averaged score.** {score_unit(table['task'].unique())}, mean ± std "
        "over seeds (sample std, ddof=1; 0 for a single seed; n = number of seeds); targets in raw return "
        "(×k = picked by k seeds); Δ = per-seed − seed-mean (normalised points). "
        f"Per seed: {per_seed.describe()} Seed mean: {seed_mean.describe()}"
    )
    head = ["task", "sample ratio", "variant", "per-seed best", "targets (per seed)", "seed-mean best",
            "target (seed mean)", "Δ"]
    lines = [caption, "", "| " + " | ".join(head) + " |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in table.to_dict("records"):
        def cell(prefix: str) -> str:
            m = r[f"{prefix}_mean"]
            return "—" if pd.isna(m) else f"{m:.1f} ± {r[f'{prefix}_std']:.1f} (n={int(r[f'{prefix}_n'])})"

        target = "—" if pd.isna(r["seed_mean_target"]) else f"{r['seed_mean_target']:g}"
        diff = "—" if pd.isna(r["difference"]) else f"{r['difference']:.1f}"
        row = [str(r["task"]), format_ratio(r["sample_ratio"]), str(r["variant"]), cell("per_seed"),
               str(r["per_seed_targets"]), cell("seed_mean"), target, diff]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in row) + " |")
    return "\n".join(lines) + "\n"


def write_rule_comparison(
    tracking_uri: str,
    experiment: str,
    out_dir: str | Path,
    parent_run_id: str | None = None,
    rule: SelectionRule = DEFAULT_RULE,
    include_unfinished: bool = False,
) -> dict[str, Path]:
    """Write ``target_rules.md`` and ``target_rules.csv`` (:func:`compare_target_rules`) for a sweep.

    Returns:
        ``file name → path``.

    Raises:
        ValueError: as :func:`analysis.report.load_selected` (unknown experiment, missing store, no
            trial with an evaluation) and :func:`rules_pair`.
    """
    rules_pair(rule)
    tidy, _ = load_selected(tracking_uri, experiment, parent_run_id, rule, include_unfinished)
    table = compare_target_rules(tidy, rule)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = f"experiment `{experiment}`" + (f", parent run `{parent_run_id}`" if parent_run_id else "")
    md = rule_comparison_markdown(table, rule) + f"\n_Source: {source}, tracking URI `{tracking_uri}`._\n"
    paths = {"target_rules.md": out / "target_rules.md", "target_rules.csv": out / "target_rules.csv"}
    paths["target_rules.md"].write_text(md, encoding="utf-8")
    table.to_csv(paths["target_rules.csv"], index=False)
    return paths
