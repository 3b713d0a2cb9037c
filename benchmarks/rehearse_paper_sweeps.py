"""Rehearse the paper sweeps end to end: a sample of the trials of every paper sweep file, a few training
steps each, through the real ``lamo-sweep`` CLI, on stand-in inputs in the real formats
(:mod:`benchmarks.standins`): D4RL-layout hdf5 from a stand-in of D4RL's file server, DQN Replay checkpoints
in Dopamine's layout from a stand-in of its bucket, GPT-2 at its real size (124M parameters, random weights)
and WikiText from a stand-in Hugging Face hub. The project finds them through its documented resolution
order (``LAMO_D4RL_BASE_URL``, ``LAMO_DQN_REPLAY_BASE_URL``, ``HF_ENDPOINT``; an empty ``LAMO_SHARED_DIR`` and
a fresh ``HF_HOME`` so nothing local is used instead), so ``prepare`` downloads them with the project's
download code (verified, atomic, with the sha256 manifest) and the trials load them as they would load the
real files. What differs from a cluster run: the weights' and the data's values, CUDA, and the sizes shrunk
below.

**Sample rule.** Per sweep file and per domain of its grid (MuJoCo, Kitchen, Reacher2d, Atari): the first
task of that domain in the grid, its first sample ratio, the first seed, and every variant of the file
(``--variants`` narrows it) = one ``lamo-sweep`` invocation per (file, domain), one trial per variant x
domain. **Shrunk** (``--set`` flags on the real file; no file is edited, so no sweep file's hashes change):
``--steps N`` (default 2), per variant ``train.batch_size`` 4, ``eval.episodes`` 1 of at most
``eval.max_episode_steps`` 5 steps per RTG target, evaluation and checkpoint at step N, ``language.block_size``
64 (LaMo: 1,024), Wiki-RL's k-means 2 iterations (100); ``resources`` 1 CPU, no GPU; ``max_failures`` 0; a
variant on a project LM (``ablations.yaml``'s ``lamo-wiki-tiny``) is pointed at the stand-in GPT-2
(``variants.<v>.model.lm=gpt2``, what the file's comment says to do on a cluster).

Prints per sweep file the trials run, finished and the wall time, and writes ``<out>/rehearsal.json``.

    .venv/bin/python benchmarks/rehearse_paper_sweeps.py --out /tmp/rehearsal          # every paper sweep
    .venv/bin/python benchmarks/rehearse_paper_sweeps.py --out /tmp/r --sweeps atari --variants dt

``--in-process`` runs the CLI (``orchestrator.cli``'s Typer app, the same argv) inside this process on one
local Ray started here, instead of one ``python -m orchestrator.cli`` process (and one Ray) per invocation:
what the slow test uses (``tests/test_rehearsal.py``) to stay within its time budget.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The paper sweep files, in the order they are rehearsed.
PAPER_SWEEPS = ("paper_mujoco", "kitchen", "paper_sparse", "atari", "ablations", "low_data")
#: The shrunk sizes (module docstring).
SHRINK = {"train.batch_size": 4, "eval.episodes": 1, "eval.max_episode_steps": 5, "language.block_size": 64}
#: Wiki-RL's k-means iterations in the rehearsal (its recipe: 100, trainers/config.py AlignmentConfig).
KMEANS_ITERS = 2


@dataclass
class Group:
    """One ``lamo-sweep`` invocation of the rehearsal: ``sweep`` file, its ``domain``, the CLI ``args`` after
    the file name, and the ``trials`` it expands to (slugs)."""

    sweep: str
    domain: str
    args: list[str]
    trials: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)  # tasks whose published (d4rl) data the trials read
    rc: int | None = None
    seconds: float = 0.0

    def command(self, python: str = ".venv/bin/lamo-sweep") -> str:
        """The invocation as a shell command line (values with brackets quoted)."""
        return " ".join([python, f"sweeps/{self.sweep}.yaml", *(f"'{a}'" if "{" in a or "[" in a else a
                                                                 for a in self.args)])


def _sets(pairs: dict) -> list[str]:
    out = []
    for k, v in pairs.items():
        out += ["--set", f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else ('null' if v is None else v)}"]
    return out


def sample_groups(sweep: str, steps: int = 2, variants: list[str] | None = None,
                  domains: list[str] | None = None, storage: Path | None = None) -> list[Group]:
    """The rehearsal's invocations of ``sweeps/<sweep>.yaml`` (the sample rule and shrinking of the module
    docstring): one :class:`Group` per domain of the grid (``domains`` narrows them), each restricted to the
    domain's first task, its first sample ratio, the first seed and ``variants`` (default all).

    Raises:
        orchestrator.schema.SweepError: the overrides do not fit the file (e.g. an unknown variant).
    """
    from orchestrator.schema import Sweep, parse_overrides, set_dotted
    from trainers.lm.runtime import project_lm_names
    from trainers.tasks import get_task

    path = REPO / "sweeps" / f"{sweep}.yaml"
    full = Sweep.load(path)
    grid = full.spec.grid
    firsts: dict[str, str] = {}
    for t in grid.task:
        firsts.setdefault(get_task(t).domain, t)
    out = []
    for domain, task in firsts.items():
        if domains and domain not in domains:
            continue
        names = [v for v in (variants or list(full.spec.variants)) if v in full.spec.variants]
        if not names:
            continue
        pick = {"grid.task": [task], "grid.seed": [grid.seed[0]], "grid.sample_ratio": [grid.ratios(task)[0]],
                "grid.variant": names}
        if grid.sample_ratio_by_task is not None:
            pick["grid.sample_ratio_by_task"] = None
        shrink = {"resources.cpu": 1, "resources.gpu": 0, "max_failures": 0}
        for v in names:
            shrink.update({f"variants.{v}.{k}": x for k, x in SHRINK.items()})
            shrink.update({f"variants.{v}.train.log_every": 1, f"variants.{v}.train.checkpoint_every": steps,
                           f"variants.{v}.eval.every_steps": steps})
            own = full.spec.variants[v]
            if isinstance(own, dict) and "resources" in own:
                shrink.update({f"variants.{v}.resources.cpu": 1, f"variants.{v}.resources.gpu": 0})
        for cfg in full.trials:
            v = cfg.variant
            if v not in names:
                continue
            if cfg.model.lm in project_lm_names():
                shrink[f"variants.{v}.model.lm"] = "gpt2"
            if cfg.alignment is not None:
                shrink[f"variants.{v}.alignment.kmeans_iters"] = KMEANS_ITERS
        args = ["--steps", str(steps), *_sets(pick), *_sets(shrink), "--max-concurrent", "2"]
        if storage is not None:
            args += ["--storage", str(storage)]
        over = parse_overrides([a for i, a in enumerate(args) if i and args[i - 1] == "--set"])
        set_dotted(over, "train.steps", steps)
        trials = Sweep.load(path, over).trials
        published = sorted({c.task for c in trials if c.data_source == "d4rl"})
        out.append(Group(sweep, domain, args, [c.slug() for c in trials], published))
    return out


def _run_in_process(group: Group) -> int:
    from typer.main import get_command

    from orchestrator.cli import app

    rc = get_command(app).main([str(REPO / "sweeps" / f"{group.sweep}.yaml"), *group.args],
                               prog_name="lamo-sweep", standalone_mode=False)
    return int(rc or 0)


def _run_subprocess(group: Group, log_file: Path) -> int:
    with open(log_file, "a") as out:
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", str(REPO / "sweeps" / f"{group.sweep}.yaml"),
                            *group.args], stdout=out, stderr=subprocess.STDOUT, cwd=log_file.parent,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    return r.returncode


def trial_runs(tracking_uri: str, experiment: str) -> list:
    """The child (trial) runs of ``experiment`` in the store (MLflow ``Run`` objects)."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], "tags.`lamo.role` = 'trial'", max_results=1000)


