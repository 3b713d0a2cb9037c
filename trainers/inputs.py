"""Whether a trial's inputs exist, and how ``prepare`` makes the missing ones.

Where each input is looked for is :mod:`trainers.paths`'s rule. Layout under the data directory
(``data_dir``, default ``<storage>/data``, or ``$LAMO_DATA_DIR``):

* ``datasets/<name>.hdf5``: datasets this project collects itself (D4RL layout), e.g.
  ``reacher2d-medium-v0.hdf5``.
* ``d4rl/<name>.hdf5``: D4RL files the user provides (e.g. ``hopper_medium-v2.hdf5``).
* ``models/<name>/``: language models this project pre-trains itself (``lamo-wiki-tiny``) or unpacks
  from a PyPI package (``smollm2-135m``).
* ``corpus_cache/``: tokenised language-loss corpora (``.npy``), shared by trials.
* ``text/``: text downloaded from the hub (``Salesforce/wikitext`` parquet files under their hub paths).
* ``sb3_agents/``: RL-Zoo behaviour policies downloaded from the hub (RL-Zoo layout).

Every input follows :mod:`trainers.paths`'s order: explicit path / environment variable, this cache,
the offline mirror, then the canonical source, downloaded here by ``prepare`` when the hub answers
(:mod:`trainers.downloads`). When it does not, the input is *missing* and its message names the one
command that fetches it on a machine with internet (``lamo-trial fetch ...``).

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
from trainers.domains.base import get_domain
from trainers.lm.runtime import corpus_passes, language_blocks, lm_location, project_lm_names  # noqa: F401 - re-exported
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


def needs_text(cfg: TrialConfig, data_dir: Path) -> bool:
    """Whether the trial (or its ``prepare``) reads the text corpora: a language loss
    (``language.weight > 0`` with an LM), or a project LM that is not pre-trained yet."""
    from trainers.lm.pretrain import LM_RECIPES, is_pretrained

    lm = cfg.model.lm
    if lm is not None and cfg.language.weight > 0:
        return True
    return lm in LM_RECIPES and not is_pretrained(Path(lm_location(lm, data_dir)))


def sb3_agents_needed(cfg: TrialConfig, data_dir: Path) -> list[str]:
    """The SB3 behaviour policies (``sb3:<algo>/<Env>``) ``prepare`` needs to collect the trial's dataset
    (empty unless ``data.source`` is ``collected`` and the file is absent)."""
    if cfg.data_source != "collected" or trial_dataset_path(cfg, data_dir).exists():
        return []
    names = (get_task(cfg.task).dataset.behaviour_policy or "").split("+")
    return [n.strip() for n in names if n.strip().startswith("sb3:")]


def _sb3_present(name: str, data_dir: Path) -> bool:
    from trainers.data.policies import find_sb3_agent

    algo, env = name[len("sb3:"):].split("/", 1)
    return find_sb3_agent(algo, env, data_dir) is not None


def text_source_of(cfg: TrialConfig, data_dir: Path) -> str | None:
    """What text the trial reads (:func:`trainers.lm.corpus.text_source`), or ``None`` when it reads none
    (no language loss and no project LM); logged as the trial's ``text_source`` tag."""
    from trainers.lm.corpus import text_source
    from trainers.lm.pretrain import LM_RECIPES

    if cfg.model.lm is None or (cfg.language.weight <= 0 and cfg.model.lm not in LM_RECIPES):
        return None
    return text_source(data_dir, corpora_read(cfg, data_dir))


def corpora_read(cfg: TrialConfig, data_dir: Path) -> tuple[str, ...]:
    """The corpus names the trial or its ``prepare`` reads: ``language.corpus`` when
    ``language.weight > 0``, and the stage-1 corpora of a project LM that is not pre-trained yet."""
    from trainers.lm.pretrain import LM_RECIPES, is_pretrained

    out = []
    lm = cfg.model.lm
    if lm is not None and cfg.language.weight > 0:
        out.append(cfg.language.corpus)
    if lm in LM_RECIPES and not is_pretrained(Path(lm_location(lm, data_dir))):
        out += [LM_RECIPES[lm].corpus, LM_RECIPES[lm].heldout_corpus]
    return tuple(out)


