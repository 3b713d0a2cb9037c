"""Text corpora by name, tokenised into fixed-length blocks, and a resumable batch iterator.

LaMo's language loss (``docs/lamo_recipe.md`` §2; LaMo ``experiment-d4rl/get_nlp_datasets.py``) uses
WikiText-103 (``wikitext-103-raw-v1`` train, from the HF hub), tokenised line by line with GPT-2's tokenizer (no EOS), concatenated and cut
into 1024-token blocks, served in shuffled batches of 2. The hub is unreachable here, so the corpora
are the WikiText-103 validation/test splits on local disk (``<text dir>/wikitext-103/*.tokens``)::

    wikitext-103-local           wiki.valid.tokens, all lines     auxiliary language-loss corpus
    wikitext-103-local-pretrain  wiki.test.tokens + the head of   stage-1 pre-training text
                                 wiki.valid.tokens
    wikitext-103-local-heldout   the tail of wiki.valid.tokens    stage-1 held-out perplexity

**Held-out slice.** The tail of ``wiki.valid.tokens`` starts at the first article heading
(a `` = Title = `` line) at or after 95% of the file's lines, so no article is split between
pre-training and held-out text (about 5% of the file, 3 articles). The auxiliary corpus
``wikitext-103-local`` is the whole validation file: it is training text for the language loss, not
an evaluation set.

**Deviation from LaMo.** LaMo (HF ``run_clm`` style) concatenates and cuts blocks *within each
map-batch of 1000 lines*, dropping each batch's remainder; here the whole corpus is concatenated once
and only the final remainder is dropped. Blocks may therefore cross the boundaries of LaMo's
1000-line groups; a block may span two articles in both versions.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch

from trainers.paths import TEXT_DIR_ENV, text_dir  # TEXT_DIR_ENV is re-exported for callers
from trainers.util import atomic_path, did_you_mean

HELDOUT_FRACTION = 0.05
_HEADING = re.compile(r"^ = [^=].* = $")  # top-level WikiText article title line
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class TextPart:
    """Lines of one text file: ``all`` of them, the ``head`` before the held-out boundary, or the
    held-out ``tail`` (see the module docstring)."""

    relpath: str
    part: Literal["all", "head", "tail"] = "all"


_VALID, _TEST = "wikitext-103/wiki.valid.tokens", "wikitext-103/wiki.test.tokens"
CORPORA: dict[str, tuple[TextPart, ...]] = {
    "wikitext-103-local": (TextPart(_VALID),),
    "wikitext-103-local-pretrain": (TextPart(_TEST), TextPart(_VALID, "head")),
    "wikitext-103-local-heldout": (TextPart(_VALID, "tail"),),
}


def resolve_text_dir() -> Path:
    """Root of the offline text, as :func:`trainers.paths.text_dir` resolves it: ``$LAMO_TEXT_DIR`` if
    set, else the offline mirror's ``data/text``; checked to hold the WikiText-103 files.

    Raises:
        FileNotFoundError: the WikiText files are missing there; the message names the missing files,
            where the directory came from, and how to provide the text.
    """
    root, source = text_dir()
    missing = [p for p in (_VALID, _TEST) if not (root / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"text corpus not found: {', '.join(str(root / p) for p in missing)} "
            f"(from {source}). Set {TEXT_DIR_ENV} to a "
            f"directory laid out as wikitext-103/wiki.valid.tokens and wikitext-103/wiki.test.tokens "
            f"(the non-raw WikiText-103 validation/test splits).")
    return root


def _spec(name: str) -> tuple[TextPart, ...]:
    try:
        return CORPORA[name]
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}.{did_you_mean(name, CORPORA)} "
                       f"Known corpora: {', '.join(sorted(CORPORA))}") from None


def corpus_files(name: str) -> list[Path]:
    """Absolute paths of the files a corpus reads (each once, in reading order)."""
    parts = _spec(name)
    root = resolve_text_dir()
    return [root / rel for rel in dict.fromkeys(p.relpath for p in parts)]


def _read_lines(path: Path) -> list[str]:
    """Lines with their trailing ``\\n`` kept, as in the HF ``wikitext`` dataset's ``text`` column."""
    text = path.read_text(encoding="utf-8")
    lines = [line + "\n" for line in text.split("\n")]
    if text.endswith("\n") or not text:
        lines.pop()
    return lines


def heldout_start(lines: list[str]) -> int:
    """Index of the first article heading at or after ``HELDOUT_FRACTION`` from the end of ``lines``
    (``len(lines)`` if there is none)."""
    first = int(len(lines) * (1 - HELDOUT_FRACTION))
    return next((i for i in range(first, len(lines)) if _HEADING.match(lines[i].rstrip("\n"))), len(lines))


