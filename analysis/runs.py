"""Read a sweep's trial runs from MLflow into a tidy pandas frame.

Every tag, metric key and param name is read through :mod:`trainers.contract`, the tracking contract the
orchestrator writes (its module docstring describes the MLflow layout). In short, one experiment per
sweep holds:

* a parent run per ``lamo-sweep`` invocation, tag :data:`~trainers.contract.ROLE` =
  :data:`~trainers.contract.ROLE_SWEEP`;
* one child run per trial, tags :data:`~trainers.contract.ROLE` = :data:`~trainers.contract.ROLE_TRIAL`,
  :data:`~trainers.contract.PARENT_RUN`, the grid axes :data:`~trainers.contract.AXIS_TAGS`,
  :data:`~trainers.contract.CONFIG_HASH`, :data:`~trainers.contract.DATA_SUBSET_HASH` (optionally
  :data:`~trainers.contract.DATA_SOURCE`, :data:`~trainers.contract.DATASET`); params = the flattened
  resolved config (:func:`trainers.contract.flatten`: ``model.embedding``, ...);
* metrics with ``step`` = training step, per RTG target ``T`` (raw return) under
  :func:`trainers.contract.eval_key` ``(T, field)``: raw-return mean / std, mean episode length and the
  normalised score (0–100); keys are parsed with :func:`trainers.contract.parse_eval_key` (which also
  accepts the US spelling ``normalized_score``). A Markov policy (the value-based and imitation
  baselines) has no RTG target: its fields are under ``eval_key(None, field)`` = ``eval/policy/<field>``
  and its rows have ``rtg_target`` NaN.

Only MLflow, pandas and the standard-library contract module are imported: reading a store needs no
torch, Ray or trainer code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from analysis.domains import registry_data_source
from trainers import contract

#: Evaluation columns of the tidy frame, in frame order: the contract's per-target fields
#: (:data:`trainers.contract.EVAL_FIELDS`); returns in raw units, ``normalised_score`` 0–100,
#: ``length_mean`` in environment steps.
METRIC_FIELDS = ("return_mean", "return_std", "normalised_score", "length_mean")
#: Run-level identity columns read from tags (falling back to params): the grid axes, then the hashes.
RUN_AXES = (*contract.AXIS_TAGS, contract.CONFIG_HASH, contract.DATA_SUBSET_HASH)
#: Columns of the tidy frame, before the ``param.<name>`` columns.
BASE_COLUMNS: dict[str, str] = {
    "run_id": "object",
    "run_name": "object",
    "status": "object",
    "task": "object",
    "sample_ratio": "float64",
    "seed": "Int64",
    "variant": "object",
    "method": "object",
    contract.CONFIG_HASH: "object",
    contract.DATASET: "object",
    contract.DATA_SOURCE: "object",
    contract.DATA_SUBSET_HASH: "object",
    "lm": "object",
    "init": "object",
    "embedding": "object",
    "finetune": "object",
    "language_weight": "float64",
    "step": "int64",
    "rtg_target": "float64",
    **{f: "float64" for f in METRIC_FIELDS},
}
#: Ablation axes as plain columns (column → trial-config param, i.e. a key of
#: :func:`trainers.contract.flatten` of the trial config): the paper's ablation tables.
ABLATION_FIELDS: dict[str, str] = contract.ABLATION_PARAMS

_PAGE_SIZE = 1000  # runs per search_runs page (module constant so tests can shrink it)


def empty_frame() -> pd.DataFrame:
    """An empty tidy frame with the base columns and their dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in BASE_COLUMNS.items()})


