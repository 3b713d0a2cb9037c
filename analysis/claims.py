"""The paper's claims, checked against the logged runs: probability of improvement, CI, runs, verdict.

Each claim of LaMo (Shi et al., ICLR 2024, arXiv 2310.20587) that a sweep's runs can speak to is one
:class:`Claim` in :data:`CLAIMS` (the only place claims are defined): the paper's words and where they
stand, and the two sides compared — side A is the one the paper says is better. For every *scope* of a
claim (a task group of the paper's tables, and a sample ratio where the claim is per ratio) the
verdict comes from rliable's probability of improvement P(A > B) (Agarwal et al., NeurIPS 2021,
``rliable.metrics.probability_of_improvement``), computed by :func:`analysis.stats.probability_of_improvement`
with its stratified bootstrap (:data:`analysis.stats.DEFAULT_BOOTSTRAP`: 1000 replications, seed 0,
95 % percentile interval) over the (task, sample ratio) cells — for an ablation, (setting, task, sample
ratio) cells — in which both sides have at least :data:`analysis.stats.MIN_RUNS` seeds.

Verdict (:func:`verdict`), with :data:`MIN_RUNS_PER_SIDE` the one minimum:

* ``not enough runs`` — either side has fewer than :data:`MIN_RUNS_PER_SIDE` runs in the compared
  cells (or no cell has both sides with ≥ :data:`analysis.stats.MIN_RUNS` seeds);
* ``supported`` — the CI's lower bound > 0.5;
* ``contradicted`` — the CI's upper bound < 0.5;
* ``inconclusive`` — otherwise (the CI contains 0.5).

Which trials form a side:

* methods are variants, matched by :func:`analysis.domains.method_key` (``lamo``, ``dt``, ``cql``,
  ``iql``, ``td3bc``; the display names of :data:`analysis.domains.METHOD_NAMES`);
* "the best value-based method" is, per scope, the one of CQL, IQL and TD3+BC with the highest mean
  normalised score over the cells it shares with LaMo (its name is in the row; the others' means are in
  the row's note), so LaMo is tested against its strongest value-based competitor there;
* ablation sides are values of an ablation field (:data:`trainers.contract.ABLATION_PARAMS`) among
  trials that differ in that field only, the settings of :func:`analysis.tables.ablation_settings`
  (the same trials as the ablation tables).

Scores are the trials' selected normalised scores (0–100, :func:`analysis.select.select_scores`, the
report's selection rule); the probability of improvement and its CI are probabilities (0–1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import stats as S
from analysis.domains import METHOD_NAMES, TABLES, method_key, task_info
from analysis.select import SelectionRule, rule_text
from analysis.tables import ablation_settings, format_ratio

#: Runs (trials) each side needs, summed over the compared cells, before a verdict is given. With fewer,
#: a percentile-bootstrap CI of P(A > B) is not trustworthy: when 2 runs of A beat 2 runs of B, every
#: bootstrap resample is separated too and the CI collapses to [1, 1]; with n runs per side perfectly
#: separated, the exact one-sided Mann-Whitney p-value is 1 / C(2n, n): 0.17 for n = 2, 0.05 for n = 3,
#: 0.014 for n = 4 and 0.004 for n = 5. Five runs per side (e.g. 3 tasks × 2 seeds, or 1 task × 5 seeds)
#: is the smallest count at which one verdict among a handful of claims is unlikely to be chance.
MIN_RUNS_PER_SIDE = 5
#: Verdict words, in the order of :func:`verdict`'s rules.
NOT_ENOUGH, SUPPORTED, CONTRADICTED, INCONCLUSIVE = "not enough runs", "supported", "contradicted", "inconclusive"
VERDICTS = (NOT_ENOUGH, SUPPORTED, CONTRADICTED, INCONCLUSIVE)
#: The value-based offline-RL methods of the paper's tables (method keys of ``METHOD_NAMES``).
VALUE_BASED = ("cql", "iql", "td3bc")
CLAIM_COLUMNS = [
    "claim", "scope", "task_group", "sample_ratio", "side_a", "side_b", "estimate", "ci_low", "ci_high",
    "n_cells", "runs_a", "runs_b", "verdict", "paper_words", "where", "note", "reps", "seed",
]
ABSTRACT = "arXiv 2310.20587, Abstract"
README = "https://github.com/srzer/LaMo-2023 (README, Introduction)"


@dataclass(frozen=True)
class Side:
    """One side of a claim: which trials it is.

    Attributes:
        label: how the report names the side (``"LaMo"``, ``"MLP embeddings"``).
        methods: method keys (:func:`analysis.domains.method_key` of the variant) — a methods side.
        best_of: with several ``methods``: the side is the single one of them with the highest mean score
            over the cells it shares with the other side (per scope); without, all are pooled.
        field: an ablation field (``init``, ``embedding``, ``finetune``, ``language_weight``) — an ablation side.
        accept: for an ablation side, which values of ``field`` belong to it.
    """

    label: str
    methods: tuple[str, ...] = ()
    best_of: bool = False
    field: str | None = None
    accept: Callable[[object], bool] | None = None


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, tested as P(A > B) > 0.5.

    Attributes:
        key: short id (``claims.csv`` column ``claim``).
        title: one line saying what is compared.
        paper_words: the claim as the paper (or its official README) words it, quoted.
        where: where it stands (paper section / figure, or the README).
        a, b: the sides; A is the side the paper says is better.
        task_groups: the paper tables (:data:`analysis.domains.TABLES` keys) whose tasks the claim is
            about; ``None``: every group, each its own scope.
        per_ratio: one scope per sample ratio (as well as all ratios pooled) instead of pooled only.
        reading: how to read the verdict when the paper claims less than "A is better".
    """

    key: str
    title: str
    paper_words: str
    where: str
    a: Side
    b: Side
    task_groups: tuple[str, ...] | None = None
    per_ratio: bool = False
    reading: str = ""


