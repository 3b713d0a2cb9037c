"""Quality of the offline project LMs on the same held-out text (results: docs/benchmarks.md,
"Pre-training quality").

For each project LM (``trainers.lm.pretrain.LM_RECIPES``) found pre-trained under ``<data_dir>/models``,
and for ``lamo-wiki-tiny``'s architecture with random weights (what ``lamo-random-init`` starts from),
reports on the ``wikitext-103-local-heldout`` text (the tail of WikiText-103 validation, which no
stage-1 corpus reads): loss (nats per token), perplexity, and bits per UTF-8 byte
(:func:`trainers.lm.pretrain.bits_per_byte`; the LMs have different tokenizers, so only bits per byte
compare across them), plus each LM's stage-1 training tokens and time from its ``lamo_pretrain.json``.
Blocks of 256 tokens, as in stage 1.

Usage: ``.venv/bin/python benchmarks/bench_lm_quality.py [--data-dir lamo_runs/data] [--threads 2]``.
Prints a JSON summary and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainers.lm.corpus import load_token_blocks  # noqa: E402
from trainers.lm.pretrain import LM_RECIPES, META_FILE, bits_per_byte, evaluate_loss, is_pretrained  # noqa: E402

HELDOUT = "wikitext-103-local-heldout"


def measure(model, tok, block_size: int, data_dir: Path) -> dict:
    """Held-out loss (nats/token), perplexity and bits per byte of ``model`` with tokenizer ``tok``."""
    blocks = load_token_blocks(HELDOUT, tok, block_size, data_dir=data_dir)
    with torch.no_grad():
        loss = evaluate_loss(model, blocks)
    return {"heldout_loss": loss, "heldout_ppl": math.exp(loss),
            "heldout_bits_per_byte": bits_per_byte(loss, tok, blocks), "heldout_blocks": len(blocks)}


def main() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=REPO / "lamo_runs" / "data")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, recipe in LM_RECIPES.items():
        d = args.data_dir / "models" / name
        if not is_pretrained(d):
            print(f"skip {name}: not pre-trained in {d} (run `lamo-trial prepare` or a sweep that uses it)")
            continue
        meta = json.loads((d / META_FILE).read_text())
        tok, model = AutoTokenizer.from_pretrained(d), AutoModelForCausalLM.from_pretrained(d)
        rows.append({"lm": name, "init": "pre-trained", "stage1_corpus": recipe.corpus,
                     "stage1_tokens": meta["metrics"]["train_tokens"], "stage1_s": meta["metrics"]["train_s"],
                     "stage1_threads": meta.get("torch_threads"),
                     "params": sum(p.numel() for p in model.parameters()),
                     **measure(model, tok, recipe.block_size, args.data_dir)})
        if name == "lamo-wiki-tiny":  # the random-init ablation's starting point: same config, fresh weights
            torch.manual_seed(0)
            rand = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(d))
            rows.append({"lm": name, "init": "random", "stage1_corpus": "-", "stage1_tokens": 0, "stage1_s": 0.0,
                         "stage1_threads": None, "params": sum(p.numel() for p in rand.parameters()),
                         **measure(rand, tok, recipe.block_size, args.data_dir)})
    print(json.dumps(rows, indent=1))
    print("\n| LM | weights | stage-1 text | stage-1 tokens | stage-1 time | held-out loss (nats/token) | "
          "perplexity | bits per byte |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lm']} | {r['init']} | {r['stage1_corpus']} | {r['stage1_tokens'] / 1e6:.2f}M | "
              f"{r['stage1_s'] / 60:.1f} min | {r['heldout_loss']:.3f} | {r['heldout_ppl']:.0f} | "
              f"{r['heldout_bits_per_byte']:.3f} |")


if __name__ == "__main__":
    main()
