"""rliable statistics: IQM / mean / optimality gap with stratified-bootstrap CIs, probability of improvement.

Following Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice"
(NeurIPS 2021) and its library rliable (``google-research/rliable``, pinned ``rliable==1.2.0``), used
the way CORL's results scripts use it (``corl-team/CORL``, ``results/``):

* a *task* is one (task, sample ratio) cell of the grid, a *run* is one seed's trial;
* scores go to rliable as normalised score / 100 (γ = 1 for the optimality gap, i.e. the mean
  shortfall below a normalised score of 100); the outputs are scaled back to 0–100 like the tables;
* confidence intervals: ``rliable.library.get_interval_estimates`` (stratified bootstrap: runs are
  resampled within each task, percentile method, 95 %). Runs per task may differ between tasks, so the
  scores are passed as one array per task (rliable's independent stratified bootstrap).
* bootstrap settings: one default, :data:`DEFAULT_BOOTSTRAP` (:class:`Bootstrap`), used by both the
  end-of-sweep report and ``lamo-analysis``;
* reproducibility: rliable draws its bootstrap indices from NumPy's *global* RNG (``np.random.choice``
  in ``StratifiedBootstrap.update_indices``), not from ``random_state`` alone, so :func:`seeded`
  seeds the global RNG for the duration of the call (and restores it afterwards) besides passing a
  seeded ``random_state``.

Only cells in which every compared method has at least ``min_runs`` (default :data:`MIN_RUNS`) seeds
are used: with one run per task a bootstrap CI has zero width and means nothing. When nothing qualifies
the statistic is skipped with a message instead of failing.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.domains import method_sort_key
from analysis.tables import format_ratio

METRICS = ("IQM", "Mean", "Optimality gap")
AGG_COLUMNS = ["subset", "sample_ratio", "metric", "method", "estimate", "ci_low", "ci_high",
               "n_tasks", "n_runs", "reps", "seed"]
POI_COLUMNS = ["reference", "method", "estimate", "ci_low", "ci_high", "n_tasks", "reps", "seed"]
#: Seeds a (task, ratio) cell needs, for every compared method, to enter the rliable statistics.
MIN_RUNS = 2


@dataclass(frozen=True)
class Bootstrap:
    """Settings of rliable's stratified bootstrap, shared by every path that computes CIs.

    Attributes:
        reps: bootstrap replications of the aggregates (IQM, mean, optimality gap).
        poi_reps: bootstrap replications of the probability of improvement (each replication
            recomputes a Mann-Whitney statistic per cell, so it costs more per replication).
        seed: seed of NumPy's global RNG and of ``random_state`` (same seed → same CIs).
        confidence: coverage of the percentile intervals (0.95 = 95 %).

    Why the defaults (:data:`DEFAULT_BOOTSTRAP`: 2000 / 1000 replications, seed 0, 95 %): rliable
    1.2.0's ``get_interval_estimates`` defaults to ``reps=50000`` (minutes per report on a laptop);
    its ``create_performance_profile`` defaults to ``reps=2000``. A 95 % percentile interval's
    endpoints are the 2.5 % / 97.5 % quantiles of the replications; with ``B`` replications the
    Monte-Carlo error of the quantile level is about ``sqrt(0.025 · 0.975 / B)``: 0.35 percentage points
    for 2000, 0.49 for 1000, small next to the seed-to-seed spread of a 2-5 seed grid. Measured cost on
    a quickstart-sized store (8 trials, 2 sample ratios × 2 seeds × 2 variants) is given in
    ``docs/analysis.md`` ("Bootstrap settings"; ``benchmarks/bench_report.py``).

    Raises:
        ValueError: ``reps`` or ``poi_reps`` < 1, or ``confidence`` outside (0, 1).
    """

    reps: int = 2000
    poi_reps: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.reps < 1 or self.poi_reps < 1:
            raise ValueError(f"bootstrap replications must be ≥ 1, got reps={self.reps}, poi_reps={self.poi_reps}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")


#: The one bootstrap default: ``lamo-sweep``'s end-of-sweep report and every ``lamo-analysis`` command.
DEFAULT_BOOTSTRAP = Bootstrap()


class RliableUnavailable(RuntimeError):
    """rliable is not installed (it is a dependency of the analysis package: ``rliable==1.2.0``)."""


def _rliable():
    try:
        from rliable import library, metrics
    except ImportError as e:  # pragma: no cover - exercised only without the dependency
        raise RliableUnavailable(f"rliable is not importable ({e}); install rliable==1.2.0 (needs pandas<3)") from e
    return library, metrics


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[np.random.RandomState]:
    """Seed NumPy's global RNG (rliable's bootstrap draws from it) and restore its state on exit.

    Also silences arch's ``FutureWarning`` about ``random_state`` (rliable 1.2.0 passes it).
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(state)


