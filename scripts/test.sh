#!/usr/bin/env bash
# The whole test suite. Installs what it needs (torch from the CPU wheel FIRST, so nothing pulls CUDA builds).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HAPPYHORSE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[test]"
exec "$PY" -m pytest -q "$@"
