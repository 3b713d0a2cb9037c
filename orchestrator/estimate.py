"""A dry-run ESTIMATE of a sweep's GPU-hours and wall time on N GPUs (``lamo-sweep FILE --dry-run``).

Nothing here is a measurement. The model:

1. **FLOPs per training step** of a sequence-model trial, from its config and task shape
   (:func:`train_step_flops`): the transformer trunk's matrix multiplies, ``2 * N`` FLOPs per token
   forward with ``N = n_layer * (4 d^2 + 2 d n_inner)`` (Kaplan et al. 2020, "Scaling Laws for Neural
   Language Models", arXiv 2001.08361, §2.1, Table 1), plus attention scores ``4 * n_layer * T * d`` per
   token, on ``batch * 3K`` tokens (a (return, state, action) triple per step: Chen et al. 2021, Decision
   Transformer, arXiv 2106.01345, §3); with ``language.weight > 0`` LaMo's language loss adds
   ``language.batch_size * block_size`` tokens through the trunk and the ``d x vocab`` head (Shi et al.
   2023, LaMo, arXiv 2310.20587, §4.3). Backward costs 2x forward when the trunk's weights train (DT,
   full fine-tuning) and 1x when they are frozen (LoRA, frozen: only activation gradients flow through
   the trunk, Hu et al. 2021, LoRA, arXiv 2106.09685, §4.2 notes the saved weight gradients).
2. **Seconds per FLOP** (:func:`calibrate_cpu`): each cited CPU row of docs/benchmarks.md gives a
   measured rate for a known config; its FLOPs per step over its seconds per step is an achieved FLOP/s;
   the median over the rows is the CPU rate. On a GPU there is no recorded number yet, so the rate is an
   assumption (:data:`GPU_ASSUMED_FLOPS`) until ``benchmarks/gpu_check.sh`` has written a JSON with the
   measured GPT-2-small steps (pass it as ``--calibration``).
3. **Evaluation**: every round rolls out ``episodes x targets`` episodes, each assumed to run to its
   horizon (an upper bound; early falls end episodes sooner), one forward of the whole ``3K`` window per
   environment step (the evaluation re-encodes the window, docs/benchmarks.md "Trainer and evaluation"),
   plus :data:`ENV_STEP_S` per environment step.
4. **Baselines** (d3rlpy MLPs): their recorded CPU steps per CPU-second are used as is on both devices
   (small MLPs are latency-bound; no GPU speed-up is assumed).
5. **Packing and scheduling**: ``k = floor(1 / gpu)`` trials share one GPU; together they run ``g`` times
   as fast as one alone (``g = 1`` assumed; the ``packing`` entry of a gpu_check JSON replaces it). Trials
   are placed longest first on ``N * k`` GPU slots (CPU-only trials on CPU slots), capped by
   ``max_concurrent_trials``; the wall time is the longest slot plus start-up costs.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from trainers.config import TrialConfig
from trainers.domains.base import domain_of

#: Seconds per environment step of a MuJoCo env (docs/benchmarks.md, "Trainer and evaluation": "what is
#: left per environment is env.step (~0.1 ms for both MuJoCo envs)").
ENV_STEP_S = 1e-4
#: Assumed achieved FP32 FLOP/s of one GPU for these small-batch training steps: 30 % of an H100 SXM's
#: 67 TFLOP/s FP32 peak (NVIDIA H100 Tensor Core GPU datasheet). NOT measured: replaced by a gpu_check JSON.
GPU_ASSUMED_FLOPS = 0.3 * 67e12
#: Assumed floor of one GPU training step (kernel launches of forward, backward and AdamW); NOT measured.
GPU_STEP_FLOOR_S = 0.010
#: Assumed aggregate throughput of k trials packed on one GPU relative to one alone; NOT measured.
PACKING_GAIN_ASSUMED = 1.0
#: Start-up per trial process (torch, d3rlpy, the LM; docs/benchmarks.md "Baselines": "~20 s of process
#: start per trial") and per sweep (Ray start etc.; docs/benchmarks.md "Trainer and evaluation": "lamo-sweep
#: start -> first training step ... 35.1 s").
TRIAL_START_S, SWEEP_START_S = 20.0, 35.1


#: Recorded CPU training rates used as calibration (docs/benchmarks.md; 1 torch thread):
#: (sweep file, variant, task, sample ratio, train steps per second, the section and row cited).
CPU_CALIBRATION_ROWS: tuple[tuple[str, str, str, float, float, str], ...] = (
    ("sweeps/mujoco_cpu.yaml", "lamo", "hopper-medium", 0.01, 1.78,
     'docs/benchmarks.md "Baselines: per-method step and evaluation cost", row lamo, train steps per CPU-s'),
    ("sweeps/mujoco_cpu.yaml", "dt", "hopper-medium", 0.01, 3.76,
     'docs/benchmarks.md "Baselines: per-method step and evaluation cost", row dt, train steps per CPU-s'),
    ("sweeps/quickstart.yaml", "lamo", "reacher2d-medium", 1.0, 7.8,
     'docs/benchmarks.md "Trainer and evaluation", row reacher2d-medium lamo, train steps/s'),
    ("sweeps/quickstart.yaml", "dt", "reacher2d-medium", 1.0, 15.0,
     'docs/benchmarks.md "Trainer and evaluation", row reacher2d-medium dt, train steps/s'),
)

#: Recorded CPU steps per CPU-second of the d3rlpy baselines (docs/benchmarks.md, "Baselines" table for the
#: MuJoCo ones; "Discrete CQL and BC" table for the Atari ones).
BASELINE_STEPS_PER_S = {"cql": 4.85, "iql": 71.2, "td3bc": 94.4, "bc": 367.0, "discrete_cql": 8.77,
                        "discrete_bc": 8.78}

#: Shapes of hub LMs (n_layer, n_embd, n_inner, vocab): GPT-2's model card / config.json (Radford et al. 2019).
HUB_LM_SHAPES = {"gpt2": (12, 768, 3072, 50257), "gpt2-medium": (24, 1024, 4096, 50257),
                 "gpt2-large": (36, 1280, 5120, 50257), "gpt2-xl": (48, 1600, 6400, 50257),
                 # SmolLM2-135M (Hugging Face HuggingFaceTB/SmolLM2-135M config.json: 30 layers, hidden 576,
                 # 9 query / 3 key-value heads, SwiGLU MLP 1,536 wide, vocabulary 49,152). Its per-layer
                 # matrices (q, o 576^2; k, v 576 x 192; gate, up, down 576 x 1,536: 3,538,944 weights)
                 # written in Trunk's GPT-2 form 4 d^2 + 2 d n_inner, i.e. an equivalent n_inner of 1,920.
                 "smollm2-135m": (30, 576, 1920, 49152)}


@dataclass(frozen=True)
class Trunk:
    """A transformer trunk: layers, width, MLP width, vocabulary (0: no language head), ``known`` False
    when the LM's shape was assumed (an unknown local LM directory)."""

    n_layer: int
    d: int
    n_inner: int
    vocab: int
    known: bool = True

    @property
    def matmul_params(self) -> int:
        """Weights of the trunk's matrix multiplies: ``n_layer * (4 d^2 + 2 d n_inner)``."""
        return self.n_layer * (4 * self.d * self.d + 2 * self.d * self.n_inner)

    def forward_flops(self, tokens: int, seq_len: int) -> float:
        """Forward FLOPs of ``tokens`` tokens in sequences of ``seq_len``: ``2 N`` per token plus the
        attention scores (``4 n_layer seq_len d``, QK^T and AV, half of it masked but computed)."""
        return tokens * (2 * self.matmul_params + 4 * self.n_layer * seq_len * self.d)


