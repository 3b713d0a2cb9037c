"""What a sweep invocation plans from its experiment (:func:`orchestrator.tracking.plan_sweep`), without
Ray or training: the trials with a FINISHED run are skipped, the trials added or changed since the
sweep's latest invocation and the number no longer in it are noted and logged. The same through a real
sweep and its re-run: tests/test_sweep_e2e.py (slow)."""

from __future__ import annotations

from pathlib import Path

from orchestrator import tracking
from orchestrator.schema import Sweep
from trainers import contract as C

SWEEP = """
name: planned
storage: {storage}
variants: {{dt: {{preset: dt}}}}
grid: {{task: [reacher2d-medium], sample_ratio: [0.1, 1.0], seed: [0, 1]}}
"""


def test_plan_skips_finished_trials_and_notes_what_changed(tmp_path: Path, new_sqlite_uri):
    p = tmp_path / "planned.yaml"
    p.write_text(SWEEP.format(storage=tmp_path / "runs"))
    sweep = Sweep.load(p)
    trials, slugs = sweep.trials, [t.slug() for t in sweep.trials]
    (tmp_path / "runs").mkdir()
    uri = new_sqlite_uri(tmp_path / "runs")
    said: list[str] = []

    first = tracking.plan_sweep(uri, sweep, said.append)  # an empty experiment: everything runs
    assert [t.slug() for t in first.todo] == slugs and first.skipped == [] and said == []
    assert first.changes == {"previous_parent_run_id": None, "added": [], "removed": 0}

    # an earlier invocation ran trials 0-2 and one the sweep no longer has; trials 1 and 3 FINISHED since
    gone = trials[0].model_copy(update={"seed": 7})
    prev = tracking.start_parent_run(uri, first.experiment_id, sweep.spec.name, None, [*trials[:3], gone], 0)
    c = tracking.client(uri)
    for t in (trials[1], trials[3]):
        rid = c.create_run(first.experiment_id, tags={C.ROLE: C.ROLE_TRIAL, C.CONFIG_HASH: t.config_hash()}).info.run_id
        c.set_terminated(rid, "FINISHED")

    plan = tracking.plan_sweep(uri, sweep, said.append)
    assert plan.experiment_id == first.experiment_id
    assert [t.slug() for t in plan.todo] == [slugs[0], slugs[2]]  # the sweep's order kept
    assert plan.skipped == [slugs[1], slugs[3]]
    assert plan.changes == {"previous_parent_run_id": prev, "added": [slugs[3]], "removed": 1}
    assert said == [
        f"[sweep] 2 trial(s) already FINISHED in experiment {sweep.experiment!r}: skipped",
        f"[sweep] the sweep changed since its last invocation (parent run {prev}): 1 new or changed trial(s) "
        f"will run; 1 trial(s) no longer in the sweep are left alone (their runs are kept)",
    ]