def needs_leads(cfg: TrialConfig, data_dir: Path) -> bool:
    """Whether the trial or its ``prepare`` reads the Wikipedia lead sections (:mod:`trainers.lm.corpus`)."""
    from trainers.lm.corpus import uses_leads

    return any(uses_leads(c) for c in corpora_read(cfg, data_dir))


def _hub_cached(repo_id: str) -> bool:
    """Whether the hub LM ``repo_id`` is in the local Hugging Face cache (its ``config.json``; a snapshot
    ``prepare`` downloads holds only config, tokenizer and PyTorch weights, and ``validate_inputs``
    loads it before any trial)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id etc.: not usable offline
        return False


def missing_inputs(configs: list[TrialConfig], data_dir: Path) -> list[MissingInput]:
    """Inputs the trials need that are absent *and* that ``prepare`` cannot make or download.

    Collected datasets and project LMs are not reported (``prepare`` makes them); nor are the text corpus,
    RL-Zoo agents and hub LMs when the hub answers (``prepare`` downloads them,
    :func:`trainers.downloads.hub_unreachable` is asked only when one is absent locally). D4RL files, and
    without the hub the absent text, agents and hub LMs, are reported, each with the command that
    provides it.
    """
    from trainers.downloads import hub_unreachable, pypi_unreachable
    from trainers.lm.corpus import (LEADS_TEXT, WIKI_LEADS, fetch_command, find_leads, find_text,
                                    leads_fetch_command, leads_roots, text_roots)
    from trainers.lm.packaged import PACKAGED_LMS, package_dir
    from trainers.data.policies import sb3_fetch_command
    from trainers.paths import sb3_agent_roots

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
        elif cfg.data_source == "d4rl" and (gap := get_domain(task.domain).missing_dataset_fix(cfg, path)):
            out[str(path)] = MissingInput(gap[0], str(path), gap[1])
        lm = cfg.model.lm
        if lm in PACKAGED_LMS:
            try:
                package_dir(lm)
            except FileNotFoundError as e:
                out[f"lm:{lm}"] = MissingInput(f"language model {lm!r}", "PyPI package not installed", str(e))
        elif lm is not None and lm not in project_lm_names():
            loc = lm_location(lm, data_dir)
            if not Path(loc).is_dir() and not _hub_cached(lm) and (why := hub_unreachable()):
                out[f"lm:{lm}"] = MissingInput(
                    f"language model {lm!r}", f"Hugging Face hub id, not in the local cache; {why}",
                    f"run `hf download {lm}` on a machine with internet (with HF_HOME on shared storage), "
                    f"or set model.lm to a local directory saved with save_pretrained, or use the "
                    f"offline project LM `lamo-wiki-tiny` ({', '.join(sorted(project_lm_names()))}).",
                )
        if "text" not in out and needs_text(cfg, data_dir) and find_text(data_dir) is None \
                and (why := hub_unreachable()):
            looked = "; ".join(f"{r} (from {o})" for r, o in text_roots(data_dir))
            out["text"] = MissingInput(
                f"text corpus WikiText-103 (language.corpus {cfg.language.corpus!r}; LM {lm!r})",
                f"not in {looked}; hub download impossible: {why}",
                f"run `{fetch_command(data_dir)}` on a machine with internet (downloads Salesforce/wikitext "
                f"wikitext-103-raw-v1 into {data_dir}/text)")
        if "leads" not in out and needs_leads(cfg, data_dir) and find_leads(data_dir) is None \
                and (why := pypi_unreachable()):
            looked = "; ".join(f"{r} (from {o})" for r, o in leads_roots(data_dir))
            out["leads"] = MissingInput(
                f"{LEADS_TEXT} (language.corpus {cfg.language.corpus!r}; LM {lm!r})",
                f"not in {looked}; PyPI download impossible: {why}",
                f"run `{leads_fetch_command(data_dir)}` on a machine that reaches PyPI (downloads "
                f"{WIKI_LEADS.describe()} into {data_dir}/text)")
        for pol in sb3_agents_needed(cfg, data_dir):
            if f"agent:{pol}" not in out and not _sb3_present(pol, data_dir) and (why := hub_unreachable()):
                looked = "; ".join(f"{r} (from {o})" for r, o in sb3_agent_roots(data_dir))
                out[f"agent:{pol}"] = MissingInput(
                    f"behaviour policy {pol!r} (to collect the dataset of task {cfg.task!r})",
                    f"not in {looked}; hub download impossible: {why}",
                    f"run `{sb3_fetch_command(pol, data_dir)}` on a machine with internet")
    return list(out.values())


@dataclass
class _PrepareStep:
    """One input :func:`prepare_inputs` makes: ``kind`` is ``fetch-text``, ``fetch-agent``, ``fetch-lm``
    (downloads, done first), ``collect``, ``pretrain`` or ``unpack``."""

    kind: str
    name: str  # dataset file stem, LM name, agent name or "text"
    path: Path
    cfg: TrialConfig | None
    text: str


def _prepare_plan(configs: list[TrialConfig], data_dir: Path) -> list[_PrepareStep]:
    """The absent inputs the trials need that can be made or downloaded here, each once: downloads first
    (only when the hub answers; otherwise :func:`missing_inputs` reports them), then collected datasets
    and project / packaged LMs."""
    from trainers.downloads import WIKITEXT_REPO, WIKITEXT_REVISION, hub_unreachable, pypi_unreachable
    from trainers.lm.corpus import LEADS_FILE, WIKI_LEADS, find_leads, find_text
    from trainers.lm.packaged import PACKAGED_LMS, is_materialised
    from trainers.lm.pretrain import LM_RECIPES, is_pretrained
    from trainers.paths import sb3_cache_dir, text_cache_dir

    fetch: dict[str, _PrepareStep] = {}
    hub_lms_seen: set = set()
    for cfg in configs:
        if "text" not in fetch and needs_text(cfg, data_dir) and find_text(data_dir) is None \
                and hub_unreachable() is None:
            fetch["text"] = _PrepareStep("fetch-text", "text", text_cache_dir(data_dir), None,
                                         f"download WikiText-103 raw (hub dataset {WIKITEXT_REPO}@"
                                         f"{WIKITEXT_REVISION[:12]}, wikitext-103-raw-v1 parquet, ~320 MB) "
                                         f"-> {text_cache_dir(data_dir)}")
        if "leads" not in fetch and needs_leads(cfg, data_dir) and find_leads(data_dir) is None \
                and pypi_unreachable() is None:
            fetch["leads"] = _PrepareStep("fetch-leads", "wiki-leads", text_cache_dir(data_dir) / LEADS_FILE, None,
                                          f"download the Wikipedia lead sections from {WIKI_LEADS.describe()}"
                                          f", 4.9 MB -> {text_cache_dir(data_dir) / LEADS_FILE}")
        for pol in sb3_agents_needed(cfg, data_dir):
            if f"agent:{pol}" not in fetch and not _sb3_present(pol, data_dir) and hub_unreachable() is None:
                algo, env = pol[len("sb3:"):].split("/", 1)
                fetch[f"agent:{pol}"] = _PrepareStep("fetch-agent", pol, sb3_cache_dir(data_dir), None,
                                                     f"download behaviour policy {pol} (hub repo sb3/{algo}-{env}) "
                                                     f"-> {sb3_cache_dir(data_dir)}")
        lm = cfg.model.lm
        if lm in hub_lms_seen:
            continue
        hub_lms_seen.add(lm)
        if (lm is not None and lm not in project_lm_names() and not Path(lm_location(lm, data_dir)).is_dir()
                and not _hub_cached(lm) and hub_unreachable() is None):
            fetch[f"lm:{lm}"] = _PrepareStep("fetch-lm", lm, Path(lm), None,
                                             f"download LM {lm} from the hub into the Hugging Face cache")

    plan: dict[str, _PrepareStep] = dict(fetch)
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
    downloads, then collected datasets and project / packaged LMs that are absent from ``data_dir``."""
    return [step.text for step in _prepare_plan(configs, Path(data_dir))]


