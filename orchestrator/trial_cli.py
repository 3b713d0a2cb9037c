"""``lamo-trial``: run ONE trial without Ray or MLflow (for debugging, e.g. under ``pdb``).

It lives in ``orchestrator/`` because it reads sweep files (:mod:`orchestrator.schema`); it imports
neither Ray nor MLflow, and the trial itself is :func:`trainers.train.run_trial`.

Examples::

    lamo-trial run --sweep sweeps/quickstart.yaml --index 0          # the first trial of a sweep
    lamo-trial run trial.yaml --set train.steps=200 --workdir /tmp/t  # a TrialConfig YAML file
    lamo-trial prepare --sweep sweeps/quickstart.yaml                 # collect data / pre-train the LM
    lamo-trial fetch text sb3:tqc/Hopper-v3 --data-dir lamo_runs/data # download inputs ahead of a run
    lamo-trial fetch --sweep sweeps/paper_mujoco.yaml                 # every downloadable input of a sweep
    lamo-trial run --sweep s.yaml --index 3 --resume-from lamo_runs/trials/<trial>/checkpoint

Metrics are printed and appended to ``<workdir>/metrics.jsonl``. Exit status 2 for a bad config, 3 for a
missing or unusable input (one ``error:`` line on stderr, no traceback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
import yaml
from pydantic import ValidationError

from trainers.config import TrialConfig

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


def _load(config: Optional[Path], sweep: Optional[Path], index: int, set_: list[str]) -> tuple[list[TrialConfig], Path, Path]:
    """``(trials, storage, data_dir)`` from a sweep file (its ``data_dir`` field honoured) or a trial YAML."""
    from orchestrator.schema import Sweep, SweepError, deep_merge, parse_overrides
    from trainers.paths import default_data_dir

    try:
        over = parse_overrides(set_)
        if sweep is not None:
            sw = Sweep.load(sweep, over)
            if not 0 <= index < len(sw.trials) and index != -1:
                raise typer.BadParameter(f"--index {index}: the sweep has {len(sw.trials)} trials (0..{len(sw.trials) - 1})")
            trials = sw.trials if index == -1 else [sw.trials[index]]
            return trials, sw.storage, sw.data_dir
        if config is None:
            raise typer.BadParameter("give a TrialConfig YAML file or --sweep FILE")
        raw = yaml.safe_load(config.read_text()) or {}
        storage = Path("lamo_runs").resolve()
        return [TrialConfig.model_validate(deep_merge(raw, over))], storage, default_data_dir(storage)
    except SweepError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as e:
        typer.echo(f"error: invalid trial config {config}:\n{e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="TrialConfig YAML file"),
    sweep: Optional[Path] = typer.Option(None, "--sweep", help="take the trial from this sweep file"),
    index: int = typer.Option(0, "--index", help="which trial of --sweep (0-based)"),
    set_: list[str] = typer.Option([], "--set", help="override a field, e.g. --set train.steps=200"),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="default <storage>/debug/<slug>"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="default <storage>/data or $LAMO_DATA_DIR"),
    prepare: bool = typer.Option(True, "--prepare/--no-prepare", help="make missing datasets/LMs first"),
    resume_from: Optional[Path] = typer.Option(
        None, "--resume-from", help="continue from this checkpoint directory, e.g. a sweep trial's "
        "<storage>/trials/<trial>/checkpoint (default: the workdir's own checkpoint, if any)"),
) -> None:
    """Train and evaluate one trial in this process.

    Exit status 2 for a bad config; 3 when an input is missing or unusable (a dataset the loader rejects,
    an unreadable LM directory or corpus, checked by trainers.inputs.ensure_inputs before
    training): one error: line per problem on stderr, no traceback."""
    from trainers.data.d4rl_hdf5 import DatasetError
    from trainers.downloads import DownloadError
    from trainers.inputs import InputsMissing, InputsUnusable, ensure_inputs
    from trainers.train import run_trial

    (cfg,), storage, default_dd = _load(config, sweep, index, set_)
    dd = (data_dir or default_dd).resolve()
    try:
        ensure_inputs([cfg], dd, prepare=prepare)
    except InputsMissing as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(3) from None
    except DownloadError as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(3) from None
    except InputsUnusable as e:  # one line per unusable input, no traceback (a data error is not a bug to debug)
        for p in e.problems:
            typer.echo(f"error: {p.one_line()}", err=True)
        raise typer.Exit(3) from None
    wd = (workdir or storage / "debug" / f"{cfg.slug()}-{cfg.config_hash()}").resolve()
    typer.echo(f"trial {cfg.slug()} (config hash {cfg.config_hash()}) in {wd}")
    try:
        final = run_trial(cfg, wd, dd, resume_from=resume_from)
    except DatasetError as e:  # e.g. the file changed since the check above
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps(final, indent=1))


@app.command("prepare")
def prepare_cmd(
    sweep: Path = typer.Option(..., "--sweep", help="prepare the inputs of every trial of this sweep"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir"),
) -> None:
    """Collect missing datasets and pre-train missing project LMs (what lamo-sweep does before fan-out)."""
    from trainers.inputs import prepare_inputs

    trials, _, default_dd = _load(None, sweep, -1, [])
    dd = (data_dir or default_dd).resolve()
    made = prepare_inputs(trials, dd)
    typer.echo(json.dumps(made, indent=1, default=str))


@app.command("fetch")
def fetch_cmd(
    inputs: list[str] = typer.Argument(None, help="'text' (WikiText-103 raw from the hub), 'wiki-leads' "
                                                  "(Wikipedia lead sections from PyPI) and/or agents "
                                                  "'sb3:<algo>/<Env>-v3' (hub repos sb3/<algo>-<Env>-v3)"),
    sweep: Optional[Path] = typer.Option(None, "--sweep", help="download every input of this sweep's trials "
                                         "that has a canonical source: D4RL files, DQN Replay checkpoints, "
                                         "hub LMs, text, lead sections, behaviour policies"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory whose cache receives "
                                            "the files (default $LAMO_DATA_DIR, else lamo_runs/data)"),
    force: bool = typer.Option(False, "--force", help="download even when an earlier step of the resolution "
                                                       "order (env var, cache, mirror) already has the input"),
) -> None:
    """Download inputs from their canonical source into the project cache, verified (sizes / sha256 the
    hub publishes) and written atomically: what prepare would download, ahead of a run (e.g. on a login
    node with internet before a cluster run). Exit 3 when a download fails or does not verify, or (with
    --sweep) when an input has no source reachable here (each is listed with its fix)."""
    from trainers.data.policies import fetch_sb3_agent, find_sb3_agent
    from trainers.downloads import DownloadError, fetch_hub_files, fetch_pypi_member, wikitext_files
    from trainers.lm.corpus import LEADS_FILE, WIKI_LEADS, find_leads, find_text
    from trainers.paths import default_data_dir, text_cache_dir

    if sweep is not None:
        _fetch_sweep(sweep, data_dir)
        if not inputs:
            return
    inputs = inputs or []
    dd = (data_dir.resolve() if data_dir else default_data_dir(Path("lamo_runs")))
    if not inputs:
        typer.echo("error: name the inputs to fetch, or give --sweep FILE", err=True)
        raise typer.Exit(2)
    bad = [x for x in inputs if x not in ("text", "wiki-leads") and not x.startswith("sb3:")]
    if bad:
        typer.echo(f"error: cannot fetch {', '.join(bad)}: give 'text', 'wiki-leads' or 'sb3:<algo>/<Env>-v3'",
                   err=True)
        raise typer.Exit(2)
    try:
        for what in inputs:
            if what == "wiki-leads":
                found = find_leads(dd)
                if found is not None and not force:
                    typer.echo(f"wiki-leads: already available in {found[0]} (from {found[1]}); nothing downloaded")
                    continue
                target = text_cache_dir(dd) / LEADS_FILE
                if force:
                    target.with_name(target.name + ".fetched.json").unlink(missing_ok=True)
                fetch_pypi_member(WIKI_LEADS, target)
                typer.echo(f"wiki-leads: {target}")
            elif what == "text":
                src = find_text(dd)
                if src is not None and not force:
                    typer.echo(f"text: already available, {src.describe()}; nothing downloaded (--force to fetch)")
                    continue
                fetch_hub_files(wikitext_files(), text_cache_dir(dd))
                typer.echo(f"text: {find_text(dd).describe()}")
            else:
                algo_env = what[len("sb3:"):].split("/", 1)
                found = find_sb3_agent(*algo_env, dd) if len(algo_env) == 2 else None
                if found is not None and not force:
                    typer.echo(f"{what}: already available in {found[0]} (from {found[1]}); nothing downloaded")
                    continue
                typer.echo(f"{what}: {fetch_sb3_agent(what, dd)}")
    except (DownloadError, KeyError, ValueError, OSError) as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(3) from None


def _fetch_sweep(sweep: Path, data_dir: Optional[Path]) -> None:
    """``lamo-trial fetch --sweep FILE``: every downloadable input of the sweep's trials (the input objects of
    :mod:`trainers.inputs` whose kind is a download), into the sweep's data directory; then the inputs
    that have no source reachable here, each with its fix (exit 3)."""
    from trainers.downloads import DownloadError
    from trainers.inputs import _distinct

    trials, _, default_dd = _load(None, sweep, -1, [])
    dd = (data_dir or default_dd).resolve()
    gaps = []
    try:
        for i in _distinct(trials, dd):
            if not i.kind.startswith("fetch") or i.present():
                continue
            why = i.unavailable()
            if why is not None:
                gaps.append(str(i.missing(why)))
                continue
            typer.echo(f"[fetch] {i.plan()}")
            i.make(True, typer.echo)
    except DownloadError as e:
        typer.echo("error: " + " ".join(str(e).split()), err=True)
        raise typer.Exit(3) from None
    if gaps:
        typer.echo("error: inputs with no source reachable here:\n  - " + "\n  - ".join(gaps), err=True)
        raise typer.Exit(3)
    typer.echo(f"every downloadable input of {sweep} is in {dd}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
