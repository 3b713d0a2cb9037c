"""Print the longest functions of each top-level package (issue #17), measured with :mod:`ast`.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/longest_functions.py            # top 3 per package
    PYTHONPATH=$PWD .venv/bin/python benchmarks/longest_functions.py --top 5 --packages trainers

Counting rule (fixed; change it only together with every number recorded from it):

* a function's length is ``end_lineno - lineno + 1`` of its ``ast.FunctionDef`` /
  ``ast.AsyncFunctionDef`` node: from the line of ``def`` (decorators excluded) to the last line of
  its body. The docstring, comments and blank lines inside that span are INCLUDED; a multi-line
  signature counts (it lies between ``def`` and the body);
* every function counts, at any depth: module functions, methods (``Class.method``) and nested
  functions (``outer.<locals>.inner``, as :attr:`__qualname__` spells it). A nested function's lines
  count both in itself and in the function that contains it;
* the files are every ``*.py`` under the package directory, recursively, in the checkout this script
  sits in (``--root`` for another one); files that do not parse are reported and skipped.

Output, one block per package: ``<lines>  (<lines without the docstring>)  <qualified name>
<file>:<line of def>``, longest first by the rule above (ties by file and line); the count without the
docstring is for information only and never changes the order.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("orchestrator", "trainers", "analysis")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FunctionLength:
    """One function: ``lines`` (the rule of the module docstring), ``doc_lines`` (lines of its docstring,
    0 without one), its qualified name, file and ``def`` line."""

    lines: int
    doc_lines: int
    qualname: str
    path: str
    lineno: int


def function_lengths(tree: ast.AST, path: str) -> list[FunctionLength]:
    """Every function and method in ``tree`` (a parsed module) with its length in lines.

    ``path`` is only recorded in the results. Qualified names follow :attr:`__qualname__`: ``Class.method``,
    ``outer.<locals>.inner``.
    """
    found: list[FunctionLength] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                found.append(FunctionLength(child.end_lineno - child.lineno + 1, _docstring_lines(child), name, path,
                                            child.lineno))
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _docstring_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Source lines of ``fn``'s docstring (its first statement, a string constant); 0 without one."""
    first = fn.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return first.end_lineno - first.lineno + 1
    return 0


def package_lengths(root: Path, package: str) -> list[FunctionLength]:
    """:func:`function_lengths` of every ``*.py`` under ``root / package``, longest first.

    Raises:
        FileNotFoundError: ``root / package`` is not a directory.
    """
    pkg = root / package
    if not pkg.is_dir():
        raise FileNotFoundError(f"package directory {pkg} not found; pass --root <checkout>")
    out: list[FunctionLength] = []
    for f in sorted(pkg.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"), filename=rel)
        except (SyntaxError, UnicodeDecodeError) as e:
            print(f"skipped {rel}: {e}", file=sys.stderr)
            continue
        out += function_lengths(tree, rel)
    return sorted(out, key=lambda x: (-x.lines, x.path, x.lineno))


def main(argv: list[str] | None = None) -> int:
    """Print the ``--top`` longest functions of each package; exit 2 on a missing package directory."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=3, help="functions per package (default 3)")
    ap.add_argument("--packages", nargs="+", default=list(PACKAGES), help=f"default: {' '.join(PACKAGES)}")
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout root (default: this script's)")
    args = ap.parse_args(argv)
    if args.top < 1:
        ap.error(f"--top must be >= 1, got {args.top}")
    for package in args.packages:
        try:
            lengths = package_lengths(args.root, package)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{package}: longest functions (lines from `def` to the end of the body, docstring included; "
              "in brackets: without the docstring)")
        for x in lengths[:args.top]:
            print(f"  {x.lines:4d}  ({x.lines - x.doc_lines:4d})  {x.qualname}  {x.path}:{x.lineno}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
