"""Cost of Franka Kitchen evaluation (results: docs/benchmarks.md, "Kitchen").

Measures on this machine:

1. raw env steps/s of ``lamo/FrankaKitchen-complete-v0`` (one env, zero actions: MuJoCo + the D4RL
   observation wrapper, no policy);
2. evaluation env steps/s and episodes/s of :func:`trainers.evaluate.evaluate`, vectorised (all
   episodes of the 5 RTG targets in one batch) vs one episode at a time on exactly the same episodes
   (same model and env seeds), with the ``kitchen_cpu`` sweep's DT variant trained ``--steps`` steps on
   the collected kitchen-complete dataset (``benchmarks/bench_trainer.py``'s ``bench_train`` /
   ``bench_eval``). An untrained-ish model rarely finishes, so episodes run the env's full 280 steps.

Usage: ``.venv/bin/python benchmarks/bench_kitchen.py --data-dir DIR [--episodes 4] [--steps 20]``; the
collected ``kitchen-complete`` dataset is collected into ``DIR`` first if it is missing (not timed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_trainer import bench_eval, bench_train  # noqa: E402

from orchestrator.schema import Sweep  # noqa: E402
from trainers.data.collect import collect_dataset  # noqa: E402
from trainers.domains.kitchen import KITCHEN_ID
from trainers.envs import make_env  # noqa: E402
from trainers.paths import dataset_path  # noqa: E402


def raw_env_steps_per_s(steps: int = 1000) -> float:
    """Env steps/s of one kitchen env with zero actions (resets at episode ends are included)."""
    env = make_env(KITCHEN_ID)
    env.reset(seed=0)
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(np.zeros(9))
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--episodes", type=int, default=4, help="evaluation episodes per RTG target")
    ap.add_argument("--steps", type=int, default=20, help="DT training steps before the evaluation")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = dataset_path("kitchen-complete", args.data_dir, "collected")
    if not path.exists():
        collect_dataset("kitchen-complete", path, episodes=4, seed=0, progress=True)
    cfg = next(t for t in Sweep.load(REPO / "sweeps" / "kitchen_cpu.yaml").trials
               if t.variant == "dt" and t.task == "kitchen-complete")
    out = {"device": device, "threads": args.threads, "raw_env_steps_per_s": raw_env_steps_per_s()}
    tr = bench_train(cfg, args.data_dir, args.steps, device)
    out.update(bench_eval(cfg, tr.pop("model"), tr.pop("data"), args.episodes, device))
    out["train_steps_per_s"] = tr["steps_per_s"]
    out["one_at_a_time_env_steps_per_s"] = out["env_steps_one_at_a_time"] * out["sequential_episodes_per_s"] / out["episodes"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
