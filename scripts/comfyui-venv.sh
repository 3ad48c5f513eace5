#!/usr/bin/env bash
# Usage: bash scripts/comfyui-venv.sh ARCHIVE
# Unpacks a ComfyUI source archive (e.g. ../shared/comfyui/ComfyUI-0.33.0.tar.xz) and gives it a CPU venv, cached
# under .venv-comfyui/<key>/ (ComfyUI/ and venv/). The key hashes the archive, this script and the stub module,
# so the ~2.4 GB venv is rebuilt only when one of them changes; older builds are removed. Prints the build's
# directory. The build log is .venv-comfyui/<key>/build.log.
#
# Recipe: torch==2.13.0 FIRST (the CPU wheel) and pinned in every later pip call; ComfyUI's requirements minus
# torchvision/torchaudio, which have no CPU build for torch 2.13 (ComfyUI imports them only to define nodes we
# never run): scripts/comfyui_stubs.py stands in for both, and packages that only declare them as a dependency
# are installed without dependencies so no real (CUDA) build is pulled in.
set -euo pipefail
ARCHIVE="$(realpath "${1:?usage: comfyui-venv.sh ARCHIVE}")"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${COMFYUI_CACHE:-$ROOT/.venv-comfyui}"
TORCH="torch==2.13.0"
NO_DEPS="spandrel"                 # its only dependency beyond ComfyUI's own list is torchvision
LEAVE_OUT="torchvision|torchaudio"

KEY="$(cat "$ARCHIVE" "$ROOT/scripts/comfyui-venv.sh" "$ROOT/scripts/comfyui_stubs.py" | sha256sum | cut -c1-16)"
BUILD="$CACHE/$KEY"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9                            # one build at a time per cache
if [ -e "$BUILD/READY" ]; then
    echo "$BUILD"
    exit 0
fi

for old in "$CACHE"/*/; do [ "${old%/}" = "$BUILD" ] || rm -rf "$old"; done
rm -rf "$BUILD"
mkdir -p "$BUILD"
LOG="$BUILD/build.log"
echo "building the ComfyUI test venv in $BUILD (first run only; log: $LOG)" >&2
(
    set -x
    tar -xJf "$ARCHIVE" -C "$BUILD"
    [ -f "$BUILD/ComfyUI/main.py" ] && [ -f "$BUILD/ComfyUI/requirements.txt" ]
    python3 -m venv "$BUILD/venv"
    PIP=("$BUILD/venv/bin/python" -m pip install --no-input)
    "${PIP[@]}" "$TORCH"
    echo "$TORCH" > "$BUILD/constraints.txt"
    grep -v -E "^\s*($LEAVE_OUT|${NO_DEPS// /|})\b" "$BUILD/ComfyUI/requirements.txt" > "$BUILD/requirements.txt"
    "${PIP[@]}" -c "$BUILD/constraints.txt" -r "$BUILD/requirements.txt"
    grep -E "^\s*(${NO_DEPS// /|})\b" "$BUILD/ComfyUI/requirements.txt" > "$BUILD/requirements-no-deps.txt" || true
    "${PIP[@]}" --no-deps -c "$BUILD/constraints.txt" -r "$BUILD/requirements-no-deps.txt"
    SITE="$("$BUILD/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    cp "$ROOT/scripts/comfyui_stubs.py" "$SITE/happyhorse_comfyui_stubs.py"
    echo "import happyhorse_comfyui_stubs; happyhorse_comfyui_stubs.install()" > "$SITE/happyhorse_comfyui_stubs.pth"
    # No real torchvision/torchaudio may have slipped in, and torch must still be the CPU wheel.
    "$BUILD/venv/bin/python" - <<'PY'
import importlib.metadata as md
import torch, torchvision, torchaudio
for name in ("torchvision", "torchaudio"):
    try:
        md.distribution(name)
        raise SystemExit(f"a real {name} was installed; add what pulled it in to NO_DEPS")
    except md.PackageNotFoundError:
        pass
assert torchvision.__version__.endswith("happyhorse.stub") and torchaudio.__version__.endswith("happyhorse.stub")
assert torch.__version__.startswith("2.13.0") and not torch.version.cuda, torch.__version__
PY
) >"$LOG" 2>&1 || { echo "ComfyUI venv build failed; last lines of $LOG:" >&2; tail -30 "$LOG" >&2; exit 1; }
touch "$BUILD/READY"
echo "$BUILD"
