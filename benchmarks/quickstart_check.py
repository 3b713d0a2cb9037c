"""Record, and check against, the quickstart's expected results: the "unchanged" baseline of refactors.

The quickstart (``make quickstart``: 8 Reacher2d trials, LaMo and DT, 2 ratios x 2 seeds) is deterministic
*per machine*: the same commit on the same CPU gives bit-identical metrics, but float kernels differ between
CPU capabilities (``torch.backends.cpu.get_cpu_capability()``: ``AVX512`` with AMX, ``AVX2``, ...), so
another machine gives other numbers from the same code (docs/benchmarks.md, "Quickstart"). Hence:

* ``record``: store each trial's final score (the analysis's ``scores.csv``: config hash, data-subset hash,
  best RTG target, normalised score, raw return mean and std) with the commit and the CPU capability that
  produced them, in ``benchmarks/quickstart_baseline.json``;
* ``check``: compare a new ``scores.csv`` with the record. On the **same CPU capability** every trial must be
  identical (the first trial that differs is named); on **another capability** every cell's mean must lie
  within the recorded seed spread (``|mean_new - mean_recorded| <= max(std_recorded, std_new)`` per task x
  ratio x variant, sample std over seeds), and config and data-subset hashes must still be equal.

Usage::

    .venv/bin/lamo-sweep sweeps/quickstart.yaml            # writes lamo_runs/analysis/quickstart/scores.csv
    .venv/bin/python benchmarks/quickstart_check.py check   # exit 0: as recorded; 1: a difference (named)
    .venv/bin/python benchmarks/quickstart_check.py record  # after an intended change: a new record

Exit status: 0 equal (or within the spread), 1 different, 2 no scores file or no record.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "benchmarks" / "quickstart_baseline.json"
SCORES = REPO / "lamo_runs" / "analysis" / "quickstart" / "scores.csv"
_TRIAL_FIELDS = ("config_hash", "data_subset_hash", "rtg_target", "normalised_score", "return_mean", "return_std")


def cpu_capability() -> str:
    """torch's CPU kernel capability (``AVX512``, ``AVX2``, ``DEFAULT``, ...): what decides float results."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def read_trials(scores: Path) -> dict[str, dict]:
    """``{run name: {field: value}}`` of the FINISHED trials of a ``scores.csv`` (one row per trial)."""
    df = pd.read_csv(scores)
    df = df[df["status"] == "FINISHED"]
    return {str(r["run_name"]): {f: (r[f].item() if hasattr(r[f], "item") else r[f]) for f in _TRIAL_FIELDS}
            for _, r in df.sort_values("run_name").iterrows()}


def cells(trials: dict[str, dict]) -> dict[str, tuple[float, float, int]]:
    """``{"<task>_r<ratio>_<variant>": (mean, sample std, n)}`` of the normalised scores over seeds (the
    quickstart table's cells; the run name is ``<task>_r<ratio>_<variant>_s<seed>``)."""
    groups: dict[str, list[float]] = {}
    for name, t in trials.items():
        groups.setdefault(name.rsplit("_s", 1)[0], []).append(float(t["normalised_score"]))
    out = {}
    for key, v in sorted(groups.items()):
        s = pd.Series(v)
        out[key] = (float(s.mean()), float(s.std(ddof=1)) if len(v) > 1 else 0.0, len(v))
    return out


def compare(recorded: dict, trials: dict[str, dict], capability: str) -> list[str]:
    """The differences between a record and new trials (empty: as recorded); see the module docstring."""
    problems = []
    old = recorded["trials"]
    if set(old) != set(trials):
        problems.append(f"trials differ: recorded {sorted(old)}, now {sorted(trials)}")
        return problems
    for name in sorted(old):
        for f in ("config_hash", "data_subset_hash"):
            if old[name][f] != trials[name][f]:
                problems.append(f"{name}: {f} {old[name][f]} -> {trials[name][f]}")
    if capability == recorded["cpu_capability"]:
        for name in sorted(old):
            diff = [f"{f} {old[name][f]!r} -> {trials[name][f]!r}" for f in _TRIAL_FIELDS if old[name][f] != trials[name][f]]
            if diff:
                problems.append(f"first trial that differs (same CPU capability {capability}, so it must be "
                                f"identical): {name}: {'; '.join(diff)}")
                break
        return problems
    new_cells = cells(trials)
    for key, (m0, s0, _) in cells(old).items():
        m1, s1, _ = new_cells[key]
        if abs(m1 - m0) > max(s0, s1):
            problems.append(f"{key}: mean {m1:.2f} vs recorded {m0:.2f}, outside the seed spread "
                            f"{max(s0, s1):.2f} (recorded on {recorded['cpu_capability']}, now {capability})")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("record", "check"))
    ap.add_argument("--scores", type=Path, default=SCORES, help="the quickstart analysis's scores.csv")
    ap.add_argument("--record-file", type=Path, default=RECORD)
    a = ap.parse_args(argv)
    if not a.scores.is_file():
        print(f"error: {a.scores} not found: run `.venv/bin/lamo-sweep sweeps/quickstart.yaml` first", file=sys.stderr)
        return 2
    trials, capability = read_trials(a.scores), cpu_capability()
    if a.action == "record":
        a.record_file.write_text(json.dumps({"commit": _commit(), "cpu_capability": capability, "trials": trials,
                                             "cells": cells(trials)}, indent=1) + "\n")
        print(f"recorded {len(trials)} trials of commit {_commit()} on CPU capability {capability} -> {a.record_file}")
        return 0
    if not a.record_file.is_file():
        print(f"error: no record {a.record_file}; run `record` first", file=sys.stderr)
        return 2
    recorded = json.loads(a.record_file.read_text())
    problems = compare(recorded, trials, capability)
    how = ("exact (same CPU capability)" if capability == recorded["cpu_capability"] else
           f"within the seed spread (recorded on {recorded['cpu_capability']}, this machine {capability})")
    if problems:
        print(f"quickstart differs from the record of commit {recorded['commit']} [{how}]:\n  - " + "\n  - ".join(problems))
        return 1
    print(f"quickstart as recorded (commit {recorded['commit']}, {len(trials)} trials) [{how}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
