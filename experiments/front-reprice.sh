#!/usr/bin/env bash
# The default search's committed study (results/search/digits) repriced by this
# release's cost model with the study's own constants: same trained adapters, same
# accuracies, new plans (issue 25). Writes results/rounds/front_wan_before_after.csv.
# Run from the repository root; SEARCH names the binary (default: a release build).
set -eu
search=${SEARCH:-target/release/cryptpeft-search}
[ -n "${SEARCH:-}" ] || cargo build --release -p cryptpeft-search
copy=target/front-reprice
rm -rf "$copy" && mkdir -p target results/rounds && cp -r results/search/digits "$copy"
"$search" report "$copy" --quiet
out=results/rounds/front_wan_before_after.csv
echo "config,val_accuracy,rounds_before,predicted_ms_before,rounds_after,predicted_ms_after,ratio" > "$out"
join -t, -j1 \
  <(tail -n +2 results/search/digits/pareto_wan.csv | awk -F, '{print $2","$3","$7","$5*1000}' | sort) \
  <(tail -n +2 "$copy/pareto_wan.csv" | awk -F, '{print $2","$7","$5*1000}' | sort) |
  awk -F, '{printf "%s,%s,%s,%.2f,%s,%.2f,%.3f\n", $1, $2, $3, $4, $5, $6, $6/$4}' |
  sort -t, -k2 -g >> "$out"
cat "$out"