def _interval(library, scores: list[np.ndarray], func, reps: int, confidence: float, seed: int):
    """``get_interval_estimates`` for one score set: a runs × tasks matrix when every task has the
    same number of runs (rliable's ``StratifiedBootstrap``), else one array per task (its independent
    stratified bootstrap). Seeded per call, so a method's CI does not depend on the other methods."""
    if len({a.shape[0] for a in scores}) == 1:
        data = np.concatenate(scores, axis=1)
        call = func
    else:
        data = list(scores)

        def call(*per_task: np.ndarray) -> np.ndarray:
            return func(np.concatenate([a.ravel() for a in per_task]).reshape(-1, 1))

    with seeded(seed) as rs:
        point, ci = library.get_interval_estimates(
            {"x": data}, call, reps=reps, confidence_interval_size=confidence, random_state=rs
        )
    return point["x"], ci["x"]


def score_arrays(
    selected: pd.DataFrame, column: str = "variant", min_runs: int = MIN_RUNS, methods: list | None = None
) -> tuple[dict[object, list[np.ndarray]], list[tuple[str, float]], list[str]]:
    """Per method, one ``(runs × 1)`` array of normalised score / 100 per common (task, ratio) cell.

    Returns:
        ``(arrays, cells, notes)``: ``arrays[method][i]`` are the runs of ``cells[i]``; cells are those
        in which every kept method has ≥ ``min_runs`` seeds; methods with no such cell are dropped
        (noted). Empty ``arrays`` when nothing qualifies.
    """
    notes: list[str] = []
    sel = selected.dropna(subset=["normalised_score", column])
    counts = sel.groupby(["task", "sample_ratio", column]).size()
    all_methods = sorted(sel[column].unique(), key=method_sort_key) if methods is None else list(methods)
    ok = {m: {(t, r) for (t, r, mm), n in counts.items() if mm == m and n >= min_runs} for m in all_methods}
    kept = [m for m in all_methods if ok[m]]
    if not kept:
        most = int(counts.max()) if len(counts) else 0
        notes.append(f"no method has ≥{min_runs} seeds in any (task, ratio) cell (most seeds in a cell: {most})")
        return {}, [], notes
    for m in all_methods:
        if not ok[m]:
            notes.append(f"{m}: no (task, ratio) cell with ≥{min_runs} seeds; left out")
    common = sorted(set.intersection(*(ok[m] for m in kept)), key=lambda c: (str(c[0]), c[1]))
    if not common:
        notes.append("no (task, ratio) cell in which every method has ≥%d seeds" % min_runs)
        return {}, [], notes
    dropped = set.union(*(ok[m] for m in kept)) - set(common)
    if dropped:
        notes.append(f"{len(dropped)} cell(s) left out because not every method has ≥{min_runs} seeds there")
    arrays = {}
    for m in kept:
        arrays[m] = []
        for t, r in common:
            v = sel[(sel["task"] == t) & (sel["sample_ratio"] == r) & (sel[column] == m)]["normalised_score"]
            arrays[m].append(v.to_numpy(dtype="float64").reshape(-1, 1) / 100.0)
    return arrays, common, notes


def _aggregate(metrics):
    def func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), metrics.aggregate_optimality_gap(x, 1.0)])

    return func


