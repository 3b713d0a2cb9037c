"""Per-variant ``resources`` blocks and ``--set`` flags that reach ``grid``, ``resources`` and ``variants``
(issue #19 §3), and the YAML loader's own module (issue #17 §5)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.schema import Sweep, SweepError, parse_overrides

GOOD = """
name: t
resources: {cpu: 2, gpu: 0.5}
base: {train: {steps: 10}}
variants:
  lamo: {preset: lamo, model: {lm: lamo-wiki-tiny}, language: {block_size: 128}}
  dt: {preset: dt, resources: {gpu: 0.125}}
grid: {task: [reacher2d-medium], sample_ratio: [0.1, 1.0], seed: [0, 1], variant: [lamo, dt]}
"""


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load(tmp_path, text=GOOD, *sets):
    return Sweep.load(write(tmp_path, text), parse_overrides(list(sets)) if sets else None)


def test_variant_resources_merge_over_the_sweeps(tmp_path):
    sw = load(tmp_path)
    by = {t.variant: sw.trial_resources(t) for t in sw.trials}
    assert (by["lamo"].cpu, by["lamo"].gpu) == (2, 0.5)   # the sweep's block
    assert (by["dt"].cpu, by["dt"].gpu) == (2, 0.125)     # its own gpu, the sweep's cpu
    assert dict(sw.resource_blocks()) == {"resources": by["lamo"], "variants.dt.resources": by["dt"]}


def test_resources_are_not_part_of_the_trial_hash(tmp_path):
    plain = load(tmp_path, GOOD.replace(", resources: {gpu: 0.125}", ""))
    per_variant = load(tmp_path)
    more = load(tmp_path, GOOD, "variants.lamo.resources.gpu=1", "resources.cpu=4")
    hashes = [[t.config_hash() for t in s.trials] for s in (plain, per_variant, more)]
    assert hashes[0] == hashes[1] == hashes[2]
    assert [more.trial_resources(t).gpu for t in more.trials][:2] == [1.0, 0.125]


@pytest.mark.parametrize("sets, check", [
    (["grid.seed=[0,1,2]"], lambda s: sorted({t.seed for t in s.trials}) == [0, 1, 2] and len(s.trials) == 12),
    (["variants.lamo.model.lm=gpt2"], lambda s: {t.model.lm for t in s.trials if t.variant == "lamo"} == {"gpt2"}),
    (["resources.gpu=0.25"], lambda s: s.spec.resources.gpu == 0.25),
    (["train.steps=7"], lambda s: {t.train.steps for t in s.trials} == {7}),
    (["base.train.steps=8"], lambda s: {t.train.steps for t in s.trials} == {8}),
    (["grid.variant=[dt]"], lambda s: {t.variant for t in s.trials} == {"dt"}),
    (["max_concurrent_trials=3"], lambda s: s.spec.max_concurrent_trials == 3),
])
def test_set_reaches_every_section(tmp_path, sets, check):
    sw = load(tmp_path, GOOD, *sets)
    assert check(sw)


@pytest.mark.parametrize("sets, field, words", [
    (["resources.gpu=-1"], "--set resources.gpu", "greater than or equal to 0"),
    (["resources.gpux=1"], "--set resources.gpux", "did you mean 'gpu'"),
    (["variants.lamx.model.lm=gpt2"], "--set variants.lamx.model.lm", "did you mean 'lamo'"),
    (["variants.dt.resources.cpu=0"], "--set variants.dt.resources.cpu", "greater than 0"),
    (["grid.seed=[0,-1]"], "--set grid.seed", "seeds must be >= 0"),
    (["grid.seed=3"], "--set grid.seed", "YAML list"),
    (["grd.seed=[0]"], "--set grd.seed", "did you mean 'grid'"),
    (["train.stpes=5"], "--set train.stpes", "did you mean 'steps'"),
    (["grid.seed=[0"], "--set grid.seed", "not a YAML value"),
    ([".x=1"], "--set", "empty key"),
])
def test_set_errors_name_the_flag_not_the_file(tmp_path, sets, field, words):
    with pytest.raises(SweepError) as ei:
        load(tmp_path, GOOD, *sets)
    e = ei.value
    assert e.source == "command line" and "invalid --set flag" in str(e), str(e)
    assert any(loc.startswith(field) and words.lower() in msg.lower() for loc, msg in e.problems), str(e)
    assert "s.yaml" not in str(e)


def test_file_problem_still_blames_the_file_with_flags_given(tmp_path):
    with pytest.raises(SweepError) as ei:
        load(tmp_path, GOOD.replace("{gpu: 0.125}", "{gpu: -2}"), "train.steps=5")
    assert ei.value.source.endswith("s.yaml")
    assert ei.value.problems[0][0] == "variants.dt.resources.gpu"


@pytest.mark.parametrize("block, field, words", [
    ("{gpus: 1}", "variants.dt.resources.gpus", "did you mean 'gpu'"),
    ("{gpu: -1}", "variants.dt.resources.gpu", "greater than or equal to 0"),
    ("7", "variants.dt.resources", "must be a mapping"),
])
def test_bad_variant_resources_name_the_field(tmp_path, block, field, words):
    with pytest.raises(SweepError) as ei:
        load(tmp_path, GOOD.replace("{gpu: 0.125}", block))
    assert any(loc == field and words.lower() in msg.lower() for loc, msg in ei.value.problems), str(ei.value)


def test_tune_gets_one_request_per_trial_only_when_they_differ(tmp_path):
    pytest.importorskip("ray")
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    from orchestrator.sweep import trial_resource_request

    same = load(tmp_path, GOOD.replace(", resources: {gpu: 0.125}", ""))
    assert trial_resource_request(same, same.trials) == {"cpu": 2.0, "gpu": 0.5}
    sw = load(tmp_path)
    req = trial_resource_request(sw, sw.trials)
    assert callable(req)
    for t in sw.trials:
        pgf = req({"trial": t.config_hash()})
        assert isinstance(pgf, PlacementGroupFactory)
        assert pgf.required_resources["GPU"] == (0.5 if t.variant == "lamo" else 0.125)
        assert pgf.required_resources["CPU"] == 2.0


def test_local_resource_check_names_the_variant_block(tmp_path):
    from orchestrator.schema import local_resource_problems

    sw = load(tmp_path, GOOD.replace("{gpu: 0.125}", "{cpu: 100000}"))
    probs = [p for f, r in sw.resource_blocks() for p in local_resource_problems(r, f)]
    assert any(loc == "variants.dt.resources.cpu" for loc, _ in probs), probs


def test_yaml_loader_module_keeps_line_numbered_errors(tmp_path):
    from orchestrator import schema, yaml_loader

    assert schema.read_yaml is yaml_loader.read_yaml and schema.SweepError is yaml_loader.SweepError
    p = write(tmp_path, "name: t\nbase: {}\nbase: {}\n")
    with pytest.raises(SweepError) as ei:
        yaml_loader.read_yaml(p)
    assert "duplicate key 'base' at line 3 (first at line 2)" in str(ei.value)


_TUNER_SCRIPT = """
import json, sys
import ray
from ray import tune
from orchestrator.schema import Sweep
from orchestrator.sweep import trial_resource_request

