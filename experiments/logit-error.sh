#!/bin/sh
# Logit error of every committed digits adapter under secure inference, before and after
# a change, side by side on this machine: builds the base commit ($1, default f621102:
# before the logits' weights were encoded a bit finer on a wide opening) in a worktree
# under target/, then runs `load-test` (TLS, 4 clients, 200 inferences over 200 real
# digits, every logit checked against the f64 reference) with both binaries, and
# `precision` (the error of each rounding source alone) with this one. Run from the
# repository root. PROFILE=dev builds without optimisation of the workspace; BASE_TARGET
# puts the base's build elsewhere (as in rounds-before-after.sh).
set -eu
base=${1:-f621102}
profile=${PROFILE:-release}
dir=$profile; [ "$profile" = dev ] && dir=debug
tree=target/base-logits-src
target=${BASE_TARGET:-$PWD/target/base}
mine=${CARGO_TARGET_DIR:-$PWD/target}
out=results/logit-error
[ -d "$tree" ] || git worktree add --detach "$tree" "$base"
# Two trees sharing a target directory share their crates' artifacts: touching a tree's
# sources makes cargo rebuild from that tree rather than reuse the other's.
(cd "$tree" && find . -name '*.rs' -not -path './target/*' -exec touch {} + &&
  CARGO_TARGET_DIR="$target" cargo build --profile "$profile" -p cryptpeft-cli)
mkdir -p target/base-bin "$out"
cp "$target/$dir/cryptpeft" target/base-bin/cryptpeft-logits
find types private-eval deploy cost-model train cli search -name '*.rs' -exec touch {} +
cargo build --profile "$profile" -p cryptpeft-cli
field() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p" "$2"; }
printf 'adapter\tside\tmax_abs_logit_err\tlogits_off_by_more_than_1e_2\tpredictions_differing\tfailures\n' >"$out/probe.tsv"
: >"$out/precision.txt"
for ckpt in results/search/digits/adapters/*.safetensors; do
  name=$(basename "$ckpt" .safetensors)
  for side in before after; do
    if [ $side = before ]; then bin=target/base-bin/cryptpeft-logits; else bin="$mine/$dir/cryptpeft"; fi
    "$bin" load-test --checkpoint "$ckpt" --digits 200 --clients 4 --inferences 200 \
      --abandon 0 --attackers 0 --out "$out/$name.$side.json" >/dev/null
    j="$out/$name.$side.json"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" $side "$(field max_abs_logit_err "$j")" \
      "$(field logits_off_by_more_than_1e_2 "$j")" "$(field predictions_differing "$j")" \
      "$(field failures "$j")" | tee -a "$out/probe.tsv"
  done
  "$mine/$dir/cryptpeft" precision --checkpoint "$ckpt" --digits 200 >>"$out/precision.txt"
done
