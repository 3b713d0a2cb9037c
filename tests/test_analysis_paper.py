"""Paper outputs of the analysis package against an MLflow store written with the
orchestrator's own tracking code (``orchestrator.tracking``: parent run, ``TrialRun`` children with the
contract's tags, flattened ``TrialConfig`` params and ``eval/rtg_*`` metrics) and filled with known values.

Grid (3 seeds each unless noted):

* ``hopper-medium`` (registry: D4RL data) at ratios 1 % and 100 %, ``reacher2d-medium`` (registry:
  locally collected data) at 100 %, variants ``lamo``, ``dt``, ``lamo-linear`` (= lamo with linear
  embeddings; no Reacher2d trials → missing cells) and ``lamo-nolang`` (= lamo with λ = 0);
* a FAILED ``dt`` trial (hopper 1 %, seed 3) with evaluations;
* tasks the registry does not know, written with the raw client: ``kitchen-partial`` (lamo, dt; 2 seeds),
  ``breakout-medium`` (lamo, dt; tag ``data_source=d4rl``) and ``cartpole-random`` (lamo only).

Scores (normalised, 0–100) are ``base + SEED_OFFSET[seed] + PATTERN[target index][step]``.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from analysis import stats as S
from analysis import tables as T
from analysis.cli import app
from analysis.domains import task_info
from analysis.paper import (
    COMPARISON_COLUMNS,
    PAPER_METRIC_LABEL,
    compare,
    comparison_markdown,
    load_paper_numbers,
    load_printed_averages,
    annotate_tables,
    match_methods,
    paper_cells,
)
from analysis.report import write_report
from analysis.runs import load_trial_runs
from analysis.select import DEFAULT_RULE, SelectionRule, select_scores
from orchestrator import tracking
from trainers import contract
from trainers.config import TrialConfig, flatten
from trainers.tasks import TASKS, get_task


EXP = "paper-test"
STEPS = (10, 20)
SEED_OFFSET = {0: 0.0, 1: 4.0, 2: 11.0}  # mean 5, sample std sqrt(31)
# target index (0 = largest target) -> {step: added score}; hopper has 4 targets, reacher2d 2
PATTERN4 = {0: {10: 30, 20: 20}, 1: {10: 10, 20: 28}, 2: {10: 5, 20: 25}, 3: {10: 0, 20: 0}}
PATTERN2 = {0: {10: 30, 20: 20}, 1: {10: 5, 20: 25}}
BASE = {  # (variant, task, ratio) -> base score
    ("lamo", "hopper-medium", 0.01): 40, ("lamo", "hopper-medium", 1.0): 50, ("lamo", "reacher2d-medium", 1.0): 10,
    ("dt", "hopper-medium", 0.01): 20, ("dt", "hopper-medium", 1.0): 45, ("dt", "reacher2d-medium", 1.0): 2,
    ("lamo-linear", "hopper-medium", 0.01): 30, ("lamo-linear", "hopper-medium", 1.0): 48,
    ("lamo-nolang", "hopper-medium", 0.01): 35, ("lamo-nolang", "hopper-medium", 1.0): 49,
    ("lamo-nolang", "reacher2d-medium", 1.0): 8,
}
LAMO = {"model": {"lm": "gpt2", "init": "pretrained", "embedding": "mlp", "finetune": "lora"},
        "language": {"weight": 0.1, "block_size": 128}}
VARIANTS = {
    "lamo": LAMO,
    "dt": {"model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full"},
           "language": {"weight": 0.0}},
    "lamo-linear": {**LAMO, "model": {**LAMO["model"], "embedding": "linear"}},
    "lamo-nolang": {**LAMO, "language": {"weight": 0.0}},  # block size back to its default: inert at λ = 0
}
FOREIGN = {  # runs logged without a data_source tag (cartpole-random is outside the registry): (variant, task, ratio) -> (base, seeds, extra tags)
    ("lamo", "kitchen-partial", 1.0): (40, (0, 1), {}), ("dt", "kitchen-partial", 1.0): (25, (0, 1), {}),
    ("lamo", "breakout-medium", 1.0): (150, (0, 1, 2), {contract.DATA_SOURCE: "d4rl"}),
    ("dt", "breakout-medium", 1.0): (100, (0, 1, 2), {contract.DATA_SOURCE: "d4rl"}),
    ("lamo", "cartpole-random", 1.0): (60, (0,), {}),
}
TARGETS = {"kitchen-partial": (4.0, 3.0), "breakout-medium": (90.0, 120.0), "cartpole-random": (500.0, 200.0)}


def best_last(task: str) -> float:
    """Added score of the default rule (best target's final score): max over targets at the last step."""
    pat = PATTERN4 if len(targets_of(task)) == 4 else PATTERN2
    return max(p[STEPS[-1]] for p in pat.values())


def targets_of(task: str) -> tuple[float, ...]:
    return TARGETS[task] if task in TARGETS else get_task(task).rtg_targets


def eval_metrics(task: str, base: float, seed: int, step: int) -> dict[str, float]:
    targets = sorted(targets_of(task), reverse=True)
    pat = PATTERN4 if len(targets) == 4 else PATTERN2
    out = {}
    for i, t in enumerate(targets):
        score = base + SEED_OFFSET[seed] + pat[i][step]
        values = {"normalised_score": score, "return_mean": score * 10, "return_std": 1.0, "length_mean": 100.0}
        out |= {contract.eval_key(t, f): v for f, v in values.items()}
    out[contract.EVAL_BEST_SCORE] = max(v for k, v in out.items() if k.endswith("normalised_score"))
    return out


def trial(task, ratio, variant, seed) -> TrialConfig:
    v = VARIANTS[variant]
    return TrialConfig(task=task, sample_ratio=ratio, seed=seed, variant=variant, model=v["model"],
                       language=v["language"], train={"steps": STEPS[-1]}, eval={"every_steps": STEPS[0]})


def grid() -> list[tuple]:
    return [(v, t, r, s) for (v, t, r) in BASE for s in SEED_OFFSET]


def raw_trial(c, exp_id, parent, task, ratio, variant, seed, params, base, extra_tags=None, status="FINISHED"):
    """A child run in the contract's layout written with the plain client (tags, params, metrics, one batch)."""
    tags = {contract.ROLE: contract.ROLE_TRIAL, contract.PARENT_RUN: parent, **contract.axis_tags(task, ratio, seed, variant),
            contract.CONFIG_HASH: f"{task}-{ratio:g}-{variant}-{seed}", contract.DATA_SUBSET_HASH: f"{seed:016d}",
            **(extra_tags or {})}
    rid = c.create_run(exp_id, run_name=f"{task}_r{ratio:g}_{variant}_s{seed}", tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for step in STEPS for k, v in eval_metrics(task, base, seed, step).items()]
    params = {**params, "task": task, "sample_ratio": ratio, "seed": seed, "variant": variant}
    c.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    c.set_terminated(rid, status)


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_uri):
    """lamo and dt trials (and the failed one) through ``orchestrator.tracking.TrialRun`` exactly as a
    sweep writes them; the ablation variants and foreign tasks with :func:`raw_trial` (same layout,
    faster)."""
    root = tmp_path_factory.mktemp("paperstore")
    uri = new_sqlite_uri(root)
    exp_id = tracking.ensure_experiment(uri, EXP, root / "artifacts")
    cfgs = [trial(t, r, v, s) for v, t, r, s in grid()] + [trial("hopper-medium", 0.01, "dt", 3)]
    parent = tracking.start_parent_run(uri, exp_id, EXP, None, cfgs, 0)
    c = MlflowClient(uri)
    for cfg in cfgs:
        base = BASE[(cfg.variant, cfg.task, cfg.sample_ratio)]
        if cfg.variant not in ("lamo", "dt"):
            raw_trial(c, exp_id, parent, cfg.task, cfg.sample_ratio, cfg.variant, cfg.seed,
                      flatten(cfg.record()), base)
            continue
        run = tracking.TrialRun.open(uri, exp_id, parent, cfg)
        run.set_tags({contract.DATA_SUBSET_HASH: f"{cfg.seed:016d}"})
        for step in STEPS:
            run.log_metrics(step, {contract.TRAIN_ACTION_LOSS: 0.1, **eval_metrics(cfg.task, base, cfg.seed % 3, step)})
        run.finish("FAILED" if cfg.seed == 3 else "FINISHED")
    for (variant, task, ratio), (base, seeds, extra) in FOREIGN.items():
        params = flatten(trial("hopper-medium", ratio, variant, 0).record())
        for seed in seeds:
            raw_trial(c, exp_id, parent, task, ratio, variant, seed, params, base, extra)
    c.set_terminated(parent, "FINISHED")
    return {"uri": uri, "parent": parent, "root": root}


