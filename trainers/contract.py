"""The tracking contract: every tag, metric key and param name a sweep writes and the analysis reads.

The trainer produces metrics under these keys (:mod:`trainers.train`, :mod:`trainers.evaluate`), the
orchestrator writes them to MLflow with these tags (:mod:`orchestrator.tracking`), and the analysis
reads them back from an MLflow store alone (:mod:`analysis.runs`). All three import this module, so a
name changes in one place. It imports nothing but the standard library (the analysis must not need
torch, Ray or the trainer to read a store).

MLflow layout (one experiment per sweep name):

* **parent run** per ``lamo-sweep`` invocation: tags :data:`ROLE` = :data:`ROLE_SWEEP`, :data:`SWEEP`,
  :data:`SWEEP_FILE_SHA256`, :data:`GIT_COMMIT` (and :data:`CHANGES` when the sweep changed since its
  last invocation); params ``n_trials``, ``n_skipped_finished``; metrics :data:`PARENT_METRICS`;
  artifacts: the sweep file and :data:`RESOLVED_TRIALS_ARTIFACT`.
* **child run** per trial: tags :data:`ROLE` = :data:`ROLE_TRIAL`, :data:`PARENT_RUN`, the grid axes
  :data:`AXIS_TAGS`, :data:`CONFIG_HASH`, :data:`DATA_SUBSET_HASH`, :data:`DATA_SOURCE`, :data:`TEXT_SOURCE`, :data:`DEVICE`,
  :data:`GIT_COMMIT`, ``version.<package>``; params = the flattened resolved trial config
  (:func:`flatten`, e.g. ``model.embedding``); metrics with explicit steps (training step):

  - training, every ``train.log_every`` steps: :data:`TRAIN_ACTION_LOSS` (MSE in normalised action
    units), :data:`TRAIN_LANGUAGE_LOSS` (nats/token, only when the language loss is on),
    :data:`TRAIN_LR`, :data:`TRAIN_STEPS_PER_S`;
  - at step 0 once: data sizes (``data/...``) and parameter counts (``params/...``);
  - per evaluation and RTG target ``T`` (raw return, written ``f"{T:g}"``): :func:`eval_key` ``(T,
    field)`` for ``field`` in :data:`EVAL_FIELDS` (returns in raw units, ``normalised_score`` 0-100),
    plus :data:`EVAL_BEST_SCORE` and :data:`EVAL_EPISODES_PER_S`;
  - per evaluation of a Markov policy (the value-based and imitation baselines: no RTG target):
    :func:`eval_key` ``(None, field)`` = ``eval/policy/<field>``, same fields, plus
    :data:`EVAL_BEST_SCORE` (= that one score) and :data:`EVAL_EPISODES_PER_S`. Readers get target
    ``None`` from :func:`parse_eval_key` (NaN in the analysis's ``rtg_target`` column).

Exactly one FINISHED child run per config hash in an experiment.
"""

from __future__ import annotations

import json
import re

# --- tags -----------------------------------------------------------------------------------------
ROLE = "lamo.role"
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
SWEEP = "lamo.sweep"
SWEEP_FILE_SHA256 = "lamo.sweep_file_sha256"
CHANGES = "lamo.changes"
LAST_PARENT_RUN = "lamo.last_parent_run_id"
PARENT_RUN = "mlflow.parentRunId"
GIT_COMMIT = "mlflow.source.git.commit"
CONFIG_HASH = "config_hash"
DATA_SUBSET_HASH = "data_subset_hash"
DATA_SOURCE = "data_source"
#: Which text a trial read (language loss, project LM pre-training): :func:`trainers.lm.corpus.text_source`,
#: e.g. the mirror's tokenised WikiText-103 valid/test or the hub's raw train; absent when it reads none.
TEXT_SOURCE = "text_source"
#: sha256 of the dataset file as downloaded by ``prepare`` (:func:`trainers.downloads.dataset_file_sha256`;
#: D4RL publishes no checksums, so this is what lets two runs be compared); absent for other files.
DATASET_SHA256 = "dataset_sha256"
DATASET = "dataset"
DEVICE = "device"
VERSION_PREFIX = "version."
#: The grid axes, each a tag of every child run (values as strings; ``sample_ratio`` as ``f"{r:g}"``).
AXIS_TAGS = ("task", "sample_ratio", "seed", "variant")

