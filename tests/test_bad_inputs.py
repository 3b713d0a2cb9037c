"""A bad dataset is refused once, in the driver, before any compute.

Each bad D4RL-layout file (a NaN, a truncated file, a missing key, mismatched lengths, a wrong
observation width) goes through the real ``lamo-sweep`` entry point (:func:`orchestrator.cli.main`) and
must exit 3 with the loader's message, with no Ray started and no MLflow run (parent or child), no
trials directory and no Ray Tune directory left behind. ``lamo-trial run`` must report the same data
error on one stderr line with exit 3 and no traceback.

The CLI cases run in ONE subprocess that calls the entry point once per case (``sys.argv`` set, stdout
and stderr separated by markers): the interpreter start-up and imports (torch, transformers, mlflow)
cost several seconds and are paid once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import REPO

OBS, ACT, N = 11, 3, 60  # hopper-medium widths; 3 episodes of 20 steps

SWEEP = """
name: bad-{case}
storage: {storage}
data_dir: {storage}/data
resources: {{cpu: 1, gpu: 0}}
base:
  data: {{source: d4rl, path: {path}}}
  train: {{steps: 4, batch_size: 4, log_every: 2}}
  eval: {{every_steps: 4, episodes: 1, max_episode_steps: 5}}
variants:
  dt: {{preset: dt, model: {{arch: {{n_layer: 1, n_embd: 16, n_head: 1, n_inner: 32}}}}, train: {{warmup_steps: 1}}}}
grid: {{task: [hopper-medium], sample_ratio: [1.0], seed: [0, 1], variant: [dt]}}
"""


def _good(path: Path, obs_dim: int = OBS) -> None:
    from trainers.data.d4rl_hdf5 import write_d4rl_hdf5

    rng = np.random.default_rng(0)
    timeouts = np.zeros(N, bool)
    timeouts[19::20] = True
    write_d4rl_hdf5(path, {"observations": rng.normal(size=(N, obs_dim)).astype(np.float32),
                           "actions": rng.uniform(-1, 1, size=(N, ACT)).astype(np.float32),
                           "rewards": rng.normal(size=N).astype(np.float32),
                           "terminals": np.zeros(N, bool), "timeouts": timeouts}, {"note": "test"})


def _nan(path: Path) -> None:
    _good(path)
    with h5py.File(path, "r+") as f:
        f["observations"][7, 2] = np.nan


def _truncated(path: Path) -> None:
    _good(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _missing_key(path: Path) -> None:
    _good(path)
    with h5py.File(path, "r+") as f:
        del f["timeouts"]


def _mismatched(path: Path) -> None:
    _good(path)
    with h5py.File(path, "r+") as f:
        r = f["rewards"][()]
        del f["rewards"]
        f.create_dataset("rewards", data=r[:-5])


def _wide(path: Path) -> None:
    _good(path, obs_dim=OBS + 1)


# case -> (maker, regex of the loader's message, after the file path)
CASES = {
    "nan": (_nan, r"key 'observations' contains NaN/inf \(first at row 7\); drop or repair those transitions"),
    "truncated": (_truncated, r"(cannot read the HDF5 file|not an HDF5 file).*re-download or re-create it"),
    "missing-key": (_missing_key, r"missing key 'timeouts' .*re-create the file with trainers.data.collect"),
    "mismatched": (_mismatched, rf"key 'rewards' has {N - 5} rows but 'observations' has {N}; every key needs one row"),
    "wide-obs": (_wide, rf"key 'observations' has width {OBS + 1} but the task expects obs_dim={OBS}"),
}

_DRIVER = textwrap.dedent("""
    import json, sys, time
    cases = json.loads(sys.argv[1])
    for name, module, argv in cases:
        mod = __import__(module, fromlist=["main"])
        for stream in (sys.stdout, sys.stderr):
            print(f"@@BEGIN {name}", file=stream, flush=True)
        sys.argv = argv
        t0 = time.perf_counter()
        try:
            mod.main()
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        for stream in (sys.stdout, sys.stderr):
            print(f"@@END {name} {rc} {time.perf_counter() - t0:.1f}s", file=stream, flush=True)
