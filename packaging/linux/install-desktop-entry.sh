#!/usr/bin/env bash
# Put desktop_tl in the current user's application menu (no root needed), or take it out again.
#
#   ./install-desktop-entry.sh                 install the launcher and icons
#   ./install-desktop-entry.sh --uninstall     remove them
#   ./install-desktop-entry.sh --exec PATH     launch PATH (default: see below)
#   ./install-desktop-entry.sh --icons DIR     take desktop_tl.svg and desktop_tl_<size>.png from DIR
#
# Which app it launches, first found:
#   --exec PATH; the `desktop-tl` next to this script (inside the built folder dist/desktop-tl/);
#   dist/desktop-tl/desktop-tl of the source tree this script belongs to; `desktop-tl` on PATH (pip install).
# What it writes (XDG_DATA_HOME defaults to ~/.local/share):
#   $XDG_DATA_HOME/applications/desktop-tl.desktop
#   $XDG_DATA_HOME/icons/hicolor/<N>x<N>/apps/desktop-tl.png  (N = 16 32 48 64 128 256 512)
#   $XDG_DATA_HOME/icons/hicolor/scalable/apps/desktop-tl.svg
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA_HOME/applications"
HICOLOR="$DATA_HOME/icons/hicolor"
ENTRY="$APPS/desktop-tl.desktop"
SIZES="16 32 48 64 128 256 512"
EXEC=""
ICONS=""
UNINSTALL=0

die() { echo "install-desktop-entry: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) UNINSTALL=1 ;;
    --exec) [ $# -ge 2 ] || die "--exec needs a path"; EXEC="$2"; shift ;;
    --icons) [ $# -ge 2 ] || die "--icons needs a folder"; ICONS="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
  shift
done

refresh_caches() {
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS" 2>/dev/null || true
  command -v gtk-update-icon-cache >/dev/null && [ -f "$HICOLOR/index.theme" ] \
    && gtk-update-icon-cache -q -t -f "$HICOLOR" 2>/dev/null || true
  return 0
}

if [ "$UNINSTALL" = 1 ]; then
  rm -f "$ENTRY"
  for n in $SIZES; do rm -f "$HICOLOR/${n}x${n}/apps/desktop-tl.png"; done
  rm -f "$HICOLOR/scalable/apps/desktop-tl.svg"
  refresh_caches
  echo "Removed desktop_tl from the application menu ($ENTRY and its icons)."
  exit 0
fi

# -- which executable -----------------------------------------------------------------------------
if [ -z "$EXEC" ]; then
  if [ -x "$HERE/desktop-tl" ] && [ -f "$HERE/desktop-tl" ]; then
    EXEC="$HERE/desktop-tl"                                   # inside dist/desktop-tl/
  elif [ -x "$HERE/../../dist/desktop-tl/desktop-tl" ]; then
    EXEC="$HERE/../../dist/desktop-tl/desktop-tl"             # packaging/linux/ of a built source tree
  elif command -v desktop-tl >/dev/null; then
    EXEC="$(command -v desktop-tl)"                           # pip install
  else
    die "no desktop-tl found. Build it (packaging/build.sh), install it (pip install ...), or pass --exec PATH."
  fi
fi
[ -x "$EXEC" ] || die "$EXEC is not an executable file."
EXEC="$(cd "$(dirname "$EXEC")" && pwd)/$(basename "$EXEC")"

# -- where the icons are -----------------------------------------------------------------------------
if [ -z "$ICONS" ]; then
  for dir in "$(dirname "$EXEC")/_internal/desktop_tl/resources/icons" \
             "$(dirname "$EXEC")/desktop_tl/resources/icons" \
             "$HERE/../../resources/icons"; do
    if [ -f "$dir/desktop_tl.svg" ]; then ICONS="$dir"; break; fi
  done
fi
if [ -z "$ICONS" ]; then
  # A pip-installed script: ask the Python it runs with (else python3/python on PATH) where the resources are.
  for py in "$(head -n 1 "$EXEC" | sed -n 's/^#! *//p' | cut -d' ' -f1)" "$(command -v python3 || true)" \
            "$(command -v python || true)"; do
    [ -n "$py" ] && [ -x "$py" ] && [ "$(basename "$py")" != env ] || continue
    ICONS="$("$py" -c 'from desktop_tl.core.paths import resource_path; print(resource_path("icons"))' 2>/dev/null || true)"
    [ -n "$ICONS" ] && [ -f "$ICONS/desktop_tl.svg" ] && break
    ICONS=""
  done
fi
[ -n "$ICONS" ] && [ -f "$ICONS/desktop_tl.svg" ] || die "cannot find the icons (desktop_tl.svg); pass --icons DIR."

# -- the launcher -------------------------------------------------------------------------------------
TEMPLATE="$HERE/desktop-tl.desktop"
[ -f "$TEMPLATE" ] || die "$TEMPLATE is missing (keep this script next to desktop-tl.desktop)."
# Desktop Entry Exec quoting: a path with spaces or specials goes in double quotes, with \ " ` $ escaped.
quoted="$EXEC"
case "$EXEC" in
  *[[:space:]\"\'\\\`\$\<\>\~\|\&\;\*\?\#\(\)]*)
    quoted="\"$(printf '%s' "$EXEC" | sed -e 's/[\\"`$]/\\\\&/g')\"" ;;
esac
mkdir -p "$APPS"
tmp="$(mktemp "$APPS/.desktop-tl.XXXXXX")"
sed -e "s|^Exec=.*|Exec=$(printf '%s' "$quoted" | sed 's/[|&\\]/\\&/g')|" \
    -e "s|^TryExec=.*|TryExec=$(printf '%s' "$EXEC" | sed 's/[|&\\]/\\&/g')|" "$TEMPLATE" > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$ENTRY"

for n in $SIZES; do
  [ -f "$ICONS/desktop_tl_${n}.png" ] || die "$ICONS/desktop_tl_${n}.png is missing."
  install -D -m 0644 "$ICONS/desktop_tl_${n}.png" "$HICOLOR/${n}x${n}/apps/desktop-tl.png"
done
install -D -m 0644 "$ICONS/desktop_tl.svg" "$HICOLOR/scalable/apps/desktop-tl.svg"
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$ENTRY" || echo "Note: desktop-file-validate reported the problems above." >&2
fi
refresh_caches
echo "Installed desktop_tl in the application menu: $ENTRY"
echo "  launches $EXEC"
echo "  icons in $HICOLOR/<size>/apps/desktop-tl.png (remove with: $0 --uninstall)"
