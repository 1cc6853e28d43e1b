#!/bin/sh
# From image files to private classes (issue 11): trains a digits adapter on the
# shipped backbone, writes the first 100 digits test images as PNG files, starts a
# dealer and a server under TLS on loopback, and runs `cryptpeft infer --images` on
# them, comparing each private class with the plaintext model's (--check-against).
# Run from the repository root; writes results/images/digits100.json and .log.
set -eu
out=results/images
tmp=$(mktemp -d)
trap 'kill $dealer $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
cargo build --release -p cryptpeft-cli
cargo build --release -p cryptpeft-train --example digits_to_image_folder
bin=./target/release/cryptpeft
$bin train --dataset digits --epochs 10 --checkpoint "$tmp/adapter.safetensors" > "$tmp/train.json"
./target/release/examples/digits_to_image_folder "$tmp/folder" > /dev/null
mkdir -p "$tmp/images" "$out"
find "$tmp/folder/test" -name '*.png' | sort | head -100 | while read -r f; do
  cp "$f" "$tmp/images/$(basename "$f")"
done
$bin keys --out "$tmp/keys" --host 127.0.0.1 > /dev/null
$bin dealer --listen 127.0.0.1:7300 --tls "$tmp/keys" & dealer=$!
sleep 1
$bin serve --checkpoint "$tmp/adapter.safetensors" --listen 127.0.0.1:7301 --dealer 127.0.0.1:7300 --tls "$tmp/keys" & server=$!
sleep 2
$bin infer --server 127.0.0.1:7301 --dealer 127.0.0.1:7300 --tls "$tmp/keys" \
  --images "$tmp/images" --check-against "$tmp/adapter.safetensors" --json \
  --setup-cache "$tmp/cache" > "$out/digits100.json" 2> "$out/digits100.log"
cat "$out/digits100.log"
