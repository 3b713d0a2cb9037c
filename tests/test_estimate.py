"""The dry-run estimate (orchestrator/estimate.py): the FLOP model, its calibration from the recorded
benchmark rows, scheduling on N GPUs, a gpu_check JSON as calibration, and the CLI's labelled output."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.estimate import (CPU_CALIBRATION_ROWS, Trunk, calibrate_cpu, estimate_sweep, load_calibration,
                                   train_step_flops, trunk_of)
from orchestrator.schema import Sweep, parse_overrides
from tests.conftest import REPO


def test_gpt2_small_trunk_matches_its_published_size():
    # Kaplan et al. 2020 §2.1: N = 2 d n_layer (2 d_attn + d_ff) = 12 n_layer d^2 for d_ff = 4d: ~85M for 12 x 768
    t = Trunk(12, 768, 3072, 50257)
    assert t.matmul_params == 12 * (4 * 768**2 + 2 * 768 * 3072) == 84_934_656


def test_flop_model_follows_the_config():
    sw = Sweep.load(REPO / "sweeps/paper_mujoco.yaml")
    lamo = next(t for t in sw.trials if t.variant == "lamo")
    dt = next(t for t in sw.trials if t.variant == "dt")
    assert trunk_of(lamo) == Trunk(12, 768, 3072, 50257) and trunk_of(dt).n_layer == 3
    full = lamo.model_copy(update={"model": lamo.model.model_copy(update={"finetune": "full"})})
    assert train_step_flops(full) == pytest.approx(1.5 * train_step_flops(lamo))  # 3x vs 2x forward
    no_lang = lamo.model_copy(update={"language": lamo.language.model_copy(update={"weight": 0.0})})
    toks = lamo.language.batch_size * lamo.language.block_size
    t = trunk_of(lamo)
    extra = 2 * (t.forward_flops(toks, lamo.language.block_size) + 2 * toks * t.d * t.vocab)
    assert train_step_flops(lamo) - train_step_flops(no_lang) == pytest.approx(extra)
    cql = next(t for t in sw.trials if t.variant == "cql")
    with pytest.raises(ValueError, match="baseline"):
        train_step_flops(cql)


def test_cpu_calibration_is_the_median_of_the_cited_rows():
    rate, rows = calibrate_cpu()
    assert len(rows) == len(CPU_CALIBRATION_ROWS)
    for r, (_, _, _, _, steps_per_s, cite) in zip(rows, CPU_CALIBRATION_ROWS):
        assert r["row"] == cite and r["achieved_flops"] == pytest.approx(r["flops_per_step"] * steps_per_s)
        assert "docs/benchmarks.md" in cite
    assert rate == statistics.median(r["achieved_flops"] for r in rows)
    assert 1e9 < rate < 1e12  # a CPU thread: GFLOP/s, not TFLOP/s


def test_more_gpus_shorten_the_wall_time_not_the_gpu_hours():
    sw = Sweep.load(REPO / "sweeps/paper_mujoco.yaml")
    cal = load_calibration(None)
    e1, e8 = estimate_sweep(sw, 1, 2, cal), estimate_sweep(sw, 8, 2, cal)
    assert e1.gpu_hours == pytest.approx(e8.gpu_hours) and e1.gpu_hours > 0
    assert 6 < e1.wall_s / e8.wall_s <= 8.01
    cal.packing_gain = 2.0
    assert estimate_sweep(sw, 8, 2, cal).gpu_hours == pytest.approx(e8.gpu_hours / 2)


def test_gpu_fraction_decides_the_device(tmp_path):
    sw = Sweep.load(REPO / "sweeps/quickstart.yaml", parse_overrides(["variants.lamo.resources.gpu=0.5"]))
    est = estimate_sweep(sw, 2, 2, load_calibration(None))
    dev = {e.variant: e.gpu for e in est.trials}
    assert dev == {"lamo": 0.5, "dt": 0.0}
    assert est.gpu_hours > 0


def test_gpu_check_json_calibrates_the_gpu_rate(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"device": "H200", "trainer": [
        {"setting": "a", "s_per_step": 0.1, "flops_per_step": 2e12},
        {"setting": "b", "s_per_step": 0.2, "flops_per_step": 2e12},
        {"setting": "c", "s_per_step": 0.5, "flops_per_step": 2e12}], "packing": {"trials": 4, "gain": 1.6}}))
    cal = load_calibration(p)
    assert cal.gpu_flops == pytest.approx(1e13) and cal.packing_gain == 1.6 and "measured" in cal.gpu_source
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        load_calibration(bad)


def test_dry_run_prints_a_labelled_estimate_with_its_inputs(tmp_path):
    r = CliRunner().invoke(app, [str(REPO / "sweeps/paper_mujoco.yaml"), "--dry-run", "--gpus", "4",
                                 "--storage", str(tmp_path / "st")])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "ESTIMATE (not a measurement) on 4 GPUs" in out and "GPU-hours" in out
    assert "assumed (no GPU measurement recorded)" in out
    assert all(row[-1].split(",")[0] in out for row in CPU_CALIBRATION_ROWS)
    assert not (tmp_path / "st").exists()
    bad = CliRunner().invoke(app, [str(REPO / "sweeps/quickstart.yaml"), "--dry-run", "--calibration",
                                   str(tmp_path / "none.json"), "--storage", str(tmp_path / "st")])
    assert bad.exit_code == 2 and "--calibration" in bad.output
