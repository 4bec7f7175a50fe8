#!/usr/bin/env bash
# Run on a machine WITH internet access: put every wheel that desktop_tl needs into one folder, to carry
# (USB disk, network share) to offline lab machines that have Python.
#
#   packaging/make-wheelhouse.sh [DIR] [extra pip download options]
#
# DIR defaults to ./wheelhouse. It receives the desktop-tl wheel (built from this source tree), the
# wheels of all its dependencies and of the test extra (pytest, ...), and setuptools/wheel (so any
# dependency that only comes as a source archive can still be built offline), plus INSTALL.txt and
# the Linux menu-entry installer (install-desktop-entry.sh, desktop-tl.desktop).
# On the offline machine (same OS, CPU architecture and Python minor version as here):
#   python -m venv ~/desktop-tl-env && . ~/desktop-tl-env/bin/activate
#   pip install --no-index --find-links DIR "desktop-tl[test]"     # or just desktop-tl
#   desktop-tl --smoke-test
# For another target, pass pip's platform options, e.g.
#   packaging/make-wheelhouse.sh wheelhouse-win --only-binary=:all: --platform win_amd64 --python-version 3.11
# Size: on Linux x86_64 PyPI's torch is the CUDA build, so the folder holds about 3 GB of wheels (78).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${1:-wheelhouse}"
[ $# -gt 0 ] && shift
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
started=$(date +%s)

echo "1/3 Building the desktop-tl wheel into $OUT"
"$PYTHON" -m pip wheel --no-deps "$ROOT" -w "$OUT"

echo "2/3 Downloading the wheels of its dependencies (and of the test extra)"
"$PYTHON" -m pip download "$ROOT[test]" -d "$OUT" "$@"

echo "3/3 Adding the build tools an offline install may need"
"$PYTHON" -m pip download "setuptools>=68" wheel pip -d "$OUT" "$@"

# The Linux menu-entry installer works from the wheelhouse too (it finds `desktop-tl` on PATH).
cp "$ROOT/packaging/linux/install-desktop-entry.sh" "$ROOT/packaging/linux/desktop-tl.desktop" "$OUT/"

# `pip download` of a source tree may leave an archive of the tree itself; the wheel above replaces it.
find "$OUT" -maxdepth 1 -name 'desktop_tl-*.zip' -delete
find "$OUT" -maxdepth 1 -name 'desktop-tl-*.zip' -delete
# Sdists (if any) are built on the offline machine, which works only when their build tools are here too.
sdists=$(find "$OUT" -maxdepth 1 \( -name '*.tar.gz' -o -name '*.zip' \) | wc -l)

version=$("$PYTHON" -c "import re,sys; print(re.search(r'__version__ = \"([^\"]+)\"', open(sys.argv[1]).read()).group(1))" "$ROOT/desktop_tl/__init__.py")
cat > "$OUT/INSTALL.txt" <<EOF
desktop_tl $version: offline installation
Made on $(uname -srm) with $("$PYTHON" --version 2>&1), $(date -u +%Y-%m-%d). Use a machine with the same
operating system, CPU architecture and Python minor version.

  python -m venv ~/desktop-tl-env
  . ~/desktop-tl-env/bin/activate            (Windows: %USERPROFILE%\\desktop-tl-env\\Scripts\\activate)
  pip install --no-index --find-links "$(basename "$OUT")" desktop-tl        (add [test] for the test tools)
  desktop-tl --smoke-test                     (checks the installation in about a minute)
  desktop-tl                                  (opens the window; desktop-tl --help for the command line)
  $(basename "$OUT")/install-desktop-entry.sh          (Linux: launcher and icon in the application menu)

Pretrained weights beyond the bundled EfficientNet-Lite0: copy a .safetensors file and import it
(Models panel > Import weights..., or desktop-tl train DATA --out RUN --model ARCH --weights FILE), or copy a
Hugging Face cache folder (models--timm--...) into ~/.cache/huggingface/hub (or the folder in HF_HUB_CACHE).
EOF

count=$(find "$OUT" -maxdepth 1 -name '*.whl' | wc -l)
echo "Done in $(( $(date +%s) - started ))s: $OUT holds $count wheels ($(du -sh "$OUT" | cut -f1))$([ "$sdists" -gt 0 ] && echo ", $sdists source archives")."
echo "Offline: pip install --no-index --find-links $OUT desktop-tl   (see $OUT/INSTALL.txt)"
