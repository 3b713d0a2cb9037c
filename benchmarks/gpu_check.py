"""One-command GPU check (driver of ``benchmarks/gpu_check.sh``): writes one JSON with

1. **trainer**: seconds per training step and peak memory at GPT-2-small shape (12 x 768, 12 heads,
   vocabulary 50,257; random weights saved and loaded as a "pre-trained" LM: the cost does not depend on
   the values) in LaMo's setting (Hopper shapes: state 11, action 3; K 20, batch 64, LoRA r 16 on
   ``c_attn``, MLP embeddings) with language weight 0 and 0.1 (2 x 1,024 tokens), DT at the same shape
   (no LM, all weights trained, linear embeddings), and the DT baseline (3 x 128). One step = forward,
   language loss, backward, clip, AdamW, as :meth:`trainers.learner.SequenceLearner.train_step` does,
   on random tensors (sampling is not measured; as ``benchmarks/bench_language_loss.py``). Each row also
   carries its FLOPs per step (:func:`orchestrator.estimate.train_step_flops`), so the JSON calibrates the
   dry-run estimate (``lamo-sweep FILE --dry-run --calibration THIS.json``);
2. **packing**: ``--pack`` processes of the LaMo lambda 0.1 step on one device at once (what Ray does
   with ``resources: {gpu: 0.25}``: processes sharing a GPU), steps/s of each after a common start, vs
   one process alone; ``gain`` = their summed steps/s over the lone one's;
3. **eval**: one evaluation round of the GPT-2-shaped LaMo model on Hopper (4 RTG targets x
   ``--episodes``, :func:`trainers.evaluate.evaluate`), seconds and environment steps.

Each trainer setting and each packed process runs in its own process (its peak memory is its own:
``torch.cuda.max_memory_allocated`` on CUDA, the process's max RSS on CPU).

``--smoke`` shrinks every shape (2 x 64 LM, batch 8, K 5, 2 x 64 language tokens, 3 steps, packing 2 s,
one episode of 10 steps per target) so the whole path runs on a CPU in about a minute; its numbers say
nothing about speed (the JSON says ``"smoke": true``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTINGS = ("lamo_lambda0", "lamo_lambda0.1", "dt_gpt2_shape", "dt")


def shapes(smoke: bool) -> dict:
    """The benchmark's shapes (GPT-2 small: Radford et al. 2019 / transformers' ``GPT2Config()`` defaults;
    LaMo's Hopper setting: docs/lamo_recipe.md, K 20, batch 64, 2 x 1,024 language tokens)."""
    if smoke:
        return dict(n_layer=2, n_embd=64, n_head=2, n_inner=256, vocab=1000, n_positions=256, batch=8, K=5,
                    lang_batch=2, block=64, steps=3, warmup=1)
    return dict(n_layer=12, n_embd=768, n_head=12, n_inner=3072, vocab=50257, n_positions=1024, batch=64, K=20,
                lang_batch=2, block=1024, steps=20, warmup=3)


def trial_config(setting: str, sh: dict, lm_dir: str):
    """The :class:`trainers.config.TrialConfig` of ``setting`` (Hopper task, the benchmark's shapes)."""
    from trainers.config import TrialConfig

    common = dict(task="hopper-medium", context_length=sh["K"], train={"batch_size": sh["batch"]})
    if setting.startswith("lamo"):
        weight = 0.0 if setting == "lamo_lambda0" else 0.1
        return TrialConfig(**common, variant="lamo", model=dict(lm=lm_dir, init="pretrained", embedding="mlp",
                                                                 finetune="lora"),
                           language={"weight": weight, "block_size": sh["block"], "batch_size": sh["lang_batch"]})
    if setting == "dt_gpt2_shape":
        arch = dict(n_layer=sh["n_layer"], n_embd=sh["n_embd"], n_head=sh["n_head"], n_inner=sh["n_inner"],
                    activation="gelu_new")
    else:  # the DT baseline's own shape (trainers.config.ArchConfig defaults: 3 x 128)
        arch = {}
    return TrialConfig(**common, variant="dt", model=dict(lm=None, init="random", embedding="linear",
                                                          finetune="full", arch=arch), language={"weight": 0.0})


def _flops(cfg, sh: dict) -> float:
    from orchestrator.estimate import Trunk, train_step_flops

    if cfg.model.lm is None:
        return train_step_flops(cfg)
    return train_step_flops(cfg, Trunk(sh["n_layer"], sh["n_embd"], sh["n_inner"], sh["vocab"]))


