"""What a trial needs of its language model at run time: where the LM is, the tokenised language-loss
corpus, and how often a run sees it. The learners (:mod:`trainers.learner`) and ``prepare``
(:mod:`trainers.inputs`) both read these; they live with the LM code so that a learner imports no input
logistics.
"""

from __future__ import annotations

from pathlib import Path


def project_lm_names() -> set[str]:
    """Names of the LMs ``prepare`` can make here: pre-trained by this project
    (:data:`trainers.lm.pretrain.LM_RECIPES`) or shipped in a PyPI package
    (:data:`trainers.lm.packaged.PACKAGED_LMS`)."""
    from trainers.lm.packaged import PACKAGED_LMS
    from trainers.lm.pretrain import LM_RECIPES

    return set(LM_RECIPES) | set(PACKAGED_LMS)


def lm_location(lm: str, data_dir: Path) -> str:
    """Resolve ``model.lm`` to what ``from_pretrained`` takes: a project LM's directory
    (``<data_dir>/models/<name>``), an existing local directory, or else the hub id unchanged."""
    if lm in project_lm_names():
        return str(Path(data_dir) / "models" / lm)
    p = Path(lm).expanduser()
    if p.is_dir():
        return str(p.resolve())
    return lm


def language_blocks(cfg, data_dir: Path):  # cfg: trainers.config.TrialConfig
    """The tokenised language-loss corpus of a trial: ``(n_blocks, language.block_size)`` int32 token ids
    of ``language.corpus`` under the tokenizer of ``model.lm``, cached in ``<data_dir>/corpus_cache``
    (:func:`trainers.lm.corpus.load_token_blocks`). ``prepare`` fills the cache; trials read it.

    Raises:
        FileNotFoundError: the corpus text is missing (message says how to provide it).
    """
    from transformers import AutoTokenizer

    from trainers.lm.corpus import load_token_blocks

    tok = AutoTokenizer.from_pretrained(lm_location(cfg.model.lm, data_dir))
    return load_token_blocks(cfg.language.corpus, tok, cfg.language.block_size,
                             cache_dir=Path(data_dir) / "corpus_cache", data_dir=data_dir)


def corpus_passes(n_blocks: int, blocks_per_step: int, steps: int) -> dict[str, float]:
    """How often a run sees its language-loss corpus: ``{"language/corpus_blocks": n_blocks,
    "language/passes_per_100k_steps": 1e5 * blocks_per_step / n_blocks, "language/passes":
    steps * blocks_per_step / n_blocks}`` (a pass = every block once; LaMo: about 117k blocks of 1,024
    tokens, 2 per step, about 1.7 passes in its 100k steps). Logged with each trial's static metrics."""
    n = max(int(n_blocks), 1)
    return {"language/corpus_blocks": float(n_blocks),
            "language/passes_per_100k_steps": 1e5 * blocks_per_step / n,
            "language/passes": steps * blocks_per_step / n}
