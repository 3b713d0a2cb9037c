"""A real tracking server: ``scripts/tracking_server.sh`` (PostgreSQL + ``mlflow server``) under 16
concurrent trial writers, an unreachable URI, and a clean stop.

Needs PostgreSQL (Debian's ``postgresql``; the script installs it with apt-get when run as root) and
``psycopg2-binary`` in the venv. Skipped, with the reason, only when PostgreSQL cannot be installed.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

N_WRITERS, N_KEYS, N_STEPS = 16, 200, 5
HISTORY_KEYS = range(0, N_KEYS, 4)  # read back through REST per key; every key is counted in PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(srv: dict) -> list[str]:
    """Live (non-zombie) processes that belong to this server instance."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True).stdout
    marks = (srv["dir"], f"--port {srv['port']}", f"-p {srv['pg_port']}")
    return [line for line in out.splitlines()
            if any(m in line for m in marks) and line.split()[1][:1] != "Z" and "ps -eo" not in line]


def _setup(uri: str) -> tuple[str, str]:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.create_experiment(f"writers-{os.getpid()}-{time.time_ns()}")
    return exp, c.create_run(exp, run_name="sweep", tags={"lamo.role": "sweep"}).info.run_id


def _write(uri: str, exp: str, parent: str, seed: int) -> str:
    from orchestrator.tracking import TrialRun
    from trainers.config import TrialConfig

    run = TrialRun.open(uri, exp, parent, TrialConfig(task="reacher2d-medium", seed=seed, variant="writer"))
    for step in range(N_STEPS):  # one log_batch of N_KEYS metrics per step
        run.log_metrics(step, {f"loss/k{k:03d}": step * 1000 + k for k in range(N_KEYS)})
    run.finish("FINISHED")
    return run.run_id


def _history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Histories through the REST API (``MlflowClient.get_metric_history``), one request per key."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    return {f"loss/k{k:03d}": sorted((m.step, m.value) for m in c.get_metric_history(run_id, f"loss/k{k:03d}"))
            for k in HISTORY_KEYS}


