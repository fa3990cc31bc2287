#!/usr/bin/env bash
# Install the brand-logo SVG packages behind the offline `logos-icons` category with npm:
# devicon (MIT) and simple-icons (CC0), pinned. Idempotent; needs node + npm (the npm registry only).
#   scripts/fetch-logo-icons.sh [DIR]    DIR defaults to ${VISEARCH_HOME:-.visearch}/npm
# Prints the node_modules folder to pass to `visearch prepare logos-icons --source`.
set -euo pipefail
DEVICON_VERSION=2.17.0
SIMPLE_ICONS_VERSION=16.37.0
dir="${1:-${VISEARCH_HOME:-.visearch}/npm}"
command -v npm >/dev/null || { echo "fetch-logo-icons: npm not found (install Node.js 18+)" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
installed() { [ -f "$dir/node_modules/$1/package.json" ] && grep -q "\"version\": *\"$2\"" "$dir/node_modules/$1/package.json"; }
if installed devicon "$DEVICON_VERSION" && installed simple-icons "$SIMPLE_ICONS_VERSION"; then
  echo "fetch-logo-icons: already installed" >&2
else
  # --prefix keeps everything in DIR; no package.json of ours, no audit/fund chatter.
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error \
    "devicon@$DEVICON_VERSION" "simple-icons@$SIMPLE_ICONS_VERSION" >&2
fi
echo "devicon      $dir/node_modules/devicon" >&2
echo "simple-icons $dir/node_modules/simple-icons" >&2
echo "$dir/node_modules"
