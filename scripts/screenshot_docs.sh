#!/usr/bin/env bash
# Screenshot three pages of the built site (home, one notebook, one API page) with headless chromium.
#
#   mkdocs build --strict && scripts/screenshot_docs.sh [SITE_DIR] [OUT_DIR]
#
# Serves SITE_DIR (default site/) on 127.0.0.1 with python -m http.server, killed by its PID on exit (also on
# failure); chromium is Debian's package (apt-get install -y chromium). Writes OUT_DIR/{home,notebook,api}.png
# (default docs/figures/screenshots). Nothing here needs the network. The site loads MathJax 3 from a CDN; offline, when
# Debian's libjs-mathjax (MathJax 2.7) is installed, the pages are served from a temporary copy that loads it instead,
# so the formulas render as a reader online sees them (else they show as TeX source).
set -euo pipefail
cd "$(dirname "$0")/.."
site="${1:-site}"
out="${2:-docs/figures/screenshots}"
port="${PORT:-8765}"
width="${WIDTH:-1440}"
height="${HEIGHT:-900}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "chromium not found: apt-get install -y chromium" >&2; exit 2; }
[ -f "$site/index.html" ] || { echo "$site/index.html not found: run mkdocs build --strict first" >&2; exit 2; }
mkdir -p "$out"
profile="$(mktemp -d)"
serve="$site"
local_mathjax=/usr/share/javascript/mathjax
if [ -f "$local_mathjax/MathJax.js" ]; then
  serve="$(mktemp -d)"
  cp -r "$site"/. "$serve"/
  ln -s "$local_mathjax" "$serve/_mathjax"
  grep -rl --include='*.html' 'cdn.jsdelivr.net/npm/mathjax@3' "$serve" | xargs -r sed -i \
    's|https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js|/_mathjax/MathJax.js?config=TeX-AMS_CHTML|g'
fi

python3 -m http.server "$port" --bind 127.0.0.1 --directory "$serve" >/dev/null 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$profile"
  [ "$serve" = "$site" ] || rm -rf "$serve"
}
trap cleanup EXIT INT TERM

for _ in $(seq 50); do   # wait up to 5 s for the server
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
  sleep 0.1
done

shot() {  # shot NAME URL_PATH [HEIGHT] (headless chromium renders an #anchor URL blank, so no anchors)
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile" \
    --hide-scrollbars --window-size="$width,${3:-$height}" --virtual-time-budget=15000 \
    --screenshot="$out/$1.png" "http://127.0.0.1:$port/$2" >/dev/null 2>&1
  echo "$out/$1.png  <- /$2"
}
shot home ""
shot notebook "notebooks/06_axioms_to_pde/" "${NOTEBOOK_HEIGHT:-12000}"   # tall, then cropped below
shot api "api/core/"

# Keep the committed PNGs small: the notebook shot is cropped to CROP="top,height" (pixels of the tall capture; the
# default frames section 4 of notebook 06, its output and its figure), then all three are reduced to a 256-colour
# palette (needs Pillow, which matplotlib installs).
python3 - "$out" "${CROP:-8480,1260}" <<'PY' || echo "Pillow not found: PNGs left as captured" >&2
import sys
from pathlib import Path
from PIL import Image

folder, (top, height) = Path(sys.argv[1]), map(int, sys.argv[2].split(","))
for name in ("home", "notebook", "api"):
    path = folder / f"{name}.png"
    img = Image.open(path).convert("RGB")
    if name == "notebook" and height > 0:
        img = img.crop((0, top, img.width, min(img.height, top + height)))
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(path, f"{img.width} x {img.height}", f"{path.stat().st_size // 1024} KiB")
PY
