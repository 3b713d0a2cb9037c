"""Sweep-file validation, grid expansion and config hashing (no compute)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from orchestrator.schema import Sweep, SweepError, parse_overrides
from tests.conftest import REPO
from trainers.config import TrialConfig

GOOD = """
name: t
base: {train: {steps: 10}}
variants:
  lamo: {model: {lm: lamo-wiki-tiny, init: pretrained, embedding: mlp, finetune: lora}, language: {weight: 0.1}}
  dt: {preset: dt}
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
    e = errors_of(tmp_path, GOOD.replace("dt: {preset: dt}", "dt: {preset: dt, language: {weight: 0.2}}"))
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


@pytest.mark.slow(reason="fresh `lamo-sweep` interpreters (torch, Ray, MLflow imports) per exit code: ~10 s")
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
    """defaults (LaMo) < preset < base < the variant's own fields; and each trial builds what its preset
    says: the DT trial is a randomly initialised 3 x 128 GPT-2, not the base LM's architecture."""
    from trainers.model import DecisionTransformer

    text = """
    name: p
    base: {train: {warmup_steps: 7}, model: {lm: lamo-wiki-tiny}}
    variants:
      lamo: {preset: lamo, language: {block_size: 64}}
      dt: {preset: dt, model: {lm: null}, train: {warmup_steps: 7}}
      frozen: {preset: lamo-frozen}
    grid: {task: [hopper-medium]}
    """
    lamo, dt, frozen = Sweep.load(write(tmp_path, text)).trials
    assert (lamo.model.embedding, lamo.model.finetune, lamo.language.weight) == ("mlp", "lora", 0.1)
    assert lamo.model.lm == "lamo-wiki-tiny" and lamo.language.block_size == 64 and lamo.train.warmup_steps == 7
    assert (frozen.model.finetune, frozen.model.embedding, frozen.model.lm) == ("frozen", "mlp", "lamo-wiki-tiny")
    assert (dt.train.weight_decay, dt.train.adam_eps, dt.train.warmup_steps, dt.language.weight) == (1e-4, 1e-8, 7, 0)
    task = dt.task_spec
    model = DecisionTransformer(dt, task.obs_dim, task.act_dim, task.max_ep_len, None)
    conf = model.lm.config
    assert (conf.n_layer, conf.n_embd, conf.n_head, conf.n_inner, conf.activation_function) == (3, 128, 1, 512, "relu")
    assert isinstance(model.embed_state, torch.nn.Linear) and isinstance(model.predict_action[-1], torch.nn.Tanh)
    frozen_names = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen_names and all("wpe" in n for n in frozen_names)  # full training; only the zeroed positions
    e = errors_of(tmp_path, text.replace("preset: dt", "preset: dtt"))
    assert any(loc == "variants.dt.preset" for loc, _ in e.problems) and "did you mean 'dt'" in str(e).lower()


def test_base_cannot_silently_replace_what_a_preset_sets(tmp_path):
    """``base: {model: {lm: X}}`` with ``preset: dt`` would build a random-init copy of X: refused before
    any compute, naming the variant, the preset's field, the base field and the fix; the same for --set."""
    text = """
    name: p
    base: {train: {warmup_steps: 7}, model: {lm: lamo-wiki-tiny}}
    variants:
      lamo: {preset: lamo}
      dt: {preset: dt}
    grid: {task: [hopper-medium]}
    """
    e = errors_of(tmp_path, text)
    by_field = {msg.split(" = ")[0].removeprefix("preset 'dt' sets "): msg for loc, msg in e.problems
                if loc == "variants.dt"}
    assert set(by_field) == {"model.lm", "train.warmup_steps"}, e.problems
    assert "base.model.lm = 'lamo-wiki-tiny'" in by_field["model.lm"]
    assert "set variants.dt.model.lm" in by_field["model.lm"]
    assert all(loc == "variants.dt" for loc, _ in e.problems)  # lamo takes base values freely
    # restated in the variant: accepted, and the variant's value wins
    ok = text.replace("dt: {preset: dt}", "dt: {preset: dt, model: {lm: null}, train: {warmup_steps: 7}}")
    lamo, dt = Sweep.load(write(tmp_path, ok)).trials
    assert dt.model.lm is None and lamo.model.lm == "lamo-wiki-tiny"
    # a command-line override is held to the same rule, and named as such
    with pytest.raises(SweepError) as exc:
        Sweep.load(write(tmp_path, ok), {"train": {"weight_decay": 0.5}})
    assert "--set train.weight_decay = 0.5" in str(exc.value) and "variants.dt" in str(exc.value)


def test_lm_with_arch_is_refused():
    """``model.arch`` is ignored when an LM is set, so setting both is an error naming the fix."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="model.arch shapes the backbone only when model.lm is null"):
        TrialConfig(task="hopper-medium", model={"lm": "gpt2", "arch": {"n_layer": 1}})
    assert TrialConfig(task="hopper-medium", model={"lm": None, "init": "random", "arch": {"n_layer": 1}},
                       language={"weight": 0}).model.arch.n_layer == 1


def test_presets_are_pure_differences_from_the_defaults():
    """The trial-config defaults are LaMo's recipe; every preset validates and changes each field it sets."""
    from trainers.presets import DOMAIN_VARIANTS, VARIANT_PRESETS, leaves

    assert VARIANT_PRESETS["lamo"] == {}
    defaults = leaves(TrialConfig(task="hopper-medium").model_dump())
    atari_only = {v["atari"] for v in DOMAIN_VARIANTS.values() if "atari" in v}  # Atari recipes
    for name, preset in VARIANT_PRESETS.items():
        cfg = TrialConfig.model_validate({"task": "breakout-medium" if name in atari_only else "hopper-medium",
                                          **preset})
        # a baseline's settings: the defaults of its method's settings class (trainers/baseline_settings.py)
        own = leaves({"baseline": type(cfg.baseline)().model_dump()})
        for path, value in leaves(preset).items():
            default = own[path] if path in own and path != "baseline.algo" else defaults[path]
            assert default != value, f"preset {name!r} restates the default {path} = {value!r}"


def test_ablation_sweep_validates():
    sw = Sweep.load(REPO / "sweeps" / "ablations.yaml")
    assert len(sw.trials) == 36
    by = {t.variant: t for t in sw.trials}
    assert by["linear-embeddings"].model.embedding == "linear"
    assert by["random-init"].model.init == "random" and by["no-language-loss"].language.weight == 0
