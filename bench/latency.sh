#!/usr/bin/env bash
# Accuracy of the PING latency the redis probe reports, against
# `redis-cli --latency` on the same Redis over the same window.
#
#   bench/latency.sh [SECONDS]     (default 60)
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
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
until redis-cli -p "$RPORT" PING >/dev/null 2>&1; do sleep 0.05; done
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
PIDS+=($LPID)
start=$(date +%s)
# redis-cli --latency: PING in a loop (10 ms apart); --raw prints "min max avg samples" at the end.
# Without a TTY it samples for -i seconds, then prints one line and exits.
cli=$(redis-cli -p "$RPORT" --latency --raw -i "$SECS")
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null || true
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
