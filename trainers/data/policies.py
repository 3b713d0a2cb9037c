"""Behaviour policies that generate the project's collected datasets.

Built by :func:`get_behaviour_policy` (``name`` -> policy):

* **Scripted controllers** owned by a domain (:meth:`trainers.domains.base.Domain.behaviour_policy`):
  Reacher2d's inverse-kinematics controllers ``reacher2d-ik-*`` (:mod:`trainers.domains.reacher2d.policy`)
  and Franka Kitchen's ``kitchen-scripted-*`` (:mod:`trainers.domains.kitchen.policy`); one observation
  ``(obs_dim,)`` per call, per-episode state (``reset()``).
* **Trained Stable-Baselines3 agents** (``sb3:<algo>/<Env>-v3``): :class:`SB3Policy`, the RL Baselines3
  Zoo's agents (``DLR-RM/rl-trained-agents``) for the D4RL-style MuJoCo datasets; batched calls
  ``(n, obs_dim) -> (n, act_dim)``. See "SB3 agents" below.

SB3 agents
----------
``sb3:<algo>/<Env>-v3`` loads ``<agents_dir>/<algo>/<Env>-v3_1/<Env>-v3.zip`` (the RL Zoo layout) with
stable-baselines3 (``sac``) or sb3-contrib (``tqc``, ``ars``, ``trpo``). ``agents_dir`` is the
``agents_dir`` argument, else the first of ``$LAMO_SB3_AGENTS_DIR`` / the project cache
``<data_dir>/sb3_agents`` / the offline mirror's ``data/sb3_agents`` holding the agent
(:func:`trainers.paths.sb3_agent_roots`; the returns and the D4RL level each zoo agent matches are in
``docs/lamo_recipe.md`` §4.5). When none holds it, ``prepare`` downloads it from the hub repo
``sb3/<algo>-<Env>-v3`` into the cache, verified (:func:`fetch_sb3_agent`); ``lamo-trial fetch
sb3:<algo>/<Env>-v3`` does the same ahead of a run.

* **Observation normalisation**: when ``<Env>-v3_1/<Env>-v3/vecnormalize.pkl`` exists (ARS, TRPO), its
  running mean/variance normalise the *policy input only*,
  ``clip((obs - mean) / sqrt(var + eps), -clip_obs, clip_obs)``; datasets store raw observations.
* **Actions** (D4RL-style behaviour data): SAC, TQC and TRPO *sample* from their Gaussian policy
  (``deterministic=False``): SAC/TQC ``tanh(mu + sigma * z)`` rescaled to the action bounds, TRPO
  ``clip(mu + sigma * z, low, high)``, ``z ~ N(0, I)`` from the policy's seeded NumPy RNG or passed in
  by the caller (``noise=``), never from torch's global RNG. D4RL's own data was also sampled from its
  SAC behaviour policies. ARS is a deterministic linear policy (it has no action distribution): its
  actions are ``policy.predict(deterministic=True)``; diversity then comes from the env's random
  initial states only. ``deterministic=True`` makes any agent act with its mean action.
* **Safety**: SB3 zips store some fields with cloudpickle and VecNormalize statistics are a pickle.
  Loading here runs no code from the files: every cloudpickled field of the zip is replaced by a value
  built here (``custom_objects``: spaces parsed from the zip's readable JSON, the policy class from
  ``config.yml``'s ``policy`` alias), weights are read by ``torch.load(weights_only=True)``, and
  ``vecnormalize.pkl`` is read by an unpickler that only resolves an allow-list of classes
  (VecNormalize, RunningMeanStd, spaces, NumPy arrays/scalars/RNG state; ``gym.*`` names of pickles
  written with old ``gym`` map to ``gymnasium.*``). Still, the agents decide what the datasets contain:
  the offline mirror's agents and those downloaded from the zoo's own hub organisation ``sb3`` (checked
  against the sha256 the hub publishes) are the trusted defaults, and using any other directory is an
  explicit opt-in (``agents_dir=`` or ``LAMO_SB3_AGENTS_DIR``) that must point at files you trust.
* **Performance**: one batched call for ``n`` observations. Torch's intra-op threads make tiny MLP
  calls slow on a busy machine; :mod:`trainers.data.collect` runs them single-threaded.

Sources: RL Baselines3 Zoo (``DLR-RM/rl-baselines3-zoo``, agents in ``DLR-RM/rl-trained-agents``), D4RL
(Fu et al. 2020: medium = a partially trained SAC agent, expert = a fully trained one; medium-expert = the
two datasets concatenated).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.paths import SB3_AGENTS_DIR_ENV, sb3_agent_roots, sb3_agents_dir, sb3_cache_dir
from trainers.util import did_you_mean

# --- SB3 agents ----------------------------------------------------------------------------------------
SB3_PREFIX = "sb3:"
# algo -> (module, class). SAC is in stable-baselines3, the rest in sb3-contrib.
SB3_ALGOS: dict[str, tuple[str, str]] = {
    "sac": ("stable_baselines3", "SAC"),
    "tqc": ("sb3_contrib", "TQC"),
    "ars": ("sb3_contrib", "ARS"),
    "trpo": ("sb3_contrib", "TRPO"),
}
_DETERMINISTIC_ALGOS = {"ars"}  # no action distribution: the linear policy's output is the action
_SB3_NAME = re.compile(r"^sb3:(?P<algo>[a-z0-9_]+)/(?P<env>[A-Za-z0-9_\-]+-v\d+)$")
_SB3_INSTALL = "pip install stable-baselines3==2.9.2 sb3-contrib==2.9.2"


def default_sb3_agents_dir() -> Path:
    """``$LAMO_SB3_AGENTS_DIR`` if set, else the offline mirror's ``data/sb3_agents`` (the trusted
    default); resolved by :func:`trainers.paths.sb3_agents_dir`. The directory may not exist:
    :class:`SB3Policy` checks for the agent it needs and says how to get it."""
    return sb3_agents_dir()


def _agent_paths(root: Path, algo: str, env: str) -> dict[str, Path]:
    run = root / algo / f"{env}_1"
    return {"zip": run / f"{env}.zip", "config": run / env / "config.yml",
            "vecnormalize": run / env / "vecnormalize.pkl"}


def find_sb3_agent(algo: str, env: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """``(root, origin)`` of the first root of :func:`trainers.paths.sb3_agent_roots` holding the agent's
    zip, or ``None`` (local disk only)."""
    for root, origin in sb3_agent_roots(data_dir):
        if _agent_paths(root, algo, env)["zip"].is_file():
            return root, origin
    return None


def sb3_agent_paths(algo: str, env: str, agents_dir: str | os.PathLike | None = None,
                    data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where the RL-Zoo layout keeps an agent: ``zip`` (``<algo>/<env>_1/<env>.zip``), ``config``
    (``<algo>/<env>_1/<env>/config.yml``) and ``vecnormalize`` (``.../vecnormalize.pkl``, optional), under
    ``agents_dir`` if given, else under the first root that holds the zip (:func:`find_sb3_agent`), else
    under the first root looked at (so that the caller can say where it is missing)."""
    if agents_dir:
        root = Path(agents_dir).expanduser().resolve()
    else:
        found = find_sb3_agent(algo, env, data_dir)
        root = found[0] if found else sb3_agent_roots(data_dir)[0][0]
    run = root / algo / f"{env}_1"
    return {"zip": run / f"{env}.zip", "config": run / env / "config.yml",
            "vecnormalize": run / env / "vecnormalize.pkl"}


