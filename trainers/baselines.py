"""Value-based and imitation baselines (CQL, IQL, TD3+BC, BC; on Atari discrete CQL and BC,
:class:`DiscreteD3rlpyLearner`) from d3rlpy, behind the
:class:`trainers.learner.Learner` interface, so they run in the same trial loop, checkpoint layout,
reporters and MLflow contract as LaMo and DT.

d3rlpy (github.com/takuseno/d3rlpy, pinned 2.8.0) provides the algorithms; this module only feeds them.
Our loop drives every gradient step through d3rlpy's ``algo.update(TransitionMiniBatch)``; d3rlpy's own
``fit`` loop, dataset classes, loggers and evaluators are not used:

* **data**: the trial's seeded trajectory subset (:func:`trainers.learner.load_trajectories`, the same
  ``data_subset_hash`` as DT/LaMo for a task, sample ratio and seed), flattened to transitions
  ``(s_t, a_t, r_t, s_{t+1}, a_{t+1}, terminal_t)`` within each trajectory. A trajectory's last step is
  kept (with ``terminal = 1``) when the dataset marks it terminal; when the episode was cut by a time
  limit it is dropped, since its next state is not in the trajectory list (one transition per
  trajectory; docs/deviations.md).
* **states**: standardised with the subset's mean and std (+1e-6), the rule DT and LaMo use, in training
  and in evaluation (no d3rlpy observation scaler).
* **rewards**: raw, or with ``baseline.reward_scale: return_range_1000`` d3rlpy's
  ``ReturnBasedRewardScaler(multiplier=1000)`` with the subset's max/min trajectory return.
* **batches**: ``train.batch_size`` transitions drawn uniformly with replacement by a NumPy ``PCG64``
  generator seeded with the trial seed, its state checkpointed.
* **evaluation**: :func:`trainers.evaluate.evaluate_policy`: the same environments, env seeds, episode
  count, horizon and D4RL-normalised score as DT/LaMo, keys ``eval/policy/<field>``
  (:func:`trainers.contract.eval_key` with ``target=None``); the policy is d3rlpy's deterministic
  ``predict`` (the mean action of a stochastic actor).
* **state**: every d3rlpy module (networks, target networks, optimisers and their LR schedulers), the
  update counter and the batch generator. d3rlpy draws its own noise (CQL's sampled actions, TD3's
  target smoothing, IQL/CQL actor sampling) from the global torch RNG, which the trial checkpoint
  stores; on CPU a resumed trial therefore continues bit-exactly (``tests/test_baselines.py::test_resume_is_bit_exact``).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch

from trainers import contract
from trainers.config import BASELINE_SETTINGS, AtariSettings, TrialConfig
from trainers.domains.atari.data import FRAME_SHAPE, STACK, stack_frames
from trainers.data.trajectories import TrajectorySet
from trainers.evaluate import evaluate_discrete_policy, evaluate_policy

#: ``baseline.algo`` -> d3rlpy config class name (``d3rlpy.algos``): each settings class's ``d3rlpy_config``
#: (:mod:`trainers.baseline_settings`).
D3RLPY_CONFIGS = {algo: cls.d3rlpy_config for algo, cls in BASELINE_SETTINGS.items() if cls.d3rlpy_config}


def transitions(data: TrajectorySet, terminals: list[bool]) -> dict[str, np.ndarray]:
    """The subset as flat transition arrays (module docstring for the last-step rule).

    Args:
        data: the trajectory subset (``observations (T, obs_dim)``, ``actions (T, act_dim)``,
            ``rewards (T,)`` raw).
        terminals: per trajectory of ``data``, whether its last step ended the episode (a fall), as
            opposed to a time-limit cut.

    Returns:
        float32 ``observations / next_observations (N, obs_dim)`` (standardised with the subset's
        statistics), ``actions / next_actions (N, act_dim)``, ``rewards (N, 1)`` (raw),
        ``terminals (N, 1)`` (0/1).
    """
    cols: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "nobs", "nact", "term")}
    for traj, term in zip(data.trajectories, terminals):
        o, a, r = traj["observations"], traj["actions"], traj["rewards"]
        n = len(r) if term else len(r) - 1
        if n <= 0:
            continue
        nxt = np.minimum(np.arange(1, n + 1), len(r) - 1)  # a terminal step's next state is masked out
        cols["obs"].append(o[:n])
        cols["act"].append(a[:n])
        cols["rew"].append(r[:n])
        cols["nobs"].append(o[nxt])
        cols["nact"].append(a[nxt])
        t = np.zeros(n, dtype=np.float32)
        if term:
            t[-1] = 1.0
        cols["term"].append(t)
    if not cols["obs"]:
        raise ValueError("the data subset has no transition with a next state (every trajectory has one "
                         "step); raise sample_ratio or use a dataset with longer episodes")
    mean, std = data.state_mean, data.state_std
    cat = {k: np.concatenate(v).astype(np.float32) for k, v in cols.items()}
    return {"observations": (cat["obs"] - mean) / std, "actions": cat["act"], "rewards": cat["rew"][:, None],
            "next_observations": (cat["nobs"] - mean) / std, "next_actions": cat["nact"],
            "terminals": cat["term"][:, None]}


def d3rlpy_algorithm(cfg: TrialConfig, data, device: torch.device):
    """Build the d3rlpy algorithm of ``cfg.baseline`` (its settings class's ``d3rlpy_config``,
    :mod:`trainers.baseline_settings`) with its networks and optimisers created for the task's shapes.

    The set hyperparameters of ``cfg.baseline`` (``cfg.baseline.d3rlpy_kwargs()``) are passed by name; the
    others keep d3rlpy's defaults; the fields the settings class lists in ``builds`` become d3rlpy objects here.
    ``data``: the :class:`TrajectorySet` (continuous baselines) or the
    :class:`trainers.domains.atari.data.AtariSubset` (discrete ones, which get ``PixelEncoderFactory()``,
    ``PixelObservationScaler()``, ``AdamFactory(eps=baseline.adam_eps)``, ``QRQFunctionFactory(n_quantiles)``
    and ``ClipRewardScaler(-1, 1)`` as the baseline asks; inputs ``(4, 84, 84)``, ``task.act_dim`` actions).
    """
    import d3rlpy

    b = cfg.baseline
    cls = getattr(d3rlpy.algos, b.d3rlpy_config)
    fields = {f.name for f in dataclasses.fields(cls)}
    kw: dict = {"batch_size": cfg.train.batch_size, **b.d3rlpy_kwargs()}
    if b.discrete_actions:
        kw["encoder_factory"] = d3rlpy.models.PixelEncoderFactory()
        kw["observation_scaler"] = d3rlpy.preprocessing.PixelObservationScaler()
        if b.adam_eps is not None:
            kw["optim_factory"] = d3rlpy.optimizers.AdamFactory(eps=b.adam_eps)
        if getattr(b, "n_quantiles", None) is not None:  # discrete CQL only
            kw["q_func_factory"] = d3rlpy.models.QRQFunctionFactory(n_quantiles=b.n_quantiles)
        if b.reward_scale == "clip":
            kw["reward_scaler"] = d3rlpy.preprocessing.ClipRewardScaler(-1.0, 1.0)
        algo = cls(**kw).create(device="cuda:0" if device.type == "cuda" else "cpu:0")
        algo.create_impl((STACK, *FRAME_SHAPE), cfg.task_spec.act_dim)
        return algo
    if b.hidden_units is not None:
        enc = d3rlpy.models.VectorEncoderFactory(list(b.hidden_units))
        kw |= {f: enc for f in fields if f.endswith("encoder_factory")}
    if getattr(b, "actor_dropout", None) is not None:  # IQL only; d3rlpy 2.8.0 VectorEncoder: Linear -> ReLU -> Dropout per hidden layer
        kw["actor_encoder_factory"] = d3rlpy.models.VectorEncoderFactory(
            list(b.hidden_units) if b.hidden_units is not None else [256, 256], dropout_rate=b.actor_dropout)
    if b.reward_scale == "return_range_1000":
        returns = [float(t["rewards"].sum()) for t in data.trajectories]
        span = max(returns) - min(returns)
        kw["reward_scaler"] = d3rlpy.preprocessing.ReturnBasedRewardScaler(
            return_max=max(returns), return_min=min(returns) - (0.0 if span > 0 else 1.0), multiplier=1000.0)
    if getattr(b, "actor_cosine_schedule", False):  # the actor-critic baselines (BC has one optimiser)
        sched = d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=cfg.train.steps)
        kw["actor_optim_factory"] = d3rlpy.optimizers.AdamFactory(lr_scheduler_factory=sched)
    algo = cls(**kw).create(device="cuda:0" if device.type == "cuda" else "cpu:0")
    algo.create_impl((cfg.task_spec.obs_dim,), cfg.task_spec.act_dim)
    return algo


class D3rlpyLearner:
    """A d3rlpy baseline as a :class:`trainers.learner.Learner` (module docstring).

    ``train_step`` returns d3rlpy's loss dict (``critic_loss``, ``actor_loss``, ``conservative_loss``,
    ``loss``, ...; floats, in d3rlpy's units). Keys an algorithm reports only on some steps (TD3+BC's
    delayed actor update) repeat their latest value so that the logged means are per actual update.
    """

    def __init__(self, cfg: TrialConfig, data: TrajectorySet, terminals: list[bool], device: torch.device):
        from d3rlpy.dataset import TransitionMiniBatch

        self.cfg, self.data, self.device = cfg, data, device
        self._batch_cls = TransitionMiniBatch
        self.arrays = transitions(data, terminals)
        self.algo = d3rlpy_algorithm(cfg, data, device)
        self.rng = np.random.Generator(np.random.PCG64(cfg.seed))
        self._last: dict[str, float] = {}

    @property
    def _modules(self) -> dict:
        return self.algo.impl.modules.create_checkpointer(self.algo.impl.device).modules

    def train_step(self) -> dict[str, float]:
        """One d3rlpy ``update`` on ``train.batch_size`` transitions drawn uniformly with replacement
        (NumPy ``PCG64`` seeded by the trial seed). Returns d3rlpy's losses of the step by its names
        (``critic_loss``, ``actor_loss``, ``loss``, ...); a loss not computed in this step (TD3+BC's
        delayed actor) keeps its last value."""
        a = self.arrays
        idx = self.rng.integers(0, len(a["rewards"]), size=self.cfg.train.batch_size)
        n = len(idx)
        batch = self._batch_cls(
            observations=a["observations"][idx], actions=a["actions"][idx], rewards=a["rewards"][idx],
            next_observations=a["next_observations"][idx], next_actions=a["next_actions"][idx],
            terminals=a["terminals"][idx], intervals=np.ones((n, 1), dtype=np.float32), transitions=[])
        out = {k: float(v) for k, v in self.algo.update(batch).items()}
        self._last |= out
        return dict(self._last)

    def current_lr(self) -> float:
        """Learning rate of the actor (BC: of its only optimiser)."""
        mods = self._modules
        opt = mods.get("actor_optim") or mods.get("optim")
        return float(opt.optim.param_groups[0]["lr"])

    def evaluate(self) -> dict[str, float]:
        """:func:`trainers.evaluate.evaluate_policy` with d3rlpy's greedy ``predict`` on standardised states:
        ``eval/policy/<field>`` keys (raw return, length, normalised score 0-100)."""
        cfg = self.cfg
        return evaluate_policy(self.algo.predict, cfg.task_spec, cfg.eval.episodes, self.data.state_mean,
                               self.data.state_std, seed=cfg.seed, max_episode_steps=cfg.eval.max_episode_steps)

    def info(self) -> dict[str, object]:
        """Data sizes (``data/...``; ``data/transitions_used`` = transitions of the subset), the number of
        scalars in every d3rlpy module (``params/total``) and the device."""
        total = sum(p.numel() for m in self._modules.values() if isinstance(m, torch.nn.Module)
                    for p in m.parameters())
        return {**{f"data/{k}": v for k, v in self.data.summary().items()},
                "data/transitions_used": self.transitions_used,
                "params/total": int(total), contract.DEVICE: str(self.device)}

    @property
    def transitions_used(self) -> int:
        """Transitions of the subset the batches are drawn from."""
        return int(len(self.arrays["rewards"]))

    def state_dict(self) -> dict:
        """d3rlpy's own checkpoint of every module and optimiser (bytes), its gradient-step count, the batch
        RNG's state and the last losses: enough to continue bit-exactly on the same device."""
        buf = io.BytesIO()
        self.algo.impl.save_model(buf)  # every module and optimiser, d3rlpy's own checkpoint format
        return {"d3rlpy": buf.getvalue(), "grad_step": int(self.algo.grad_step),
                "batch_rng": self.rng.bit_generator.state, "last_losses": dict(self._last)}

    def load_state_dict(self, state: dict, where: Path) -> None:
        """Restore :meth:`state_dict`'s output (read from checkpoint directory ``where``).

        Raises:
            ValueError: the stored d3rlpy state does not fit this baseline (message names the fix).
        """
        try:
            self.algo.impl.load_model(io.BytesIO(state["d3rlpy"]))
        except (KeyError, RuntimeError) as e:
            raise ValueError(f"{where}: the d3rlpy state does not fit baseline {self.cfg.baseline.algo!r} "
                             f"({e}); delete the checkpoint directory to start the trial afresh") from None
        self.algo.set_grad_step(state["grad_step"])
        self.rng.bit_generator.state = state["batch_rng"]
        self._last = dict(state["last_losses"])