LAMO = Side("LaMo", methods=("lamo",))
BEST_VALUE_BASED = Side("best value-based (CQL, IQL, TD3+BC)", methods=VALUE_BASED, best_of=True)


def _positive(value: object) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _zero(value: object) -> bool:
    try:
        return float(value) == 0
    except (TypeError, ValueError):
        return False


#: The claims the runs can speak to (the only place they are defined).
CLAIMS: tuple[Claim, ...] = (
    Claim(
        key="lamo_vs_dt",
        title="LaMo vs DT at each sample ratio",
        paper_words=("\"our method demonstrates superior performance in scenarios with limited data samples\"; "
                     "\"On dense-reward tasks, LaMo significantly improves Decision Transformer\"; on sparse-reward "
                     "tasks LaMo \"surpasses recent strong algorithms CQL, IQL, TD3+BC, and DT\""),
        where=f"{ABSTRACT}; Figure 1; {README}",
        a=LAMO, b=Side("DT", methods=("dt",)), per_ratio=True,
    ),
    Claim(
        key="lamo_vs_value_based_sparse",
        title="LaMo vs the best value-based method on sparse-reward tasks",
        paper_words=("\"LaMo achieves state-of-the-art performance in sparse-reward tasks\"; \"surpasses recent "
                     "strong algorithms CQL, IQL, TD3+BC, and DT\""),
        where=f"{ABSTRACT}; sparse-reward table (Kitchen, Reacher2d); {README}",
        a=LAMO, b=BEST_VALUE_BASED, task_groups=("sparse",),
    ),
    Claim(
        key="lamo_vs_value_based_dense",
        title="LaMo vs the best value-based method on dense-reward tasks",
        paper_words=("LaMo \"closes the gap between value-based offline RL methods and decision transformers in "
                     "dense-reward tasks\""),
        where=f"{ABSTRACT}; dense-reward MuJoCo table; {README}",
        a=LAMO, b=BEST_VALUE_BASED, task_groups=("dense",),
        reading=("the paper claims parity here, not superiority: 'inconclusive' (CI contains 0.5) is consistent "
                 "with it, 'contradicted' (value-based better) speaks against it, 'supported' says more than it"),
    ),
    Claim(
        key="pretrained_vs_random",
        title="Ablation: pre-trained LM weights vs the same architecture with random weights",
        paper_words=("\"Initializing Decision Transformers with sequentially pre-trained LMs\" (the first of "
                     "LaMo's four components)"),
        where=f"{ABSTRACT}; §5.5 (ablations)",
        a=Side("pre-trained weights", field="init", accept=lambda v: str(v) == "pretrained"),
        b=Side("random weights", field="init", accept=lambda v: str(v) == "random"),
    ),
    Claim(
        key="mlp_vs_linear",
        title="Ablation: MLP vs linear embeddings",
        paper_words=("\"using the non-linear MLP transformation instead of linear projections, to generate "
                     "embeddings\" (one of LaMo's four components, each shown to help in the ablations)"),
        where=f"{ABSTRACT}; §5.5 (ablations)",
        a=Side("MLP embeddings", field="embedding", accept=lambda v: str(v) == "mlp"),
        b=Side("linear embeddings", field="embedding", accept=lambda v: str(v) == "linear"),
    ),
    Claim(
        key="lora_vs_full",
        title="Ablation: LoRA vs full fine-tuning",
        paper_words=("\"employing the LoRA fine-tuning method, in contrast to full-weight fine-tuning, to combine "
                     "the pre-trained knowledge from LMs and in-domain knowledge effectively\""),
        where=f"{ABSTRACT}; §5.5 (ablations); Figure 5 (full fine-tuning overfits)",
        a=Side("LoRA", field="finetune", accept=lambda v: str(v) == "lora"),
        b=Side("full fine-tuning", field="finetune", accept=lambda v: str(v) == "full"),
    ),
    Claim(
        key="language_loss",
        title="Ablation: with vs without the language loss",
        paper_words=("\"integrating an auxiliary language prediction loss during fine-tuning to stabilize the LMs "
                     "and retain their original abilities on languages\""),
        where=f"{ABSTRACT}; §5.5 (ablations); Figure 6(a)",
        a=Side("with language loss (λ > 0)", field="language_weight", accept=_positive),
        b=Side("without language loss (λ = 0)", field="language_weight", accept=_zero),
    ),
)