@pytest.fixture(scope="module")
def tidy(store):
    return load_trial_runs(store["uri"], EXP, include_unfinished=True)


@pytest.fixture(scope="module")
def selected(tidy):
    return select_scores(tidy[tidy["status"] == "FINISHED"])


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = write_report(store["uri"], EXP, out, bootstrap=S.Bootstrap(reps=200, poi_reps=100))
    return out, paths


# --- tidy data ---------------------------------------------------------------------------------------
def test_tidy_columns_provenance_and_ablation_axes(tidy):
    sel = select_scores(tidy)
    n_trials = len(grid()) + 1 + sum(len(s) for _, s, _ in FOREIGN.values())
    assert sel["run_id"].nunique() == n_trials and set(sel["status"]) == {"FINISHED", "FAILED"}
    runs = tidy.drop_duplicates("run_id").set_index("run_name")
    r = runs.loc["hopper-medium_r0.01_lamo-linear_s1"]
    assert (r["dataset"], r["data_source"]) == ("hopper_medium-v2", "d4rl_hdf5")
    assert (r["embedding"], r["finetune"], r["init"], r["lm"], r["language_weight"]) == (
        "linear", "lora", "pretrained", "gpt2", 0.1)
    assert r["data_subset_hash"] == f"{1:016d}"
    r = runs.loc["reacher2d-medium_r1_dt_s0"]
    assert (r["data_source"], r["lm"], r["language_weight"]) == ("collected", "None", 0.0)
    assert runs.loc["kitchen-partial_r1_lamo_s0", "data_source"] == "d4rl_hdf5"  # the registry's default source
    assert runs.loc["cartpole-random_r1_lamo_s0", "data_source"] == "unknown"  # not in the registry
    assert runs.loc["breakout-medium_r1_dt_s0", "data_source"] == "d4rl"  # the tag wins
    # one row per (run, step, target); the hopper trials have 4 targets
    assert len(tidy[tidy.run_name == "hopper-medium_r1_lamo_s2"]) == len(STEPS) * 4


