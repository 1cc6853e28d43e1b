#!/usr/bin/env bash
# Half against full precision in the feature cache: the same configurations (the random
# strategy's proposals do not depend on accuracies) trained on an f32 cache in memory
# and on an f16 cache memory-mapped from disk, on digits and on Fashion-MNIST 5-9.
# Run from the repository's root:
#   experiments/cache-precision/run.sh [EVALUATIONS]      (default 24)
# SEARCH names the search binary (default: the release build through cargo).
# Writes results/cache-precision/{digits,fmnist59}.csv and summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-24}
search=${SEARCH:-cargo run -q --release -p cryptpeft-search --}
out=results/cache-precision
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
: > "$out/summary.txt"
for space in digits fmnist59; do
  for mode in f32 f16; do
    file="$work/$space-$mode.yaml"
    cp "experiments/spaces/$space.yaml" "$file"
    if [ "$mode" = f16 ]; then
      printf 'cache:\n  store: disk\n  precision: f16\n' >> "$file"
    fi
    $search --space "$file" --out "$work/$space-$mode" --strategy random \
      --evaluations "$n" -q > /dev/null
  done
  # One row per configuration: its validation accuracy in each mode.
  awk -F, -v a=f32 -v b=f16 -f experiments/pair-accuracy.awk \
    "$work/$space-f32/candidates.csv" "$work/$space-f16/candidates.csv" \
    | sort > "$out/$space.csv"
  awk -F, -v space="$space" 'NR > 1 {
      d = $4; n++; s += d; a += (d < 0 ? -d : d); if (d * d > m * m) m = d
    } END {
      printf "%s: %d configurations, f16 - f32 validation accuracy: mean %+.4f, mean |difference| %.4f, largest %+.4f\n", space, n, s / n, a / n, m
    }' "$out/$space.csv" | tee -a "$out/summary.txt"
  du -sh "$work/$space-f32/cache" "$work/$space-f16/cache" | sed "s|$work/||" | tee -a "$out/summary.txt"
done
