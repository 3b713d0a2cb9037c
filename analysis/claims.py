"""The paper's claims, checked against the logged runs: probability of improvement, CI, runs, verdict.

Each claim of LaMo (Shi et al., ICLR 2024, arXiv 2310.20587) that a sweep's runs can speak to is one
:class:`Claim` in :data:`CLAIMS` (the only place claims are defined): the paper's words and where they
stand, and the two sides compared — side A is the one the paper says is better (or, for a parity
claim, as good). For every *scope* of a claim (a task group of the paper's tables, and a sample ratio
where the claim is per ratio) a row reports rliable's probability of improvement P(A > B) (Agarwal et
al., NeurIPS 2021, ``rliable.metrics.probability_of_improvement``) with its stratified-bootstrap CI
(:func:`analysis.stats.probability_of_improvement`, :data:`analysis.stats.DEFAULT_BOOTSTRAP`) over the
(task, sample ratio) cells — for an ablation, (setting, task, sample ratio) cells — in which both sides
have at least :data:`analysis.stats.MIN_RUNS` seeds. The CI describes the effect; it does not decide
the verdict: with 2-5 seeds a percentile bootstrap is too narrow (on simulated null stores the old
"CI excludes 0.5" rule gave a verdict 5.5-18 % of the time against a nominal 5 %, the current rule
2.4-4.7 %; ``benchmarks/bench_claims.py --calibrate``, numbers in ``docs/analysis.md``).

The verdict comes from a test that keeps its level at any number of runs
(:func:`analysis.stats.poi_permutation_test`: side labels relabelled within each cell, exact
enumeration where feasible), at level α = 1 − the bootstrap's confidence (0.05), with Holm's
correction across every tested row of one report (:func:`analysis.stats.holm`):

* superiority claims (A better): two-sided test of "A and B exchangeable in every cell";
* parity claims (:attr:`Claim.margin` set, "closes the gap"): equivalence within ± ``margin``
  normalised-score points by two one-sided shifted tests (Schuirmann 1987, TOST) under a
  location-shift model, and "A worse by more than the margin" by the third one-sided test; the row's
  p-value is twice the smaller of the two (a Bonferroni split between the two possible verdicts).

Verdict (:func:`verdict`):

* ``not enough runs`` — either side has fewer than :data:`MIN_RUNS_PER_SIDE` runs in the compared cells,
  no cell has both sides with ≥ :data:`analysis.stats.MIN_RUNS` seeds, or the design cannot reach
  p ≤ α at all (e.g. one cell with 2 seeds a side: 6 relabellings, smallest two-sided p = 1/3); such
  rows are not tested and do not count in Holm's m;
* ``supported`` — Holm-adjusted p ≤ α and the effect points the paper's way (P(A > B) > ½, or within
  the margin for a parity claim);
* ``contradicted`` — Holm-adjusted p ≤ α the other way (P(A > B) < ½, or A worse than B by more than
  the margin for a parity claim);
* ``inconclusive`` — otherwise. For a parity claim "inconclusive" is *not* parity: parity is only
  "supported" when equivalence within the margin is shown.

Which trials form a side:

* methods are variants, matched by :func:`analysis.domains.method_key` (``lamo``, ``dt``, ``cql``,
  ``iql``, ``td3bc``; the display names of :data:`analysis.domains.METHOD_NAMES`) of the variant's
  ``method:`` in the sweep file (the run's tag ``lamo.method``) where it has one, else of its name (so
  ``lamo-smollm2`` with ``method: lamo`` is LaMo; without it, no method);
* "the best value-based method" (a ``best_of`` side) is not picked on the runs it is tested on: LaMo is
  tested against each of CQL, IQL and TD3+BC, one row each (beating the best one = beating each one, so
  "supported" in every row supports the claim — an intersection-union test, no further correction);
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
from trainers.methods import VALUE_BASED_FAMILY, methods_of_family

#: Runs (trials) each side needs, summed over the compared cells, before a row is tested. The test keeps
#: its level at any count (:func:`analysis.stats.poi_permutation_test`); this floor keeps a verdict from
#: resting on a handful of runs: with n runs per side perfectly separated in one cell the exact one-sided
#: Mann-Whitney p-value is 1 / C(2n, n): 0.17 for n = 2, 0.05 for n = 3, 0.014 for n = 4 and 0.004 for
#: n = 5. Designs that pass it but cannot reach p ≤ α still say "not enough runs".
MIN_RUNS_PER_SIDE = 5
#: Equivalence margin of a parity claim, in score points of the task group's table (D4RL-normalised for
#: MuJoCo / Kitchen / Reacher2d, gamer-normalised for Atari): 5 points = 5 % of the random-to-expert
#: (random-to-human) range that the normalisation maps to 0-100 (Fu et al. 2020, D4RL; Mnih et al.
#: 2015). A project choice, not the paper's (the paper states no margin); change it per claim
#: (:attr:`Claim.margin`).
EQUIVALENCE_MARGIN = 5.0
#: Verdict words, in the order of :func:`verdict`'s rules.
NOT_ENOUGH, SUPPORTED, CONTRADICTED, INCONCLUSIVE = "not enough runs", "supported", "contradicted", "inconclusive"
VERDICTS = (NOT_ENOUGH, SUPPORTED, CONTRADICTED, INCONCLUSIVE)
#: The value-based offline-RL methods of the paper's tables (method keys of ``METHOD_NAMES``).
VALUE_BASED = methods_of_family(VALUE_BASED_FAMILY)  # the method registry's: ("cql", "iql", "td3bc")
CLAIM_COLUMNS = [
    "claim", "scope", "task_group", "sample_ratio", "side_a", "side_b", "estimate", "ci_low", "ci_high",
    "n_cells", "runs_a", "runs_b", "verdict", "paper_words", "where", "note", "reps", "seed",
    "test", "margin", "p_value", "p_holm", "n_tested",
]
ABSTRACT = "arXiv 2310.20587, Abstract"
README = "https://github.com/srzer/LaMo-2023 (README, Introduction)"


@dataclass(frozen=True)
class Side:
    """One side of a claim: which trials it is.

    Attributes:
        label: how the report names the side (``"LaMo"``, ``"MLP embeddings"``).
        methods: method keys (:func:`analysis.domains.method_key` of the variant) — a methods side.
        best_of: with several ``methods``: "the best of them" — tested as one row per method (A must beat
            each, so the best is never chosen on the runs it is tested on); without, all are pooled.
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
    """One of the paper's claims: A better than B (superiority), or, with ``margin``, A as good as B.

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
        margin: ``None`` for a superiority claim; a parity claim's equivalence margin in score points
            (:data:`EQUIVALENCE_MARGIN`): "supported" needs A − B shown within ± margin.
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
    margin: float | None = None


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
        where=f"{ABSTRACT}; dense-reward MuJoCo and Atari tables; {README}",
        a=LAMO, b=BEST_VALUE_BASED, task_groups=("dense", "atari"), margin=EQUIVALENCE_MARGIN,
        reading=("the paper claims parity here (Atari's games have dense rewards too, so Atari is a scope of its "
                 "own), not superiority: 'supported' means LaMo − value-based shown within ± the margin; "
                 "'inconclusive' is not parity"),
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


def verdict(p_adjusted: float, direction: int, alpha: float = 0.05) -> str:
    """The verdict word of one tested row.

    Args:
        p_adjusted: the row's Holm-adjusted p-value (0–1); NaN when the row was not tested.
        direction: +1 when the effect points the paper's way (P(A > B) > ½; for a parity claim:
            equivalence is the better-supported side), −1 the other way, 0 no direction.
        alpha: the test level (default 0.05 = 1 − the bootstrap's 95 % confidence).

    Returns:
        ``not enough runs`` (NaN p), ``supported`` / ``contradicted`` (p ≤ ``alpha``, by ``direction``),
        else ``inconclusive``.
    """
    if np.isnan(p_adjusted):
        return NOT_ENOUGH
    if p_adjusted <= alpha and direction > 0:
        return SUPPORTED
    if p_adjusted <= alpha and direction < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def row_test(cells: list[tuple[np.ndarray, np.ndarray]], margin: float | None, alpha: float = 0.05,
             seed: int = 0) -> dict:
    """The test behind one claim row, before the correction across rows.

    Args:
        cells: per compared cell ``(scores of A, scores of B)`` (normalised scores, 0–100).
        margin: ``None`` — superiority: two-sided :func:`analysis.stats.poi_permutation_test`;
            a number — parity within ± ``margin`` score points: p_equiv = max of the one-sided tests of
            H0 "A − B ≤ −margin" and H0 "A − B ≥ +margin" (TOST, Schuirmann 1987), p_worse = one-sided
            test of H0 "A − B ≥ −margin"; the row's p-value is min(1, 2 · min(p_equiv, p_worse)).
        alpha: level; a design whose smallest attainable p-value exceeds it is not tested.
        seed: Monte-Carlo seed (large designs only).

    Returns:
        ``{"p_value", "direction", "min_p", "why"}``: ``p_value`` NaN (and ``why`` set) when the design
        cannot reach ``alpha``; ``direction`` as :func:`verdict` takes it.
    """
    sizes = [(len(a), len(b)) for a, b in cells]
    min_p = S.min_pvalue(sizes, "two-sided")
    out = {"p_value": np.nan, "direction": 0, "min_p": min_p, "why": ""}
    if min_p > alpha:
        out["why"] = (f"these runs cannot give a verdict at level {alpha:g}: the smallest p-value of "
                      f"{len(cells)} cell(s) with {'/'.join(f'{a}+{b}' for a, b in sizes)} runs is {min_p:.2g}")
        return out
    if margin is None:
        t = S.poi_permutation_test(cells, "two-sided", seed=seed)
        out.update(p_value=t.pvalue, direction=int(np.sign(t.statistic - 0.5)))
        return out
    low = S.poi_permutation_test(cells, "greater", shift=-margin, seed=seed).pvalue    # H0: A − B ≤ −margin
    high = S.poi_permutation_test(cells, "less", shift=margin, seed=seed).pvalue      # H0: A − B ≥ +margin
    worse = S.poi_permutation_test(cells, "less", shift=-margin, seed=seed).pvalue    # H0: A − B ≥ −margin
    equiv = max(low, high)
    out.update(p_value=min(1.0, 2 * min(equiv, worse)), direction=1 if equiv <= worse else -1)
    return out


# --- sides to trials --------------------------------------------------------------------------------
def _with_keys(selected: pd.DataFrame) -> pd.DataFrame:
    sel = selected.dropna(subset=["normalised_score"]).copy()
    if "variant" not in sel:
        sel["_method"] = ""
    else:  # the sweep variant's `method:` (tag lamo.method) where it gave one, else the variant's name
        named = sel["method"] if "method" in sel else pd.Series(None, index=sel.index, dtype="object")
        sel["_method"] = [method_key(m) if isinstance(m, str) and m else method_key(v)
                          for m, v in zip(named, sel["variant"])]
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


# --- one scope ---------------------------------------------------------------------------------------
def _evaluate(a: pd.DataFrame, b: pd.DataFrame, bootstrap: S.Bootstrap, min_runs: int,
              margin: float | None = None) -> dict:
    """P(A > B) with its CI, and the row's test (:func:`row_test`), over the common cells of ``a`` and
    ``b`` (trials tagged ``_cell``/``sample_ratio``). The verdict is set later, after Holm's correction."""
    cells = _common_cells(a, b)
    ua, ub = _in_cells(a, cells), _in_cells(b, cells)
    out = {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_cells": len(cells),
           "runs_a": len(ua) if cells else len(a), "runs_b": len(ub) if cells else len(b), "why": "",
           "p_value": np.nan, "direction": 0}
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
        keyed = sorted(cells, key=lambda c: (str(c[0]), c[1]))
        arrays = [(ua[(ua["_cell"] == t) & (ua["sample_ratio"] == r)]["normalised_score"].to_numpy(float),
                   ub[(ub["_cell"] == t) & (ub["sample_ratio"] == r)]["normalised_score"].to_numpy(float))
                  for t, r in keyed]
        test = row_test(arrays, margin, 1 - bootstrap.confidence, bootstrap.seed)
        out.update(p_value=test["p_value"], direction=test["direction"])
        out["why"] = "; ".join(w for w in (out["why"], test["why"]) if w)
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
    """One row per claim, scope and B (each method of a ``best_of`` side): P(A > B) with its CI, cells,
    runs per side, the row's test (:func:`row_test`), its Holm-adjusted p-value across every tested
    row of the call, and the verdict (:func:`verdict`, level 1 − ``bootstrap.confidence``).

    Args:
        selected: one row per trial (:func:`analysis.select.select_scores`): ``task``, ``sample_ratio``,
            ``seed``, ``variant``, ``normalised_score`` (0–100) and the ablation columns.
        bootstrap: replications (``poi_reps``), seed and coverage of the CI; the test's level is
            1 − ``confidence``; ``seed`` also seeds the Monte-Carlo relabellings of large designs.
        min_runs: runs each side needs (summed over the compared cells) before the row is tested (else
            ``not enough runs``); default :data:`MIN_RUNS_PER_SIDE`.
        claims: the claims to check (default :data:`CLAIMS`).

    Returns:
        Frame with :data:`CLAIM_COLUMNS`. ``estimate`` / ``ci_low`` / ``ci_high`` are probabilities
        (NaN when not computed); ``runs_a`` / ``runs_b`` count the runs in the compared cells, or, when no
        cell has both sides with ≥ :data:`analysis.stats.MIN_RUNS` seeds, every run of that side in
        the scope. A claim none of whose sides has a run in the data still gets one row
        (``not enough runs``, 0 runs), so the reader sees what could not be checked. ``p_value`` is the
        row's unadjusted p-value (NaN: not tested), ``p_holm`` the adjusted one, ``n_tested`` Holm's m
        (the same in every row), ``test`` ``superiority`` or ``equivalence`` with ``margin`` (score points).

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
                             claim.b.label, _evaluate(sel.iloc[0:0], sel.iloc[0:0], bootstrap, min_runs),
                             [pooled or "no runs of either side in the data"], bootstrap))
            continue
        for label, group, ratio in scopes:
            part = sel[(sel["_group"] == group)] if group in TABLES else sel.iloc[0:0]
            if not np.isnan(ratio):
                part = part[np.isclose(part["sample_ratio"], ratio)]
            a, b = _side_trials(part, claim.a), _side_trials(part, claim.b)
            base_notes = [n for n in (pooled, claim.reading) if n]
            for side_b, bb, note in _b_sides(b, claim.b):
                res = _evaluate(a, bb, bootstrap, min_runs, claim.margin)
                notes = [n for n in (res["why"], note) if n] + base_notes
                recs.append(_row(claim, label, group, ratio, side_b, res, notes, bootstrap))
    _correct(recs, 1 - bootstrap.confidence)
    return pd.DataFrame(recs, columns=CLAIM_COLUMNS)


def _b_sides(b: pd.DataFrame, side: Side) -> list[tuple[str, pd.DataFrame, str]]:
    """``(label, trials, note)`` per tested B: the side itself, or, for a ``best_of`` side, each of its
    methods with a run in the scope (none: the side, empty, with a note)."""
    if not side.best_of:
        return [(side.label, b, "")]
    present = [m for m in side.methods if (b["_method"] == m).any()]
    if not present:
        return [(side.label, b.iloc[0:0], f"no run of {', '.join(METHOD_NAMES[m] for m in side.methods)}")]
    note = (f"{side.label}: one row per method with runs here ({len(present)}), so the best one is not "
            "chosen on the runs it is tested on")
    return [(METHOD_NAMES[m], b[b["_method"] == m], note) for m in present]


def _correct(recs: list[dict], alpha: float) -> None:
    """Holm across the tested rows of one report (:func:`analysis.stats.holm`), then each row's verdict."""
    adjusted = S.holm([r["p_value"] for r in recs])
    tested = int(np.sum(~np.isnan(adjusted)))
    for r, p in zip(recs, adjusted):
        r["p_holm"] = float(p)
        r["n_tested"] = tested
        r["verdict"] = verdict(float(p), r.pop("_direction"), alpha)


def _row(claim: Claim, scope: str, group: str, ratio: float, side_b: str, res: dict, notes: list[str],
         bootstrap: S.Bootstrap) -> dict:
    return {
        "claim": claim.key, "scope": scope, "task_group": group, "sample_ratio": ratio,
        "side_a": claim.a.label, "side_b": side_b, "estimate": res["estimate"], "ci_low": res["ci_low"],
        "ci_high": res["ci_high"], "n_cells": res["n_cells"], "runs_a": res["runs_a"], "runs_b": res["runs_b"],
        "verdict": NOT_ENOUGH, "paper_words": claim.paper_words, "where": claim.where,
        "note": "; ".join(n for n in notes if n), "reps": bootstrap.poi_reps, "seed": bootstrap.seed,
        "test": "superiority" if claim.margin is None else "equivalence",
        "margin": float("nan") if claim.margin is None else float(claim.margin),
        "p_value": res["p_value"], "p_holm": np.nan, "n_tested": 0, "_direction": res["direction"],
    }


# --- rendering ---------------------------------------------------------------------------------------
def _p(x: float) -> str:
    return "—" if np.isnan(x) else f"{x:.2f}"


def _pv(x: float) -> str:
    """A p-value for the table: two significant digits, ``<0.001`` below that."""
    return "—" if np.isnan(x) else "<0.001" if x < 0.001 else f"{x:.2g}"


def claims_markdown(frame: pd.DataFrame, rule: SelectionRule | str, bootstrap: S.Bootstrap = S.DEFAULT_BOOTSTRAP,
                    min_runs: int = MIN_RUNS_PER_SIDE, claims: tuple[Claim, ...] = CLAIMS) -> str:
    """``claims.md``: the rules (test, level, Holm's m, margins), then per claim its words, source and one
    table row per scope (and per B of a ``best_of`` side)."""
    alpha = 1 - bootstrap.confidence
    tested = int(frame["n_tested"].max()) if len(frame) else 0
    margins = sorted({c.margin for c in claims if c.margin is not None})
    margin_text = (f" Parity claims (\"closes the gap\") are tested for equivalence within ± "
                   f"{', '.join(f'{m:g}' for m in margins)} normalised-score points (two one-sided shifted permutation "
                   f"tests): **supported** = shown within the margin, **contradicted** = A shown worse by more than "
                   f"the margin; **inconclusive** is not parity." if margins else "")
    lines = [
        f"**The paper's claims against our runs.** Per claim and scope: P(A > B), rliable's probability of "
        f"improvement (averaged over the (task, sample ratio) cells in which both sides have ≥{S.MIN_RUNS} "
        f"seeds) with its {bootstrap.confidence * 100:g} % stratified-bootstrap CI ({bootstrap.poi_reps} "
        f"replications, seed {bootstrap.seed}), a description of the effect. The verdict comes from a "
        f"permutation test within cells (exact at any number of seeds) at level {alpha:g}, with Holm's "
        f"correction across the **{tested} tested row(s)** of this report: **supported** if the adjusted p ≤ "
        f"{alpha:g} and A is ahead, **contradicted** if adjusted p ≤ {alpha:g} and B is ahead, "
        f"**inconclusive** otherwise, **not enough runs** (not tested) if a side has fewer than {min_runs} "
        f"runs or the runs cannot reach p ≤ {alpha:g} at all. \"Best value-based method\" claims are tested "
        f"against each value-based method, one row each.{margin_text} {rule_text(rule)}",
        "",
    ]
    for claim in claims:
        part = frame[frame["claim"] == claim.key]
        lines += [f"#### {claim.title}", "", f"- Paper: {claim.paper_words} — {claim.where}."]
        if claim.reading:
            lines.append(f"- Reading: {claim.reading}.")
        lines += ["", "| scope | A | B | P(A > B) | CI | cells | runs A / B | p (Holm) | verdict | note |",
                  "|---|---|---|---:|---|---:|---:|---:|---|---|"]
        for r in part.to_dict("records"):
            ci = "—" if np.isnan(r["ci_low"]) else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
            note = str(r["note"]).replace(f"; {claim.reading}", "").replace(claim.reading, "") if claim.reading else str(r["note"])
            note = note.replace("|", "\\|")
            lines.append(f"| {r['scope']} | {r['side_a']} | {r['side_b']} | {_p(r['estimate'])} | {ci} | "
                         f"{r['n_cells']} | {r['runs_a']} / {r['runs_b']} | {_pv(r['p_value'])} ({_pv(r['p_holm'])}) | "
                         f"**{r['verdict']}** | {note} |")
        lines.append("")
    return "\n".join(lines)
