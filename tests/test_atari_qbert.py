"""The scripted Q*bert behaviour policy (trainers/domains/atari/data.py): it reads Q*bert's cell and the cube
colours from the real ALE emulator RAM, never hops off the pyramid by itself, scores well above a random
policy, and `collect_atari_dataset` writes a loadable qbert-medium dataset with it (real ale-py; CPU)."""

from __future__ import annotations

import numpy as np

from trainers.domains.atari.data import (QBERT_HOPS, RAM_POLICIES, QbertRamPolicy, collect_atari_dataset, load_atari_hdf5,
                                 measure_ram_policy, qbert_cell)


def test_qbert_cell_reads_the_start_cube_and_hops_stay_on_the_pyramid():
    from trainers.domains.atari.env import make_atari_env

    env = make_atari_env("qbert", stack=False, sticky_action_p=0.0)
    env.reset(seed=0)
    cells = []
    policy = QbertRamPolicy(0)
    for _ in range(400):
        ram = env.unwrapped.ale.getRAM()
        cells.append(qbert_cell(ram))
        _, _, term, trunc, _ = env.step(policy(ram))
        if term or trunc:
            break
    env.close()
    standing = [c for c in cells if c is not None]
    assert standing[0] == (0, 0)  # he starts on the top cube
    assert len(set(standing)) >= 6  # and visits several cubes
    for r, c in standing:
        assert 0 <= r < 6 and 0 <= c <= r
    # every hop the policy can pick from a cell lands on the pyramid
    p = QbertRamPolicy(0)
    for r in range(6):
        for c in range(r + 1):
            for a, (nr, nc) in p._hops((r, c)):
                assert (nr - r, nc - c) == QBERT_HOPS[a] and 0 <= nr < 6 and 0 <= nc <= nr


def test_qbert_policy_beats_random_and_collects_a_loadable_dataset(tmp_path):
    scripted = measure_ram_policy("qbert", episodes=3, epsilon=0.0)
    rand = measure_ram_policy("qbert", episodes=3, random_policy=True)
    assert scripted["mean_return"] > 5 * max(rand["mean_return"], 100.0)
    assert scripted["gamer_normalised"] > rand["gamer_normalised"]
    assert RAM_POLICIES["qbert"][0] is QbertRamPolicy

    path = tmp_path / "qbert.hdf5"
    summary = collect_atari_dataset("qbert", path, transitions=1500, seed=3, progress=False)
    ds = load_atari_hdf5(path, n_actions=6)
    assert len(ds.rewards) == 1500 and ds.frames.dtype == np.uint8
    assert ds.rewards.sum() > 0 and summary["episodes"] >= 1
    assert "locally generated" in summary["provenance"]