def _db_counts(srv: dict, run_ids: list[str]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """``{(run_id, key): (points, distinct steps, max step)}`` straight from the backend store."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=srv["pg_port"], user="lamo", dbname="mlflow",
                            passfile=str(Path(srv["dir"]) / "pgpass"), connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_uuid, key, count(*), count(DISTINCT step), max(step) FROM metrics "
                        "WHERE run_uuid = ANY(%s) GROUP BY run_uuid, key", (run_ids,))
            return {(r, k): (n, ns, mx) for r, k, n, ns, mx in cur.fetchall()}
    finally:
        conn.close()


@pytest.mark.slow(reason="starts PostgreSQL + mlflow server (~15 s), then 16 concurrent writers (~15 s)")
def test_concurrent_writers_lose_nothing(tracking_server):
    server = tracking_server
    import mlflow  # noqa: F401 - imported once here, inherited by the forked writers

    import orchestrator.tracking  # noqa: F401

    uri = server["uri"]
    ctx = multiprocessing.get_context("fork")
    t0 = time.perf_counter()
    # every HTTP request is made in the workers: no client connection is shared across a fork
    with ProcessPoolExecutor(N_WRITERS, mp_context=ctx) as pool:
        exp, parent = pool.submit(_setup, uri).result(timeout=60)
        run_ids = list(pool.map(_write, [uri] * N_WRITERS, [exp] * N_WRITERS, [parent] * N_WRITERS,
                                range(N_WRITERS), timeout=120))
        t_write = time.perf_counter() - t0
        histories = list(pool.map(_history, [uri] * N_WRITERS, run_ids, timeout=120))
    print(f"[tracking server] {N_WRITERS} writers x {N_KEYS} metrics x {N_STEPS} steps: written in "
          f"{t_write:.1f} s, verified in {time.perf_counter() - t0 - t_write:.1f} s")
    assert len(set(run_ids)) == N_WRITERS
    counts = _db_counts(server, run_ids)
    assert set(counts) == {(r, f"loss/k{k:03d}") for r in run_ids for k in range(N_KEYS)}
    assert set(counts.values()) == {(N_STEPS, N_STEPS, N_STEPS - 1)}, "a metric point was lost or duplicated"
    for rid, hist in zip(run_ids, histories):
        assert len(hist) == len(HISTORY_KEYS)
        for key, points in hist.items():
            k = int(key[-3:])
            assert points == [(s, float(s * 1000 + k)) for s in range(N_STEPS)], (rid, key, points)

    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    runs = c.search_runs([exp], "tags.`lamo.role` = 'trial'", max_results=100)
    assert len(runs) == N_WRITERS and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent}
    assert all(len(r.data.metrics) == N_KEYS for r in runs)


def test_unreachable_uri_fails_fast():
    from orchestrator.tracking import TrackingError, check_reachable

    t0 = time.perf_counter()
    with pytest.raises(TrackingError, match=r"127\.0\.0\.1"):
        check_reachable(f"http://127.0.0.1:{_free_port()}")
    assert time.perf_counter() - t0 < 10


@pytest.mark.slow(reason="needs the running tracking server of this module (PostgreSQL + mlflow server)")
def test_status_and_stop_leave_no_process(tracking_server, tracking_script):
    server, _script = tracking_server, tracking_script
    r = _script("status", server, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "MLflow: running" in r.stderr and "PostgreSQL: running" in r.stderr
    assert _leftovers(server), "the server's processes should be visible while it runs"
    r = _script("stop", server, timeout=90)
    assert r.returncode == 0, r.stderr
    server["stopped"] = True
    deadline = time.time() + 10
    while _leftovers(server) and time.time() < deadline:
        time.sleep(0.2)
    assert not _leftovers(server), _leftovers(server)
    for port in (server["port"], server["pg_port"]):
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect(("127.0.0.1", port))
    r = _script("status", server, timeout=60)
    assert r.returncode == 1 and "MLflow: stopped" in r.stderr and "PostgreSQL: stopped" in r.stderr
    assert not list(Path(server["dir"]).glob("*.pid"))


# --- beyond loopback: MLflow's basic-auth app ------------------------------------------------------
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "tracking_server.sh"
MLFLOW = str(Path(__import__("sys").executable).parent / "mlflow")


def _start(tmp_path: Path, *args: str, env: dict | None = None, mlflow: str = MLFLOW,
           timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(["bash", str(SCRIPT), "start", "--dir", str(tmp_path / "state"), "--mlflow", mlflow,
                           "--port", str(_free_port()), "--pg-port", str(_free_port()), *args],
                          capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})})


@pytest.mark.parametrize("args, password, message", [
    (("--host", "0.0.0.0"), None, r"--host 0\.0\.0\.0 is not loopback\) and MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
    (("--host", "10.20.30.40"), None, r"MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
    (("--auth",), None, r"basic auth is on \(--auth / LAMO_MLFLOW_AUTH=1\)"),
    (("--host", "0.0.0.0"), "short-pw", r"has 8 characters; MLflow's basic auth needs >= 12"),
    (("--host", "0.0.0.0"), "password1234", r"default admin password that old MLflow"),
])
def test_beyond_loopback_refuses_to_start_without_a_real_admin_password(tmp_path, args, password, message):
    """Before anything starts (no PostgreSQL cluster, no server): a non-loopback host, or --auth, needs the
    admin's password, of MLflow's minimum length, and not the default old MLflow versions shipped."""
    env = {} if password is None else {"MLFLOW_AUTH_ADMIN_PASSWORD": password}
    r = _start(tmp_path, *args, env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "state" / "pg").exists() and not (tmp_path / "state" / "mlflow.pid").exists()


def test_missing_auth_extra_is_named(tmp_path):
    """An MLflow whose environment lacks Flask-WTF (the ``mlflow[auth]`` extra): refused before anything
    starts, naming the package to install (a stand-in ``python`` beside the ``mlflow`` executable that
    cannot import it)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mlflow").write_text("#!/bin/sh\nexit 99\n")
    (fake / "python").write_text("#!/bin/sh\nexit 1\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    r = _start(tmp_path, "--host", "0.0.0.0", env={"MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-admin-pw"},
               mlflow=str(fake / "mlflow"))
    assert r.returncode == 1 and "needs Flask-WTF" in r.stderr and "mlflow[auth]" in r.stderr, r.stderr
    assert not (tmp_path / "state" / "pg").exists()


def test_bad_host_is_refused(tmp_path):
    r = _start(tmp_path, "--host", "a b;rm")
    assert r.returncode == 2 and "bad --host" in r.stderr


@pytest.mark.slow(reason="starts PostgreSQL + mlflow server with the basic-auth app (~20 s)")
def test_basic_auth_server_refuses_anonymous_and_logs_for_the_admin(tmp_path, monkeypatch):
    """``start --auth`` (on loopback, as a non-loopback host runs it): an unauthenticated or wrongly
    authenticated request is refused (401); a client with MLFLOW_TRACKING_USERNAME / _PASSWORD (what the
    workers get, tests/test_multinode.py) logs a trial run through the project's writer."""
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed in the venv")
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs Flask-WTF (the mlflow[auth] extra), "
                        "which this venv lacks (requirements.lock and lamo-sweep[server] have it)")
    import requests

    # the PostgreSQL cluster runs as `postgres` when we are root: a traversable directory (see conftest)
    d = Path(tempfile.mkdtemp(prefix="lamo-auth-", dir="/tmp"))
    os.chmod(d, 0o755)
    password = "lamo-test-" + os.urandom(8).hex()
    ports = ["--port", str(_free_port()), "--pg-port", str(_free_port())]
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env = {**base, "LAMO_MLFLOW": MLFLOW, "MLFLOW_AUTH_ADMIN_PASSWORD": password}

    def script(cmd):
        return subprocess.run(["bash", str(SCRIPT), cmd, "--dir", str(d), "--auth", *ports], capture_output=True,
                              text=True, timeout=240, env=env)

    try:
        r = script("start")
        if r.returncode != 0 and "PostgreSQL (initdb, pg_ctl) not found" in r.stderr:
            pytest.skip(f"PostgreSQL cannot be installed here: {r.stderr.strip().splitlines()[-1]}")
        assert r.returncode == 0, r.stderr
        uri = r.stdout.strip().splitlines()[-1]
        assert "basic auth" in r.stderr
        assert oct((d / "basic_auth.ini").stat().st_mode)[-3:] == "600" and password not in (d / "basic_auth.ini").read_text()
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(search, timeout=10).status_code == 401
        assert requests.get(search, auth=("admin", "wrong-password-1"), timeout=10).status_code == 401
        assert requests.get(search, auth=("admin", password), timeout=10).status_code == 200

        from orchestrator.tracking import TrialRun, ensure_experiment
        from trainers.config import TrialConfig

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        from mlflow.tracking import MlflowClient

        exp = ensure_experiment(uri, "auth-check", None)
        parent = MlflowClient(uri).create_run(exp, run_name="sweep").info.run_id
        run = TrialRun.open(uri, exp, parent, TrialConfig(task="reacher2d-medium", seed=0, variant="auth"))
        run.log_metrics(0, {"train/action_loss": 1.5})
        run.finish("FINISHED")
        got = requests.get(f"{uri}/api/2.0/mlflow/runs/get", params={"run_id": run.run_id},
                           auth=("admin", password), timeout=10).json()["run"]
        assert got["info"]["status"] == "FINISHED"
        assert {m["key"]: m["value"] for m in got["data"]["metrics"]} == {"train/action_loss": 1.5}
        assert requests.get(f"{uri}/api/2.0/mlflow/runs/get", params={"run_id": run.run_id},
                            timeout=10).status_code == 401
    finally:
        script("stop")
        import shutil

        shutil.rmtree(d, ignore_errors=True)
