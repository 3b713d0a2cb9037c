"""The ``wiki-rl`` preset against Wiki-RL's main recipe (github.com/machelreid/can-wikipedia-help-offline-rl
``code/run.sh``, ``code/utils.py``, ``code/experiment.py``, ``code/decision_transformer/models/
decision_transformer.py``, ``code/decision_transformer/training/seq_trainer.py``): AdamW eps 1e-6 with a
pre-trained LM, the action head tied to the action embedding, dropout 0.2 / 0.1 / 0.1, extended positions
and the k-means alignment loss; the new config fields leave existing trial hashes alone."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError
from transformers import GPT2Config, GPT2LMHeadModel

from trainers.alignment import alignment_loss, anneal, cosine_kmeans, extend_positions
from trainers.config import TrialConfig
from trainers.learner import SequenceLearner, build_parts
from trainers.model import DecisionTransformer
from trainers.presets import get_preset
from trainers.train import ConsoleReporter, run_trial

OBS, ACT, MAX_EP = 12, 2, 100  # Reacher2d


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    """A tiny GPT-2 saved as a pre-trained LM: 97 tokens, 64 positions (< Reacher2d's 100 timesteps)."""
    d = tmp_path_factory.mktemp("lm")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4)).save_pretrained(d)
    return str(d)


def wiki_cfg(lm: str, **over) -> TrialConfig:
    d = get_preset("wiki-rl")
    d["model"]["lm"] = lm
    d["alignment"] = {**d.get("alignment", {}), "clusters": 8}  # the tiny LM has 97 tokens, not >= 1,000
    d.update(task="reacher2d-medium", sample_ratio=0.5, seed=3, variant="wiki-rl", device="cpu", **over)
    d.setdefault("train", {}).update(steps=4, batch_size=8)
    return TrialConfig(**d)


def test_adam_eps_is_1e6_with_a_pretrained_lm(lm_dir, tmp_path):
    """utils.py get_optimizer: eps=1e-6 whenever --pretrained_lm is given (every run.sh command)."""
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path

    cfg = wiki_cfg(lm_dir)
    assert cfg.model.lm is not None and cfg.train.adam_eps == 1e-6
    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", tmp_path), episodes=4, seed=0,
                    progress=False)
    parts = build_parts(cfg, tmp_path)
    assert [g["eps"] for g in parts.optimizer.param_groups] == [1e-6]
    assert [g["weight_decay"] for g in parts.optimizer.param_groups] == [1e-4]


def test_action_head_is_the_action_embedding_transposed(lm_dir):
    """run.sh --share_input_output_proj: tanh(h @ W_action), no bias, no weights of its own."""
    cfg = wiki_cfg(lm_dir)
    m = DecisionTransformer(cfg, OBS, ACT, MAX_EP, lm_dir)
    assert cfg.model.tied_action_head and list(m.predict_action.parameters()) == []
    h = torch.randn(5, m.hidden)
    w = m.embed_action.weight  # (H, act_dim)
    assert w.shape == (m.hidden, ACT)
    torch.testing.assert_close(m.predict_action(h), torch.tanh(h @ w))
    assert torch.equal(m.predict_action(torch.zeros(1, m.hidden)), torch.zeros(1, ACT))  # no bias
    with torch.no_grad():
        w.mul_(2.0)  # the head follows the embedding
    torch.testing.assert_close(m.predict_action(h), torch.tanh(h @ w))
    # the action loss trains the embedding through the head (actions all zero: the embedding's input path
    # gives its weight no gradient, so any gradient comes through the head)
    untied = DecisionTransformer(wiki_cfg(lm_dir).model_copy(update={"model": cfg.model.model_copy(
        update={"tied_action_head": False})}), OBS, ACT, MAX_EP, lm_dir)
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in m.parameters()) == m.hidden * ACT + ACT
    B, K = 2, 3
    pred = m(torch.randn(B, K, OBS), torch.zeros(B, K, ACT), torch.randn(B, K, 1),
             torch.arange(K).repeat(B, 1), torch.ones(B, K))
    ((pred - 0.5) ** 2).mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_tied_head_needs_linear_embeddings():
    with pytest.raises(ValidationError, match="tied_action_head.*model.embedding: linear"):
        TrialConfig(task="reacher2d-medium", model={"embedding": "mlp", "tied_action_head": True})


