#!/usr/bin/env bash
# Augmentation's effect: the same configurations (the random strategy's proposals do not
# depend on accuracies) trained by population training without a cache, once on the
# plain images and once with `fidelity.augment: true` (a fresh random resized crop +
# flip per image and batch), on Fashion-MNIST 5-9 (3,000 images) and digits.
# Run from the repository's root:
#   experiments/augmentation/run.sh [EVALUATIONS]      (default 24)
# SEARCH names the search binary (default: the release build through cargo).
# Writes results/augmentation/{fmnist59,digits}.csv and summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-24}
search=${SEARCH:-cargo run -q --release -p cryptpeft-search --}
out=results/augmentation
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
: > "$out/summary.txt"
for space in fmnist59 digits; do
  for mode in plain augment; do
    file="$work/$space-$mode.yaml"
    if [ "$mode" = augment ]; then
      sed 's/^  epochs: \(.*\)/  epochs: \1\n  augment: true/' "experiments/spaces/$space.yaml" > "$file"
    else
      cp "experiments/spaces/$space.yaml" "$file"
    fi
    printf 'cache:\n  store: none\n' >> "$file"
    /usr/bin/time -f "$space $mode: %e s wall, %M KB peak" \
      $search --space "$file" --out "$work/$space-$mode" --strategy random \
      --evaluations "$n" -q > /dev/null 2>> "$out/summary.txt"
  done
  # One row per configuration: its validation accuracy in each mode.
  awk -F, -v a=plain -v b=augment -f experiments/pair-accuracy.awk \
    "$work/$space-plain/candidates.csv" "$work/$space-augment/candidates.csv" \
    | sort > "$out/$space.csv"
  awk -F, -v space="$space" 'NR > 1 {
      d = $4; n++; s += d; if (d > 0) up++; if (d < 0) down++
      if ($2 > best_a) best_a = $2; if ($3 > best_b) best_b = $3
    } END {
      printf "%s: %d configurations, augmented - plain validation accuracy: mean %+.4f, better %d, worse %d; best plain %.4f, best augmented %.4f\n", space, n, s / n, up, down, best_a, best_b
    }' "$out/$space.csv" | tee -a "$out/summary.txt"
done
