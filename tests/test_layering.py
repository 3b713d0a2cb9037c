"""Package layering (no compute): ``trainers`` runs without Ray, MLflow or the orchestrator; no import
cycles inside ``trainers``, lazy (function-level) imports included. (That the analysis reads a store
without torch or Ray is checked in tests/test_analysis.py.)"""

from __future__ import annotations

import ast

from tests.conftest import REPO


def _imports(package: str) -> dict[str, set[str]]:
    """``{module: {imported module, ...}}`` for every module of ``package``, imports anywhere in the file."""
    out = {}
    for path in (REPO / package).rglob("*.py"):
        mod = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        out[mod] = names
    return out


def test_trainers_import_neither_ray_nor_mlflow_nor_the_orchestrator():
    bad = {m: sorted(n for n in names if n.split(".")[0] in ("ray", "mlflow", "orchestrator", "analysis"))
           for m, names in _imports("trainers").items()}
    assert not {m: b for m, b in bad.items() if b}


def test_no_import_cycles_in_trainers():
    graph = _imports("trainers")
    mods = set(graph)
    edges = {m: {n for n in names if n in mods and n != m} for m, names in graph.items()}

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for m in sorted(mods) if (c := cycle_from(m))]
    assert not cycles, cycles[0]


def test_contract_params_name_trial_config_fields():
    """The params the analysis reads (``ABLATION_PARAMS``) are flattened fields of the trial config, as the
    orchestrator logs them (``flatten(cfg.model_dump(mode="json"))``)."""
    from trainers import contract
    from trainers.config import TrialConfig

    params = contract.flatten(TrialConfig(task="hopper-medium").model_dump(mode="json"))
    assert set(contract.ABLATION_PARAMS.values()) <= set(params)
