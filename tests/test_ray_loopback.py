"""A local sweep's Ray listens on loopback only.

A fresh driver process starts Ray exactly as ``lamo-sweep`` does (:func:`orchestrator.sweep._ray_session`
without ``--address``, which uses :func:`orchestrator.ray_local.loopback_node_ip`), runs one task so that a worker exists, and lists the listening TCP sockets of its
own process tree (the driver and its descendants: GCS server, raylet, agents, workers). Other engineers'
Rays on this machine are not descendants of this driver, so they are never looked at.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

_DRIVER = textwrap.dedent("""
    import json, os, time
    import psutil, ray
    import ray._private.ray_constants as ray_constants
    from orchestrator.ray_local import _RAY_CLUSTER_ENV
    from orchestrator.sweep import _ray_session

    def listening():
        me = psutil.Process()
        out = []
        for p in [me] + me.children(recursive=True):
            try:
                name = p.name()
                conns = p.net_connections("inet")
            except psutil.Error:
                continue
            out += [{"pid": p.pid, "name": name, "ip": c.laddr.ip, "port": c.laddr.port}
                    for c in conns if c.status == psutil.CONN_LISTEN]
        return out

    with _ray_session(None, {"num_cpus": 1, "log_to_driver": False}):
        node_ip = ray.util.get_node_ip_address()

        @ray.remote
        def pid():
            return os.getpid()

        worker = ray.get(pid.remote())
        deadline, socks = time.monotonic() + 60, []
        while time.monotonic() < deadline:  # the agents start in the background
            socks = listening()
            names = {s["name"] for s in socks}
            if {"gcs_server", "raylet", "ray::RuntimeEnvAgent"} <= names and worker in {s["pid"] for s in socks}:
                break
            time.sleep(1)
    print("@@RESULT " + json.dumps({
        "node_ip": node_ip, "worker": worker, "sockets": socks,
        "env_after": os.environ.get(_RAY_CLUSTER_ENV), "cluster_const_after": ray_constants.ENABLE_RAY_CLUSTER}))
""")


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:127.0.0.1, how a dual-stack gRPC server reports 127.0.0.1
    return addr.is_loopback


# slow: starts a real local Ray (GCS, raylet, agents, a worker) in a fresh process: 15-40 s on 2 shared cores
@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(tmp_path):
    from orchestrator.ray_local import RAY_NON_LOOPBACK_SOCKETS

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    r = subprocess.run([sys.executable, "-c", _DRIVER], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**env, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout.split("@@RESULT ", 1)[1])
    socks = res["sockets"]
    by_name = {}
    for s in socks:
        by_name.setdefault(s["name"], []).append(s)
    # not vacuous: the servers that listen on every interface without the fix are all there
    for name in ("gcs_server", "raylet", "ray::RuntimeEnvAgent"):
        assert by_name.get(name), f"no listening socket of {name} found: {socks}"
    assert any(s["pid"] == res["worker"] for s in socks), f"the worker's gRPC server is missing: {socks}"
    exposed = sorted({s["name"] for s in socks if not _loopback(s["ip"])})
    assert exposed == sorted(RAY_NON_LOOPBACK_SOCKETS), (
        f"sockets not on loopback: {[s for s in socks if not _loopback(s['ip'])]}; the documented exceptions "
        f"(orchestrator.ray_local.RAY_NON_LOOPBACK_SOCKETS, README) are {RAY_NON_LOOPBACK_SOCKETS}")
    assert res["node_ip"] == "127.0.0.1"
    # the switch is scoped to the local ray.init: a later ray.init(address=...) in the process is unchanged
    assert res["env_after"] is None and res["cluster_const_after"] is True