def read_zoo_config(path: str | os.PathLike) -> dict:
    """An RL-Zoo ``config.yml`` as a dict. A yaml ``SafeLoader`` that also reads the zoo's
    ``!!python/object/apply:collections.OrderedDict`` tag (as a plain dict); no Python objects are built."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def ordered(loader, node):  # apply:OrderedDict takes one argument: a list of [key, value] pairs
        args = loader.construct_sequence(node, deep=True)
        return dict(args[0]) if args else {}

    Loader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", ordered)
    with open(path) as f:
        out = yaml.load(f, Loader=Loader)  # noqa: S506 - SafeLoader subclass with one data-only tag
    return out if isinstance(out, dict) else {}


class _VecNormalizeUnpickler(pickle.Unpickler):
    """Reads a zoo ``vecnormalize.pkl`` without running code from it: only the allow-listed globals
    resolve (anything else raises ``pickle.UnpicklingError``). Names pickled under the old ``gym``
    package resolve to ``gymnasium`` and ``numpy.core`` to ``numpy._core`` (this mapping lives in this
    unpickler only; ``sys.modules`` is not touched)."""

    _ALLOWED = {
        "stable_baselines3.common.vec_env.vec_normalize": {"VecNormalize"},
        "stable_baselines3.common.running_mean_std": {"RunningMeanStd"},
        "numpy": {"dtype", "ndarray"},
        "numpy._core.multiarray": {"_reconstruct", "scalar"},
        "numpy.random._pickle": {"__randomstate_ctor", "__generator_ctor", "__bit_generator_ctor"},
        "collections": {"OrderedDict"},
    }
    _SPACES = {"Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict", "Tuple"}

    def find_class(self, module: str, name: str) -> Any:
        if module == "gym" or module.startswith("gym."):
            module = "gymnasium" + module[3:]
        if module == "numpy.core" or module.startswith("numpy.core."):
            module = "numpy._core" + module[len("numpy.core"):]
        ok = name in self._ALLOWED.get(module, ()) or (
            (module == "gymnasium.spaces" or module.startswith("gymnasium.spaces.")) and name in self._SPACES)
        if not ok:
            raise pickle.UnpicklingError(f"vecnormalize.pkl references {module}.{name}, which is not on the "
                                         "allow-list of a VecNormalize statistics file; refusing to load it")
        return super().find_class(module, name)


@dataclass(frozen=True)
class ObsNormaliser:
    """VecNormalize's observation normalisation: ``clip((obs - mean) / sqrt(var + eps), -clip, clip)``.

    Attributes: ``mean``, ``var`` (obs_dim,) float64; ``epsilon``; ``clip_obs``.
    """

    mean: np.ndarray
    var: np.ndarray
    epsilon: float
    clip_obs: float

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Normalise raw observations ``(..., obs_dim)``; returns float64 of the same shape."""
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs, self.clip_obs)


