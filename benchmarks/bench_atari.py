"""Atari benchmark: train steps/s, evaluation episodes/s and memory per trial of the Atari DT and LaMo
(results: docs/benchmarks.md, "Atari").

Per variant (each in a fresh process, so its peak memory is its own):

* ``dt``: preset ``dt-atari`` (3 layers x 128, 1 head);
* ``lamo``: preset ``lamo-atari`` on ``--lm`` (default ``lamo-wiki-tiny``, made by ``prepare`` if absent;
  ``gpt2-shape`` = GPT-2 small's architecture, 12 x 768, randomly initialised: the paper's compute
  without its weights).

Measures the learner's own ``train_step`` (sampling with on-the-fly frame stacking, forward, cross-entropy,
backward, clip, AdamW, token schedule) at ``--batch`` x ``--context``; one evaluation call
(``--episodes`` per RTG target, Breakout's 2 targets, at most ``--eval-steps`` steps each); the process's
peak resident memory (``ru_maxrss``) and, on CUDA, the peak allocated GPU memory. The dataset is the
collected ``breakout-medium`` one (collected first if absent, not timed).

Usage: ``.venv/bin/python benchmarks/bench_atari.py [--data-dir DIR] [--batch 16] [--context 30]
[--steps 10] [--episodes 2] [--eval-steps 200] [--threads 2] [--device cpu] [--lm lamo-wiki-tiny]``.
Prints one JSON line per variant and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one(args) -> dict:
    import torch

    from trainers.learner import SequenceLearner, build_parts
    from trainers.checkpoint import seed_everything
    from trainers.config import TrialConfig
    from trainers.inputs import prepare_inputs
    from trainers.presets import get_preset

    torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir)
    d = get_preset("dt-atari" if args.variant == "dt" else "lamo-atari")
    d.update(task="breakout-medium", variant=args.variant, context_length=args.context, device=args.device)
    d.setdefault("train", {})["batch_size"] = args.batch
    if args.variant == "lamo":
        if args.lm == "gpt2-shape":
            from transformers import GPT2Config

            lm_dir = data_dir / "models" / "gpt2-shape"
            lm_dir.mkdir(parents=True, exist_ok=True)
            GPT2Config().save_pretrained(lm_dir)  # GPT-2 small's shape; weights random (init: random)
            d["model"] = {**d.get("model", {}), "lm": str(lm_dir), "init": "random"}
        else:
            d["model"] = {**d.get("model", {}), "lm": args.lm}
    cfg = TrialConfig(**d)
    prepare_inputs([cfg], data_dir, progress=False, log=lambda *a: None)
    seed_everything(0)
    learner = SequenceLearner(cfg, build_parts(cfg, data_dir, torch.device(args.device)))
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    for _ in range(2):
        learner.train_step()
    sync()
    t = time.perf_counter()
    for _ in range(args.steps):
        learner.train_step()
    sync()
    train_s = time.perf_counter() - t
    from trainers.domains.atari.learner import evaluate_atari

    t = time.perf_counter()
    m = evaluate_atari(learner.parts.model, cfg.task_spec, cfg.targets, args.episodes, cfg.K, cfg.scale, seed=0,
                       max_episode_steps=args.eval_steps, device=args.device)
    eval_s = time.perf_counter() - t
    frames = learner.data.dataset.frames
    out = {"variant": args.variant, "lm": args.lm if args.variant == "lamo" else None, "device": args.device,
           "threads": args.threads, "batch": args.batch, "context": args.context,
           "train_steps_per_s": args.steps / train_s,
           "eval_episodes": 2 * args.episodes, "eval_steps_max": args.eval_steps,
           "eval_env_steps": float(sum(m[k] for k in m if k.endswith("length_mean")) * args.episodes),
           "eval_s": eval_s, "eval_episodes_per_s": 2 * args.episodes / eval_s,
           "params_trainable": sum(p.numel() for p in learner.parts.params),
           "dataset_frames_mb": frames.nbytes / 2**20,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="lamo_runs/data")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=30)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--eval-steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--lm", default="lamo-wiki-tiny")
    p.add_argument("--variant", choices=["dt", "lamo"], help="run one variant in this process")
    args = p.parse_args()
    if args.variant:
        print(json.dumps(one(args)), flush=True)
        return
    rows = []
    for v in ("dt", "lamo"):
        r = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--variant", v], capture_output=True, text=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode or not line:
            print(r.stdout[-2000:], r.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"variant {v} failed (rc {r.returncode})")
        rows.append(json.loads(line[-1]))
        print(line[-1], flush=True)
    print("\n| variant | LM | batch x K | train steps/s | eval episodes/s (env steps) | trainable params | peak RSS MB | frames MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['lm'] or '-'} | {r['batch']} x {r['context']} | {r['train_steps_per_s']:.3f} | "
              f"{r['eval_episodes_per_s']:.3f} ({r['eval_env_steps']:.0f}) | {r['params_trainable']:,} | "
              f"{r['peak_rss_mb']:.0f} | {r['dataset_frames_mb']:.0f} |")


if __name__ == "__main__":
    main()
