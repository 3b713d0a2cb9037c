"""Choose one score per trial: which RTG target × which checkpoint (a recorded methodology switch).

Decision Transformers are evaluated at several return-to-go (RTG) targets, and papers differ in which
number they report. The rule is a :class:`SelectionRule`, written into every caption
(:meth:`SelectionRule.describe`) and into ``scores.csv``:

* LaMo (arXiv 2310.20587): the official code (srzer/LaMo-2023, ``experiment-d4rl/experiment.py``)
  evaluates every target of a task, and the authors report the best-performing target's final score
  (their answer in the repository's issue thread https://github.com/srzer/LaMo-2023/issues/1) →
  ``SelectionRule(target_rule="best", checkpoint="last")``, the default. The best target is chosen per
  trial (per seed); ``best_target_by="seed_mean"`` instead picks, per task × sample ratio × method
  (variant), the one target whose seed-averaged score is highest and reports every seed at it (a
  single target per cell, as a practitioner would fix it; the per-seed choice is the more optimistic).
  :mod:`analysis.rule_compare` puts both side by side;
* CORL (``corl-team/CORL``, ``results/get_offline_scores.py`` reads the largest target's score; its
  README has a "last" and a "best during training" table): ``target_rule="largest"``,
  ``checkpoint="last"`` or ``"best"``.

A Markov policy (CQL, IQL, TD3+BC, BC) has no RTG target: its rows have ``rtg_target`` NaN, the one
score per evaluation, and every target rule selects it (groupings keep NaN targets).

See ``docs/analysis.md`` ("Which number per trial") for the options of ``lamo-analysis``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.runs import METRIC_FIELDS

TARGET_RULES = ("best", "largest", "fixed")
CHECKPOINTS = ("last", "best", "mean_last_k")
#: Where ``target_rule="best"`` picks its target: ``trial`` (per run, i.e. per seed; LaMo's rule, the
#: default) or ``seed_mean`` (one target per :data:`SEED_GROUP` cell, by the score averaged over its runs).
BEST_TARGET_BY = ("trial", "seed_mean")
#: The cell within which ``best_target_by="seed_mean"`` averages over seeds: task × sample ratio × method.
SEED_GROUP = ("task", "sample_ratio", "variant")
SCORE_COLUMNS = ["rtg_target", "step", "normalised_score", "return_mean", "return_std", "n_evals"]
_EVAL_COLUMNS = {"step", "rtg_target", *METRIC_FIELDS}  # per-evaluation columns of the tidy frame

FixedTarget = float | Mapping[str, float] | None


def parse_fixed_target(values: Sequence[str] | None) -> float | dict[str, float] | None:
    """The ``--fixed-target`` option's values as a raw-return target.

    ``["3600"]`` → ``3600.0``; ``["hopper=3600", "walker2d=5000"]`` → ``{task: target}``; none → ``None``.

    Raises:
        ValueError: neither one number nor only ``TASK=RETURN`` pairs.
    """
    if not values:
        return None
    try:
        if all("=" in v for v in values):
            return {k.strip(): float(t) for k, t in (v.split("=", 1) for v in values)}
        if len(values) == 1:
            return float(values[0])
    except ValueError:
        pass
    raise ValueError(f"--fixed-target takes one raw return (3600) or TASK=RETURN pairs, got {list(values)}")


@dataclass(frozen=True)
class SelectionRule:
    """Which evaluation of a trial is its score: an RTG target rule × a checkpoint rule.

    Attributes:
        target_rule: ``"best"`` — the RTG target whose normalised score at the chosen checkpoint is
            highest (LaMo's rule; ties → the larger target); ``"largest"`` — the largest target
            (CORL's rule); ``"fixed"`` — :attr:`fixed_target`.
        checkpoint: ``"last"`` — the final evaluation; ``"best"`` — the best evaluation during
            training (earliest step on ties; CORL's "best" table); ``"mean_last_k"`` — the mean of
            the last :attr:`last_k` evaluations (fewer if the run has fewer).
        fixed_target: for ``"fixed"``: one target in raw-return units (e.g. ``3600.0`` for Hopper),
            or per task ``{task: raw return}``; stored as a float or as sorted ``(task, target)``
            pairs so that the rule is hashable. Ignored by the other target rules.
        last_k: window of ``"mean_last_k"`` (evaluations).
        best_target_by: for ``"best"``: ``"trial"`` — each trial (seed) takes its own best target
            (the default); ``"seed_mean"`` — per task × sample ratio × variant (:data:`SEED_GROUP`),
            the target whose normalised score averaged over the cell's trials is highest (ties → the
            larger target; only targets every trial of the cell evaluated compete), and every trial
            reports its score at that target.

    Raises:
        ValueError: on construction, for an unknown ``target_rule`` / ``checkpoint`` /
            ``best_target_by``, ``"fixed"`` without a target, a target that is not a number,
            ``last_k`` < 1, or ``best_target_by="seed_mean"`` with a target rule other than ``"best"``.
    """

    target_rule: str = "best"
    checkpoint: str = "last"
    fixed_target: float | tuple[tuple[str, float], ...] | None = None
    last_k: int = 3
    best_target_by: str = "trial"

    def __post_init__(self) -> None:
        ft = self.fixed_target
        if isinstance(ft, Mapping):
            ft = tuple(sorted((str(k), float(v)) for k, v in ft.items()))
        elif ft is not None and not isinstance(ft, tuple):
            ft = float(ft)
        object.__setattr__(self, "fixed_target", ft)
        if self.target_rule not in TARGET_RULES:
            raise ValueError(f"target_rule must be one of {TARGET_RULES}, got {self.target_rule!r}")
        if self.checkpoint not in CHECKPOINTS:
            raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {self.checkpoint!r}")
        if self.target_rule == "fixed" and ft in (None, ()):
            raise ValueError("target_rule='fixed' needs fixed_target (a raw return, or {task: return})")
        if self.checkpoint == "mean_last_k" and (not isinstance(self.last_k, int) or self.last_k < 1):
            raise ValueError(f"last_k must be a positive integer, got {self.last_k!r}")
        if self.best_target_by not in BEST_TARGET_BY:
            raise ValueError(f"best_target_by must be one of {BEST_TARGET_BY}, got {self.best_target_by!r}")
        if self.best_target_by != "trial" and self.target_rule != "best":
            raise ValueError(f"best_target_by={self.best_target_by!r} applies to target_rule='best' only, "
                             f"got target_rule={self.target_rule!r}")

    @classmethod
    def from_options(
        cls, target_rule: str = "best", checkpoint: str = "last", fixed_target: Sequence[str] | None = None,
        last_k: int = 3, best_target_by: str = "trial",
    ) -> SelectionRule:
        """The rule from ``lamo-analysis`` options: enum members or strings, and ``--fixed-target``'s
        strings (:func:`parse_fixed_target`); ``best_target_by`` is ``--best-target-by``.

        Raises:
            ValueError: as :func:`parse_fixed_target` and the constructor.
        """
        return cls(str(getattr(target_rule, "value", target_rule)), str(getattr(checkpoint, "value", checkpoint)),
                   parse_fixed_target(fixed_target), last_k,
                   str(getattr(best_target_by, "value", best_target_by)))

    @property
    def targets(self) -> float | dict[str, float] | None:
        """:attr:`fixed_target` as given: a raw return, ``{task: raw return}``, or ``None``."""
        return dict(self.fixed_target) if isinstance(self.fixed_target, tuple) else self.fixed_target

    def _fixed_text(self) -> str:
        if isinstance(self.fixed_target, tuple):
            return ", ".join(f"{task}: {t:g}" for task, t in self.fixed_target)
        return f"{self.fixed_target:g}"

    def describe(self) -> str:
        """Human-readable rule, written into every table caption and into ``scores.csv``
        (``selection_rule``), e.g. "Trial score = normalised score (0–100) of the best-performing RTG
        target per trial (LaMo: best target's final score), at the final evaluation." """
        if self.target_rule == "best" and self.best_target_by == "seed_mean":
            target = ("the RTG target with the best seed-averaged score per task × sample ratio × method, "
                      "every seed reported at that one target")
        elif self.target_rule == "fixed":
            target = f"the fixed RTG target ({self._fixed_text()}, raw return)"
        else:
            target = {
                "best": "the best-performing RTG target per trial (LaMo: best target's final score)",
                "largest": "the largest RTG target (CORL's rule)",
            }[self.target_rule]
        when = {
            "last": "at the final evaluation",
            "best": "at the best evaluation during training",
            "mean_last_k": f"averaged over the last {self.last_k} evaluations",
        }[self.checkpoint]
        return f"Trial score = normalised score (0–100) of {target}, {when}."


#: LaMo's rule: the best-performing RTG target's score at the final evaluation.
DEFAULT_RULE = SelectionRule()


def rule_text(rule: SelectionRule | str) -> str:
    """Caption text of a rule: :meth:`SelectionRule.describe`, or a given text as is."""
    return rule.describe() if isinstance(rule, SelectionRule) else str(rule)


def select_scores(df: pd.DataFrame, rule: SelectionRule = DEFAULT_RULE) -> pd.DataFrame:
    """Reduce the tidy frame of :func:`analysis.runs.load_trial_runs` to one row per trial (run).

    Args:
        df: tidy frame (one row per run × evaluation step × RTG target).
        rule: which RTG target and which evaluation (:class:`SelectionRule`; default LaMo's). With
            ``target_rule="fixed"``, runs without that target are dropped with a ``UserWarning``.

    Returns:
        Per trial: the run-level columns of ``df`` (``run_id, run_name, status, task, sample_ratio,
        seed, variant, config_hash``, ``param.*``) plus ``rtg_target`` (raw return), ``step``
        (training step of the chosen evaluation; the last one of the window for ``mean_last_k``),
        ``normalised_score`` (0–100), ``return_mean``, ``return_std`` (raw return; averaged for
        ``mean_last_k``), ``n_evals`` (evaluations averaged), ``target_rule``, ``checkpoint`` and
        ``selection_rule`` (:meth:`SelectionRule.describe`). Evaluation rows with a missing
        normalised score are ignored. A run evaluated without RTG targets (``rtg_target`` NaN: a
        Markov-policy baseline) has one score per evaluation; every target rule takes it. With
        ``best_target_by="seed_mean"``, a task × sample ratio × variant cell whose trials share no evaluated target is left out with a ``UserWarning``.
    """
    target_rule, checkpoint, last_k, fixed_target = rule.target_rule, rule.checkpoint, rule.last_k, rule.targets
    text = rule.describe()
    run_cols = [c for c in df.columns if c not in _EVAL_COLUMNS]
    d = df.dropna(subset=["normalised_score"]).sort_values(["run_id", "rtg_target", "step"])
    d = d.reset_index(drop=True)
    keys = ["run_id", "rtg_target"]
    g = d.groupby(keys, sort=False, dropna=False)  # dropna=False: a policy's NaN target is a group
    if checkpoint == "last":
        per = g.tail(1).assign(n_evals=1)
    elif checkpoint == "best":
        per = d.loc[g["normalised_score"].idxmax().to_numpy()].assign(n_evals=1)
    else:
        per = g.tail(last_k).groupby(keys, as_index=False, dropna=False).agg(
            step=("step", "max"),
            normalised_score=("normalised_score", "mean"),
            return_mean=("return_mean", "mean"),
            return_std=("return_std", "mean"),
            n_evals=("step", "size"),
        )
    per = per[["run_id"] + SCORE_COLUMNS]

    if target_rule == "best" and rule.best_target_by == "seed_mean":
        chosen = _best_on_seed_mean(per, d)
    elif target_rule == "best":
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
        chosen = per[np.isclose(per["rtg_target"], wanted) | per["rtg_target"].isna()]
        missing = sorted(set(per["run_id"]) - set(chosen["run_id"]))
        if missing:
            warnings.warn(
                f"{len(missing)} run(s) have no evaluation at RTG target {rule._fixed_text()} "
                f"and are left out: {missing[:5]}",
                stacklevel=2,
            )

    runs = df[run_cols].drop_duplicates("run_id")
    out = runs.merge(chosen, on="run_id", how="inner").assign(
        target_rule=target_rule, checkpoint=checkpoint, selection_rule=text
    )
    params = [c for c in run_cols if c.startswith("param.")]
    front = [c for c in run_cols if c not in params]
    cols = front + SCORE_COLUMNS + ["target_rule", "checkpoint", "selection_rule"] + params
    out = out[cols].sort_values(["task", "sample_ratio", "variant", "seed", "run_id"])
    return out.reset_index(drop=True)


def seed_mean_targets(per: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per task × sample ratio × variant (:data:`SEED_GROUP`) and RTG target: the trials' mean score.

    Args:
        per: one row per run × RTG target with ``run_id``, ``rtg_target`` (raw return) and
            ``normalised_score`` (0–100) at the chosen checkpoint.
        runs: ``run_id`` and the :data:`SEED_GROUP` columns, one row per run.

    Returns:
        Columns ``*SEED_GROUP, rtg_target, seed_mean`` (normalised score 0–100, mean over the cell's
        trials that have the target), ``n`` (those trials), ``n_cell`` (trials in the cell) and
        ``common`` (every trial of the cell has the target); sorted by cell, then target.
    """
    g = list(SEED_GROUP)
    p = per.merge(runs[["run_id", *g]], on="run_id", how="left")
    stats = p.groupby([*g, "rtg_target"], dropna=False, sort=True).agg(
        seed_mean=("normalised_score", "mean"), n=("run_id", "nunique")).reset_index()
    n_cell = p.groupby(g, dropna=False)["run_id"].nunique().rename("n_cell").reset_index()
    stats = stats.merge(n_cell, on=g, how="left")
    stats["common"] = stats["n"] == stats["n_cell"]
    return stats


def _best_on_seed_mean(per: pd.DataFrame, d: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``per`` at each cell's target with the highest seed-averaged score (ties → larger target)."""
    g = list(SEED_GROUP)
    runs = d.drop_duplicates("run_id")[["run_id", *g]]
    stats = seed_mean_targets(per, runs)
    cand = stats[stats["common"]]
    best = cand.sort_values([*g, "seed_mean", "rtg_target"], ascending=[True] * len(g) + [False, False],
                            na_position="last").groupby(g, dropna=False, sort=False).head(1)
    keyed = per.merge(runs, on="run_id", how="left")
    chosen = keyed.merge(best[[*g, "rtg_target"]], on=[*g, "rtg_target"], how="inner")
    missing = sorted(set(per["run_id"]) - set(chosen["run_id"]))
    if missing:
        warnings.warn(
            f"{len(missing)} run(s) are in task × ratio × variant cells whose trials share no evaluated RTG "
            f"target, so the seed-averaged best target is undefined; left out: {missing[:5]}",
            stacklevel=3,
        )
    return chosen[["run_id"] + SCORE_COLUMNS]
