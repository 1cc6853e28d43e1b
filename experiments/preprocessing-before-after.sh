#!/bin/sh
# Preprocessing before and after seeded material and compact ReLU keys (issue 12),
# measured side by side on this machine: builds the previous release (commit 3e5ce99,
# or $1) in a worktree under target/, then runs bench-protocols and `cost` with both.
# Run from the repository root. BASE_TARGET reuses an existing build of the base.
set -eu
base=${1:-3e5ce99}
tree=target/base-$base-src
target=${BASE_TARGET:-$PWD/target/base}
out=results/preprocessing
[ -d "$tree" ] || git worktree add --detach "$tree" "$base"
(cd "$tree" && CARGO_TARGET_DIR="$target" cargo build --release -p cryptpeft-cli)
cargo build --release -p cryptpeft-cli
mkdir -p "$out"
(cd "$tree" && "$target/release/cryptpeft" bench-protocols --repeat 5 --out "$OLDPWD/$out/protocols_before.csv")
./target/release/cryptpeft bench-protocols --repeat 5 --out "$out/protocols_after.csv"
for a in h=1,r=300,s=1 h=2,r=120,s=2 h=12,r=180,s=3,norm=layernorm; do
  for side in before after; do
    if [ $side = before ]; then bin="$target/release/cryptpeft"; else bin=./target/release/cryptpeft; fi
    printf '%s %s: ' "$a" $side
    "$bin" cost --adapter "$a" --network wan | tail -2 | tr '\n' ' '
    echo
  done
done | tee "$out/cost_before_after.txt"
