"""Do two MuJoCo versions give the same rollouts? (results: docs/benchmarks.md, "The mujoco pin").

Run once per environment (e.g. main's .venv with mujoco 4.0.0 and this branch's with 3.3.7):

    .venv/bin/python benchmarks/mujoco_pin_check.py --save /tmp/pin_a
    /other/.venv/bin/python benchmarks/mujoco_pin_check.py --save /tmp/pin_b
    python benchmarks/mujoco_pin_check.py --compare /tmp/pin_a /tmp/pin_b

``--save`` rolls out 3 episodes (env seeds 0-2, at most 300 steps) of seeded uniform random actions in
Reacher2d, Hopper-v4, HalfCheetah-v4 and Walker2d-v4 and stores observations and rewards; ``--compare``
prints, per env, the largest absolute difference and the first step where they differ by > 1e-3.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ENVS = ("lamo/Reacher2d-v0", "Hopper-v4", "HalfCheetah-v4", "Walker2d-v4")


def rollouts(env_id: str) -> np.ndarray:
    """``(steps, obs_dim + 1)`` observations and rewards of 3 seeded random-action episodes."""
    from trainers.envs import make_env

    env = make_env(env_id)
    rng = np.random.default_rng(0)
    rows = []
    for ep in range(3):
        o, _ = env.reset(seed=ep)
        rows.append(np.append(o, 0.0))
        for _ in range(300):
            o, r, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            rows.append(np.append(o, r))
            if term or trunc:
                break
    return np.array(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--compare", type=Path, nargs=2)
    args = ap.parse_args()
    if args.save:
        import mujoco

        args.save.mkdir(parents=True, exist_ok=True)
        for env_id in ENVS:
            np.save(args.save / f"{env_id.replace('/', '_')}.npy", rollouts(env_id))
        (args.save / "version.txt").write_text(mujoco.__version__)
    if args.compare:
        a, b = args.compare
        out = {"versions": [(a / "version.txt").read_text(), (b / "version.txt").read_text()]}
        for env_id in ENVS:
            x, y = (np.load(d / f"{env_id.replace('/', '_')}.npy") for d in (a, b))
            if x.shape != y.shape:
                out[env_id] = f"different lengths {x.shape} vs {y.shape}"
                continue
            d = np.abs(x - y).max(axis=1)
            big = np.flatnonzero(d > 1e-3)
            out[env_id] = {"max_abs_diff": float(d.max()), "first_step_over_1e-3": int(big[0]) if big.size else None}
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
