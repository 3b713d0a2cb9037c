"""LaMo stage 1 at small scale: pre-train a GPT-2 on offline text so that stage 2 starts from a real
(if small) pre-trained causal LM.

LaMo starts from OpenAI's GPT-2 (paper §4.1, arXiv 2310.20587; ``docs/lamo_recipe.md`` §1.1); its
weights cannot be obtained without the model hub, so :func:`pretrain_lm` trains, from scratch on the
``wikitext-103-local-pretrain`` text (:mod:`trainers.lm.corpus`):

1. a byte-level BPE tokenizer (HF ``tokenizers``, GPT-2's scheme and ``<|endoftext|>`` token), saved as
   a transformers ``GPT2TokenizerFast``;
2. a standard ``GPT2LMHeadModel`` (learned absolute positions, tied LM head) with AdamW, linear
   warmup then cosine decay, on shuffled contiguous token blocks (no EOS between lines, as LaMo's
   language loss, ``docs/lamo_recipe.md`` §2).

The output directory loads offline with ``AutoModelForCausalLM.from_pretrained`` /
``AutoTokenizer.from_pretrained`` and carries ``lamo_pretrain.json`` (recipe, metrics, corpus hashes,
versions).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainers.lm.corpus import (LanguageBatcher, corpus_files, corpus_lines, file_sha256, load_token_blocks,
                                text_source)
from trainers.util import atomic_path, did_you_mean

META_FILE = "lamo_pretrain.json"
EOS = "<|endoftext|>"


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that defines one stage-1 run.

    Model: ``GPT2Config(vocab_size, n_positions, n_embd, n_layer, n_head)``, dropout ``dropout`` on
    residual/embedding/attention. Data: blocks of ``block_size`` tokens from ``corpus``, ``batch_size``
    blocks per step, so ``steps * batch_size * block_size`` training tokens. Optimiser: AdamW(lr,
    betas (0.9, 0.95), ``weight_decay`` on matrices only), linear warmup over ``warmup_steps`` then
    cosine decay to ``min_lr_ratio * lr``, gradient clip ``grad_clip`` (global norm).
    Perplexity is measured on ``heldout_corpus`` blocks of the same length.
    """

    vocab_size: int = 8192
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 1024
    block_size: int = 256
    batch_size: int = 8
    steps: int = 600
    lr: float = 4e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    seed: int = 0
    corpus: str = "wikitext-103-local-pretrain"
    heldout_corpus: str = "wikitext-103-local-heldout"
    dropout: float = 0.0
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


LM_RECIPES: dict[str, PretrainRecipe] = {
    # 1.97M parameters (1.05M of them the tied 8192 x 128 embedding); 600 steps x 8 x 256 = 1.23M tokens,
    # about 2.3 epochs of the 0.56M-token pre-training text. Measured with torch.set_num_threads(2) on
    # 2 AMD EPYC cores: ~6.2k tokens/s uncontended, so ~3.5 min in all; held-out perplexity
    # 8401 (random init) -> 350 (lr 2e-3/4e-3/6e-3/1e-2 gave 381/349/348/437 at this budget).
    "lamo-wiki-tiny": PretrainRecipe(steps=400),  # ~3.5 min on 2 idle cores; held-out ppl 8401 -> ~400
    # The stronger offline LM of the pre-training-quality comparison (docs/lamo_recipe.md §9): the same
    # shape and tokenizer size as lamo-wiki-tiny, so a stage-2 step costs the same, but stage 1 reads
    # twice the text (WikiText-103 pre-training text + one half of the Wikipedia lead sections, 1.22M
    # tokens; the other half is the language-loss corpus wiki-leads) for 5x the steps: 2,000 x 8 x 256 =
    # 4.1M tokens, about 3.4 epochs. Held-out perplexity and time: docs/benchmarks.md.
    "lamo-wiki-long": PretrainRecipe(steps=2000, corpus="wiki-mix-pretrain"),
}


def is_pretrained(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a finished stage-1 run (metadata, config and weights)."""
    d = Path(out_dir)
    return ((d / META_FILE).is_file() and (d / "config.json").is_file()
            and any((d / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")))


def _train_tokenizer(recipe: PretrainRecipe, work_dir: Path, data_dir: str | Path | None = None):
    """Byte-level BPE with ``recipe.vocab_size`` entries (incl. ``<|endoftext|>``), as GPT2TokenizerFast."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(corpus_lines(recipe.corpus, data_dir), vocab_size=recipe.vocab_size, min_frequency=2,
                            special_tokens=[EOS], show_progress=False)
    bpe.save_model(str(work_dir))  # vocab.json + merges.txt, GPT-2's file layout
    return GPT2TokenizerFast.from_pretrained(str(work_dir), model_max_length=recipe.n_positions,
                                             bos_token=EOS, eos_token=EOS, unk_token=EOS)