def corpus_lines(name: str) -> Iterator[str]:
    """Yield the corpus's non-empty lines (whitespace-only lines skipped), ``\\n`` kept."""
    parts = _spec(name)
    root = resolve_text_dir()
    for part in parts:
        lines = _read_lines(root / part.relpath)
        cut = heldout_start(lines) if part.part != "all" else 0
        lines = lines[:cut] if part.part == "head" else lines[cut:]
        yield from (line for line in lines if line.strip())


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes (read in 1 MiB chunks); identifies corpus files in cache keys and
    in the stage-1 metadata."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_identity(tokenizer) -> str:
    """sha256 of the tokenizer's class name and sorted vocabulary (token → id) items."""
    items = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps([type(tokenizer).__name__, items]).encode()).hexdigest()


def _cache_key(corpus: str, tokenizer, block_size: int) -> str:
    root = resolve_text_dir()
    parts = [[p.relpath, p.part, file_sha256(root / p.relpath)] for p in _spec(corpus)]
    payload = {"format": _CACHE_FORMAT, "parts": parts, "heldout_fraction": HELDOUT_FRACTION,
               "tokenizer": tokenizer_identity(tokenizer), "block_size": block_size}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_token_blocks(corpus: str, tokenizer, block_size: int, cache_dir: Path | None = None) -> np.ndarray:
    """Tokenise a corpus into contiguous blocks for causal-LM training.

    Each non-empty line is tokenised on its own (no EOS/BOS added, as LaMo's ``get_nlp_datasets``),
    all ids are concatenated and cut into blocks of exactly ``block_size`` tokens; the final remainder
    is dropped (LaMo: 1024). With ``cache_dir`` the result is cached as ``.npy``, keyed by the corpus
    files' sha256, the tokenizer's vocabulary and ``block_size``, and written atomically
    (:func:`trainers.util.atomic_path`) so that concurrent trials can share it.

    Returns: int32 array of shape ``(n_blocks, block_size)`` (token ids).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{corpus}-{_cache_key(corpus, tokenizer, block_size)[:24]}.npy"
        if path.is_file():
            return np.load(path)
    ids, lines = [], list(corpus_lines(corpus))
    for i in range(0, len(lines), 1000):
        ids.extend(np.asarray(x, dtype=np.int32) for x in tokenizer(lines[i:i + 1000])["input_ids"])
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    n = len(flat) // block_size
    blocks = np.ascontiguousarray(flat[: n * block_size].reshape(n, block_size))
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save adds no ".npy"
            np.save(f, blocks)
    return blocks


class LanguageBatcher:
    """Endless shuffled batches of token blocks (LaMo: ``DataLoader(shuffle=True, batch_size=2)``
    cycled over the 1024-token blocks).

    Epoch ``e`` visits the blocks in the order ``np.random.default_rng([seed, e]).permutation``; a
    batch that reaches the end of an epoch is completed from the next one. The position is
    ``(epoch, index)``, so :meth:`state_dict` / :meth:`load_state_dict` resume the exact sequence.

    Args:
        blocks: int array ``(n_blocks, block_size)`` from :func:`load_token_blocks`.
        batch_size: blocks per batch (LaMo: 2).
        seed: seed of the per-epoch permutations.
    """

    def __init__(self, blocks: np.ndarray, batch_size: int, seed: int):
        if blocks.ndim != 2 or len(blocks) == 0:
            raise ValueError(f"need a non-empty (n_blocks, block_size) array, got shape {blocks.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.blocks, self.batch_size, self.seed = blocks, batch_size, seed
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.blocks))

    def next_batch(self) -> torch.LongTensor:
        """The next batch: int64 tensor ``(batch_size, block_size)`` of token ids (CPU)."""
        rows = []
        while len(rows) < self.batch_size:
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = min(self.batch_size - len(rows), len(self._order) - self.index)
            rows.extend(self._order[self.index:self.index + take])
            self.index += take
        return torch.from_numpy(self.blocks[np.asarray(rows)].astype(np.int64))

    def state_dict(self) -> dict:
        """The position in the batch sequence, ``{"epoch", "index", "seed", "n_blocks", "batch_size"}``
        (plain ints); with the same blocks and seed, :meth:`load_state_dict` resumes it exactly."""
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed,
                "n_blocks": len(self.blocks), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Resume at a :meth:`state_dict` position (the epoch's permutation is recomputed from the seed).

        Raises:
            ValueError: the state was saved for a different number of blocks or a different seed.
            KeyError: a key of :meth:`state_dict` is missing.
        """
        if (state["n_blocks"], state["seed"]) != (len(self.blocks), self.seed):
            raise ValueError(f"state is for {state['n_blocks']} blocks / seed {state['seed']}, "
                             f"this batcher has {len(self.blocks)} / {self.seed}")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = self._permutation(self.epoch)
