"""The claims section and the seven-method tables, on a small synthetic MLflow store (no Ray, no training).

The store is written through the sweep's own writer, ``orchestrator.tracking`` (``start_parent_run``,
``TrialRun.open`` / ``set_tags`` / ``log_metrics`` / ``finish``), with each trial's config built from its
variant's preset (``trainers.presets.get_preset``) as a sweep builds it. The sequence models log their
score under an RTG target key, the value-based / imitation baselines under ``eval/policy/...``
(``contract.eval_key(None, ...)``), as their trainers do.

Scores (normalised, 0–100) are chosen so that each verdict is implied by the numbers: 7 seeds per side
in one cell give a smallest two-sided permutation p-value of 2 / C(14, 7) = 0.0006, small enough to
survive Holm's correction across the report's tested rows; per-seed offsets spread ±3 points.

* Hopper-medium (dense), 7 seeds: LaMo 60 vs DT 30 at 1 % (supported), LaMo 40 vs DT 70 at 10 %
  (contradicted); pooled over both ratios P = 0.5 exactly (inconclusive); TD3+BC 90 at 1 % (parity
  contradicted: LaMo worse by far more than the margin); IQL 60 (interleaved seeds) at 1 % (parity
  supported: within ±5 points); ``lamo-linear`` 45 at 1 % (MLP vs linear supported);
  ``lamo-no-lm-loss`` (λ = 0) with 3 seeds only (not enough runs); ``lamo-random-init`` 25 at 1 %
  (pre-trained vs random supported).
* Reacher2d (sparse): LaMo and DT (7 seeds) interleaved around 20 (inconclusive); IQL (7 seeds) below
  LaMo (supported); CQL, TD3+BC, Wiki-RL, BC one seed each (table columns; not enough runs as claims).
* Breakout (Atari): LaMo and DT with 2 seeds each (not enough runs); no value-based run there.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import claims as C
from analysis import stats as S
from analysis import tables as T
from analysis.paper import load_paper_numbers, paper_cells, with_paper_averages
from analysis.report import write_report
from analysis.runs import load_trial_runs
from analysis.select import select_scores
from orchestrator import tracking
from trainers import contract
from trainers.config import TrialConfig
from trainers.presets import get_preset

EXP = "claims-test"
SEVEN = ["lamo", "dt", "wiki-rl", "cql", "iql", "td3bc", "bc"]
SEEDS = range(7)
OFFSET = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]  # per-seed offsets
INTERLEAVED = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]  # against OFFSET: a noisy tie (P(A > B) = 21/49)
H, R, B = "hopper-medium", "reacher2d-medium", "breakout-medium"
#: (variant, task, ratio) -> (base score, seeds, per-seed offsets)
GRID: dict[tuple[str, str, float], tuple[float, range, list[float]]] = {
    ("lamo", H, 0.01): (60, SEEDS, OFFSET), ("dt", H, 0.01): (30, SEEDS, OFFSET),
    ("lamo", H, 0.1): (40, SEEDS, OFFSET), ("dt", H, 0.1): (70, SEEDS, OFFSET),
    ("td3bc", H, 0.01): (90, SEEDS, OFFSET), ("iql", H, 0.01): (60, SEEDS, INTERLEAVED),
    ("lamo-linear", H, 0.01): (45, SEEDS, OFFSET),
    ("lamo-no-lm-loss", H, 0.01): (50, range(3), OFFSET),
    ("lamo-random-init", H, 0.01): (25, SEEDS, OFFSET),
    ("lamo", R, 1.0): (20, SEEDS, OFFSET), ("dt", R, 1.0): (20, SEEDS, INTERLEAVED),
    ("iql", R, 1.0): (8, SEEDS, OFFSET), ("cql", R, 1.0): (5, range(1), OFFSET), ("td3bc", R, 1.0): (3, range(1), OFFSET),
    ("wiki-rl", R, 1.0): (15, range(1), OFFSET), ("bc", R, 1.0): (4, range(1), OFFSET),
    ("lamo", B, 1.0): (150, range(2), OFFSET), ("dt", B, 1.0): (100, range(2), OFFSET),
}
BASELINES = ("cql", "iql", "td3bc", "bc")  # Markov policies: scores under eval/policy/...
TARGET = 100.0  # one RTG target per sequence-model trial (raw return; the selection takes the only target)


def score(variant: str, task: str, ratio: float, seed: int) -> float:
    base, _seeds, offs = GRID[(variant, task, ratio)]
    return base + offs[seed]


def trial(variant: str, task: str, ratio: float, seed: int) -> TrialConfig:
    domain = "atari" if task == B else None
    return TrialConfig(task=task, sample_ratio=ratio, seed=seed, variant=variant, **get_preset(variant, domain))


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_uri):
    root = tmp_path_factory.mktemp("claimsstore")
    uri = new_sqlite_uri(root)
    exp_id = tracking.ensure_experiment(uri, EXP, root / "artifacts")
    cfgs = [trial(v, t, r, s) for (v, t, r), (_b, seeds, _o) in GRID.items() for s in seeds]
    parent = tracking.start_parent_run(uri, exp_id, EXP, None, cfgs, 0)
    for cfg in cfgs:
        run = tracking.TrialRun.open(uri, exp_id, parent, cfg)
        run.set_tags({contract.DATA_SUBSET_HASH: f"{cfg.seed:016d}"})
        target = None if cfg.variant in BASELINES else TARGET
        run.log_metrics(10, {contract.eval_key(target, "normalised_score"):
                             score(cfg.variant, cfg.task, cfg.sample_ratio, cfg.seed)})
        run.finish("FINISHED")
    tracking.finish_parent_run(uri, parent, len(cfgs), 0, 0)
    return uri


@pytest.fixture(scope="module")
def selected(store):
    return select_scores(load_trial_runs(store, EXP))


BOOT = S.Bootstrap(reps=200, poi_reps=300, seed=0)


@pytest.fixture(scope="module")
def claims(selected):
    return C.check_claims(selected, BOOT)


def row(frame: pd.DataFrame, claim: str, scope_start: str, side_b: str | None = None) -> dict:
    hits = frame[(frame["claim"] == claim) & frame["scope"].str.startswith(scope_start)]
    if side_b is not None:
        hits = hits[hits["side_b"] == side_b]
    assert len(hits) == 1, (claim, scope_start, frame[frame["claim"] == claim][["scope", "side_b"]].values.tolist())
    return hits.iloc[0].to_dict()


# --- the verdict rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("p, direction, expected", [
    (0.01, 1, C.SUPPORTED), (0.01, -1, C.CONTRADICTED), (0.2, 1, C.INCONCLUSIVE), (0.05, 1, C.SUPPORTED),
    (0.0501, -1, C.INCONCLUSIVE), (0.01, 0, C.INCONCLUSIVE), (math.nan, 1, C.NOT_ENOUGH),
])
def test_verdict_rule(p, direction, expected):
    assert C.verdict(p, direction, alpha=0.05) == expected


def test_claims_are_defined_once_with_the_papers_words():
    keys = [c.key for c in C.CLAIMS]
    assert len(set(keys)) == len(keys)
    for c in C.CLAIMS:
        assert c.paper_words.count('"') >= 2 and "2310.20587" in c.where  # quoted, with the paper's place
    ablation_fields = {c.a.field for c in C.CLAIMS if c.a.field}
    assert ablation_fields and ablation_fields <= set(contract.ABLATION_PARAMS)
    parity = [c for c in C.CLAIMS if c.margin is not None]  # "closes the gap": a margin, Atari in scope
    assert parity and all("closes the gap" in c.paper_words and "atari" in c.task_groups for c in parity)


# --- verdicts on the store --------------------------------------------------------------------------
def test_every_tested_row_counts_in_holm(claims):
    tested = claims[claims["p_value"].notna()]
    assert (claims["n_tested"] == len(tested)).all() and len(tested) >= 2
    assert np.allclose(tested["p_holm"], S.holm(tested["p_value"].to_numpy()))
    assert (tested["p_holm"] >= tested["p_value"]).all()
    assert (claims.loc[claims["p_value"].isna(), "verdict"] == C.NOT_ENOUGH).all()


def test_pretrained_vs_random_compares_only_runs_that_differ_in_init(claims):
    hit = row(claims, "pretrained_vs_random", "Dense-reward")
    assert hit["verdict"] == C.SUPPORTED and hit["estimate"] == 1.0  # LaMo 60 +- 3 vs random init 25 +- 3
    assert (hit["runs_a"], hit["runs_b"]) == (len(SEEDS), len(SEEDS))  # DT (random init too, another model) is not in


def test_lamo_vs_dt_per_ratio_both_directions(claims):
    n = len(SEEDS)
    win = row(claims, "lamo_vs_dt", "Dense-reward MuJoCo tasks (medium), 1% data")
    assert (win["verdict"], win["estimate"], win["ci_low"]) == (C.SUPPORTED, 1.0, 1.0)
    assert (win["runs_a"], win["runs_b"], win["n_cells"]) == (n, n, 1)
    assert math.isclose(win["p_value"], 2 / math.comb(2 * n, n))  # perfectly separated: the exact minimum
    loss = row(claims, "lamo_vs_dt", "Dense-reward MuJoCo tasks (medium), 10% data")
    assert (loss["verdict"], loss["estimate"], loss["ci_high"]) == (C.CONTRADICTED, 0.0, 0.0)
    pooled = row(claims, "lamo_vs_dt", "Dense-reward MuJoCo tasks (medium), all")
    assert pooled["verdict"] == C.INCONCLUSIVE and math.isclose(pooled["estimate"], 0.5)
    assert (pooled["runs_a"], pooled["runs_b"], pooled["n_cells"]) == (2 * n, 2 * n, 2)


def test_noisy_tie_is_inconclusive(claims):
    tie = row(claims, "lamo_vs_dt", "Sparse-reward")
    a = [score("lamo", R, 1.0, s) for s in SEEDS]
    b = [score("dt", R, 1.0, s) for s in SEEDS]
    expected = np.mean([(x > y) + 0.5 * (x == y) for x in a for y in b])
    assert math.isclose(tie["estimate"], expected) and 0.3 < expected < 0.7
    assert tie["p_value"] > 0.05 and tie["verdict"] == C.INCONCLUSIVE


def test_too_few_runs_say_so(claims, selected, store, tmp_path):
    atari = row(claims, "lamo_vs_dt", "Atari")
    assert atari["verdict"] == C.NOT_ENOUGH and (atari["runs_a"], atari["runs_b"]) == (2, 2)
    assert math.isnan(atari["estimate"]) and math.isnan(atari["p_value"])
    lang = row(claims, "language_loss", "Dense")
    assert lang["verdict"] == C.NOT_ENOUGH and lang["runs_b"] == 3 and lang["runs_a"] == len(SEEDS)
    lora = claims[claims["claim"] == "lora_vs_full"]  # no full fine-tuning trial at all
    # LoRA vs full: DT is fully fine-tuned but differs in everything else, so there is no ablation
    assert len(lora) == 1 and lora.iloc[0]["verdict"] == C.NOT_ENOUGH and "no ablation" in lora.iloc[0]["note"]
    # a smaller minimum turns the 3-run side into a test: 7 + 3 runs can reach p = 2 / C(10, 3) = 0.017
    lang_claim = next(c for c in C.CLAIMS if c.key == "language_loss")
    lower = C.check_claims(selected, S.Bootstrap(poi_reps=100), min_runs=3, claims=(lang_claim,))
    hit = row(lower, "language_loss", "Dense")
    assert hit["verdict"] == C.SUPPORTED and math.isclose(hit["p_value"], 2 / math.comb(10, 3))  # 57..63 vs 47..49


def test_value_based_is_each_method_and_dense_is_parity(claims):
    sparse = claims[claims["claim"] == "lamo_vs_value_based_sparse"]
    assert set(sparse["side_b"]) == {"CQL", "IQL", "TD3+BC"}  # each method a row: no best picked on these runs
    iql = row(claims, "lamo_vs_value_based_sparse", "Sparse", "IQL")
    assert iql["verdict"] == C.SUPPORTED and iql["test"] == "superiority"
    assert (row(claims, "lamo_vs_value_based_sparse", "Sparse", "CQL")["verdict"]) == C.NOT_ENOUGH  # one seed
    far = row(claims, "lamo_vs_value_based_dense", "Dense", "TD3+BC")  # LaMo 60 vs 90: worse by > the margin
    assert far["test"] == "equivalence" and far["margin"] == C.EQUIVALENCE_MARGIN and far["verdict"] == C.CONTRADICTED
    assert (far["runs_a"], far["runs_b"], far["n_cells"]) == (len(SEEDS), len(SEEDS), 1)  # TD3+BC ran at 1 % only
    close = row(claims, "lamo_vs_value_based_dense", "Dense", "IQL")  # 60 vs 60 interleaved: within ±5
    assert close["verdict"] == C.SUPPORTED and 0.3 < close["estimate"] < 0.7
    atari = row(claims, "lamo_vs_value_based_dense", "Atari")  # Atari is in the dense claim's scope
    assert atari["verdict"] == C.NOT_ENOUGH and "no run of CQL, IQL, TD3+BC" in atari["note"]
    assert "parity" in close["note"] and "not chosen on the runs" in close["note"]


def test_mlp_vs_linear_uses_the_ablation_settings(claims):
    mlp = row(claims, "mlp_vs_linear", "Dense")
    # only the hopper 1 % cell has both embeddings among otherwise-identical configs; DT (linear) is not in it
    assert (mlp["verdict"], mlp["n_cells"], mlp["runs_a"], mlp["runs_b"]) == (C.SUPPORTED, 1, len(SEEDS), len(SEEDS))


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
    assert tabs["table_dense"].columns == ["lamo", "dt", "iql", "td3bc", "lamo-linear", "lamo-no-lm-loss",
                                           "lamo-random-init"]


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
    tested = int(csv["p_value"].notna().sum())
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Claims" in report and "#### LaMo vs DT at each sample ratio" in report
    assert f"Holm's correction across the **{tested} tested row(s)**" in report
    assert f"± {C.EQUIVALENCE_MARGIN:g} normalised-score points" in report
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
    # 2 vs 2 runs pass the lowered minimum and are perfectly separated (146, 148 vs 96, 98), yet one cell of
    # 2 + 2 runs has 6 relabellings: the smallest two-sided p is 1/3, so still no verdict
    assert atari["verdict"] == C.NOT_ENOUGH and atari["reps"] == 50 and "cannot give a verdict" in atari["note"]
    assert atari["estimate"] == 1.0  # the effect is still reported
    assert not (tmp_path / "table.md").exists()  # only the claims part


@pytest.mark.parametrize("method", ["lamo", None])
def test_a_variants_method_tag_puts_it_on_its_methods_side(tmp_path, new_sqlite_uri, method):
    """A variant named otherwise (``lamo-smollm2``) is LaMo in the claims when its sweep said ``method:
    lamo`` (``TrialRun.open(method=...)`` tags ``lamo.method``), and no method when it did not."""
    uri = new_sqlite_uri(tmp_path)
    exp_id = tracking.ensure_experiment(uri, "method-tag", tmp_path / "artifacts")
    cfgs = [TrialConfig(task=H, sample_ratio=0.01, seed=s, variant=v, **get_preset(p))
            for v, p in (("lamo-smollm2", "lamo"), ("dt", "dt")) for s in SEEDS]
    parent = tracking.start_parent_run(uri, exp_id, "method-tag", None, cfgs, 0)
    for cfg in cfgs:
        run = tracking.TrialRun.open(uri, exp_id, parent, cfg, method=method if cfg.variant != "dt" else None)
        run.set_tags({contract.DATA_SUBSET_HASH: f"{cfg.seed:016d}"})
        run.log_metrics(10, {contract.eval_key(TARGET, "normalised_score"):
                             (60 if cfg.variant != "dt" else 30) + OFFSET[cfg.seed]})
        run.finish("FINISHED")
    sel = select_scores(load_trial_runs(uri, "method-tag"))
    assert set(sel.loc[sel["variant"] == "lamo-smollm2", "method"].fillna("none")) == {method or "none"}
    r = row(C.check_claims(sel, BOOT), "lamo_vs_dt", "Dense")
    if method:
        assert (r["runs_a"], r["runs_b"], r["verdict"]) == (7, 7, C.SUPPORTED)
    else:
        assert (r["runs_a"], r["verdict"]) == (0, C.NOT_ENOUGH)
