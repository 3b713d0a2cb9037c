"""Cost of LaMo's language loss: one training step with the plain head + cross-entropy (the whole
``(B*T, V)`` logits tensor) vs the fused, chunked one (:meth:`trainers.model.DecisionTransformer.language_loss`).

Configuration (the one measured in docs/benchmarks.md, "Language loss"): Hopper shapes (state 11, action 3),
context length K 20, batch 64, a GPT-2-shaped LM of 3 layers x 128 with GPT-2's 50,257-token vocabulary
(random weights saved and loaded as a "pre-trained" LM: the cost does not depend on the values), LoRA
rank 16 on ``c_attn``, MLP embeddings, language weight 0.1 on a batch of 2 x 1,024 tokens. One step =
action forward + language forward + backward + gradient clipping + AdamW, as
:meth:`trainers.learner.SequenceLearner.train_step` does (random tensors stand in for the sampled batch:
sampling is not what is measured).

Each setting runs in its own process, so its peak resident memory (``ru_maxrss``; on CUDA
``torch.cuda.max_memory_allocated``) is its own. ``--precisions fp32 bf16`` times every chunk setting at
each ``train.precision`` (:class:`trainers.precision.MixedPrecision`: the step's forward passes and losses
under autocast; fp16 on CUDA only).

Usage: ``.venv/bin/python benchmarks/bench_language_loss.py [--threads 2] [--steps 20] [--chunks none 256 ...]
[--precisions fp32 bf16]``.
Prints one JSON line per setting and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one_setting(chunk_rows: int | None, steps: int, threads: int, device: str, lm_dir: str,
                precision: str = "fp32") -> dict:
    """Median seconds per training step and peak memory for one ``chunk_rows`` (``None`` = plain) at one
    ``precision`` (``fp32``, ``bf16``, ``fp16``)."""
    import torch

    from trainers.config import TrialConfig
    from trainers.model import DecisionTransformer
    from trainers.precision import MixedPrecision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = TrialConfig(task="hopper-medium", model=dict(lm=lm_dir, init="pretrained", embedding="mlp",
                                                       finetune="lora"), language={"weight": 0.1})
    dev = torch.device(device)
    m = DecisionTransformer(cfg, 11, 3, 1000, lm_dir).to(dev).train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-5)
    B, K = 64, 20
    batch = (torch.randn(B, K, 11, device=dev), torch.randn(B, K, 3, device=dev), torch.randn(B, K, 1, device=dev),
             torch.randint(0, 1000, (B, K), device=dev), torch.ones(B, K, device=dev))
    text = torch.randint(0, 50257, (2, 1024), device=dev)

    amp = MixedPrecision(precision, dev)
    params = [p for p in m.parameters() if p.requires_grad]

    def step() -> None:
        with amp.autocast():
            pred = m(*batch)
            loss = ((pred.float() - batch[1]) ** 2).mean() + 0.1 * m.language_loss(text, chunk_rows=chunk_rows)
        amp.step(loss, opt, params, 0.25)

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"chunk_rows": chunk_rows, "precision": precision, "s_per_step_median": times[len(times) // 2], "s_per_step_min": times[0],
            "peak_mib": peak, "peak_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "max RSS",
            "threads": threads, "device": device, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting (after 3 warm-up steps)")
    ap.add_argument("--chunks", nargs="+", default=["none", "128", "256", "512", "1024"],
                    help="rows per chunk of the fused loss; 'none' = the plain loss")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                    help="train.precision of the step (fp16: CUDA only)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one setting, print JSON
    ap.add_argument("--lm-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        chunk = None if args.one == "none" else int(args.one)
        print(json.dumps(one_setting(chunk, args.steps, args.threads, args.device, args.lm_dir, args.precisions[0])))
        return
    from transformers import GPT2Config, GPT2LMHeadModel

    with tempfile.TemporaryDirectory() as lm_dir:
        GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=128, n_head=1, n_inner=512, vocab_size=50257,
                                   n_positions=1024)).save_pretrained(lm_dir)
        rows = []
        for precision in args.precisions:
            for c in args.chunks:
                out = subprocess.run([sys.executable, __file__, "--one", c, "--lm-dir", lm_dir, "--steps",
                                      str(args.steps), "--threads", str(args.threads), "--device", args.device,
                                      "--precisions", precision], capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    print("\n| language loss | precision | s/step (median) | s/step (min) | peak memory (MiB) |\n|---|---|---:|---:|---:|")
    for r in rows:
        name = "plain (whole logits)" if r["chunk_rows"] is None else f"fused, {r['chunk_rows']} rows/chunk"
        print(f"| {name} | {r['precision']} | {r['s_per_step_median']:.3f} | {r['s_per_step_min']:.3f} | "
              f"{r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
