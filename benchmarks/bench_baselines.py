"""Per-method speed of a sweep's trials: train steps/s and evaluation episodes/s for every variant of a
sweep file (default ``sweeps/mujoco_cpu.yaml``: LaMo, DT, Wiki-RL, CQL, IQL, TD3+BC, BC on collected
Hopper-medium), measured on the learners the trial loop builds (:func:`trainers.methods.make_learner`),
and the sweep's projected wall time from those numbers (results: docs/benchmarks.md).

Per variant, on its first trial of the sweep (sample ratio and seed as listed):

* **train**: ``--warmup`` untimed steps, then ``--steps`` timed :meth:`Learner.train_step` calls;
* both also in CPU time of this process (``time.process_time``): with ``--threads 1`` that is what the
  wall time would be on an idle core, so the numbers stay comparable on a shared, loaded machine;
* **eval**: one :meth:`Learner.evaluate` with ``--episodes`` episodes (per RTG target for the sequence
  models, whose evaluation runs ``len(targets) x episodes`` episodes in parallel), timed as a whole:
  episodes/s = episodes run / seconds; episodes end at a fall or at the task's 1,000-step horizon.

Projection (``--project``): per trial, ``train.steps`` / (train steps/s) + number of evaluations x
(evaluation seconds scaled to the sweep's ``eval.episodes``), summed over trials and divided by the
number of trials Ray runs side by side (CPUs / ``resources.cpu``, ``--slots``); Ray start-up and
per-trial process start (~10-30 s each on 2 cores) come on top.

Usage: ``.venv/bin/python benchmarks/bench_baselines.py [--sweep sweeps/mujoco_cpu.yaml] [--steps 20]
[--episodes 1] [--threads 1] [--slots 2] [--variants cql bc] [--set data.source=collected]``. Inputs must be prepared (``lamo-trial prepare --sweep``).
Prints one JSON line per variant and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.schema import Sweep, parse_overrides  # noqa: E402
from trainers.checkpoint import seed_everything  # noqa: E402
from trainers.methods import make_learner  # noqa: E402


def bench_variant(cfg, data_dir: Path, steps: int, warmup: int, episodes: int) -> dict:
    """Train steps/s and evaluation episodes/s of one trial config (module docstring)."""
    seed_everything(cfg.seed)
    t = time.perf_counter()
    learner = make_learner(cfg, data_dir)
    build_s = time.perf_counter() - t
    for _ in range(warmup):
        learner.train_step()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        learner.train_step()
    train_s, train_cpu = time.perf_counter() - t, time.process_time() - c
    eval_cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"episodes": episodes})})
    learner.cfg = eval_cfg
    t, c = time.perf_counter(), time.process_time()
    learner.evaluate()
    eval_s, eval_cpu = time.perf_counter() - t, time.process_time() - c
    n_eval = episodes * (1 if cfg.baseline.algo != "none" else len(cfg.targets))
    return {"variant": cfg.variant, "batch_size": cfg.train.batch_size, "build_s": round(build_s, 2),
            "train_steps_per_s": steps / train_s, "train_steps_per_cpu_s": steps / train_cpu,
            "eval_episodes": n_eval, "eval_s": eval_s, "eval_cpu_s": eval_cpu,
            "eval_episodes_per_s": n_eval / eval_s, "eval_episodes_per_cpu_s": n_eval / eval_cpu}


def project(sweep: Sweep, results: dict[str, dict], episodes: int, slots: int, cpu: bool = False) -> float:
    """Projected sweep seconds (module docstring), without Ray and process start-up; ``cpu``: from the
    CPU-time rates (what an idle machine's wall time would be with one thread per trial)."""
    total = 0.0
    rate, ev = ("train_steps_per_cpu_s", "eval_cpu_s") if cpu else ("train_steps_per_s", "eval_s")
    for t in sweep.trials:
        r = results[t.variant]
        n_evals = math.ceil(t.train.steps / t.eval.every_steps)
        total += t.train.steps / r[rate] + n_evals * r[ev] * t.eval.episodes / episodes
    return total / slots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "mujoco_cpu.yaml")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    ap.add_argument("--episodes", type=int, default=1, help="evaluation episodes (per RTG target)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a trial uses resources.cpu)")
    ap.add_argument("--slots", type=int, default=2, help="trials Ray runs side by side")
    ap.add_argument("--variants", nargs="*", default=None, help="only these variants")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a base field of the sweep, as lamo-sweep --set (repeatable)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sweep = Sweep.load(a.sweep, parse_overrides(a.overrides) if a.overrides else None)
    first: dict[str, object] = {}
    for t in sweep.trials:
        first.setdefault(t.variant, t)
    results = {}
    for name, cfg in first.items():
        if a.variants and name not in a.variants:
            continue
        cfg = cfg.model_copy(update={"device": "cpu"})
        results[name] = bench_variant(cfg, sweep.data_dir, a.steps, a.warmup, a.episodes)
        print(json.dumps(results[name]), flush=True)
    print("\n| variant | batch | train steps/s (wall) | train steps per CPU-s | eval episodes/s (wall) | "
          "eval episodes per CPU-s | eval episodes timed |")
    print("|---|---|---|---|---|---|---|")
    for r in results.values():
        print(f"| {r['variant']} | {r['batch_size']} | {r['train_steps_per_s']:.2f} | {r['train_steps_per_cpu_s']:.2f} | "
              f"{r['eval_episodes_per_s']:.2f} | {r['eval_episodes_per_cpu_s']:.2f} | {r['eval_episodes']} |")
    if set(results) == set(first):
        for cpu in (False, True):
            sec = project(sweep, results, a.episodes, a.slots, cpu)
            print(f"projected {a.sweep.name} ({'CPU-time rates' if cpu else 'wall rates'}): {len(sweep.trials)} "
                  f"trials, {sec / 60:.1f} min on {a.slots} slots (+ Ray and trial start-up)")


if __name__ == "__main__":
    main()