def load_vecnormalize(path: str | os.PathLike) -> ObsNormaliser | None:
    """Observation statistics of a zoo ``vecnormalize.pkl`` (``None`` if it did not normalise obs).

    Raises:
        pickle.UnpicklingError: the file references a class outside the allow-list.
    """
    with open(path, "rb") as f:
        vn = _VecNormalizeUnpickler(f).load()
    if not getattr(vn, "norm_obs", False):
        return None
    rms = vn.obs_rms
    return ObsNormaliser(np.asarray(rms.mean, np.float64), np.asarray(rms.var, np.float64),
                         float(vn.epsilon), float(vn.clip_obs))


def _box_from_json(entry: dict, what: str, zip_path: Path):
    """A gymnasium Box from the readable fields (dtype, shape, low, high) of an SB3 zip's JSON entry."""
    from gymnasium import spaces

    try:
        shape = tuple(int(d) for d in entry["shape"])
        dtype = np.dtype(entry["dtype"])
        low, high = (np.array(str(entry[k]).replace("[", " ").replace("]", " ").split(), dtype=np.float64)
                     .reshape(shape) for k in ("low", "high"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{zip_path}: cannot read the {what} (a Box space is expected; got "
                         f"{entry.get(':type:', '?')}): {e}") from None
    return spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=shape, dtype=dtype)


class SB3Policy:
    """A trained SB3 agent as a behaviour policy: ``policy(obs) -> actions`` (float32).

    Call with ``obs`` of shape ``(obs_dim,)`` (returns ``(act_dim,)``) or ``(n, obs_dim)`` (returns
    ``(n, act_dim)``), raw env observations. For a stochastic policy, ``noise`` (same leading shape,
    last dim ``act_dim``, standard normal) fixes the sample; without it the noise comes from the
    policy's own RNG (``numpy.random.default_rng(seed)``). Actions lie within the env's action bounds.

    Attributes:
        name: ``sb3:<algo>/<env>``. algo, env: its parts. obs_dim, act_dim: sizes.
        deterministic: ``True`` for ARS (or when asked): mean/linear action, ``noise`` is ignored.
        batched: ``True``: several envs can share one call. normaliser: VecNormalize stats or ``None``.
        model: the loaded SB3 algorithm (``model.policy`` is the torch module).
    """

    batched = True

    def __init__(self, name: str, seed: int, deterministic: bool | None = None,
                 agents_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None):
        m = _SB3_NAME.match(name)
        if not m or m["algo"] not in SB3_ALGOS:
            raise KeyError(f"bad SB3 policy name {name!r}: expected 'sb3:<algo>/<Env>-v<N>' with algo in "
                           f"{sorted(SB3_ALGOS)}, e.g. 'sb3:sac/Hopper-v3'")
        self.name, self.algo, self.env = name, m["algo"], m["env"]
        paths = sb3_agent_paths(self.algo, self.env, agents_dir, data_dir)
        if not paths["zip"].is_file():
            looked = ([str(Path(agents_dir).expanduser().resolve())] if agents_dir else
                      [f"{r} (from {o})" for r, o in sb3_agent_roots(data_dir)])
            raise FileNotFoundError(
                f"SB3 agent for {name!r} not found: expected {paths['zip']} (RL Zoo layout "
                f"<agents_dir>/<algo>/<Env>-v3_1/<Env>-v3.zip; looked in {'; '.join(looked)}). Fix: run "
                f"`{sb3_fetch_command(name, data_dir)}` on a machine with internet (downloads hub repo "
                f"sb3/{self.algo}-{self.env}, verified), or set {SB3_AGENTS_DIR_ENV} to a directory with "
                "that layout (`git clone https://github.com/DLR-RM/rl-trained-agents`, or `python -m "
                f"rl_zoo3.load_from_hub --algo {self.algo} --env {self.env} -orga sb3 -f <agents_dir> "
                "--exp-id 1`) holding agent files you trust.")
        try:
            import importlib

            module, cls_name = SB3_ALGOS[self.algo]
            algo_cls = getattr(importlib.import_module(module), cls_name)
        except ImportError as e:
            raise ImportError(f"{name!r} needs stable-baselines3 and sb3-contrib: {_SB3_INSTALL} ({e})") from e
        self.model = self._load(algo_cls, paths)
        self.policy = self.model.policy
        self.policy.set_training_mode(False)
        space = self.policy.action_space
        self.obs_dim = int(np.prod(self.policy.observation_space.shape))
        self.act_dim = int(np.prod(space.shape))
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.deterministic = self.algo in _DETERMINISTIC_ALGOS if deterministic is None else bool(deterministic)
        if not self.deterministic and getattr(self.model, "use_sde", False):
            raise ValueError(f"{name!r} uses gSDE exploration, which this loader does not sample; "
                             "pass deterministic=True")
        self.normaliser = load_vecnormalize(paths["vecnormalize"]) if paths["vecnormalize"].is_file() else None
        self.rng = np.random.default_rng(seed)

    def _load(self, algo_cls, paths: dict[str, Path]):
        """``algo_cls.load`` with every cloudpickled field of the zip replaced (nothing is unpickled)."""
        zpath = paths["zip"]
        with zipfile.ZipFile(zpath) as z:
            data = json.loads(z.read("data"))
        pol = "MlpPolicy"
        if paths["config"].is_file():
            pol = str(read_zoo_config(paths["config"]).get("policy", pol))
        if pol not in algo_cls.policy_aliases:
            raise ValueError(f"{paths['config']}: policy {pol!r} is not one of {self.algo}'s "
                             f"{sorted(algo_cls.policy_aliases)}")
        obs_space = _box_from_json(data["observation_space"], "observation space", zpath)
        act_space = _box_from_json(data["action_space"], "action space", zpath)
        custom: dict[str, Any] = {"observation_space": obs_space, "action_space": act_space,
                                 "policy_class": algo_cls.policy_aliases[pol]}
        for key, value in data.items():  # every other serialised field: a harmless placeholder
            if key not in custom and isinstance(value, dict) and ":serialized:" in value:
                custom[key] = _placeholder(key, act_space)
        kwargs = {"buffer_size": 1} if "buffer_size" in data else {}  # no 1M-row replay buffer
        return algo_cls.load(zpath, device="cpu", custom_objects=custom, **kwargs)

    def reset(self) -> None:
        """No per-episode state (kept for the collector's interface)."""

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Actions for raw observations ``(obs_dim,)`` or ``(n, obs_dim)``; float32 ``(act_dim,)`` or
        ``(n, act_dim)`` within the action bounds. ``noise``: standard-normal draws of the same leading
        shape (ignored when deterministic); see the class docstring."""
        import torch

        obs = np.asarray(obs, dtype=np.float64)
        single = obs.ndim == 1
        batch = obs.reshape(-1, self.obs_dim)
        if self.normaliser is not None:
            batch = self.normaliser(batch)
        batch = batch.astype(np.float32)
        if self.deterministic:
            actions, _ = self.policy.predict(batch, deterministic=True)
            actions = np.asarray(actions, dtype=np.float64).reshape(len(batch), self.act_dim)
        else:
            if noise is None:
                noise = self.rng.standard_normal((len(batch), self.act_dim))
            z = np.asarray(noise, dtype=np.float64).reshape(len(batch), self.act_dim)
            with torch.no_grad():
                x = torch.as_tensor(batch)
                if hasattr(self.policy, "actor"):  # SAC / TQC: squashed Gaussian
                    mean, log_std, _ = self.policy.actor.get_action_dist_params(x)
                    u = mean.double().numpy() + np.exp(log_std.double().numpy()) * z
                    a = np.tanh(u)
                    actions = self._low + 0.5 * (a + 1.0) * (self._high - self._low)
                else:  # TRPO (ActorCriticPolicy): diagonal Gaussian, clipped
                    dist = self.policy.get_distribution(x).distribution
                    actions = dist.mean.double().numpy() + dist.stddev.double().numpy() * z
        actions = np.clip(actions, self._low, self._high).astype(np.float32)
        return actions[0] if single else actions


def sb3_fetch_command(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """The one command that downloads agent ``name`` (``sb3:<algo>/<Env>``) into ``data_dir``'s cache."""
    return f"lamo-trial fetch {name}" + (f" --data-dir {data_dir}" if data_dir is not None else "")


def fetch_sb3_agent(name: str, data_dir: str | os.PathLike, progress: bool = True, log=print) -> Path:
    """Download agent ``name`` (``sb3:<algo>/<Env>-v<N>``) from hub repo ``sb3/<algo>-<Env>-v<N>`` into the
    cache ``<data_dir>/sb3_agents`` and return that root.

    The files are fetched and checked against the hub's published sizes / hashes
    (:func:`trainers.downloads.fetch_hub_files`) into a temporary root, the agent is loaded from there
    with stable-baselines3 (:class:`SB3Policy`, no code from the files runs), and only then is its run
    directory ``<algo>/<Env>_1`` moved into the cache (:func:`trainers.util.atomic_path`).

    Raises:
        KeyError: a malformed name. trainers.downloads.DownloadError: the hub is unreachable or a file
            does not match. ValueError / OSError: the downloaded agent does not load (nothing is cached).
    """
    import shutil
    import uuid

    from trainers.downloads import fetch_hub_files, sb3_files
    from trainers.util import atomic_path

    m = _SB3_NAME.match(name)
    if not m or m["algo"] not in SB3_ALGOS:
        raise KeyError(f"bad SB3 policy name {name!r}: expected 'sb3:<algo>/<Env>-v<N>' with algo in {sorted(SB3_ALGOS)}")
    algo, env = m["algo"], m["env"]
    cache = sb3_cache_dir(data_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    tmp_root = cache / f".fetch-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fetch_hub_files(sb3_files(algo, env), tmp_root, progress=progress, log=log)
        SB3Policy(name, seed=0, agents_dir=tmp_root)  # loads with stable-baselines3 or raises
        with atomic_path(cache / algo / f"{env}_1") as tmp:
            os.replace(tmp_root / algo / f"{env}_1", tmp)
        for manifest in tmp_root.glob("*.fetched.json"):
            os.replace(manifest, cache / manifest.name)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    log(f"[fetch] {name}: verified and loaded with stable-baselines3 -> {cache / algo / f'{env}_1'}")
    return cache


def _placeholder(key: str, act_space) -> Any:
    """Stand-ins for the training-only fields an SB3 zip stores with cloudpickle."""
    if key in ("lr_schedule", "delta_std_schedule"):
        return _constant_zero
    if key == "learning_rate":
        return 0.0
    if key == "train_freq":
        from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

        return TrainFreq(1, TrainFrequencyUnit.STEP)
    if key == "target_entropy":
        return -float(np.prod(act_space.shape))
    return None


def _constant_zero(_progress: float) -> float:
    return 0.0


def get_behaviour_policy(name: str, seed: int, deterministic: bool | None = None,
                         agents_dir: str | os.PathLike | None = None,
                         data_dir: str | os.PathLike | None = None):
    """Build the behaviour policy ``name`` with its own RNG seeded by ``seed``.

    Args:
        name: a scripted policy of a domain (``reacher2d-ik-expert``, ``reacher2d-ik-medium``,
            ``kitchen-scripted-complete``, ``kitchen-scripted-partial``, ...) or an SB3 agent
            ``sb3:<algo>/<Env>-v3`` (algo in ``sac``, ``tqc``, ``ars``, ``trpo``).
        seed: seeds the policy's RNG (scripted perturbations; SB3 action noise when none is passed).
        deterministic: SB3 only: ``None`` = the documented default (sample, except ARS).
        agents_dir: SB3 only: the agents directory (default :func:`default_sb3_agents_dir`); any other
            directory is an explicit opt-in to use the agents found there.
        data_dir: SB3 only: the data directory whose cache ``sb3_agents/`` is searched (after
            ``$LAMO_SB3_AGENTS_DIR``, before the mirror).

    Raises:
        KeyError: ``name`` is unknown or malformed; the message lists the known names.
        FileNotFoundError: the SB3 agent's zip is not in ``agents_dir``; the message names the expected
            path and how to get the RL Zoo agents.
        ImportError: stable-baselines3 / sb3-contrib are not installed.
    """
    if name.startswith(SB3_PREFIX):
        return SB3Policy(name, seed, deterministic=deterministic, agents_dir=agents_dir, data_dir=data_dir)
    from trainers.domains.base import domains

    known: list[str] = []
    for domain in domains().values():
        policy = domain.behaviour_policy(name, seed, data_dir)
        if policy is not None:
            return policy
        known += domain.behaviour_policy_names()
    raise KeyError(f"unknown behaviour policy {name!r}.{did_you_mean(name, known)} Known: "
                   f"{', '.join(sorted(known))} and 'sb3:<algo>/<Env>-v3' "
                   f"(algo in {', '.join(sorted(SB3_ALGOS))})")
