"""Sweeps already run keep being recognised after the restructuring (issue #17): a trial's identity in
MLflow is its ``config_hash`` tag, and skip-finished and resume look FINISHED and unfinished child runs up
by it (``orchestrator/tracking.py``). ``tests/data/legacy_trial_configs.json`` holds, for one trial per
sweep file x variant x task, the config record (the child run's params) and the hash that the code before
the restructuring (commit 668bf7b) logged. Today's code must read each record back into the same config:
the same hash and the same record, through the one rule for fields added later
(:func:`trainers.config.later`)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO
from trainers.config import TrialConfig

LEGACY = json.loads((REPO / "tests" / "data" / "legacy_trial_configs.json").read_text())["trials"]


@pytest.mark.parametrize("entry", LEGACY, ids=[f"{e['sweep'].split('/')[-1]}:{e['trial']}" for e in LEGACY])
def test_a_logged_trial_config_has_the_same_identity_today(entry):
    cfg = TrialConfig.model_validate(entry["record"])
    assert cfg.record() == entry["record"]
    assert cfg.config_hash() == entry["config_hash"]


def test_a_new_field_at_its_default_leaves_the_identity_alone_and_a_set_one_changes_it():
    """The rule itself: every :func:`~trainers.config.later` field is absent from the record at its
    default, and present (changing the hash) once set."""
    from trainers.config import LATER

    base = TrialConfig.model_validate(LEGACY[0]["record"])
    later_fields = []

    def walk(model, prefix=""):
        for name, f in type(model).model_fields.items():
            if (f.json_schema_extra or {}).get(LATER):
                later_fields.append(prefix + name)
            v = getattr(model, name)
            if hasattr(type(v), "model_fields"):
                walk(v, prefix + name + ".")

    walk(base)
    assert {"baseline", "atari", "train.precision", "model.tied_action_head"} <= set(later_fields)
    record = base.record()
    for path in later_fields:  # absent at its default (a field inside an absent section is absent too)
        *parents, leaf = path.split(".")
        node = record
        for p in parents:
            node = node.get(p, {})
        assert leaf not in node, path
    changed = base.model_copy(update={"train": base.train.model_copy(update={"precision": "bf16"})})
    assert changed.record()["train"]["precision"] == "bf16" and changed.config_hash() != base.config_hash()
