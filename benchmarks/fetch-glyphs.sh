#!/bin/bash
# Benchmark data: characters rendered from Debian's fonts-dejavu-core, fonts-dejavu-extra and
# fonts-liberation (37 typefaces), in DEST/char-<c>/<font>-0.png: the letters A-Z and digits 0-9,
# each in every typeface with a seeded size, position, tilt, ink and paper. A category is a character.
# Usage: benchmarks/fetch-glyphs.sh [DEST]   (default ~/.cache/cvtools-bench/glyphs).
set -euo pipefail
dest=${1:-$HOME/.cache/cvtools-bench/glyphs}
if [[ ! -d $dest ]]; then
  fonts=/usr/share/fonts/truetype
  if [[ ! -d $fonts/dejavu || ! -d $fonts/liberation ]]; then
    (apt-get install -y -qq fonts-dejavu-core fonts-dejavu-extra fonts-liberation >/dev/null 2>&1) \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq fonts-dejavu-core fonts-dejavu-extra fonts-liberation >/dev/null; }
  fi
  cd "$(dirname "$0")/.."
  python -m benchmarks.glyphs "$fonts" "$dest.partial" >&2
  mv "$dest.partial" "$dest"
fi
echo "$dest"
