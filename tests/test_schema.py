"""Sweep-file validation, grid expansion and config hashing (no compute)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from orchestrator.schema import Sweep, SweepError, parse_overrides
from tests.conftest import REPO
from trainers.config import TrialConfig

GOOD = """
name: t
base: {train: {steps: 10}}
variants:
  lamo: {model: {lm: lamo-wiki-tiny, init: pretrained, embedding: mlp, finetune: lora}, language: {weight: 0.1}}
  dt: {model: {lm: null, embedding: linear, finetune: full}}
grid: {task: [reacher2d-medium], sample_ratio: [0.1, 1.0], seed: [0, 1], variant: [lamo, dt]}
"""


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def errors_of(tmp_path, text) -> SweepError:
    with pytest.raises(SweepError) as ei:
        Sweep.load(write(tmp_path, text))
    return ei.value


def test_expansion_order_values_and_hashes(tmp_path):
    sw = Sweep.load(write(tmp_path, GOOD))
    assert len(sw.trials) == 8
    assert [t.slug() for t in sw.trials[:2]] == ["reacher2d-medium_r0.1_lamo_s0", "reacher2d-medium_r0.1_dt_s0"]
    lamo = sw.trials[0]
    assert lamo.model.finetune == "lora" and lamo.language.weight == 0.1 and lamo.train.steps == 10
    assert lamo.K == 5 and lamo.scale == 10.0 and lamo.targets == [76.0, 40.0]
    dt = sw.trials[1]
    assert dt.model.lm is None and dt.model.embedding == "linear" and dt.language.weight == 0.0
    hashes = {t.config_hash() for t in sw.trials}
    assert len(hashes) == 8
    # the hash is a pure function of the resolved config
    again = Sweep.load(write(tmp_path, GOOD, "again.yaml"))
    assert [t.config_hash() for t in again.trials] == [t.config_hash() for t in sw.trials]
    assert TrialConfig.model_validate(lamo.model_dump()).config_hash() == lamo.config_hash()


def test_hash_changes_with_any_hyperparameter():
    a = TrialConfig(task="reacher2d-medium")
    b = TrialConfig(task="reacher2d-medium", train={"lr": 2e-4})
    c = TrialConfig(task="reacher2d-medium", eval={"episodes": 3})
    assert len({a.config_hash(), b.config_hash(), c.config_hash()}) == 3


def test_overrides_and_extra_axes(tmp_path):
    text = GOOD.replace("variant: [lamo, dt]}", "variant: [lamo], axes: {language.weight: [0.0, 0.5]}}")
    sw = Sweep.load(write(tmp_path, text), parse_overrides(["train.steps=3", "eval.episodes=2"]))
    assert len(sw.trials) == 2 * 2 * 2
    assert {t.language.weight for t in sw.trials} == {0.0, 0.5}
    assert all(t.train.steps == 3 and t.eval.episodes == 2 for t in sw.trials)


@pytest.mark.parametrize(
    "mutation, field, words",
    [
        (("embedding: mlp", "embeding: mlp"), "variants.lamo.model.embeding", "did you mean 'embedding'"),
        (("sample_ratio: [0.1, 1.0]", "sample_ratio: [0.1, 1.5]"), "grid.sample_ratio", "(0, 1]"),
        (("sample_ratio: [0.1, 1.0]", "sample_ratio: [0, 1.0]"), "grid.sample_ratio", "(0, 1]"),
        (("sample_ratio: [0.1, 1.0]", "sample_ratio: []"), "grid.sample_ratio", "at least 1"),
        (("task: [reacher2d-medium]", "task: [reacher2d-meduim]"), "grid.task", "did you mean 'reacher2d-medium'"),
        (("variant: [lamo, dt]", "variant: [lamo, dtt]"), "grid.variant[1]", "did you mean 'dt'"),
        (("steps: 10", "steps: ten"), "base.train.steps", "integer"),
        (("name: t", "name: t\nbogus: 1"), "bogus", "unknown key"),
        (("finetune: lora", "finetune: lora2"), "variants.lamo.model.finetune", "'lora', 'full' or 'frozen'"),
    ],
)
def test_bad_files_name_the_field(tmp_path, mutation, field, words):
    e = errors_of(tmp_path, GOOD.replace(*mutation))
    fields = [loc for loc, _ in e.problems]
    assert any(f.startswith(field) for f in fields), e
    assert words.lower() in str(e).lower(), str(e)


def test_empty_variants_duplicate_keys_and_unsafe_yaml(tmp_path):
    e = errors_of(tmp_path, "name: t\nvariants: {}\ngrid: {task: [reacher2d-medium]}\n")
    assert any(loc == "variants" for loc, _ in e.problems)
    e = errors_of(tmp_path, GOOD + "variants: {x: {}}\n")
    assert "duplicate key 'variants'" in str(e)
    e = errors_of(tmp_path, "name: !!python/object/apply:os.system ['true']\n")
    assert "tags such as !!python/object are refused" in str(e)
    with pytest.raises(SweepError, match="cannot read"):
        Sweep.load(tmp_path / "nope.yaml")


def test_language_loss_without_lm_is_rejected(tmp_path):
    e = errors_of(tmp_path, GOOD.replace("dt: {model: {lm: null,", "dt: {language: {weight: 0.2}, model: {lm: null,"))
    assert "language.weight > 0 needs a language model" in str(e)


def test_repo_sweeps_validate():
    assert len(Sweep.load(REPO / "sweeps" / "quickstart.yaml").trials) == 8
    low = Sweep.load(REPO / "sweeps" / "low_data.yaml")
    assert len(low.trials) == 72
    assert {t.task for t in low.trials} == {"hopper-medium", "halfcheetah-medium", "walker2d-medium"}
    assert {t.sample_ratio for t in low.trials} == {0.005, 0.01, 0.1, 1.0}
    lamo = next(t for t in low.trials if t.variant == "lamo")
    assert (lamo.model.lm, lamo.model.lora.rank, lamo.model.lora.alpha, lamo.language.block_size) == ("gpt2", 16, 32, 1024)
    assert (lamo.train.lr, lamo.train.warmup_steps, lamo.train.grad_clip, lamo.K) == (1e-4, 2500, 0.25, 20)
    hop = Sweep.load(REPO / "sweeps" / "hopper_offline.yaml")
    assert len(hop.trials) == 8 and {t.data.source for t in hop.trials} == {"collected"}
    assert {t.model.lm for t in hop.trials} == {"lamo-wiki-tiny", None}


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_dry_run_and_exit_codes(tmp_path):
    r = run_cli(str(REPO / "sweeps" / "low_data.yaml"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "72 trials" in r.stdout and "gpu=0.25" in r.stdout and "walker2d-medium_r0.005_dt_s2" in r.stdout
    bad = write(tmp_path, GOOD.replace("seed: [0, 1]", "seed: [0, -1]"))
    r = run_cli(str(bad), "--dry-run")
    assert r.returncode == 2 and "grid.seed" in r.stderr
    r = run_cli(str(REPO / "sweeps" / "quickstart.yaml"), "--set", "trainsteps")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    # a real run of the paper grid stops before any compute and says how to provide data and LM
    r = run_cli(str(REPO / "sweeps" / "low_data.yaml"), "--storage", str(tmp_path / "st"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "hopper_medium-v2.hdf5" in r.stderr and "hf download gpt2" in r.stderr
    assert not (tmp_path / "st" / "mlflow.db").exists()


def test_presets_layering(tmp_path):
    text = """
    name: p
    base: {train: {warmup_steps: 7}, model: {lm: lamo-wiki-tiny}}
    variants:
      lamo: {preset: lamo, language: {block_size: 64}}
      dt: {preset: dt}
      frozen: {preset: lamo-frozen}
    grid: {task: [hopper-medium]}
    """
    lamo, dt, frozen = Sweep.load(write(tmp_path, text)).trials
    # preset < base < variant overrides
    assert (lamo.model.embedding, lamo.model.finetune, lamo.language.weight) == ("mlp", "lora", 0.1)
    assert lamo.model.lm == "lamo-wiki-tiny" and lamo.language.block_size == 64 and lamo.train.warmup_steps == 7
    assert (dt.model.arch.n_layer, dt.model.arch.n_embd, dt.model.arch.n_head, dt.model.arch.activation) == (3, 128, 1, "relu")
    assert dt.train.weight_decay == 1e-4 and dt.train.adam_eps == 1e-8 and dt.train.warmup_steps == 7
    assert frozen.model.finetune == "frozen" and frozen.model.embedding == "mlp"
    e = errors_of(tmp_path, text.replace("preset: dt", "preset: dtt"))
    assert any(loc == "variants.dt.preset" for loc, _ in e.problems) and "did you mean 'dt'" in str(e).lower()


def test_ablation_sweep_validates():
    sw = Sweep.load(REPO / "sweeps" / "ablations.yaml")
    assert len(sw.trials) == 36
    by = {t.variant: t for t in sw.trials}
    assert by["linear-embeddings"].model.embedding == "linear"
    assert by["random-init"].model.init == "random" and by["no-language-loss"].language.weight == 0