def aggregate_estimates(
    selected: pd.DataFrame,
    column: str = "variant",
    reps: int = DEFAULT_BOOTSTRAP.reps,
    seed: int = DEFAULT_BOOTSTRAP.seed,
    min_runs: int = MIN_RUNS,
    per_ratio: bool = True,
    confidence: float = DEFAULT_BOOTSTRAP.confidence,
) -> tuple[pd.DataFrame, list[str]]:
    """IQM, mean and optimality gap per method with stratified-bootstrap CIs, on the normalised-score
    scale (0–100; the optimality gap is the mean shortfall below 100).

    Subsets: ``all`` (every common cell), and one per sample ratio when the data has several.
    With unequal runs per task the run × task scores are pooled (with equal runs this is exactly
    rliable's ``aggregate_*`` on the runs × tasks matrix; Agarwal et al. 2021, rliable
    ``metrics.aggregate_iqm`` / ``aggregate_mean`` / ``aggregate_optimality_gap``).

    Returns:
        ``(frame, notes)`` with :data:`AGG_COLUMNS`; an empty frame plus notes when too few runs.

    Raises:
        RliableUnavailable: rliable cannot be imported.
    """
    library, metrics = _rliable()
    subsets = [("all", float("nan"), selected)]
    ratios = sorted(selected["sample_ratio"].dropna().unique())
    if per_ratio and len(ratios) > 1:
        subsets += [(format_ratio(r), float(r), selected[selected["sample_ratio"] == r]) for r in ratios]
    recs, notes = [], []
    for name, ratio, part in subsets:
        arrays, cells, why = score_arrays(part, column, min_runs)
        notes += [f"[{name}{'' if arrays else ', skipped'}] {w}" for w in why]
        if not arrays:
            continue
        for m in arrays:
            point, ci = _interval(library, arrays[m], _aggregate(metrics), reps, confidence, seed)
            for i, metric in enumerate(METRICS):
                recs.append({
                    "subset": name, "sample_ratio": ratio, "metric": metric, "method": m,
                    "estimate": 100 * float(point[i]), "ci_low": 100 * float(ci[0, i]),
                    "ci_high": 100 * float(ci[1, i]), "n_tasks": len(cells),
                    "n_runs": int(sum(a.shape[0] for a in arrays[m])), "reps": reps, "seed": seed,
                })
    return pd.DataFrame(recs, columns=AGG_COLUMNS), notes


def probability_of_improvement(
    selected: pd.DataFrame,
    reference: str = "lamo",
    column: str = "variant",
    reps: int = DEFAULT_BOOTSTRAP.poi_reps,
    seed: int = DEFAULT_BOOTSTRAP.seed,
    min_runs: int = MIN_RUNS,
    confidence: float = DEFAULT_BOOTSTRAP.confidence,
) -> tuple[pd.DataFrame, list[str]]:
    """P(reference > other) averaged over the common (task, ratio) cells, with bootstrap CIs.

    Uses ``rliable.metrics.probability_of_improvement`` per cell (Mann-Whitney U / (n_x n_y)) and
    averages over cells; CIs by ``get_interval_estimates`` with an independent stratified bootstrap
    of both methods' runs. Cells: those in which both methods have ≥ ``min_runs`` seeds.

    Returns:
        ``(frame, notes)`` with :data:`POI_COLUMNS`, one row per other method; ``estimate`` and the CI
        are probabilities (0–1), not scores.

    Raises:
        RliableUnavailable: rliable cannot be imported.
    """
    library, metrics = _rliable()
    sel = selected.dropna(subset=[column])
    present = sorted(sel[column].unique(), key=method_sort_key)
    ref = next((m for m in present if str(m) == str(reference)), None)
    if ref is None:
        return pd.DataFrame(columns=POI_COLUMNS), [
            f"reference method {reference!r} not in the data ({', '.join(map(str, present)) or 'none'})"
        ]
    recs, notes = [], []
    for other in present:
        if other == ref:
            continue
        arrays, cells, why = score_arrays(sel, column, min_runs, methods=[ref, other])
        notes += [f"[{ref} vs {other}] {w}" for w in why]
        if len(arrays) < 2:
            continue
        k = len(cells)

        def func(*xs: np.ndarray, k: int = k) -> np.ndarray:
            # xs = reference's per-cell runs, then the other method's; rliable's POI per cell, averaged
            return np.array([np.mean([metrics.probability_of_improvement(xs[i], xs[k + i]) for i in range(k)])])

        with seeded(seed) as rs:
            point, ci = library.get_interval_estimates(
                {"pair": arrays[ref] + arrays[other]}, func, reps=reps,
                confidence_interval_size=confidence, random_state=rs,
            )
        recs.append({"reference": ref, "method": other, "estimate": float(point["pair"][0]),
                     "ci_low": float(ci["pair"][0, 0]), "ci_high": float(ci["pair"][1, 0]), "n_tasks": k,
                     "reps": reps, "seed": seed})
    if len(present) < 2:
        notes.append("only one method in the data; nothing to compare")
    return pd.DataFrame(recs, columns=POI_COLUMNS), notes


