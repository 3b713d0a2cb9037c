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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poi-reps", type=int, default=DEFAULT_BOOTSTRAP.poi_reps)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
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
