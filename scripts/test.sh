#!/usr/bin/env bash
# The whole test suite. Installs what it needs: torch from the CPU wheel FIRST (so nothing pulls CUDA builds),
# the pack with its test extras, and - as root on Debian, when missing - Chromium for the web extension tests
# (set HAPPYHORSE_NO_APT=1 to skip that; the browser tests then skip and say why).
# The real-ComfyUI integration tests run when a ComfyUI is given: COMFYUI_DIR (a checkout) with COMFYUI_PYTHON
# (its venv's python), or COMFYUI_SRC (a source archive: scripts/comfyui-venv.sh unpacks it and builds a cached
# CPU venv for it under .venv-comfyui/ on first use). Without either they skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${COMFYUI_DIR:-}" ] && [ -n "${COMFYUI_SRC:-}" ]; then
    COMFY_BUILD_OUT="$(mktemp)"
    bash scripts/comfyui-venv.sh "$COMFYUI_SRC" >"$COMFY_BUILD_OUT" &    # side by side with the installs below
    COMFY_BUILD_PID=$!
fi
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
if [ -n "${COMFY_BUILD_PID:-}" ]; then
    wait "$COMFY_BUILD_PID"                     # a failed build fails the run (its log tail is on stderr)
    BUILD="$(cat "$COMFY_BUILD_OUT")"
    rm -f "$COMFY_BUILD_OUT"
    export COMFYUI_DIR="$BUILD/ComfyUI" COMFYUI_PYTHON="$BUILD/venv/bin/python"
fi
exec "$PY" -m pytest -q "$@"
