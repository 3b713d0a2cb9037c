"""Shared fixtures. Tests run offline on CPU with real MuJoCo, torch, Ray and MLflow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    """Run every test in its own directory (MuJoCo writes MUJOCO_LOG.TXT into the cwd)."""
    monkeypatch.chdir(tmp_path)


def make_tiny_inputs(root: Path, episodes: int, seed: int, lm_steps: int = 3) -> tuple[Path, Path]:
    """A small collected Reacher2d dataset under ``root/data`` and a tiny real pre-trained GPT-2
    (``lm_steps`` stage-1 steps on WikiText) under ``root/lm``; returns ``(data_dir, lm_dir)``."""
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path
    from trainers.lm.pretrain import PretrainRecipe, pretrain_lm

    data = root / "data"
    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", data), episodes=episodes, seed=seed,
                    progress=False)
    lm = root / "lm"
    pretrain_lm(PretrainRecipe(vocab_size=300, n_layer=1, n_embd=32, n_head=2, n_positions=64, block_size=32,
                               batch_size=4, steps=lm_steps), lm, progress=False)
    return data, lm
