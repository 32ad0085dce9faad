#!/bin/bash
# Benchmark data: the unit sprites of Debian's wesnoth-1.16-data (painted pixel-art units, ~7,000 PNGs)
# in DEST/<race>/<unit>*.png. Many files are animation frames of one unit: benchmarks split by unit,
# never by frame. Usage: benchmarks/fetch-wesnoth.sh [DEST]   (default ~/.cache/cvtools-bench/wesnoth).
set -euo pipefail
dest=${1:-$HOME/.cache/cvtools-bench/wesnoth}
if [[ ! -d $dest ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  apt-get download wesnoth-1.16-data >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download wesnoth-1.16-data >/dev/null; }
  dpkg-deb -x wesnoth-1.16-data_*.deb unpacked
  mkdir -p "$(dirname "$dest")"
  mv "$(find unpacked -type d -path '*/images/units' | head -1)" "$dest"
fi
echo "$dest"
