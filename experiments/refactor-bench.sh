#!/bin/sh
# bench-secure before and after the protocol-module restructuring (issue 24), side by
# side on this machine: builds the base commit ($1, default 3877d12, the last release
# before it) in a worktree under target/, then runs `bench-secure` on ViT-B/16 over the
# simulated wan (TLS, `--repeat 3` each) for (1,300,1) and (2,120,2), alternating the two
# binaries ROUNDS times (default 5). Writes every run's JSON and a table of medians to
# results/refactor/. Run from the repository root. PROFILE=dev builds without
# optimisation of the workspace; the builds are experiments/base-binary.sh's.
set -eu
base=${1:-3877d12}
profile=${PROFILE:-release}
rounds=${ROUNDS:-5}
out=results/refactor
. experiments/base-binary.sh
mkdir -p "$out"
field() { sed -n "s/^  \"$1\": \([^,}]*\),*$/\1/p" "$2"; }
printf 'adapter\tside\tround\tonline_s\tonline_bytes\trounds\toffline_bytes\tmax_abs_logit_err\n' >"$out/runs.tsv"
for r in $(seq "$rounds"); do
  for adapter in h=1,r=300,s=1 h=2,r=120,s=2; do
    for side in before after; do
      if [ $side = before ]; then bin=$before; else bin=$after; fi
      j="$out/$(echo "$adapter" | tr ',=' '-_').$side.$r.json"
      "$bin" bench-secure --adapter "$adapter" --backbone vit-b16 --network wan --repeat 3 --json >"$j"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$adapter" $side "$r" "$(field online_s "$j")" \
        "$(field online_bytes "$j")" "$(field rounds "$j")" "$(field offline_bytes "$j")" \
        "$(field max_abs_logit_err "$j")" | tee -a "$out/runs.tsv"
    done
  done
done
# Medians per adapter and side, and after / before.
awk -F'\t' 'NR > 1 { k = $1 "\t" $2; n[k]++; v[k, n[k]] = $4; b[k] = $5; rd[k] = $6; off[k] = $7 }
  END {
    printf "adapter\tside\tmedian_online_s\tonline_bytes\trounds\toffline_bytes\n"
    for (k in n) {
      m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      med[k] = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
      printf "%s\t%.4f\t%s\t%s\t%s\n", k, med[k], b[k], rd[k], off[k]
    }
    for (k in n) if (k ~ /after$/) { s = k; sub(/after$/, "before", s); split(k, p, "\t")
      printf "%s\tafter/before\t%.3f\n", p[1], med[k] / med[s] }
  }' "$out/runs.tsv" | sort >"$out/summary.tsv"
cat "$out/summary.tsv"
