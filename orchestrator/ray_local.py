"""Workarounds for a local Ray (one started by ``lamo-sweep`` without ``--address``), kept apart from the
sweep logic in :mod:`orchestrator.sweep`:

* :func:`reap_orphaned_ray_agents`: stop the per-node agents that a killed driver's local Ray leaves behind;
* :func:`loopback_node_ip`: make a local Ray bind every server to 127.0.0.1 (:data:`RAY_NON_LOOPBACK_SOCKETS`
  lists the exceptions, checked by tests/test_ray_loopback.py).

Both are specific to Ray 2.60's behaviour (the ``ray[tune]`` range in ``pyproject.toml``); a cluster
connection (``--address``) uses neither.
"""

from __future__ import annotations

import contextlib
import os

_RAY_AGENT_NAMES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def reap_orphaned_ray_agents(say=print) -> int:
    """Kill Ray's per-node agents left behind by a local Ray whose raylet died with a SIGKILLed driver.

    Ray 2.60 leaves ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` running (re-parented to init,
    ~100-200 MB each) when the process that started a local Ray is killed without clean-up. A process is
    reaped only when all of these hold: it belongs to this user, it is one of those two agents, its parent
    is gone (re-parented to PID 1), and the raylet it served (``RAY_RAYLET_PID`` in its environment) is no
    longer running. Returns how many were killed.
    """
    import psutil

    me, killed = os.getuid(), 0
    for proc in psutil.process_iter(["pid", "ppid", "uids", "cmdline"]):
        try:
            info = proc.info
            cmd = info["cmdline"] or []
            if (info["ppid"] != 1 or info["uids"] is None or info["uids"].real != me or not cmd
                    or not cmd[0].startswith(_RAY_AGENT_NAMES)):
                continue
            raylet = int(proc.environ().get("RAY_RAYLET_PID", "0"))
            if raylet and psutil.pid_exists(raylet) and "raylet" in " ".join(psutil.Process(raylet).cmdline()):
                continue  # its raylet still runs: a live Ray, not ours to touch
            proc.kill()
            killed += 1
        except (psutil.Error, ValueError, OSError):
            continue
    if killed:
        say(f"[ray] stopped {killed} Ray agent process(es) left by an earlier local Ray whose driver was killed")
    return killed


#: Ray's own switch (``ray._private.ray_constants``): "0" makes ``get_node_ip_address`` answer the
#: loopback address instead of this machine's routable one (its default on macOS and Windows).
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

#: Listening TCP sockets of a local Ray that Ray 2.60 does not let us bind to 127.0.0.1: none. With the
#: node IP on loopback, every server binds there: the GCS server, the raylet (node manager and object
#: manager), every core worker (the driver and the trial workers), the dashboard agent (gRPC, HTTP and
#: the Prometheus metrics exporter) and the runtime-env agent. The dashboard itself is not started
#: (``include_dashboard=False``) and the Ray client server only runs under ``ray start --head``. Not
#: TCP, so not covered: the raylet's and plasma store's Unix sockets under the session directory.
#: tests/test_ray_loopback.py checks this list against the sockets of a real local Ray.
RAY_NON_LOOPBACK_SOCKETS: tuple[str, ...] = ()


@contextlib.contextmanager
def loopback_node_ip():
    """Make ``ray.init`` keep ``_node_ip_address="127.0.0.1"`` for a local Ray.

    Ray 2.60's ``ray.init`` replaces a loopback ``_node_ip_address`` by this machine's routable address
    (``services.resolve_ip_for_localhost``) unless Ray clusters are disabled, which is what
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` does (Ray reads it once, into
    ``ray_constants.ENABLE_RAY_CLUSTER``, when it is imported; so the constant is set too, for a process
    that imported Ray before). Each Ray server binds to loopback exactly when its node IP is loopback
    (``is_localhost(ip)`` in the agents, ``listen_to_localhost_only`` in the C++ gRPC servers). Both are
    restored afterwards: the processes started in between keep their loopback node IP, and a later
    ``ray.init(address=...)`` in this process behaves as before.
    """
    import ray._private.ray_constants as ray_constants

    old_env, old_const = os.environ.get(_RAY_CLUSTER_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_const
        if old_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = old_env
