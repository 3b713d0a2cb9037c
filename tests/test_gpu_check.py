"""benchmarks/gpu_check.sh end to end in --smoke mode on a CPU (the CUDA path needs a GPU; CI never
depends on it): one JSON with the trainer rows, the packing run and the evaluation round, usable as the
dry-run estimate's calibration."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orchestrator.estimate import load_calibration
from tests.conftest import REPO


@pytest.mark.slow(reason="runs ~9 short benchmark processes (torch + transformers start-up each): ~1-3 min on 2 cores")
def test_gpu_check_smoke_writes_one_json(tmp_path):
    out = tmp_path / "g.json"
    r = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--smoke", "--pack", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["smoke"] is True
    assert [row["setting"] for row in data["trainer"]] == ["lamo_lambda0", "lamo_lambda0.1", "dt_gpt2_shape", "dt"]
    for row in data["trainer"]:
        assert row["s_per_step"] > 0 and row["peak_mib"] > 0 and row["flops_per_step"] > 0
    lam = {row["setting"]: row["flops_per_step"] for row in data["trainer"]}
    assert lam["lamo_lambda0.1"] > lam["lamo_lambda0"]  # the language loss costs FLOPs
    assert len(data["packing"]["packed"]) == 2 and data["packing"]["gain"] > 0
    assert data["eval"]["env_steps"] > 0 and data["eval"]["targets"] == 4
    cal = load_calibration(out)
    assert "measured" in cal.gpu_source and any("--smoke" in n for n in cal.notes)
