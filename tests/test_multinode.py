"""A multi-node Ray cluster on loopback: a head and a worker node started with ``ray start`` as separate
processes, sweeps submitted with ``lamo-sweep --address``. Per-trial resources pack as declared (4 trials
per "GPU" with ``gpu: 0.25``), and killing the worker node mid-sweep gets its trials rescheduled on the
head and finished from their checkpoints (shared storage: the same filesystem)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.schema import Sweep
from orchestrator.sweep import trial_workdir

pytestmark = pytest.mark.slow(reason="a two-node Ray cluster (ray start) and sweeps through it: ~2 min each")
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_processes(temp_dir: str) -> list[psutil.Process]:
    """Every process of the Ray cluster whose nodes were started with ``--temp-dir=temp_dir``: the node
    processes (their command lines name the temp dir) and all their descendants (workers, trials)."""
    roots = []
    for p in psutil.process_iter(["cmdline"]):
        if any(temp_dir in a for a in (p.info["cmdline"] or [])):
            roots.append(p)
    out = {p.pid: p for p in roots}
    for p in roots:
        try:
            out.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    return list(out.values())


@pytest.fixture()
def ray_temp_dir():
    """A Ray temp dir of this test's own. Nodes started with ``ray start --temp-dir`` record the cluster
    there, not in /tmp/ray/ray_current_cluster, where every local ``ray.init()`` on the machine (other
    tests' sweeps, other users of the machine) would find and join it. Short: Ray's socket paths under it
    must stay within the 107-byte AF_UNIX limit."""
    d = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture()
def head(tmp_path, monkeypatch, ray_temp_dir):
    import secrets

    port = free_port()
    # token authentication: every node and the driver share one token (RAY_AUTH_TOKEN, inherited)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    env = {**os.environ, "RAY_DEDUP_LOGS": "1"}
    # a fake GPU: Ray only does the bookkeeping, which is what packing is about
    r = subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                        "--num-gpus=1", "--include-dashboard=false", "--disable-usage-stats",
                        f"--temp-dir={ray_temp_dir}"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        # stop this cluster only (`ray stop --force` would stop every Ray of the machine's user)
        for p in ray_processes(ray_temp_dir):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(ray_processes(ray_temp_dir), timeout=30)


def sweep_cli(sweep: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", str(sweep), "--no-analysis",
                             "--address", address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trial_pid(wd: Path) -> int | None:
    try:
        return int((wd / "trial.pid").read_text())
    except (OSError, ValueError):
        return None


# Polls the cluster's resources (up to 60 s: Ray's resource view lags by up to ~1 s) until no GPU and no CPU
# is available; prints [total, available].
_RESOURCES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.time() + 60
while True:
    avail = ray.available_resources()
    if (avail.get("GPU", 0.0) == 0.0 and avail.get("CPU", 0.0) == 0.0) or time.time() > deadline:
        break
    time.sleep(0.5)
print(json.dumps([ray.cluster_resources(), avail]))
"""


# Waits (up to 60 s) until the cluster has sys.argv[2] alive nodes; exits non-zero if it does not.
_NODES = """
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.time() + 60
while len([n for n in ray.nodes() if n["Alive"]]) < int(sys.argv[2]):
    if time.time() > deadline:
        sys.exit(f"only {len([n for n in ray.nodes() if n['Alive']])} node(s) joined in 60 s")
    time.sleep(0.5)
"""


def test_fractional_gpu_packs_four_trials(head, tmp_path, make_sweep, wait_for):
    """Four trials of ``gpu: 0.25`` run at once on one (fake) GPU. Observed directly, not from timestamps:
    each trial process is paused (SIGSTOP) as soon as it has started, so none can finish and free its share;
    all four must then be running together, holding the whole GPU (and both CPUs) of the cluster."""
    sweep_file = make_sweep(tmp_path, "packing", ratios="0.25, 0.5, 0.75, 1.0", steps=40, every=40)
    text = sweep_file.read_text().replace("resources: {cpu: 1}", "resources: {cpu: 0.5, gpu: 0.25}")
    sweep_file.write_text(text)
    sweep = Sweep.load(sweep_file)
    wds = [trial_workdir(tmp_path / "runs", t) for t in sweep.trials]
    assert len(wds) == 4
    proc = sweep_cli(sweep_file, head)
    paused: dict[Path, int] = {}

    def pause_new_trials() -> bool:
        for wd in wds:
            pid = trial_pid(wd)
            if wd not in paused and pid is not None:
                os.kill(pid, signal.SIGSTOP)
                paused[wd] = pid
        return len(paused) == 4

    try:
        wait_for(pause_new_trials, timeout=300, proc=proc)  # a 1-trial-per-GPU packing never gets here
        # (a signal is delivered asynchronously: the last one may take a moment)
        wait_for(lambda: all(psutil.Process(pid).status() == psutil.STATUS_STOPPED for pid in paused.values()),
                 timeout=30)
        # Ray's view: the four running trials hold the whole GPU and both CPUs (asked from a process of its
        # own: a driver process keeps the first cluster token it read, so this one must not be the test's)
        r = subprocess.run([sys.executable, "-c", _RESOURCES, head], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        total, available = json.loads(r.stdout.strip().splitlines()[-1])
        assert (total["GPU"], total["CPU"]) == (1.0, 2.0)
        assert (available.get("GPU", 0.0), available.get("CPU", 0.0)) == (0.0, 0.0), available
    finally:
        for pid in paused.values():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "shipping the code in" in out  # the trials ran the checkout shipped as runtime_env working_dir
    assert {trial_pid(wd) for wd in wds} == set(paused.values())  # each finished in the process we paused
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("packing").experiment_id], "tags.`lamo.role` = 'trial'")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}


