"""Reading a sweep file: safe YAML (no Python tags), duplicate keys refused, size and alias-expansion
limits, and every problem reported with its line number as a :class:`SweepError`.

Split out of :mod:`orchestrator.schema` (which re-exports :class:`SweepError` and :func:`read_yaml`),
so the schema module is about fields and expansion only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """An invalid sweep file or flag. ``problems`` are ``(field, message)`` pairs; ``what`` names the kind
    of input in the first line (``"sweep file"``, or ``"--set flag"`` when the flags alone are at fault)."""

    def __init__(self, source: str, problems: list[tuple[str, str]], what: str = "sweep file"):
        self.source, self.problems = source, problems
        lines = [f"{source}: invalid {what} ({len(problems)} problem{'s' * (len(problems) != 1)})"]
        lines += [f"  - {loc}: {msg}" if loc else f"  - {msg}" for loc, msg in problems]
        super().__init__("\n".join(lines))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no arbitrary Python objects) that rejects duplicate mapping keys."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag in _SPECIAL_KEY_TAGS:  # `<<: *anchor` merge keys: construct_mapping flattens them
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1}); each key may appear "
                f"once - rename or merge the two entries", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> dict:
    """Load a sweep file safely.

    Raises:
        SweepError: unreadable file, YAML syntax error, unsafe tag, duplicate key, or a non-mapping top level.
    """
    src = str(path)
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_FILE_BYTES:
            raise SweepError(src, [("", f"the file is {p.stat().st_size} bytes; a sweep file is at most "
                                        f"{_MAX_FILE_BYTES} bytes of YAML")])
        raw = p.read_bytes()
    except OSError as e:
        if p.is_symlink() and not p.exists():
            why = f"it is a broken symbolic link (to {os.readlink(p)!r})"
        elif p.is_dir():
            why = "it is a directory, not a sweep file"
        else:
            why = e.strerror or str(e)
        raise SweepError(src, [("", f"cannot read the file: {why}. Check the path.")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SweepError(src, [("", f"not a UTF-8 text file (byte 0x{raw[e.start]:02x} at offset {e.start}): "
                                    f"a sweep file is YAML text")]) from None
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            problems = _node_problems(loader, node)
            if problems:
                raise SweepError(src, problems)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        if "could not determine a constructor" in str(e):
            problem += " (only plain YAML is accepted: tags such as !!python/object are refused)"
        raise SweepError(src, [("", f"{where}YAML error: {problem}")]) from None
    finally:
        loader.dispose()
    if data is None:
        raise SweepError(src, [("", "the file is empty (or only comments): a sweep file is a mapping with "
                                    "keys name, variants, grid, ...")])
    if not isinstance(data, dict):
        raise SweepError(src, [("", f"the top level must be a mapping with keys name, variants, grid, ... "
                                    f"(got a {type(data).__name__})")])
    return data


_MAX_FILE_BYTES = 1 << 20  # 1 MiB
_MAX_NODES = 100_000  # YAML nodes after expanding aliases ("billion laughs" guard)
_SPECIAL_KEY_TAGS = {"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"}  # `<<: *anchor` merge keys


def _node_problems(loader: yaml.SafeLoader, root: yaml.Node) -> list[tuple[str, str]]:
    """Walk the composed YAML before constructing anything: tags other than plain YAML's (e.g.
    ``!!python/object``, ``!include``) and duplicate mapping keys, each with its dotted path."""
    probs: list[tuple[str, str]] = []
    count = 0
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        count += 1
        if count > _MAX_NODES:
            return [("", f"the document expands to more than {_MAX_NODES} YAML nodes (aliases that repeat "
                         f"themselves?); a sweep file is small")]
        if node.tag not in loader.yaml_constructors and node.tag not in _SPECIAL_KEY_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            probs.append((path, f"line {node.start_mark.line + 1}: YAML tag {tag!r} is refused (only plain YAML "
                                f"is accepted: tags such as !!python/object are refused)"))
            continue
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                sub = f"{path}.{key}" if path else str(key)
                if key is not None and key != "<<":
                    if key in first:
                        probs.append((sub, f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first "
                                           f"at line {first[key] + 1}); each key may appear once - rename or "
                                           f"merge the two entries"))
                        continue
                    first[key] = key_node.start_mark.line
                stack.append((key_node, sub))
                stack.append((value_node, sub))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
    return sorted(set(probs), key=lambda p: p[0])
