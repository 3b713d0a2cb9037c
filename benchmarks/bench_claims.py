"""Time ``analysis.claims.check_claims`` (the claims part of the report) on the paper's dense-reward grid:
Hopper / HalfCheetah / Walker2d medium × sample ratios 0.5 %, 1 %, 10 %, 100 % × 3 seeds × the seven
methods (LaMo, DT, Wiki-RL, CQL, IQL, TD3+BC, BC), plus ``lamo-linear`` / ``lamo-full`` /
``lamo-no-lm-loss`` ablation variants: the size of ``sweeps/paper_mujoco.yaml`` with ablations.

Synthetic scores (seeded normal noise around a per-method mean) in the layout of
:func:`analysis.select.select_scores` (one row per trial); no MLflow, no training: the claims only read
the selected scores, so this is the claims' own cost at the end of a sweep.

    .venv/bin/python benchmarks/bench_claims.py                 # default bootstrap (1000 POI replications)
    .venv/bin/python benchmarks/bench_claims.py --poi-reps 300 --repeat 3

Prints the median CPU time (this process; less sensitive to other load) and wall time, and how many
claim rows got a computed probability of improvement. Results: docs/analysis.md ("The paper's claims").

Calibration (``--calibrate``): for each design (cells × seeds per side), ``--replicates`` simulated
stores of LaMo and DT on one sample ratio (each cell its own mean, normal noise σ = 1, scores in
normalised points), run through ``check_claims`` with the ``lamo_vs_dt`` claim (one row per store), once
with both sides from one distribution (null: every verdict other than "inconclusive" / "not enough runs"
is false) and once with LaMo shifted by ``--effect`` σ (power: the share of "supported"). Prints the
rate of the current rule and of the previous one (verdict when the bootstrap CI excludes 0.5, ≥ 5 runs
per side), with a 95 % Clopper-Pearson interval for each rate:

    .venv/bin/python benchmarks/bench_claims.py --calibrate --replicates 200 --poi-reps 500
    .venv/bin/python benchmarks/bench_claims.py --calibrate --current-only --replicates 1000 --effect 1.5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from analysis import claims as C
from analysis.stats import DEFAULT_BOOTSTRAP, Bootstrap
from trainers.config import TrialConfig, flatten

TASKS = ("hopper-medium", "halfcheetah-medium", "walker2d-medium")
RATIOS = (0.005, 0.01, 0.1, 1.0)
SEEDS = (0, 1, 2)
MEANS = {"lamo": 55, "dt": 45, "wiki-rl": 48, "cql": 50, "iql": 52, "td3bc": 53, "bc": 42,
         "lamo-linear": 52, "lamo-full": 50, "lamo-no-lm-loss": 53}
OVERRIDES = {"dt": {"model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full"},
                    "language": {"weight": 0.0}},
             "lamo-linear": {"model": {"embedding": "linear"}}, "lamo-full": {"model": {"finetune": "full"}},
             "lamo-no-lm-loss": {"language": {"weight": 0.0}}}
BASELINES = ("wiki-rl", "cql", "iql", "td3bc", "bc")


def selected_frame(seed: int = 0) -> pd.DataFrame:
    """One row per trial with the columns the claims read (normalised scores 0–100)."""
    rng = np.random.default_rng(seed)
    rows = []
    for variant, mean in MEANS.items():
        cfg = TrialConfig(task="hopper-medium", variant=variant, **OVERRIDES.get(variant, {}))
        params = {f"param.{k}": str(v) for k, v in flatten(cfg.model_dump(mode="json")).items()}
        if variant in BASELINES:
            params["param.learner"] = variant
        for task in TASKS:
            for ratio in RATIOS:
                for s in SEEDS:
                    rows.append({**params, "task": task, "sample_ratio": ratio, "seed": s, "variant": variant,
                                 "normalised_score": float(rng.normal(mean, 8.0)), "embedding": cfg.model.embedding,
                                 "finetune": cfg.model.finetune, "language_weight": cfg.language.weight,
                                 "init": cfg.model.init, "lm": str(cfg.model.lm)})
    return pd.DataFrame(rows)


#: The designs of issue #18 (cells, seeds per side per cell).
DESIGNS = ((3, 2), (5, 2), (2, 5), (3, 3), (1, 5))
LAMO_VS_DT = next(c for c in C.CLAIMS if c.key == "lamo_vs_dt")


def simulated_frame(cells: int, seeds: int, effect: float, rng: np.random.Generator) -> pd.DataFrame:
    """LaMo and DT trials of one design: ``cells`` dense-reward tasks at one sample ratio × ``seeds`` each;
    per cell a random mean (normal, sd 10), per run normal noise (sd 1); LaMo shifted by ``effect``.
    All tasks are in the dense-reward group, so the claim has one scope."""
    tasks = ["hopper-medium", "halfcheetah-medium", "walker2d-medium", "hopper-expert", "walker2d-expert"]  # registered, dense
    if cells > len(tasks):
        raise ValueError(f"at most {len(tasks)} cells, got {cells}")
    rows = []
    for task in tasks[:cells]:
        mu = rng.normal(50.0, 10.0)
        for variant, shift in (("lamo", effect), ("dt", 0.0)):
            for s in range(seeds):
                rows.append({"task": task, "sample_ratio": 0.01, "seed": s, "variant": variant,
                             "normalised_score": float(mu + shift + rng.normal())})
    return pd.DataFrame(rows)


def _clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def calibrate(replicates: int, poi_reps: int, effect: float, seed: int = 0, previous: bool = True,
              designs: tuple[tuple[int, int], ...] = DESIGNS, kinds: tuple[str, ...] = ("null", "power")) -> pd.DataFrame:
    """Per design: false-verdict rate under the null and power at ``effect``, of the current rule and
    (``previous``) of the previous one, which needs the bootstrap CI (``poi_reps`` replications; the
    current verdict does not read the CI, so without ``previous`` it runs with 1 replication)."""
    boot = Bootstrap(poi_reps=poi_reps if previous else 1, seed=0)
    recs = []
    for cells, seeds in designs:
        for kind, shift in (("null", 0.0), ("power", effect)):
            if kind not in kinds:
                continue
            rng = np.random.default_rng([seed, cells, seeds, int(shift * 1000)])
            new = old = 0
            for _ in range(replicates):
                frame = C.check_claims(simulated_frame(cells, seeds, shift, rng), boot, claims=(LAMO_VS_DT,))
                assert len(frame) == 1, frame["scope"].tolist()  # one scope: every cell in the dense group
                r = frame.iloc[0]
                hit = r["verdict"] in (C.SUPPORTED, C.CONTRADICTED) if kind == "null" else r["verdict"] == C.SUPPORTED
                new += hit
                enough = min(r["runs_a"], r["runs_b"]) >= 5 and not np.isnan(r["ci_low"])
                old_verdict = (C.SUPPORTED if enough and r["ci_low"] > 0.5 else
                               C.CONTRADICTED if enough and r["ci_high"] < 0.5 else None)
                old += (old_verdict is not None) if kind == "null" else (old_verdict == C.SUPPORTED)
            for rule, k in (("current", new), ("previous (CI excludes 0.5)", old))[:2 if previous else 1]:
                lo, hi = _clopper_pearson(k, replicates)
                recs.append({"design": f"{cells} x {seeds}", "kind": kind, "rule": rule, "rate": k / replicates,
                             "ci95": f"[{lo:.3f}, {hi:.3f}]", "n": replicates})
            print(*recs[-(2 if previous else 1):], flush=True)
    return pd.DataFrame(recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poi-reps", type=int, default=DEFAULT_BOOTSTRAP.poi_reps)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--calibrate", action="store_true", help="false-verdict rate and power per design")
    ap.add_argument("--replicates", type=int, default=200, help="simulated stores per design (--calibrate)")
    ap.add_argument("--effect", type=float, default=1.0, help="true shift of LaMo in noise sd (--calibrate)")
    ap.add_argument("--current-only", action="store_true", help="--calibrate without the previous rule (fast)")
    ap.add_argument("--designs", default=",".join(f"{c}x{s}" for c, s in DESIGNS),
                    help="--calibrate designs, cells x seeds, comma-separated")
    ap.add_argument("--kinds", default="null,power", help="--calibrate: null, power or both")
    args = ap.parse_args()
    if args.calibrate:
        c0 = time.process_time()
        designs = tuple(tuple(int(x) for x in d.split("x")) for d in args.designs.split(","))
        out = calibrate(args.replicates, args.poi_reps, args.effect, previous=not args.current_only,
                        designs=designs, kinds=tuple(args.kinds.split(",")))
        print(out.pivot_table(index="design", columns=["kind", "rule"], values="rate", sort=False).to_string())
        reps = 1 if args.current_only else args.poi_reps
        print(f"replicates {args.replicates}, poi_reps {reps}, effect {args.effect} sd "
              f"(P(A > B) = {__import__('scipy.stats').stats.norm.cdf(args.effect / 2 ** 0.5):.2f}); "
              f"CPU {time.process_time() - c0:.0f} s")
        return
    sel = selected_frame()
    boot = Bootstrap(poi_reps=args.poi_reps)
    cpu, wall = [], []
    for _ in range(args.repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        frame = C.check_claims(sel, boot)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    computed = int(frame["estimate"].notna().sum())
    print(f"{len(sel)} trials, {len(frame)} claim rows, {computed} with a probability of improvement; "
          f"poi_reps={boot.poi_reps}: CPU {statistics.median(cpu):.1f} s, wall {statistics.median(wall):.1f} s "
          f"(median of {args.repeat})")
    print(frame[["claim", "scope", "side_b", "estimate", "ci_low", "ci_high", "runs_a", "runs_b", "verdict"]]
          .to_string(index=False))


if __name__ == "__main__":
    main()
