"""Exact resume: a trial SIGKILLed at a (seeded) point between two checkpoints and resumed from its checkpoint ends with the same
final metrics and bit-identical weights as an uninterrupted trial (CPU)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from trainers.config import TrialConfig
from trainers.checkpoint import CHECKPOINT_DIR
from trainers.train import run_trial


@pytest.fixture(scope="module")
def inputs(tiny_inputs):
    data, lm = tiny_inputs
    return data.parent, data, lm


def config(lm) -> TrialConfig:
    return TrialConfig(
        task="reacher2d-medium", sample_ratio=0.5, seed=3, variant="lamo",
        model={"lm": str(lm), "init": "pretrained", "embedding": "mlp", "finetune": "lora",
               "lora": {"rank": 4, "alpha": 8, "dropout": 0.1}},
        language={"weight": 0.1, "block_size": 32, "batch_size": 2},
        train={"steps": 60, "batch_size": 8, "warmup_steps": 10, "log_every": 5, "checkpoint_every": 10},
        eval={"every_steps": 30, "episodes": 2, "max_episode_steps": 12}, device="cpu",
    )


# The kill: right after the trial has logged this step (a log step between two checkpoints, drawn with a
# fixed seed): the work done since the last checkpoint is lost and must be redone identically.
KILL_AFTER_STEP = random.Random(1234).choice([15, 25, 35, 45, 55])

# Runs the real CLI in a fresh process that SIGKILLs itself once ``ConsoleReporter`` has written the
# metrics of ``KILL_AFTER_STEP`` to metrics.jsonl: the same point on any machine, however fast.
_KILLED_TRIAL = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from trainers.train import ConsoleReporter
from orchestrator.trial_cli import main

kill_after, real_log = int(sys.argv[4]), ConsoleReporter.log

def log(self, step, metrics):
    real_log(self, step, metrics)
    if step >= kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

ConsoleReporter.log = log
sys.argv = ["lamo-trial", "run", sys.argv[1], "--workdir", sys.argv[2], "--data-dir", sys.argv[3], "--no-prepare"]
main()
"""


@pytest.mark.slow(reason="an uninterrupted LaMo trial, a killed one in a fresh process and its resume: 15-70 s")
def test_killed_trial_resumes_exactly(inputs, tmp_path):
    root, data, lm = inputs
    cfg = config(lm)
    torch.set_num_threads(1)
    reference = run_trial(cfg, tmp_path / "ref", data)

    wd = tmp_path / "killed"
    cfg_file = tmp_path / "trial.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILLED_TRIAL, str(cfg_file), str(wd), str(data),
                           str(KILL_AFTER_STEP)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    logged = [json.loads(x)["step"] for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) == KILL_AFTER_STEP
    killed_at = torch.load(wd / CHECKPOINT_DIR / "state.pt", weights_only=False)["step"]
    assert killed_at == KILL_AFTER_STEP // 10 * 10, killed_at  # the last checkpoint before the kill

    resumed = run_trial(cfg, wd, data)
    timing = "eval/episodes_per_s"
    assert {k: v for k, v in resumed.items() if k != timing} == {k: v for k, v in reference.items() if k != timing}
    a = torch.load(tmp_path / "ref" / CHECKPOINT_DIR / "state.pt", weights_only=False)
    b = torch.load(wd / CHECKPOINT_DIR / "state.pt", weights_only=False)
    assert a["step"] == b["step"] == 60
    for k in a["learner"]["model"]:
        assert torch.equal(a["learner"]["model"][k], b["learner"]["model"][k]), k
    # the training-loss log after the resume point matches the uninterrupted one exactly
    ref_log = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    res_log = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    last = {r["step"]: r["train/action_loss"] for r in ref_log if "train/action_loss" in r}
    again = {r["step"]: r["train/action_loss"] for r in res_log if "train/action_loss" in r}
    assert last == again


def test_checkpoint_of_another_config_is_refused(inputs, tmp_path):
    root, data, lm = inputs
    cfg = config(lm).model_copy(update={"train": config(lm).train.model_copy(update={"steps": 10})})
    run_trial(cfg, tmp_path / "w", data)
    other = cfg.model_copy(update={"seed": 4})
    with pytest.raises(ValueError, match="belongs to config"):
        run_trial(other, tmp_path / "w", data)


