"""The rehearsal of the paper sweeps (``benchmarks/rehearse_paper_sweeps.py``), on a small sample: one trial per
domain kind through the real ``lamo-sweep`` CLI, on stand-in inputs in the real formats served over loopback
(:mod:`benchmarks.standins`) and downloaded by the project's own ``prepare``:

* ``atari.yaml``, variant ``lamo`` on Breakout: DQN Replay checkpoints in Dopamine's layout, and GPT-2 at its
  real size (124M parameters, random weights) from the stand-in hub as ``model.lm: gpt2``;
* ``paper_mujoco.yaml``, variant ``dt`` on Hopper-medium: a D4RL MuJoCo ``-v2`` hdf5;
* ``kitchen.yaml``, variant ``dt`` on kitchen-partial: a D4RL kitchen hdf5.

The full sample (every paper sweep file) is the benchmark's; its measured run is in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_sample_rule_one_trial_per_variant_and_domain_of_every_paper_sweep():
    """The rehearsal's sample (no compute): per paper sweep file, one invocation per domain of its grid with one
    trial per variant, all valid ``--set`` flags on the unchanged file, every trial shrunk, on CPU, and no
    project LM left (the stand-in GPT-2 instead)."""
    from benchmarks.rehearse_paper_sweeps import PAPER_SWEEPS, sample_groups
    from orchestrator.schema import Sweep, parse_overrides, set_dotted
    from trainers.tasks import get_task

    counts = {}
    for name in PAPER_SWEEPS:
        full = Sweep.load(REPO / "sweeps" / f"{name}.yaml")
        groups = sample_groups(name, steps=3)
        assert [g.domain for g in groups] == list(dict.fromkeys(get_task(t).domain for t in full.spec.grid.task))
        counts[name] = sum(len(g.trials) for g in groups)
        for g in groups:
            over = parse_overrides([a for i, a in enumerate(g.args) if i and g.args[i - 1] == "--set"])
            set_dotted(over, "train.steps", 3)
            sw = Sweep.load(REPO / "sweeps" / f"{name}.yaml", over)
            assert sorted(t.variant for t in sw.trials) == sorted(full.spec.variants)
            assert len({t.task for t in sw.trials}) == 1 and {t.seed for t in sw.trials} == {full.spec.grid.seed[0]}
            for t in sw.trials:
                assert (t.train.steps, t.train.batch_size, t.eval.episodes, t.eval.max_episode_steps) == (3, 4, 1, 5)
                assert t.model.lm in (None, "gpt2"), t.model.lm
                assert sw.trial_resources(t).ray_resources().get("gpu", 0) == 0
    assert counts == {"paper_mujoco": 7, "kitchen": 2, "paper_sparse": 14, "atari": 4, "ablations": 6, "low_data": 2}


@pytest.mark.slow(reason="builds GPT-2 small (500 MB), starts Ray and runs 3 one-trial sweeps (~45 s on 2 cores)")
def test_rehearsal_sample_runs_every_domain_kind_on_real_formats(tmp_path):
    import torch
    from mlflow.tracking import MlflowClient

    from benchmarks.standins import GPT2_SMALL_PARAMS, gpt2_info

    out = tmp_path / "rehearsal"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMO_", "HF_", "MLFLOW_"))
           and k != "TRANSFORMERS_OFFLINE"}
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rehearse_paper_sweeps.py"), "--out", str(out),
                        "--pick", "atari:atari:lamo", "--pick", "paper_mujoco:mujoco:dt", "--pick", "kitchen:kitchen:dt",
                        "--in-process", "--no-analysis"],
                       capture_output=True, text=True, cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    summary = json.loads((out / "rehearsal.json").read_text())
    assert {s: (v["trials"], v["runs"], v["finished"]) for s, v in summary["sweeps"].items()} == {
        "atari": (1, 1, 1), "paper_mujoco": (1, 1, 1), "kitchen": (1, 1, 1)}

    # every input came through the download code from the stand-ins, not from a local copy
    data = out / "runs" / "data"
    files = out / "standins" / "files"
    c = MlflowClient(summary["tracking_uri"])
    runs = {}
    for name in ("atari", "paper_mujoco", "kitchen"):
        (run,) = c.search_runs([c.get_experiment_by_name(name).experiment_id], "tags.`lamo.role` = 'trial'")
        assert run.info.status == "FINISHED"
        assert run.data.tags["data_source"] == "d4rl"
        runs[name] = run
    for name, served, cached in (
            ("paper_mujoco", files / "d4rl/gym_mujoco_v2/hopper_medium-v2.hdf5", data / "d4rl/hopper_medium-v2.hdf5"),
            ("kitchen", files / "d4rl/kitchen/kitchen_microwave_kettle_light_slider-v0.hdf5",
             data / "d4rl/kitchen_microwave_kettle_light_slider-v0.hdf5")):
        assert runs[name].data.tags["dataset_sha256"] == _sha256(served) == _sha256(cached)
        manifest = json.loads(cached.with_name(cached.name + ".fetched.json").read_text())
        assert manifest["sha256"] == _sha256(served) and manifest["url"].startswith("http://127.0.0.1:")
    replay = data / "dqn_replay" / "Breakout" / "1" / "replay_logs"
    served = sorted((files / "dqn" / "Breakout" / "1" / "replay_logs").iterdir())
    assert len(served) == 4 and all(_sha256(replay / f.name) == _sha256(f) for f in served)
    lines = "".join(f"{f.name} {_sha256(f)}\n" for f in served)  # the checkpoint's four files, by name
    assert runs["atari"].data.tags["dataset_sha256"] == hashlib.sha256(lines.encode()).hexdigest()

    # GPT-2 at its real size, downloaded into the (fresh) Hugging Face cache and loaded by the trial
    info = gpt2_info(out / "standins" / "hub" / "models" / "gpt2")
    assert info["n_params"] == GPT2_SMALL_PARAMS
    assert info["config"] == {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}
    (snap,) = (out / "hf_home" / "hub" / "models--gpt2" / "snapshots").iterdir()
    assert _sha256(snap / "model.safetensors") == info["safetensors_sha256"]
    lamo = runs["atari"]
    assert lamo.data.metrics["params/total"] > GPT2_SMALL_PARAMS
    assert 0 < lamo.data.metrics["params/trainable"] < 0.1 * GPT2_SMALL_PARAMS  # LoRA: the LM stays frozen
    (wd,) = (out / "runs" / "trials").glob("breakout-medium_r0.1_lamo_s0-*")
    state = torch.load(wd / "checkpoint" / "state.pt", weights_only=False)
    fingerprint = state["learner"]["frozen_fingerprint"]  # BLAKE2b of every frozen parameter the trial held
    same, differ = [], []
    for key, digest in fingerprint.items():
        if "transformer." not in key:
            continue
        name = "transformer." + key.split("transformer.", 1)[1].replace(".base_layer", "")
        if name in info["digests"]:
            (same if info["digests"][name] == digest else differ).append(name)
    # all 148 frozen GPT-2 tensors (12 blocks x 12, wte, wpe, ln_f) compared; every one is the stand-in's
    # byte for byte, except wpe where a recipe zeroes it (LaMo's state tasks add no absolute positions)
    assert len(same) + len(differ) == 12 * 12 + 4 and set(differ) <= {"transformer.wpe.weight"}, differ
