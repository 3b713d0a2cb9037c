"""Stand-ins for the canonical sources of the paper's inputs, in the real formats, written by the real writers,
served over HTTP on loopback so that the project's own download code fetches them.

Used by ``benchmarks/rehearse_paper_sweeps.py`` (the rehearsal of the paper sweeps) and by the tests
(``tests/test_rehearsal.py``, ``tests/test_input_sources.py``, ``tests/test_published_downloads.py``). It lives
in ``benchmarks/`` so that a benchmark script and a test import the same code without a test module
importing another test module (tests -> benchmarks -> trainers/orchestrator, one direction).

What stands in for what (and what differs from the real thing):

* **D4RL's file server** (``LAMO_D4RL_BASE_URL``): ``gym_mujoco_v2/<env>_medium-v2.hdf5`` in the layout of
  D4RL's MuJoCo files (``scripts/generation/mujoco/convert_buffer.py``: gzip-compressed datasets
  ``observations``, ``next_observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts``,
  ``infos/action_log_probs``, ``infos/qpos``, ``infos/qvel``, ``metadata/algorithm``,
  ``metadata/iteration``), and ``kitchen/<name>.hdf5`` in the layout of D4RL's kitchen files
  (``scripts/generation/generate_kitchen_datasets.py``: gzip-compressed ``observations``, ``actions``,
  ``rewards``, float32 ``terminals`` and a flat ``infos``; plus ``timeouts``, which the script does not write
  but the hosted files carry: Minari's conversion scripts read ``f['timeouts']`` from the hosted complete and
  partial files, minari-dataset-generation-scripts ``scripts/kitchen/d4rl_datasets/dataset.py`` and
  ``total_steps.py``), written with h5py as D4RL does; some demos end at the 280-step limit with
  ``timeouts`` set and no terminal (inferred, :func:`write_d4rl_kitchen`). Values are random: shapes,
  dtypes, keys, compression and episode structure are D4RL's.
* **the DQN Replay bucket** (``LAMO_DQN_REPLAY_BASE_URL``): ``<Game>/1/replay_logs/$store$_<array>_ckpt.10.gz``
  as Dopamine's ``OutOfGraphReplayBuffer.save`` writes them (``dopamine/replay_memory/circular_replay_buffer.py``:
  ``np.save`` of each store array into a ``gzip.GzipFile``): ``observation (N, 84, 84) uint8``,
  ``action (N,) int32``, ``reward (N,) float32``, ``terminal (N,) uint8``. Random frames.
* **the Hugging Face hub** (``HF_ENDPOINT``), :class:`StandInHub`: the hub's URL layout and metadata
  (``paths-info``, ``tree``, ``revision``, ``resolve``; sizes, git blob ids, LFS sha256) for files on disk;
  the real ``huggingface_hub`` client talks to it. It serves the model repo ``gpt2``: GPT-2 at its real
  configuration (``transformers.GPT2Config()`` defaults: 12 layers x 768, 12 heads, vocabulary 50,257,
  1,024 positions; 124,439,808 parameters) with **random weights**, saved with ``save_pretrained``
  (``model.safetensors``), and a byte-level BPE tokenizer in GPT-2's file format (``vocab.json``,
  ``merges.txt``, ``tokenizer.json``, ``<|endoftext|>``) trained here on a few lines of text (GPT-2's own
  vocabulary is not available offline; its ids are a subset of the model's 50,257). And the dataset repo
  ``Salesforce/wikitext`` with synthetic text in the hub's parquet layout.
* **PyPI's JSON simple API** (``LAMO_PYPI_INDEX``), :class:`StandInPypiIndex`: one listed file with its sha256.
* a local :class:`FileServer` for any other URL layout.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

#: File types the stand-in hub reports as LFS files (with a sha256), as the hub does for these.
LFS_SUFFIXES = (".parquet", ".zip", ".pkl", ".safetensors", ".bin", ".h5", ".msgpack")
#: GPT-2 small's parameter count (``GPT2LMHeadModel(GPT2Config())``, the LM head tied to the token embedding).
GPT2_SMALL_PARAMS = 124_439_808


# --- servers -----------------------------------------------------------------------------------------------
def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``handler`` on a free loopback port, serving in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(server: ThreadingHTTPServer) -> None:
    """Stop a server started by :func:`_serve` and close its socket."""
    server.shutdown()
    server.server_close()


class FileServer:
    """Serves ``files`` (URL path -> bytes) on loopback at :attr:`url`; ``short`` paths announce 100 bytes
    more than they send (a truncated transfer). ``requests`` logs every GET path. ``close()`` stops it."""

    def __init__(self, files: dict[str, bytes], short: tuple[str, ...] = ()):
        self.files, self.requests = files, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.send_response(200 if self.path == "/" or self.path in outer.files else 404)
                self.end_headers()

            def do_GET(self):
                outer.requests.append(self.path)
                if self.path not in outer.files:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = outer.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (100 if self.path in short else 0)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def close(self):
        _stop(self.server)


class StandInPypiIndex:
    """A stand-in for PyPI's JSON simple API (PEP 691, ``/simple/<project>/``, what
    :func:`trainers.downloads.fetch_pypi_member` asks) listing one file, ``filename``, with its sha256, and
    serving its bytes at ``/files/<filename>``. ``listed_sha256`` overrides the hash the listing publishes
    and ``serve`` the bytes served (to simulate a changed release or a corrupt transfer). ``requests`` logs
    every GET path; :attr:`url` is the index root (``.../simple``, for ``$LAMO_PYPI_INDEX``)."""

    def __init__(self, project: str, filename: str, data: bytes):
        self.project, self.filename = project, filename
        self.data, self.serve, self.listed_sha256 = data, data, hashlib.sha256(data).hexdigest()
        self.requests: list[str] = []
        idx = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, body: bytes, ctype: str, head: bool = False):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self):
                self._send(b"", "text/html", head=True)

            def do_GET(self):
                idx.requests.append(self.path)
                if self.path == f"/simple/{idx.project}/":
                    listing = {"meta": {"api-version": "1.1"}, "name": idx.project, "files": [
                        {"filename": idx.filename, "url": f"/files/{idx.filename}",
                         "hashes": {"sha256": idx.listed_sha256}, "size": len(idx.data)}]}
                    return self._send(json.dumps(listing).encode(), "application/vnd.pypi.simple.v1+json")
                if self.path == f"/files/{idx.filename}":
                    return self._send(idx.serve, "application/octet-stream")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = _serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/simple"

    def close(self):
        _stop(self.server)


class StandInHub:
    """A local stand-in for the Hugging Face hub: files under ``root/<repo_type>s/<repo_id>/<path>``
    (``repo_id`` ``org/name`` or, like ``gpt2``, a bare name), served at :attr:`url` in the hub's URL layout
    (``/api/<type>s/<repo>/paths-info|tree|revision/<rev>``, ``/<datasets/><repo>/resolve/<rev>/<path>``).

    ``published`` overrides what the metadata API claims for a repo path (to simulate a corrupted
    transfer: the bytes served then differ from what the hub publishes). ``requests`` logs every path.
    """

    def __init__(self, root: Path):
        self.root, self.published, self.requests = Path(root), {}, []
        self._hashes: dict[tuple, tuple[str, str]] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _file(self):
                m = re.match(r"^/(datasets/)?((?:[^/]+/)?[^/]+)/resolve/([^/]+)/(.+)$",
                             urllib.parse.urlparse(self.path).path)
                if not m:
                    return None
                kind = "datasets" if m[1] else "models"
                return hub.root / kind / m[2] / urllib.parse.unquote(m[4])

            def _send_file(self, body: bool):
                hub.requests.append(self.path)
                f = self._file()
                if f is None or not f.is_file():
                    self.send_response(200 if self.path == "/" else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = f.stat().st_size
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("ETag", f'"{hub.hashes(f)[1]}"')
                self.end_headers()
                if body:
                    with open(f, "rb") as src:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            self.wfile.write(chunk)

            def do_HEAD(self):
                self._send_file(False)

            def do_GET(self):
                path = urllib.parse.urlparse(self.path).path
                m = re.match(r"^/api/(datasets|models)/((?:[^/]+/)?[^/]+)/(revision|tree)/([^/]+)$", path)
                if not m:
                    return self._send_file(True)
                hub.requests.append(self.path)
                repo = hub.root / m[1] / m[2]
                files = sorted(str(f.relative_to(repo)) for f in repo.rglob("*") if f.is_file())
                if m[3] == "revision":  # repo info: the commit and the file names
                    out = {"id": m[2], "sha": "0" * 40, "siblings": [{"rfilename": f} for f in files]}
                else:  # the whole tree (recursive), one page
                    out = [hub.entry(repo, f) for f in files]
                self._json(out)

            def _json(self, out):
                body = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                hub.requests.append(self.path)
                m = re.match(r"^/api/(datasets|models)/((?:[^/]+/)?[^/]+)/paths-info/([^/]+)$", self.path)
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                repo = hub.root / m[1] / m[2]
                self._json([hub.entry(repo, p) for p in form.get("paths", []) if (repo / p).is_file()])

        self.server = _serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        _stop(self.server)

    def hashes(self, f: Path) -> tuple[str, str]:
        """``(git blob sha1, sha256)`` of file ``f`` (remembered per path, size and mtime: a 500 MB weight
        file is hashed once, not at every metadata request)."""
        st = f.stat()
        key = (str(f), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            blob, sha = hashlib.sha1(f"blob {st.st_size}\0".encode()), hashlib.sha256()
            with open(f, "rb") as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    blob.update(chunk)
                    sha.update(chunk)
            self._hashes[key] = (blob.hexdigest(), sha.hexdigest())
        return self._hashes[key]

    def entry(self, repo: Path, p: str) -> dict:
        """The hub's metadata of one file: size, git blob id, and LFS sha256 / size for large-file types
        (as ``paths-info`` and ``tree`` return them), with :attr:`published` overrides applied."""
        f = repo / p
        size = f.stat().st_size
        blob, sha = self.hashes(f)
        entry = {"type": "file", "path": p, "size": size, "oid": blob}
        if p.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": sha, "size": size, "pointerSize": 130}
        for k, v in self.published.get(p, {}).items():
            entry.setdefault("lfs", {"oid": sha, "size": size, "pointerSize": 130})
            if k == "sha256":
                entry["lfs"]["oid"] = v
            elif k == "size":
                entry["size"] = entry["lfs"]["size"] = v
        return entry


# --- text ----------------------------------------------------------------------------------------------------
def wiki_article(title: str, n: int) -> list[str]:
    lines = ["", f" = {title} = \n", ""]
    lines += [f" {title} sentence {i} is about robots , language and reward . \n" for i in range(n)]
    return lines


def write_wikitext_parquet(root: Path) -> None:
    """Synthetic text in the hub layout of ``Salesforce/wikitext`` (``wikitext-103-raw-v1/*.parquet``, column
    ``text``, one row per line with its ``\\n``, as the hub's parquet conversion of WikiText)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainers.downloads import WIKITEXT_FILES

    for split, files in WIKITEXT_FILES.items():
        for k, rel in enumerate(files):
            rows = [x for a in range(25) for x in wiki_article(f"{split} {k} article {a}", 8)]
            (Path(root) / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"text": rows}), Path(root) / rel)


def write_mirror_text(text_root: Path) -> None:
    """Synthetic text in the offline mirror's layout (``wikitext-103/wiki.{valid,test}.tokens``)."""
    d = Path(text_root) / "wikitext-103"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("valid", "test"):
        (d / f"wiki.{name}.tokens").write_text("".join(x for a in range(25) for x in wiki_article(f"{name} {a}", 8)))


# --- D4RL ------------------------------------------------------------------------------------------------------
def _episodes(rng, episodes: int, ep_len: int, terminate_every: int) -> tuple[np.ndarray, np.ndarray]:
    """``(terminals, timeouts)`` of ``episodes`` back-to-back episodes: every ``terminate_every``-th ends early
    (a fall: ``terminals``) at a random step, the others run ``ep_len`` steps (``timeouts`` on the last row)."""
    term, tout = [], []
    for e in range(episodes):
        early = terminate_every and e % terminate_every == terminate_every - 1
        n = int(rng.integers(ep_len // 3, ep_len)) if early else ep_len
        t, o = np.zeros(n, bool), np.zeros(n, bool)
        (t if early else o)[-1] = True
        term.append(t)
        tout.append(o)
    return np.concatenate(term), np.concatenate(tout)


def write_d4rl_mujoco(path: Path, obs_dim: int, act_dim: int, episodes: int = 12, ep_len: int = 60,
                      seed: int = 0) -> None:
    """A file in the layout of D4RL's MuJoCo ``-v2`` files (module docstring), written with h5py as D4RL's
    ``scripts/generation/mujoco/convert_buffer.py`` does (gzip datasets, ``metadata/*`` scalars).

    Shapes: ``observations``/``next_observations`` (N, obs_dim) f32, ``actions`` (N, act_dim) f32 in
    [-1, 1], ``rewards`` (N,) f32, ``terminals``/``timeouts`` (N,) bool; ``infos/qpos`` (N, obs_dim // 2 + 1),
    ``infos/qvel`` (N, obs_dim // 2) and ``infos/action_log_probs`` (N,) f32 (widths only indicative)."""
    import h5py

    rng = np.random.default_rng(seed)
    terminals, timeouts = _episodes(rng, episodes, ep_len, terminate_every=3)
    n = len(terminals)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    data = {"observations": obs[:-1], "next_observations": obs[1:],
            "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            "rewards": rng.normal(1.0, 0.5, n).astype(np.float32), "terminals": terminals, "timeouts": timeouts,
            "infos/action_log_probs": rng.normal(size=n).astype(np.float32),
            "infos/qpos": rng.normal(size=(n, obs_dim // 2 + 1)).astype(np.float32),
            "infos/qvel": rng.normal(size=(n, obs_dim // 2)).astype(np.float32)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, compression="gzip")
        f["metadata/algorithm"] = np.bytes_("SAC")
        f["metadata/iteration"] = np.int32(3000)


KITCHEN_STEP_LIMIT = 280  # D4RL d4rl/kitchen/__init__.py: kitchen-*-v0 max_episode_steps


def kitchen_demos(episodes: int = 8, ep_len: int = 60, timeout_every: int = 4) -> list[tuple[int, bool]]:
    """``(rows, timed_out)`` of :func:`write_d4rl_kitchen`'s demos, in file order: every ``timeout_every``-th
    demo (the 4th, 8th, ...) runs into the kitchen envs' 280-step limit (:data:`KITCHEN_STEP_LIMIT` rows,
    ``timed_out`` True), the others have ``ep_len`` rows and end at a terminal."""
    out = []
    for e in range(episodes):
        cut = bool(timeout_every) and e % timeout_every == timeout_every - 1
        out.append((KITCHEN_STEP_LIMIT if cut else ep_len, cut))
    return out


def write_d4rl_kitchen(path: Path, episodes: int = 8, ep_len: int = 60, seed: int = 0,
                       timeout_every: int = 4) -> None:
    """A file in the layout of D4RL's hosted kitchen files (module docstring), the six datasets the hosted
    files hold: ``observations`` (N, 60) f32, ``actions`` (N, 9) f32, ``rewards`` (N,) f32 (subtasks solved,
    0..4), ``terminals`` (N,) **float32**, ``timeouts`` (N,) bool, ``infos`` (N,) int64 (the demo index),
    gzip-compressed. Demo lengths: :func:`kitchen_demos`. A demo of ``ep_len`` rows ends with
    ``terminals`` 1.0 on its last row (as ``generate_kitchen_datasets.py`` writes); a demo cut at the
    280-step limit ends with ``timeouts`` True and ``terminals`` 0, so its boundary is only in ``timeouts``
    (inferred for the hosted partial/mixed files: loaders splitting kitchen-mixed at ``terminals`` alone add
    two boundaries 280 rows after a terminal by hand, and CleanDiffuser's ``D4RLKitchenDataset`` cuts at
    ``timeouts | terminals`` into 280-row buffers)."""
    import h5py

    rng = np.random.default_rng(seed)
    demos = kitchen_demos(episodes, ep_len, timeout_every)
    lengths = [rows for rows, _ in demos]
    timed_out = np.array([cut for _, cut in demos], bool)
    n = sum(lengths)
    ends = np.cumsum(lengths) - 1
    terminals = np.zeros(n, np.float32)
    terminals[ends[~timed_out]] = 1.0
    timeouts = np.zeros(n, bool)
    timeouts[ends[timed_out]] = True
    data = {"observations": rng.normal(size=(n, 60)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, 9)).astype(np.float32),
            "rewards": rng.integers(0, 5, n).astype(np.float32), "terminals": terminals,
            "timeouts": timeouts, "infos": np.repeat(np.arange(episodes, dtype=np.int64), lengths)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, compression="gzip")


# --- DQN Replay ------------------------------------------------------------------------------------------------
def _npy_gz(a: np.ndarray) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as out:  # Dopamine: np.save into a gzip.GzipFile
        np.save(out, a, allow_pickle=False)
    return raw.getvalue()


def dqn_replay_checkpoint(n: int = 400, n_actions: int = 4, episode_len: int = 100, seed: int = 0) -> dict[str, bytes]:
    """One DQN Replay checkpoint's four store arrays in Dopamine's layout (module docstring), ``{"observation":
    bytes, "action": ..., "reward": ..., "terminal": ...}``, each a gzip-compressed ``.npy``: ``n`` frames,
    episodes of ``episode_len`` steps, rewards in {0, 1} (clipped units), actions in ``[0, n_actions)``."""
    rng = np.random.default_rng(seed)
    terminal = np.zeros(n, np.uint8)
    terminal[episode_len - 1::episode_len] = 1
    return {"observation": _npy_gz(rng.integers(0, 255, (n, 84, 84), dtype=np.uint8)),
            "action": _npy_gz(rng.integers(0, n_actions, n).astype(np.int32)),
            "reward": _npy_gz(rng.integers(0, 2, n).astype(np.float32)),
            "terminal": _npy_gz(terminal)}


# --- GPT-2 -----------------------------------------------------------------------------------------------------
def tensor_digest(t) -> str:
    """BLAKE2b (8 bytes) of a tensor's raw bytes: the digest :func:`trainers.checkpoint.frozen_fingerprint`
    records for each frozen parameter, so a checkpoint's fingerprint can be compared with the stand-in's."""
    import torch

    raw = t.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy()
    return hashlib.blake2b(raw.tobytes(), digest_size=8).hexdigest()


def write_gpt2(repo: Path, seed: int = 0, vocab_size_bpe: int = 2000) -> dict:
    """GPT-2 small at its real configuration with random weights, saved into ``repo`` as a hub repo holds it
    (``config.json``, ``generation_config.json``, ``model.safetensors``, tokenizer files).

    Returns:
        ``{"n_params", "safetensors_sha256", "digests": {parameter name: tensor_digest}, "config": {n_layer,
        n_embd, n_head, vocab_size, n_positions}}`` (also written to ``repo/../<name>.standin.json``).
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config())
    model.save_pretrained(repo)
    bpe = ByteLevelBPETokenizer()
    text = [x for a in range(40) for x in wiki_article(f"robot {a} language reward", 6)]
    bpe.train_from_iterator(text, vocab_size=vocab_size_bpe, special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(repo))
    GPT2TokenizerFast.from_pretrained(str(repo), eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                      unk_token="<|endoftext|>", model_max_length=1024).save_pretrained(repo)
    c = model.config
    sha = hashlib.sha256()
    with open(repo / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    info = {"n_params": sum(p.numel() for p in model.parameters()), "safetensors_sha256": sha.hexdigest(),
            "digests": {n: tensor_digest(p) for n, p in model.named_parameters()},
            "config": {k: getattr(c, k) for k in ("n_layer", "n_embd", "n_head", "vocab_size", "n_positions")}}
    (repo.parent / f"{repo.name}.standin.json").write_text(json.dumps(info))
    return info


def gpt2_info(repo: Path) -> dict:
    """What :func:`write_gpt2` returned for ``repo``."""
    return json.loads((Path(repo).parent / f"{Path(repo).name}.standin.json").read_text())


# --- everything a rehearsal needs, served ----------------------------------------------------------------------
class StandIns:
    """Stand-ins of the canonical sources, served on loopback: D4RL files and DQN Replay checkpoints from a
    :class:`FileServer`, GPT-2 (``gpt2``) and WikiText (``Salesforce/wikitext``) from a :class:`StandInHub`.
    The servers start first (empty) so that :meth:`env` is known before anything imports
    ``huggingface_hub`` (which reads ``HF_ENDPOINT`` / ``HF_HOME`` at import); :meth:`build` then writes the
    files (kept and reused when present under ``root``). :meth:`env` points the project at them through its
    documented resolution order, and at an empty offline mirror and a fresh Hugging Face cache so nothing
    local is used instead. ``close()`` stops the servers.

    Args:
        root: directory for the served files (``root/files``, ``root/hub``) and the empty mirror.
    """

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.hub_root = self.root / "hub"
        self.gpt2_repo = self.hub_root / "models" / "gpt2"
        self.files = FileServer({})
        self.hub = StandInHub(self.hub_root)
        (self.root / "empty-mirror").mkdir(parents=True, exist_ok=True)

    def build(self, tasks: list[str], gpt2: bool = True) -> None:
        """Write (or reuse) and serve the published data of ``tasks`` (registered task names read with
        ``data.source: d4rl``), WikiText, and with ``gpt2`` GPT-2 small (~500 MB, ~10 s to build once)."""
        from trainers.config import TrialConfig
        from trainers.domains.base import get_domain
        from trainers.downloads import D4RL_BASE_URL, DQN_REPLAY_BASE_URL, WIKITEXT_REPO
        from trainers.tasks import get_task

        store = self.root / "files"
        for name in sorted(set(tasks)):
            task = get_task(name)
            cfg = TrialConfig.model_validate({"task": name, "data": {"source": "d4rl"}, "variant": "dt",
                                              "model": {"lm": None, "init": "random"}, "language": {"weight": 0}})
            for url, target in get_domain(task.domain).dataset_downloads(cfg, Path("/x") / "replay_logs"):
                if url.startswith(DQN_REPLAY_BASE_URL):
                    rel, key = "dqn/" + url[len(DQN_REPLAY_BASE_URL):], target.name.split("_")[1]
                    f = store / rel
                    if not f.is_file():
                        f.parent.mkdir(parents=True, exist_ok=True)
                        f.write_bytes(dqn_replay_checkpoint(n_actions=task.act_dim, seed=sum(map(ord, name)))[key])
                else:
                    rel = "d4rl/" + url[len(D4RL_BASE_URL):]
                    f = store / rel
                    if not f.is_file():
                        if task.domain == "kitchen":
                            write_d4rl_kitchen(f, seed=len(name))
                        else:
                            write_d4rl_mujoco(f, task.obs_dim, task.act_dim, seed=len(name))
                self.files.files["/" + rel] = f.read_bytes()
        if not (self.hub_root / "datasets" / WIKITEXT_REPO).is_dir():
            write_wikitext_parquet(self.hub_root / "datasets" / WIKITEXT_REPO)
        if gpt2 and not (self.gpt2_repo.parent / "gpt2.standin.json").is_file():
            write_gpt2(self.gpt2_repo)

    def env(self, hf_home: Path) -> dict[str, str]:
        """Environment variables for a run against the stand-ins: ``LAMO_D4RL_BASE_URL``,
        ``LAMO_DQN_REPLAY_BASE_URL`` (the mirror variables of :mod:`trainers.downloads`), ``HF_ENDPOINT``
        (the hub), ``HF_HOME`` = ``hf_home`` (an empty Hugging Face cache), ``LAMO_SHARED_DIR`` = an empty
        directory (no offline mirror), ``HF_HUB_OFFLINE=0``. Variables that would bypass the order
        (``LAMO_TEXT_DIR``, ``LAMO_DATA_DIR``, ``LAMO_SB3_AGENTS_DIR``) are set to ``""`` (= unset)."""
        return {"LAMO_D4RL_BASE_URL": self.files.url + "d4rl/", "LAMO_DQN_REPLAY_BASE_URL": self.files.url + "dqn/",
                "HF_ENDPOINT": self.hub.url, "HF_HOME": str(Path(hf_home).resolve()), "HF_HUB_OFFLINE": "0",
                "TRANSFORMERS_OFFLINE": "0", "LAMO_SHARED_DIR": str(self.root / "empty-mirror"),
                "LAMO_TEXT_DIR": "", "LAMO_DATA_DIR": "", "LAMO_SB3_AGENTS_DIR": ""}

    def close(self) -> None:
        self.files.close()
        self.hub.close()
