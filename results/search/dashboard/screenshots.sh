#!/usr/bin/env bash
# Screenshots of `cryptpeft-search dashboard` on the shipped digits study, in headless
# Chromium (Debian's `chromium`). Run from the repository's root:
#   results/search/dashboard/screenshots.sh
# It only reads the study; the pictures land beside this script.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=results/search/dashboard
port=${PORT:-8765}
cargo build -q -p cryptpeft-search  # the dashboard does little work: the dev build serves it
target=${CARGO_TARGET_DIR:-target}
"$target/debug/cryptpeft-search" dashboard results/search/digits --port "$port" >/dev/null &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/api/study" >/dev/null && break; sleep 0.2; done
profile=$(mktemp -d)
shot() { # file, height, url suffix
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size="1400,$2" \
    --virtual-time-budget=4000 --screenshot="$out/$1" "http://127.0.0.1:$port/$3" 2>/dev/null
}
# The whole page; then a front member selected (the most accurate on wan).
shot overview.png 2250 ""
best=$(curl -s "http://127.0.0.1:$port/api/study" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["fronts"][s["select"]][-1])')
shot selected.png 1250 "#trial=$best"
rm -rf "$profile"
echo "wrote $out/overview.png and $out/selected.png (trial $best selected)"
