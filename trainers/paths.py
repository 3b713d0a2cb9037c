"""Where a trial's inputs live: the one place that resolves the data, text and behaviour-policy
directories.

Every input follows one resolution order, first hit wins:

1. an explicit path (a config field or a function argument), or the input's environment variable;
2. the project's cache under the data directory (``<data_dir>/...``, see :mod:`trainers.inputs`);
3. the offline mirror: ``$LAMO_SHARED_DIR``, else a ``shared/`` directory beside the repository checkout
   (present on the project's own machines and in its CI, absent on a fresh clone elsewhere);
4. the canonical source, downloaded into the cache by the driver's ``prepare`` step (never by a trial):
   the Hugging Face hub for the text (``Salesforce/wikitext``), the RL-Zoo agents (``sb3/<algo>-<Env>``)
   and LMs by hub id (:mod:`trainers.downloads`); Minari datasets by ``minari download``; D4RL files by
   hand (not on the hub). Without the hub and without the earlier steps, :func:`trainers.inputs.missing_inputs`
   names the input and the one command that provides it.

An environment variable that is set is the whole answer for its input (it is not combined with the
cache or the mirror), so an explicit choice is never silently replaced.

Environment variables: ``LAMO_DATA_DIR`` (data directory), ``LAMO_TEXT_DIR`` (text corpora),
``LAMO_SB3_AGENTS_DIR`` (RL-Zoo behaviour policies), ``LAMO_SHARED_DIR`` (the offline mirror),
``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` (the hub, see :mod:`trainers.downloads`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.domains.base import get_domain
from trainers.tasks import get_task

if TYPE_CHECKING:
    from trainers.config import TrialConfig

DATA_DIR_ENV = "LAMO_DATA_DIR"
TEXT_DIR_ENV = "LAMO_TEXT_DIR"
SB3_AGENTS_DIR_ENV = "LAMO_SB3_AGENTS_DIR"
SHARED_DIR_ENV = "LAMO_SHARED_DIR"

#: The repository checkout this package runs from (``trainers/..``).
REPO_ROOT = Path(__file__).resolve().parents[1]


def _env_dir(var: str) -> Path | None:
    v = os.environ.get(var)
    return Path(v).expanduser().resolve() if v else None


def default_data_dir(storage: str | os.PathLike) -> Path:
    """``$LAMO_DATA_DIR`` if set, else ``<storage>/data`` (absolute)."""
    return _env_dir(DATA_DIR_ENV) or (Path(storage) / "data").resolve()


def shared_mirror() -> Path:
    """The offline mirror's root: ``$LAMO_SHARED_DIR``, else ``<repo>/../shared`` (may not exist)."""
    return _env_dir(SHARED_DIR_ENV) or (REPO_ROOT.parent / "shared").resolve()


def text_cache_dir(data_dir: str | os.PathLike) -> Path:
    """The project's cache of downloaded text: ``<data_dir>/text`` (hub files keep their hub paths)."""
    return Path(data_dir) / "text"


def sb3_cache_dir(data_dir: str | os.PathLike) -> Path:
    """The project's cache of downloaded RL-Zoo agents: ``<data_dir>/sb3_agents`` (RL-Zoo layout)."""
    return Path(data_dir) / "sb3_agents"


def text_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """Where text corpora are looked for, in order, as ``(root, origin)`` pairs.

    ``$LAMO_TEXT_DIR`` alone when it is set (an explicit choice is not second-guessed); otherwise the
    cache ``<data_dir>/text`` (when ``data_dir`` is given), then the offline mirror's ``data/text``.
    Roots may not exist; :func:`trainers.lm.corpus.resolve_text` picks the first holding a whole corpus
    layout and ``prepare`` downloads into the cache when none does.
    """
    env = _env_dir(TEXT_DIR_ENV)
    if env is not None:
        return [(env, f"${TEXT_DIR_ENV}")]
    roots = [(text_cache_dir(data_dir).resolve(), "the project cache")] if data_dir is not None else []
    return roots + [(shared_mirror() / "data" / "text", "the offline mirror")]


def text_dir() -> tuple[Path, str]:
    """``(root, origin)`` of the text corpora without a data directory: ``$LAMO_TEXT_DIR``, else the
    mirror's ``data/text`` (:func:`text_roots` without a data directory: its first entry)."""
    return text_roots()[0]


def sb3_agent_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """Where RL-Zoo behaviour policies are looked for, in order, as ``(root, origin)`` pairs:
    ``$LAMO_SB3_AGENTS_DIR`` alone when set; else the cache ``<data_dir>/sb3_agents`` (agents ``prepare``
    downloaded from the hub's ``sb3`` organisation and verified), then the mirror's ``data/sb3_agents``."""
    env = _env_dir(SB3_AGENTS_DIR_ENV)
    if env is not None:
        return [(env, f"${SB3_AGENTS_DIR_ENV}")]
    roots = [(sb3_cache_dir(data_dir).resolve(), "the project cache")] if data_dir is not None else []
    return roots + [(shared_mirror() / "data" / "sb3_agents", "the offline mirror")]


def sb3_agents_dir() -> Path:
    """Root of the RL-Zoo behaviour policies without a data directory: ``$LAMO_SB3_AGENTS_DIR``, else the
    mirror's ``data/sb3_agents`` (the trusted default, see :mod:`trainers.data.policies`)."""
    return sb3_agent_roots()[0][0]


def dataset_path(task_name: str, data_dir: str | os.PathLike, source: str = "default",
                 path: str | None = None) -> Path | None:
    """Path of a task's dataset file for ``source`` (``default``, ``collected``, ``d4rl``, ``pickle``);
    ``None`` for ``minari`` (Minari manages its own storage). An explicit ``path`` wins.

    * ``collected``: ``<data_dir>/datasets/<name>.hdf5`` (D4RL-style data this project rolls out);
    * ``d4rl``: ``<data_dir>/d4rl/<name>.hdf5`` (D4RL's own files, e.g. ``hopper_medium-v2.hdf5``);
      the rule is the domain's (:meth:`trainers.domains.base.Domain.dataset_path`; Atari: the DQN Replay
      directory ``<data_dir>/dqn_replay/<Game>/1/replay_logs``).
    """
    task = get_task(task_name)
    if source == "default":
        source = "collected" if task.dataset.kind == "collected" else "d4rl"
    if path:
        return Path(path).expanduser().resolve()
    return get_domain(task.domain).dataset_path(task, data_dir, source)


def trial_dataset_path(cfg: "TrialConfig", data_dir: str | os.PathLike) -> Path | None:
    """:func:`dataset_path` for a trial's ``data`` section."""
    return dataset_path(cfg.task, data_dir, cfg.data_source, cfg.data.path)
