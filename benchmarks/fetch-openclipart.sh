#!/bin/bash
# Benchmark data: Debian's openclipart-png, about 8,000 PNG drawings in category folders
# (DEST/food/vegetables, DEST/animals/insects, ...). A few files are real 150-600 megapixel PNGs.
# Usage: benchmarks/fetch-openclipart.sh [DEST]   (default ~/.cache/cvtools-bench/openclipart); prints DEST.
set -euo pipefail
dest=${1:-$HOME/.cache/cvtools-bench/openclipart}
if [[ ! -d $dest ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  apt-get download openclipart-png >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download openclipart-png >/dev/null; }
  dpkg-deb -x openclipart-png_*.deb unpacked
  mkdir -p "$(dirname "$dest")"
  mv unpacked/usr/share/openclipart/png "$dest"
fi
echo "$dest"
