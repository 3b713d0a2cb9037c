"""Atari from pixels: preprocessing, the model's causal/padding invariances on image tokens, cross-entropy on
real steps only, LaMo's length-weighted subsampling, frame stacking on the fly, bad replay files, the
token LR schedule, and exact resume of a tiny Atari trial (real ALE Breakout, real torch; CPU)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.config import TrialConfig
from trainers.domains.atari.data import (AtariBatchSampler, AtariDataset, AtariSubset, DatasetError, collect_atari_dataset,
                                 dqn_replay_files, load_atari_hdf5, load_dqn_replay, save_atari_hdf5,
                                 subsample_by_length)

TINY_DT = {"lm": None, "init": "random", "embedding": "linear", "finetune": "full",
           "arch": {"n_layer": 1, "n_embd": 16, "n_head": 1, "n_inner": 32}}


def tiny_cfg(**kw) -> TrialConfig:
    base = dict(task="breakout-medium", variant="dt", model=TINY_DT, language={"weight": 0.0}, context_length=4,
                train={"steps": 6, "batch_size": 4, "log_every": 1, "checkpoint_every": 2},
                eval={"every_steps": 6, "episodes": 1, "max_episode_steps": 6}, device="cpu",
                atari={"warmup_tokens": 20, "final_tokens": 200})
    base.update(kw)
    return TrialConfig(**base)


def fake_dataset(lengths, seed=0) -> AtariDataset:
    rng = np.random.default_rng(seed)
    n = int(sum(lengths))
    terms = np.zeros(n, bool)
    terms[np.cumsum(lengths) - 1] = True
    return AtariDataset(rng.integers(0, 256, (n, 84, 84), dtype=np.uint8), rng.integers(0, 4, n),
                        rng.random(n).astype(np.float32), terms, "fake")


def test_preprocessing_shapes_dtypes_and_conventions():
    from trainers.envs import make_env

    env = make_env("lamo/Breakout-dqn-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:3].any() and obs[3].any()  # zeros before the first frame, newest last
    obs2, *_ = env.step(1)
    assert np.array_equal(obs2[2], obs[3])  # the stack shifts by one frame per agent step
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert env.action_space.n == 4
    env.close()
    single = make_env("lamo/Pong-dqn-v0", stack=False)
    o, _ = single.reset(seed=0)
    assert o.shape == (84, 84) and o.dtype == np.uint8 and single.action_space.n == 6
    single.close()


def _model(embedding="linear"):
    from trainers.domains.atari.model import AtariDecisionTransformer

    torch.manual_seed(0)
    cfg = tiny_cfg(model={**TINY_DT, "embedding": embedding})
    return AtariDecisionTransformer(cfg, 4, 4096).eval()


@pytest.mark.parametrize("embedding", ["linear", "mlp"])
def test_model_is_causal_over_image_tokens_and_ignores_right_padding(embedding):
    m = _model(embedding)
    g = torch.Generator().manual_seed(1)
    B, K = 2, 5
    s = torch.randint(0, 256, (B, K, 4, 84, 84), generator=g, dtype=torch.uint8)
    a = torch.randint(0, 4, (B, K), generator=g)
    r = torch.rand(B, K, 1, generator=g)
    t = torch.arange(K).repeat(B, 1)
    with torch.no_grad():
        out = m(s, a, r, t)
        s2 = s.clone()
        s2[:, 3] = 255 - s2[:, 3]  # change the frames of step 3
        out2 = m(s2, a, r, t)
        a2 = a.clone()
        a2[:, 2] = (a2[:, 2] + 1) % 4  # the action of step 2 is seen from step 3 on, not at step 2
        out3 = m(s, a2, r, t)
        cached = m(None, a, r, t, state_embeddings=m.encode_states(s))  # evaluation's path
    assert torch.allclose(out, cached, atol=1e-6)
    assert out.shape == (B, K, 4)
    assert torch.allclose(out[:, :3], out2[:, :3], atol=1e-6)
    assert not torch.allclose(out[:, 3], out2[:, 3])
    assert torch.allclose(out[:, :3], out3[:, :3], atol=1e-6) and not torch.allclose(out[:, 3:], out3[:, 3:])


def test_cross_entropy_counts_real_steps_only():
    from trainers.domains.atari.learner import action_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 4, generator=g)
    actions = torch.randint(0, 4, (3, 5), generator=g)
    mask = torch.ones(3, 5)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    base = action_loss(logits, actions, mask)
    logits2, actions2 = logits.clone(), actions.clone()
    logits2[mask == 0] = 50.0 * torch.randn_like(logits2[mask == 0])
    actions2[mask == 0] = (actions2[mask == 0] + 1) % 4
    assert action_loss(logits2, actions2, mask) == pytest.approx(float(base))
    real = mask.bool()
    manual = -torch.log_softmax(logits[real], -1).gather(1, actions[real][:, None]).mean()
    assert float(base) == pytest.approx(float(manual), rel=1e-6)
    assert float(action_loss(logits, actions, torch.ones(3, 5))) != pytest.approx(float(base))


def test_subsampling_is_seeded_and_length_weighted():
    lengths = np.array([10] * 50 + [1000] * 50)
    a, b = subsample_by_length(lengths, 0.1, seed=0), subsample_by_length(lengths, 0.1, seed=0)
    assert np.array_equal(a, b) and len(a) == 10 and len(set(a)) == 10
    assert not np.array_equal(a, subsample_by_length(lengths, 0.1, seed=1))
    picks = np.concatenate([subsample_by_length(lengths, 0.1, seed=s) for s in range(200)])
    assert (picks >= 50).mean() > 0.9  # long trajectories dominate (uniform would give 0.5)
    assert np.array_equal(subsample_by_length(lengths, 1.0, seed=5), np.arange(100))
    assert len(subsample_by_length(np.array([3, 4, 5]), 0.1, seed=0)) == 1


def test_batches_stack_frames_on_the_fly_from_one_copy():
    ds = fake_dataset([3, 40, 7])
    sub = AtariSubset(ds, 1.0, seed=0)
    assert sub.dataset.frames is ds.frames  # no copy of the frames per subset
    smp = AtariBatchSampler(sub, context_length=6, rtg_scale=1.0, max_ep_len=4096, seed=0)
    b = smp.sample(64)
    assert b["states"].shape == (64, 6, 4, 84, 84) and b["states"].dtype == torch.uint8
    st = ds.starts
    for i in range(64):
        m = b["attention_mask"][i].bool().numpy()
        T = int(m.sum())
        assert m[:T].all() and not m[T:].any()  # right padding only
        t0 = int(b["timesteps"][i, 0])
        # find the trajectory: the one whose frames match the newest frame of the first step
        ti = next(k for k in range(3) if t0 < ds.lengths[k] and
                  np.array_equal(ds.frames[st[k] + t0], b["states"][i, 0, -1].numpy()))
        for k in range(T):
            for lag in range(4):
                step = t0 + k - 3 + lag
                want = ds.frames[st[ti] + step] if step >= 0 else np.zeros((84, 84), np.uint8)
                assert np.array_equal(b["states"][i, k, lag].numpy(), want)
            assert int(b["actions"][i, k]) == ds.actions[st[ti] + t0 + k]
            assert float(b["returns_to_go"][i, k, 0]) == pytest.approx(float(ds.rewards[st[ti] + t0 + k: st[ti] + ds.lengths[ti]].sum()), rel=1e-5)
    again = AtariBatchSampler(sub, 6, 1.0, 4096, seed=0).sample(64)
    assert all(torch.equal(b[k], again[k]) for k in b)


def test_corrupt_or_missing_replay_files_get_clear_errors(tmp_path):
    d = tmp_path / "replay_logs"
    with pytest.raises(DatasetError, match="gsutil -m cp"):
        load_dqn_replay(d, "breakout", 4)
    d.mkdir()
    files = dqn_replay_files(d)
    n = 10
    good = {"observation": np.zeros((n, 84, 84), np.uint8), "action": np.zeros(n, np.int32),
            "reward": np.zeros(n, np.float32), "terminal": np.eye(1, n, n - 1, dtype=np.uint8)[0]}
    for k, p in files.items():
        with gzip.open(p, "wb") as f:
            np.save(f, good[k])
    assert len(load_dqn_replay(d, "breakout", 4).rewards) == n
    files["reward"].write_bytes(b"not a gzip file")
    with pytest.raises(DatasetError, match=r"reward_ckpt\.10\.gz: corrupt DQN Replay file"):
        load_dqn_replay(d, "breakout", 4)
    with gzip.open(files["reward"], "wb") as f:
        np.save(f, good["reward"])
    with gzip.open(files["action"], "wb") as f:
        np.save(f, np.full(n, 7, np.int32))
    with pytest.raises(DatasetError, match="4 actions"):
        load_dqn_replay(d, "breakout", 4)
    h5 = tmp_path / "x.hdf5"
    h5.write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        load_atari_hdf5(h5, 4)


def test_token_schedule_intended_vs_official():
    from trainers.domains.atari.learner import TokenLR, token_lr_multiplier
    from trainers.config import AtariSettings

    assert token_lr_multiplier(0, 100, 1000) == 0.0
    assert token_lr_multiplier(50, 100, 1000) == pytest.approx(0.5)
    assert token_lr_multiplier(1000, 100, 1000) == pytest.approx(0.1)  # the floor
    lrs = {}
    for mode in ("tokens", "tokens-official"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        s = TokenLR(opt, AtariSettings(lr_schedule=mode, warmup_tokens=1000, final_tokens=10**6))
        actions, mask = torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5)
        for _ in range(20):
            s.step(actions, mask)
        lrs[mode] = s.lr()
    assert lrs["tokens"] == pytest.approx(200 / 1000)  # 20 steps x 10 real targets
    assert lrs["tokens-official"] > 0.99  # 10 * (1 + ... + 20) = 2100 tokens: warm-up over


def test_new_atari_field_keeps_existing_hashes():
    cfg = TrialConfig(task="reacher2d-medium")
    assert '"atari"' not in cfg.canonical_json()
    assert TrialConfig(task="reacher2d-medium", atari={"lr_schedule": "tokens-official"}).config_hash() != cfg.config_hash()


@pytest.mark.slow(reason="collects a short real Breakout dataset, runs a 6-step Atari trial twice, one interrupted: ~20-40 s")
def test_atari_trial_resumes_exactly(tmp_path, run_cut_and_resumed):
    from trainers.checkpoint import CHECKPOINT_DIR
    from trainers.paths import trial_dataset_path

    cfg = tiny_cfg()
    data = tmp_path / "data"
    summary = collect_atari_dataset("breakout", trial_dataset_path(cfg, data), 400, progress=False)
    assert summary["transitions"] == 400
    torch.set_num_threads(1)
    ref, resumed = run_cut_and_resumed(cfg, tmp_path, data)
    drop = "eval/episodes_per_s"
    assert {k: v for k, v in resumed.items() if k != drop} == {k: v for k, v in ref.items() if k != drop}
    a = torch.load(tmp_path / "ref" / CHECKPOINT_DIR / "state.pt", weights_only=False)["learner"]
    b = torch.load(tmp_path / "cut" / CHECKPOINT_DIR / "state.pt", weights_only=False)["learner"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["scheduler"] == b["scheduler"] and a["scheduler"]["tokens"] > 0