""")


def _split(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"@@BEGIN (\S+)\n(.*?)@@END \1 ", text, re.S)}


def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case through ``lamo-sweep`` (and one through ``lamo-trial run``) in one subprocess."""
    root = tmp_path_factory.mktemp("bad_inputs")
    cases, meta = [], {}
    for case, (make, _) in CASES.items():
        d = root / case
        d.mkdir()
        path = d / "hopper_medium-v2.hdf5"
        make(path)
        sweep = d / "sweep.yaml"
        sweep.write_text(SWEEP.format(case=case, storage=d / "st", path=path))
        cases.append((f"sweep-{case}", "orchestrator.cli", ["lamo-sweep", str(sweep), "--no-analysis",
                                                             "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]))
        meta[case] = (path, d / "st")
    nan_sweep = root / "nan" / "sweep.yaml"
    cases.append(("trial-nan", "orchestrator.trial_cli",
                  ["lamo-trial", "run", "--sweep", str(nan_sweep), "--index", "0", "--workdir", str(root / "trial")]))
    env = {k: v for k, v in os.environ.items() if k not in ("LAMO_DATA_DIR", "RAY_ADDRESS")}
    r = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(cases)], capture_output=True, text=True,
                       cwd=root, timeout=300, env={**env, "PYTHONPATH": str(REPO), "COLUMNS": "400"})
    assert r.returncode == 0, r.stderr[-4000:]
    codes = dict(re.findall(r"@@END (\S+) (-?\d+)", r.stdout))
    return {"codes": {k: int(v) for k, v in codes.items()}, "out": _split(r.stdout), "err": _split(r.stderr),
            "meta": meta, "root": root}


def _runs_of(root: Path, experiment: str) -> int:
    """Runs (parent or child) of ``experiment`` in the store the cases share (one store: creating an
    MLflow SQLite store costs seconds)."""
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_experiment_by_name(experiment)
    return 0 if exp is None else len(MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_runs([exp.experiment_id]))


# slow: the fixture's one subprocess imports torch, transformers, mlflow and Ray Tune's helpers and
# creates an MLflow SQLite store (15-40 s on 2 shared cores); the cases themselves take well under 1 s each
@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_dataset_stops_the_sweep_before_any_compute(runs, case):
    path, storage = runs["meta"][case]
    err = _norm(runs["err"][f"sweep-{case}"])
    assert runs["codes"][f"sweep-{case}"] == 3, err[-3000:]
    assert "Traceback" not in err, err
    assert re.search(re.escape(str(path)) + r": " + CASES[case][1], err), err
    assert "dataset of task 'hopper-medium'" in err and "used by 2 trials" in err, err
    assert "nothing was started" in err, err
    assert err.count("is unusable") == 1, "one problem for the one distinct dataset of both trials"
    assert (runs["root"] / "mlflow.db").exists(), "the tracking store should have been checked first"
    assert _runs_of(runs["root"], f"bad-{case}") == 0, "an MLflow run was opened"
    assert not (storage / "trials").exists(), "a trial started"
    assert not (storage / "ray").exists(), "Ray Tune started"
    assert "[trial]" not in runs["out"][f"sweep-{case}"]


@pytest.mark.slow  # shares the slow fixture above
def test_lamo_trial_reports_a_data_error_on_one_line(runs):
    path, _ = runs["meta"]["nan"]
    err = runs["err"]["trial-nan"]
    assert runs["codes"]["trial-nan"] == 3, err[-3000:]
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(re.escape(str(path)) + ": " + CASES["nan"][1], lines[0]), lines[0]
    assert not (runs["root"] / "trial").exists(), "training started"


def test_a_good_file_passes_and_each_distinct_input_is_checked_once(tmp_path):
    from trainers.config import TrialConfig
    from trainers.inputs import validate_inputs

    good, bad = tmp_path / "good.hdf5", tmp_path / "bad.hdf5"
    _good(good)
    _nan(bad)
    cfgs = [TrialConfig.model_validate({"task": "hopper-medium", "seed": s, "model": {"lm": None, "init": "random"},
                                        "language": {"weight": 0.0}, "data": {"source": "d4rl", "path": str(p)}})
            for p in (good, bad) for s in (0, 1, 2)]
    assert validate_inputs(cfgs[:3], tmp_path) == []
    problems = validate_inputs(cfgs, tmp_path)
    assert len(problems) == 1 and problems[0].path == str(bad) and "used by 3 trials" in problems[0].what
    assert "\n" not in problems[0].one_line()

