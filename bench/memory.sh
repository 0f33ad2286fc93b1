#!/usr/bin/env bash
# Resident memory of `lookout run` with 50 probes at 1 s (25 redis, 25
# http_health), after DURATION seconds, beside prometheus-blackbox-exporter
# doing the same 50 probes a second (25 http_2xx, 25 tcp_connect), as
# Prometheus would drive it. Also prints the blackbox exporter's idle RSS.
set -euo pipefail
USAGE="usage: bench/memory.sh [SECONDS]   (default 600: ten minutes)
RSS of lookout running 50 probes at 1 s vs. prometheus-blackbox-exporter doing the same.
Needs target/release/lookout (or LOOKOUT_BIN), redis-server, redis-cli, curl, python3,
prometheus-blackbox-exporter."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
DURATION="${SECONDS_ARG:-600}"
need redis-server redis-cli curl python3 prometheus-blackbox-exporter
need_lookout
BLACKBOX="$(command -v prometheus-blackbox-exporter)"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
wait_until 10 "redis-server on port $RPORT" redis-cli -p "$RPORT" PING

# A static health endpoint in the documented shape.
mkdir -p "$WORK/www/health/redis"
echo '{"status":"ok","redis":{"ping":"PONG","latency_ms":0.4,"hits":10,"misses":2,"hit_ratio":0.83,"connected_clients":3,"maxclients":10000,"used_memory":1048576,"maxmemory":0,"mem_fragmentation_ratio":1.1}}' > "$WORK/www/health/redis/index.json"
HPORT=$(free_port)
python3 -m http.server "$HPORT" --bind 127.0.0.1 --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
wait_until 10 "the static health endpoint" curl -sf "http://127.0.0.1:$HPORT/health/redis/index.json"

LPORT=$(free_port)
{
  echo "server: {listen: \"127.0.0.1:$LPORT\"}"
  echo "data_dir: $WORK/data"
  echo "probe_files: []"
  echo "crosscheck: {enabled: false}"
  echo "probes:"
  for i in $(seq 1 25); do
    printf '  - {name: redis%s, kind: redis, url: "redis://127.0.0.1:%s", every: 1s}\n' "$i" "$RPORT"
    printf '  - {name: web%s, kind: http_health, url: "http://127.0.0.1:%s/health/redis/index.json", every: 1s}\n' "$i" "$HPORT"
  done
} > "$WORK/lookout.yaml"
"$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn &
LPID=$!
PIDS+=("$LPID")
wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"

BPORT=$(free_port)
cat > "$WORK/blackbox.yml" <<YAML
modules:
  http_2xx: {prober: http, timeout: 5s}
  tcp_connect: {prober: tcp, timeout: 5s}
YAML
"$BLACKBOX" --config.file="$WORK/blackbox.yml" --web.listen-address="127.0.0.1:$BPORT" >/dev/null 2>&1 &
BPID=$!
PIDS+=("$BPID")
wait_until 20 "the blackbox exporter" curl -sf "http://127.0.0.1:$BPORT/metrics"
sleep 2
echo "blackbox exporter idle: $(rss_kb $BPID) KiB"

end=$((SECONDS + DURATION))
probes=0
while [ $SECONDS -lt $end ]; do
  curls=()
  for i in $(seq 1 25); do
    curl -s -m 10 -o /dev/null "http://127.0.0.1:$BPORT/probe?module=http_2xx&target=http://127.0.0.1:$HPORT/health/redis/index.json" &
    curls+=($!)
    curl -s -m 10 -o /dev/null "http://127.0.0.1:$BPORT/probe?module=tcp_connect&target=127.0.0.1:$RPORT" &
    curls+=($!)
  done
  wait "${curls[@]}" 2>/dev/null || true
  probes=$((probes + 50))
  sleep 1
done
runs=$(curl -s -m 10 "http://127.0.0.1:$LPORT/metrics" | awk '/^lookout_probe_runs_total/ {s+=$2} END {print s+0}')
l=$(rss_kb $LPID); b=$(rss_kb $BPID)
echo "after ${DURATION}s: lookout ${l} KiB RSS (${runs} probe runs), blackbox exporter ${b} KiB RSS (${probes} probes)"
python3 -c "print(f'ratio lookout/blackbox: {$l/$b:.2f}')"
