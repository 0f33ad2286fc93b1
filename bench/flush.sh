#!/usr/bin/env bash
# `lookout redis flush --rate unlimited` side by side with the operations
# guide's one-liner (`redis-cli --scan --pattern 'p*' | xargs redis-cli del`):
# KEYS matching keys among twice as many on a local redis-server, refilled
# before each run. For each (and for the idle server, as a baseline): the
# wall time, and the round trip a concurrent client sees meanwhile (one PING
# every 10 ms on its own connection, as `redis-cli --latency` samples;
# p50/p99/max). The goal: lookout no slower than the pipe, with that
# client's p99 under 2 ms. The same flush run by the daemon (`--daemon`,
# `POST /api/v1/redis/flushes`, its progress on /metrics) is measured last:
# what following it over HTTP and keeping the metrics current costs.
set -euo pipefail
USAGE="usage: bench/flush.sh [KEYS]   (default 1000000 matching keys among twice as many)
Wall time and a concurrent client's PING p50/p99/max: redis-cli --scan | xargs redis-cli del
vs. lookout redis flush --rate unlimited, locally and run by the daemon (--daemon).
Needs target/release/lookout (or LOOKOUT_BIN), redis-server, redis-cli, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
KEYS="${SECONDS_ARG:-1000000}"
need redis-server redis-cli python3 curl
need_lookout
PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --enable-debug-command local --daemonize no >/dev/null &
PIDS+=($!)
wait_until 10 "redis-server on port $PORT" redis-cli -p "$PORT" PING
cli() { redis-cli -p "$PORT" "$@"; }

# KEYS keys p:N to delete and KEYS keys q:N to keep, 16-byte values.
fill() {
  cli DEBUG POPULATE "$KEYS" p 16 >/dev/null
  [[ "$(cli DBSIZE)" == $((2 * KEYS)) ]] || die "populate: DBSIZE $(cli DBSIZE), expected $((2 * KEYS))"
}
cli DEBUG POPULATE "$KEYS" q 16 >/dev/null

# A concurrent client: PING every 10 ms until told to stop; writes one
# round trip in microseconds a line.
cat >"$WORK/pinger.py" <<'PY'
import socket, sys, time, os
port, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
with open(out, "w") as f:
    while not os.path.exists(stop):
        t = time.perf_counter()
        s.sendall(b"PING\r\n")
        buf = b""
        while not buf.endswith(b"\r\n"):
            buf += s.recv(64)
        f.write("%d\n" % ((time.perf_counter() - t) * 1e6))
        time.sleep(0.01)
PY

# measure NAME COMMAND...: runs COMMAND with the pinger alongside; prints
# one row: name, wall seconds, p50/p99/max ms, samples, keys left.
measure() {
  local name="$1"
  shift
  rm -f "$WORK/stop"
  python3 "$WORK/pinger.py" "$PORT" "$WORK/$name.lat" "$WORK/stop" &
  local pinger=$!
  PIDS+=("$pinger")
  sleep 0.5 # a few samples of the idle server first, as a client would have
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$WORK/$name.out" 2>&1 || die "$name failed: $(tail -5 "$WORK/$name.out")"
  t1=$(date +%s.%N)
  touch "$WORK/stop"
  wait "$pinger"
  local left
  left=$(cli --scan --pattern 'p*' | wc -l)
  sort -n "$WORK/$name.lat" | awk -v name="$name" -v t0="$t0" -v t1="$t1" -v left="$left" '
    { v[NR] = $1 }
    END {
      p50 = v[int((NR - 1) * 0.50 + 1.5)]; p99 = v[int((NR - 1) * 0.99 + 1.5)]; max = v[NR]
      printf "%-34s %8.2f s   p50 %6.3f ms   p99 %6.3f ms   max %7.3f ms   (%d PINGs, %d keys left)\n",
        name, t1 - t0, p50 / 1000, p99 / 1000, max / 1000, NR, left
    }'
}

pipe() { redis-cli -p "$PORT" --scan --pattern 'p*' | xargs -r redis-cli -p "$PORT" del >/dev/null; }
flush() {
  "$LOOKOUT" redis flush --url "redis://127.0.0.1:$PORT" --match 'p*' --execute --yes --no-snapshot \
    --rate unlimited --record "$WORK/record.md"
}

echo "$KEYS matching keys among $((2 * KEYS)), 16-byte values; a concurrent client PINGs every 10 ms"
fill
# The same client with nothing else running: what this machine's own load
# adds to every figure below.
measure "idle (no flush)" sleep 3
measure "redis-cli --scan | xargs del" pipe
fill
measure "lookout redis flush (unlimited)" flush
[[ "$(cli DBSIZE)" == "$KEYS" ]] || die "after the flush: DBSIZE $(cli DBSIZE), expected $KEYS"
grep -E '^\| (keys deleted|duration|latency during the flush) ' "$WORK/record.md"

# The daemon: a `lookout run` probing the same Redis, with the flush API on.
DPORT=$(free_port)
mkdir -p "$WORK/daemon"
cat >"$WORK/daemon/lookout.yaml" <<YAML
server:
  listen: 127.0.0.1:$DPORT
  enable_admin_api: true
data_dir: $WORK/daemon/data
probe_files: []
probes:
  - name: cache
    kind: redis
    url: redis://127.0.0.1:$PORT
    every: 15s
YAML
"$LOOKOUT" run -c "$WORK/daemon/lookout.yaml" 2>"$WORK/daemon/stderr.log" &
PIDS+=($!)
wait_until 10 "lookout run on port $DPORT" curl -sf "http://127.0.0.1:$DPORT/-/healthy"
daemon_flush() {
  "$LOOKOUT" redis flush --daemon "http://127.0.0.1:$DPORT" --match 'p*' --execute --yes --no-snapshot \
    --rate unlimited --record "$WORK/daemon-record.md"
}
fill
measure "lookout redis flush --daemon" daemon_flush
[[ "$(cli DBSIZE)" == "$KEYS" ]] || die "after the daemon's flush: DBSIZE $(cli DBSIZE), expected $KEYS"
grep -E '^\| (keys deleted|duration|latency during the flush) ' "$WORK/daemon-record.md"
curl -s "http://127.0.0.1:$DPORT/metrics" | grep -E '^lookout_flush_(keys_deleted_total|runs_total)'
