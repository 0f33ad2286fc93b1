#!/usr/bin/env bash
# False verdicts: the local stack (deploy/local/stack.sh) under steady
# synthetic load (redis-benchmark writing and reading keys) for DURATION
# seconds, with lookout running config/lookout.yaml and cross-checking every
# 15 s. Counts disagree verdicts from the honest sources (goal: zero), and
# the CPU time lookout spent.
set -euo pipefail
USAGE="usage: bench/crosscheck-soak.sh [SECONDS]   (default 600)
Disagree verdicts from honest sources on the local stack under steady load, and lookout's CPU time.
Needs target/release/lookout (or LOOKOUT_BIN), redis-benchmark, curl, python3, and the local
stack (deploy/local/stack.sh up, which this script runs)."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
DURATION="${SECONDS_ARG:-600}"
need redis-benchmark curl python3
need_lookout
cd "$ROOT"
timeout 600 deploy/local/stack.sh up >/dev/null || die "deploy/local/stack.sh up failed (or took over 10 minutes)"
PORT=$(free_port)
LOOKOUT_LISTEN="127.0.0.1:$PORT" LOOKOUT_DATA_DIR="$WORK/data" "$LOOKOUT" run -c config/lookout.yaml --log-level warn &
LPID=$!
PIDS+=("$LPID")
wait_until 20 "lookout on port $PORT" curl -sf "http://127.0.0.1:$PORT/-/healthy"
# Steady load: 200 requests/s of SET and GET over 10,000 keys (some miss).
(
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    timeout 30 redis-benchmark -p 16379 -q -n 200 -c 2 -t set,get -r 12000 >/dev/null 2>&1 || true
    sleep 1
  done
) &
PIDS+=($!)
sleep "$DURATION"
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$LPID/stat" 2>/dev/null || echo "?")
stop_pid "$LPID"
python3 - "$WORK/data/history.db" "$cpu" "$DURATION" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rounds = db.execute("SELECT COUNT(*) FROM crosscheck_rounds").fetchone()[0]
print(f"{rounds} rounds in {sys.argv[3]} s; lookout CPU time {sys.argv[2]} s")
for verdict, n in db.execute("SELECT verdict, COUNT(*) FROM crosscheck GROUP BY verdict ORDER BY verdict"):
    print(f"  {verdict}: {n}")
bad = db.execute("SELECT source, metric, COUNT(*) FROM crosscheck WHERE verdict = 'disagree' GROUP BY source, metric").fetchall()
print("disagree verdicts from honest sources:", sum(n for _, _, n in bad))
for s, m, n in bad:
    print(f"  {s}/{m}: {n}")
PY
