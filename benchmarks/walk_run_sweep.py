"""How far a reader walks from ``run_sweep`` to the first trial: places, files and returns to a file left.

Measures what issue #17 calls the ``run_sweep`` walk, with an explicit, repeatable rule: trace every call
of a project function (``orchestrator/``, ``trainers/``, ``analysis/``) made while
:func:`orchestrator.sweep.run_sweep` runs, down to ``--depth`` calls below it (default 2: the functions
``run_sweep`` calls and the ones those call), until the fan-out (``_run_tune``, stopped there, so no Ray
trial runs). Then:

* **places**: distinct project functions in that trace (comprehensions, generator expressions and
  lambdas are part of the function they are written in: neither places nor levels of their own; a module
  body run by an import is a level, not a place);
* **files**: distinct files they are in;
* **returns**: in the order a reader first meets the places, the times the walk enters a file it had
  already left (the reader goes back to a file).

The sweep is ``sweeps/quickstart.yaml`` with its inputs already prepared (``--data-dir``: a data
directory holding the quickstart's dataset and LM, e.g. a finished quickstart's ``lamo_runs/data``) and a
fresh SQLite store. Run it on two commits to compare them::

    .venv/bin/python benchmarks/walk_run_sweep.py --data-dir lamo_runs/data [--depth 2] [--list]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = tuple(str(REPO / p) + "/" for p in ("orchestrator", "trainers", "analysis"))


class _Stop(Exception):
    pass


def _inline(code) -> bool:
    """A comprehension, generator expression or lambda: part of the function it is written in, so it is
    neither a place nor a level of its own (before Python 3.12 a comprehension is a frame of its own; without
    this rule, what ``run_sweep`` calls from inside ``[... for t in trials]`` would count one level deeper
    than the same call written as a loop)."""
    return code.co_name.startswith("<") and code.co_name != "<module>"


def walk(data_dir: Path, depth: int) -> list[tuple[str, str]]:
    """The traced ``(file, function)`` calls, in order (module docstring)."""
    import orchestrator.sweep as S
    from orchestrator.schema import Sweep

    sweep = Sweep.load(REPO / "sweeps" / "quickstart.yaml")
    sweep.spec.storage = tempfile.mkdtemp(prefix="walk-")
    calls: list[tuple[str, str]] = []
    level = [None]  # depth below run_sweep (None: outside it)

    def prof(frame, event, arg):
        code = frame.f_code
        if event == "call":
            if code is S.run_sweep.__code__:
                level[0] = 0
                return
            if level[0] is None:
                return
            if code.co_filename.startswith(PACKAGES) and not _inline(code):
                level[0] += 1
                if level[0] <= depth and code.co_name != "<module>":
                    calls.append((str(Path(code.co_filename).relative_to(REPO)), code.co_qualname))
                frame.f_locals  # noqa: B018 - keep the frame's code reachable for the return event
        elif (event == "return" and level[0] is not None and code.co_filename.startswith(PACKAGES)
              and not _inline(code)):
            if code is S.run_sweep.__code__:
                level[0] = None
            else:
                level[0] -= 1

    def stop(*a, **k):
        raise _Stop

    S._run_tune = stop
    sys.setprofile(prof)
    try:
        S.run_sweep(sweep, data_dir=data_dir, analysis=False, progress=False, log=lambda *_: None)
    except _Stop:
        pass
    finally:
        sys.setprofile(None)
        import ray

        if ray.is_initialized():
            ray.shutdown()
    return calls


def summary(calls: list[tuple[str, str]]) -> dict[str, int]:
    """``places`` (distinct functions), ``files`` (distinct files) and ``returns`` (entries into a file
    already left) of a walk."""
    places = list(dict.fromkeys(calls))
    files, returns, left, cur = set(), 0, set(), None
    for f, _ in places:
        if f != cur:
            if f in left:
                returns += 1
            if cur is not None:
                left.add(cur)
            cur = f
        files.add(f)
    return {"places": len(places), "files": len(files), "returns": returns}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--list", action="store_true", help="print the walk")
    a = ap.parse_args()
    calls = walk(a.data_dir.resolve(), a.depth)
    if a.list:
        for f, fn in dict.fromkeys(calls):
            print(f"  {f}:{fn}")
    s = summary(calls)
    print(f"run_sweep walk (depth {a.depth}): {s['places']} places in {s['files']} files, "
          f"{s['returns']} returns to a file already left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
