"""The task registry, as the rest of the code reads it: :func:`get_task` and :data:`TASKS`.

Tasks are defined by their domains (one module each: :mod:`trainers.domains.mujoco`,
:mod:`trainers.domains.reacher2d`, :mod:`trainers.domains.kitchen`, :mod:`trainers.domains.atari`), which
register them with :mod:`trainers.domains.base`; a task's constants and their sources are in its domain's
module. This module re-exports the registry so that callers need not know where a task is defined.
"""

from __future__ import annotations

from trainers.domains.base import TASKS, DatasetSource, TaskSpec, get_task

__all__ = ["TASKS", "DatasetSource", "TaskSpec", "get_task"]
