"""Choose one score per trial: which RTG target × which checkpoint (a recorded methodology switch).

Decision Transformers are evaluated at several return-to-go (RTG) targets, and papers differ in which
number they report. The rule is a :class:`SelectionRule`, written into every caption
(:meth:`SelectionRule.describe`) and into ``scores.csv``:

* LaMo (arXiv 2310.20587): the official code (srzer/LaMo-2023, ``experiment-d4rl/experiment.py``)
  evaluates every target of a task, and the authors report the best-performing target's final score
  (their answer in the repository's issue thread https://github.com/srzer/LaMo-2023/issues/1) →
  ``SelectionRule(target_rule="best", checkpoint="last")``, the default;
* CORL (``corl-team/CORL``, ``results/get_offline_scores.py`` reads the largest target's score; its
  README has a "last" and a "best during training" table): ``target_rule="largest"``,
  ``checkpoint="last"`` or ``"best"``.

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

    Raises:
        ValueError: on construction, for an unknown ``target_rule`` / ``checkpoint``, ``"fixed"``
            without a target, a target that is not a number, or ``last_k`` < 1.
    """

    target_rule: str = "best"
    checkpoint: str = "last"
    fixed_target: float | tuple[tuple[str, float], ...] | None = None
    last_k: int = 3

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

    @classmethod
    def from_options(
        cls, target_rule: str = "best", checkpoint: str = "last", fixed_target: Sequence[str] | None = None,
        last_k: int = 3,
    ) -> SelectionRule:
        """The rule from ``lamo-analysis`` options: enum members or strings, and ``--fixed-target``'s
        strings (:func:`parse_fixed_target`).

        Raises:
            ValueError: as :func:`parse_fixed_target` and the constructor.
        """
        return cls(str(getattr(target_rule, "value", target_rule)), str(getattr(checkpoint, "value", checkpoint)),
                   parse_fixed_target(fixed_target), last_k)

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
        if self.target_rule == "fixed":
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
        normalised score are ignored.
    """
    target_rule, checkpoint, last_k, fixed_target = rule.target_rule, rule.checkpoint, rule.last_k, rule.targets
    text = rule.describe()
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