class _Died(BaseException):
    """Stands in for a SIGKILL at a chosen point of a metrics delivery."""


@pytest.mark.parametrize("phase, die_at", [("before", 20), ("during", 20), ("after", 20), ("before", 40),
                                           ("after", 40)])
def test_kill_around_metric_delivery_logs_each_metric_once(inputs, tmp_path, phase, die_at, new_sqlite_uri):
    """A trial that dies right after writing a checkpoint, before / in the middle of / after sending the
    buffered metrics to MLflow, and is then resumed, ends with exactly the (key, step) records of an
    uninterrupted trial, each once (step 40 is the final checkpoint: the resumed trial does not evaluate
    again) (the checkpoint carries the undelivered records; the resume drops the
    ones the run already has)."""
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from orchestrator.sweep import _MlflowTuneReporter
    root, data, lm = inputs
    base = config(lm)
    cfg = base.model_copy(update={"train": base.train.model_copy(update={"steps": 40}),
                                  "eval": base.eval.model_copy(update={"episodes": 1})})
    torch.set_num_threads(1)
    uri = new_sqlite_uri(tmp_path)

    def histories(name: str, die_at: int | None) -> dict[str, list[int]]:  # noqa: F811
        exp = tracking.ensure_experiment(uri, name, tmp_path / "art")
        parent = tracking.start_parent_run(uri, exp, name, None, [cfg], 0)

        class Dying(_MlflowTuneReporter):
            def checkpoint(self, step, path, metrics):
                if step == die_at:
                    if phase == "during":  # one record delivered, then death
                        s, m = self.buffer.pop(0)
                        self.run.log_metrics(s, m)
                    elif phase == "after":
                        self.flush()
                    raise _Died
                super().checkpoint(step, path, metrics)

        wd = tmp_path / name
        if die_at is not None:
            with pytest.raises(_Died):
                run_trial(cfg, wd, data, Dying(tracking.TrialRun.open(uri, exp, parent, cfg, 10), 10))
            assert torch.load(wd / CHECKPOINT_DIR / "state.pt", weights_only=False)["step"] == die_at
        run = tracking.TrialRun.open(uri, exp, parent, cfg, 10)  # re-attaches to the unfinished run
        reporter = _MlflowTuneReporter(run, 10)
        run_trial(cfg, wd, data, reporter)
        reporter.flush(wait=True)
        c = MlflowClient(uri)
        keys = c.get_run(run.run_id).data.metrics
        return {k: [m.step for m in c.get_metric_history(run.run_id, k)] for k in keys}

    reference = histories("ref", None)
    resumed = histories(f"died-{phase}-{die_at}", die_at)
    assert {k: sorted(v) for k, v in resumed.items()} == {k: sorted(v) for k, v in reference.items()}
    assert all(len(v) == len(set(v)) for v in resumed.values()), resumed
    assert sorted(resumed["train/action_loss"]) == list(range(5, 41, 5))


def test_checkpoint_survives_a_kill_between_the_renames(tmp_path):
    """``save_checkpoint`` swaps directories with two renames; whatever point a kill hits, a complete
    checkpoint is found and a stale ``.old`` does not block the next save."""
    from trainers.checkpoint import latest_checkpoint, save_checkpoint

    ck = tmp_path / CHECKPOINT_DIR
    assert latest_checkpoint(ck) is None
    save_checkpoint(ck, {"step": 1})
    os.replace(ck, ck.with_name("checkpoint.old"))  # the kill: first rename done, second not
    assert torch.load(latest_checkpoint(ck), weights_only=False)["step"] == 1
    save_checkpoint(ck, {"step": 2})
    assert torch.load(latest_checkpoint(ck), weights_only=False)["step"] == 2
    (tmp_path / "checkpoint.old").mkdir()  # the kill: both renames done, old not yet removed
    torch.save({"step": 1}, tmp_path / "checkpoint.old" / "state.pt")
    save_checkpoint(ck, {"step": 3})
    assert torch.load(latest_checkpoint(ck), weights_only=False)["step"] == 3
    assert not (tmp_path / "checkpoint.old").exists()


