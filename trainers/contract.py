"""The tracking contract: every tag, metric key and param name a sweep writes and the analysis reads.

The trainer produces metrics under these keys (:mod:`trainers.train`, :mod:`trainers.evaluate`), the
orchestrator writes them to MLflow with these tags (:mod:`orchestrator.tracking`), and the analysis
reads them back from an MLflow store alone (:mod:`analysis.runs`). All three import this module, so a
name changes in one place. It imports nothing but the standard library (the analysis must not need
torch, Ray or the trainer to read a store).

MLflow layout (one experiment per sweep name):

* **parent run** per ``lamo-sweep`` invocation: tags :data:`ROLE` = :data:`ROLE_SWEEP`, :data:`SWEEP`,
  :data:`SWEEP_FILE_SHA256`, :data:`GIT_COMMIT` (and :data:`CHANGES` when the sweep changed since its
  last invocation; :data:`NOTE` = the sweep's ``description``, shown by the MLflow UI as the run's
  description); params ``n_trials``, ``n_skipped_finished``; metrics :data:`PARENT_METRICS`;
  artifacts: the sweep file, :data:`RESOLVED_TRIALS_ARTIFACT` and the end-of-sweep report under
  :data:`REPORT_ARTIFACT_DIR`.
* **child run** per trial: tags :data:`ROLE` = :data:`ROLE_TRIAL`, :data:`PARENT_RUN`, the grid axes
  :data:`AXIS_TAGS`, :data:`CONFIG_HASH`, :data:`DATA_SUBSET_HASH`, :data:`DATA_SOURCE`, :data:`TEXT_SOURCE`, :data:`DEVICE`,
  :data:`GIT_COMMIT`, ``version.<package>``, the attempts (:data:`ATTEMPT`, :func:`attempt_tag`,
  :data:`LAST_PARENT_RUN`) and, once finished, :data:`CHECKPOINT_LOCATION`; a dataset input
  (``mlflow.log_input``: name :func:`dataset_name`, digest = the data subset hash, source = the dataset
  file, context :data:`DATASET_CONTEXT`); artifacts: the final checkpoint under
  :data:`CHECKPOINT_ARTIFACT_DIR` only when asked for (``lamo-sweep --log-checkpoints``); params = the
  flattened resolved trial config
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

  - MLflow's own system metrics (``system/...``, steps counted by MLflow) when MLflow's switch
    ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` is on in the driver's environment.

Exactly one FINISHED child run per config hash in an experiment.

Where the store is (:func:`resolve_tracking_uri`): the ``--tracking-uri`` flag, else the sweep file's
``tracking.uri``, else :data:`TRACKING_URI_ENV`, else ``sqlite:///<storage>/``:data:`DEFAULT_STORE_FILE`.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# --- tags -----------------------------------------------------------------------------------------
ROLE = "lamo.role"
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
SWEEP = "lamo.sweep"
SWEEP_FILE_SHA256 = "lamo.sweep_file_sha256"
CHANGES = "lamo.changes"
LAST_PARENT_RUN = "lamo.last_parent_run_id"
#: Attempt number of a child run (1 for a new run, +1 each time a retry or a resumed sweep reopens it).
ATTEMPT = "lamo.attempt"
#: The paper method a trial stands for when its variant's name is not one (a sweep variant's ``method:``, e.g.
#: ``lamo`` for a variant ``lamo-smollm2``; a key of :data:`trainers.methods.METHODS`). The analysis groups
#: trials by it (claims' sides); absent, the variant name's method key is used.
METHOD = "lamo.method"
#: Where the trial's final checkpoint directory is (``file://`` URI on the machine that trained it).
CHECKPOINT_LOCATION = "lamo.checkpoint_uri"
#: MLflow's run-description tag (the UI's "Description"); the parent run's holds the sweep's ``description``.
NOTE = "mlflow.note.content"
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



def attempt_tag(n: int) -> str:
    """``lamo.attempt.<n>``: the record of attempt ``n`` of a child run, a JSON object with the parent run
    that (re)opened it (``parent_run_id``), ``started`` (UTC, ISO 8601), ``host`` and ``pid``, and, once
    the trial has read its checkpoint, ``resumed_at_step`` (0 for a fresh start)."""
    return f"{ATTEMPT}.{int(n)}"


def dataset_name(task: str, sample_ratio: float) -> str:
    """Name of a child run's dataset input: ``<task>@<sample_ratio>`` (e.g. ``hopper-medium@0.1``); the
    digest (the data subset hash) tells subsets of equal name apart (seeds)."""
    return f"{task}@{sample_ratio:g}"


#: The ``mlflow.data.context`` input tag of a child run's dataset (MLflow's vocabulary: training, eval).
DATASET_CONTEXT = "training"

# --- artifacts and parent-run records --------------------------------------------------------------
RESOLVED_TRIALS_ARTIFACT = "resolved_trials.json"
#: Artifact folder of the parent run holding the end-of-sweep report (tables, figures, claims).
REPORT_ARTIFACT_DIR = "analysis"
#: Artifact folder of a child run holding its final checkpoint (``lamo-sweep --log-checkpoints``).
CHECKPOINT_ARTIFACT_DIR = "checkpoint"
PARENT_METRICS = ("trials_finished", "trials_failed", "trials_skipped", "trials_interrupted")

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


# --- where the tracking store is -------------------------------------------------------------------
#: MLflow's own variable for the tracking URI, read when neither the flag nor the sweep file gives one.
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
#: A sweep's ``storage`` when its file gives none (:class:`orchestrator.schema.SweepSpec`); ``lamo-analysis``
#: looks for ``<this>/mlflow.db`` in the working directory when no URI is given.
DEFAULT_STORAGE = "lamo_runs"
#: The SQLite store of a sweep's storage when no URI is given anywhere (``sqlite:///<storage>/mlflow.db``).
DEFAULT_STORE_FILE = "mlflow.db"
#: Values without a URI scheme that MLflow itself reads as a store name rather than a path
#: (``StoreRegistry.get_store_builder`` in mlflow/tracking/registry.py): ``databricks`` (the workspace of
#: the default profile), and the Unity Catalog registry names, which MLflow refuses as tracking URIs.
BARE_STORE_NAMES = ("databricks", "databricks-uc", "uc")


def uri_scheme(uri: str) -> str:
    """The URI scheme of ``uri`` as MLflow reads it (``urllib.parse``; ``""`` for a path, a one-letter
    Windows drive included; a bare :data:`BARE_STORE_NAMES` entry is its own scheme)."""
    if uri in BARE_STORE_NAMES:
        return uri
    scheme = urllib.parse.urlparse(uri).scheme
    return "" if len(scheme) == 1 else scheme.lower()


def resolve_tracking_uri(uri: str | None, storage: str | os.PathLike, environ=None) -> str:
    """The tracking URI to use, in this order: ``uri`` (the ``--tracking-uri`` flag, else the sweep
    file's ``tracking.uri``; the caller picks), else ``$MLFLOW_TRACKING_URI`` (:data:`TRACKING_URI_ENV`),
    else ``sqlite:///<storage>/mlflow.db``.

    Every URI with a scheme (``http(s)://``, ``databricks``, ``databricks://PROFILE``, ``postgresql://``,
    a plugin's scheme ...) is returned unchanged, with one exception: a relative SQLite path
    (``sqlite:///runs/mlflow.db``) is made absolute, because Ray runs each trial in its own working
    directory. A value without a scheme is a path to a SQLite file (made absolute).

    Args:
        uri: the explicit URI, or ``None``/``""`` to fall back.
        storage: the sweep's storage directory (for the default store).
        environ: the environment to read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    uri = uri or env.get(TRACKING_URI_ENV) or None
    if not uri:
        return f"sqlite:///{(Path(storage) / DEFAULT_STORE_FILE).resolve()}"
    scheme = uri_scheme(uri)
    if scheme == "sqlite" and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    if not scheme:  # a bare path: a SQLite file
        return f"sqlite:///{Path(uri).expanduser().resolve()}"
    return uri


def server_problem(uri: str, timeout: float = 5.0) -> str | None:
    """Why the tracking server at ``uri`` cannot be used, or ``None``: for ``http(s)`` URIs one GET of
    ``<uri>/health`` with ``timeout`` seconds (connect and read). 200 (MLflow's health endpoint) and
    401/403 (an authenticating proxy in front of it; MLflow then reports the credentials problem itself)
    count as a server that is there; any other status (404: not an MLflow server, or the wrong path;
    5xx: a proxy without its server) or no answer is a problem. Other schemes are not checked here."""
    if uri_scheme(uri) not in ("http", "https"):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):  # noqa: S310
            return None
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            return None
        return f"{uri} answers HTTP {e.code} ({e.reason}) on /health: not an MLflow tracking server there"
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return f"MLflow tracking server {uri} is not reachable ({reason}; waited at most {timeout:g} s)"
