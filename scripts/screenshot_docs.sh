#!/usr/bin/env bash
# Screenshot three pages of the built site (home, one notebook, one API page) with headless chromium.
#
#   mkdocs build --strict && scripts/screenshot_docs.sh [SITE_DIR] [OUT_DIR]
#
# Serves SITE_DIR (default site/) on 127.0.0.1 with python -m http.server, killed by its PID on exit (also on
# failure); chromium is Debian's package (apt-get install -y chromium). Writes OUT_DIR/{home,notebook,api}.png
# (default docs/figures/screenshots). Nothing here needs the network: MathJax is loaded from a CDN, so offline the
# formulas show as TeX source.
set -euo pipefail
cd "$(dirname "$0")/.."
site="${1:-site}"
out="${2:-docs/figures/screenshots}"
port="${PORT:-8765}"
width="${WIDTH:-1280}"
height="${HEIGHT:-900}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "chromium not found: apt-get install -y chromium" >&2; exit 2; }
[ -f "$site/index.html" ] || { echo "$site/index.html not found: run mkdocs build --strict first" >&2; exit 2; }
mkdir -p "$out"
profile="$(mktemp -d)"

python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$profile"; }
trap cleanup EXIT INT TERM

for _ in $(seq 50); do   # wait up to 5 s for the server
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
  sleep 0.1
done

shot() {  # shot NAME URL_PATH
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile" \
    --hide-scrollbars --window-size="$width,$height" --virtual-time-budget=5000 \
    --screenshot="$out/$1.png" "http://127.0.0.1:$port/$2" >/dev/null 2>&1
  echo "$out/$1.png  <- /$2"
}
shot home ""
shot notebook "notebooks/06_axioms_to_pde/"
shot api "api/core/"