# --- exact tests for the claims ----------------------------------------------------------------------
#: Random within-cell relabellings drawn when a design has too many to enumerate (Monte Carlo p-value
#: ``(1 + hits) / (1 + PERMUTATIONS)``, valid at any count; Phipson & Smyth 2010, "Permutation p-values
#: should never be zero", Stat. Appl. Genet. Mol. Biol. 9(1)). Its Monte-Carlo error at p = 0.05 is
#: sqrt(0.05 · 0.95 / 20000) = 0.15 percentage points.
PERMUTATIONS = 20_000
#: Largest number of relabellings of one cell, and largest integer grid of the summed statistic, that
#: :func:`poi_permutation_test` still enumerates exactly (beyond either: Monte Carlo).
EXACT_CELL_LIMIT = 20_000
EXACT_GRID_LIMIT = 2_000_000


@dataclass(frozen=True)
class PermutationTest:
    """Result of :func:`poi_permutation_test`.

    Attributes:
        statistic: mean over cells of P(A > B) within the cell (ties count ½), 0–1: the same number as
            :func:`probability_of_improvement`'s point estimate (rliable's ``probability_of_improvement``
            per cell, averaged).
        pvalue: the permutation p-value (0–1).
        exact: ``True`` when every within-cell relabelling was enumerated, else Monte Carlo.
        n_labelings: relabellings of the design, ∏ C(n_a + n_b, n_a) over cells (a float; can be huge).
        min_pvalue: the smallest p-value this design can give (no ties): 2 / n_labelings two-sided,
            1 / n_labelings one-sided, and at least 1 / (resamples + 1) under Monte Carlo.
    """

    statistic: float
    pvalue: float
    exact: bool
    n_labelings: float
    min_pvalue: float


def _labelling_poi(pooled: np.ndarray, na: int, masks: np.ndarray) -> np.ndarray:
    """2·U (an integer) for each row of ``masks`` (relabellings × n, True = side A): U counts A > B pairs
    plus half the ties, so P(A > B) = 2U / (2 · n_a · n_b)."""
    gt = (pooled[:, None] > pooled[None, :]).astype(np.int64) * 2 + (pooled[:, None] == pooled[None, :])
    m = masks.astype(np.int64)
    return ((m @ gt) * (1 - m)).sum(axis=1)


def design_labelings(sizes: list[tuple[int, int]]) -> float:
    """∏ C(n_a + n_b, n_a) over cells: how many ways the runs of a design can be split into the two
    sides within each cell (``sizes``: per cell (runs of A, runs of B))."""
    from math import comb

    out = 1.0
    for na, nb in sizes:
        out *= comb(na + nb, na)
    return out


def min_pvalue(sizes: list[tuple[int, int]], alternative: str = "two-sided", resamples: int = PERMUTATIONS) -> float:
    """The smallest p-value :func:`poi_permutation_test` can return for a design (per cell (n_a, n_b)),
    whatever the scores: only the relabelling(s) with every cell perfectly ordered reach it.
    A design whose smallest p-value exceeds the test level can never give a verdict."""
    n = design_labelings(sizes)
    p = min(1.0, (2.0 if alternative == "two-sided" else 1.0) / n)
    exact = all(design_labelings([s]) <= EXACT_CELL_LIMIT for s in sizes)
    return p if exact else max(p, 1.0 / (resamples + 1))