def _build(setting: str, sh: dict, lm_dir: str, device: str):
    import torch

    from trainers.model import DecisionTransformer

    torch.manual_seed(0)
    cfg = trial_config(setting, sh, lm_dir)
    dev = torch.device(device)
    m = DecisionTransformer(cfg, 11, 3, 1000, lm_dir if cfg.model.lm else None).to(dev).train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-5)
    B, K = sh["batch"], sh["K"]
    batch = (torch.randn(B, K, 11, device=dev), torch.randn(B, K, 3, device=dev), torch.randn(B, K, 1, device=dev),
             torch.randint(0, 1000, (B, K), device=dev), torch.ones(B, K, device=dev))
    text = torch.randint(0, sh["vocab"], (sh["lang_batch"], sh["block"]), device=dev)
    w = cfg.language.weight

    def step() -> None:
        loss = ((m(*batch) - batch[1]) ** 2).mean()
        if w > 0:
            loss = loss + w * m.language_loss(text)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.25)
        opt.step()

    return cfg, m, step


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _peak_mib(device: str) -> tuple[float, str]:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "max RSS of the process"


def one_setting(setting: str, sh: dict, lm_dir: str, device: str) -> dict:
    """Median seconds per step after ``warmup`` steps, peak memory, trainable parameters, FLOPs per step."""
    cfg, m, step = _build(setting, sh, lm_dir, device)
    for _ in range(sh["warmup"]):
        step()
    times = []
    for _ in range(sh["steps"]):
        _sync(device)
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    times.sort()
    peak, kind = _peak_mib(device)
    f = _flops(cfg, sh)
    med = times[len(times) // 2]
    return {"setting": setting, "s_per_step": med, "s_per_step_min": times[0], "steps": sh["steps"],
            "peak_mib": peak, "peak_kind": kind, "flops_per_step": f, "achieved_tflops": f / med / 1e12,
            "trainable_params": sum(p.numel() for p in m.parameters() if p.requires_grad)}


def packed_worker(sh: dict, lm_dir: str, device: str, barrier: str, n: int, seconds: float) -> dict:
    """Build the LaMo lambda 0.1 step, warm up, wait until ``n`` workers are ready (files in ``barrier``),
    then count steps for ``seconds``."""
    _, _, step = _build("lamo_lambda0.1", sh, lm_dir, device)
    for _ in range(sh["warmup"]):
        step()
    _sync(device)
    Path(barrier, f"ready-{os.getpid()}").touch()
    deadline = time.time() + 600
    while len(list(Path(barrier).glob("ready-*"))) < n and time.time() < deadline:
        time.sleep(0.05)
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        _sync(device)
        done += 1
    sec = time.perf_counter() - t0
    peak, kind = _peak_mib(device)
    return {"steps": done, "seconds": sec, "steps_per_s": done / sec, "peak_mib": peak, "peak_kind": kind}


def _spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def _collect(p: subprocess.Popen, what: str) -> dict:
    out, err = p.communicate(timeout=600)
    if p.returncode != 0:
        return {"error": f"{what} exited {p.returncode}: {err.strip()[-1500:]}"}
    return json.loads(out.strip().splitlines()[-1])


def packing(sh: dict, lm_dir: str, device: str, n: int, seconds: float, smoke: bool) -> dict:
    """Steps/s of one process alone, then of ``n`` at once on the same device; ``gain`` = sum / alone."""
    res = {"setting": "lamo_lambda0.1", "trials": n, "seconds_each": seconds}
    for count, key in ((1, "alone"), (n, "packed")):
        with tempfile.TemporaryDirectory() as barrier:
            procs = [_spawn(["--worker", barrier, "--n", str(count), "--seconds", str(seconds), "--lm-dir", lm_dir,
                             "--device", device] + (["--smoke"] if smoke else [])) for _ in range(count)]
            res[key] = [_collect(p, f"packed worker {i}") for i, p in enumerate(procs)]
    ok = [r for r in res["packed"] if "steps_per_s" in r]
    alone = res["alone"][0].get("steps_per_s")
    if alone and len(ok) == n:
        res["packed_total_steps_per_s"] = sum(r["steps_per_s"] for r in ok)
        res["gain"] = res["packed_total_steps_per_s"] / alone
        res["slowdown_per_trial"] = alone / min(r["steps_per_s"] for r in ok)
    return res


def eval_round(sh: dict, lm_dir: str, device: str, episodes: int, horizon: int | None) -> dict:
    """One evaluation round of the GPT-2-shaped LaMo model on Hopper (random weights: episodes end early,
    so this is a lower bound on a trained policy's cost)."""
    import numpy as np

    from trainers.evaluate import evaluate

    cfg, m, _ = _build("lamo_lambda0.1", sh, lm_dir, device)
    spec = cfg.task_spec
    t = time.perf_counter()
    out = evaluate(m, spec, list(spec.rtg_targets), episodes, np.zeros(11, np.float32), np.ones(11, np.float32),
                   sh["K"], 1000.0, seed=0, max_episode_steps=horizon, device=device)
    sec = time.perf_counter() - t
    lengths = [v for k, v in out.items() if k.endswith("length_mean")]
    env_steps = sum(lengths) * episodes
    return {"targets": len(spec.rtg_targets), "episodes_per_target": episodes, "horizon": horizon or spec.max_ep_len,
            "seconds": sec, "env_steps": env_steps, "episodes_per_s": out.get("eval/episodes_per_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, runs on a CPU in about a minute")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cuda or cpu")
    ap.add_argument("--out", default=None, help="JSON path (default lamo_runs/gpu_check[-smoke].json)")
    ap.add_argument("--pack", type=int, default=4, help="trials packed on one device")
    ap.add_argument("--pack-seconds", type=float, default=None, help="timed seconds per packing run")
    ap.add_argument("--episodes", type=int, default=None, help="evaluation episodes per RTG target")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    ap.add_argument("--lm-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no CUDA device; run `benchmarks/gpu_check.sh --smoke` on a CPU")
    torch.set_num_threads(1 if device == "cpu" else torch.get_num_threads())
    sh = shapes(args.smoke)
    if args.one:
        print(json.dumps(one_setting(args.one, sh, args.lm_dir, device)))
        return
    if args.worker:
        print(json.dumps(packed_worker(sh, args.lm_dir, device, args.worker, args.n, args.seconds)))
        return

    from transformers import GPT2Config, GPT2LMHeadModel

    t0 = time.perf_counter()
    out = Path(args.out or REPO / "lamo_runs" / f"gpu_check{'-smoke' if args.smoke else ''}.json")
    report = {"smoke": args.smoke, "device": torch.cuda.get_device_name(0) if device == "cuda" else
              f"cpu ({platform.processor() or platform.machine()}, 1 torch thread)", "torch": torch.__version__,
              "shapes": sh, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory() as lm_dir:
        GPT2LMHeadModel(GPT2Config(n_layer=sh["n_layer"], n_embd=sh["n_embd"], n_head=sh["n_head"],
                                   n_inner=sh["n_inner"], vocab_size=sh["vocab"],
                                   n_positions=sh["n_positions"])).save_pretrained(lm_dir)
        report["trainer"] = []
        for s in SETTINGS:
            row = _collect(_spawn(["--one", s, "--lm-dir", lm_dir, "--device", device]
                                  + (["--smoke"] if args.smoke else [])), s)
            row.setdefault("setting", s)
            report["trainer"].append(row)
            print(json.dumps(row), flush=True)
        secs = args.pack_seconds or (2.0 if args.smoke else 30.0)
        report["packing"] = packing(sh, lm_dir, device, args.pack, secs, args.smoke)
        print(json.dumps({k: v for k, v in report["packing"].items() if k not in ("alone", "packed")}), flush=True)
        try:
            report["eval"] = eval_round(sh, lm_dir, device, args.episodes or (1 if args.smoke else 20),
                                        10 if args.smoke else None)
        except Exception as e:  # noqa: BLE001 - e.g. no MuJoCo on the machine: recorded, the rest still counts
            report["eval"] = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(report["eval"]), flush=True)
    report["wall_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    errors = [r["setting"] for r in report["trainer"] if "error" in r]
    if errors or "gain" not in report["packing"] or "error" in report["eval"]:
        sys.exit(f"gpu_check: some parts failed (trainer: {errors or 'ok'}, packing: "
                 f"{'ok' if 'gain' in report['packing'] else 'failed'}, eval: "
                 f"{'failed' if 'error' in report['eval'] else 'ok'}); see {out}")


if __name__ == "__main__":
    main()
