#!/bin/sh
# From an image file to private logits at ViT-B/16 (issue 11): a freshly initialised
# ViT-B/16 backbone (torchvision layout; only its time matters) and a random adapter
# (1, 300, 1) of trained scale; a dealer and a server under TLS on loopback shaped as
# `wan` (400 Mbit/s, 4 ms one way); `cryptpeft infer --images` on 20 PNG files (digits
# test images; the client resizes them to 224 x 224). The first image warms the
# per-model setup cache; the report is per image. Run from the repository root;
# writes results/images/vitb16-wan.json and .log.
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
$bin infer --server 127.0.0.1:7311 --dealer 127.0.0.1:7310 --tls "$tmp/keys" --network wan \
  --images "$tmp/images" --backbone "$tmp/vit_b16.safetensors" --json \
  --setup-cache "$tmp/cache" > "$out/vitb16-wan.json" 2> "$out/vitb16-wan.log"
cat "$out/vitb16-wan.log"
