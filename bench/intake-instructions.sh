#!/usr/bin/env bash
# CPU per accepted webhook as an instruction count, which does not move
# with the machine's load: lookout runs under callgrind, takes 100 webhooks
# to warm up, its counters are zeroed, then N unique webhooks (the payload
# of bench/lib.sh's webhook.lua, over 4 keep-alive connections) are sent
# and the counters dumped. Printed: instructions per webhook. Group commit
# depends on timing (each commit costs about 33k instructions), so the
# figure moves by about ±1.5k between runs of one binary.
# Compare binaries with LOOKOUT_BIN; read a profile with
# `callgrind_annotate --inclusive=yes FILE`.
set -euo pipefail
USAGE="usage: [N=2000] [KEEP=DIR] bench/intake-instructions.sh
Instructions per accepted webhook (callgrind), one webhook destination limited to 1/s.
KEEP: a directory to keep the callgrind profile in.
Needs target/release/lookout (or LOOKOUT_BIN), valgrind (with callgrind_control), curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 0 "$@"
N="${N:-2000}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive whole number, not \`$N\`"
need valgrind callgrind_control curl python3
need_lookout

# send PORT COUNT TAG: COUNT unique webhooks over 4 connections; fails if
# any was not stored.
send() {
  python3 - "$@" <<'PY'
import http.client, sys, threading
port, n, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def body(t, i):
    g = ('{}:{alertname="Bench%s_%d_%d"}' % (tag, t, i)).replace('"', '\\"')
    return ('{"receiver":"lookout","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Bench%s_%d_%d","severity":"critical"},'
            '"annotations":{"summary":"bench"},"startsAt":"2026-11-25T16:43:58Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":""}],'
            '"groupLabels":{"alertname":"Bench"},"commonLabels":{"severity":"critical"},"commonAnnotations":{},"externalURL":"","version":"4",'
            '"groupKey":"%s","truncatedAlerts":0}' % (tag, t, i, g))
bad = [0]
def run(t, k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(k):
        c.request("POST", "/webhook", body(t, i), {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200 or b"success" not in r.read():
            bad[0] += 1
ts = [threading.Thread(target=run, args=(t, n // 4)) for t in range(4)]
[x.start() for x in ts]
[x.join() for x in ts]
sys.exit(f"{bad[0]} of {n} webhooks not stored" if bad[0] else 0)
PY
}

PORT=$(free_port)
cat > "$WORK/lookout.yaml" <<YAML
server: {listen: "127.0.0.1:$PORT"}
data_dir: $WORK/data
probe_files: []
alerts: {enabled: false}
relay:
  destinations: [{name: slow, type: webhook, url: "http://127.0.0.1:9/hook", rate_limit: 1/s}]
YAML
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --dump-instr=no \
  "$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn 2>"$WORK/valgrind.log" &
VPID=$!
PIDS+=("$VPID")
wait_until 120 "lookout under valgrind on port $PORT" curl -sf "http://127.0.0.1:$PORT/-/healthy"
send "$PORT" 100 "warm$$"
callgrind_control -z "$VPID" >/dev/null 2>&1
send "$PORT" "$((N / 4 * 4))" "run$$"
callgrind_control -d "$VPID" >/dev/null 2>&1
total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$WORK"/callgrind.out*.[0-9]* 2>/dev/null || true)
[[ -n "$total" ]] || total=$(cat "$WORK"/callgrind.out* | awk '/^summary:|^totals:/ {s+=$2} END {print s}')
[[ -n "$total" && "$total" -gt 0 ]] || die "no callgrind totals in $WORK (see $WORK/valgrind.log)"
printf 'binary %s\nwebhooks %d, instructions %d, per webhook %.1fk\n' "$LOOKOUT" "$((N / 4 * 4))" "$total" "$(python3 -c "print($total / $((N / 4 * 4)) / 1000)")"
if [[ -n "${KEEP:-}" ]]; then
  mkdir -p "$KEEP" && cp "$WORK"/callgrind.out* "$KEEP"/ && echo "profile kept in $KEEP"
fi
