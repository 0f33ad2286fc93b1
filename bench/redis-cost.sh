#!/usr/bin/env bash
# What one `kind: redis` probe cycle costs Redis, in Redis's own CPU time
# (INFO commandstats usec), side by side with one scrape of
# prometheus-redis-exporter against the same Redis.
#
#   bench/redis-cost.sh [SECONDS]     (default 60: a minute of 1 s cycles)
#
# Needs target/release/lookout (cargo build --release), redis-server and
# prometheus-redis-exporter. Prints both figures and their ratio.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-60}"
LOOKOUT="${LOOKOUT_BIN:-$ROOT/target/release/lookout}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize no >/dev/null &
PIDS+=($!)
until redis-cli -p "$RPORT" PING >/dev/null 2>&1; do sleep 0.05; done
# Some data, so INFO has something to say.
redis-benchmark -p "$RPORT" -q -n 20000 -t set,get -r 1000 >/dev/null

# Total usec of every command except the measuring INFO commandstats itself.
usec() { redis-cli -p "$RPORT" INFO commandstats | awk -F'[:,=]' '/^cmdstat_/ {for (i=2;i<=NF;i++) if ($i=="usec") s+=$(i+1)} END {print s+0}'; }
calls() { redis-cli -p "$RPORT" INFO commandstats | awk -F'[:,=]' '/^cmdstat_/ {for (i=2;i<=NF;i++) if ($i=="calls") s+=$(i+1)} END {print s+0}'; }

# --- lookout: one redis probe every second -------------------------------
LPORT=$(free_port)
cat > "$WORK/lookout.yaml" <<YAML
server: {listen: "127.0.0.1:$LPORT"}
data_dir: $WORK/data
probe_files: []
probes:
  - name: cache
    kind: redis
    url: redis://127.0.0.1:$RPORT
    every: 1s
YAML
redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
"$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn &
LPID=$!
PIDS+=($LPID)
sleep "$SECS"
# Cycles as lookout counts them (each cycle sends three PINGs).
runs=$(curl -s "http://127.0.0.1:$LPORT/metrics" | awk '/^lookout_probe_runs_total/ {s+=$2} END {print s+0}')
kill "$LPID"; wait "$LPID" 2>/dev/null || true
# A command's stats are updated after it runs, so each INFO commandstats
# reading excludes itself; CONFIG RESETSTAT's own call is subtracted here.
reset_usec=$(redis-cli -p "$RPORT" INFO commandstats | awk -F'[:,=]' '/^cmdstat_config:/ {for (i=2;i<=NF;i++) if ($i=="usec") print $(i+1)}')
lookout_total=$(( $(usec) - ${reset_usec:-0} ))
redis-cli -p "$RPORT" INFO commandstats | grep -E '^cmdstat_(ping|info|set|get|del|config)' > "$WORK/lookout-commandstats.txt" || true

# --- redis_exporter: one scrape per second --------------------------------
EPORT=$(free_port)
prometheus-redis-exporter --redis.addr="redis://127.0.0.1:$RPORT" --web.listen-address="127.0.0.1:$EPORT" >/dev/null 2>&1 &
PIDS+=($!)
until curl -sf "http://127.0.0.1:$EPORT/" >/dev/null 2>&1; do sleep 0.05; done
redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
scrapes=0
end=$((SECONDS + SECS))
while [ $SECONDS -lt $end ]; do
  curl -sf "http://127.0.0.1:$EPORT/metrics" >/dev/null
  scrapes=$((scrapes + 1))
  sleep 1
done
exporter_total=$(usec)
redis-cli -p "$RPORT" INFO commandstats | grep -E '^cmdstat_(info|config|slowlog|latency|client|ping)' > "$WORK/exporter-commandstats.txt" || true

python3 - "$runs" "$lookout_total" "$scrapes" "$exporter_total" <<'PY'
import sys
runs, lt, scrapes, et = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lp = lt / runs
ep = et / scrapes
print(f"lookout redis probe: {runs} cycles, {lt:.0f} usec of Redis CPU in all, {lp:.1f} usec per cycle")
print(f"redis_exporter:      {scrapes} scrapes, {et:.0f} usec of Redis CPU in all, {ep:.1f} usec per scrape")
print(f"ratio (lookout / exporter): {lp/ep:.3f}  (goal: at most 0.2)")
PY
echo "--- lookout's commands"; cat "$WORK/lookout-commandstats.txt"
echo "--- exporter's commands"; cat "$WORK/exporter-commandstats.txt"
