#!/bin/sh
# Rounds before and after fused truncation (issue 25), measured side by side on this
# machine: builds the previous release (commit 758a95a, or $1) in a worktree under
# target/, then runs bench-secure (loopback TCP, TLS, shaped wan) on the acceptance
# plans with both binaries, and `rounds` (the table of every plan against its bound)
# with this one. Run from the repository root. PROFILE=dev builds without
# optimisation of the workspace (minutes instead of the release's half hour); BASE_TARGET
# puts the base's build elsewhere (a shared target directory: the base's binary is
# copied out before this tree is built). PLANS (bench-secure arguments, separated by
# `;`) and TSV (the table's path) choose other plans: protocol 7 was measured with
# PLANS='--adapter h=2,r=64,s=2,attn=relu-softmax,norm=layernorm;--adapter h=2,r=64,s=2,attn=relu-softmax,norm=none' TSV=results/rounds/bench_protocol7.tsv PROFILE=dev experiments/rounds-before-after.sh aef78b0
set -eu
base=${1:-758a95a}
profile=${PROFILE:-release}
dir=$profile; [ "$profile" = dev ] && dir=debug
tree=target/base-$base-src
target=${BASE_TARGET:-$PWD/target/base}
mine=${CARGO_TARGET_DIR:-$PWD/target}
out=results/rounds
plans=${PLANS:-"--adapter h=1,r=300,s=1;--adapter h=1,r=300,s=1 --norm layernorm;--baseline sft-1"}
tsv=${TSV:-$out/bench_before_after.tsv}
[ -d "$tree" ] || git worktree add --detach "$tree" "$base"
# Cargo names a workspace crate's artifacts by its path inside the workspace, so two
# trees sharing a target directory share them: touching a tree's sources makes cargo
# rebuild from that tree rather than reuse the other's.
(cd "$tree" && find . -name '*.rs' -not -path './target/*' -exec touch {} + &&
  CARGO_TARGET_DIR="$target" cargo build --profile "$profile" -p cryptpeft-cli)
mkdir -p target/base-bin "$out"
cp "$target/$dir/cryptpeft" "target/base-bin/cryptpeft-$base"
find types private-eval deploy cost-model train cli search -name '*.rs' -exec touch {} +
cargo build --profile "$profile" -p cryptpeft-cli
"$mine/$dir/cryptpeft" rounds --out results/rounds.csv
echo "$plans" | tr ';' '\n' | while read -r a; do
  for side in before after; do
    if [ $side = before ]; then bin="target/base-bin/cryptpeft-$base"; else bin="$mine/$dir/cryptpeft"; fi
    printf '%s\t%s\t' "$a" $side
    # shellcheck disable=SC2086
    "$bin" bench-secure $a --network wan --repeat 5 --json </dev/null | tr -d '\n'
    echo
  done
done | tee "$tsv"
