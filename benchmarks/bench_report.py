"""Time ``analysis.report.write_report`` (what ``lamo-sweep`` runs at the end of a sweep) on a store the
size of ``sweeps/quickstart.yaml``: reacher2d-medium, sample ratios 0.1 and 1, seeds 0 and 1, variants
lamo and dt (8 finished trials, 2 evaluations × 2 RTG targets each). Synthetic scores; MLflow only.

    .venv/bin/python benchmarks/bench_report.py                      # the default bootstrap
    .venv/bin/python benchmarks/bench_report.py --reps 500 --poi-reps 300 --repeat 5

Prints the median wall and CPU time (this process; the CPU time is less sensitive to other load on
the machine) of the full report, and of the report without the rliable part (the bootstrap's share
is the difference). Results: docs/analysis.md ("Bootstrap settings").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis.report import PARTS, write_report
from analysis.stats import DEFAULT_BOOTSTRAP, Bootstrap
from trainers import contract

EXPERIMENT = "quickstart"


def quickstart_store(root: Path) -> str:
    """A sqlite store with the quickstart grid's 8 finished trials (normalised scores 0–100)."""
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(EXPERIMENT)
    parent = client.create_run(exp, tags={contract.ROLE: contract.ROLE_SWEEP}).info.run_id
    for ratio in (0.1, 1.0):
        for seed in (0, 1):
            for variant in ("lamo", "dt"):
                tags = {contract.ROLE: contract.ROLE_TRIAL, contract.PARENT_RUN: parent,
                        **contract.axis_tags("reacher2d-medium", ratio, seed, variant)}
                rid = client.create_run(exp, tags=tags).info.run_id
                metrics = []
                for step in (500, 1000):
                    for i, target in enumerate((76.0, 40.0)):
                        score = 10 + 5 * seed + 3 * i + step / 100 + (7 if variant == "lamo" else 0) + 10 * ratio
                        metrics += [Metric(contract.eval_key(target, "normalised_score"), score, 0, step),
                                    Metric(contract.eval_key(target, "return_mean"), score, 0, step)]
                params = [Param("model.embedding", "mlp" if variant == "lamo" else "linear")]
                client.log_batch(rid, metrics=metrics, params=params)
                client.set_terminated(rid)
    return uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=DEFAULT_BOOTSTRAP.reps)
    ap.add_argument("--poi-reps", type=int, default=DEFAULT_BOOTSTRAP.poi_reps)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    boot = Bootstrap(reps=args.reps, poi_reps=args.poi_reps)
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    uri = quickstart_store(root)
    write_report(uri, EXPERIMENT, root / "warmup", bootstrap=boot)  # imports, font cache
    for label, parts in (("full report", PARTS), ("without rliable", tuple(p for p in PARTS if p != "rliable"))):
        wall, cpu = [], []
        for k in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            write_report(uri, EXPERIMENT, root / f"{label}-{k}".replace(" ", "_"), parts=parts, bootstrap=boot)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(f"{label}: wall median {statistics.median(wall):.2f} s ({', '.join(f'{t:.2f}' for t in wall)}), "
              f"CPU median {statistics.median(cpu):.2f} s over {args.repeat}; reps={boot.reps} poi_reps={boot.poi_reps}",
              flush=True)


if __name__ == "__main__":
    main()