def test_checkpoint_holds_trainable_weights_only_and_checks_the_frozen_ones(inputs, tmp_path):
    """A LoRA checkpoint stores LoRA, embeddings, heads and buffers but not the frozen LM (rebuilt on resume);
    a frozen weight that changed since (a replaced LM directory) is refused with a clear error."""
    from trainers.model import DecisionTransformer
    from trainers.checkpoint import load_checkpoint_weights

    root, data, lm = inputs
    base = config(lm)
    cfg = base.model_copy(update={"train": base.train.model_copy(update={"steps": 10})})
    run_trial(cfg, tmp_path / "w", data)
    st = torch.load(tmp_path / "w" / CHECKPOINT_DIR / "state.pt", weights_only=False)
    task = cfg.task_spec
    model = DecisionTransformer(cfg, task.obs_dim, task.act_dim, task.max_ep_len, lm)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    weights, fingerprint = st["learner"]["model"], st["learner"]["frozen_fingerprint"]
    assert trainable and frozen and trainable <= set(weights) and not frozen & set(weights)
    assert any("lora_" in k for k in weights)
    load_checkpoint_weights(model, weights, tmp_path, fingerprint)  # same LM: accepted
    name = sorted(frozen)[0]
    with torch.no_grad():
        dict(model.named_parameters())[name].add_(1e-3)
    with pytest.raises(ValueError, match="frozen language-model weights differ"):
        load_checkpoint_weights(model, weights, tmp_path, fingerprint)


def test_restored_records_wait_for_the_server_without_blocking(tmp_path, new_sqlite_uri):
    """Records restored from a checkpoint are checked against the run at the first delivery, not at
    resume: with the server unreachable, the reporter keeps them and training goes on; once it is back,
    only the records the run lacks are sent."""
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from orchestrator.sweep import _MlflowTuneReporter

    uri = new_sqlite_uri(tmp_path)
    cfg = TrialConfig(task="reacher2d-medium", variant="dt")
    exp = tracking.ensure_experiment(uri, "restore", tmp_path / "art")
    parent = tracking.start_parent_run(uri, exp, "restore", None, [cfg], 0)
    run = tracking.TrialRun.open(uri, exp, parent, cfg, 10)
    run.log_metrics(10, {"train/action_loss": 1.0})  # delivered before the trial died
    said = []
    reporter = _MlflowTuneReporter(run, 10, say=said.append)
    reporter.load_state_dict({"buffer": [(10, {"train/action_loss": 1.0}), (20, {"train/action_loss": 0.5})],
                              "tags": {"device": "cpu"}})
    reporter.log(30, {"train/action_loss": 0.25})

    real = run.logged_steps
    run.logged_steps = lambda key: (_ for _ in ()).throw(ConnectionRefusedError("server down"))
    reporter.flush()  # no exception: kept for later
    assert len(reporter.buffer) == 3 and "unreachable" in said[0]
    run.logged_steps = real
    reporter.flush()
    assert reporter.buffer == [] and "back" in said[-1]
    hist = MlflowClient(uri).get_metric_history(run.run_id, "train/action_loss")
    assert sorted(m.step for m in hist) == [10, 20, 30]
    assert MlflowClient(uri).get_run(run.run_id).data.tags["device"] == "cpu"


def test_lamo_trial_resume_from_another_directory(inputs, tmp_path):
    """``lamo-trial run --resume-from DIR`` continues from a checkpoint outside its workdir (e.g. a sweep
    trial's, to debug it under pdb): resumed after the final step, it reports the stored final evaluation
    and trains no further."""
    from typer.testing import CliRunner

    from orchestrator.trial_cli import app

    root, data, lm = inputs
    base = config(lm)
    cfg = base.model_copy(update={"train": base.train.model_copy(update={"steps": 10}),
                                  "eval": base.eval.model_copy(update={"every_steps": 10})})
    final = run_trial(cfg, tmp_path / "sweep-trial", data)
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "trial.yaml"), "--workdir", str(tmp_path / "debug"),
                                   "--data-dir", str(data), "--no-prepare",
                                   "--resume-from", str(tmp_path / "sweep-trial" / CHECKPOINT_DIR)])
    assert res.exit_code == 0, res.output
    assert '"resumed_at_step": 10' in res.output
    printed = json.loads(res.output[res.output.rindex("{\n"):])
    assert printed == final
    assert not (tmp_path / "debug" / "metrics.jsonl").exists() or all(
        "train/action_loss" not in line for line in (tmp_path / "debug" / "metrics.jsonl").read_text().splitlines())