def poi_permutation_test(
    cells: list[tuple[np.ndarray, np.ndarray]],
    alternative: str = "two-sided",
    shift: float = 0.0,
    resamples: int = PERMUTATIONS,
    seed: int = 0,
) -> PermutationTest:
    """Stratified permutation test of "A and B are exchangeable within every cell" with the statistic
    T = mean over cells of P(A > B) (rliable's probability of improvement, Agarwal et al. 2021).

    The side labels are relabelled within each cell only (cells = (task, sample ratio) or (setting,
    task, sample ratio); their scores need not be comparable across cells), so the test is exact at any
    number of runs: under the null, P(p ≤ α) ≤ α (Lehmann & Romano, *Testing Statistical Hypotheses*,
    §15.2; the stratified Wilcoxon–Mann–Whitney / van Elteren setting). The null distribution is
    enumerated exactly (each cell's relabellings, then the cells' sums convolved on an integer grid)
    when the design is small enough (:data:`EXACT_CELL_LIMIT`, :data:`EXACT_GRID_LIMIT`), else drawn
    by Monte Carlo (``resamples`` relabellings, p = (1 + hits) / (1 + resamples)).

    Args:
        cells: per cell ``(scores of A, scores of B)``, 1-D arrays (any unit; each side ≥ 1 run).
        alternative: ``"two-sided"`` (|T − ½| at least as large as observed), ``"greater"`` (T at least
            as large) or ``"less"``.
        shift: subtracted from A's scores first (same unit as the scores). With ``shift = δ`` the test
            is one of H0 "A is B shifted by δ" — the building block of the equivalence test
            (two one-sided tests, Schuirmann 1987) under a location-shift model.
        resamples: Monte-Carlo relabellings when the design is too large to enumerate.
        seed: seed of the Monte-Carlo relabellings (unused when exact).

    Returns:
        :class:`PermutationTest`.

    Raises:
        ValueError: no cells, a cell with an empty side, or an unknown ``alternative``.
    """
    from itertools import combinations
    from math import lcm

    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    if not cells:
        raise ValueError("poi_permutation_test needs at least one cell")
    data = []
    for i, (a, b) in enumerate(cells):
        a = np.asarray(a, dtype="float64").ravel() - shift
        b = np.asarray(b, dtype="float64").ravel()
        if not len(a) or not len(b):
            raise ValueError(f"cell {i} has {len(a)} run(s) of A and {len(b)} of B; each side needs ≥ 1")
        data.append((np.concatenate([a, b]), len(a), len(b)))
    sizes = [(na, nb) for _, na, nb in data]
    n_lab = design_labelings(sizes)
    grid = lcm(*(2 * na * nb for na, nb in sizes))
    k = len(data)
    exact = (all(design_labelings([s]) <= EXACT_CELL_LIMIT for s in sizes) and k * grid <= EXACT_GRID_LIMIT)
    observed = 0
    for pooled, na, nb in data:
        mask = np.zeros((1, na + nb), dtype=bool)
        mask[0, :na] = True
        observed += int(_labelling_poi(pooled, na, mask)[0]) * (grid // (2 * na * nb))
    centre = k * grid  # = 2 · (k · grid / 2): the integer grid's value of T = ½, doubled
    if exact:
        dist = np.ones(1)
        for pooled, na, nb in data:
            n = na + nb
            masks = np.zeros((int(design_labelings([(na, nb)])), n), dtype=bool)
            for row, idx in enumerate(combinations(range(n), na)):
                masks[row, list(idx)] = True
            vals = _labelling_poi(pooled, na, masks) * (grid // (2 * na * nb))
            cell = np.bincount(vals, minlength=grid + 1) / len(vals)
            dist = np.convolve(dist, cell)
        values = np.arange(len(dist))
        if alternative == "two-sided":
            p = dist[np.abs(2 * values - centre) >= abs(2 * observed - centre)].sum()
        elif alternative == "greater":
            p = dist[values >= observed].sum()
        else:
            p = dist[values <= observed].sum()
        p = float(min(1.0, p))
    else:
        rng = np.random.default_rng(seed)
        total = np.zeros(resamples, dtype=np.int64)
        for pooled, na, nb in data:
            masks = np.argsort(rng.random((resamples, na + nb)), axis=1) < na
            total += _labelling_poi(pooled, na, masks) * (grid // (2 * na * nb))
        if alternative == "two-sided":
            hits = np.abs(2 * total - centre) >= abs(2 * observed - centre)
        elif alternative == "greater":
            hits = total >= observed
        else:
            hits = total <= observed
        p = float((1 + hits.sum()) / (1 + resamples))
    return PermutationTest(statistic=observed / (k * grid), pvalue=p, exact=exact, n_labelings=n_lab,
                           min_pvalue=min_pvalue(sizes, alternative, resamples))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979, "A simple sequentially rejective multiple test
    procedure", Scand. J. Statist. 6(2)): sorted ascending, p_(i) · (m − i + 1), made non-decreasing,
    capped at 1. Rejecting where the adjusted p ≤ α keeps the family-wise error rate ≤ α under any
    dependence. NaN entries are not tested: they stay NaN and do not count in m.

    Args:
        pvalues: 1-D sequence of p-values (0–1) or NaN.

    Returns:
        Array of the same length.
    """
    p = np.asarray(pvalues, dtype="float64")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if not m:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adj
    return out
