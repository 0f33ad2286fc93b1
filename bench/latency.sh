#!/usr/bin/env bash
# Accuracy of the PING latency the redis probe reports, against
# `redis-cli --latency` on the same Redis over the same window.
set -euo pipefail
USAGE="usage: bench/latency.sh [SECONDS]   (default 60)
The redis probe's PING latency vs. redis-cli --latency over SECONDS.
Needs target/release/lookout (or LOOKOUT_BIN), redis-server, redis-cli, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
SECS="${SECONDS_ARG:-60}"
need redis-server redis-cli python3
need_lookout

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
wait_until 10 "redis-server on port $RPORT" redis-cli -p "$RPORT" PING
LPORT=$(free_port)
cat > "$WORK/lookout.yaml" <<YAML
server: {listen: "127.0.0.1:$LPORT"}
data_dir: $WORK/data
probe_files: []
probes:
  - {name: cache, kind: redis, url: "redis://127.0.0.1:$RPORT", every: 1s}
YAML
"$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn &
LPID=$!
PIDS+=("$LPID")
wait_until 20 "lookout on port $LPORT" python3 -c "import socket; socket.create_connection(('127.0.0.1', $LPORT), 1)"
start=$(date +%s)
# redis-cli --latency: PING in a loop (10 ms apart); --raw prints "min max avg samples" at the end.
# Without a TTY it samples for -i seconds, then prints one line and exits.
cli=$(timeout $((SECS + 30)) redis-cli -p "$RPORT" --latency --raw -i "$SECS")
stop_pid "$LPID"
probe=$(python3 - "$WORK/data/history.db" "$start" <<'PY'
import json, sqlite3, statistics, sys
db = sqlite3.connect(sys.argv[1])
rows = [json.loads(r[0])["values"].get("latency_seconds") for r in db.execute("SELECT reading FROM observations WHERE ts >= ? AND ok = 1", (float(sys.argv[2]),))]
rows = [r * 1000 for r in rows if r is not None]
print(f"{statistics.mean(rows):.4f} {statistics.median(rows):.4f} {len(rows)}")
PY
)
read -r cmin cmax cavg csamples <<<"$(echo "$cli" | tail -1)"
read -r pmean pmedian pn <<<"$probe"
echo "redis-cli --latency: avg ${cavg} ms over ${csamples} PINGs (min ${cmin}, max ${cmax})"
echo "lookout redis probe: mean ${pmean} ms, median ${pmedian} ms over ${pn} runs"
python3 -c "c=float('$cavg'); p=float('$pmean'); print(f'difference: {100*(p-c)/c:+.1f}% (goal: within 20%)')"
