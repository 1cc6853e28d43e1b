#!/bin/sh
# Rounds before and after fused truncation (issue 25), measured side by side on this
# machine: builds the previous release (commit 758a95a, or $1) in a worktree under
# target/, then runs bench-secure (loopback TCP, TLS, shaped wan) on the acceptance
# plans with both binaries, and `rounds` (the table of every plan against its bound)
# with this one. Run from the repository root. PROFILE=dev builds without
# optimisation of the workspace (minutes instead of the release's half hour); the builds
# are experiments/base-binary.sh's. PLANS (bench-secure arguments, separated by
# `;`) and TSV (the table's path) choose other plans: protocol 7 was measured with
# PLANS='--adapter h=2,r=64,s=2,attn=relu-softmax,norm=layernorm;--adapter h=2,r=64,s=2,attn=relu-softmax,norm=none' TSV=results/rounds/bench_protocol7.tsv PROFILE=dev experiments/rounds-before-after.sh aef78b0
set -eu
base=${1:-758a95a}
profile=${PROFILE:-release}
out=results/rounds
plans=${PLANS:-"--adapter h=1,r=300,s=1;--adapter h=1,r=300,s=1 --norm layernorm;--baseline sft-1"}
tsv=${TSV:-$out/bench_before_after.tsv}
. experiments/base-binary.sh
mkdir -p "$out"
"$after" rounds --out results/rounds.csv
echo "$plans" | tr ';' '\n' | while read -r a; do
  for side in before after; do
    if [ $side = before ]; then bin=$before; else bin=$after; fi
    printf '%s\t%s\t' "$a" $side
    # shellcheck disable=SC2086
    "$bin" bench-secure $a --network wan --repeat 5 --json </dev/null | tr -d '\n'
    echo
  done
done | tee "$tsv"
