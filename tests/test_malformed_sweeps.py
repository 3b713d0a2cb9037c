"""Bad input is refused before any compute: every file in ``tests/malformed/`` goes through the real CLI
(``python -m orchestrator.cli FILE``) and must exit with status 2, name the field, say the expected
words, and leave nothing behind (no storage directory, no ``mlflow.db``).

Each file starts with ``# expect: FIELD | WORDS`` (``-`` for a problem of the file as a whole, where the
file's path is named instead) and may have ``# args: FLAGS`` (default ``--dry-run``); ``--storage`` is
always pointed at a scratch directory that must still be absent afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MALFORMED = REPO / "tests" / "malformed"
CASES = sorted(MALFORMED.glob("*.yaml"))


def _header(path: Path) -> tuple[str, str, list[str]]:
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    assert lines and lines[0].startswith("# expect:"), f"{path.name}: first line must be '# expect: FIELD | WORDS'"
    field, words = (x.strip() for x in lines[0].removeprefix("# expect:").split("|", 1))
    args = ["--dry-run"]
    for line in lines[1:]:
        if not line.startswith("#"):
            break
        if line.startswith("# args:"):
            args = shlex.split(line.removeprefix("# args:"))
    return field, words, args


def _norm(text: str) -> str:
    """Undo rich's wrapping and boxes so that messages can be matched as one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _run_cli(path: Path, args: list[str], scratch: Path) -> subprocess.CompletedProcess:
    scratch.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", str(path), *args, "--storage",
                           str(scratch / "st")], capture_output=True, text=True, cwd=scratch, timeout=180,
                          env={**{k: v for k, v in os.environ.items() if k != "LAMO_DATA_DIR"},
                               "PYTHONPATH": str(REPO)})


# Runs the real CLI entry point (``orchestrator.cli.main``, what ``python -m orchestrator.cli`` calls) once
# per case in ONE fresh interpreter: argv, cwd and environment as for a separate ``python -m orchestrator.cli``
# run, stdout/stderr captured per case, the exit status taken from SystemExit (an uncaught exception is
# reported with its traceback and status 1, as the interpreter would). Interpreter start-up and imports,
# ~0.5 s a case, are paid once instead of ~60 times.
_BATCH = r"""
import contextlib, io, json, os, sys, traceback
env = dict(os.environ)
from orchestrator.cli import main
out = []
for path, args, scratch in json.loads(sys.stdin.read()):
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["lamo-sweep", path, *args, "--storage", os.path.join(scratch, "st")]
    o, e, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            main()
        except SystemExit as x:
            code = x.code if isinstance(x.code, int) else (0 if x.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    out.append([path, code, o.getvalue(), e.getvalue()])
sys.__stdout__.write(json.dumps(out))
"""