@torch.no_grad()
def evaluate_loss(model, blocks: np.ndarray, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats/token) of ``model`` over ``blocks`` ``(n, block_size)``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = torch.from_numpy(blocks[i:i + batch_size].astype(np.int64))
        n_pred = x.shape[0] * (x.shape[1] - 1)
        total += model(input_ids=x, labels=x).loss.item() * n_pred
        count += n_pred
    model.train(was_training)
    return total / count


def bits_per_byte(loss: float, tokenizer, blocks: np.ndarray) -> float:
    """Convert :func:`evaluate_loss`'s ``loss`` (nats per predicted token) over ``blocks`` to bits per
    UTF-8 byte of the predicted text: ``loss * n_predicted_tokens / (ln 2 * n_bytes)``, with ``n_bytes``
    the bytes of each block's tokens after the first (the ones predicted). Unlike perplexity it does not
    depend on the tokenizer, so LMs with different vocabularies compare on the same held-out text
    (the usual tokenizer-free LM metric, e.g. Gao et al. 2020, "The Pile", arXiv 2101.00027 §3)."""
    n_bytes = sum(len(tokenizer.decode(b[1:].tolist()).encode("utf-8")) for b in blocks)
    n_pred = blocks.shape[0] * (blocks.shape[1] - 1)
    return loss * n_pred / (math.log(2) * max(n_bytes, 1))


def _lr_lambda(recipe: PretrainRecipe, steps: int):
    def f(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        t = (step - recipe.warmup_steps) / max(1, steps - recipe.warmup_steps)
        return recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("stage-1 LM"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), disable=not enabled)