def verdict(ci_low: float, ci_high: float, runs_a: int, runs_b: int, min_runs: int = MIN_RUNS_PER_SIDE) -> str:
    """The verdict word for P(A > B) with CI ``[ci_low, ci_high]`` (probabilities, 0–1).

    ``not enough runs`` when either side has fewer than ``min_runs`` runs (or the CI is NaN), else
    ``supported`` (``ci_low > 0.5``), ``contradicted`` (``ci_high < 0.5``) or ``inconclusive``.
    """
    if min(runs_a, runs_b) < min_runs or np.isnan(ci_low) or np.isnan(ci_high):
        return NOT_ENOUGH
    if ci_low > 0.5:
        return SUPPORTED
    if ci_high < 0.5:
        return CONTRADICTED
    return INCONCLUSIVE


# --- sides to trials --------------------------------------------------------------------------------
def _with_keys(selected: pd.DataFrame) -> pd.DataFrame:
    sel = selected.dropna(subset=["normalised_score"]).copy()
    sel["_method"] = sel["variant"].map(method_key) if "variant" in sel else ""
    sel["_group"] = sel["task"].map(lambda t: task_info(t).table)
    sel["_cell"] = sel["task"].astype(str)
    return sel


def _side_trials(sel: pd.DataFrame, side: Side) -> pd.DataFrame:
    if side.field is not None:
        return sel[sel[side.field].map(side.accept).astype(bool)]  # bool also when empty
    return sel[sel["_method"].isin(side.methods)]


def _cell_counts(part: pd.DataFrame) -> pd.Series:
    return part.groupby(["_cell", "sample_ratio"]).size()


def _common_cells(a: pd.DataFrame, b: pd.DataFrame) -> set:
    ca, cb = _cell_counts(a), _cell_counts(b)
    return {c for c, n in ca.items() if n >= S.MIN_RUNS and cb.get(c, 0) >= S.MIN_RUNS}


def _in_cells(part: pd.DataFrame, cells: set) -> pd.DataFrame:
    keys = list(zip(part["_cell"], part["sample_ratio"]))
    return part[[k in cells for k in keys]]


def _pick_best(a: pd.DataFrame, b: pd.DataFrame, side: Side) -> tuple[pd.DataFrame, str, str]:
    """For a ``best_of`` side: the method with the highest mean over its cells shared with ``a``."""
    means = {}
    for m in side.methods:
        cand = b[b["_method"] == m]
        if cand.empty:
            continue
        cells = _common_cells(a, cand) or set(zip(cand["_cell"], cand["sample_ratio"]))
        means[m] = float(_in_cells(cand, cells)["normalised_score"].mean())
    if not means:
        return b.iloc[0:0], side.label, f"no run of {', '.join(METHOD_NAMES[m] for m in side.methods)}"
    best = max(means, key=lambda m: (means[m], -side.methods.index(m)))
    note = "best value-based by mean score over the cells shared with LaMo: " + ", ".join(
        f"{METHOD_NAMES[m]} {means[m]:.1f}" for m in sorted(means, key=lambda m: -means[m]))
    return b[b["_method"] == best], METHOD_NAMES[best], note


