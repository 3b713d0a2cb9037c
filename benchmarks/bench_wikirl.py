"""What Wiki-RL's alignment loss costs (results: docs/benchmarks.md, "Wiki-RL alignment loss").

* k-means: seconds per round of :func:`trainers.alignment.cosine_kmeans` on random embeddings of GPT-2
  small's shape (50,257 x 768, 1,000 centres) and of ``lamo-wiki-tiny``'s (8,192 x 128), and the rounds
  to convergence on ``--lm`` (a real LM directory, e.g. ``lamo_runs/data/models/lamo-wiki-tiny``), capped
  at 100 (``alignment.kmeans_iters``).
* per training step: the ``wiki-rl`` learner's ``train_step`` on collected Reacher2d data and ``--lm``,
  with the alignment loss (the preset) and without it (``alignment.weight: 0``), steps interleaved, median
  of ``--steps`` (the first two dropped).

Usage: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_wikirl.py --lm DIR --data-dir DIR [--steps 20]
[--threads 1] [--device cpu]``. The data directory must hold ``datasets/reacher2d-medium-v0.hdf5``
(``lamo-trial prepare``). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _kmeans_round_s(n: int, h: int, k: int, device: str) -> float:
    from trainers.alignment import cosine_kmeans

    x = torch.randn(n, h, generator=torch.Generator().manual_seed(0)).to(device)
    t0 = time.perf_counter()
    _, it = cosine_kmeans(x, k, seed=0, max_iters=3, tol=0.0)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / it


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lm", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name, n, h in (("gpt2-shape", 50257, 768), ("lamo-wiki-tiny-shape", 8192, 128)):
        print(json.dumps({"kmeans": name, "k": 1000, "s_per_round": round(_kmeans_round_s(n, h, 1000, a.device), 3)}))

    from transformers import AutoModelForCausalLM

    from trainers.alignment import cosine_kmeans
    from trainers.config import TrialConfig
    from trainers.learner import SequenceLearner, build_parts
    from trainers.presets import get_preset

    wte = AutoModelForCausalLM.from_pretrained(a.lm).get_input_embeddings().weight.to(a.device)
    t0 = time.perf_counter()
    _, iters = cosine_kmeans(wte, 1000, seed=0)
    print(json.dumps({"kmeans": a.lm, "k": 1000, "rounds": iters, "s": round(time.perf_counter() - t0, 2)}))
    learners = {}
    for weight in (0.1, 0.0):
        d = get_preset("wiki-rl")
        d["model"]["lm"] = a.lm
        d["alignment"] = {"weight": weight}
        d.update(task="reacher2d-medium", sample_ratio=1.0, seed=0, device=a.device)
        cfg = TrialConfig(**d)
        torch.manual_seed(0)
        learners[weight] = SequenceLearner(cfg, build_parts(cfg, Path(a.data_dir)))
    times: dict[float, list[float]] = {w: [] for w in learners}
    for _ in range(a.steps):  # interleaved, so load on a shared machine hits both alike
        for w, learner in learners.items():
            t0 = time.perf_counter()
            learner.train_step()
            times[w].append(time.perf_counter() - t0)
    for w, learner in learners.items():
        print(json.dumps({"train_step": "wiki-rl", "alignment_weight": w, "batch": learner.cfg.train.batch_size,
                          "K": learner.cfg.K, "median_ms": round(1000 * statistics.median(times[w][2:]), 1)}))


if __name__ == "__main__":
    main()