# --- exact statistics and selection rules ------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, added",  # hopper: PATTERN4 added to base + seed offset
    [
        (dict(), 28),  # LaMo: best target (2600) at the final evaluation
        (dict(target_rule="largest"), 20),  # CORL last
        (dict(target_rule="largest", checkpoint="best"), 30),  # CORL best
        (dict(checkpoint="best"), 30),
        (dict(target_rule="fixed", fixed_target={"hopper-medium": 2200, "reacher2d-medium": 40}), 25),
        (dict(checkpoint="mean_last_k", last_k=2), 25),  # target 3600: (30+20)/2 beats 2600's 19
    ],
)
def test_cell_statistics_for_each_rule(tidy, kwargs, added):
    finished = tidy[tidy["status"] == "FINISHED"]
    if kwargs.get("target_rule") == "fixed":  # foreign tasks have no target for this rule
        with pytest.warns(UserWarning, match="left out"):
            sel = select_scores(finished, SelectionRule(**kwargs))
    else:
        sel = select_scores(finished, SelectionRule(**kwargs))
    assert set(sel["selection_rule"]) == {SelectionRule(**kwargs).describe()}
    t = T.score_table(sel, by=("task", "sample_ratio", "variant")).set_index(["task", "sample_ratio", "variant"])
    for variant in ("lamo", "dt", "lamo-linear", "lamo-nolang"):
        cell = t.loc[("hopper-medium", 0.01, variant)]
        expected = BASE[(variant, "hopper-medium", 0.01)] + added + 5.0  # mean of the seed offsets is 5
        assert math.isclose(cell["mean"], expected) and math.isclose(cell["std"], math.sqrt(31)) and cell["n"] == 3


def test_paper_table_cells_averages_and_bold(selected):
    rule = "RULE"
    tabs = {t.name: t for t in T.paper_tables(selected, rule)}
    assert set(tabs) == {"table_sparse", "table_dense", "table_atari", "table_other"}
    dense = tabs["table_dense"]
    assert dense.columns == ["lamo", "dt", "lamo-linear", "lamo-nolang"]  # paper methods first
    rows = {(r.task, r.sample_ratio): r for r in dense.rows if r.kind == "cell"}
    lamo = rows[("hopper-medium", 0.01)].cells["lamo"]
    assert (lamo.mean, lamo.n) == (40 + 28 + 5, 3) and math.isclose(lamo.std, math.sqrt(31))
    assert rows[("hopper-medium", 0.01)].best() == {"lamo"}
    avg = next(r for r in dense.rows if r.kind == "average")
    assert avg.task_label == "Average MuJoCo" and avg.cells["dt"].n == 2
    assert math.isclose(avg.cells["dt"].mean, (20 + 45) / 2 + 33)
    sparse = tabs["table_sparse"]
    assert [r.task_label for r in sparse.rows][:2] == ["Kitchen-Partial", "Reacher2d†"]  # † = locally collected
    reacher = next(r for r in sparse.rows if r.task == "reacher2d-medium")
    assert "lamo-linear" not in reacher.cells  # missing cell
    overall = next(r for r in sparse.rows if r.task_label.startswith("Average (all)"))
    # common rows: lamo and dt have kitchen + reacher, lamo-nolang only reacher -> 1/2 rows
    assert overall.task_label == "Average (all) (1/2 rows)"
    assert math.isclose(overall.cells["lamo"].mean, 10 + 25 + 5)
    assert any("locally collected" in n for n in sparse.notes)
    assert any("unknown" in n for n in tabs["table_other"].notes)  # cartpole-random: not in the registry
    assert "Gamer-normalised" in tabs["table_atari"].caption and "RULE" in tabs["table_atari"].caption
    assert [r.task for r in tabs["table_other"].rows] == ["cartpole-random"]


def test_markdown_rendering(selected):
    md = T.to_markdown({t.name: t for t in T.paper_tables(selected, "RULE")}["table_dense"])
    lines = md.splitlines()
    assert lines[0].startswith("**Dense-reward MuJoCo") and "RULE" in lines[0] and "mean ± std" in lines[0]
    assert lines[2] == "| Task | Ratio | LaMo | DT | lamo-linear | lamo-nolang |"
    assert f"| Hopper-Medium | 1% | **73.0 ± {math.sqrt(31):.1f} (n=3)** | 53.0 ± 5.6 (n=3) |" in md
    assert "| *Average MuJoCo* |  | **" in md


def test_ablation_tables(selected):
    tabs, notes = T.ablation_tables(selected, "RULE")
    by = {t.name: t for t in tabs}
    assert set(by) == {"ablation_embedding", "ablation_language_weight"}
    emb = by["ablation_embedding"]
    assert emb.columns == ["linear", "mlp"]
    assert {r.setting for r in emb.rows} == {"variants lamo, lamo-linear"}
    cell = next(r for r in emb.rows if r.task == "hopper-medium" and r.sample_ratio == 1.0)
    assert cell.cells["linear"].mean == 48 + 33 and cell.cells["mlp"].mean == 50 + 33
    lang = by["ablation_language_weight"]
    assert {r.setting for r in lang.rows} == {"variants lamo, lamo-nolang"}  # inert language params ignored
    assert T.to_markdown(lang).splitlines()[2] == "| Task | Ratio | λ = 0.0 | λ = 0.1 |"
    assert [(r.task, r.sample_ratio) for r in emb.rows if r.kind == "cell"] == [
        ("hopper-medium", 0.01), ("hopper-medium", 1.0)]  # only tasks on which the embedding was varied
    assert T.mixed_configurations(selected) == []  # each variant is one configuration
    mixed = T.mixed_configurations(selected, "embedding")
    assert len(mixed) == 2 and "language.weight" in mixed[1] and "model.embedding" not in " ".join(mixed)
    joined = " ".join(notes)
    assert "`finetune`" in joined and "`init`" in joined and "`lm`" in joined and "otherwise-matching" in joined


