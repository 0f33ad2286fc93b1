#!/usr/bin/env bash
# What one `kind: redis` probe cycle costs Redis, in Redis's own CPU time
# (INFO commandstats usec), side by side with one scrape of
# prometheus-redis-exporter against the same Redis. Prints both figures and
# their ratio.
set -euo pipefail
USAGE="usage: bench/redis-cost.sh [SECONDS]   (default 60: a minute of 1 s cycles)
Redis CPU per redis-probe cycle vs. per redis_exporter scrape.
Needs target/release/lookout (or LOOKOUT_BIN), redis-server, redis-cli, redis-benchmark,
prometheus-redis-exporter, curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
SECS="${SECONDS_ARG:-60}"
need redis-server redis-cli redis-benchmark prometheus-redis-exporter curl python3
need_lookout
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize no >/dev/null &
PIDS+=($!)
wait_until 10 "redis-server on port $RPORT" redis-cli -p "$RPORT" PING
# Some data, so INFO has something to say.
timeout 120 redis-benchmark -p "$RPORT" -q -n 20000 -t set,get -r 1000 >/dev/null

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
PIDS+=("$LPID")
wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"
sleep "$SECS"
# Cycles as lookout counts them (each cycle sends three PINGs).
runs=$(curl -s -m 10 "http://127.0.0.1:$LPORT/metrics" | awk '/^lookout_probe_runs_total/ {s+=$2} END {print s+0}')
stop_pid "$LPID"
# A command's stats are updated after it runs, so each INFO commandstats
# reading excludes itself; CONFIG RESETSTAT's own call is subtracted here.
reset_usec=$(redis-cli -p "$RPORT" INFO commandstats | awk -F'[:,=]' '/^cmdstat_config:/ {for (i=2;i<=NF;i++) if ($i=="usec") print $(i+1)}')
lookout_total=$(( $(usec) - ${reset_usec:-0} ))
redis-cli -p "$RPORT" INFO commandstats | grep -E '^cmdstat_(ping|info|set|get|del|config)' > "$WORK/lookout-commandstats.txt" || true

# --- redis_exporter: one scrape per second --------------------------------
EPORT=$(free_port)
prometheus-redis-exporter --redis.addr="redis://127.0.0.1:$RPORT" --web.listen-address="127.0.0.1:$EPORT" >/dev/null 2>&1 &
PIDS+=($!)
wait_until 20 "redis_exporter on port $EPORT" curl -sf "http://127.0.0.1:$EPORT/"
redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
scrapes=0
end=$((SECONDS + SECS))
while [ $SECONDS -lt $end ]; do
  curl -sf -m 10 "http://127.0.0.1:$EPORT/metrics" >/dev/null
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