def _check_local_store(tracking_uri: str) -> None:
    """Refuse a local store path that does not exist (MLflow would silently create a new one)."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        path = tracking_uri.split("sqlite:///", 1)[-1].split("?", 1)[0]
        if path in ("", ":memory:") or not Path(path).exists():
            raise ValueError(
                f"No MLflow database at {path!r} (tracking URI {tracking_uri!r}). "
                "Hint: pass the same --tracking-uri the sweep logged to; sqlite URIs of absolute "
                "paths have four slashes, e.g. sqlite:////abs/path/mlflow.db."
            )
    elif parsed.scheme in ("", "file") and not Path(parsed.path or tracking_uri).exists():
        raise ValueError(f"No MLflow file store at {tracking_uri!r}.")


def _experiment_id(client: MlflowClient, tracking_uri: str, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments(max_results=20)]
        raise ValueError(
            f"MLflow experiment {experiment!r} not found at tracking URI {tracking_uri!r}. "
            f"Hint: check --experiment and --tracking-uri; experiments there: {names or 'none'}."
        )
    return exp.experiment_id


def search_trial_runs(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str | None = None,
    include_unfinished: bool = False,
) -> list:
    """All active trial runs of an experiment (``search_runs`` page by page, 1000 per page).

    Trial runs are those tagged :data:`trainers.contract.ROLE` = :data:`trainers.contract.ROLE_TRIAL`;
    ``parent_run_id`` keeps the children of one sweep run (tag :data:`trainers.contract.PARENT_RUN`).
    Returns MLflow ``Run`` objects, oldest first; FINISHED only unless ``include_unfinished``.
    """
    filters = [f"tags.`{contract.ROLE}` = '{contract.ROLE_TRIAL}'"]
    if parent_run_id:
        filters.append(f"tags.`{contract.PARENT_RUN}` = '{parent_run_id}'")
    if not include_unfinished:
        filters.append("attributes.status = 'FINISHED'")
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=" and ".join(filters),
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_PAGE_SIZE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _eval_history(client: MlflowClient, run) -> pd.DataFrame:
    """Per (step, rtg_target) metric values of one run; the last logged value wins per step.

    Keys are recognised by :func:`trainers.contract.parse_eval_key` (targets in raw-return units; the US
    spelling ``normalized_score`` is read as ``normalised_score``; a policy key without a target gives
    ``rtg_target`` NaN); other metrics are ignored.
    """
    keys: dict[float | None, dict[str, str]] = {}
    for key in run.data.metrics:
        if (parsed := contract.parse_eval_key(key)) is not None:
            target, field = parsed
            keys.setdefault(target, {})[field] = key
    frames = []
    for target, fields in keys.items():
        cols = {}
        for field, key in fields.items():
            hist = sorted(client.get_metric_history(run.info.run_id, key), key=lambda x: (x.step, x.timestamp))
            cols[field] = pd.Series({h.step: h.value for h in hist}, dtype="float64")
        f = pd.DataFrame(cols).rename_axis("step").reset_index()
        f["rtg_target"] = float("nan") if target is None else target
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _axis(run, name: str):
    """A grid axis (:data:`trainers.contract.AXIS_TAGS`, or a hash tag) from the run's tags, falling
    back to its params (the flattened trial config holds the axes too)."""
    return run.data.tags.get(name, run.data.params.get(name))


def _provenance(run) -> dict[str, str]:
    """``dataset`` and ``data_source`` of a trial: its tags :data:`trainers.contract.DATASET` /
    :data:`trainers.contract.DATA_SOURCE` if the orchestrator set them, else the task registry
    (``trainers.tasks.get_task(task).dataset``, standard library only), else ``"unknown"``.

    ``data_source`` is the registry's dataset kind: ``collected`` (this project's D4RL-style data),
    ``d4rl_hdf5`` or ``minari`` (real D4RL data), or ``unknown``.
    """
    tags = run.data.tags
    kind, name = registry_data_source(str(_axis(run, "task")))
    return {contract.DATA_SOURCE: tags.get(contract.DATA_SOURCE) or kind,
            contract.DATASET: tags.get(contract.DATASET) or name}


def load_trial_runs(
    tracking_uri: str,
    experiment: str,
    parent_run_id: str | None = None,
    include_unfinished: bool = False,
    max_workers: int = 8,
) -> pd.DataFrame:
    """Load a sweep's trial runs as a tidy frame: one row per (run, evaluation step, RTG target).

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:////abs/mlflow.db``, ``http://host:5000``, ...).
        experiment: MLflow experiment name (one per sweep).
        parent_run_id: keep only the children of this sweep (parent) run.
        include_unfinished: also keep FAILED / RUNNING / KILLED trials (default: FINISHED only).
        max_workers: threads fetching metric histories (one ``get_metric_history`` per key).

    Returns:
        Columns ``run_id, run_name, status, task, sample_ratio`` (float fraction, e.g. 0.1),
        ``seed`` (nullable int), ``variant``, ``method`` (the tag :data:`trainers.contract.METHOD`: the
        paper method a variant stands for when its sweep said so, else missing), ``config_hash``, ``dataset`` (dataset name) and
        ``data_source`` (``collected`` = locally collected D4RL-style data; ``d4rl_hdf5`` /
        ``minari`` = real D4RL; ``unknown``; see :func:`_provenance`), ``data_subset_hash``, the
        ablation axes ``lm, init, embedding, finetune`` (strings) and ``language_weight`` (float),
        from the params ``model.*`` / ``language.weight`` (missing → NaN), ``step`` (training step, int),
        ``rtg_target`` (raw-return units, float; NaN for a policy without a return-to-go target, the
        baselines' ``eval/policy/...`` keys), ``return_mean, return_std`` (raw episode
        return), ``normalised_score`` (D4RL/gamer-normalised, 0–100 scale), ``length_mean``
        (episode steps), then every trial param as ``param.<name>`` (strings, as logged).
        Runs are selected by the tag :data:`trainers.contract.ROLE` = ``trial``; runs without any
        evaluation metric (:func:`trainers.contract.parse_eval_key`) contribute no rows. No matching
        runs → an empty frame with the base columns (:data:`BASE_COLUMNS`).

    Raises:
        ValueError: the experiment does not exist at ``tracking_uri`` (message names both and lists
            the experiments found), or a local sqlite/file store path does not exist.
    """
    _check_local_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = search_trial_runs(
        client, _experiment_id(client, tracking_uri, experiment), parent_run_id, include_unfinished
    )
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        histories = list(pool.map(lambda r: _eval_history(client, r), runs))
    frames = []
    for run, hist in zip(runs, histories):
        if hist.empty:
            continue
        info = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            **{a: _axis(run, a) for a in RUN_AXES},
            "method": run.data.tags.get(contract.METHOD),
            **_provenance(run),
            **{col: run.data.params.get(p) for col, p in ABLATION_FIELDS.items()},
            **{f"param.{k}": v for k, v in run.data.params.items()},
        }
        frames.append(hist.assign(**info))
    if not frames:
        return empty_frame()
    df = pd.concat(frames, ignore_index=True)
    for col, dtype in BASE_COLUMNS.items():
        if col not in df:
            df[col] = pd.Series(dtype=dtype)
        elif col in ("sample_ratio", "seed", "language_weight"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(dtype)
        else:
            df[col] = df[col].astype(dtype)
    params = sorted(c for c in df.columns if c.startswith("param."))
    return (
        df[list(BASE_COLUMNS) + params]
        .sort_values(["task", "sample_ratio", "variant", "seed", "run_id", "step", "rtg_target"])
        .reset_index(drop=True)
    )