def trunk_of(cfg: TrialConfig) -> Trunk:
    """The trunk a sequence-model trial trains: ``model.arch`` without an LM (DT), else the LM's shape
    (:data:`HUB_LM_SHAPES` or the project's own recipe, ``trainers.lm.pretrain.LM_RECIPES``), cut to
    ``model.n_blocks``; an unknown LM is assumed GPT-2-small-shaped (``known=False``)."""
    m = cfg.model
    if m.lm is None:
        a = m.arch
        return Trunk(a.n_layer, a.n_embd, a.n_inner or 4 * a.n_embd, 0)
    from trainers.lm.pretrain import LM_RECIPES

    if m.lm in LM_RECIPES:
        r = LM_RECIPES[m.lm]
        t = Trunk(r.n_layer, r.n_embd, 4 * r.n_embd, r.vocab_size)
    elif m.lm in HUB_LM_SHAPES:
        t = Trunk(*HUB_LM_SHAPES[m.lm])
    else:
        t = Trunk(*HUB_LM_SHAPES["gpt2"], known=False)
    if m.n_blocks is not None:
        t = Trunk(min(t.n_layer, m.n_blocks), t.d, t.n_inner, t.vocab, t.known)
    return t


def _trains_trunk(cfg: TrialConfig) -> bool:
    """Whether the trunk's weights get gradients: DT (no LM) and full fine-tuning; LoRA and frozen do not."""
    return cfg.model.lm is None or cfg.model.finetune == "full"


