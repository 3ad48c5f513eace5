#!/usr/bin/env bash
# The main job: make real videos on the built-in simulator (no key, no network). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HAPPYHORSE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -e .
export HAPPYHORSE_HOME="${HAPPYHORSE_HOME:-$PWD/demo_output/.happyhorse}"
"$VENV/bin/happyhorse" demo --out-dir demo_output "$@"