sw = Sweep.load(sys.argv[1])

def report(config):
    r = tune.get_context().get_trial_resources().required_resources
    tune.report({"cpu": r.get("CPU", 0.0), "gpu": r.get("GPU", 0.0)})

ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=sys.argv[3])
try:
    res = tune.Tuner(tune.with_resources(report, trial_resource_request(sw, sw.trials)),
                     param_space={"trial": tune.grid_search([t.config_hash() for t in sw.trials])},
                     run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0)).fit()
    print("@@" + json.dumps({r.config["trial"]: [r.metrics["cpu"], r.metrics["gpu"]] for r in res}))
finally:
    ray.shutdown()
"""


@pytest.mark.slow(reason="starts a local Ray (2 CPUs, 1 declared GPU) and runs 8 no-op Tune trials: ~30-60 s")
def test_tune_gives_each_trial_its_variants_resources(tmp_path):
    """The per-trial request reaches Ray Tune: each trial of a real Tuner reports the resources it got
    (``tune.get_context().get_trial_resources()``); a declared GPU (no device needed) lets GPU fractions
    be scheduled on a CPU machine. The Tuner runs in a fresh interpreter: a Ray started in the pytest
    process would inherit the Ray state (auth token) that earlier tests left in it."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    text = GOOD.replace("resources: {cpu: 2, gpu: 0.5}", "resources: {cpu: 0.5, gpu: 0.5}")
    sw = load(tmp_path, text)
    want = {t.config_hash(): [sw.trial_resources(t).cpu, sw.trial_resources(t).gpu] for t in sw.trials}
    assert len({tuple(v) for v in want.values()}) == 2
    sweep_file = write(tmp_path, text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    ray_tmp = tmp_path / "ray" if len(str(tmp_path)) < 60 else Path("/tmp") / f"ray-{os.getpid()}"
    r = subprocess.run([sys.executable, "-c", _TUNER_SCRIPT, str(sweep_file), str(tmp_path / "tune"), str(ray_tmp)],
                       capture_output=True, text=True, timeout=600, env={**env, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    got = json.loads(next(line[2:] for line in r.stdout.splitlines() if line.startswith("@@")))
    assert got == want