def _run_cli_batch(cases: list[tuple[Path, list[str], Path]]) -> dict[Path, subprocess.CompletedProcess]:
    for _, _, scratch in cases:
        scratch.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-c", _BATCH], input=json.dumps([[str(p), a, str(s)] for p, a, s in cases]),
                       capture_output=True, text=True, cwd=cases[0][2], timeout=600,
                       env={**{k: v for k, v in os.environ.items() if k != "LAMO_DATA_DIR"}, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    return {Path(p): subprocess.CompletedProcess([p], code, out, err) for p, code, out, err in json.loads(r.stdout)}


def _is_resource_case(path: Path) -> bool:
    """Cases without --dry-run: resource checks against this machine (each starts the CLI on its own)."""
    return "--dry-run" not in _header(path)[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every --dry-run case, run once (in one interpreter, :data:`_BATCH`): ``{path: (result, scratch)}``."""
    base = tmp_path_factory.mktemp("malformed")
    dry = [p for p in CASES if not _is_resource_case(p)]
    return {p: (r, base / p.stem) for p, r in _run_cli_batch([(p, _header(p)[2], base / p.stem) for p in dry]).items()}


def _assert_nothing_created(scratch: Path) -> None:
    assert not (scratch / "st").exists(), f"storage was created: {list((scratch / 'st').rglob('*'))[:5]}"
    assert not (scratch / "lamo_runs").exists()
    assert not list(scratch.rglob("mlflow.db")) and not list(scratch.rglob("mlruns"))


def test_there_are_enough_cases():
    assert len(CASES) >= 30
    assert len({p.name[:2] for p in CASES}) == len(CASES), "case numbers must be unique"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_malformed_file_is_refused(path, results, tmp_path):
    field, words, args = _header(path)
    if "--dry-run" not in args:  # resource cases: only meaningful where this machine lacks what is asked
        from orchestrator.schema import Sweep, local_resource_problems

        if not [p for f, res in Sweep.load(path).resource_blocks() for p in local_resource_problems(res, f)]:
            pytest.skip("this machine has the resources the file asks for")
        r, scratch = _run_cli(path, args, tmp_path / path.stem), tmp_path / path.stem  # a process of its own
    else:
        r, scratch = results[path]
    err = _norm(r.stderr)
    assert r.returncode == 2, f"exit {r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    if field == "-":
        assert str(path) in err, err
    elif field.startswith("--"):
        assert field in err, err
    else:  # a problem line "  - FIELD: message" (FIELD[i] or "FIELD ('value')" for list items)
        assert re.search(rf"- {re.escape(field)}[:\[ ]", err), err
    assert _norm(words).lower() in err.lower(), err
    _assert_nothing_created(scratch)


def _unreadable(kind: str, tmp: Path) -> Path:
    if kind == "directory":
        (tmp / "sweep.yaml").mkdir()
    elif kind == "broken-symlink":
        (tmp / "sweep.yaml").symlink_to(tmp / "gone.yaml")
    elif kind == "no-permission":
        if os.geteuid() == 0:
            pytest.skip("root reads files whatever their mode")
        (tmp / "sweep.yaml").write_text("name: x\n")
        (tmp / "sweep.yaml").chmod(0)
    return tmp / "sweep.yaml"


@pytest.mark.parametrize("kind, words", [
    ("directory", "it is a directory"),
    ("broken-symlink", "broken symbolic link"),
    ("missing", "No such file or directory"),
    ("no-permission", "Permission denied"),
])
def test_unreadable_path_is_refused(tmp_path, kind, words):
    path = _unreadable(kind, tmp_path)
    r = _run_cli(path, ["--dry-run"], tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    err = _norm(r.stderr)
    assert "cannot read the file" in err and words in err and str(path) in err, err
    _assert_nothing_created(tmp_path)


def test_paper_grid_stays_listable_on_any_machine(tmp_path):
    """``--dry-run`` only warns about resources this machine lacks (low_data asks 0.25 GPU per trial)."""
    from orchestrator.schema import local_gpu_count

    r = _run_cli(REPO / "sweeps" / "low_data.yaml", ["--dry-run"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "72 trials valid" in _norm(r.stdout)
    if local_gpu_count() == 0:
        assert "warning" in r.stderr and "- resources.gpu:" in _norm(r.stderr)
    _assert_nothing_created(tmp_path)


@pytest.mark.slow(reason="fresh `lamo-sweep --dry-run` interpreters: ~9 s")
def test_dry_run_lists_the_inputs_a_run_would_prepare_or_lacks(tmp_path):
    """The offline Hopper sweep on an empty storage: the dry run names the dataset it would collect and the
    LM it would pre-train, makes neither, and the paper grid's missing D4RL files and GPT-2 are warned about."""
    r = _run_cli(REPO / "sweeps" / "hopper_offline.yaml", ["--dry-run"], tmp_path)
    out = _norm(r.stdout)
    assert r.returncode == 0, r.stderr
    assert "collect hopper-medium-sb3-v0 (1,000,000 transitions" in out and "pre-train project LM lamo-wiki-tiny" in out
    _assert_nothing_created(tmp_path)
    r = _run_cli(REPO / "sweeps" / "low_data.yaml", ["--dry-run"], tmp_path)
    err = _norm(r.stderr)
    assert r.returncode == 0 and "inputs missing" in err
    assert "hopper_medium-v2.hdf5" in err  # (GPT-2 is reported too where the hub cache lacks it)
    _assert_nothing_created(tmp_path)


def test_plain_yaml_features_are_accepted(tmp_path):
    """Anchors, aliases and merge keys are plain YAML: only unsafe tags and duplicates are refused."""
    from orchestrator.schema import Sweep

    p = tmp_path / "anchors.yaml"
    p.write_text("name: anchors\n"
                 "x-train: &train {steps: 10, warmup_steps: 2}\n"
                 "base: {train: {<<: *train, steps: 20}}\n"
                 "variants: {dt: {preset: dt}}\n"
                 "grid: {task: [reacher2d-medium]}\n")
    text = p.read_text()
    with pytest.raises(Exception, match="x-train: unknown key"):  # top-level keys are still checked
        Sweep.load(p)
    p.write_text(text.replace("x-train: &train {steps: 10, warmup_steps: 2}\n", "")
                 .replace("base: {train: {<<: *train, steps: 20}}",
                          "base: {train: &train {steps: 20, warmup_steps: 2}}\n"
                          "variants: {dt: {preset: dt, train: {<<: *train, steps: 30}}}")
                 .replace("variants: {dt: {preset: dt}}\n", "", 1))
    (t,) = Sweep.load(p).trials
    assert (t.train.steps, t.train.warmup_steps) == (30, 2)
