#!/bin/sh
# The paper's space at ViT-B/16 over a CIFAR-size training set (issue 26): what a full
# run would need in each mode, from the search's own planner (`--plan-only`), and one
# short population run whose wall time checks the planner's per-image figures. A random
# ViT-B/16 (`cryptpeft random-backbone`; only its time matters) and the synthetic
# CIFAR-100 of make-synthetic-cifar100.py (50,000 + 10,000 images) stand in for the real
# ones; the space is experiments/spaces/paper-vit-b16.yaml without its 2,000-image
# sample. Run from the repository root; writes results/search/cifar-scale/plan-vit-b16.md
# and short-run.json. BIN as in run.sh.
set -eu
. experiments/cifar-scale/setup.sh
[ -f "$work/random-vit-b16.safetensors" ] ||
  "$BIN/cryptpeft" random-backbone --backbone vit-b16 --out "$work/random-vit-b16.safetensors"
sed -e "s#^backbone: .*#backbone: $work/random-vit-b16.safetensors#" \
  -e "s#^  path: .*#  path: $work/synthetic-cifar-100#" \
  -e '/^  max_train:/d' -e '/^  max_test:/d' \
  experiments/spaces/paper-vit-b16.yaml > "$work/paper-vit-b16-full.yaml"
{
  echo "# The paper's space at ViT-B/16, CIFAR size: the planner"
  echo
  echo "\`$BIN/cryptpeft-search --space $work/paper-vit-b16-full.yaml --plan-only\`"
  echo "(experiments/cifar-scale/plan-vit-b16.sh, $(date -u +%Y-%m-%d)):"
  echo
  "$BIN/cryptpeft-search" --space "$work/paper-vit-b16-full.yaml" --out "$work/plan-full" --plan-only -q
} > "$out/plan-vit-b16.md"
# The short run: 100 training images (90 + 10 for validation), 20 test images, one group
# of 2 candidates, 1 epoch, no cache; planned, then run.
sed -e 's/^  dataset: cifar100/  dataset: cifar100\n  max_train: 100\n  max_test: 20/' \
  -e 's/^  ladder: .*//' -e 's/^  epochs: .*/  epochs: 1/' \
  -e 's/^population: .*/population: 2/' -e 's/^  evaluations: .*/  evaluations: 2/' \
  "$work/paper-vit-b16-full.yaml" > "$work/paper-vit-b16-short.yaml"
printf 'cache:\n  store: none\nconstants: shipped\n' >> "$work/paper-vit-b16-short.yaml"
"$BIN/cryptpeft-search" --space "$work/paper-vit-b16-short.yaml" --out "$work/plan-short" \
  --plan-only -q > "$work/plan-short.md"
rm -rf "$work/short"
start=$(date +%s)
"$BIN/cryptpeft-search" --space "$work/paper-vit-b16-short.yaml" --out "$work/short" -q > /dev/null
end=$(date +%s)
predicted=$(awk -F'|' '/population training/ { gsub(/ /, "", $6); print $6 }' "$work/plan-short.md")
cat > "$out/short-run.json" <<JSON
{
  "space": "$work/paper-vit-b16-short.yaml",
  "mode": "population training, one group of 2, 1 epoch, 100 + 20 images",
  "planned_hours": $predicted,
  "measured_seconds": $((end - start))
}
JSON
{
  echo
  echo "The short run ($work/paper-vit-b16-short.yaml: 100 training images, 20 test, one"
  echo "group of 2 candidates, 1 epoch), planned then run (\`short-run.json\`):"
  echo
  cat "$work/plan-short.md"
  echo
  echo "measured: $((end - start)) s wall time"
} >> "$out/plan-vit-b16.md"
cat "$out/plan-vit-b16.md"
