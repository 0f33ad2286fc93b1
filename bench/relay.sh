#!/usr/bin/env bash
# The relay, measured against a real Alertmanager on the same machine:
#  1. ingest: webhook payloads per second durably accepted (fsync'd) by
#     `lookout run`, beside Alertmanager's own `POST /api/v2/alerts` (in
#     memory only), both with wrk, 2 threads, 16 connections, 10 s, one unique
#     alert per request, in three alternating rounds (median ratio);
#  2. end-to-end latency from webhook received to a Slack stand-in receiving
#     the message, at 500 payloads/s without rate limiting (p50, p99);
#  3. memory (RSS) under a burst of 100,000 alerts, beside Alertmanager's
#     after its ingest run.
set -euo pipefail
USAGE="usage: bench/relay.sh
Webhook ingest vs. Alertmanager, end-to-end latency to a Slack stand-in, memory under a burst.
Needs target/release/lookout (or LOOKOUT_BIN), wrk, prometheus-alertmanager, curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 0 "$@"
need wrk prometheus-alertmanager curl python3
need_lookout
AM="$(command -v prometheus-alertmanager)"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# --- 1. ingest ---------------------------------------------------------------
AMPORT=$(free_port)
cat > "$WORK/am.yml" <<YAML
route: {receiver: none}
receivers: [{name: none}]
YAML
LPORT=$(free_port)
# Pure ingest: nothing matches, so every notification is stored and none delivered.
relay_config "$LPORT" "$WORK/data" "$NOWHERE" > "$WORK/lookout.yaml"
# Each round starts both empty: what they hold from earlier rounds (an
# Alertmanager holding a million alerts, a larger outbox) would skew later ones.
start_both() {
  rm -rf "$WORK/am" "$WORK/data"
  "$AM" --config.file="$WORK/am.yml" --storage.path="$WORK/am" --web.listen-address="127.0.0.1:$AMPORT" --cluster.listen-address= >/dev/null 2>&1 &
  AMPID=$!; PIDS+=("$AMPID")
  "$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn &
  LPID=$!; PIDS+=("$LPID")
  wait_until 30 "alertmanager on port $AMPORT" curl -sf "http://127.0.0.1:$AMPORT/-/ready"
  wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"
}
stop_both() { stop_pid "$AMPID"; stop_pid "$LPID"; }

write_wrk_scripts "$WORK"
# Three rounds, each Alertmanager then lookout, so that both see the same
# moments of a shared, noisy machine; the median ratio is the figure.
echo "== ingest (wrk -t2 -c16 -d10s, one unique alert per request, 3 rounds)"
ratios=()
for round in 1 2 3; do
  start_both
  am_rate=$(timeout 60 wrk -t2 -c16 -d10s -s "$WORK/am.lua" "http://127.0.0.1:$AMPORT" -- "$round" | awk '/Requests\/sec/ {print $2}')
  timeout 60 wrk -t2 -c16 -d10s -s "$WORK/webhook.lua" "http://127.0.0.1:$LPORT" -- "$round" > "$WORK/wrk.out"
  lk_rate=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  answered=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
  refused=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.out")
  ratio=$(python3 -c "print(f'{float(\"$lk_rate\")/float(\"$am_rate\"):.2f}')")
  ratios+=("$ratio")
  am_rss=$(rss_kb $AMPID)
  stored=$(python3 -c "import sqlite3; print(sqlite3.connect('$WORK/data/outbox.db').execute('select count(*) from notifications').fetchone()[0])")
  echo "round $round: alertmanager $am_rate alerts/s (memory only, RSS after $am_rss KiB); lookout $lk_rate webhooks/s (each fsync'd before 200; answered $answered, not 200: ${refused:-0}, stored $stored); ratio $ratio"
  stop_both
done
python3 -c "import statistics; print('median ratio lookout/alertmanager: %.2f' % statistics.median([${ratios[0]}, ${ratios[1]}, ${ratios[2]}]))"

# --- 2. end-to-end latency ----------------------------------------------------
SPORT=$(free_port)
cat > "$WORK/slack.py" <<'PY'
import http.server, json, sys, time, threading
out = open(sys.argv[2], "a")
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm
    # and the client's delayed ACK hold each response for ~40 ms.
    disable_nagle_algorithm = True
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.time()
        try:
            text = json.loads(body)["attachments"][0]["text"]
            sent = float(text.split("sent=")[1].split()[0])
            with lock:
                out.write(f"{now - sent}\n"); out.flush()
        except Exception:
            pass
        self.send_response(200); self.send_header("Content-Type", "text/plain"); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/slack.py" "$SPORT" "$WORK/latency.txt" &
PIDS+=($!)
LPORT=$(free_port)
cat > "$WORK/lookout2.yaml" <<YAML
server: {listen: "127.0.0.1:$LPORT"}
data_dir: $WORK/data2
probe_files: []
alerts: {enabled: false}
relay:
  destinations:
    - {name: slack, type: slack, webhook_url: "http://127.0.0.1:$SPORT/services/x", rate_limit: unlimited, templates: {text: "{{ commonAnnotations.summary }}"}}
YAML
"$LOOKOUT" run -c "$WORK/lookout2.yaml" --log-level warn &
LPID=$!; PIDS+=("$LPID")
wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"
cat > "$WORK/send.py" <<'PY'
import http.client, json, sys, time, threading
port, rate, secs, start_id = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
def body(i):
    g = '{}:{alertname="E2E%d"}' % i
    return json.dumps({"receiver": "lookout", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "E2E%d" % i}, "annotations": {"summary": "sent=%f" % time.time()}, "startsAt": "2026-11-25T16:43:58Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": ""}], "groupLabels": {}, "commonLabels": {"alertname": "E2E%d" % i}, "commonAnnotations": {"summary": "sent=%f " % time.time()}, "externalURL": "", "version": "4", "groupKey": g, "truncatedAlerts": 0})
def worker(k, n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    t0 = time.time()
    for j in range(n):
        target = t0 + j * n_threads / rate
        d = target - time.time()
        if d > 0: time.sleep(d)
        c.request("POST", "/webhook", body(start_id + k * n + j), {"Content-Type": "application/json"})
        c.getresponse().read()
n_threads = 8
total = int(rate * secs)
ts = [threading.Thread(target=worker, args=(k, total // n_threads)) for k in range(n_threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(total // n_threads * n_threads)
PY
echo "== end-to-end latency at 500 payloads/s for 10 s (webhook received -> Slack stand-in)"
sent=$(timeout 120 python3 "$WORK/send.py" "$LPORT" 500 10 0)
for _ in $(seq 1 100); do [ "$(wc -l < "$WORK/latency.txt")" -ge "$sent" ] && break; sleep 0.2; done
python3 - "$WORK/latency.txt" "$sent" <<'PY'
import statistics, sys
v = sorted(float(x) * 1000 for x in open(sys.argv[1]) if x.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(f"{len(v)} of {sys.argv[2]} delivered; p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {v[-1]:.1f} ms (goal: p99 under 20 ms)")
PY

# --- 3. memory under a burst of 100,000 alerts -----------------------------------
echo "== burst of 100,000 webhooks (delivered to the Slack stand-in as fast as it takes them)"
before=$(rss_kb $LPID)
timeout 300 python3 "$WORK/send.py" "$LPORT" 20000 5 100000 >/dev/null
after=$(rss_kb $LPID)
peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$LPID/status")
echo "lookout RSS: $before KiB before, $after KiB after 100,000 accepted, peak $peak KiB (goal: under 100 MB); alertmanager after its ingest run: $am_rss KiB"
