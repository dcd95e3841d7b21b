#!/usr/bin/env bash
# Create .venv and install what a target needs. Idempotent: a second run only checks.
#   scripts/bootstrap.sh run    the package with local-model support (for `make run`)
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

if [ "$target" = "test" ]; then
  # llama-cpp-python compiles from source (~5 min on 2 cores): build the wheel once, keep it in .cache/.
  if ! "$VENV/bin/python" -c "import llama_cpp" >/dev/null 2>&1; then
    mkdir -p "$WHEELS"
    if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
      echo "== building llama-cpp-python $LLAMA_VERSION (one-off, several minutes)"
      CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
        pip wheel -q --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
    fi
    pip install -q "numpy>=1.20" "diskcache>=5.6" "jinja2>=2.11" "typing-extensions>=4.5"
    pip install -q --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  fi
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