class DiscreteD3rlpyLearner(D3rlpyLearner):
    """d3rlpy's DiscreteCQL / DiscreteBC on an Atari task (presets ``cql`` / ``bc`` there) as a
    :class:`trainers.learner.Learner`; checkpoint state, learning rate and update logic are
    :class:`D3rlpyLearner`'s.

    * **data**: the trial's :class:`trainers.domains.atari.data.AtariSubset` (LaMo's length-weighted trajectory
      subset: the same ``data_subset_hash`` as the DT / LaMo Atari trials of that task, ratio and seed).
      Transitions are every step of the chosen trajectories; a trajectory's last step is terminal
      (``terminal = 1``; the dataset ends an episode at game over, at the 27,000-step cap or where
      collection stopped; docs/deviations.md). Stored: the dataset's uint8 single frames once, plus three
      ``(n,)`` int64 index arrays (step, trajectory start, last flag). d3rlpy's replay buffer is not used.
    * **batches**: ``train.batch_size`` steps drawn uniformly with replacement (NumPy ``PCG64`` seeded with
      the trial seed); states and next states stacked on the fly (:func:`trainers.domains.atari.data.stack_frames`)
      and cast to float32 (``(B, 4, 84, 84)``, values 0-255: d3rlpy's ``TransitionMiniBatch`` takes
      float32 only; its ``PixelObservationScaler`` divides by 255 inside the update), raw rewards
      (clipped by d3rlpy's reward scaler when the recipe says so).
    * **evaluation**: :func:`trainers.evaluate.evaluate_discrete_policy`, greedy ``predict``, keys
      ``eval/policy/<field>``, gamer-normalised.
    """

    def __init__(self, cfg: TrialConfig, data, device: torch.device):
        from d3rlpy.dataset import TransitionMiniBatch

        self.cfg, self.data, self.device = cfg, data, device
        self._batch_cls = TransitionMiniBatch
        self.steps = np.concatenate([np.arange(s, s + n) for s, n in zip(data.starts, data.lengths)]).astype(np.int64)
        self.step_start = np.repeat(data.starts, data.lengths).astype(np.int64)
        self.is_last = np.zeros(len(self.steps), dtype=bool)
        self.is_last[np.cumsum(data.lengths) - 1] = True
        self.algo = d3rlpy_algorithm(cfg, data, device)
        self.rng = np.random.Generator(np.random.PCG64(cfg.seed))
        self._last: dict[str, float] = {}

    def train_step(self) -> dict[str, float]:
        """One d3rlpy ``update`` on ``train.batch_size`` steps of the subset (frames stacked on the fly,
        class docstring). Returns d3rlpy's losses by its names."""
        ds = self.data.dataset
        i = self.rng.integers(0, len(self.steps), size=self.cfg.train.batch_size)
        g, st, last = self.steps[i], self.step_start[i], self.is_last[i]
        nxt = np.where(last, g, g + 1)  # a terminal step's next state is masked out by d3rlpy
        col = np.ones((len(i), 1), dtype=np.float32)
        batch = self._batch_cls(
            observations=stack_frames(ds.frames, g, st).astype(np.float32),
            actions=ds.actions[g].astype(np.float32)[:, None], rewards=ds.rewards[g].astype(np.float32)[:, None],
            next_observations=stack_frames(ds.frames, nxt, st).astype(np.float32),
            next_actions=ds.actions[nxt].astype(np.float32)[:, None], terminals=last.astype(np.float32)[:, None],
            intervals=col, transitions=[])
        out = {k: float(v) for k, v in self.algo.update(batch).items()}
        self._last |= out
        return dict(self._last)

    def evaluate(self) -> dict[str, float]:
        """:func:`trainers.evaluate.evaluate_discrete_policy` with d3rlpy's greedy ``predict``:
        ``eval/policy/<field>`` keys (raw return, length, gamer-normalised score)."""
        cfg = self.cfg
        return evaluate_discrete_policy(self.algo.predict, cfg.task_spec, cfg.eval.episodes, seed=cfg.seed,
                                        max_episode_steps=cfg.eval.max_episode_steps,
                                        eval_env=(cfg.atari or AtariSettings()).eval_env)

    @property
    def transitions_used(self) -> int:
        """Steps of the chosen trajectories (every one is a transition)."""
        return int(len(self.steps))


def make_baseline_learner(cfg: TrialConfig, data_dir: Path, device: torch.device) -> D3rlpyLearner:
    """A vector-state domain's baseline learner (:meth:`trainers.domains.state.StateDomain.baseline_learner`):
    load the trial's subset (with each kept trajectory's terminal flag) and build the
    :class:`D3rlpyLearner`.

    Raises:
        trainers.data.d4rl_hdf5.DatasetError: bad dataset; ValueError: a subset without transitions.
    """
    from trainers.data.loaders import load_trajectory_list

    everything = load_trajectory_list(cfg, data_dir)
    data = TrajectorySet.from_trajectories(everything, cfg.sample_ratio, cfg.seed)
    terminals = []
    for i in data.indices:
        t = everything[int(i)]
        flags = t.get("terminals", t.get("dones"))
        # no flags: an episode shorter than the task's horizon ended by termination
        terminals.append(bool(flags[-1]) if flags is not None else len(t["rewards"]) < cfg.task_spec.max_ep_len)
    return D3rlpyLearner(cfg, data, terminals, device)
