"""Tests for the language side: corpora, token blocks + cache, the resumable batcher, stage-1 pretraining.

They read the real WikiText-103 valid/test files (``$LAMO_TEXT_DIR``, else the offline mirror's
``data/text``: :func:`trainers.paths.text_dir`) and
are skipped, with the reason, where that text is absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import trainers
from trainers.lm import corpus as corpus_mod
from trainers.lm.corpus import (CORPORA, LanguageBatcher, corpus_files, corpus_lines, load_token_blocks,
                                resolve_text_dir)
from trainers.lm.pretrain import PretrainRecipe, _train_tokenizer, is_pretrained, pretrain_lm

try:
    resolve_text_dir()
    _TEXT_MISSING = None
except FileNotFoundError as e:
    _TEXT_MISSING = str(e)
needs_text = pytest.mark.skipif(_TEXT_MISSING is not None, reason=f"no offline text: {_TEXT_MISSING}")

TINY = PretrainRecipe(vocab_size=512, n_layer=2, n_embd=32, n_head=2, n_positions=128, block_size=64,
                      batch_size=8, steps=40, lr=1e-2, warmup_steps=5, seed=0)


@pytest.fixture
def one_thread():
    """Tiny models run ~50x slower with 2 OpenMP threads when other processes share the 2 cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return _train_tokenizer(TINY, tmp_path_factory.mktemp("tok"))


def test_text_dir_env_empty_dir_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMO_TEXT_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="LAMO_TEXT_DIR") as err:
        resolve_text_dir()
    assert "wikitext-103/wiki.valid.tokens" in str(err.value)
    with pytest.raises(FileNotFoundError):
        corpus_files("wikitext-103-local")


@needs_text
def test_default_text_dir_and_corpora(monkeypatch):
    env = __import__("os").environ
    if "LAMO_TEXT_DIR" not in env and "LAMO_SHARED_DIR" not in env:  # the default: <repo>/../shared
        expected = Path(trainers.__file__).resolve().parents[1].parent / "shared" / "data" / "text"
        assert resolve_text_dir() == expected
    assert [p.name for p in corpus_files("wikitext-103-local")] == ["wiki.valid.tokens"]
    assert [p.name for p in corpus_files("wikitext-103-local-pretrain")] == ["wiki.test.tokens", "wiki.valid.tokens"]
    with pytest.raises(KeyError, match="wikitext-103-local-pretrain"):
        corpus_files("wikitext-2")
    # the held-out slice is disjoint from the pre-training text and starts with an article heading
    valid = list(corpus_lines("wikitext-103-local"))
    pre, held = list(corpus_lines("wikitext-103-local-pretrain")), list(corpus_lines("wikitext-103-local-heldout"))
    assert held and held[0].startswith(" = ") and valid[-len(held):] == held
    assert pre[-(len(valid) - len(held)):] == valid[:-len(held)]
    assert 0.02 < len(held) / len(valid) < 0.1
    assert all(line.strip() and line.endswith("\n") for line in held)
    # every registered corpus resolves to readable text here
    for name in CORPORA:
        assert corpus_files(name) and all(p.is_file() for p in corpus_files(name)), name
        assert next(iter(corpus_lines(name))).strip(), name


@needs_text
def test_blocks_shape_and_decode_back(tokenizer):
    blocks = load_token_blocks("wikitext-103-local-heldout", tokenizer, 128)
    assert blocks.dtype == np.int32 and blocks.ndim == 2 and blocks.shape[1] == 128 and len(blocks) > 50
    assert 0 <= blocks.min() and blocks.max() < len(tokenizer)
    text = "".join(corpus_lines("wikitext-103-local-heldout"))
    decoded = tokenizer.decode(blocks.ravel().tolist(), clean_up_tokenization_spaces=False)
    assert len(decoded) > 0.9 * len(text) and text.startswith(decoded)
    # dropping only the final remainder: all tokens minus < block_size
    n_tokens = sum(len(x) for x in tokenizer(list(corpus_lines("wikitext-103-local-heldout")))["input_ids"])
    assert 0 <= n_tokens - blocks.size < 128


@needs_text
def test_block_cache_hit(tokenizer, tmp_path, monkeypatch):
    first = load_token_blocks("wikitext-103-local-heldout", tokenizer, 64, cache_dir=tmp_path)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # no temp file left behind

    def boom(name):
        raise AssertionError("cache miss: corpus re-read")
    monkeypatch.setattr(corpus_mod, "corpus_lines", boom)
    again = load_token_blocks("wikitext-103-local-heldout", tokenizer, 64, cache_dir=tmp_path)
    assert again.dtype == np.int32 and np.array_equal(first, again)
    monkeypatch.undo()
    other = load_token_blocks("wikitext-103-local-heldout", tokenizer, 32, cache_dir=tmp_path)
    assert other.shape[1] == 32 and len(list(tmp_path.glob("*.npy"))) == 2