def pretrain_lm(recipe: str | PretrainRecipe, out_dir: str | Path, progress: bool = True,
                steps: int | None = None, data_dir: str | Path | None = None) -> dict:
    """Run stage 1 (tokenizer + tokenisation + GPT-2 training) and write the result to ``out_dir``.

    Args:
        recipe: a name in :data:`LM_RECIPES` or a :class:`PretrainRecipe`.
        out_dir: destination; written to a sibling temp dir (mode 0755) and moved into place at the end
            with :func:`trainers.util.atomic_path` (an existing directory is replaced only then; on
            failure the temp dir is removed and ``out_dir`` is left as it was).
        progress: show a rich progress bar with the running loss.
        steps: overrides ``recipe.steps`` (e.g. tiny runs in tests).
        data_dir: the data directory whose text cache is part of the text's resolution order
            (:func:`trainers.lm.corpus.resolve_text`); ``None``: ``$LAMO_TEXT_DIR`` or the mirror.

    Returns: metrics dict: ``heldout_loss_before/after`` (nats/token), ``heldout_ppl_before/after``,
    ``heldout_bits_per_byte_before/after`` (:func:`bits_per_byte`; comparable across tokenizers),
    ``final_train_loss`` (mean of the last 20 steps), ``train_tokens``, ``tokens_per_s`` (training
    loop only), ``tokenizer_s``, ``tokenize_s``, ``train_s`` (training loop), ``wall_s`` (everything,
    incl. evaluation and saving; seconds), ``n_params``,
    ``n_train_blocks``, ``n_heldout_blocks``.
    """
    import transformers

    t_start = time.perf_counter()
    recipe = _resolve_recipe(recipe, steps)
    out_dir = Path(out_dir).resolve()
    with atomic_path(out_dir) as work:  # removed on failure; replaces out_dir only when complete
        work.mkdir()
        work.chmod(0o755)
        torch.manual_seed(recipe.seed)
        np.random.seed(recipe.seed)

        tokenizer = _train_tokenizer(recipe, work, data_dir)
        t_tok = time.perf_counter()
        train_blocks = load_token_blocks(recipe.corpus, tokenizer, recipe.block_size, data_dir=data_dir)
        heldout_blocks = load_token_blocks(recipe.heldout_corpus, tokenizer, recipe.block_size, data_dir=data_dir)
        t_data = time.perf_counter()

        model = _new_model(recipe, tokenizer)
        loss_before = evaluate_loss(model, heldout_blocks)
        t_loop = time.perf_counter()
        losses = _train(model, recipe, train_blocks, progress)
        t_train = time.perf_counter()
        loss_after = evaluate_loss(model, heldout_blocks)

        train_tokens = recipe.steps * recipe.batch_size * recipe.block_size
        metrics = {
            "heldout_loss_before": loss_before, "heldout_ppl_before": math.exp(loss_before),
            "heldout_loss_after": loss_after, "heldout_ppl_after": math.exp(loss_after),
            "heldout_bits_per_byte_before": bits_per_byte(loss_before, tokenizer, heldout_blocks),
            "heldout_bits_per_byte_after": bits_per_byte(loss_after, tokenizer, heldout_blocks),
            "final_train_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
            "train_tokens": train_tokens, "tokens_per_s": train_tokens / max(t_train - t_loop, 1e-9),
            "tokenizer_s": t_tok - t_start, "tokenize_s": t_data - t_tok, "train_s": t_train - t_loop,
            "n_params": sum(p.numel() for p in model.parameters()),
            "n_train_blocks": len(train_blocks), "n_heldout_blocks": len(heldout_blocks),
        }
        _save(model, tokenizer, work, progress)
        metrics["wall_s"] = time.perf_counter() - t_start
        meta = {
            "recipe": dataclasses.asdict(recipe), "metrics": metrics,
            "corpus_files": {str(p): file_sha256(p) for name in (recipe.corpus, recipe.heldout_corpus)
                             for p in corpus_files(name, data_dir)},
            "text_source": text_source(data_dir, (recipe.corpus, recipe.heldout_corpus)),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "torch_threads": torch.get_num_threads(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (work / META_FILE).write_text(json.dumps(meta, indent=2))
    return metrics


def _resolve_recipe(recipe: str | PretrainRecipe, steps: int | None) -> PretrainRecipe:
    """``recipe`` itself, or the :data:`LM_RECIPES` entry it names, with ``steps`` (when given) replacing
    its step count. Raises ``KeyError`` naming the known recipes for an unknown name."""
    if isinstance(recipe, str):
        try:
            recipe = LM_RECIPES[recipe]
        except KeyError:
            raise KeyError(f"unknown LM recipe {recipe!r}.{did_you_mean(recipe, LM_RECIPES)} "
                           f"Known: {', '.join(sorted(LM_RECIPES))}") from None
    return recipe if steps is None else dataclasses.replace(recipe, steps=steps)


def _new_model(recipe: PretrainRecipe, tokenizer):
    """A freshly initialised ``GPT2LMHeadModel`` of the recipe's shape over ``tokenizer``'s vocabulary
    (its end-of-text token as BOS and EOS); draws its initial weights from torch's global generator."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=recipe.n_positions, n_embd=recipe.n_embd,
                        n_layer=recipe.n_layer, n_head=recipe.n_head, resid_pdrop=recipe.dropout,
                        embd_pdrop=recipe.dropout, attn_pdrop=recipe.dropout,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return GPT2LMHeadModel(config)


def _train(model, recipe: PretrainRecipe, train_blocks, progress: bool) -> list[float]:
    """Train ``model`` for ``recipe.steps`` steps of next-token loss on batches of ``train_blocks``
    (:class:`~trainers.lm.corpus.LanguageBatcher`, seeded with ``recipe.seed``): AdamW (betas 0.9/0.95,
    weight decay on matrices only), :func:`_lr_lambda`'s schedule, gradient clipping at ``recipe.grad_clip``.
    Returns the per-step losses (nats/token)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe, recipe.steps))
    batcher = LanguageBatcher(train_blocks, recipe.batch_size, recipe.seed)
    model.train()
    losses = []
    with _progress(progress) as bar:
        task = bar.add_task("train", total=recipe.steps, loss=float("nan"))
        for _ in range(recipe.steps):
            x = batcher.next_batch()
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(task, advance=1, loss=float(np.mean(losses[-20:])))
    return losses


def _save(model, tokenizer, work: Path, progress: bool) -> None:
    """``save_pretrained`` the model and tokenizer into ``work``, with transformers' progress bars off
    unless ``progress``."""
    import transformers

    hf_bars = transformers.utils.logging.is_progress_bar_enabled()
    if not progress:
        transformers.utils.logging.disable_progress_bar()
    try:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
    finally:
        if hf_bars:
            transformers.utils.logging.enable_progress_bar()
