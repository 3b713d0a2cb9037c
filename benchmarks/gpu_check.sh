#!/usr/bin/env bash
# One command for a CUDA machine (issue #19 §3): the trainer at GPT-2-small shape (LaMo lambda 0 and 0.1,
# DT; s/step, peak memory, FLOPs/step), 4 trials packed on one GPU vs one alone, one evaluation round;
# writes one JSON (default lamo_runs/gpu_check.json). Budget: under 8 minutes (killed at 480 s).
#
#   benchmarks/gpu_check.sh                 # on a CUDA machine
#   benchmarks/gpu_check.sh --smoke         # tiny shapes on a CPU: checks the whole path in ~1 min
#   benchmarks/gpu_check.sh --out $OUT/gpu_check.json
#
# Then: lamo-sweep sweeps/paper_mujoco.yaml --dry-run --gpus 8 --calibration lamo_runs/gpu_check.json
# CI never runs the CUDA path; tests/test_gpu_check.py runs --smoke (marked slow).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
smoke=0
for a in "$@"; do [ "$a" = "--smoke" ] && smoke=1; done
if ! "$PY" -c "import torch, transformers, peft" 2>/dev/null; then
  echo "error: $PY lacks torch/transformers/peft; run scripts/bootstrap.sh or set PYTHON=/path/to/python" >&2
  exit 2
fi
if [ "$smoke" = 0 ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device visible to torch; on a CPU run: benchmarks/gpu_check.sh --smoke" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$PY" benchmarks/gpu_check.py "$@"