LATEX_SPECIALS = re.compile(r"(?<!\\)[%&_#]")


def check_latex(tex: str, n_columns: int) -> None:
    """Structural check of a generated LaTeX table (no LaTeX on the test machines)."""
    assert tex.isascii()
    for env in ("table", "tabular"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") == 1
    assert tex.count("{") == tex.count("}") and tex.count("$") % 2 == 0
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    for line in tex.splitlines():
        if not line.startswith("%"):
            assert not LATEX_SPECIALS.search(line.replace(" & ", " ")), line
    rows = [ln for ln in body.splitlines() if ln.endswith("\\\\")]
    assert rows and all(ln.count(" & ") == n_columns - 1 for ln in rows)
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
    assert len(spec) == n_columns


def test_latex(selected):
    for t in T.paper_tables(selected, "Rule with 50% & a_b # (0–100) ± λ") + T.ablation_tables(selected, "r")[0]:
        tex = T.to_latex(t)
        check_latex(tex, len(t.headers()))
        assert "\\%" in tex and "\\toprule" in tex and "\\caption{" in tex
    tex = T.to_latex(T.paper_tables(selected, "Rule with 50% & a_b")[0])
    assert "50\\% \\& a\\_b" in tex and "$\\pm$" in tex and "\\textbf{" in tex


# --- rliable -----------------------------------------------------------------------------------------
def test_rliable_aggregates_exact_and_deterministic(selected):
    state = np.random.get_state()
    agg, notes = S.aggregate_estimates(selected, reps=100, seed=0)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG restored
    np.random.seed(123)  # rliable draws from the global RNG: its state must not matter
    again, _ = S.aggregate_estimates(selected, reps=100, seed=0)
    pd.testing.assert_frame_equal(agg, again)
    other, _ = S.aggregate_estimates(selected, reps=100, seed=1)
    assert not np.allclose(agg["ci_low"], other["ci_low"])
    a = agg[agg["subset"] == "all"].set_index(["metric", "method"])
    # common cells with >= 2 seeds for every method: hopper 1 % and 100 % (lamo-linear has no reacher2d)
    assert set(a["n_tasks"]) == {2} and any("left out" in n for n in notes)
    lamo = np.array([b + 28 + o for b in (40, 50) for o in SEED_OFFSET.values()])
    assert math.isclose(a.loc[("Mean", "lamo"), "estimate"], lamo.mean())
    from scipy.stats import trim_mean

    assert math.isclose(a.loc[("IQM", "lamo"), "estimate"], trim_mean(lamo, 0.25))
    assert math.isclose(a.loc[("Optimality gap", "lamo"), "estimate"], np.mean(np.maximum(100 - lamo, 0)))
    assert (a["ci_low"] <= a["estimate"] + 1e-9).all() and (a["estimate"] <= a["ci_high"] + 1e-9).all()
    assert {"1%", "100%"} <= set(agg["subset"])


def test_probability_of_improvement(selected):
    poi, _ = S.probability_of_improvement(selected, "lamo", reps=100, seed=0)
    p = poi.set_index("method")
    assert set(p.index) == {"dt", "lamo-linear", "lamo-nolang"}
    # common cells: hopper 1 %, hopper 100 %, reacher2d, kitchen-partial, breakout (cartpole: lamo only).
    # lamo's runs beat dt's everywhere except hopper 100 % (78, 82, 89 vs 73, 77, 84: 7 of 9 pairs)
    # and reacher2d (35, 39, 46 vs 27, 31, 38: 8 of 9 pairs)
    assert p.loc["dt", "n_tasks"] == 5
    assert math.isclose(p.loc["dt", "estimate"], (3 + 7 / 9 + 8 / 9) / 5)
    assert p.loc["dt", "ci_low"] <= p.loc["dt", "estimate"] <= p.loc["dt", "ci_high"]
    again, _ = S.probability_of_improvement(selected, "lamo", reps=100, seed=0)
    pd.testing.assert_frame_equal(poi, again)
    none, notes = S.probability_of_improvement(selected, "no-such-method")
    assert none.empty and "not in the data" in notes[0]


def test_too_few_runs_is_skipped_with_a_message(selected):
    one_seed = selected[selected["seed"] == 0]
    agg, notes = S.aggregate_estimates(one_seed, reps=50)
    assert agg.empty and any("skipped" in n and "≥2 seeds" in n for n in notes)
    poi, notes = S.probability_of_improvement(one_seed, reps=50)
    assert poi.empty and notes


# --- paper comparison --------------------------------------------------------------------------------
#: The paper's tables: methods (columns) and, per task, the sample ratios (rows) of each (LaMo, ICLR 2024).
#: Kitchen-Partial 1/10/100 %, Kitchen-Complete 30/50/100 %, MuJoCo 0.5/1/10/100 % (paper §5, Appendix C).
SPARSE7 = {"LaMo", "DT", "Wiki-RL", "CQL", "IQL", "TD3+BC", "BC"}
ATARI7 = {"LaMo", "DT", "Wiki-RL", "CQL", "BCQ", "NFQ", "BC"}
MAIN_TABLES = {
    "Table 1": (SPARSE7, {"kitchen-partial": {0.01, 0.1, 1.0}, "kitchen-complete": {0.3, 0.5, 1.0},
                          "reacher2d-medium": {0.1, 0.3, 1.0}}),
    "Table 2": (ATARI7, {g: {0.1, 1.0} for g in ("breakout-medium", "qbert-medium", "pong-medium")}),
    "Table 3": (SPARSE7, {t: {0.005, 0.01, 0.1, 1.0}
                          for t in ("hopper-medium", "halfcheetah-medium", "walker2d-medium")}),
}


def test_paper_numbers_structure_and_provenance():
    numbers, sources, methods = load_paper_numbers()
    # provenance: every number cites a source that says what, where (a public address) and how
    assert set(numbers["source"]) == set(sources)
    for key, src in sources.items():
        assert src.get("what") and src.get("how") and src["where"].startswith("https://"), key
    paper = numbers[numbers["kind"] == "paper"]
    assert paper["item"].str.match(r"^(Figure 1|Table \d+)$").all()
    # Figure 1: 3 domains x 5 methods; no per-task fields
    fig1 = numbers[numbers["item"] == "Figure 1"]
    assert len(fig1) == 15 and fig1["task"].isna().all() and set(fig1["domain"]) == {"Kitchen", "Atari", "MuJoCo"}
    # the main tables are full rectangles: every method at every (task, ratio) of the paper, with its ±
    for item, (meths, ratios) in MAIN_TABLES.items():
        t = paper[paper["item"] == item]
        assert set(t["method"]) == meths, item
        assert {task: set(g["sample_ratio"]) for task, g in t.groupby("task")} == ratios, item
        assert len(t) == len(meths) * sum(map(len, ratios.values())), item  # no cell twice, none missing
        assert t["std"].notna().all() and (t["std"] >= 0).all(), item
        assert all(task_info(task).domain != "Other" and task in TASKS for task in t["task"]), item
    # no (item, task, ratio, method) twice anywhere; every per-task number has a ratio in (0, 1]
    per_task = paper[paper["task"].notna()]
    assert not per_task.duplicated(["item", "task", "sample_ratio", "method"]).any()
    assert per_task["sample_ratio"].between(0, 1, inclusive="right").all()
    # every paper method has an entry in `methods` (so the comparison can name it); Table 13 is the one
    # table under another metric
    assert set(paper["method"]) <= set(methods)
    assert set(paper.loc[paper["metric"].notna(), "item"]) == {"Table 13"}
    # the ablation tables enter only their own column (their LaMo / DT columns repeat Tables 1-3)
    for item, own in {"Table 4": "LaMo (ImageGPT pre-training)", "Table 12": "Diffusion-QL",
                      "Table 15": "LaMo w/o pre-training", "Table 16": "LaMo w/o pre-training"}.items():
        assert set(paper.loc[paper["item"] == item, "method"]) == {own}, item
    # the paper has no number for LaMo without the language loss: only the third-party rerun
    assert set(numbers.loc[numbers["method"] == "LaMo w/o language loss", "kind"]) == {"reproduction"}


def _cell_values(numbers: pd.DataFrame) -> dict[tuple[str, float, str], float]:
    """(task, ratio, method) -> value of the paper's tables under its own rule (first entry wins)."""
    rows = numbers[(numbers["kind"] == "paper") & numbers["task"].notna() & numbers["metric"].isna()]
    out: dict = {}
    for r in rows.to_dict("records"):
        out.setdefault((r["task"], r["sample_ratio"], r["method"]), r["value"])
    return out


def test_transcription_agrees_with_the_printed_average_rows():
    """Every "Average" row the paper prints is the mean of the entered cells of its block (to the paper's
    rounding): a mistyped cell would break its block's average."""
    numbers, _sources, _methods = load_paper_numbers()
    averages = load_printed_averages()
    assert len(averages) == 84 and set(averages["item"]) == {
        f"Table {i}" for i in (1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 15, 16)}
    main = _cell_values(numbers)
    for a in averages.to_dict("records"):
        item = numbers[(numbers["item"] == a["item"]) & numbers["sample_ratio"].isin(a["sample_ratios"])
                       & (numbers["kind"] == "paper")]
        keys = sorted(set(zip(item["task"], item["sample_ratio"])))
        own = {(r["task"], r["sample_ratio"], r["method"]): r["value"] for r in item.to_dict("records")}
        vals = [own.get((t, r, a["method"]), main.get((t, r, a["method"]))) for t, r in keys]
        assert keys and None not in vals, a
        assert abs(np.mean(vals) - a["value"]) <= 0.1 + 1e-9, (a, np.mean(vals))


def test_figure1_kitchen_and_atari_bars_are_the_tables_means():
    """Figure 1's bar labels are the means of Table 1's Kitchen cells and of Table 2's cells, rounded down;
    its MuJoCo bars do not follow Table 3 (the YAML header says so)."""
    numbers, _sources, _methods = load_paper_numbers()
    fig1 = numbers[numbers["item"] == "Figure 1"].set_index(["domain", "method"])["value"]
    paper = numbers[(numbers["kind"] == "paper") & numbers["metric"].isna()]
    for domain, item, tasks in (("Kitchen", "Table 1", ("kitchen-partial", "kitchen-complete")),
                                ("Atari", "Table 2", ("breakout-medium", "qbert-medium", "pong-medium"))):
        for method in ("LaMo", "DT", "Wiki-RL", "CQL", "BC"):
            cells = paper[(paper["item"] == item) & paper["task"].isin(tasks) & (paper["method"] == method)]
            assert math.floor(cells["value"].mean()) == fig1[(domain, method)], (domain, method)
    mujoco = paper[(paper["item"] == "Table 3") & (paper["method"] == "LaMo")]["value"].mean()
    assert abs(mujoco - fig1[("MuJoCo", "LaMo")]) > 5  # 58.8 over Table 3's twelve cells vs the bar's 52


def test_paper_cells_take_the_main_tables_not_the_top3_metric(selected):
    numbers, _sources, methods = load_paper_numbers()
    cells, _ = paper_cells(selected, numbers, methods)
    main = numbers[(numbers["kind"] == "paper") & numbers["metric"].isna() & numbers["task"].notna()]
    table1 = main[(main["item"] == "Table 1") & (main["task"] == "kitchen-partial") & (main["sample_ratio"] == 1.0)
                  & (main["method"] == "LaMo")]["value"].iloc[0]
    top3 = numbers[(numbers["metric"] == "top-3") & (numbers["task"] == "kitchen-partial")
                   & (numbers["method"] == "LaMo")]["value"].iloc[0]
    assert top3 != table1 and cells[("kitchen-partial", 1.0, "lamo")] == (table1, "iclr2024")
    # every paper cell (own rule) of a method we ran is offered; the tables keep those of our cells
    mapping, _ = match_methods(selected, methods)
    wanted = {(r["task"], r["sample_ratio"], mapping[r["method"]]) for r in main.to_dict("records")
              if r["method"] in mapping}
    assert set(cells) == wanted
    tabs = T.paper_tables(selected, "RULE")
    annotate_tables(tabs, cells)
    dense = next(t for t in tabs if t.name == "table_dense")
    ours = {(r.task, r.sample_ratio, c) for r in dense.rows if r.kind == "cell" for c in r.cells}
    assert set(dense.paper) == ours & wanted and ("hopper-medium", 0.01, "dt") in dense.paper
    row = next(r for r in dense.rows if r.kind == "cell" and r.sample_ratio == 0.01)
    dt = main[(main["item"] == "Table 3") & (main["task"] == "hopper-medium") & (main["sample_ratio"] == 0.01)
              & (main["method"] == "DT")]["value"].iloc[0]
    assert dense.paper_value(row, "dt") == dt and f"[paper {dt:.1f}]" in T.to_markdown(dense)


def test_paper_comparison(selected):
    numbers, sources, methods = load_paper_numbers()
    comp, notes = compare(selected, numbers, sources, methods)
    assert list(comp.columns) == COMPARISON_COLUMNS
    keys = numbers[["item", "domain", "task", "sample_ratio", "method"]].astype(str).drop_duplicates()
    assert len(comp) == len(keys)  # one row per distinct number of the YAML
    assert comp["provenance"].str.contains("https://").all()
    truth = T.score_table(selected, by=("task", "sample_ratio", "variant"))
    truth = truth.set_index(["task", "sample_ratio", "variant"])
    # every per-task row with a counterpart cell of ours is filled, under the paper's own rule only
    filled = 0
    for r in comp[(comp["task"] != "") & (comp["our_method"] != "")].to_dict("records"):
        key = (r["task"], r["sample_ratio"], r["our_method"])
        if r["paper_metric"] != PAPER_METRIC_LABEL:
            assert r["ours_n"] == 0 and r["comparable"].startswith("no (paper metric"), r
        elif key in truth.index:
            assert (r["ours_mean"], r["ours_n"]) == (truth.loc[key, "mean"], truth.loc[key, "n"]), r
            if not math.isnan(r["paper"]):
                assert math.isclose(r["delta"], r["ours_mean"] - r["paper"])
            filled += 1
        else:
            assert r["ours_n"] == 0, r
    assert filled >= 10
    row = comp[(comp["item"] == "Table 3") & (comp["task"] == "hopper-medium") & (comp["sample_ratio"] == 1.0)
               & (comp["paper_method"] == "LaMo")].iloc[0]
    assert row["reproduction_3rd_party"] == 46.04 and row["our_method"] == "lamo" and row["paper_std"] > 0
    assert (row["our_data_source"], row["comparable"]) == ("D4RL", "yes")
    row = comp[(comp["task"] == "reacher2d-medium") & (comp["paper_method"] == "LaMo w/o language loss")].iloc[0]
    assert row["our_method"] == "lamo-nolang" and row["ours_mean"] == 8 + 30 and math.isnan(row["paper"])
    assert row["comparable"].startswith("no")
    fig = comp[(comp["item"] == "Figure 1") & (comp["domain"] == "Kitchen") & (comp["paper_method"] == "DT")].iloc[0]
    assert fig["ours_mean"] == 25 + 25 + 2 and fig["our_data_source"] == "D4RL"  # the registry's default source
    fig = comp[(comp["item"] == "Figure 1") & (comp["domain"] == "MuJoCo") & (comp["paper_method"] == "LaMo")].iloc[0]
    assert fig["ours_mean"] == (40 + 50) / 2 + 33 and fig["ours_n"] == 2
    md = comparison_markdown(comp, sources, "RULE", notes)
    assert "| Table 13 (top-3) |" in md and " ± " in md.split("Sources:")[0]
    # config matching when the label is unknown; explicit overrides win
    renamed = selected.replace({"variant": {"lamo-nolang": "ablate-lm-loss"}})
    mapping, notes = match_methods(renamed, methods)
    assert mapping["LaMo w/o language loss"] == "ablate-lm-loss" and any("matched by config" in n for n in notes)
    mapping, _ = match_methods(selected, methods, overrides={"LaMo": "lamo-linear"})
    assert mapping["LaMo"] == "lamo-linear"


def test_paper_numbers_errors_name_the_field(tmp_path):
    good = "sources: {s: {what: w, where: 'https://x', how: h}}\nnumbers:\n"
    cases = {
        "  - {item: T, task: hopper-medium, method: LaMo, value: 1, kind: paper, source: s}\n": "sample_ratio",
        "  - {item: T, task: hopper-medium, sample_ratio: 1, method: LaMo, value: 1, kind: paper, source: t}\n":
            "unknown sources",
        "  - {task: hopper-medium, sample_ratio: 1, method: LaMo, value: 1, kind: paper, source: s}\n": "item",
    }
    for body, msg in cases.items():
        path = tmp_path / "p.yaml"
        path.write_text(good + body, encoding="utf-8")
        with pytest.raises(ValueError, match=msg):
            load_paper_numbers(path)
    path.write_text("sources: {s: {what: w}}\nnumbers: []\n", encoding="utf-8")
    with pytest.raises(ValueError, match="where"):
        load_paper_numbers(path)


def test_paper_rule_is_the_default_of_the_paper_layout_only():
    assert T.PAPER_RULE.checkpoint == "mean_last_k" and T.PAPER_RULE.last_k * 2_500 == 20_000
    assert T.paper_layout_rule() == T.PAPER_RULE == T.paper_layout_rule(DEFAULT_RULE)
    other = SelectionRule(checkpoint="best")
    assert T.paper_layout_rule(other) == other
    assert T.paper_rule_text(T.PAPER_RULE).startswith("Paper's score rule (LaMo §5.1")
    assert "Paper's score rule" not in T.paper_rule_text(other) and T.paper_rule_text("X") == "X"


# --- write_report / CLI ------------------------------------------------------------------------------
EXPECTED_FILES = {
    "scores.csv", "table.md", "score_vs_ratio.png", "score_vs_ratio.pdf", "report.md",
    *(f"{t}.{e}" for t in ("table_sparse", "table_dense", "table_atari", "table_other",
                           "ablation_embedding", "ablation_language_weight") for e in ("md", "tex", "csv")),
    "domain_averages.csv", "domain_bars.png", "domain_bars.pdf", "learning_curves.png", "learning_curves.pdf",
    "rliable_aggregates.csv", "rliable_aggregates.png", "rliable_aggregates.pdf",
    "probability_of_improvement.csv", "probability_of_improvement.png", "probability_of_improvement.pdf",
    "paper_comparison.md", "paper_comparison.csv", "paper_comparison.tex", "claims.md", "claims.csv",
}


def test_every_output_file(report):
    out, paths = report
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    assert list(paths)[:3] == ["scores", "table", "figure"] and paths["figure"].name == "score_vs_ratio.png"
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000, p
    for p in out.glob("*.pdf"):
        assert p.read_bytes()[:5] == b"%PDF-", p
    for p in out.glob("*.tex"):
        assert p.read_text().isascii() and "\\end{table}" in p.read_text()
    index = (out / "report.md").read_text()
    assert all(f"`{name}`" in index for name in EXPECTED_FILES - {"report.md"})
    assert "best-performing RTG target" in index and "ablation" in index.lower()


@pytest.fixture(scope="module")
def paper_selected(tidy):
    """The finished trials under the paper's rule (what the paper-layout tables show by default)."""
    return select_scores(tidy[tidy["status"] == "FINISHED"], T.PAPER_RULE)


def test_csv_round_trip(report, selected, paper_selected):
    out, _ = report
    scores = pd.read_csv(out / "scores.csv")
    mine = selected.set_index("run_id")["normalised_score"]
    assert np.allclose(scores.set_index("run_id")["normalised_score"].loc[mine.index], mine)
    # the paper-layout tables: the paper's rule by default (mean of both evaluations here), not scores.csv's
    truth = T.score_table(paper_selected, by=("task", "sample_ratio", "variant"))
    assert not np.allclose(truth["mean"], T.score_table(selected, by=("task", "sample_ratio", "variant"))["mean"])
    truth = truth.set_index(["task", "sample_ratio", "variant"])
    seen = 0
    for name in ("table_sparse", "table_dense", "table_atari", "table_other"):
        csv = pd.read_csv(out / f"{name}.csv", keep_default_na=False, na_values=[""])
        assert set(csv["selection_rule"]) == {T.paper_rule_text(T.PAPER_RULE)}
        for r in csv[csv["row_kind"] == "cell"].to_dict("records"):
            cell = truth.loc[(r["task"], r["sample_ratio"], r["method"])]
            assert (r["mean"], r["std"], r["n"]) == (cell["mean"], cell["std"], cell["n"])  # exact
            seen += 1
    assert seen == len(truth)
    avg = pd.read_csv(out / "domain_averages.csv").set_index(["domain", "method"])
    assert avg.loc[("MuJoCo", "lamo"), "mean"] == (40 + 50) / 2 + 33
    agg = pd.read_csv(out / "rliable_aggregates.csv")
    assert set(agg["reps"]) == {200} and set(agg["seed"]) == {0}
    comp = pd.read_csv(out / "paper_comparison.csv")
    lamo = comp[(comp["task"] == "hopper-medium") & (comp["sample_ratio"] == 1.0) & (comp["paper_method"] == "LaMo")]
    assert lamo["ours_mean"].iloc[0] == truth.loc[("hopper-medium", 1.0, "lamo"), "mean"] == 50 + 25 + 5


def test_paper_layout_captions_state_the_rule(report, store, tmp_path):
    out, _ = report
    paper_text = T.paper_rule_text(T.PAPER_RULE)
    for name in ("table_dense.md", "table_sparse.md", "ablation_embedding.md"):
        first = (out / name).read_text(encoding="utf-8").splitlines()[0]
        assert paper_text in first and "last 20k of 100k" in first, name
    assert "\\S{}5.1" in (out / "table_dense.tex").read_text(encoding="utf-8")  # LaTeX caption, escaped
    quick = (out / "table.md").read_text(encoding="utf-8").splitlines()[0]
    assert DEFAULT_RULE.describe() in quick and "Paper's score rule" not in quick  # other outputs: unchanged
    assert paper_text in (out / "paper_comparison.md").read_text(encoding="utf-8")
    assert f"Paper-layout tables and the paper comparison: {paper_text}" in (out / "report.md").read_text()
    # an explicit rule applies to the paper-layout tables too
    rule = SelectionRule(checkpoint="best")
    write_report(store["uri"], EXP, tmp_path, rule=rule, parts=("tables",))
    first = (tmp_path / "table_dense.md").read_text(encoding="utf-8").splitlines()[0]
    assert rule.describe() in first and "Paper's score rule" not in first


@pytest.fixture(scope="module")
def tiny(store):
    """A second experiment in the store: one finished trial of one method, one seed, one evaluation."""
    c = MlflowClient(store["uri"])
    exp_id = c.create_experiment("tiny")
    tags = {contract.ROLE: contract.ROLE_TRIAL, **contract.axis_tags("walker2d-medium", 0.1, 0, "lamo")}
    rid = c.create_run(exp_id, tags=tags).info.run_id
    c.log_metric(rid, contract.eval_key(5000, "normalised_score"), 12.5, step=100)
    c.set_terminated(rid)
    return "tiny"


def test_partial_sweep_with_failed_trial_and_missing_cells(store, tiny, tmp_path):
    paths = write_report(store["uri"], EXP, tmp_path, include_unfinished=True, parts=("tables",))
    scores = pd.read_csv(paths["scores"])
    assert "FAILED" in set(scores["status"])
    md = (tmp_path / "table_dense.md").read_text()
    assert "(n=4)" in md  # dt at 1 %: three finished seeds + the failed one
    sparse = (tmp_path / "table_sparse.md").read_text()
    assert "| Reacher2d† | 100% |" in sparse and re.search(r"— (\[paper [0-9.]+\] )?\|", sparse)  # missing cell
    # a sweep with one seed and one method: every file still appears, rliable states why it skipped
    out = tmp_path / "tiny"
    paths = write_report(store["uri"], tiny, out, bootstrap=S.Bootstrap(reps=50, poi_reps=20))
    names = {p.name for p in out.iterdir()}
    assert {"rliable_aggregates.png", "probability_of_improvement.png", "table_dense.tex", "domain_bars.png"} <= names
    assert "skipped" in (out / "report.md").read_text()
    assert pd.read_csv(out / "table_dense.csv")["mean"].tolist() == [12.5]
    assert pd.read_csv(out / "rliable_aggregates.csv").empty


@pytest.mark.slow(reason="every `lamo-analysis` subcommand end to end, 2000/1000 bootstrap: ~8 s")
def test_cli_subcommands(store, tiny, tmp_path):
    runner = CliRunner()
    base = ["--tracking-uri", store["uri"], "--experiment", EXP]
    res = runner.invoke(app, ["tables", *base, "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "t").iterdir()} >= {"table.md", "table_dense.tex", "ablation_embedding.csv"}
    assert not (tmp_path / "t" / "domain_bars.png").exists()
    res = runner.invoke(app, ["paper", *base, "--out", str(tmp_path / "p"), "--method-map", "LaMo=lamo-linear"])
    assert res.exit_code == 0, res.output
    comp = pd.read_csv(tmp_path / "p" / "paper_comparison.csv")
    hit = comp[(comp["task"] == "hopper-medium") & (comp["sample_ratio"] == 1.0) & (comp["paper_method"] == "LaMo")]
    assert hit["ours_mean"].iloc[0] == 48 + 25 + 5  # lamo-linear under the paper's rule (mean of both evaluations)
    res = runner.invoke(app, ["rliable", *base, "--out", str(tmp_path / "r"), "--reps", "50", "--poi-reps", "20",
                              "--reference", "dt"])
    assert res.exit_code == 0, res.output
    poi = pd.read_csv(tmp_path / "r" / "probability_of_improvement.csv")
    assert set(poi["reference"]) == {"dt"} and (poi["estimate"] < 0.5).all()
    res = runner.invoke(app, ["export", *base, "--out", str(tmp_path / "e"), "--include-unfinished"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "e" / "evals.csv")) > len(pd.read_csv(tmp_path / "e" / "scores.csv"))
    tiny_args = ["--tracking-uri", store["uri"], "--experiment", tiny, "--out", str(tmp_path / "f")]
    res = runner.invoke(app, ["figures", *tiny_args, "--column", "embedding"])  # no params logged there
    assert res.exit_code == 2 and "has no values" in res.output
    res = runner.invoke(app, ["figures", *tiny_args])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "f").iterdir()} == {
        f"{n}.{e}" for n in ("score_vs_ratio", "domain_bars", "learning_curves") for e in ("png", "pdf")
    } | {"scores.csv", "domain_averages.csv", "report.md"}
    res = runner.invoke(app, ["paper", *base, "--out", str(tmp_path / "x"), "--method-map", "LaMo"])
    assert res.exit_code == 2 and "PAPER_METHOD=VARIANT" in res.output
