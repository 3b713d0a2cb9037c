"""Each d3rlpy method's settings as one typed class (``trainers/baseline_settings.py``; issue #17 §2): the
registry names them, another method's field is refused naming both methods before any compute, and the
section keeps the flat record trials were first hashed with (no compute: configs only)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.conftest import REPO
from trainers.baseline_settings import _UNSET, BASELINE_SETTINGS, NoBaseline
from trainers.config import TrialConfig
from trainers.config_base import is_later
from trainers.methods import METHODS, baseline_method
from trainers.presets import get_preset

LEGACY = json.loads((REPO / "tests" / "data" / "legacy_trial_configs.json").read_text())["trials"]
TASK = {False: "hopper-medium", True: "breakout-medium"}  # a task of each action space


def _trial(algo: str, **settings) -> TrialConfig:
    cls = BASELINE_SETTINGS[algo]
    return TrialConfig(task=TASK[cls.discrete_actions], model={"lm": None, "init": "random"},
                       language={"weight": 0}, baseline={"algo": algo, **settings})


def test_every_settings_class_belongs_to_one_registered_method():
    named = [s for m in METHODS.values() for s in m.settings]
    assert len(named) == len(set(named))
    assert set(BASELINE_SETTINGS.values()) == {NoBaseline, *named}
    for algo, cls in BASELINE_SETTINGS.items():
        if cls is not NoBaseline:
            assert baseline_method(algo).settings.count(cls) == 1 and cls.d3rlpy_config
    assert TrialConfig(task="hopper-medium").baseline == NoBaseline()


@pytest.mark.parametrize("algo", [a for a in BASELINE_SETTINGS if a != "none"])
def test_another_methods_field_is_refused_naming_the_field_and_both_methods(algo):
    cls = BASELINE_SETTINGS[algo]
    foreign = [n for n in _UNSET if n not in cls.model_fields]
    assert foreign
    for name in foreign:
        owners = [c.label for c in BASELINE_SETTINGS.values() if name in c.model_fields]
        with pytest.raises(ValidationError) as e:
            _trial(algo, **{name: 1})
        msg = str(e.value)
        assert f"baseline.{name} is a setting of" in msg and f"not of {cls.label} (baseline.algo {algo!r}" in msg
        assert all(o in msg for o in owners) and ", ".join(cls.settings()) in msg
    # at its unset value (how a logged record lists it) another method's field is accepted and dropped
    assert _trial(algo, **{n: _UNSET[n][0] for n in foreign}) == _trial(algo)


def test_a_sequence_model_has_no_baseline_settings_and_an_unknown_name_gets_the_closest():
    with pytest.raises(ValidationError, match="baseline.expectile is a setting of IQL; this trial is a sequence"):
        TrialConfig(task="hopper-medium", baseline={"expectile": 0.7})
    with pytest.raises(ValidationError, match="Did you mean 'conservative_weight'"):
        _trial("cql", conservativ_weight=1.0)
    with pytest.raises(ValidationError, match="Did you mean 'iql'"):
        TrialConfig(task="hopper-medium", baseline={"algo": "iqll"})


def test_settings_a_method_cannot_use_are_refused():
    """A setting the old single class accepted but the algorithm ignored (``clip`` on a continuous one) or
    crashed on (BC has one optimiser, no actor schedule) is refused at validation now."""
    with pytest.raises(ValidationError, match="reward_scale"):
        _trial("cql", reward_scale="clip")
    with pytest.raises(ValidationError, match="actor_cosine_schedule is a setting of CQL, IQL and TD3"):
        _trial("bc", actor_cosine_schedule=True)
    with pytest.raises(ValidationError, match="pixel encoder"):
        _trial("discrete_bc", hidden_units=[64])


def test_the_record_is_the_flat_layout_trials_were_first_hashed_with():
    """Every setting name the first baselines (CQL, IQL, TD3+BC, BC) were logged with is a plain field;
    every other name is a ``later`` field, so a new method's names leave the existing trials' records alone."""
    first = {k for e in LEGACY if (b := e["record"].get("baseline")) and b["algo"] in ("cql", "iql", "td3bc", "bc")
             for k in b} - {"algo"}
    assert first and {n for n, (_, late) in _UNSET.items() if not late} == first
    for algo, cls in BASELINE_SETTINGS.items():
        if algo == "none":
            continue
        cfg = TrialConfig(task=TASK[cls.discrete_actions], **get_preset(baseline_method(algo).preset,
                                                                        "atari" if cls.discrete_actions else None))
        assert cfg.baseline.algo == algo
        rec = cfg.record()["baseline"]
        mine = {n: v for n, v in cfg.baseline.model_dump(mode="json").items() if n in cls.model_fields}
        later_at_default = {n for n, f in cls.model_fields.items() if is_later(f) and getattr(cfg.baseline, n) == f.default}
        assert set(rec) == (first | {"algo"} | set(mine)) - later_at_default
        assert all(rec[n] == _UNSET[n][0] for n in first - set(cls.model_fields))
        # the full dump, the partial dump and the record all read back into the same config
        for dump in (cfg.model_dump(mode="json"), cfg.model_dump(exclude_defaults=True), cfg.record()):
            again = TrialConfig.model_validate(dump)
            assert again == cfg and again.config_hash() == cfg.config_hash()


def test_a_grid_axis_can_name_a_methods_setting():
    from orchestrator.schema import Sweep, SweepError

    sweep = {"name": "x", "storage": "runs", "variants": {"cql": {"preset": "cql"}},
             "grid": {"task": ["hopper-medium"], "sample_ratio": [0.5], "seed": [0],
                      "axes": {"baseline.conservative_weight": [1.0, 10.0]}}}
    assert [t.baseline.conservative_weight for t in Sweep.from_dict(sweep).trials] == [1.0, 10.0]
    sweep["grid"]["axes"] = {"baseline.conservativ_weight": [1.0]}
    with pytest.raises(SweepError, match="Did you mean 'conservative_weight'"):
        Sweep.from_dict(sweep)
