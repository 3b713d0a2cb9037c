"""Speed benchmarks of the trainer, evaluation and sweep start-up (results: docs/benchmarks.md).

Measures, on whatever machine runs it (CPU here, GPU where available):

1. trainer steps/s of the quickstart ``dt`` and ``lamo`` variants (Reacher2d, batch 64, K 5), and of
   ``sweeps/hopper_offline.yaml``'s (Hopper-medium, K 20) when its collected dataset is present;
2. evaluation episodes/s: vectorised (all episodes of all RTG targets in one batch) vs one episode at
   a time, replaying exactly the same episodes (same model, same environment seeds). Reacher2d with
   the quickstart's 2 targets x ``--episodes``; Hopper with LaMo's 4 targets x ``--hopper-episodes``
   (20 in ``low_data.yaml``), the shape of the paper's evaluation;
3. time from ``lamo-sweep`` start to the first training step (a one-trial sweep, inputs cached);
4. with ``--paper-lm gpt2`` (GPU machines with the hub): the paper's LaMo setting on Hopper, train
   steps/s and the projected time of a 100k-step run with evaluation (:func:`bench_paper`);
5. with ``--smollm2-blocks 2,4,8``: seconds per training step of ``sweeps/pretrained_lm.yaml``'s LaMo trial
   (Reacher2d 10 %, batch 64, K 5, language loss on 2 x 128 tokens) on the first k blocks of SmolLM2-135M,
   for each k and each of ``--smollm2-precisions`` (:func:`bench_smollm2_blocks`); ``--only-smollm2``
   skips 1-3 (and the quickstart's LM pre-training).

``--precision fp32|bf16|fp16`` sets ``train.precision`` (:mod:`trainers.precision`) of every trainer
measured in 1-4 (fp16: CUDA only); evaluation always runs fp32.

Usage: ``.venv/bin/python benchmarks/bench_trainer.py [--storage DIR] [--steps N] [--threads T] [--precision P]``.
Inputs (dataset, ``lamo-wiki-tiny``) are prepared in ``<storage>/data`` first if missing (not timed).
Prints a JSON summary and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.schema import Sweep  # noqa: E402
from trainers.evaluate import evaluate  # noqa: E402
from trainers.inputs import prepare_inputs  # noqa: E402
from trainers.paths import dataset_path  # noqa: E402
from trainers.learner import SequenceLearner, build_parts  # noqa: E402


def bench_train(cfg, data_dir: Path, steps: int, device: str) -> dict:
    """Steps/s of the trainer's own step (:meth:`trainers.learner.SequenceLearner.train_step`: sampling,
    forward, language loss, backward, clip, AdamW, schedule), on the parts the trainer builds
    (:func:`trainers.learner.build_parts`)."""
    learner = SequenceLearner(cfg, build_parts(cfg, data_dir, torch.device(device)))
    for _ in range(5):
        learner.train_step()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        learner.train_step()
    if device == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t
    return {"steps_per_s": steps / sec, "ms_per_step": 1000 * sec / steps, "model": learner.parts.model,
            "data": learner.data}


def with_precision(cfg, precision: str):
    """``cfg`` with ``train.precision`` set (validated again, so fp16 on a CPU-only config is refused)."""
    return type(cfg).model_validate({**cfg.model_dump(), "train": {**cfg.train.model_dump(), "precision": precision}})


def bench_smollm2_blocks(blocks: list[int], precisions: list[str], data_dir: Path, steps: int,
                         device: str) -> list[dict]:
    """Seconds per training step of ``sweeps/pretrained_lm.yaml``'s ``lamo-smollm2`` trial on Reacher2d at
    10 % (its recipe: LoRA on q/k/v, MLP embeddings, language loss 0.1 on 2 x 128 tokens) with
    ``model.n_blocks`` = each of ``blocks`` and ``train.precision`` = each of ``precisions``; 5 untimed
    warm-up steps, then ``steps`` timed ones (:func:`bench_train`). Inputs (the Reacher2d dataset, the
    unpacked SmolLM2, the tokenised corpus) are prepared in ``data_dir`` first, untimed."""
    trials = Sweep.load(REPO / "sweeps" / "pretrained_lm.yaml").trials
    base = next(t for t in trials if t.variant == "lamo-smollm2" and t.task == "reacher2d-medium"
                and t.sample_ratio == 0.1)
    prepare_inputs([base], data_dir, progress=False)
    rows = []
    for k in blocks:
        for precision in precisions:
            cfg = with_precision(base.model_copy(update={"model": base.model.model_copy(update={"n_blocks": k})}),
                                 precision)
            tr = bench_train(cfg, data_dir, steps, device)
            rows.append({"n_blocks": k, "precision": precision, "s_per_step": tr["ms_per_step"] / 1000,
                         "steps": steps, "trainable_params": sum(p.numel() for p in tr["model"].parameters()
                                                                 if p.requires_grad)})
            print(f"  SmolLM2 first {k} blocks, {precision}: {rows[-1]['s_per_step']:.2f} s/step", file=sys.stderr)
    return rows


def _env_steps(metrics: dict, episodes: int) -> float:
    """Environment steps of one ``evaluate`` call: mean episode length x episodes, over its targets."""
    return sum(v * episodes for k, v in metrics.items() if k.endswith("/length_mean"))


def bench_eval(cfg, model, data, episodes: int, device: str) -> dict:
    """Episodes/s of vectorised evaluation vs a one-episode-at-a-time loop (same seeds)."""
    kw = dict(state_mean=data.state_mean, state_std=data.state_std, context_length=cfg.K,
              rtg_scale=cfg.scale, device=device)
    t = time.perf_counter()
    vec = evaluate(model, cfg.task_spec, cfg.targets, episodes, seed=0, **kw)
    vec_s = time.perf_counter() - t
    n = len(cfg.targets) * episodes
    env_steps = _env_steps(vec, episodes)
    t = time.perf_counter()
    seq_steps = 0.0
    for target in cfg.targets:
        for i in range(episodes):
            one = evaluate(model, cfg.task_spec, [target], 1, seed=0, first_episode=i, **kw)
            seq_steps += _env_steps(one, 1)
    seq_s = time.perf_counter() - t
    return {"vectorised_episodes_per_s": n / vec_s, "sequential_episodes_per_s": n / seq_s,
            "speedup": seq_s / vec_s, "episodes": n, "env_steps": env_steps, "env_steps_one_at_a_time": seq_steps,
            "vectorised_env_steps_per_s": env_steps / vec_s, "best_score": vec["eval/best_normalised_score"]}


def bench_paper(hopper_trials, lm: str, data_dir: Path, steps: int, episodes: int, device: str) -> dict:
    """LaMo as in the paper (docs/lamo_recipe.md §3) on Hopper with ``lm`` (e.g. ``gpt2``): train steps/s, and the
    projected wall time of a 100k-step run evaluated every 2,500 steps (40 evaluations of 4 targets x
    ``episodes``), counting every episode at the full 1,000 steps (an upper bound) at the measured
    vectorised env-steps/s. The official code takes ~10.4 h for this (its committed wandb summaries, docs/benchmarks.md); goal
    <= 1 h on one H100."""
    base = next(t for t in hopper_trials if t.variant == "lamo" and t.sample_ratio == 0.1)
    cfg = base.model_copy(update={"model": base.model.model_copy(update={"lm": lm}),
                                  "language": base.language.model_copy(update={"block_size": 1024})})
    tr = bench_train(cfg, data_dir, steps, device)
    model, data = tr.pop("model"), tr.pop("data")
    kw = dict(state_mean=data.state_mean, state_std=data.state_std, context_length=cfg.K,
              rtg_scale=cfg.scale, device=device)
    t = time.perf_counter()
    ev = evaluate(model, cfg.task_spec, cfg.targets, episodes, seed=0, **kw)
    sec = time.perf_counter() - t
    env_steps = _env_steps(ev, episodes)
    n = len(cfg.targets) * episodes
    eval_full_s = n * cfg.task_spec.max_ep_len / (env_steps / sec)
    train_h = 100_000 / tr["steps_per_s"] / 3600
    eval_h = 40 * eval_full_s / 3600
    return {**tr, "lm": lm, "device": device, "episodes": n, "eval_s": sec, "eval_env_steps": env_steps,
            "vectorised_env_steps_per_s": env_steps / sec, "projected_train_h": train_h,
            "projected_eval_h": eval_h, "projected_hours": train_h + eval_h}


def bench_startup(storage: Path) -> dict:
    """Seconds from launching ``lamo-sweep`` to the first training step's metric in MLflow."""
    from mlflow.tracking import MlflowClient

    name = f"bench-startup-{int(time.time())}"
    sweep = storage / f"{name}.yaml"
    sweep.write_text(textwrap.dedent(f"""
        name: {name}
        storage: {storage}
        resources: {{cpu: 1}}
        base: {{train: {{steps: 3, log_every: 1}}, eval: {{every_steps: 1000, episodes: 1, max_episode_steps: 5}}}}
        variants: {{dt: {{model: {{lm: null}}}}}}
        grid: {{task: [reacher2d-medium], sample_ratio: [1.0], seed: [0]}}
    """))
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep), "--no-analysis"],
                       capture_output=True, text=True, timeout=600)
    wall = time.time() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    c = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    exp = c.get_experiment_by_name(name)
    (run,) = c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'")
    first = min(m.timestamp for m in c.get_metric_history(run.info.run_id, "train/action_loss")) / 1000
    return {"seconds_to_first_step": first - t0, "one_trial_sweep_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", type=Path, default=REPO / "lamo_runs")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--episodes", type=int, default=10, help="evaluation episodes per RTG target")
    ap.add_argument("--hopper-episodes", type=int, default=20, help="Hopper evaluation episodes per RTG target")
    ap.add_argument("--hopper-steps", type=int, default=200,
                    help="training steps before the Hopper evaluation (longer episodes than an untrained model)")
    ap.add_argument("--paper-lm", default=None,
                    help="also time the paper's LaMo setting on Hopper with this LM (e.g. gpt2; language blocks of "
                         "1,024 tokens) and project a 100k-step run with evaluation every 2,500 steps (GPU check)")
    ap.add_argument("--paper-steps", type=int, default=100, help="timed training steps for --paper-lm")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a sweep trial uses its CPU count)")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="train.precision of the trainers timed in 1-4 (fp16: CUDA only)")
    ap.add_argument("--smollm2-blocks", default=None,
                    help="comma-separated k: also time pretrained_lm.yaml's LaMo trial on SmolLM2's first k blocks")
    ap.add_argument("--smollm2-precisions", default="fp32,bf16", help="precisions for --smollm2-blocks")
    ap.add_argument("--smollm2-steps", type=int, default=10, help="timed steps per (k, precision)")
    ap.add_argument("--only-smollm2", action="store_true", help="time only --smollm2-blocks")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    storage = args.storage.resolve()
    data_dir = storage / "data"
    out: dict = {"device": device, "threads": args.threads, "torch": torch.__version__, "precision": args.precision}
    if args.smollm2_blocks:
        out["smollm2_blocks"] = bench_smollm2_blocks(
            [int(k) for k in args.smollm2_blocks.split(",")], args.smollm2_precisions.split(","), data_dir,
            args.smollm2_steps, device)
    if args.only_smollm2:
        _print_smollm2(out)
        return
    sweep = Sweep.load(REPO / "sweeps" / "quickstart.yaml")
    prepare_inputs(sweep.trials, data_dir, progress=False)
    for variant in ("dt", "lamo"):
        cfg = with_precision(next(t for t in sweep.trials if t.variant == variant and t.sample_ratio == 1.0),
                             args.precision)
        tr = bench_train(cfg, data_dir, args.steps, device)
        ev = bench_eval(cfg, tr.pop("model"), tr.pop("data"), args.episodes, device)
        out[variant] = {**tr, **ev}
    hopper = Sweep.load(REPO / "sweeps" / "hopper_offline.yaml").trials
    if dataset_path("hopper-medium", data_dir, "collected").exists():
        for variant in ("dt", "lamo"):
            cfg = with_precision(next(t for t in hopper if t.variant == variant and t.sample_ratio == 0.1),
                                 args.precision)
            tr = bench_train(cfg, data_dir, args.hopper_steps, device)
            ev = bench_eval(cfg, tr.pop("model"), tr.pop("data"), args.hopper_episodes, device)
            out[f"hopper-{variant}"] = {**tr, **ev}
    else:
        print(f"(no collected hopper-medium dataset in {data_dir}: Hopper rows skipped; "
              f"`lamo-sweep sweeps/hopper_offline.yaml --prepare-only` collects it)", file=sys.stderr)
    if args.paper_lm:
        hopper = [with_precision(t, args.precision) for t in hopper]
        out["paper"] = bench_paper(hopper, args.paper_lm, data_dir, args.paper_steps, args.hopper_episodes, device)
    if not args.skip_startup:
        out["startup"] = bench_startup(storage)
    print(json.dumps(out, indent=1))
    print("\n| task | variant | train steps/s | eval episodes | env steps | eval episodes/s (vectorised) "
          "| eval episodes/s (one at a time) | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for v in ("dt", "lamo", "hopper-dt", "hopper-lamo"):
        if v in out:
            o = out[v]
            task = "hopper-medium" if v.startswith("hopper") else "reacher2d-medium"
            print(f"| {task} | {v.removeprefix('hopper-')} | {o['steps_per_s']:.1f} | {o['episodes']} | "
                  f"{o['env_steps']:.0f} | {o['vectorised_episodes_per_s']:.1f} | "
                  f"{o['sequential_episodes_per_s']:.1f} | {o['speedup']:.1f}x |")
    if "paper" in out:
        p = out["paper"]
        print(f"\npaper setting ({p['lm']}, Hopper, K 20, batch 64, LM blocks 1,024, {p['device']}): "
              f"{p['steps_per_s']:.2f} train steps/s; projected 100k steps + 40 evaluations of "
              f"{p['episodes']} full-length episodes: {p['projected_hours']:.2f} h "
              f"(training {p['projected_train_h']:.2f} h + evaluation {p['projected_eval_h']:.2f} h)")
    if "startup" in out:
        print(f"\nlamo-sweep start -> first training step: {out['startup']['seconds_to_first_step']:.1f} s")
    _print_smollm2(out, with_json=False)


def _print_smollm2(out: dict, with_json: bool = True) -> None:
    if with_json:
        print(json.dumps(out, indent=1))
    if "smollm2_blocks" in out:
        print(f"\n| SmolLM2 blocks k | precision | s/step ({out['device']}, {out['threads']} thread(s)) | "
              f"trainable parameters |\n|---|---|---|---|")
        for r in out["smollm2_blocks"]:
            print(f"| {r['n_blocks']} | {r['precision']} | {r['s_per_step']:.2f} | {r['trainable_params']:,} |")


if __name__ == "__main__":
    main()
