"""Static checks of docker/ (no Docker engine here): the compose file, the Dockerfiles, the secrets script
and docker/README.md agree with each other and with the repository."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest
import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
RAY_NODES = ("ray-head", "ray-worker", "driver")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(pyproject: dict) -> dict[str, str]:
    """The exact versions of requirements.lock (pyproject.toml has ranges; the lock pins what is tested),
    for the packages pyproject.toml declares (extras included)."""
    declared = {re.match(r"^([A-Za-z0-9_.-]+)", d).group(1).lower().replace("_", "-")
                for d in pyproject["project"]["dependencies"]
                + [d for ds in pyproject["project"]["optional-dependencies"].values() for d in ds]}
    out = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", line)
        if m and m.group(1).lower().replace("_", "-") in declared:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def _expand_defaults(text: str) -> str:
    """Compose interpolation with every variable unset: ``${VAR:-default}`` -> default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", text)


def _instructions(path) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    lines, cur = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cur += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            lines.append(cur.strip())
            cur = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def _argv(svc: dict, key: str = "command") -> list[str]:
    """A service's command as argv (compose defaults substituted); for ``sh -c '... && exec CMD ...'``
    the argv of the exec'd command."""
    val = svc[key]
    words = val if isinstance(val, list) else shlex.split(_expand_defaults(val))
    if words[:2] == ["sh", "-c"]:
        inner = shlex.split(_expand_defaults(words[2]).replace("$$(", "$("))
        words = inner[inner.index("exec") + 1:]
    return words