def test_batcher_epochs_determinism_and_resume():
    blocks = np.arange(10 * 4, dtype=np.int32).reshape(10, 4)
    a, b = LanguageBatcher(blocks, 3, seed=1), LanguageBatcher(blocks, 3, seed=1)
    seq_a = [a.next_batch() for _ in range(12)]
    assert all(x.dtype == torch.int64 and x.shape == (3, 4) for x in seq_a)
    assert all(torch.equal(x, b.next_batch()) for x in seq_a)
    rows = torch.cat(seq_a)[:, 0].div(4, rounding_mode="floor").tolist()
    assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:20]) == list(range(10))  # epochs
    assert rows[:10] != rows[10:20]  # reshuffled each epoch
    c = LanguageBatcher(blocks, 3, seed=2)
    assert not all(torch.equal(x, c.next_batch()) for x in seq_a)

    # resume from a JSON round-tripped state mid-epoch and across an epoch boundary
    for cut in (2, 5):
        src = LanguageBatcher(blocks, 3, seed=1)
        for _ in range(cut):
            src.next_batch()
        resumed = LanguageBatcher(blocks, 3, seed=1)
        resumed.load_state_dict(json.loads(json.dumps(src.state_dict())))
        assert all(torch.equal(seq_a[i], resumed.next_batch()) for i in range(cut, 12))
    with pytest.raises(ValueError):
        LanguageBatcher(blocks[:5], 3, seed=1).load_state_dict(a.state_dict())


@needs_text
@pytest.mark.slow(reason="a real stage-1 run (tokenizer, tokenisation, 30 steps): 12-16 s")
def test_tiny_pretrain_writes_loadable_lm(tmp_path, monkeypatch, one_thread):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from trainers.config import TrialConfig
    from trainers.inputs import inputs_to_prepare, lm_location

    # a trial naming the project LM asks `prepare` to pre-train it into <data_dir>/models/<name> ...
    with pytest.raises(KeyError, match="unknown LM recipe 'no-such-lm'.*[Kk]nown: .*lamo-wiki-tiny"):
        pretrain_lm("no-such-lm", tmp_path / "nope", progress=False)
    assert not (tmp_path / "nope").exists()
    trial = TrialConfig(task="reacher2d-medium", model={"lm": "lamo-wiki-tiny", "init": "pretrained"})
    out = Path(lm_location("lamo-wiki-tiny", tmp_path))
    assert out == tmp_path / "models" / "lamo-wiki-tiny" and not is_pretrained(out)
    lm_steps = [s for s in inputs_to_prepare([trial], tmp_path) if " LM " in s]
    assert lm_steps == [f"pre-train project LM lamo-wiki-tiny on its text corpus -> {out}"]
    metrics = pretrain_lm(TINY, out, progress=False, steps=30)
    assert is_pretrained(out)
    assert [p.name for p in out.parent.iterdir()] == ["lamo-wiki-tiny"]  # temp dir renamed, nothing left over
    # ... and once there, nothing is left to prepare for it
    assert [s for s in inputs_to_prepare([trial], tmp_path) if " LM " in s] == []
    assert metrics["heldout_loss_after"] < metrics["heldout_loss_before"] - 0.5
    assert metrics["train_tokens"] == 30 * 8 * 64
    # bits per byte: the same loss, per byte of held-out text (tokenizer-free); ~1-2 bytes per token here
    ratio = metrics["heldout_bits_per_byte_after"] / metrics["heldout_bits_per_byte_before"]
    assert ratio == pytest.approx(metrics["heldout_loss_after"] / metrics["heldout_loss_before"])
    assert 0.2 < metrics["heldout_loss_after"] / math.log(2) / metrics["heldout_bits_per_byte_after"] < 8

    meta = json.loads((out / "lamo_pretrain.json").read_text())
    assert meta["recipe"]["steps"] == 30 and meta["recipe"]["n_embd"] == 32
    assert meta["metrics"]["heldout_ppl_after"] == pytest.approx(metrics["heldout_ppl_after"])
    assert {Path(p).name for p in meta["corpus_files"]} == {"wiki.test.tokens", "wiki.valid.tokens"}
    assert set(meta["versions"]) == {"torch", "transformers"}

    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "gpt2" and model.config.n_layer == 2 and len(tok) == 512
    ids = tok(" The lobster is a species of", return_tensors="pt")["input_ids"]
    assert tok.decode(ids[0]) == " The lobster is a species of"
    held = load_token_blocks(TINY.heldout_corpus, tok, TINY.block_size)
    x = torch.from_numpy(held[:16].astype(np.int64))
    with torch.no_grad():
        loss = model(input_ids=x, labels=x).loss.item()
    assert loss < metrics["heldout_loss_before"] - 0.5
