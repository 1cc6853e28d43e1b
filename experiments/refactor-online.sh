#!/bin/sh
# The executor's own time before and after the protocol-module restructuring, without a
# network: builds private-eval/examples/online_median.rs (the median online seconds of
# INFERENCES in-process inferences of (1,300,1) at ViT-B/16, default 15) in this tree
# and, copied, in a worktree of the base commit ($1, default 3877d12) under target/,
# then runs the two alternately ROUNDS times (default 9). Writes
# results/refactor/online.tsv and prints the medians and their paired ratio. Run from the
# repository root; dev profile, like the tests.
set -eu
base=${1:-3877d12}
rounds=${ROUNDS:-9}
n=${INFERENCES:-15}
tree=target/base-$base-src
target=${CARGO_TARGET_DIR:-$PWD/target}
out=results/refactor
[ -d "$tree" ] || git worktree add --detach "$tree" "$base"
mkdir -p target/base-bin "$out"
cp private-eval/examples/online_median.rs "$tree/private-eval/examples/"
# Two trees sharing a target directory: touching a tree's sources makes cargo rebuild
# from that tree rather than reuse the other's.
(cd "$tree" && find types private-eval -name '*.rs' -exec touch {} + &&
  CARGO_TARGET_DIR="$target" cargo build -p cryptpeft-private-eval --example online_median)
cp "$target/debug/examples/online_median" target/base-bin/online-median-before
find types private-eval -name '*.rs' -exec touch {} +
cargo build -p cryptpeft-private-eval --example online_median
cp "$target/debug/examples/online_median" target/base-bin/online-median-after
printf 'round\tbefore_s\tafter_s\n' >"$out/online.tsv"
for r in $(seq "$rounds"); do
  printf '%s\t%s\t%s\n' "$r" "$(target/base-bin/online-median-before "$n")" \
    "$(target/base-bin/online-median-after "$n")" | tee -a "$out/online.tsv"
done
awk -F'\t' 'NR > 1 { b[NR - 1] = $2; a[NR - 1] = $3; q[NR - 1] = $3 / $2; n = NR - 1 }
  function med(x, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
    return (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
  }
  END { printf "median before %.5f s, after %.5f s, median paired ratio %.3f\n", med(b, n), med(a, n), med(q, n) }' "$out/online.tsv"
