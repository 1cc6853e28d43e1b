#!/bin/sh
# The search over a CIFAR-size training set under a 6 GB memory cap (issue 26). Makes
# a synthetic CIFAR-100 (50,000 + 10,000 images) and a random ViT of CIFAR shape under
# runs/cifar-scale, then runs experiments/spaces/cifar-scale.yaml in a memory cgroup
# of 6 GB (v2 or v1; `prlimit --as` where no cgroup is writable) and writes
# results/search/cifar-scale/run.json: wall time, peak memory, the mode the search
# chose and its backbone passes. Run from the repository root. BIN (default
# target/release) is where cryptpeft and cryptpeft-search are.
set -eu
CAP=${CAP:-6G}
. experiments/cifar-scale/setup.sh
[ -f "$work/random-vit-cifar.safetensors" ] ||
  "$BIN/cryptpeft" random-backbone --backbone vit-b16 --image 32 --patch 4 --width 96 \
    --layers 6 --heads 3 --out "$work/random-vit-cifar.safetensors"
rm -rf "$work/run"

# A memory cgroup of $CAP for the search alone.
cg=""
v1=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
v2=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
if [ -w "/sys/fs/cgroup/cgroup.subtree_control" ] && mkdir "/sys/fs/cgroup$v2/cifar-scale.$$" 2>/dev/null; then
  cg="/sys/fs/cgroup$v2/cifar-scale.$$"
  echo "$CAP" > "$cg/memory.max"
  peak="$cg/memory.peak"
elif [ -n "$v1" ] && mkdir "/sys/fs/cgroup/memory$v1/cifar-scale.$$" 2>/dev/null; then
  cg="/sys/fs/cgroup/memory$v1/cifar-scale.$$"
  echo "$CAP" > "$cg/memory.limit_in_bytes"
  peak="$cg/memory.max_usage_in_bytes"
fi
if [ -n "$cg" ]; then
  cap="cgroup $cg"
  run() { sh -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$cg" "$@"; }
else
  cap="prlimit --as=$CAP (no writable cgroup)"
  run() { prlimit --as="$(numfmt --from=iec "$CAP")" "$@"; }
fi
echo "memory cap: $cap" >&2
start=$(date +%s)
run /usr/bin/time -v "$BIN/cryptpeft-search" --space experiments/spaces/cifar-scale.yaml \
  --out "$work/run" 2> "$out/run.log" || { tail -20 "$out/run.log" >&2; exit 1; }
end=$(date +%s)
rss=$(awk -F': ' '/Maximum resident/ { print $2 }' "$out/run.log")
cgpeak=$([ -n "$cg" ] && cat "$peak" || echo null)
[ -n "$cg" ] && rmdir "$cg" 2>/dev/null || true
mode=$(grep -m1 -E '^(population training|feature cache)' "$out/run.log" | sed 's/"/\\"/g')
cat > "$out/run.json" <<JSON
{
  "cap": "$CAP",
  "enforced_by": "$cap",
  "wall_seconds": $((end - start)),
  "peak_rss_kb": $rss,
  "cgroup_peak_bytes": $cgpeak,
  "mode": "$mode"
}
JSON
cp "$work/run/candidates.csv" "$work/run/summary.md" "$out/"
cat "$out/run.json"