# --- one scope ---------------------------------------------------------------------------------------
def _evaluate(a: pd.DataFrame, b: pd.DataFrame, bootstrap: S.Bootstrap, min_runs: int) -> dict:
    """P(A > B) over the common cells of ``a`` and ``b`` (trials tagged ``_cell``/``sample_ratio``)."""
    cells = _common_cells(a, b)
    ua, ub = _in_cells(a, cells), _in_cells(b, cells)
    out = {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_cells": len(cells),
           "runs_a": len(ua) if cells else len(a), "runs_b": len(ub) if cells else len(b), "why": ""}
    if not cells:
        out["why"] = f"no (task, ratio) cell in which both sides have ≥{S.MIN_RUNS} seeds"
    elif min(len(ua), len(ub)) < min_runs:
        out["why"] = f"fewer than {min_runs} runs on a side in the compared cells"
    else:
        frame = pd.concat([ua.assign(_side="A"), ub.assign(_side="B")])
        frame = frame.assign(task=frame["_cell"])  # an ablation setting is part of the cell
        poi, notes = S.probability_of_improvement(
            frame, reference="A", column="_side", reps=bootstrap.poi_reps, seed=bootstrap.seed,
            min_runs=S.MIN_RUNS, confidence=bootstrap.confidence)
        if len(poi):
            r = poi.iloc[0]
            out.update(estimate=float(r["estimate"]), ci_low=float(r["ci_low"]), ci_high=float(r["ci_high"]))
        else:
            out["why"] = "; ".join(notes)
    out["verdict"] = verdict(out["ci_low"], out["ci_high"], out["runs_a"], out["runs_b"], min_runs)
    return out


def _scopes(claim: Claim, sel: pd.DataFrame) -> list[tuple[str, str, float]]:
    """``(label, task group, sample ratio or NaN)`` per scope with any trial of either side."""
    groups = [g for g in TABLES if (claim.task_groups is None or g in claim.task_groups)
              and (sel["_group"] == g).any()]
    if claim.task_groups is not None and not groups:
        groups = list(claim.task_groups)  # say "not enough runs" for the group the claim is about
    out = []
    for g in groups:
        part = sel[sel["_group"] == g]
        ratios = sorted(part["sample_ratio"].dropna().unique()) if claim.per_ratio else []
        for r in ratios:
            out.append((f"{TABLES[g]}, {format_ratio(r)} data", g, float(r)))
        if not claim.per_ratio or len(ratios) != 1:
            out.append((f"{TABLES[g]}, all sample ratios", g, float("nan")))
    return out


def _ablation_frame(selected: pd.DataFrame, claim: Claim) -> tuple[pd.DataFrame, str]:
    """The trials of an ablation claim, with ``_cell`` = setting | task; notes on pooled values."""
    part, why_not = ablation_settings(selected, claim.a.field)
    if why_not:
        return _with_keys(part), f"`{claim.a.field}`: {why_not}"
    part = _with_keys(part)
    part["_cell"] = part["setting"].astype(str) + " | " + part["task"].astype(str)
    note = ""
    vals = sorted({str(v) for v in part[claim.a.field] if claim.a.accept(v)})
    if len(vals) > 1:
        note = f"{claim.a.label} pools the values {', '.join(vals)}"
    return part, note


def check_claims(
    selected: pd.DataFrame,
    bootstrap: S.Bootstrap = S.DEFAULT_BOOTSTRAP,
    min_runs: int = MIN_RUNS_PER_SIDE,
    claims: tuple[Claim, ...] = CLAIMS,
) -> pd.DataFrame:
    """One row per claim and scope: P(A > B) with its CI, cells, runs per side and the verdict.

    Args:
        selected: one row per trial (:func:`analysis.select.select_scores`): ``task``, ``sample_ratio``,
            ``seed``, ``variant``, ``normalised_score`` (0–100) and the ablation columns.
        bootstrap: replications (``poi_reps``), seed and coverage of the CI.
        min_runs: runs each side needs (summed over the compared cells) for a verdict other than
            ``not enough runs``; default :data:`MIN_RUNS_PER_SIDE`.
        claims: the claims to check (default :data:`CLAIMS`).

    Returns:
        Frame with :data:`CLAIM_COLUMNS`. ``estimate`` / ``ci_low`` / ``ci_high`` are probabilities
        (NaN when not computed); ``runs_a`` / ``runs_b`` count the runs in the compared cells, or, when no
        cell has both sides with ≥ :data:`analysis.stats.MIN_RUNS` seeds, every run of that side in
        the scope. A claim none of whose sides has a run in the data still gets one row
        (``not enough runs``, 0 runs), so the reader sees what could not be checked.

    Raises:
        ValueError: ``min_runs`` < 1.
        analysis.stats.RliableUnavailable: rliable cannot be imported.
    """
    if min_runs < 1:
        raise ValueError(f"min_runs (runs per side for a verdict) must be ≥ 1, got {min_runs}")
    base = _with_keys(selected)
    recs = []
    for claim in claims:
        if claim.a.field is not None:
            sel, pooled = _ablation_frame(selected, claim)
        else:
            sel, pooled = base, ""
        scopes = _scopes(claim, sel) if len(sel) else []
        if not scopes:  # nothing to compare: one row that says why
            recs.append(_row(claim, "no comparable runs", ",".join(claim.task_groups or ()), float("nan"),
                             claim.b.label, _evaluate(sel, sel, bootstrap, min_runs),
                             [pooled or "no runs of either side in the data"], bootstrap))
            continue
        for label, group, ratio in scopes:
            part = sel[(sel["_group"] == group)] if group in TABLES else sel.iloc[0:0]
            if not np.isnan(ratio):
                part = part[np.isclose(part["sample_ratio"], ratio)]
            a, b = _side_trials(part, claim.a), _side_trials(part, claim.b)
            side_b, notes = claim.b.label, [n for n in (pooled, claim.reading) if n]
            if claim.b.best_of:
                b, side_b, note = _pick_best(a, b, claim.b)
                notes.insert(0, note)
            res = _evaluate(a, b, bootstrap, min_runs)
            if res["why"]:
                notes.insert(0, res["why"])
            recs.append(_row(claim, label, group, ratio, side_b, res, notes, bootstrap))
    return pd.DataFrame(recs, columns=CLAIM_COLUMNS)


