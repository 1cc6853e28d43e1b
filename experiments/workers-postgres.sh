#!/usr/bin/env bash
# The default search (the README's first command's space) on one PostgreSQL study with
# 1 worker, then on another study with 3 workers, each worker with its own run
# directory as if on its own machine: wall time and trainings per minute.
#
#   experiments/workers-postgres.sh            # starts a throwaway PostgreSQL cluster
#   CRYPTPEFT_POSTGRES=postgresql://u@h/db experiments/workers-postgres.sh
#
# Writes results/workers/runs.csv and each study's outputs as a report from a fourth
# directory rebuilds them (results/workers/wN/report/: fronts, candidates with each
# trial's worker, checkpoints). Needs Debian's postgresql without CRYPTPEFT_POSTGRES.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/workers}
WORKERS=${WORKERS:-"1 3"}
cargo build --release -q -p cryptpeft-search
BIN=target/release/cryptpeft-search

URL=${CRYPTPEFT_POSTGRES:-}
if [ -z "$URL" ]; then
  BINDIR=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGDIR=$(mktemp -d /tmp/cryptpeft-workers-pg.XXXXXX)
  AS=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PGDIR"
    AS=(runuser -u postgres --)
  fi
  "${AS[@]}" "$BINDIR/initdb" -A trust -U cryptpeft -E UTF8 --no-sync -D "$PGDIR/data" >/dev/null
  "${AS[@]}" "$BINDIR/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
    -o "-k $PGDIR -c listen_addresses=" start >/dev/null
  trap '"${AS[@]}" "$BINDIR/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null; rm -rf "$PGDIR"' EXIT
  URL="postgresql:///postgres?user=cryptpeft&host=$PGDIR"
fi

rm -rf "$OUT"
mkdir -p "$OUT"
echo "workers,trainings,wall_s,trainings_per_min,per_worker" > "$OUT/runs.csv"
for n in $WORKERS; do
  study="digits-w$n-$(date +%s)"
  start=$(date +%s.%N)
  pids=()
  mkdir -p "$OUT/w$n"
  for ((i = 0; i < n; i++)); do
    "$BIN" --out "$OUT/w$n/machine$i" --storage "$URL" --study "$study" -q \
      > "$OUT/w$n/machine$i.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  end=$(date +%s.%N)
  # Trainings per worker, from the study itself (the report of a fourth directory).
  "$BIN" report "$OUT/w$n/report" --storage "$URL" --study "$study" -q > /dev/null
  python3 - "$OUT/w$n/report/candidates.csv" "$n" "$start" "$end" >> "$OUT/runs.csv" <<'EOF'
import csv, sys
from collections import Counter
rows = list(csv.DictReader(open(sys.argv[1])))
trained = [r for r in rows if r["state"] in ("complete", "failed")]
per = Counter(r["worker"] for r in trained)
wall = float(sys.argv[4]) - float(sys.argv[3])
print(f"{sys.argv[2]},{len(trained)},{wall:.1f},{len(trained) / wall * 60:.2f},"
      + "/".join(str(c) for _, c in sorted(per.items())))
EOF
  rm -rf "$OUT"/w"$n"/machine* "$OUT"/w"$n"/report/cache "$OUT"/w"$n"/report/storage.json
done
column -s, -t "$OUT/runs.csv"
