#!/usr/bin/env bash
# The main job: make real videos on the built-in simulator (no key, no network). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HAPPYHORSE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating the virtual environment $PWD/$VENV (first run only)..." >&2
    python3 -m venv "$VENV"
fi
VENV="$(cd "$VENV" && pwd)"
echo "Installing the pack into $VENV (a minute on the first run, seconds after)..." >&2
"$VENV/bin/python" -m pip install -q -e .
export HAPPYHORSE_HOME="${HAPPYHORSE_HOME:-$PWD/demo_output/.happyhorse}"
"$VENV/bin/happyhorse" demo --out-dir "$PWD/demo_output" "$@"
echo "The happyhorse command is $VENV/bin/happyhorse; to type just \`happyhorse\`:" >&2
echo "    export PATH=\"$VENV/bin:\$PATH\"      (or: source $VENV/bin/activate)" >&2
