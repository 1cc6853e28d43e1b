#!/bin/sh
# Logit error of every committed digits adapter under secure inference, before and after
# a change, side by side on this machine: builds the base commit ($1, default f621102:
# before the logits' weights were encoded a bit finer on a wide opening) in a worktree
# under target/, then runs `load-test` (TLS, 4 clients, 200 inferences over 200 real
# digits, every logit checked against the f64 reference) with both binaries, and
# `precision` (the error of each rounding source alone) with this one. Run from the
# repository root. PROFILE=dev builds without optimisation of the workspace; the builds
# are experiments/base-binary.sh's.
set -eu
base=${1:-f621102}
profile=${PROFILE:-release}
out=results/logit-error
. experiments/base-binary.sh
mkdir -p "$out"
field() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p" "$2"; }
printf 'adapter\tside\tmax_abs_logit_err\tlogits_off_by_more_than_1e_2\tpredictions_differing\tfailures\n' >"$out/probe.tsv"
: >"$out/precision.txt"
for ckpt in results/search/digits/adapters/*.safetensors; do
  name=$(basename "$ckpt" .safetensors)
  for side in before after; do
    if [ $side = before ]; then bin=$before; else bin=$after; fi
    "$bin" load-test --checkpoint "$ckpt" --digits 200 --clients 4 --inferences 200 \
      --abandon 0 --attackers 0 --out "$out/$name.$side.json" >/dev/null
    j="$out/$name.$side.json"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" $side "$(field max_abs_logit_err "$j")" \
      "$(field logits_off_by_more_than_1e_2 "$j")" "$(field predictions_differing "$j")" \
      "$(field failures "$j")" | tee -a "$out/probe.tsv"
  done
  "$after" precision --checkpoint "$ckpt" --digits 200 >>"$out/precision.txt"
done
