#!/usr/bin/env bash
# Rebuild nbmagic's prebuilt JupyterLab extension: frontend/ -> nbmagic/labextension/.
#
# The output is committed, so users and CI never need node. Run this after editing
# frontend/src. Needs node >= 18 + npm and the venv's jupyterlab (for the builder's
# core package metadata; passing it avoids fetching metadata from the network).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
cd "$ROOT/frontend"

if [ ! -d node_modules ] || [ "${NBMAGIC_NPM_INSTALL:-0}" = 1 ]; then
  npm install --no-audit --no-fund
fi
rm -rf lib tsconfig.tsbuildinfo "$ROOT/nbmagic/labextension"
npx tsc
CORE="$("$PY" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging", "package.json"))')"
BIN="$(dirname "$PY")"
if [ -x "$BIN/jupyter-builder" ]; then          # JupyterLab >= 4.6 moved the build here
  "$BIN/jupyter-builder" build . --core-package-file="$CORE"
else
  "$BIN/jupyter" labextension build . --core-package-file="$CORE"
fi
cp install.json "$ROOT/nbmagic/labextension/install.json"
# Fingerprint of the sources this build came from: tests/notebook/test_labextension.py
# fails when frontend/ changed without a rebuild.
"$PY" -c 'import sys; from nbmagic.notebook.extension import write_fingerprint; write_fingerprint()'
echo "built: $(du -sh "$ROOT/nbmagic/labextension" | cut -f1) in nbmagic/labextension"