def test_worker_node_killed_mid_sweep(head, ray_temp_dir, tmp_path, make_sweep, wait_for, checkpoint_step,
                                      check_runs):
    sweep_file = make_sweep(tmp_path, "nodekill", ratios="0.25, 0.5, 1.0", steps=160, every=80)
    sweep = Sweep.load(sweep_file)
    worker = subprocess.Popen([RAY, "start", f"--address={head}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                               "--block", "--disable-usage-stats", f"--temp-dir={ray_temp_dir}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # asked from a process of its own, as in the packing test: a process that imported Ray before this
        # test's token was set (another test's, under pytest-xdist) keeps the token mode it first read
        r = subprocess.run([sys.executable, "-c", _NODES, head, "2"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        proc = sweep_cli(sweep_file, head)
        wds = [trial_workdir(tmp_path / "runs", t) for t in sweep.trials]
        node = psutil.Process(worker.pid)

        hit: dict[str, object] = {}

        def on_worker_with_checkpoint():
            mine = {p.pid for p in node.children(recursive=True)}
            for wd in wds:
                pid = trial_pid(wd)
                if pid in mine and checkpoint_step(wd) >= 20:
                    os.kill(pid, signal.SIGSTOP)  # it cannot finish before the node goes down
                    hit.update(wd=wd, pid=pid, step=checkpoint_step(wd))
                    return True
            return False

        wait_for(on_worker_with_checkpoint, proc=proc)
        assert 20 <= hit["step"] < 160, hit
        victims = [node, *node.children(recursive=True)]  # the whole worker node: raylet, its workers
        for p in victims:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    finally:
        if worker.poll() is None:
            os.killpg(os.getpgid(worker.pid), signal.SIGKILL)
    assert "reacher2d-medium" in out
    # the interrupted trial was finished by another process (on the head), from its checkpoint
    assert trial_pid(hit["wd"]) != hit["pid"] and checkpoint_step(hit["wd"]) == 160
    check_runs(tmp_path, "nodekill", sweep)  # every trial FINISHED once, metrics exactly once


# A driver joins the cluster twice: once with a plain ray.init (the control), once as lamo-sweep does
# (_ray_session); each time a task on the cluster reports what it sees of the driver's MLflow variables.
_ENV_PROBE = """
import json, os, sys
import ray
from orchestrator.sweep import _ray_session

@ray.remote(num_cpus=0)
def probe():
    return {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                                           "MLFLOW_TRACKING_PASSWORD")}

ray.init(address=sys.argv[1], log_to_driver=False)
plain = ray.get(probe.remote())
ray.shutdown()
with _ray_session(sys.argv[1], {"log_to_driver": False}):
    ours = ray.get(probe.remote())
print("@@" + json.dumps([plain, ours]))
"""


def test_mlflow_variables_reach_cluster_workers(head, tmp_path):
    """Workers of a cluster are started by its raylets, not by the driver: without forwarding they do not see
    the driver's MLFLOW_TRACKING_TOKEN (the control); with lamo-sweep's session (runtime_env) they do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_TOKEN="s3cret", MLFLOW_TRACKING_USERNAME="lamo",
               MLFLOW_TRACKING_PASSWORD="basic-auth-pw1",  # scripts/tracking_server.sh --host: basic auth
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", _ENV_PROBE, head], capture_output=True, text=True, env=env,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    plain, ours = json.loads(r.stdout.split("@@", 1)[1].splitlines()[0])
    assert plain == {"MLFLOW_TRACKING_TOKEN": None, "MLFLOW_TRACKING_USERNAME": None, "MLFLOW_TRACKING_PASSWORD": None}
    assert ours == {"MLFLOW_TRACKING_TOKEN": "s3cret", "MLFLOW_TRACKING_USERNAME": "lamo",
                    "MLFLOW_TRACKING_PASSWORD": "basic-auth-pw1"}


# A driver joins the cluster twice, with and without lamo-sweep's shipped code (runtime_env working_dir);
# each time a task reports where its `trainers` package and current directory are.
_CODE_PROBE = """
import json, os, sys
from pathlib import Path
import ray
from orchestrator.runtime_env import code_runtime_env
from orchestrator.sweep import _ray_session

@ray.remote(num_cpus=0)
def probe():
    import trainers
    root = Path(trainers.__file__).resolve().parents[1]
    return {"trainers": str(root), "cwd": os.getcwd(), "git": (root / ".git").exists(),
            "sweep_py": (root / "orchestrator" / "sweep.py").read_text()}

code = code_runtime_env(Path(sys.argv[2]) / "runs", Path(sys.argv[2]) / "data")
with _ray_session(sys.argv[1], {"log_to_driver": False}):
    plain = ray.get(probe.remote())
with _ray_session(sys.argv[1], {"log_to_driver": False}, code=code):
    ours = ray.get(probe.remote())
print("@@" + json.dumps([code["working_dir"], plain, ours]))
"""


def test_code_shipped_to_cluster_workers(head, tmp_path):
    """With lamo-sweep's runtime_env the cluster's workers import this checkout's code from the copy Ray
    unpacked on the node (its own directory, not the driver's checkout, without the git database); without
    it they import whatever the node's own environment gives (the control)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    r = subprocess.run([sys.executable, "-c", _CODE_PROBE, head, str(tmp_path)], capture_output=True, text=True,
                       env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    checkout, plain, ours = json.loads(r.stdout.split("@@", 1)[1].splitlines()[0])
    assert ours["trainers"] == ours["cwd"] != checkout and plain["trainers"] != ours["trainers"]
    assert "runtime_resources" in ours["cwd"] and not ours["git"]
    assert ours["sweep_py"] == (Path(checkout) / "orchestrator" / "sweep.py").read_text()
