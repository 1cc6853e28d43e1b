#!/bin/sh
# From an image file to private logits at ViT-B/16 (issue 11): a freshly initialised
# ViT-B/16 backbone (torchvision layout; only its time matters) and a random adapter
# (1, 300, 1) of trained scale; a dealer and a server under TLS on loopback shaped as
# `wan` (400 Mbit/s, 4 ms one way); `cryptpeft infer --images` on 20 PNG files (digits
# test images; the client resizes them to 224 x 224) over one connection, then again
# with --states-at-once (the online phase waits for every state instead of opening
# x_{L-1} while the last layer runs), alternating three times. Run from the repository
# root; writes results/images/vitb16-wan.json (the first streamed run),
# vitb16-wan-runs.json (every run's medians) and .log.
set -eu
out=results/images
tmp=$(mktemp -d)
trap 'kill $dealer $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
cargo build --release -p cryptpeft-cli
cargo build --release -p cryptpeft-train --example digits_to_image_folder
bin=./target/release/cryptpeft
$bin random-backbone --backbone vit-b16 --out "$tmp/vit_b16.safetensors"
$bin random-checkpoint --adapter h=1,r=300,s=1 --backbone vit-b16 --out "$tmp/adapter.safetensors"
./target/release/examples/digits_to_image_folder "$tmp/folder" > /dev/null
mkdir -p "$tmp/images" "$out"
find "$tmp/folder/test" -name '*.png' | sort | head -20 | while read -r f; do
  cp "$f" "$tmp/images/$(basename "$f")"
done
$bin keys --out "$tmp/keys" --host 127.0.0.1 > /dev/null
$bin dealer --listen 127.0.0.1:7310 --tls "$tmp/keys" --network wan & dealer=$!
sleep 1
$bin serve --checkpoint "$tmp/adapter.safetensors" --listen 127.0.0.1:7311 --dealer 127.0.0.1:7310 --tls "$tmp/keys" --network wan & server=$!
sleep 3
infer() {
  $bin infer --server 127.0.0.1:7311 --dealer 127.0.0.1:7310 --tls "$tmp/keys" --network wan \
    --images "$tmp/images" --backbone "$tmp/vit_b16.safetensors" --json "$@"
}
for i in 1 2 3; do
  infer > "$tmp/streamed$i.json" 2>> "$out/vitb16-wan.log"
  infer --states-at-once > "$tmp/at-once$i.json" 2>> "$out/vitb16-wan.log"
done
cp "$tmp/streamed1.json" "$out/vitb16-wan.json"
python3 - "$tmp" > "$out/vitb16-wan-runs.json" <<'PY'
import json, statistics as st, sys
runs = []
for mode in ["streamed", "at-once"]:
    for i in (1, 2, 3):
        r = json.load(open(f"{sys.argv[1]}/{mode}{i}.json"))
        med = lambda k: round(st.median(x[k] for x in r[1:]), 4)
        runs.append({"mode": mode, "run": i, "images": len(r),
                     "first_end_to_end_s": round(r[0]["end_to_end_s"], 4),
                     "max_end_to_end_s": round(max(x["end_to_end_s"] for x in r), 4),
                     **{k: med(k) for k in ["backbone_s", "end_to_end_s", "after_backbone_s"]}})
print(json.dumps(runs, indent=1))
PY
cat "$out/vitb16-wan-runs.json"
