"""Where a trial's inputs live: the one place that resolves the data, text and behaviour-policy
directories.

Every input follows one resolution order, first hit wins:

1. an explicit path (a config field or a function argument), or the input's environment variable;
2. the project's cache under the data directory (``<data_dir>/...``, see :mod:`trainers.inputs`);
3. the offline mirror: ``$LAMO_SHARED_DIR``, else a ``shared/`` directory beside the repository checkout
   (present on the project's own machines and in its CI, absent on a fresh clone elsewhere);
4. the canonical source (Hugging Face hub, Minari, D4RL), fetched by the ``prepare`` step.

Environment variables: ``LAMO_DATA_DIR`` (data directory), ``LAMO_TEXT_DIR`` (text corpora),
``LAMO_SB3_AGENTS_DIR`` (RL-Zoo behaviour policies), ``LAMO_SHARED_DIR`` (the offline mirror).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

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


def text_dir() -> tuple[Path, str]:
    """``(root of the text corpora, where that came from)``: ``$LAMO_TEXT_DIR``, else the mirror's
    ``data/text``. The root may not exist; callers check the files they need and say how to get them."""
    env = _env_dir(TEXT_DIR_ENV)
    if env is not None:
        return env, f"${TEXT_DIR_ENV}"
    return shared_mirror() / "data" / "text", "the offline mirror"


def sb3_agents_dir() -> Path:
    """Root of the RL-Zoo behaviour policies: ``$LAMO_SB3_AGENTS_DIR``, else the mirror's
    ``data/sb3_agents`` (the trusted default, see :mod:`trainers.data.policies`)."""
    return _env_dir(SB3_AGENTS_DIR_ENV) or shared_mirror() / "data" / "sb3_agents"


def dataset_path(task_name: str, data_dir: str | os.PathLike, source: str = "default",
                 path: str | None = None) -> Path | None:
    """Path of a task's dataset file for ``source`` (``default``, ``collected``, ``d4rl``, ``pickle``);
    ``None`` for ``minari`` (Minari manages its own storage). An explicit ``path`` wins.

    * ``collected``: ``<data_dir>/datasets/<name>.hdf5`` (D4RL-style data this project rolls out);
    * ``d4rl``: ``<data_dir>/d4rl/<name>.hdf5`` (D4RL's own files, e.g. ``hopper_medium-v2.hdf5``); for
      Atari tasks the DQN Replay directory ``<data_dir>/dqn_replay/<Game>/1/replay_logs``.
    """
    src = get_task(task_name).dataset
    if source == "default":
        source = "collected" if src.kind == "collected" else "d4rl"
    if path:
        return Path(path).expanduser().resolve()
    task = get_task(task_name)
    if task.domain == "atari" and source == "d4rl":  # DQN Replay: a directory of Dopamine checkpoints
        game = task.name.split("-")[0]
        return Path(data_dir) / "dqn_replay" / (game[:1].upper() + game[1:]) / "1" / "replay_logs"
    if source == "collected":
        return Path(data_dir) / "datasets" / f"{src.collected_name or src.name}.hdf5"
    if source == "d4rl":
        return Path(data_dir) / "d4rl" / f"{src.name}.hdf5"
    return None


def trial_dataset_path(cfg: "TrialConfig", data_dir: str | os.PathLike) -> Path | None:
    """:func:`dataset_path` for a trial's ``data`` section."""
    return dataset_path(cfg.task, data_dir, cfg.data_source, cfg.data.path)
