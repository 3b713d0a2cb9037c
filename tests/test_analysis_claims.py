"""The claims section and the seven-method tables, on a small synthetic MLflow store (no Ray, no training).

The store is written with the plain MLflow client in the tracking contract's layout (child runs with the
contract's tags, flattened ``TrialConfig`` params, ``eval/rtg_<T>/...`` metrics), like
``tests/test_analysis_paper.py``. Every method logs under an RTG target key, the baselines included:
the value-based baselines' own ``eval/policy/...`` keys are read by ``analysis.runs`` (the baselines'
branch), and the claims only see the selected score per trial, so the key does not matter here.

Scores (normalised, 0–100) are chosen so that each verdict is implied by the numbers:

* Hopper-medium (dense), 5 seeds: LaMo 60 vs DT 30 at 1 % (supported), LaMo 40 vs DT 70 at 10 %
  (contradicted); pooled over both ratios P = 0.5 exactly (inconclusive); TD3+BC 90 at 1 %, the only
  value-based method there (contradicted); ``lamo-linear`` (linear embeddings, else LaMo) 45 at 1 % (MLP
  vs linear supported); ``lamo-no-lm-loss`` (λ = 0) with 3 seeds only (not enough runs); ``lamo-random``
  (random weights, else LaMo) 25 at 1 % (pre-trained vs random supported).
* Reacher2d (sparse): LaMo and DT (5 seeds) interleaved around 20 (inconclusive); IQL (5 seeds) the best
  value-based method, below LaMo (supported); CQL, TD3+BC, Wiki-RL, BC one seed each (table columns).
* Breakout (Atari): LaMo and DT with 2 seeds each (not enough runs).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis import claims as C
from analysis import stats as S
from analysis import tables as T
from analysis.paper import load_paper_numbers, paper_cells, with_paper_averages
from analysis.report import write_report
from analysis.runs import load_trial_runs
from analysis.select import select_scores
from trainers import contract
from trainers.config import TrialConfig, flatten

EXP = "claims-test"
SEVEN = ["lamo", "dt", "wiki-rl", "cql", "iql", "td3bc", "bc"]
SEEDS = range(5)  # = analysis.claims.MIN_RUNS_PER_SIDE: the smallest store that can give a verdict
OFFSET = [-4.0, -2.0, 0.0, 2.0, 4.0]  # per-seed offsets
INTERLEAVED = [-3.0, -1.0, 1.0, 3.0, 5.0]  # against OFFSET: a noisy tie (P(A > B) = 10/25)
H, R, B = "hopper-medium", "reacher2d-medium", "breakout-medium"
#: (variant, task, ratio) -> (base score, seeds, per-seed offsets)
GRID: dict[tuple[str, str, float], tuple[float, range, list[float]]] = {
    ("lamo", H, 0.01): (60, SEEDS, OFFSET), ("dt", H, 0.01): (30, SEEDS, OFFSET),
    ("lamo", H, 0.1): (40, SEEDS, OFFSET), ("dt", H, 0.1): (70, SEEDS, OFFSET),
    ("td3bc", H, 0.01): (90, SEEDS, OFFSET),
    ("lamo-linear", H, 0.01): (45, SEEDS, OFFSET),
    ("lamo-no-lm-loss", H, 0.01): (50, range(3), OFFSET),
    ("lamo-random", H, 0.01): (25, SEEDS, OFFSET),
    ("lamo", R, 1.0): (20, SEEDS, OFFSET), ("dt", R, 1.0): (20, SEEDS, INTERLEAVED),
    ("iql", R, 1.0): (8, SEEDS, OFFSET), ("cql", R, 1.0): (5, range(1), OFFSET), ("td3bc", R, 1.0): (3, range(1), OFFSET),
    ("wiki-rl", R, 1.0): (15, range(1), OFFSET), ("bc", R, 1.0): (4, range(1), OFFSET),
    ("lamo", B, 1.0): (150, range(2), OFFSET), ("dt", B, 1.0): (100, range(2), OFFSET),
}
MODEL = {  # variant -> trial-config overrides (the baselines get a `learner` param: a different config)
    "dt": {"model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full"}, "language": {"weight": 0.0}},
    "lamo-linear": {"model": {"embedding": "linear"}},
    "lamo-no-lm-loss": {"language": {"weight": 0.0}},
    "lamo-random": {"model": {"init": "random"}},
}
TARGET = 100.0  # one RTG target per trial (raw return; the selection takes the best = only target)


def score(variant: str, task: str, ratio: float, seed: int) -> float:
    base, _seeds, offs = GRID[(variant, task, ratio)]
    return base + offs[seed]


def _write_store(uri: str, grid: dict) -> None:
    c = MlflowClient(uri)
    exp_id = c.create_experiment(EXP)
    parent = c.create_run(exp_id, run_name="sweep", tags={contract.ROLE: contract.ROLE_SWEEP}).info.run_id
    now = int(time.time() * 1000)
    for (variant, task, ratio), (_base, seeds, _offs) in grid.items():
        over = MODEL.get(variant, {})
        cfg = TrialConfig(task="hopper-medium", sample_ratio=ratio, variant=variant, **over)
        params = {**flatten(cfg.record()), "task": task}
        if variant in ("cql", "iql", "td3bc", "bc", "wiki-rl"):
            params["learner"] = variant
        for seed in seeds:
            tags = {contract.ROLE: contract.ROLE_TRIAL, contract.PARENT_RUN: parent,
                    **contract.axis_tags(task, ratio, seed, variant),
                    contract.CONFIG_HASH: f"{task}-{ratio:g}-{variant}-{seed}", contract.DATA_SUBSET_HASH: f"{seed:016d}"}
            rid = c.create_run(exp_id, run_name=f"{task}_r{ratio:g}_{variant}_s{seed}", tags=tags).info.run_id
            s = score(variant, task, ratio, seed)
            metrics = [Metric(contract.eval_key(TARGET, "normalised_score"), s, now, 10)]
            c.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in {**params, "seed": seed}.items()])
            c.set_terminated(rid, "FINISHED")
    c.set_terminated(parent, "FINISHED")


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_uri):
    root = tmp_path_factory.mktemp("claimsstore")
    uri = new_sqlite_uri(root)
    _write_store(uri, GRID)
    return uri


@pytest.fixture(scope="module")
def selected(store):
    return select_scores(load_trial_runs(store, EXP))


BOOT = S.Bootstrap(reps=200, poi_reps=300, seed=0)


@pytest.fixture(scope="module")
def claims(selected):
    return C.check_claims(selected, BOOT)


def row(frame: pd.DataFrame, claim: str, scope_start: str) -> dict:
    hits = frame[(frame["claim"] == claim) & frame["scope"].str.startswith(scope_start)]
    assert len(hits) == 1, (claim, scope_start, frame[frame["claim"] == claim]["scope"].tolist())
    return hits.iloc[0].to_dict()


# --- the verdict rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lo, hi, runs, expected", [
    (0.6, 0.9, (5, 5), C.SUPPORTED), (0.1, 0.4, (5, 9), C.CONTRADICTED), (0.4, 0.6, (5, 5), C.INCONCLUSIVE),
    (0.5, 0.9, (5, 5), C.INCONCLUSIVE),  # lower bound must be strictly above 0.5
    (0.9, 1.0, (4, 5), C.NOT_ENOUGH), (0.9, 1.0, (5, 0), C.NOT_ENOUGH), (math.nan, math.nan, (9, 9), C.NOT_ENOUGH),
])
def test_verdict_rule(lo, hi, runs, expected):
    assert C.MIN_RUNS_PER_SIDE == 5
    assert C.verdict(lo, hi, *runs) == expected


def test_claims_are_defined_once_with_the_papers_words():
    keys = [c.key for c in C.CLAIMS]
    assert len(set(keys)) == len(keys) == 7
    for c in C.CLAIMS:
        assert c.paper_words.count('"') >= 2 and "2310.20587" in c.where  # quoted, with the paper's place
    assert {c.a.field for c in C.CLAIMS if c.a.field} == {"init", "embedding", "finetune", "language_weight"}
    assert {c.a.field for c in C.CLAIMS if c.a.field} <= set(contract.ABLATION_PARAMS)


# --- verdicts on the store --------------------------------------------------------------------------
def test_pretrained_vs_random_compares_only_runs_that_differ_in_init(claims):
    hit = row(claims, "pretrained_vs_random", "Dense-reward")
    assert hit["verdict"] == C.SUPPORTED and hit["estimate"] == 1.0  # LaMo 60 +- 4 vs random init 25 +- 4
    assert (hit["runs_a"], hit["runs_b"]) == (5, 5)  # DT (also random init, but a different model) is not in


def test_lamo_vs_dt_per_ratio_both_directions(claims):
    win = row(claims, "lamo_vs_dt", "Dense-reward MuJoCo tasks (medium), 1% data")
    assert (win["verdict"], win["estimate"], win["ci_low"]) == (C.SUPPORTED, 1.0, 1.0)
    assert (win["runs_a"], win["runs_b"], win["n_cells"]) == (5, 5, 1)
    loss = row(claims, "lamo_vs_dt", "Dense-reward MuJoCo tasks (medium), 10% data")
    assert (loss["verdict"], loss["estimate"], loss["ci_high"]) == (C.CONTRADICTED, 0.0, 0.0)
    pooled = row(claims, "lamo_vs_dt", "Dense-reward MuJoCo tasks (medium), all")
    assert pooled["verdict"] == C.INCONCLUSIVE and math.isclose(pooled["estimate"], 0.5)
    assert (pooled["runs_a"], pooled["runs_b"], pooled["n_cells"]) == (10, 10, 2)


def test_noisy_tie_is_inconclusive(claims):
    tie = row(claims, "lamo_vs_dt", "Sparse-reward")
    # interleaved seeds: LaMo wins 10 of the 25 pairs
    a = [score("lamo", R, 1.0, s) for s in SEEDS]
    b = [score("dt", R, 1.0, s) for s in SEEDS]
    expected = np.mean([(x > y) + 0.5 * (x == y) for x in a for y in b])
    assert math.isclose(tie["estimate"], expected) and 0.3 < expected < 0.7
    assert tie["ci_low"] < 0.5 < tie["ci_high"] and tie["verdict"] == C.INCONCLUSIVE


def test_too_few_runs_say_so(claims, selected):
    atari = row(claims, "lamo_vs_dt", "Atari")
    assert atari["verdict"] == C.NOT_ENOUGH and (atari["runs_a"], atari["runs_b"]) == (2, 2)
    assert math.isnan(atari["estimate"])
    lang = row(claims, "language_loss", "Dense")
    assert lang["verdict"] == C.NOT_ENOUGH and lang["runs_b"] == 3 and lang["runs_a"] == 5
    lora = claims[claims["claim"] == "lora_vs_full"]  # no full fine-tuning trial at all
    # LoRA vs full: DT is fully fine-tuned but differs in everything else, so there is no ablation
    assert len(lora) == 1 and lora.iloc[0]["verdict"] == C.NOT_ENOUGH and "no ablation" in lora.iloc[0]["note"]
    # a smaller minimum turns the 3-run side into a verdict: the minimum is the one parameter
    lang_claim = next(c for c in C.CLAIMS if c.key == "language_loss")
    lower = C.check_claims(selected, S.Bootstrap(poi_reps=100), min_runs=3, claims=(lang_claim,))
    assert row(lower, "language_loss", "Dense")["verdict"] == C.SUPPORTED  # 56..64 vs 46..50: separated


def test_value_based_sparse_vs_dense(claims):
    sparse = row(claims, "lamo_vs_value_based_sparse", "Sparse")
    assert sparse["side_b"] == "IQL" and sparse["verdict"] == C.SUPPORTED  # IQL (8) is the best of 5/8/3
    assert (sparse["runs_a"], sparse["runs_b"]) == (5, 5)
    dense = row(claims, "lamo_vs_value_based_dense", "Dense")
    assert dense["side_b"] == "TD3+BC" and dense["verdict"] == C.CONTRADICTED
    assert (dense["runs_a"], dense["runs_b"], dense["n_cells"]) == (5, 5, 1)  # TD3+BC ran at 1 % only
    assert "TD3+BC 90.0" in dense["note"] and "parity" in dense["note"]


def test_mlp_vs_linear_uses_the_ablation_settings(claims):
    mlp = row(claims, "mlp_vs_linear", "Dense")
    # only the hopper 1 % cell has both embeddings among otherwise-identical configs; DT (linear) is not in it
    assert (mlp["verdict"], mlp["n_cells"], mlp["runs_a"], mlp["runs_b"]) == (C.SUPPORTED, 1, 5, 5)


# --- tables: seven columns, the paper beside ours -------------------------------------------------
def test_tables_have_all_seven_methods_and_the_paper_numbers(selected):
    numbers, _sources, methods = load_paper_numbers()
    cells, _ = paper_cells(selected, numbers, methods)
    tabs = {t.name: t for t in T.paper_tables(selected, "RULE")}
    from analysis.paper import annotate_tables

    annotate_tables(list(tabs.values()), cells)
    sparse = tabs["table_sparse"]
    assert sparse.columns == SEVEN
    md = T.to_markdown(sparse)
    assert md.splitlines()[2] == "| Task | Ratio | LaMo | DT | Wiki-RL | CQL | IQL | TD3+BC | BC |"
    paper_lamo = float(numbers[(numbers.task == R) & (numbers.method == "LaMo") & (numbers.kind == "paper")]["value"].iloc[0])
    ours = np.mean([score("lamo", R, 1.0, s) for s in SEEDS])
    assert f"{ours:.1f} ± " in md and f"[paper {paper_lamo:.1f}]" in md
    paper_dt = float(numbers[(numbers.task == H) & (numbers.sample_ratio == 0.01) & (numbers.method == "DT")
                             & (numbers.kind == "paper")]["value"].iloc[0])  # Table 3 has every ratio
    assert f"[paper {paper_dt:.1f}]" in T.to_markdown(tabs["table_dense"])
    csv = T.to_csv_frame(sparse)
    hit = csv[(csv["method"] == "lamo") & (csv["row_kind"] == "cell")]
    assert hit["paper"].iloc[0] == paper_lamo and csv[csv["method"] == "dt"]["paper"].notna().all()
    dense = T.to_csv_frame(tabs["table_dense"])
    assert dense[dense["method"] == "lamo-no-lm-loss"]["paper"].isna().all()  # no paper table for it (Fig. 6b)
    assert tabs["table_dense"].columns == ["lamo", "dt", "td3bc", "lamo-linear", "lamo-no-lm-loss", "lamo-random"]


def test_domain_averages_carry_the_figure1_numbers(selected):
    numbers, _sources, methods = load_paper_numbers()
    avg = with_paper_averages(T.domain_averages(selected), selected, numbers, methods)
    mujoco = avg[avg["domain"] == "MuJoCo"].set_index("method")
    fig1 = numbers[(numbers["item"] == "Figure 1") & (numbers["domain"] == "MuJoCo")].set_index("method")["value"]
    assert mujoco.loc["lamo", "paper"] == fig1["LaMo"] and mujoco.loc["dt", "paper"] == fig1["DT"]
    assert math.isnan(mujoco.loc["td3bc", "paper"])  # Figure 1 has no IQL / TD3+BC bars
    # common-rows rule: TD3+BC ran at 1 % only, so every method is averaged over that one cell
    assert math.isclose(mujoco.loc["td3bc", "mean"], 90.0) and math.isclose(mujoco.loc["lamo", "mean"], 60.0)
    reacher = avg[avg["domain"] == "Reacher2d"].set_index("method")
    assert list(reacher.index) == SEVEN and reacher["paper"].isna().all()  # Figure 1 has no Reacher2d bars


# --- the report -----------------------------------------------------------------------------------
def test_report_writes_the_claims_section(store, tmp_path):
    paths = write_report(store, EXP, tmp_path, parts=("tables", "claims"), bootstrap=BOOT)
    assert {"claims.md", "claims.csv"} <= set(paths)
    csv = pd.read_csv(paths["claims.csv"])
    assert list(csv.columns) == C.CLAIM_COLUMNS and set(csv["verdict"]) == set(C.VERDICTS)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Claims" in report and "#### LaMo vs DT at each sample ratio" in report
    assert "**supported**" in report and "**contradicted**" in report and "**not enough runs**" in report
    assert "closes the gap between value-based" in report
    assert "[paper 33.0]" in (tmp_path / "table_sparse.md").read_text(encoding="utf-8")
    assert "[paper" in (tmp_path / "table_dense.md").read_text(encoding="utf-8")  # Table 3: 1 % and 10 %


def test_cli_claims_command(store, tmp_path):
    from typer.testing import CliRunner

    from analysis.cli import app

    res = CliRunner().invoke(app, ["claims", "--tracking-uri", store, "--experiment", EXP, "--out", str(tmp_path),
                                   "--poi-reps", "50", "--claims-min-runs", "2"])
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(tmp_path / "claims.csv")
    atari = csv[(csv["claim"] == "lamo_vs_dt") & csv["scope"].str.startswith("Atari")].iloc[0]
    assert atari["verdict"] == C.SUPPORTED and atari["reps"] == 50  # 2 vs 2 runs now suffice: 146, 148 vs 96, 98
    assert not (tmp_path / "table.md").exists()  # only the claims part
