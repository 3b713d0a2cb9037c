"""Packaging (no compute): ranges in pyproject.toml, exact versions in requirements.lock, the lock inside the
ranges and installed as locked, the bootstrap installing from it, LICENSE and CITATION.cff consistent with
pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _lock() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)$", line)
        if m:
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def _declared() -> list[Requirement]:
    reqs = [Requirement(d) for d in PROJECT["dependencies"]]
    for deps in PROJECT["optional-dependencies"].values():
        reqs += [Requirement(d) for d in deps if not d.startswith(PROJECT["name"] + "[")]
    return reqs


def test_pyproject_has_ranges_not_exact_pins():
    pinned = [str(r) for r in _declared() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins belong in requirements.lock, ranges in pyproject.toml: {pinned}"


def test_the_lock_pins_every_declared_dependency_inside_its_range():
    lock = _lock()
    missing = [r.name for r in _declared() if canonicalize_name(r.name) not in lock]
    assert not missing, f"declared but not in requirements.lock: {missing}"
    outside = [f"{r} (lock: {lock[canonicalize_name(r.name)]})" for r in _declared()
               if not r.specifier.contains(Version(lock[canonicalize_name(r.name)]), prereleases=True)]
    assert not outside, outside


def test_the_environment_is_installed_as_locked():
    """What scripts/bootstrap.sh installs is what the lock says (torch: ``==2.13.0`` also matches a local
    build label, ``2.13.0+cpu`` or ``+cu128``)."""
    from packaging.specifiers import SpecifierSet

    wrong = []
    for name, want in _lock().items():
        try:
            have = version(name)
        except PackageNotFoundError:
            wrong.append(f"{name}: not installed")
            continue
        if not SpecifierSet(f"=={want}").contains(Version(have), prereleases=True):
            wrong.append(f"{name}: {have} installed, {want} locked")
    assert not wrong, wrong


def test_bootstrap_installs_from_the_lock_with_every_extra():
    text = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r'uv pip install .*-r requirements\.lock -e "\.\[all,test\]"', text)
    assert "requirements.lock" in text.split("want=", 1)[1].splitlines()[0]  # a changed lock reinstalls
    extras = PROJECT["optional-dependencies"]
    assert set(extras) - {"all", "test"} == set(re.search(r"\[(.*)\]", extras["all"][0]).group(1).split(","))


def test_license_and_citation_match_the_project():
    assert PROJECT["license"]["text"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert "License :: OSI Approved :: MIT License" in PROJECT["classifiers"]
    assert PROJECT["authors"] and PROJECT["urls"]
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == PROJECT["version"] and cff["license"] == "MIT"
    (paper,) = cff["references"]
    assert paper["title"] == "Unleashing the Power of Pre-trained Language Models for Offline Reinforcement Learning"
    assert [a["family-names"] for a in paper["authors"]] == ["Shi", "Liu", "Ze", "Du", "Xu"]
    assert paper["year"] == 2024 and "2310.20587" in paper["url"]


@pytest.mark.parametrize("extra, module", [("atari", "ale_py"), ("baselines", "d3rlpy"),
                                           ("kitchen", "gymnasium_robotics"), ("minari", "minari"),
                                           ("policies", "stable_baselines3"), ("server", "psycopg2")])
def test_extras_are_imported_lazily(extra, module):
    """An extra is optional only if no module imports it at the top: a base install must still import
    every package of the project."""
    import ast

    top_level = []
    for pkg in ("orchestrator", "trainers", "analysis"):
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n.split(".")[0] == module for n in names):
                    top_level.append(str(path.relative_to(REPO)))
    assert not top_level, f"{module} (extra {extra!r}) is imported at module level by {top_level}"
