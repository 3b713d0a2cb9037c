"""The code a cluster's workers run: this checkout, shipped through Ray's ``runtime_env`` ``working_dir``.

A driver that connects to an existing cluster (``lamo-sweep --address``) would otherwise run its trials
with whatever copy of ``trainers/`` each node has installed, so every node needed identical code. With
``working_dir`` (Ray docs, "Environment Dependencies" → "Using Local Files"), Ray zips the directory once,
uploads it to the cluster's GCS and unpacks it on every node before a worker starts there; the worker's
current directory is the unpacked copy, which is also first on its ``sys.path``, so ``import trainers``
finds the driver's code. Packages (torch, Ray, MLflow, ...) are *not* shipped: every node still needs the
same environment (the image, or a venv from ``requirements.lock``).

Only code and small files go: :func:`code_excludes` leaves out the git database, virtual environments,
caches and everything a run writes (the sweep's storage and data directories when they lie inside the
checkout, ``lamo_runs/``). Ray refuses a package at or above its gRPC message limit
(``ray._private.runtime_env.packaging.GCS_STORAGE_MAX_SIZE``, 512 MiB in Ray 2.60); this checkout zips
to a few MiB (tests/test_runtime_env.py measures it).
"""

from __future__ import annotations

from pathlib import Path

#: The checkout that holds this package (``<repo>/orchestrator/runtime_env.py`` → ``<repo>``).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: What marks a source checkout: the packages the workers import and the project file. An installed copy
#: (``site-packages``) has no ``pyproject.toml`` beside the packages and is never shipped.
CHECKOUT_MARKERS = ("pyproject.toml", "orchestrator", "trainers", "analysis")

#: gitignore-style patterns (Ray matches ``excludes`` with ``pathspec``'s gitwildmatch, relative to the
#: working directory) that never go to the workers: version control, virtual environments, caches,
#: build outputs, run outputs and data files, and the offline wheel / GL caches of ``scripts/bootstrap.sh``.
#: A leading ``/`` anchors a pattern at the checkout's top (``/data/`` is a run's data directory;
#: ``trainers/data/`` is code and stays). The sweep's own storage and data directories are added by
#: :func:`code_excludes` when they lie inside the checkout.
STATIC_EXCLUDES: tuple[str, ...] = (
    ".git", "/.venv/", "/venv/", "/.whl/", "/.gl/", "/.ci/", "/build/", "/dist/",
    "__pycache__/", "*.pyc", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", "*.egg-info/",
    "/lamo_runs/", "/data/", "mlruns/", "mlartifacts/", "MUJOCO_LOG.TXT",
    "*.hdf5", "*.h5", "*.pt", "*.ckpt", "*.db", "*.npz", "*.gz",
)


class ShipCodeError(ValueError):
    """The checkout cannot be shipped as it is (a run directory is the checkout itself); the message names
    the flags that fix it."""


def is_checkout(root: Path) -> bool:
    """True when ``root`` is a source checkout of this project (every :data:`CHECKOUT_MARKERS` exists)."""
    return all((Path(root) / m).exists() for m in CHECKOUT_MARKERS)


def code_excludes(root: Path, *run_dirs: Path) -> list[str]:
    """The ``excludes`` of the shipped working directory: :data:`STATIC_EXCLUDES`, plus each of
    ``run_dirs`` (the sweep's storage, its data directory) that lies inside ``root``, anchored at the root
    (``/runs/``) so that a same-named code directory elsewhere is kept. Directories outside ``root`` are
    not shipped anyway and add nothing."""
    root = Path(root).resolve()
    out = list(STATIC_EXCLUDES)
    for d in run_dirs:
        try:
            rel = Path(d).expanduser().resolve().relative_to(root)
        except ValueError:
            continue
        if rel == Path("."):
            raise ShipCodeError(f"the run directory {d} is the checkout itself ({root}): choose a --storage / "
                             f"--data-dir outside it or in a subdirectory, or pass --no-ship-code")
        pattern = f"/{rel.as_posix()}/"
        if pattern not in out:
            out.append(pattern)
    return out


def code_runtime_env(storage: Path, data_dir: Path, root: Path | None = None) -> dict | None:
    """``{"working_dir": <checkout>, "excludes": [...]}`` for ``ray.init(runtime_env=...)``, or ``None``
    when ``root`` (default :data:`REPO_ROOT`) is not a source checkout (:func:`is_checkout`: an installed
    copy, whose nodes must then have the same install).

    Args:
        storage: the sweep's storage directory (checkpoints, Tune state, MLflow SQLite): never shipped.
        data_dir: the sweep's data directory (datasets, LMs): never shipped.
        root: the checkout to ship (tests).

    Raises:
        ShipCodeError: ``storage`` or ``data_dir`` is the checkout itself (its code cannot be told apart
            from a run's outputs).
    """
    root = Path(root or REPO_ROOT).resolve()
    if not is_checkout(root):
        return None
    return {"working_dir": str(root), "excludes": code_excludes(root, storage, data_dir)}