def train_step_flops(cfg: TrialConfig, trunk: Trunk | None = None) -> float:
    """FLOPs of one training step of a sequence-model trial (forward + backward; optimiser excluded).
    ``trunk`` replaces :func:`trunk_of` (a benchmark's LM directory whose shape the name does not tell).

    Raises:
        ValueError: ``cfg`` is a d3rlpy baseline (``baseline.algo != "none"``): no FLOP model.
    """
    if cfg.baseline.algo != "none":
        raise ValueError(f"{cfg.slug()}: a d3rlpy baseline has no FLOP model; see BASELINE_STEPS_PER_S")
    t, spec, K, B = trunk or trunk_of(cfg), cfg.task_spec, cfg.K, cfg.train.batch_size
    fwd = t.forward_flops(B * 3 * K, 3 * K)
    fwd += B * K * domain_of(spec).step_embedding_flops(cfg, t.d)  # the domain's encoders and action head
    lang = 0.0
    if cfg.language_loss_on:
        toks = cfg.language.batch_size * cfg.language.block_size
        lang = t.forward_flops(toks, cfg.language.block_size) + 2 * toks * t.d * t.vocab
    total = fwd + lang
    return total * (3 if _trains_trunk(cfg) else 2)


def eval_round(cfg: TrialConfig) -> tuple[int, float]:
    """``(environment steps, forward FLOPs)`` of one evaluation round, every episode at its horizon."""
    spec = cfg.task_spec
    targets = len(cfg.eval.rtg_targets or spec.rtg_targets) if cfg.baseline.algo == "none" else 1
    horizon = cfg.eval.max_episode_steps or spec.max_ep_len
    env_steps = cfg.eval.episodes * targets * horizon
    if cfg.baseline.algo != "none":
        return env_steps, 0.0
    t, K = trunk_of(cfg), cfg.K
    per = t.forward_flops(3 * K, 3 * K) + K * domain_of(spec).step_embedding_flops(cfg, t.d)
    return env_steps, env_steps * per


def eval_rounds(cfg: TrialConfig) -> int:
    """Evaluations of a trial: every ``eval.every_steps`` and after the last step (trainers/train.py)."""
    return cfg.train.steps // cfg.eval.every_steps + (1 if cfg.train.steps % cfg.eval.every_steps else 0)


@dataclass
class Calibration:
    """Achieved rates the estimate uses, each with where it comes from."""

    cpu_flops: float  # per CPU thread
    cpu_rows: list[dict]
    gpu_flops: float
    gpu_source: str
    gpu_floor_s: float = GPU_STEP_FLOOR_S
    packing_gain: float = PACKING_GAIN_ASSUMED
    packing_source: str = "assumed (no measurement): k packed trials run as fast together as one alone"
    notes: list[str] = field(default_factory=list)


