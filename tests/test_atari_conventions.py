"""Atari against its references (real ale-py; CPU): the DQN Replay checkpoint d4rl-atari calls "medium"
(d4rl-atari ``d4rl_atari/__init__.py``: epoch 10), LaMo's evaluation env (d4rl-atari ``d4rl_atari/envs.py``
defaults, as LaMo ``experiment-atari/core.py`` builds it) as the default of every Atari evaluation while
data collection keeps Dopamine's sticky actions, DQN Replay's clipped training rewards in collected data
(Dopamine ``run_experiment.py``), and ``lamo-atari``'s AdamW eps (torch's default, LaMo ``core.py``)."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest
import torch

from trainers.domains.atari.data import (DQN_REPLAY_MEDIUM_CKPT, AtariDataset, DatasetError, collect_atari_dataset,
                                 dqn_replay_files, load_atari_hdf5, load_dqn_replay, save_atari_hdf5)


def test_medium_is_replay_checkpoint_10_in_the_fetch_command_and_the_loader(tmp_path):
    assert DQN_REPLAY_MEDIUM_CKPT == 10
    d = tmp_path / "replay_logs"
    with pytest.raises(DatasetError) as e:
        load_dqn_replay(d, "breakout", 4)
    msg = str(e.value)
    assert "gs://atari-replay-datasets/dqn/Breakout/1/replay_logs/$store$_*_ckpt.10.gz" in msg
    assert "_ckpt.9." not in msg
    d.mkdir()
    n = 5
    arrays = {"observation": np.zeros((n, 84, 84), np.uint8), "action": np.zeros(n, np.int32),
              "reward": np.ones(n, np.float32), "terminal": np.eye(1, n, n - 1, dtype=np.uint8)[0]}
    for key, a in arrays.items():  # a checkpoint-9 set next to it must not be read
        with gzip.open(d / f"$store$_{key}_ckpt.9.gz", "wb") as f:
            np.save(f, a * 0)
    with pytest.raises(DatasetError, match=r"_ckpt\.10\.gz"):
        load_dqn_replay(d, "breakout", 4)
    for key, p in dqn_replay_files(d).items():
        assert p.name == f"$store$_{key}_ckpt.10.gz"
        with gzip.open(p, "wb") as f:
            np.save(f, arrays[key])
    assert load_dqn_replay(d, "breakout", 4).rewards.sum() == n


def test_evaluation_env_is_d4rl_atari_and_collection_keeps_sticky_actions():
    from trainers.domains.atari.env import make_atari_env, make_atari_eval_env

    env = make_atari_eval_env("breakout")
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == 0.0  # <Game>NoFrameskip-v4: no sticky actions
    assert env.action_space.n == 4
    noops = set()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        noops.add(ale.getEpisodeFrameNumber())  # frames played before the first observation
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs[3].any()
        assert all(np.array_equal(obs[i], obs[3]) for i in range(3))  # stack filled with the first frame
    assert min(noops) >= 1 and max(noops) <= 30 and len(noops) >= 3  # 1-30 no-op starts, seeded
    env.reset(seed=2)
    again = ale.getEpisodeFrameNumber()
    env.reset(seed=2)
    assert ale.getEpisodeFrameNumber() == again
    obs2, *_ = env.step(1)
    assert np.array_equal(obs2[2], obs2[0]) and not np.array_equal(obs2[3], obs2[2])  # shifts by one frame
    env.close()
    dopamine = make_atari_eval_env("breakout", "dopamine")
    o, _ = dopamine.reset(seed=0)
    assert dopamine.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert not o[:3].any() and dopamine.unwrapped.ale.getEpisodeFrameNumber() == 0
    dopamine.close()
    collect = make_atari_env("qbert", stack=False)  # data collection: Dopamine's sticky actions
    collect.reset(seed=0)
    assert collect.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    collect.close()
    with pytest.raises(ValueError, match="atari.eval_env"):
        make_atari_eval_env("breakout", "gym")


def test_atari_evaluation_defaults_to_the_d4rl_atari_env(monkeypatch):
    import trainers.domains.atari.env as atari_envs
    from trainers.domains.atari.learner import evaluate_atari
    from trainers.domains.atari.model import AtariDecisionTransformer
    from trainers.config import TrialConfig
    from trainers.evaluate import evaluate_discrete_policy
    from trainers.tasks import get_task

    built = []
    real = atari_envs.make_atari_eval_env

    def spy(game, convention="d4rl-atari", **kw):
        env = real(game, convention, **kw)
        built.append((game, convention, env.unwrapped.ale.getFloat("repeat_action_probability")))
        return env

    monkeypatch.setattr(atari_envs, "make_atari_eval_env", spy)
    cfg = TrialConfig(task="breakout-medium", variant="dt", language={"weight": 0.0}, context_length=3,
                      model={"lm": None, "init": "random", "embedding": "linear", "finetune": "full",
                             "arch": {"n_layer": 1, "n_embd": 16, "n_head": 1, "n_inner": 32}})
    assert cfg.atari is None or cfg.atari.eval_env == "d4rl-atari"
    torch.manual_seed(0)
    model = AtariDecisionTransformer(cfg, 4, 4096).eval()
    task = get_task("breakout-medium")
    out = evaluate_atari(model, task, [90.0], episodes=2, context_length=3, rtg_scale=1.0, seed=0,
                         max_episode_steps=3)
    assert out["eval/best_normalised_score"] == out["eval/best_normalised_score"]  # a number, not NaN
    evaluate_discrete_policy(lambda obs: np.zeros(len(obs), np.int64), task, episodes=1, seed=0, max_episode_steps=2)
    assert built == [("breakout", "d4rl-atari", 0.0)] * 3
    built.clear()
    evaluate_discrete_policy(lambda obs: np.zeros(len(obs), np.int64), task, episodes=1, seed=0, max_episode_steps=2,
                             eval_env="dopamine")
    assert built == [("breakout", "dopamine", pytest.approx(0.25))]


def test_eval_env_field_keeps_hashes_at_its_default():
    from trainers.config import TrialConfig

    base = TrialConfig(task="breakout-medium", atari={"lr_schedule": "tokens"})
    assert "eval_env" not in base.canonical_json()
    same = TrialConfig(task="breakout-medium", atari={"lr_schedule": "tokens", "eval_env": "d4rl-atari"})
    assert same.config_hash() == base.config_hash()
    other = TrialConfig(task="breakout-medium", atari={"eval_env": "dopamine"})
    assert other.config_hash() != base.config_hash() and '"eval_env":"dopamine"' in other.canonical_json()


def test_collected_atari_data_store_clipped_training_rewards_and_raw_scores(tmp_path):
    path = tmp_path / "qbert.hdf5"
    summary = collect_atari_dataset("qbert", path, transitions=400, seed=0, progress=False)
    ds = load_atari_hdf5(path, n_actions=6)
    assert set(np.unique(ds.rewards)) <= {0.0, 1.0} and ds.rewards.sum() >= 5  # Q*bert pays 25 a cube, stored 1
    assert summary["mean_clipped_return"] == pytest.approx(float(ds.rewards.sum()))  # one (cut) episode
    assert summary["mean_return"] >= 25 * ds.rewards.sum()  # the raw game score is kept for the report
    with h5py.File(path) as f:
        assert f.attrs["raw_mean_return"] == pytest.approx(summary["mean_return"])
        assert "clipped" in f.attrs["rewards"]
    # a file collected before clipping (raw rewards, no "rewards" attribute) is refused, not trained on
    old = tmp_path / "old.hdf5"
    save_atari_hdf5(AtariDataset(ds.frames, ds.actions, ds.rewards * 25, ds.terminals), old,
                    {"provenance": "locally generated: scripted RAM policy with epsilon noise (not DQN Replay)"})
    with pytest.raises(DatasetError, match="delete it and run `lamo-trial prepare` again"):
        load_atari_hdf5(old, n_actions=6)


def test_lamo_atari_uses_torchs_default_adamw_eps():
    from trainers.config import TrialConfig
    from trainers.presets import get_preset

    cfg = TrialConfig.model_validate({**get_preset("lamo-atari"), "task": "breakout-medium"})
    assert cfg.train.adam_eps == 1e-8 == torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults["eps"]
    assert TrialConfig(task="reacher2d-medium").train.adam_eps == 1e-6  # the D4RL recipe keeps LaMo's 1e-6


def test_official_token_schedule_oscillates_past_final_tokens():
    """docs/deviations.md row 30: LaMo's ``CustomLRScheduler`` does not cap the cosine's progress, so with
    the official quadratic token count the LR keeps cycling between 0.1x and 1x (mean ~0.53 over 100k steps)."""
    from trainers.domains.atari.learner import token_lr_multiplier

    warm, final = 375e6, 260e9
    assert token_lr_multiplier(final, warm, final) == pytest.approx(0.1)
    assert token_lr_multiplier(2 * final - warm, warm, final) == pytest.approx(1.0)  # back at the top
    per_step = 128 * 30  # every target a non-zero action id
    steps = np.arange(1, 100_001, dtype=np.float64)
    mult = np.array([token_lr_multiplier(t, warm, final) for t in per_step * (steps - 1) * steps / 2])
    assert 0.5 < mult.mean() < 0.56
    late = mult[50_000:]
    assert late.max() > 0.99 and late.min() == pytest.approx(0.1)
