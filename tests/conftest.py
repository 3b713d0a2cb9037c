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
