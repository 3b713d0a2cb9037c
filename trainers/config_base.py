"""The trial config's building blocks, below every module that defines a config section: the strict base
model and the config hash's one rule for fields added after trials were first hashed (:func:`later`).

They live here, not in :mod:`trainers.config`, so that a section defined in its own module (the methods'
settings classes, :mod:`trainers.baseline_settings`) uses the same rule without importing the trial config;
:mod:`trainers.config` re-exports them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: ``json_schema_extra`` key of a field added after trials were first hashed (:func:`later`).
LATER = "omitted_from_hash_at_default"


def later(default=None, **kwargs):
    """A config field added after trial configs were first hashed: :meth:`trainers.config.TrialConfig.record`
    (what is logged and hashed) leaves it out while it equals its default, so adding it changes no existing
    trial's hash or params. This is the config hash's one rule for new fields; ``default_factory=`` works too."""
    extra = {**kwargs.pop("json_schema_extra", {}), LATER: True}
    if "default_factory" in kwargs:
        return Field(json_schema_extra=extra, **kwargs)
    return Field(default, json_schema_extra=extra, **kwargs)


def is_later(field) -> bool:
    """Whether pydantic ``FieldInfo`` ``field`` was declared with :func:`later`."""
    return bool((field.json_schema_extra or {}).get(LATER))


def omit_later_at_default(model: BaseModel, dumped: dict) -> dict:
    """Drop from ``dumped`` (``model.model_dump(mode="json")``) every :func:`later` field of ``model`` and
    its sub-models that equals its default (the config hash's rule, :func:`later`)."""
    for name, f in type(model).model_fields.items():
        value = getattr(model, name)
        if is_later(f) and value == f.get_default(call_default_factory=True):
            dumped.pop(name, None)
        elif isinstance(value, BaseModel):
            omit_later_at_default(value, dumped[name])
    return dumped


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are refused, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