def prepare_inputs(configs: list[TrialConfig], data_dir: Path, progress: bool = True, log=print) -> dict:
    """Make every producible input the trials need (idempotent; existing files are kept).

    * downloads first (:mod:`trainers.downloads`, verified, atomic): the WikiText-103 raw text into
      ``<data_dir>/text``, RL-Zoo agents into ``<data_dir>/sb3_agents``
      (:func:`trainers.data.policies.fetch_sb3_agent`), hub LMs into the Hugging Face cache
      (:func:`huggingface_hub.snapshot_download`);
    * collected datasets: rolled out by the task's behaviour policy (:func:`trainers.data.collect.collect_dataset`);
    * project LMs: pre-trained by :func:`trainers.lm.pretrain.pretrain_lm`;
    * tokenised language-loss corpora: cached for each (LM tokenizer, block size).

    Returns:
        ``{"datasets": {name: summary}, "lms": {name: metrics}, "downloads": {name: where}}`` for what was
        made (for logging).

    Raises:
        trainers.downloads.DownloadError: a download failed or did not verify (nothing partial is kept).
    """
    from trainers.data.policies import fetch_sb3_agent
    from trainers.downloads import fetch_hub_files, wikitext_files
    from trainers.lm.packaged import materialise
    from trainers.lm.pretrain import pretrain_lm

    made: dict = {"datasets": {}, "lms": {}, "downloads": {}}
    data_dir = Path(data_dir)
    for step in _prepare_plan(configs, data_dir):
        log(f"[prepare] {step.text}")
        if step.kind == "fetch-text":
            made["downloads"]["text"] = str(step.path)
            fetch_hub_files(wikitext_files(), step.path, progress=progress, log=log)
            continue
        if step.kind == "fetch-leads":
            from trainers.downloads import fetch_pypi_member
            from trainers.lm.corpus import WIKI_LEADS

            made["downloads"]["wiki-leads"] = str(step.path)
            fetch_pypi_member(WIKI_LEADS, step.path, progress=progress, log=log)
            continue
        if step.kind == "fetch-agent":
            made["downloads"][step.name] = str(fetch_sb3_agent(step.name, data_dir, progress=progress, log=log))
            continue
        if step.kind == "fetch-lm":
            from huggingface_hub import snapshot_download

            from trainers.downloads import DownloadError, endpoint

            try:
                from huggingface_hub import HfApi

                files = HfApi(endpoint=endpoint()).list_repo_files(step.name)
                weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
                # config, tokenizer and PyTorch weights only (hub repos such as gpt2 also hold TF/Flax/ONNX copies)
                made["downloads"][step.name] = snapshot_download(
                    step.name, endpoint=endpoint(), allow_patterns=["*.json", "*.txt", "*.model", *weights])
            except Exception as e:  # noqa: BLE001 - network and HTTP errors of any kind
                raise DownloadError(f"downloading LM {step.name} from the hub failed: {type(e).__name__}: "
                                    f"{' '.join(str(e).split())[:300]}") from None
            continue
        step.path.parent.mkdir(parents=True, exist_ok=True)
        if step.kind == "collect":
            task = get_task(step.cfg.task)
            made["datasets"][step.name] = get_domain(task.domain).collect(
                task, step.path, episodes=task.dataset.episodes, seed=0, progress=progress,
                transitions=task.dataset.transitions, data_dir=data_dir)
        elif step.kind == "pretrain":
            made["lms"][step.name] = pretrain_lm(step.name, step.path, progress=progress, data_dir=data_dir)
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
            stats = corpus_passes(len(blocks), cfg.language.batch_size, cfg.train.steps)
            log(f"[prepare] language corpus {cfg.language.corpus} for {cfg.model.lm}: "
                f"{blocks.shape[0]} blocks of {cfg.language.block_size} tokens, "
                f"{stats['language/passes_per_100k_steps']:.1f} passes per 100k steps at "
                f"{cfg.language.batch_size} blocks per step ({text_source_of(cfg, data_dir)})")
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
        from trainers.lm.corpus import fetch_command

        fix = (f"run `{fetch_command(data_dir)}` (or set LAMO_TEXT_DIR to a directory holding the corpus "
               "text), lower language.block_size, or set language.weight: 0")
        try:
            n = len(language_blocks(users[0], data_dir))
            problem = None if n > 0 else f"it yields 0 blocks of {block} tokens"
        except Exception as e:  # noqa: BLE001 - missing files, unreadable cache, tokenizer errors
            problem = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
        if problem:
            problems.append(InputProblem(f"language-loss corpus {corpus!r} for LM {lm!r} ({_used_by(len(users))})",
                                         str(data_dir / "corpus_cache"), problem, fix))
    return problems
