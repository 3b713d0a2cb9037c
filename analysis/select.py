"""Choose one score per trial: which RTG target × which checkpoint (a recorded methodology switch).

Decision Transformers are evaluated at several return-to-go targets, and papers differ in which
number they report (ecosystem notes §0.3):

* LaMo (srzer/LaMo-2023 issue #1): the best-performing target's final score →
  ``target_rule="best", checkpoint="last"`` (the default);
* CORL (``results/get_offline_scores.py``): the largest target, both "last" and
  "best during training" tables → ``target_rule="largest"``, ``checkpoint="last"|"best"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.runs import METRIC_FIELDS

TARGET_RULES = ("best", "largest", "fixed")
CHECKPOINTS = ("last", "best", "mean_last_k")
SCORE_COLUMNS = ["rtg_target", "step", "normalised_score", "return_mean", "return_std", "n_evals"]
_EVAL_COLUMNS = {"step", "rtg_target", *METRIC_FIELDS}  # per-evaluation columns of the tidy frame

FixedTarget = float | Mapping[str, float] | None


def _validate(target_rule: str, checkpoint: str, fixed_target: FixedTarget, last_k: int) -> None:
    if target_rule not in TARGET_RULES:
        raise ValueError(f"target_rule must be one of {TARGET_RULES}, got {target_rule!r}")
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    if target_rule == "fixed" and (fixed_target is None or fixed_target == {}):
        raise ValueError("target_rule='fixed' needs fixed_target (a raw return, or {task: return})")
    if checkpoint == "mean_last_k" and (not isinstance(last_k, int) or last_k < 1):
        raise ValueError(f"last_k must be a positive integer, got {last_k!r}")


def _fmt_fixed(fixed_target: FixedTarget) -> str:
    if isinstance(fixed_target, Mapping):
        return ", ".join(f"{task}: {t:g}" for task, t in sorted(fixed_target.items()))
    return f"{float(fixed_target):g}"


def describe_rule(
    target_rule: str = "best", checkpoint: str = "last", fixed_target: FixedTarget = None, last_k: int = 3
) -> str:
    """Human-readable selection rule, written into every table caption and into ``scores.csv``.

    Raises:
        ValueError: unknown ``target_rule``/``checkpoint``, ``fixed`` without a target, bad ``last_k``.
    """
    _validate(target_rule, checkpoint, fixed_target, last_k)
    if target_rule == "fixed":
        target = f"the fixed RTG target ({_fmt_fixed(fixed_target)}, raw return)"
    else:
        target = {
            "best": "the best-performing RTG target per trial (LaMo: best target's final score)",
            "largest": "the largest RTG target (CORL's rule)",
        }[target_rule]
    when = {
        "last": "at the final evaluation",
        "best": "at the best evaluation during training",
        "mean_last_k": f"averaged over the last {last_k} evaluations",
    }[checkpoint]
    return f"Trial score = normalised score (0–100) of {target}, {when}."


def select_scores(
    df: pd.DataFrame,
    target_rule: str = "best",
    checkpoint: str = "last",
    fixed_target: FixedTarget = None,
    last_k: int = 3,
) -> pd.DataFrame:
    """Reduce the tidy frame of :func:`analysis.runs.load_trial_runs` to one row per trial (run).

    Args:
        df: tidy frame (one row per run × evaluation step × RTG target).
        target_rule: ``"best"`` — the RTG target whose score at the chosen checkpoint is highest
            (LaMo: best target's final score); ``"largest"`` — the largest target (CORL);
            ``"fixed"`` — ``fixed_target``.
        checkpoint: ``"last"`` — the final evaluation; ``"best"`` — the best evaluation during
            training (earliest step on ties; CORL's "best" table); ``"mean_last_k"`` — the mean of
            the last ``last_k`` evaluations (fewer if the run has fewer).
        fixed_target: raw-return target, or ``{task: target}`` for multi-task sweeps. Runs without
            that target are dropped with a ``UserWarning``.
        last_k: window for ``"mean_last_k"``.

    Returns:
        Per trial: the run-level columns of ``df`` (``run_id, run_name, status, task, sample_ratio,
        seed, variant, config_hash``, ``param.*``) plus ``rtg_target`` (raw return), ``step``
        (training step of the chosen evaluation; the last one of the window for ``mean_last_k``),
        ``normalised_score`` (0–100), ``return_mean``, ``return_std`` (raw return; averaged for
        ``mean_last_k``), ``n_evals`` (evaluations averaged), ``target_rule``, ``checkpoint`` and
        ``selection_rule`` (:func:`describe_rule`). Evaluation rows with a missing normalised score
        are ignored.

    Raises:
        ValueError: invalid rule arguments (see :func:`describe_rule`).
    """
    rule = describe_rule(target_rule, checkpoint, fixed_target, last_k)
    run_cols = [c for c in df.columns if c not in _EVAL_COLUMNS]
    d = df.dropna(subset=["normalised_score"]).sort_values(["run_id", "rtg_target", "step"])
    d = d.reset_index(drop=True)
    keys = ["run_id", "rtg_target"]
    g = d.groupby(keys, sort=False)
    if checkpoint == "last":
        per = g.tail(1).assign(n_evals=1)
    elif checkpoint == "best":
        per = d.loc[g["normalised_score"].idxmax().to_numpy()].assign(n_evals=1)
    else:
        per = g.tail(last_k).groupby(keys, as_index=False).agg(
            step=("step", "max"),
            normalised_score=("normalised_score", "mean"),
            return_mean=("return_mean", "mean"),
            return_std=("return_std", "mean"),
            n_evals=("step", "size"),
        )
    per = per[["run_id"] + SCORE_COLUMNS]

    if target_rule == "best":
        by = ["run_id", "normalised_score", "rtg_target"]
        chosen = per.sort_values(by, ascending=[True, False, False]).groupby("run_id").head(1)
    elif target_rule == "largest":
        chosen = per.sort_values(["run_id", "rtg_target"]).groupby("run_id").tail(1)
    else:
        task_of = d.drop_duplicates("run_id").set_index("run_id")["task"]
        if isinstance(fixed_target, Mapping):
            wanted = per["run_id"].map(task_of).map(fixed_target).astype("float64")
        else:
            wanted = pd.Series(float(fixed_target), index=per.index)
        chosen = per[np.isclose(per["rtg_target"], wanted)]
        missing = sorted(set(per["run_id"]) - set(chosen["run_id"]))
        if missing:
            warnings.warn(
                f"{len(missing)} run(s) have no evaluation at RTG target {_fmt_fixed(fixed_target)} "
                f"and are left out: {missing[:5]}",
                stacklevel=2,
            )

    runs = df[run_cols].drop_duplicates("run_id")
    out = runs.merge(chosen, on="run_id", how="inner").assign(
        target_rule=target_rule, checkpoint=checkpoint, selection_rule=rule
    )
    params = [c for c in run_cols if c.startswith("param.")]
    front = [c for c in run_cols if c not in params]
    cols = front + SCORE_COLUMNS + ["target_rule", "checkpoint", "selection_rule"] + params
    out = out[cols].sort_values(["task", "sample_ratio", "variant", "seed", "run_id"])
    return out.reset_index(drop=True)