def test_dropout_is_residual_02_attention_01_embedding_01(lm_dir):
    m = DecisionTransformer(wiki_cfg(lm_dir), OBS, ACT, MAX_EP, lm_dir)
    c = m.lm.config
    assert (c.resid_pdrop, c.attn_pdrop, c.embd_pdrop) == (0.2, 0.1, 0.1)
    block = m.trunk.h[0]
    assert m.trunk.drop.p == 0.1  # embedding dropout
    assert block.attn.attn_dropout.p == 0.1 and block.attn.resid_dropout.p == 0.2 and block.mlp.dropout.p == 0.2
    # without the two new fields, model.dropout sets all three (the other presets: unchanged)
    lamo = DecisionTransformer(TrialConfig(task="reacher2d-medium", model={"lm": lm_dir, "dropout": 0.2},
                                           language={"weight": 0}), OBS, ACT, MAX_EP, lm_dir)
    assert (lamo.lm.config.resid_pdrop, lamo.lm.config.attn_pdrop, lamo.lm.config.embd_pdrop) == (0.2,) * 3


def test_new_fields_leave_existing_hashes_alone():
    base = TrialConfig(task="reacher2d-medium")
    rec = base.record()
    assert not {"attn_dropout", "embd_dropout", "tied_action_head", "extend_positions"} & rec["model"].keys()
    assert "alignment" not in rec
    changed = base.model_copy(update={"model": base.model.model_copy(update={"attn_dropout": 0.1})})
    assert changed.record()["model"]["attn_dropout"] == 0.1 and changed.config_hash() != base.config_hash()
    iql = TrialConfig(task="hopper-medium", **get_preset("iql"))
    assert "actor_dropout" not in iql.record()["baseline"]


def test_extended_positions_initialise_the_timestep_table(lm_dir):
    """run.sh --extend_positions: the timestep embedding is the pre-trained wpe, rows 2.. repeated past its
    64 rows up to Reacher2d's 100 timesteps; the trunk itself still adds no positions."""
    wpe = GPT2LMHeadModel.from_pretrained(lm_dir).transformer.wpe.weight.detach()
    m = DecisionTransformer(wiki_cfg(lm_dir), OBS, ACT, MAX_EP, lm_dir)
    t = m.embed_timestep.weight
    assert t.shape == (MAX_EP, m.hidden) and t.requires_grad
    torch.testing.assert_close(t[:64], wpe)
    torch.testing.assert_close(t[64:], wpe[2:38])
    assert not m.trunk.wpe.weight.requires_grad and m.trunk.wpe.weight.abs().sum() == 0
    ext = extend_positions(torch.arange(10.0)[:, None], 27)  # every row filled, also the last
    assert ext[:, 0].tolist() == [0, 1, *range(2, 10), *range(2, 10), *range(2, 10), 2]


def test_alignment_loss_equals_the_official_einsum():
    """seq_trainer.py: -(einsum("iaj,bj->iabj", t, c).max(2).values.mean()) on unit vectors, computed
    densely here; the closed form never builds the (B, T, k, H) tensor."""
    g = torch.Generator().manual_seed(0)
    tok, cen = torch.randn(3, 7, 16, generator=g), torch.randn(5, 16, generator=g)
    tn, cn = torch.nn.functional.normalize(tok, dim=-1), torch.nn.functional.normalize(cen, dim=-1)
    dense = -(torch.einsum("iaj,bj->iabj", tn, cn).max(2).values.mean())
    torch.testing.assert_close(alignment_loss(tok, cen, "code"), dense)
    cos = -(torch.einsum("iaj,bj->iab", tn, cn).max(2).values.mean())  # the paper's cosine form
    torch.testing.assert_close(alignment_loss(tok, cen, "paper"), cos)
    assert not torch.allclose(dense, cos)