def _row(claim: Claim, scope: str, group: str, ratio: float, side_b: str, res: dict, notes: list[str],
         bootstrap: S.Bootstrap) -> dict:
    return {
        "claim": claim.key, "scope": scope, "task_group": group, "sample_ratio": ratio,
        "side_a": claim.a.label, "side_b": side_b, "estimate": res["estimate"], "ci_low": res["ci_low"],
        "ci_high": res["ci_high"], "n_cells": res["n_cells"], "runs_a": res["runs_a"], "runs_b": res["runs_b"],
        "verdict": res["verdict"], "paper_words": claim.paper_words, "where": claim.where,
        "note": "; ".join(n for n in notes if n), "reps": bootstrap.poi_reps, "seed": bootstrap.seed,
    }


# --- rendering ---------------------------------------------------------------------------------------
def _p(x: float) -> str:
    return "—" if np.isnan(x) else f"{x:.2f}"


def claims_markdown(frame: pd.DataFrame, rule: SelectionRule | str, bootstrap: S.Bootstrap = S.DEFAULT_BOOTSTRAP,
                    min_runs: int = MIN_RUNS_PER_SIDE, claims: tuple[Claim, ...] = CLAIMS) -> str:
    """``claims.md``: the rules, then per claim its words, source and one table row per scope."""
    lines = [
        f"**The paper's claims against our runs.** Per claim and scope: P(A > B), rliable's probability of "
        f"improvement (averaged over the (task, sample ratio) cells in which both sides have ≥{S.MIN_RUNS} "
        f"seeds) with its {bootstrap.confidence * 100:g} % stratified-bootstrap CI ({bootstrap.poi_reps} "
        f"replications, seed {bootstrap.seed}); runs = trials per side in those cells. Verdict: "
        f"**supported** if the CI's lower bound > 0.5, **contradicted** if its upper bound < 0.5, "
        f"**inconclusive** otherwise, **not enough runs** if a side has fewer than {min_runs} runs. "
        f"{rule_text(rule)}",
        "",
    ]
    for claim in claims:
        part = frame[frame["claim"] == claim.key]
        lines += [f"#### {claim.title}", "", f"- Paper: {claim.paper_words} — {claim.where}."]
        if claim.reading:
            lines.append(f"- Reading: {claim.reading}.")
        lines += ["", "| scope | A | B | P(A > B) | CI | cells | runs A / B | verdict | note |",
                  "|---|---|---|---:|---|---:|---:|---|---|"]
        for r in part.to_dict("records"):
            ci = "—" if np.isnan(r["ci_low"]) else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
            note = str(r["note"]).replace(f"; {claim.reading}", "").replace(claim.reading, "") if claim.reading else str(r["note"])
            note = note.replace("|", "\\|")
            lines.append(f"| {r['scope']} | {r['side_a']} | {r['side_b']} | {_p(r['estimate'])} | {ci} | "
                         f"{r['n_cells']} | {r['runs_a']} / {r['runs_b']} | **{r['verdict']}** | {note} |")
        lines.append("")
    return "\n".join(lines)