#: Params that tell the paper's ablations apart: analysis column -> flattened trial-config param.
ABLATION_PARAMS: dict[str, str] = {
    "embedding": "model.embedding",
    "finetune": "model.finetune",
    "language_weight": "language.weight",
    "init": "model.init",
    "lm": "model.lm",
}

# --- artifacts and parent-run records --------------------------------------------------------------
RESOLVED_TRIALS_ARTIFACT = "resolved_trials.json"
PARENT_METRICS = ("trials_finished", "trials_failed", "trials_skipped")

# --- metric keys ----------------------------------------------------------------------------------
def train_key(name: str) -> str:
    """``train/<name>``: the key of a training quantity (a learner's loss name, ``lr``, ``steps_per_s``)."""
    return f"train/{name}"


TRAIN_ACTION_LOSS = train_key("action_loss")
TRAIN_LANGUAGE_LOSS = train_key("language_loss")
TRAIN_LR = train_key("lr")
TRAIN_STEPS_PER_S = train_key("steps_per_s")
EVAL_BEST_SCORE = "eval/best_normalised_score"
EVAL_EPISODES_PER_S = "eval/episodes_per_s"
#: Per-target evaluation fields: raw-return mean/std, mean episode length (env steps), normalised score.
EVAL_FIELDS = ("return_mean", "return_std", "length_mean", "normalised_score")
#: Prefixes of the static records logged once at step 0 (``language/``: corpus size and passes over it,
#: :func:`trainers.inputs.corpus_passes`).
STATIC_PREFIXES = ("data/", "params/", "language/")

#: Key segment of a policy without a return-to-go target (``eval/policy/<field>``).
POLICY_SEGMENT = "policy"

_EVAL_KEY = re.compile(
    r"^eval/(?:rtg_(?P<target>[^/]+)|(?P<policy>policy))"
    r"/(?P<field>return_mean|return_std|normali[sz]ed_score|length_mean)$")


def target_key(target: float) -> str:
    """Metric-key form of an RTG target (raw return): ``76.0 -> "76"``, ``0.5 -> "0.5"``."""
    return f"{target:g}"


def eval_key(target: float | None, field: str) -> str:
    """``eval/rtg_<T>/<field>``, the key of one evaluation field for RTG target ``target`` (raw
    return); ``target=None`` (a Markov policy, no return conditioning) gives ``eval/policy/<field>``.

    Raises:
        ValueError: ``field`` is not one of :data:`EVAL_FIELDS`.
    """
    if field not in EVAL_FIELDS:
        raise ValueError(f"unknown evaluation field {field!r}; one of {', '.join(EVAL_FIELDS)}")
    if target is None:
        return f"eval/{POLICY_SEGMENT}/{field}"
    return f"eval/rtg_{target_key(target)}/{field}"


def parse_eval_key(key: str) -> tuple[float | None, str] | None:
    """``(rtg_target, field)`` of a per-target evaluation key, else ``None``; ``rtg_target`` is
    ``None`` for a policy key (``eval/policy/<field>``, :func:`eval_key` with ``target=None``).

    The US spelling ``normalized_score`` (older stores, other tools) is read as ``normalised_score``.
    """
    m = _EVAL_KEY.match(key)
    if m is None:
        return None
    if m["policy"]:
        target = None
    else:
        try:
            target = float(m["target"])
        except ValueError:
            return None
    field = "normalised_score" if m["field"].startswith("normali") else m["field"]
    return target, field


def axis_tags(task: str, sample_ratio: float, seed: int, variant: str) -> dict[str, str]:
    """The grid-axis tags of a child run (:data:`AXIS_TAGS`), as strings."""
    return {"task": task, "sample_ratio": f"{sample_ratio:g}", "seed": str(seed), "variant": variant}


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Flatten nested dicts to dotted keys (``{"train": {"lr": 1}} -> {"train.lr": 1}``); lists are
    kept as JSON strings so they can be MLflow params. The params of a child run are
    ``flatten(cfg.record())`` (:meth:`trainers.config.TrialConfig.record`)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out