def _flags(argv: list[str]) -> dict[str, str | bool]:
    """``--k=v`` / ``--k v`` -> {"--k": "v"}; a flag followed by another flag (or last) -> True."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        w = argv[i]
        if w.startswith("--"):
            if "=" in w:
                k, v = w.split("=", 1)
                out[k] = v
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                out[w] = argv[i + 1]
                i += 1
            else:
                out[w] = True
        i += 1
    return out


def _published(compose) -> dict[tuple[str, int], tuple[str, str]]:
    """(service, container port) -> (host ip, host port), every variable at its default."""
    out = {}
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            ip, host, container = _expand_defaults(port).split(":")
            out[(name, int(container))] = (ip, host)
    return out


def _readme_table(readme: str, header: str) -> list[list[str]]:
    """Rows of the Markdown table whose header row starts with ``header`` (cells stripped, no separator)."""
    lines = readme.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def test_compose_parses_with_the_documented_services(compose):
    assert set(compose["services"]) == {"postgres", "mlflow", "ray-head", "ray-worker", "driver"}
    assert {"lamo-shared", "pgdata", "mlartifacts"} <= set(compose["volumes"])
    assert set(compose["secrets"]) == {"ray_auth_token", "pg_password"}
    # every named volume / secret a service uses is declared at the top level
    for name, svc in compose["services"].items():
        assert set(svc.get("secrets", [])) <= set(compose["secrets"]), name
        named = {v.split(":", 1)[0] for v in svc.get("volumes", []) if not v.startswith((".", "/"))}
        assert named <= set(compose["volumes"]), name
        deps = svc.get("depends_on", {})
        assert set(deps) <= set(compose["services"]) - {name}, name
    # the driver is opt-in, the others start with `up`
    assert compose["services"]["driver"]["profiles"] == ["driver"]
    readme = (DOCKER / "README.md").read_text()
    up = [ln for ln in readme.splitlines() if ln.startswith("docker compose") and " up -d" in ln]
    assert len(up) == 1, up
    started = {w.strip() for w in up[0].split("#", 1)[1].split(",")}
    assert started == {n for n, svc in compose["services"].items() if "profiles" not in svc}
    run = [ln for ln in readme.splitlines() if ln.startswith("docker compose") and " run --rm " in ln]
    assert run and all(shlex.split(ln)[shlex.split(ln).index("--rm") + 1] == "driver" for ln in run), run


def test_readme_port_table_matches_the_compose_file(compose):
    """docker/README.md's "Ports and authentication" table is the compose file's port bindings."""
    rows = _readme_table((DOCKER / "README.md").read_text(), "| service | container port |")
    published = _published(compose)
    documented = {}
    for service, container, host, _who in rows:
        assert service in compose["services"], service
        if host == "none":
            assert "ports" not in compose["services"][service], f"{service} is documented as not published"
            continue
        m = re.fullmatch(r"`([0-9.]+):(\d+)` \(`(LAMO_[A-Z_]+)`\)", host)
        assert m, host
        documented[(service, int(container))] = (m.group(1), m.group(2))
        # the documented variable is the one the compose file reads for that host port
        (spec,) = [p for p in compose["services"][service]["ports"] if p.endswith(f":{container}")]
        assert f"${{{m.group(3)}:-{m.group(2)}}}" in spec, (spec, m.group(3))
    assert documented == published


def test_every_published_port_is_loopback_by_default(compose):
    published = []
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert isinstance(port, str), f"{name}: write ports as 'HOST_IP:HOST:CONTAINER' strings"
            expanded = _expand_defaults(port)
            parts = expanded.split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: {port!r} -> {expanded!r}"
            # the bind address is a variable (its default is loopback), the same one for every port
            m = re.match(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):-127\.0\.0\.1\}:", port)
            assert m, f"{name}: bind address must be configurable: {port!r}"
            published.append((name, int(parts[2]), m.group(1)))
    assert sorted(p[:2] for p in published) == [("mlflow", 5000), ("ray-head", 6379), ("ray-head", 8265)]
    assert {p[2] for p in published} == {"LAMO_BIND_ADDRESS"}
    assert "ports" not in compose["services"]["postgres"], "the database is never published"
    # nothing bypasses the port bindings
    assert not any(svc.get("network_mode") == "host" for svc in compose["services"].values())


def test_ray_nodes_share_storage_and_authenticate(compose):
    for name in RAY_NODES:
        svc = compose["services"][name]
        env = svc["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        secret = "ray_auth_token"
        assert secret in svc["secrets"], name
        assert env["RAY_AUTH_TOKEN_PATH"] == f"/run/secrets/{secret}", name
        mounts = dict(v.split(":", 1) for v in svc["volumes"])
        assert mounts.get("lamo-shared") == "/shared", f"{name}: shared storage at the same path everywhere"
        assert env["LAMO_DATA_DIR"].startswith("/shared/") and env["HF_HOME"].startswith("/shared/")
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert compose["secrets"]["ray_auth_token"]["file"] == "./secrets/ray_auth_token"
    head = _argv(compose["services"]["ray-head"])
    worker = _argv(compose["services"]["ray-worker"])
    assert head[:2] == ["ray", "start"] and worker[:2] == ["ray", "start"]
    hf, wf = _flags(head[2:]), _flags(worker[2:])
    assert hf["--head"] is True and hf["--block"] is True and "--address" not in hf
    # the GCS and dashboard ports the head listens on are the ones published
    published = _published(compose)
    assert ("ray-head", int(hf["--port"])) in published and ("ray-head", int(hf["--dashboard-port"])) in published
    assert wf["--block"] is True and "--head" not in wf
    assert wf["--address"] == f"ray-head:{hf['--port']}"
    assert compose["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    driver = compose["services"]["driver"]["entrypoint"]
    assert driver[0] == "lamo-sweep"
    flags = dict(zip(driver[1::2], driver[2::2]))
    assert flags == {"--address": wf["--address"], "--tracking-uri": "http://mlflow:5000",
                     "--storage": "/shared/lamo_runs"}


def test_tracking_server_uses_postgres_and_a_secret_password(compose):
    from urllib.parse import urlsplit

    pg, ml = compose["services"]["postgres"], compose["services"]["mlflow"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password"
    assert "POSTGRES_PASSWORD" not in pg["environment"]
    assert "pg_password" in pg["secrets"] and "pg_password" in ml["secrets"]
    assert ml["depends_on"]["postgres"]["condition"] == "service_healthy"
    # the backend store URI is built in the shell from the secret: never on mlflow's command line
    script = ml["command"][2]
    exports = dict(re.findall(r'export (\w+)="([^"]+)"', script))
    # the password is read from the very file postgres was given (compose's $$ is a literal $ for sh)
    reads = re.findall(r"\$\$\(cat ([^)]+)\)", exports["MLFLOW_BACKEND_STORE_URI"])
    assert reads == [pg["environment"]["POSTGRES_PASSWORD_FILE"]]
    uri = urlsplit(re.sub(r"\$\$\(cat [^)]+\)", "SECRET", exports["MLFLOW_BACKEND_STORE_URI"]))
    assert uri.scheme == "postgresql+psycopg2"
    assert (uri.username, uri.password) == (pg["environment"]["POSTGRES_USER"], "SECRET")
    assert (uri.hostname, uri.port, uri.path) == ("postgres", 5432, "/" + pg["environment"]["POSTGRES_DB"])
    argv = _argv(ml)
    assert argv[:2] == ["mlflow", "server"]
    assert "--backend-store-uri" not in argv and not any("pg_password" in w for w in argv)
    f = _flags(argv[2:])
    assert f["--workers"] == "1"
    assert ("mlflow", int(f["--port"])) in _published(compose)
    mounts = dict(v.split(":", 1) for v in ml["volumes"])
    assert f["--artifacts-destination"] == mounts["mlartifacts"]
    allowed = set(f["--allowed-hosts"].split(","))
    assert {"mlflow", f"mlflow:{f['--port']}", f"127.0.0.1:{f['--port']}"} <= allowed
    assert ml["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "/health" in " ".join(ml["healthcheck"]["test"])


def test_secrets_script_makes_every_secret_and_git_ignores_them(compose):
    script = (DOCKER / "make-secrets.sh").read_text()
    for name, spec in compose["secrets"].items():
        assert spec["file"] == f"./secrets/{name}"
        assert name in script, f"make-secrets.sh does not create {name}"
    ignore = (DOCKER / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignore and "!.gitignore" in ignore


def test_build_contexts_and_dockerfiles_exist(compose):
    for name, svc in compose["services"].items():
        if "build" in svc:
            ctx = (COMPOSE_FILE.parent / svc["build"]["context"]).resolve()
            assert ctx == REPO, name
            assert (ctx / svc["build"]["dockerfile"]).is_file(), name
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile.gpu", "Dockerfile.mlflow"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_existing_paths(dockerfile):
    copies = [args for kw, args in _instructions(dockerfile) if kw in ("COPY", "ADD")]
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for src in parts[:-1]:
            assert not src.startswith(("http://", "https://")), f"{dockerfile.name}: remote ADD {src}"
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY source {src!r} is not in the repository"


def _commands(compose) -> list[tuple[str, str]]:
    """(where, executable) for every command the images and services run."""
    out = []
    for df in DOCKERFILES:
        for kw, args in _instructions(df):
            if kw in ("CMD", "ENTRYPOINT") and args.startswith("["):
                out.append((df.name, yaml.safe_load(args)[0]))
    for name, svc in compose["services"].items():
        for key in ("entrypoint", "command"):
            val = svc.get(key)
            if val is None:
                continue
            words = val if isinstance(val, list) else shlex.split(val)
            if words[:2] == ["sh", "-c"]:  # the executable after `exec`
                inner = shlex.split(words[2].replace("$$(", "$("))
                words = inner[inner.index("exec") + 1:]
            if key == "command" and "entrypoint" in svc:
                continue  # arguments to the entrypoint
            out.append((f"compose {name}.{key}", words[0]))
    return out


def test_commands_are_declared(compose, pyproject):
    scripts = set(pyproject["project"]["scripts"])
    pins = _pins(pyproject)
    mlflow_pip = " ".join(args for kw, args in _instructions(DOCKER / "Dockerfile.mlflow") if kw == "RUN")
    cmds = _commands(compose)
    assert {c for _, c in cmds} >= {"lamo-sweep", "ray", "mlflow"}
    for where, cmd in cmds:
        if cmd.startswith("lamo-"):
            assert cmd in scripts, f"{where}: {cmd} is not a console script in pyproject.toml"
        elif cmd == "ray":
            assert "ray" in pins, f"{where}: ray is not pinned in requirements.lock"
        elif cmd == "mlflow":
            assert f"mlflow=={pins['mlflow']}" in mlflow_pip, "Dockerfile.mlflow must install the lock's mlflow version"
        else:
            pytest.fail(f"{where}: unexpected command {cmd!r}")


def test_mlflow_image_pins_match_the_project(pyproject):
    pins = _pins(pyproject)
    run = " ".join(args for kw, args in _instructions(DOCKER / "Dockerfile.mlflow") if kw == "RUN")
    assert f"mlflow=={pins['mlflow']}" in run
    m = re.search(r"psycopg2-binary==(\S+)", run)
    assert m, "the server needs the PostgreSQL driver"
    if "psycopg2-binary" in pins:
        assert m.group(1) == pins["psycopg2-binary"]
    users = [args for kw, args in _instructions(DOCKER / "Dockerfile.mlflow") if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), "the server does not run as root"


def test_gpu_image_pins_torch_like_the_project(pyproject):
    text = (DOCKER / "Dockerfile.gpu").read_text()
    assert f"torch=={_pins(pyproject)['torch']}" in text


def test_sweep_files_are_mounted_not_baked(compose):
    """The image holds no sweep file (a changed sweep needs no rebuild); the driver gets the repository's
    sweeps/ mounted read-only at /sweeps, and its default sweep is one of them."""
    gpu = DOCKER / "Dockerfile.gpu"
    copied = [shlex.split(args) for kw, args in _instructions(gpu) if kw in ("COPY", "ADD")]
    assert not any(src.rstrip("/").split("/")[0] == "sweeps" for c in copied for src in c[:-1]), copied
    driver = compose["services"]["driver"]
    assert "../sweeps:/sweeps:ro" in driver["volumes"] and "lamo-shared:/shared" in driver["volumes"]
    (sweep,) = driver["command"]
    assert sweep.startswith("/sweeps/") and (REPO / "sweeps" / sweep.removeprefix("/sweeps/")).is_file()