def test_anneal_schedule():
    """kmeans_anneal(x) = 1 / (1 + exp(-((5000 - x) / 500 - 5)))."""
    assert anneal(1) == pytest.approx(1 / (1 + math.exp(-(4999 / 500 - 5))))
    assert anneal(1) > 0.99 and anneal(2500) == pytest.approx(0.5) and anneal(5000) < 0.007
    assert anneal(20_000) < 1e-12


def test_cosine_kmeans_finds_the_directions():
    g = torch.Generator().manual_seed(1)
    dirs = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    x = torch.cat([d * (1 + torch.rand(50, 1, generator=g)) + 0.05 * torch.randn(50, 8, generator=g)
                   for d in dirs])
    c, iters = cosine_kmeans(x, 3, seed=0)
    sim = torch.nn.functional.normalize(c, dim=-1) @ dirs.T
    assert sorted(sim.argmax(1).tolist()) == [0, 1, 2] and sim.max(1).values.min() > 0.95 and iters < 100
    again, _ = cosine_kmeans(x, 3, seed=0)
    assert torch.equal(c, again)
    with pytest.raises(ValueError, match="alignment.clusters"):
        cosine_kmeans(x, 1000, seed=0)


def test_learner_adds_the_alignment_loss(lm_dir, tmp_path):
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path

    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", tmp_path), episodes=4, seed=0,
                    progress=False)
    torch.manual_seed(0)
    learner = SequenceLearner(wiki_cfg(lm_dir), build_parts(wiki_cfg(lm_dir), tmp_path))
    centres = learner.parts.model.alignment_centres
    assert centres.shape == (8, 32) and centres.abs().sum() > 0
    assert "alignment_centres" in learner.state_dict()["model"]  # resumes with the same centres
    out = learner.train_step()
    assert set(out) == {"action_loss", "alignment_loss"} and -1 <= out["alignment_loss"] <= 1
    # weight 0 = no alignment: no centres, no k-means
    off = wiki_cfg(lm_dir, alignment={"weight": 0.0})
    assert not hasattr(DecisionTransformer(off, OBS, ACT, MAX_EP, lm_dir), "alignment_centres")
    with pytest.raises(ValidationError, match="alignment.*needs model.lm"):
        TrialConfig(task="reacher2d-medium", **{**get_preset("dt"), "alignment": {}})


def test_resume_is_bit_exact_with_the_alignment_loss(lm_dir, tmp_path, stop_after_checkpoint):
    """The centres and the anneal step resume with the checkpoint: a trial killed after step 4 and resumed
    ends with the uninterrupted run's metrics (CPU)."""
    from trainers.data.collect import collect_dataset
    from trainers.paths import dataset_path
    collect_dataset("reacher2d-medium", dataset_path("reacher2d-medium", tmp_path), episodes=4, seed=0,
                    progress=False)
    torch.set_num_threads(1)
    cfg = wiki_cfg(lm_dir, eval={"every_steps": 8, "episodes": 1, "max_episode_steps": 5})
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 8, "log_every": 2,
                                                                       "checkpoint_every": 4})})
    ref = run_trial(cfg, tmp_path / "ref", tmp_path, ConsoleReporter(tmp_path / "ref", quiet=True))
    wd = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, wd, tmp_path, stop_after_checkpoint(wd, 4))
    out = run_trial(cfg, wd, tmp_path, ConsoleReporter(wd, quiet=True))
    drop = {"eval/episodes_per_s", "train/steps_per_s"}
    assert {k: v for k, v in out.items() if k not in drop} == {k: v for k, v in ref.items() if k not in drop}

    def train_lines(d):
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return {m["step"]: {k: v for k, v in m.items() if k not in drop} for m in lines if "train/lr" in m}

    ref_train, resumed = train_lines(tmp_path / "ref"), train_lines(wd)
    assert [ref_train[s]["train/alignment_loss"] for s in (6, 8)] == [resumed[s]["train/alignment_loss"] for s in (6, 8)]
    assert ref_train[8] == resumed[8]