def calibrate_cpu(repo: Path | None = None) -> tuple[float, list[dict]]:
    """Median achieved FLOP/s per CPU thread over :data:`CPU_CALIBRATION_ROWS` (the FLOPs of each row's
    config by :func:`train_step_flops`, times its recorded steps/s)."""
    from orchestrator.schema import Sweep

    repo = repo or Path(__file__).resolve().parents[1]
    rows = []
    for sweep_file, variant, task, ratio, rate, cite in CPU_CALIBRATION_ROWS:
        trials = Sweep.load(repo / sweep_file).trials
        cfg = next(t for t in trials if t.variant == variant and t.task == task and t.sample_ratio == ratio)
        f = train_step_flops(cfg)
        rows.append({"row": cite, "config": cfg.slug(), "flops_per_step": f, "steps_per_s": rate,
                     "achieved_flops": f * rate})
    return statistics.median(r["achieved_flops"] for r in rows), rows


def load_calibration(path: Path | None) -> Calibration:
    """The CPU calibration, plus the GPU rates of a ``benchmarks/gpu_check.sh`` JSON when given (its
    ``trainer`` rows' ``flops_per_step / s_per_step`` median, and its ``packing.gain``).

    Raises:
        ValueError: the JSON lacks the ``trainer`` rows (names the file and the missing key).
    """
    cpu, rows = calibrate_cpu()
    cal = Calibration(cpu, rows, GPU_ASSUMED_FLOPS,
                      "assumed (no GPU measurement recorded): 30 % of an H100's 67 TFLOP/s FP32 peak")
    if path is None:
        return cal
    data = json.loads(Path(path).read_text())
    trainer = [r for r in data.get("trainer", []) if r.get("s_per_step") and r.get("flops_per_step")]
    if not trainer:
        raise ValueError(f"{path}: no trainer rows with s_per_step and flops_per_step; pass the JSON that "
                         f"benchmarks/gpu_check.sh wrote")
    cal.gpu_flops = statistics.median(r["flops_per_step"] / r["s_per_step"] for r in trainer)
    cal.gpu_source = f"measured: {path} ({data.get('device', '?')}, {len(trainer)} trainer rows, median)"
    if data.get("smoke"):
        cal.notes.append(f"{path} is a --smoke run (tiny shapes): its rates say nothing about a real GPU")
    pack = data.get("packing") or {}
    if pack.get("gain"):
        cal.packing_gain = float(pack["gain"])
        cal.packing_source = f"measured: {pack.get('trials', '?')} trials on one device, {path}"
    return cal


@dataclass
class TrialEstimate:
    slug: str
    variant: str
    gpu: float
    cpu: float
    train_flops_per_step: float | None
    train_s: float
    eval_s: float

    @property
    def seconds(self) -> float:
        return self.train_s + self.eval_s + TRIAL_START_S


def estimate_trial(cfg: TrialConfig, gpu: float, cpu: float, cal: Calibration) -> TrialEstimate:
    """Seconds of one trial alone on its device (a GPU when ``gpu > 0``, else ``cpu`` threads)."""
    env_steps, eval_flops = eval_round(cfg)
    rounds = eval_rounds(cfg)
    if cfg.baseline.algo != "none":
        rate = BASELINE_STEPS_PER_S.get(cfg.baseline.algo, 5.0)
        return TrialEstimate(cfg.slug(), cfg.variant, gpu, cpu, None, cfg.train.steps / rate,
                             rounds * env_steps * ENV_STEP_S)
    f = train_step_flops(cfg)
    if gpu > 0:
        step_s = max(f / cal.gpu_flops, cal.gpu_floor_s)
        ev = rounds * (eval_flops / cal.gpu_flops + env_steps * ENV_STEP_S)
    else:
        rate = cal.cpu_flops * max(1.0, cpu)  # assumed linear in threads
        step_s, ev = f / rate, rounds * (eval_flops / rate + env_steps * ENV_STEP_S)
    return TrialEstimate(cfg.slug(), cfg.variant, gpu, cpu, f, cfg.train.steps * step_s, ev)


def _makespan(durations: list[float], slots: int) -> float:
    """Longest-first list scheduling of ``durations`` on ``slots`` parallel slots."""
    if not durations:
        return 0.0
    loads = [0.0] * max(1, slots)
    for d in sorted(durations, reverse=True):
        i = loads.index(min(loads))
        loads[i] += d
    return max(loads)


