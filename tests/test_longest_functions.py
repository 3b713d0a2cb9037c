"""``benchmarks/longest_functions.py`` (issue #17): its counting rule on a known module, and its output."""

from __future__ import annotations

import ast
import textwrap

from benchmarks.longest_functions import function_lengths, main, package_lengths

SOURCE = textwrap.dedent('''
    import functools


    @functools.cache
    def outer(a,
              b):
        """Two-line
        docstring."""
        def inner():
            return 1

        return inner() + a + b


    class K:
        def method(self):
            x = 1
            return x

        async def coro(self):
            """One line."""
            return 2
''')


def test_counting_rule_on_a_known_module():
    found = {f.qualname: f for f in function_lengths(ast.parse(SOURCE), "m.py")}
    assert set(found) == {"outer", "outer.<locals>.inner", "K.method", "K.coro"}
    outer = found["outer"]
    # from `def` (line 6; the decorator on line 5 is excluded) to `return inner() + a + b` (line 13)
    assert (outer.lineno, outer.lines, outer.doc_lines, outer.path) == (6, 8, 2, "m.py")
    assert (found["outer.<locals>.inner"].lines, found["outer.<locals>.inner"].doc_lines) == (2, 0)
    assert (found["K.method"].lines, found["K.coro"].lines, found["K.coro"].doc_lines) == (3, 3, 1)


def test_package_ranking_and_output(tmp_path, capsys):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text(SOURCE)
    (pkg / "sub" / "b.py").write_text("def long():\n" + "    x = 1\n" * 20 + "    return x\n")
    (pkg / "broken.py").write_text("def (:\n")
    ranked = package_lengths(tmp_path, "pkg")
    assert [(f.qualname, f.path, f.lines) for f in ranked[:2]] == [("long", "pkg/sub/b.py", 22),
                                                                   ("outer", "pkg/a.py", 8)]
    assert main(["--root", str(tmp_path), "--packages", "pkg", "--top", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1:] == ["    22  (  22)  long  pkg/sub/b.py:1", "     8  (   6)  outer  pkg/a.py:6"]
    assert "skipped pkg/broken.py" in err
    assert main(["--root", str(tmp_path), "--packages", "nope"]) == 2
    assert "package directory" in capsys.readouterr().err
