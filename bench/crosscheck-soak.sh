#!/usr/bin/env bash
# False verdicts: the local stack (deploy/local/stack.sh) under steady
# synthetic load (redis-benchmark writing and reading keys) for DURATION
# seconds, with lookout running config/lookout.yaml and cross-checking every
# 15 s. Counts disagree verdicts from the honest sources (goal: zero), and
# the CPU time lookout spent.
#
#   bench/crosscheck-soak.sh [DURATION]     (default 600)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${1:-600}"
LOOKOUT="${LOOKOUT_BIN:-$ROOT/target/release/lookout}"
cd "$ROOT"
deploy/local/stack.sh up >/dev/null
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOOKOUT_LISTEN="127.0.0.1:$PORT" LOOKOUT_DATA_DIR="$WORK/data" "$LOOKOUT" run -c config/lookout.yaml --log-level warn &
LPID=$!
PIDS+=($LPID)
# Steady load: 200 requests/s of SET and GET over 10,000 keys (some miss).
(
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    redis-benchmark -p 16379 -q -n 200 -c 2 -t set,get -r 12000 >/dev/null 2>&1 || true
    sleep 1
  done
) &
PIDS+=($!)
sleep "$DURATION"
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$LPID/stat" 2>/dev/null || echo "?")
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null || true
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
