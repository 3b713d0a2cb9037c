"""Small helpers every package uses: atomic writes and "did you mean" hints.

One implementation each, so that a file or directory another process may read (a dataset, a tokenised
corpus, a pre-trained LM, a checkpoint) is always written the same way: into a sibling temporary path
first, then moved into place with :func:`os.replace` (atomic on POSIX within one filesystem), so a reader
never sees a half-written file and a killed writer leaves only a temporary path behind.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``choices`` to ``name`` (``difflib``), else ``""``.

    The leading space lets callers append it to a sentence: ``f"unknown task {name!r}.{did_you_mean(...)}"``.
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _sibling(path: Path, tag: str) -> Path:
    """A unique hidden sibling of ``path`` (same directory, hence same filesystem as ``path``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{tag}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write ``path`` through; on success it replaces ``path``.

    Works for a file or a directory (whatever the body creates at the yielded path). An existing
    directory at ``path`` is swapped out with :func:`replace_dir`. If the body raises, the temporary
    path is removed and ``path`` is left as it was. Parent directories are created.

    Example::

        with atomic_path(out / "data.npy") as tmp:
            np.save(tmp, arr)          # np.save adds no suffix to an open file: pass a file object

    Raises:
        whatever the body raises (after clean-up).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        if tmp.is_dir():
            replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike, keep_old: str | None = None) -> None:
    """Move directory ``src`` to ``dst``, replacing a directory already at ``dst``.

    The old ``dst`` is first renamed aside (to ``keep_old`` if given, else a unique hidden sibling), then
    ``src`` is renamed to ``dst``, then the old copy is deleted. A process killed between the two renames
    leaves the old copy under its aside name; callers that must recover from that (checkpoints) pass a
    fixed ``keep_old`` name and look there (see :func:`trainers.checkpoint.latest_checkpoint`).
    """
    src, dst = Path(src), Path(dst)
    old = dst.with_name(keep_old) if keep_old else _sibling(dst, "old")
    if dst.exists():
        shutil.rmtree(old, ignore_errors=True)  # a stale one, from a kill after the last rename
        os.replace(dst, old)
    os.replace(src, dst)
    # ``dst`` is complete now: the aside copy goes, also one a kill between the renames left behind
    shutil.rmtree(old, ignore_errors=True)
