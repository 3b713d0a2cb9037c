"""Where inputs come from: the one resolution order of :mod:`trainers.paths` (environment variable ->
project cache -> offline mirror -> download from the canonical source), the verified atomic download
(:mod:`trainers.downloads`) and the message without internet and without a mirror.

There is no internet here, so **a local HTTP server stands in for the Hugging Face hub**
(:class:`benchmarks.standins.StandInHub`, shared with the rehearsal of the paper sweeps): it serves the
same URL layout (``/api/<type>s/<repo>/paths-info/<rev>``, ``/<datasets/><repo>/resolve/<rev>/<path>``)
and the same metadata (size, LFS sha256, git blob id) for small synthetic files written by the tests
(synthetic WikiText-style parquet files, an untrained SB3 SAC agent). ``HF_ENDPOINT`` points the real
``huggingface_hub`` client at it. "No internet" is a closed local port as ``HF_ENDPOINT``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.standins import StandInHub, wiki_article, write_mirror_text, write_wikitext_parquet
from tests.conftest import free_port
from trainers.config import TrialConfig
from trainers.downloads import DownloadError, WIKITEXT_FILES, WIKITEXT_REPO, fetch_hub_files, wikitext_files

REPO = Path(__file__).resolve().parents[1]
REAL_MIRROR = __import__("trainers.paths").paths.shared_mirror()  # before any test changes LAMO_SHARED_DIR


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty mirror and data dir, no LAMO_* variables, and a closed port as the hub ("no internet")."""
    for var in ("LAMO_TEXT_DIR", "LAMO_SB3_AGENTS_DIR", "LAMO_DATA_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("LAMO_SHARED_DIR", str(mirror))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return {"mirror": mirror, "data": tmp_path / "data"}


@pytest.fixture
def hub(tmp_path, monkeypatch, isolated):
    """The stand-in hub serving WikiText-style parquet files at ``Salesforce/wikitext``."""
    import huggingface_hub.constants

    # tests/conftest.py sets HF_HUB_OFFLINE=1 before huggingface_hub reads it at import; this hub is local
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    srv = StandInHub(tmp_path / "hub")
    write_wikitext_parquet(tmp_path / "hub" / "datasets" / WIKITEXT_REPO)
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    yield srv
    srv.close()


def _lamo_cfg(lm: str = "lamo-wiki-tiny") -> TrialConfig:
    return TrialConfig.model_validate({"task": "reacher2d-medium", "model": {"lm": lm},
                                       "language": {"weight": 0.1, "block_size": 16}})


def test_env_var_wins_over_cache_and_mirror(tmp_path, monkeypatch, isolated):
    from trainers.lm.corpus import resolve_text

    write_mirror_text(isolated["mirror"] / "data" / "text")
    write_wikitext_parquet(isolated["data"] / "text")
    explicit = tmp_path / "mine"
    write_mirror_text(explicit)
    monkeypatch.setenv("LAMO_TEXT_DIR", str(explicit))
    src = resolve_text(isolated["data"])
    assert (src.root, src.origin, src.layout) == (explicit.resolve(), "$LAMO_TEXT_DIR", "mirror")


def test_cache_before_mirror(isolated):
    from trainers.lm.corpus import corpus_files, resolve_text

    write_mirror_text(isolated["mirror"] / "data" / "text")
    write_wikitext_parquet(isolated["data"] / "text")
    src = resolve_text(isolated["data"])
    assert (src.origin, src.layout) == ("the project cache", "hub")
    # in the hub layout the language-loss corpus is the raw *train* split, as LaMo used
    assert [p.name for p in corpus_files("wikitext-103-local", isolated["data"])] == [
        "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    # without a data directory there is no cache to look in: the mirror
    assert resolve_text().origin == "the offline mirror"


def test_mirror_before_download_and_no_network_attempted(hub, isolated):
    from trainers.inputs import inputs_to_prepare, missing_inputs
    from trainers.lm.corpus import resolve_text

    write_mirror_text(isolated["mirror"] / "data" / "text")
    cfg = _lamo_cfg()
    assert resolve_text(isolated["data"]).origin == "the offline mirror"
    assert missing_inputs([cfg], isolated["data"]) == []
    plan = inputs_to_prepare([cfg], isolated["data"])
    assert not [p for p in plan if p.startswith("download")], plan
    assert hub.requests == []  # the stand-in hub was never asked


def _tiny_lm(out: Path) -> Path:
    """A local LM directory with a small byte-level BPE tokenizer (trained here on a few lines)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2TokenizerFast

    out.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([x for a in range(5) for x in wiki_article(f"t {a}", 5)], vocab_size=300,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(out))
    GPT2TokenizerFast.from_pretrained(str(out), eos_token="<|endoftext|>").save_pretrained(out)
    GPT2Config(vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=32).save_pretrained(out)
    return out


def test_download_when_nothing_local(hub, isolated, tmp_path):
    """Empty cache and mirror, hub answering: ``prepare`` downloads the text (verified) into the cache and
    tokenises the language-loss corpus from it (the raw train split)."""
    from trainers.inputs import inputs_to_prepare, language_blocks, missing_inputs, prepare_inputs, text_source_of
    from trainers.lm.corpus import resolve_text

    dd = isolated["data"]
    data_file = tmp_path / "given.hdf5"
    data_file.touch()  # an explicit dataset path, so that prepare has nothing to collect
    cfg = TrialConfig.model_validate({"task": "reacher2d-medium", "model": {"lm": str(_tiny_lm(tmp_path / "lm"))},
                                      "language": {"weight": 0.1, "block_size": 16},
                                      "data": {"source": "d4rl", "path": str(data_file)}})
    assert missing_inputs([cfg], dd) == []
    plan = inputs_to_prepare([cfg], dd)
    assert len(plan) == 1 and plan[0].startswith("download WikiText-103 raw") and "Salesforce/wikitext" in plan[0]
    logs = []
    made = prepare_inputs([cfg], dd, progress=False, log=logs.append)
    assert made["downloads"] == {"text": str(dd / "text")}
    for rel in (p for files in WIKITEXT_FILES.values() for p in files):
        assert (dd / "text" / rel).is_file()
    assert not list((dd / "text").glob(".download-*"))  # the temporary directory is gone
    manifest = json.loads((dd / "text" / "Salesforce__wikitext.fetched.json").read_text())
    assert manifest["repo"] == WIKITEXT_REPO and len(manifest["files"]) == 4
    assert all("sha256" in v for v in manifest["files"].values())
    src = resolve_text(dd)
    assert (src.origin, src.layout) == ("the project cache", "hub")
    assert "raw train" in text_source_of(cfg, dd) and "project cache" in text_source_of(cfg, dd)
    assert language_blocks(cfg, dd).shape[1] == 16
    n_requests = len(hub.requests)
    assert inputs_to_prepare([cfg], dd) == [] and len(hub.requests) == n_requests  # now cached: no network


@pytest.mark.parametrize("lie", [{"sha256": "0" * 64}, {"size": 12345}])
def test_corrupted_download_is_refused_and_leaves_nothing(hub, isolated, lie):
    train0 = WIKITEXT_FILES["train"][0]
    hub.published[train0] = lie  # the bytes served no longer match what the "hub" publishes
    cache = isolated["data"] / "text"
    with pytest.raises(DownloadError, match=re.escape(train0)) as e:
        fetch_hub_files(wikitext_files(), cache, progress=False, log=lambda *_: None)
    assert ("sha256" if "sha256" in lie else "12345") in str(e.value)
    assert not (cache / train0).exists()
    assert not list(cache.glob(".download-*")) and not list(cache.rglob("*.parquet.*"))
    assert not (cache / "Salesforce__wikitext.fetched.json").exists()


@pytest.mark.skipif(not (REAL_MIRROR / "data" / "sb3_agents" / "ars" / "Hopper-v3_1" / "Hopper-v3.zip").is_file(),
                    reason="needs the RL-Zoo agent files of the offline mirror to serve from the stand-in hub")
def test_rl_zoo_agent_download_verified_and_loaded(hub, isolated):
    """An RL-Zoo agent from the stand-in hub repo ``sb3/ars-Hopper-v3`` (serving the zoo's own files, taken
    from the offline mirror, with the hub's file names): downloaded into the cache in the RL-Zoo layout
    (``vec_normalize.pkl`` renamed ``vecnormalize.pkl``), loaded with stable-baselines3, found first by the
    resolution order afterwards; a corrupted zip is refused and nothing is cached."""
    import numpy as np

    from trainers.data.policies import fetch_sb3_agent, find_sb3_agent, get_behaviour_policy

    zoo = REAL_MIRROR / "data" / "sb3_agents" / "ars" / "Hopper-v3_1"
    repo = hub.root / "models" / "sb3" / "ars-Hopper-v3"
    repo.mkdir(parents=True)
    shutil.copy(zoo / "Hopper-v3.zip", repo / "ars-Hopper-v3.zip")
    shutil.copy(zoo / "Hopper-v3" / "config.yml", repo / "config.yml")
    shutil.copy(zoo / "Hopper-v3" / "vecnormalize.pkl", repo / "vec_normalize.pkl")
    dd = isolated["data"]
    assert find_sb3_agent("ars", "Hopper-v3", dd) is None  # the (empty) mirror of this test has none

    hub.published["ars-Hopper-v3.zip"] = {"sha256": "f" * 64}
    with pytest.raises(DownloadError, match="sha256"):
        fetch_sb3_agent("sb3:ars/Hopper-v3", dd, progress=False, log=lambda *_: None)
    assert find_sb3_agent("ars", "Hopper-v3", dd) is None
    assert not [p for p in (dd / "sb3_agents").rglob("*") if p.is_file()]

    hub.published.clear()
    fetch_sb3_agent("sb3:ars/Hopper-v3", dd, progress=False, log=lambda *_: None)
    root, origin = find_sb3_agent("ars", "Hopper-v3", dd)
    assert origin == "the project cache"
    run = root / "ars" / "Hopper-v3_1"
    assert (run / "Hopper-v3" / "config.yml").is_file() and (run / "Hopper-v3" / "vecnormalize.pkl").is_file()
    assert (run / "Hopper-v3.zip").read_bytes() == (zoo / "Hopper-v3.zip").read_bytes()
    pol = get_behaviour_policy("sb3:ars/Hopper-v3", seed=0, data_dir=dd)
    assert pol.normaliser is not None and pol(np.zeros(11)).shape == (3,)


def _cli(args, env_extra, cwd, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMO_", "HF_")) and k != "TRANSFORMERS_OFFLINE"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


@pytest.mark.slow(reason="two fresh interpreters importing the sweep CLI (~10 s each)")
def test_fresh_clone_without_mirror_or_internet(tmp_path):
    """A fresh clone without ``../shared`` and without internet: ``--dry-run`` names the missing text and
    the one command that fetches it; a run exits 3 before any compute (no dataset collected, no LM)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"LAMO_SHARED_DIR": str(empty), "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "COLUMNS": "200"}
    storage = tmp_path / "runs"
    dry = _cli(["orchestrator.cli", str(REPO / "sweeps" / "quickstart.yaml"), "--dry-run", "--storage", str(storage)],
               env, tmp_path)
    assert dry.returncode == 0, dry.stderr
    msg = " ".join(dry.stderr.split())
    print(dry.stderr)
    assert "text corpus WikiText-103" in msg and "is missing" in msg
    assert f"lamo-trial fetch text --data-dir {storage / 'data'}" in msg
    assert "is unreachable" in msg and str(empty / "data" / "text") in msg

    run = _cli(["orchestrator.cli", str(REPO / "sweeps" / "quickstart.yaml"), "--storage", str(storage)], env, tmp_path)
    assert run.returncode == 3, run.stdout + run.stderr
    assert f"lamo-trial fetch text --data-dir {storage / 'data'}" in " ".join(run.stderr.split())
    assert not (storage / "data" / "datasets").exists() and not (storage / "data" / "models").exists()
    assert not (storage / "trials").exists()


def test_lamo_trial_fetch_text(hub, isolated):
    """``lamo-trial fetch text`` (the command the missing-input message names) fills the cache from the
    stand-in hub; a second call finds it there and downloads nothing."""
    from typer.testing import CliRunner

    from orchestrator.trial_cli import app

    dd = isolated["data"]
    r = CliRunner().invoke(app, ["fetch", "text", "--data-dir", str(dd)])
    assert r.exit_code == 0, r.output
    assert "from the project cache" in r.output
    assert all((dd / "text" / p).is_file() for files in WIKITEXT_FILES.values() for p in files)
    n = len(hub.requests)
    again = CliRunner().invoke(app, ["fetch", "text", "--data-dir", str(dd)])
    assert again.exit_code == 0 and "nothing downloaded" in again.output and len(hub.requests) == n


def test_text_source_is_recorded_as_a_tag(isolated):
    """Which text a trial reads is a tag of its MLflow run (``text_source``), not a config field: trials
    without text have none; the mirror's tokenised files and the hub's raw text are told apart."""
    from orchestrator.sweep import _MlflowTuneReporter
    from trainers import contract
    from trainers.inputs import text_source_of

    dd = isolated["data"]
    dt = TrialConfig.model_validate({"task": "reacher2d-medium", "model": {"lm": None, "init": "random"}, "language": {"weight": 0}})
    assert text_source_of(dt, dd) is None
    assert text_source_of(_lamo_cfg(), dd) == "missing"
    write_mirror_text(isolated["mirror"] / "data" / "text")
    mirror_src = text_source_of(_lamo_cfg(), dd)
    assert "tokenised valid/test" in mirror_src and "offline mirror" in mirror_src
    write_wikitext_parquet(dd / "text")
    hub_src = text_source_of(_lamo_cfg(), dd)
    assert "raw train" in hub_src and "project cache" in hub_src
    # where the text came from is a tag of the run, not part of the trial's identity (params / config hash)
    assert not [k for k in contract.flatten(_lamo_cfg().record()) if "source" in k and "data." not in k]

    rep = _MlflowTuneReporter(run=None, wait_s=0)
    info = {contract.DATA_SUBSET_HASH: "h", contract.DEVICE: "cpu", contract.DATA_SOURCE: "collected",
            contract.TEXT_SOURCE: hub_src, "resumed_at_step": 1}
    rep.start(_lamo_cfg(), info)
    assert rep.tags[contract.TEXT_SOURCE] == hub_src
    rep2 = _MlflowTuneReporter(run=None, wait_s=0)
    rep2.start(dt, {**info, contract.TEXT_SOURCE: None})
    assert contract.TEXT_SOURCE not in rep2.tags


def test_prepare_only_refuses_a_corrupted_download_before_compute(hub, isolated, tmp_path):
    """``lamo-sweep --prepare-only`` on a clone without a mirror, the (stand-in) hub answering: the downloads
    come first; a file whose bytes do not match the published sha256 stops it with exit 3, nothing cached
    and nothing computed (no dataset collected, no LM pre-trained)."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    train1 = WIKITEXT_FILES["train"][1]
    hub.published[train1] = {"sha256": "1" * 64}
    storage = tmp_path / "runs"
    r = CliRunner().invoke(app, [str(REPO / "sweeps" / "quickstart.yaml"), "--prepare-only", "--storage", str(storage)])
    assert r.exit_code == 3, r.output
    msg = " ".join(r.output.split())
    assert train1 in msg and "does not match the published" in msg
    text = storage / "data" / "text"
    assert not (text / train1).exists() and not list(text.glob(".download-*"))
    assert not (storage / "data" / "datasets").exists() and not (storage / "data" / "models").exists()


@pytest.mark.slow(reason="builds and saves a small GPT-2 with transformers, then downloads it (~20 s on 2 busy cores)")
def test_hub_lm_downloaded_by_prepare(hub, isolated, tmp_path, monkeypatch):
    """An LM by hub id that is neither a local directory nor in the Hugging Face cache: with the (stand-in)
    hub answering, ``prepare`` downloads its config, tokenizer and PyTorch weights into the HF cache (not
    the repo's other framework copies); afterwards it is found in the cache and nothing is planned."""
    import huggingface_hub.constants
    from transformers import AutoConfig, GPT2LMHeadModel

    from trainers.inputs import inputs_to_prepare, missing_inputs, prepare_inputs

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    repo = _tiny_lm(hub.root / "models" / "stand-in" / "tiny-lm")
    GPT2LMHeadModel(AutoConfig.from_pretrained(repo)).save_pretrained(repo)
    (repo / "flax_model.msgpack").write_bytes(b"\0" * 1000)  # another framework's copy: not fetched
    data_file = tmp_path / "given.hdf5"
    data_file.touch()
    cfg = TrialConfig.model_validate({"task": "reacher2d-medium", "model": {"lm": "stand-in/tiny-lm"},
                                      "language": {"weight": 0}, "data": {"source": "d4rl", "path": str(data_file)}})
    dd = isolated["data"]
    assert missing_inputs([cfg], dd) == []
    assert inputs_to_prepare([cfg], dd) == ["download LM stand-in/tiny-lm from the hub into the Hugging Face cache"]
    made = prepare_inputs([cfg], dd, progress=False, log=lambda *_: None)
    snap = Path(made["downloads"]["stand-in/tiny-lm"])
    assert (snap / "model.safetensors").is_file() and (snap / "config.json").is_file()
    assert (snap / "tokenizer_config.json").is_file() and not (snap / "flax_model.msgpack").exists()
    assert snap.is_relative_to(tmp_path / "hf_cache")
    n = len(hub.requests)
    assert inputs_to_prepare([cfg], dd) == [] and len(hub.requests) == n
