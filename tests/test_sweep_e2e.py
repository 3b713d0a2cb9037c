"""End to end: a smoke sweep through real Ray Tune (local cluster), a real MLflow SQLite store, real MuJoCo
Reacher2d rollouts, real torch training of both variants (a tiny pre-trained LM for LaMo), and the
analysis table. Tiny step counts; the same code path as ``lamo-sweep sweeps/quickstart.yaml``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow(reason="a 4-trial Ray Tune sweep with analysis, then a re-run: ~1.5 min")

SWEEP = """
name: smoke
storage: {storage}
data_dir: {data}
resources: {{cpu: 1, gpu: 0}}
base:
  train: {{steps: 20, batch_size: 8, warmup_steps: 5, log_every: 5}}
  eval: {{every_steps: 10, episodes: 2, max_episode_steps: 15}}
variants:
  lamo:
    model: {{lm: {lm}, init: pretrained, embedding: mlp, finetune: lora, lora: {{rank: 4, alpha: 8}}}}
    language: {{weight: 0.1, block_size: 32, batch_size: 2}}
  dt:
    preset: dt
    model: {{arch: {{n_layer: 1, n_embd: 32, n_head: 1, n_inner: 64}}}}
    train: {{warmup_steps: 5}}
grid: {{task: [reacher2d-medium], sample_ratio: [0.5, 1.0], seed: [0], variant: [lamo, dt]}}
"""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, tiny_inputs):
    root = tmp_path_factory.mktemp("smoke")
    data, lm = tiny_inputs
    sweep = root / "smoke.yaml"
    sweep.write_text(textwrap.dedent(SWEEP.format(storage=root / "runs", data=data, lm=lm)))
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep)], capture_output=True, text=True,
                       cwd=root, timeout=600)
    return root, sweep, r


def test_sweep_logs_one_finished_child_per_trial(smoke):
    root, _, r = smoke
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    c = MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("smoke")
    parents = c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert len(children) == 4
    assert all(ch.info.status == "FINISHED" for ch in children)
    assert len({ch.data.tags["config_hash"] for ch in children}) == 4
    names = {ch.info.run_name for ch in children}
    assert names == {f"reacher2d-medium_r{r}_{v}_s0" for r in ("0.5", "1") for v in ("lamo", "dt")}
    for ch in children:
        tags, params = ch.data.tags, ch.data.params
        assert tags["task"] == "reacher2d-medium" and tags["variant"] in ("lamo", "dt")
        assert len(tags["data_subset_hash"]) == 16
        assert params["train.steps"] == "20" and params["variant"] == tags["variant"]
        steps = [m.step for m in c.get_metric_history(ch.info.run_id, "train/action_loss")]
        assert steps == [5, 10, 15, 20]
        assert [m.step for m in c.get_metric_history(ch.info.run_id, "train/lr")] == [5, 10, 15, 20]
        for target in ("76", "40"):
            hist = c.get_metric_history(ch.info.run_id, f"eval/rtg_{target}/normalised_score")
            assert [m.step for m in hist] == [10, 20]
            assert all(0.0 <= m.value <= 100.0 for m in hist)
            ret = c.get_metric_history(ch.info.run_id, f"eval/rtg_{target}/return_mean")
            assert [round(m.value, 6) for m in ret] == [round(m.value, 6) for m in hist]  # Reacher2d: score = return
        lang = c.get_metric_history(ch.info.run_id, "train/language_loss")
        blocks = c.get_metric_history(ch.info.run_id, "language/corpus_blocks")
        passes = c.get_metric_history(ch.info.run_id, "language/passes")
        if tags["variant"] == "lamo":
            assert len(lang) == 4 and all(m.value > 0 for m in lang)
            # the corpus size and passes over it, logged once at step 0 (2 blocks per step, 20 steps)
            assert [m.step for m in blocks] == [0] and blocks[0].value >= 1
            assert passes[0].value == pytest.approx(20 * 2 / blocks[0].value)
        else:
            assert lang == [] and blocks == []  # lambda = 0: no language forward pass, no corpus at all


def _markdown_rows(text: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the Markdown table whose header row starts with ``| first_header |``."""
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    split = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
    body = []
    for ln in lines[i + 2:]:
        if not ln.startswith("|"):
            break
        body.append(split(ln))
    return split(lines[i]), body


def test_sweep_writes_analysis(smoke):
    """table.md holds, per task x ratio row and variant column, the score of the one trial of that cell as
    read back from MLflow: the best RTG target's normalised score at the final evaluation (the default
    rule), n=1, std 0, the row's best in bold."""
    import re

    root, _, r = smoke
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = root / "runs" / "analysis" / "smoke"
    c = MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("smoke")
    expected = {}
    for ch in c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'"):
        finals = []
        for target in ("76", "40"):
            hist = sorted(c.get_metric_history(ch.info.run_id, f"eval/rtg_{target}/normalised_score"),
                          key=lambda m: m.step)
            finals.append(hist[-1].value)
        key = (ch.data.tags["task"], f"{float(ch.data.tags['sample_ratio']) * 100:g}%", ch.data.tags["variant"])
        expected[key] = max(finals)
    assert len(expected) == 4

    header, rows = _markdown_rows((out / "table.md").read_text(), "task")
    assert header[:2] == ["task", "sample ratio"] and sorted(header[2:]) == ["dt", "lamo"]
    got = {}
    for row in rows:
        task, ratio, cells = row[0], row[1], row[2:]
        means = []
        for variant, cell in zip(header[2:], cells):
            m = re.fullmatch(r"(\*\*)?(-?[0-9.]+) ± ([0-9.]+) \(n=(\d+)\)(\*\*)?", cell)
            assert m, cell
            got[(task, ratio, variant)] = (float(m.group(2)), float(m.group(3)), int(m.group(4)), bool(m.group(1)))
            means.append(float(m.group(2)))
        bold = [got[(task, ratio, v)][0] for v in header[2:] if got[(task, ratio, v)][3]]
        assert bold and all(b == max(means) for b in bold), row  # the row's best mean is bold
    assert set(got) == set(expected)
    for key, score in expected.items():
        mean, std, n, _ = got[key]
        assert (f"{mean:.1f}", std, n) == (f"{score:.1f}", 0.0, 1), (key, got[key], score)
    assert (out / "score_vs_ratio.png").stat().st_size > 5000
    assert "table.md" in r.stdout


def test_rerun_skips_finished_trials(smoke):
    root, sweep, _ = smoke
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(sweep), "--no-analysis"],
                       capture_output=True, text=True, cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "4 trial(s) already FINISHED" in r.stdout
    c = MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("smoke")
    assert len(c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'")) == 4
