"""Score units in the analysis captions come from one table (analysis.domains.SCORE_UNITS): the Atari table
and an Atari-only quick-look table say gamer-normalised (which can exceed 100), the MuJoCo ones 0–100, and a
table mixing both says so. Synthetic selected scores (no store needed)."""

from __future__ import annotations

import pandas as pd

from analysis import tables as T
from analysis.domains import MIXED_SCORE_UNIT, SCORE_UNITS, score_unit
from analysis.report import markdown_table


def _selected(tasks) -> pd.DataFrame:
    rows = []
    for task in tasks:
        for seed in (0, 1):
            for variant in ("lamo", "dt"):
                rows.append({"task": task, "sample_ratio": 0.1, "seed": seed, "variant": variant,
                             "normalised_score": 150.0 + seed, "data_source": "collected"})
    return pd.DataFrame(rows)


def test_atari_table_caption_is_gamer_normalised_and_mujoco_stays_0_100():
    tables = {t.name: t for t in T.paper_tables(_selected(["breakout-medium", "hopper-medium"]), "rule")}
    atari, dense = tables["table_atari"].caption, tables["table_dense"].caption
    assert SCORE_UNITS["atari"] in atari and "0–100" not in atari and "exceed 100" in atari
    assert SCORE_UNITS["dense"] in dense and "Gamer" not in dense


def test_quick_look_caption_follows_the_tasks():
    only_atari = T.score_table(_selected(["qbert-medium"]), by=("task", "sample_ratio", "variant"))
    assert markdown_table(only_atari, "rule").startswith(f"**{SCORE_UNITS['atari']},")
    mixed = T.score_table(_selected(["qbert-medium", "hopper-medium"]), by=("task", "sample_ratio", "variant"))
    assert markdown_table(mixed, "rule").startswith(f"**{MIXED_SCORE_UNIT},")
    assert score_unit(["hopper-medium", "walker2d-medium"]) == SCORE_UNITS["dense"]