def rehearse(out: Path, picks: list[tuple[str, list[str] | None, list[str] | None]], steps: int = 2,
             in_process: bool = False, analysis: bool = True, standins_dir: Path | None = None, log=print) -> dict:
    """Build (or reuse) the stand-ins, point the project at them, run the :func:`sample_groups` invocations
    of ``picks`` (``(sweep name, domains or None = all, variants or None = all)``) through the CLI, and
    summarise per sweep file from the MLflow store (``out/runs/mlflow.db``). ``analysis``: let each
    invocation write its report (``--no-analysis`` otherwise).

    Returns (and writes to ``out/rehearsal.json``): ``{"sweeps": {name: {"trials", "finished", "seconds",
    "commands"}}, "standins": ..., "total_seconds", "steps", "in_process"}``.
    """
    from benchmarks.standins import StandIns, gpt2_info

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = out / "runs"
    groups = [g for s, domains, variants in picks for g in sample_groups(s, steps, variants, domains, storage)]
    if not analysis:
        for g in groups:
            g.args.append("--no-analysis")
    sweeps = list(dict.fromkeys(s for s, _, _ in picks))
    from orchestrator.schema import Sweep

    published = sorted({t for g in groups for t in g.tasks})
    t0 = time.perf_counter()
    standins = StandIns(standins_dir or out / "standins")
    env = standins.env(out / "hf_home")
    saved = {k: os.environ.get(k) for k in env}
    if in_process and "huggingface_hub" in sys.modules:
        raise RuntimeError("huggingface_hub was imported before HF_ENDPOINT / HF_HOME pointed at the stand-ins "
                           "(it reads them at import); run the in-process rehearsal in a fresh interpreter")
    os.environ.update(env)
    standins.build(published)
    build_s = time.perf_counter() - t0
    summary: dict = {"sweeps": {}, "steps": steps, "in_process": in_process, "standins": {
        "root": str(standins.root), "build_s": round(build_s, 1), "published_tasks": published,
        "gpt2": {k: v for k, v in gpt2_info(standins.gpt2_repo).items() if k != "digests"}}}
    try:
        with contextlib.ExitStack() as stack:
            if in_process:
                from orchestrator.sweep import _ray_session

                stack.enter_context(_ray_session(None, {"num_cpus": 2}))
            for g in groups:
                log(f"[rehearsal] {g.sweep} / {g.domain}: {len(g.trials)} trial(s): {g.command()}")
                t = time.perf_counter()
                g.rc = _run_in_process(g) if in_process else _run_subprocess(g, out / f"{g.sweep}.log")
                g.seconds = time.perf_counter() - t
                log(f"[rehearsal] {g.sweep} / {g.domain}: exit {g.rc} in {g.seconds:.0f} s")
    finally:
        standins.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    for s in sweeps:
        gs = [g for g in groups if g.sweep == s]
        name = Sweep.load(REPO / "sweeps" / f"{s}.yaml").experiment
        runs = trial_runs(uri, name)
        summary["sweeps"][s] = {
            "trials": sum(len(g.trials) for g in gs), "runs": len(runs),
            "finished": sum(r.info.status == "FINISHED" for r in runs),
            "seconds": round(sum(g.seconds for g in gs), 1), "experiment": name,
            "groups": [{**asdict(g), "seconds": round(g.seconds, 1), "command": g.command()} for g in gs]}
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    summary["tracking_uri"] = uri
    (out / "rehearsal.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output directory (runs, stand-ins, rehearsal.json)")
    ap.add_argument("--sweeps", nargs="+", default=list(PAPER_SWEEPS), choices=PAPER_SWEEPS)
    ap.add_argument("--steps", type=int, default=2, help="training steps per trial (default 2)")
    ap.add_argument("--variants", nargs="+", help="only these variants (default: every variant of each file)")
    ap.add_argument("--domains", nargs="+", help="only these domains (mujoco, kitchen, reacher2d, atari)")
    ap.add_argument("--pick", action="append", metavar="SWEEP[:DOMAIN[:VARIANT,...]]",
                    help="rehearse only this (repeatable; replaces --sweeps/--domains/--variants), e.g. "
                         "--pick atari:atari:lamo --pick kitchen:kitchen:dt")
    ap.add_argument("--standins", type=Path, help="reuse stand-ins built here (default <out>/standins)")
    ap.add_argument("--no-analysis", action="store_true", help="pass --no-analysis to every invocation")
    ap.add_argument("--in-process", action="store_true", help="run the CLI in this process on one local Ray")
    a = ap.parse_args()
    picks = [(x, a.domains, a.variants) for x in a.sweeps]
    if a.pick:
        parts = [p.split(":") + [None, None] for p in a.pick]
        picks = [(p[0], [p[1]] if p[1] else None, p[2].split(",") if p[2] else None) for p in parts]
        bad = [p[0] for p in picks if p[0] not in PAPER_SWEEPS]
        if bad:
            ap.error(f"--pick: {', '.join(bad)} is not a paper sweep ({', '.join(PAPER_SWEEPS)})")
    s = rehearse(a.out, picks, a.steps, a.in_process,
                 not a.no_analysis, a.standins)
    print(f"\n{'sweep file':<14} {'trials':>6} {'finished':>8} {'wall s':>8}")
    for name, r in s["sweeps"].items():
        print(f"{name:<14} {r['trials']:>6} {r['finished']:>8} {r['seconds']:>8.0f}")
    total = sum(r["trials"] for r in s["sweeps"].values())
    done = sum(r["finished"] for r in s["sweeps"].values())
    print(f"{'total':<14} {total:>6} {done:>8} {s['total_seconds']:>8.0f}   (stand-ins built in "
          f"{s['standins']['build_s']:.0f} s; {a.out / 'rehearsal.json'})")
    sys.exit(0 if done == total else 1)


if __name__ == "__main__":
    main()