@dataclass
class SweepEstimate:
    trials: list[TrialEstimate]
    gpus: int
    cpus: int
    gpu_hours: float
    wall_s: float
    calibration: Calibration
    inputs: list[str]


def estimate_sweep(sweep, gpus: int, cpus: int, cal: Calibration) -> SweepEstimate:
    """Estimate ``sweep`` (an :class:`orchestrator.schema.Sweep`) on ``gpus`` GPUs and ``cpus`` CPU threads.

    GPU-hours: each GPU trial's packed duration times its GPU fraction. Wall time: the longer of the GPU
    and CPU pools' longest-first schedules, plus :data:`SWEEP_START_S`.

    Raises:
        ValueError: ``gpus < 0`` or ``cpus < 1``.
    """
    if gpus < 0 or cpus < 1:
        raise ValueError(f"--gpus must be >= 0 and the CPU count >= 1 (got {gpus}, {cpus})")
    ests = []
    for cfg in sweep.trials:
        r = sweep.trial_resources(cfg)
        ests.append(estimate_trial(cfg, r.gpu if gpus > 0 else 0.0, r.cpu, cal))
    cap = sweep.spec.max_concurrent_trials
    gpu_trials = [e for e in ests if e.gpu > 0]
    cpu_trials = [e for e in ests if e.gpu <= 0]
    gpu_hours, gpu_durs, gpu_slots = 0.0, [], 0
    if gpu_trials:
        frac = max(e.gpu for e in gpu_trials)
        k = max(1, math.floor(1 / frac)) if frac < 1 else 1
        gain = 1 + (cal.packing_gain - 1) * min(k - 1, 3) / 3 if k > 1 else 1.0
        for e in gpu_trials:
            d = e.seconds * k / gain
            gpu_durs.append(d)
            gpu_hours += d * e.gpu / 3600
        gpu_slots = gpus * k if frac < 1 else max(1, gpus // math.ceil(frac))
    cpu_slots = max(1, int(cpus // max(1.0, max((e.cpu for e in cpu_trials), default=1.0))))
    if cap:
        gpu_slots, cpu_slots = min(gpu_slots, cap), min(cpu_slots, cap)
    wall = max(_makespan(gpu_durs, gpu_slots), _makespan([e.seconds for e in cpu_trials], cpu_slots)) + SWEEP_START_S
    inputs = [f"GPUs: {gpus}; CPU threads for CPU-only trials: {cpus}"
              + (f"; max_concurrent_trials: {cap}" if cap else ""),
              f"GPU rate: {cal.gpu_flops / 1e12:.3g} TFLOP/s achieved, {cal.gpu_source}; step floor "
              f"{cal.gpu_floor_s * 1000:g} ms (assumed)",
              f"packing gain: {cal.packing_gain:g}x ({cal.packing_source})",
              f"CPU rate: {cal.cpu_flops / 1e9:.2f} GFLOP/s per thread, median of {len(cal.cpu_rows)} recorded rows:"]
    inputs += [f"  {r['row']}: {r['config']}, {r['flops_per_step'] / 1e9:.2f} GFLOP/step x {r['steps_per_s']:g}"
               f" steps/s = {r['achieved_flops'] / 1e9:.2f} GFLOP/s" for r in cal.cpu_rows]
    inputs += [f"evaluation: every episode to its horizon (upper bound), {ENV_STEP_S * 1e3:g} ms per env step; "
               f"start-up {TRIAL_START_S:g} s per trial + {SWEEP_START_S:g} s per sweep",
               "baselines (d3rlpy): recorded CPU steps per CPU-s, same on a GPU"]
    if any(not trunk_of(c).known for c in sweep.trials if c.baseline.algo == "none" and c.model.lm):
        inputs.append("an LM of unknown shape was assumed GPT-2-small-shaped")
    inputs += cal.notes
    return SweepEstimate(ests, gpus, cpus, gpu_hours, wall, cal, inputs)
