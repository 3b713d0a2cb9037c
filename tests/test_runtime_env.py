"""The code a cluster's workers get (``orchestrator.runtime_env``), without a cluster: the ``runtime_env``
that ``lamo-sweep --address`` builds, zipped by Ray's own packaging code as Ray would upload it; and what
``_ray_session`` hands to ``ray.init``. The same against a real ``ray start`` cluster:
tests/test_multinode.py::test_code_shipped_to_cluster_workers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from orchestrator.runtime_env import (REPO_ROOT, STATIC_EXCLUDES, ShipCodeError, code_excludes, code_runtime_env,
                                      is_checkout)
from tests.conftest import REPO


def _package(env: dict, tmp_path: Path) -> zipfile.ZipFile:
    """The zip Ray uploads for ``env`` (``ray._private.runtime_env.packaging.create_package``, the function
    ``ray.init`` uses for a local ``working_dir``); ``.gitignore`` files ignored, so only our excludes count."""
    from ray._private.runtime_env.packaging import create_package

    target = tmp_path / "pkg.zip"
    create_package(env["working_dir"], target, include_gitignore=False, excludes=env["excludes"])
    return zipfile.ZipFile(target)


def _fake_checkout(root: Path) -> None:
    for rel in ("pyproject.toml", "orchestrator/__init__.py", "orchestrator/sweep.py", "trainers/__init__.py",
                "trainers/data/collect.py", "analysis/__init__.py", "analysis/paper_numbers.yaml",
                "sweeps/quickstart.yaml", "tests/data/legacy_trial_configs.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("code\n")
    junk = (".git/objects/pack/pack-1.pack", ".venv/lib/python3.11/site-packages/torch/lib.so",
            "lamo_runs/mlflow.db", "lamo_runs/trials/x/checkpoint/state.pt", "data/d4rl/hopper.hdf5",
            "myruns/ray/experiment_state.json", "mydata/lm/model.safetensors", "trainers/__pycache__/x.pyc",
            "orchestrator/__pycache__/sweep.cpython-311.pyc", "lamo_sweep.egg-info/PKG-INFO")
    for rel in junk:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * 1000)


def test_ships_the_code_and_nothing_a_run_writes(tmp_path):
    root = tmp_path / "checkout"
    _fake_checkout(root)
    env = code_runtime_env(root / "myruns", root / "mydata", root=root)
    assert env["working_dir"] == str(root.resolve())
    assert env["excludes"][:len(STATIC_EXCLUDES)] == list(STATIC_EXCLUDES)
    assert env["excludes"][len(STATIC_EXCLUDES):] == ["/myruns/", "/mydata/"]  # the sweep's own directories
    names = {n for n in _package(env, tmp_path).namelist() if not n.endswith("/")}
    assert names == {"pyproject.toml", "orchestrator/__init__.py", "orchestrator/sweep.py", "trainers/__init__.py",
                     "trainers/data/collect.py", "analysis/__init__.py", "analysis/paper_numbers.yaml",
                     "sweeps/quickstart.yaml", "tests/data/legacy_trial_configs.json"}


def test_run_directories_outside_the_checkout_add_no_pattern(tmp_path):
    root = tmp_path / "checkout"
    _fake_checkout(root)
    assert code_excludes(root, tmp_path / "elsewhere", Path("/shared/lamo/data")) == list(STATIC_EXCLUDES)
    # a storage named like a code directory is anchored at the top, so trainers/data/ stays
    assert code_excludes(root, root / "trainers" / "data")[-1] == "/trainers/data/"
    assert "/data/" in STATIC_EXCLUDES and "data" not in STATIC_EXCLUDES


def test_refuses_a_storage_that_is_the_checkout(tmp_path):
    root = tmp_path / "checkout"
    _fake_checkout(root)
    with pytest.raises(ShipCodeError, match=r"--storage / --data-dir.*--no-ship-code"):
        code_runtime_env(root, root / "data", root=root)


def test_an_installed_copy_is_not_shipped(tmp_path):
    site = tmp_path / "site-packages"
    for pkg in ("orchestrator", "trainers", "analysis"):
        (site / pkg).mkdir(parents=True)
    assert not is_checkout(site) and code_runtime_env(tmp_path / "runs", tmp_path / "data", root=site) is None


def test_this_checkout_zips_small_with_its_code(tmp_path):
    """The real checkout as Ray would upload it: every tracked file under the code packages is in it, the
    git database is not, and it is far below Ray's limit (GCS_STORAGE_MAX_SIZE)."""
    import subprocess

    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    assert REPO_ROOT == REPO and is_checkout(REPO)
    env = code_runtime_env(REPO / "lamo_runs", REPO / "lamo_runs" / "data")
    zf = _package(env, tmp_path)
    names = set(zf.namelist())
    tracked = subprocess.run(["git", "ls-files", "orchestrator", "trainers", "analysis", "sweeps"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    assert tracked and set(tracked) <= names, sorted(set(tracked) - names)[:5]
    assert not any(n == ".git" or n.startswith((".git/", ".venv/", "lamo_runs/")) or "__pycache__" in n
                   for n in names)
    size = (tmp_path / "pkg.zip").stat().st_size
    print(f"[runtime_env] {REPO} zips to {size / 2**20:.2f} MiB ({len(names)} entries); Ray's limit "
          f"{GCS_STORAGE_MAX_SIZE / 2**20:.0f} MiB")
    assert size < 32 * 2**20 < GCS_STORAGE_MAX_SIZE


def test_ray_session_hands_code_and_credentials_to_ray_init(monkeypatch):
    """What ``ray.init`` receives on ``--address``: the shipped code and the driver's MLflow credentials
    (basic auth of scripts/tracking_server.sh: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)."""
    import ray

    from orchestrator import sweep

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(ray, "shutdown", lambda: seen.update(shutdown=True))
    for k in [k for k in __import__("os").environ if k.startswith(("MLFLOW_", "DATABRICKS_"))]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "lamo")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a-long-secret-1")
    code = {"working_dir": "/x/checkout", "excludes": ["/data/"]}
    with sweep._ray_session("10.0.0.5:6379", {}, code=code):
        pass
    assert seen["address"] == "10.0.0.5:6379" and seen["shutdown"]
    assert seen["runtime_env"] == {"working_dir": "/x/checkout", "excludes": ["/data/"], "env_vars": {
        "MLFLOW_TRACKING_USERNAME": "lamo", "MLFLOW_TRACKING_PASSWORD": "a-long-secret-1"}}
    seen.clear()  # a working_dir the caller gives (a test, a RayJob's own) wins over ours
    with sweep._ray_session("auto", {"runtime_env": {"working_dir": "/theirs"}}, code=code):
        pass
    assert seen["runtime_env"]["working_dir"] == "/theirs" and "excludes" not in seen["runtime_env"]
