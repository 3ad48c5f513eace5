#!/usr/bin/env bash
# The whole test suite. Installs what it needs: torch from the CPU wheel FIRST (so nothing pulls CUDA builds),
# the pack with its test extras, and - as root on Debian, when missing - Chromium for the web extension tests
# (set HAPPYHORSE_NO_APT=1 to skip that; the browser tests then skip and say why).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HAPPYHORSE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[test]"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
        && [ -z "${HAPPYHORSE_NO_APT:-}" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "note: could not install chromium; the browser tests will be skipped"
fi
exec "$PY" -m pytest -q "$@"
