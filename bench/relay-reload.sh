#!/usr/bin/env bash
# Reloads under load, beside Alertmanager: while wrk (1 thread, 8
# connections) keeps webhooks coming, a paced client posts one more every
# 5 ms and times each answer, and the configuration is rewritten and
# reloaded every second, alternately by SIGHUP and by `POST /-/reload`.
# lookout's two configurations route every notification to the same four
# webhook destinations (answering after 10 ms, so sends are in flight at
# each reload) but differ in routes and in each destination's concurrency
# and timeout, so every reload replaces all four workers. Printed: reload
# time (until `POST /-/reload` answers; for SIGHUP, until
# lookout_config_last_reload_success_timestamp_seconds moves), the paced
# client's latency within 250 ms of a reload against the rest, answers
# other than 200, and, once the queue has drained, for each destination
# the notifications lost (accepted, never delivered) and delivered twice.
# Alertmanager gets the same load on `POST /api/v2/alerts` and the same
# reloads of two configurations (its receivers' webhook_configs).
set -euo pipefail
USAGE="usage: bench/relay-reload.sh [SECONDS]
Reload time, intake pause and losses while reloading every second under a webhook burst (default 20 s), lookout vs. Alertmanager.
Needs target/release/lookout (or LOOKOUT_BIN), wrk, prometheus-alertmanager, curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
DURATION="${SECONDS_ARG:-20}"
need wrk prometheus-alertmanager curl python3
need_lookout
AM="$(command -v prometheus-alertmanager)"
write_wrk_scripts "$WORK"

start_standin
curl -sf "http://127.0.0.1:$SPORT/delay?ms=10" >/dev/null

# The driver: load, paced client, reloads; prints one summary line.
cat > "$WORK/drive.py" <<'PY'
import http.client, json, os, signal, statistics, subprocess, sys, threading, time, urllib.request
who, port, pid, duration, wrk_script, path, cfg, variant_a, variant_b, metric = sys.argv[1:11]
port, pid, duration = int(port), int(pid), float(duration)
stop = threading.Event()
lat, reloads, refused = [], [], [0]

def body(i):
    if path == "/webhook":
        g = '{}:{alertname="Paced%d"}' % i
        a = {"status": "firing", "labels": {"alertname": "Paced%d" % i, "severity": "critical"}, "annotations": {}, "startsAt": "2026-11-25T16:43:58Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": ""}
        return json.dumps({"receiver": "lookout", "status": "firing", "alerts": [a], "groupLabels": {}, "commonLabels": a["labels"], "commonAnnotations": {}, "externalURL": "", "version": "4", "groupKey": g, "truncatedAlerts": 0})
    return json.dumps([{"labels": {"alertname": "Paced%d" % i, "severity": "critical"}, "annotations": {}}])

def paced():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i, nxt = 0, time.time()
    while not stop.is_set():
        i += 1
        t = time.time()
        try:
            c.request("POST", path, body(i), {"Content-Type": "application/json"})
            r = c.getresponse(); r.read()
            ok = r.status == 200
        except Exception:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            ok = False
        lat.append((t, time.time() - t))
        if not ok:
            refused[0] += 1
        nxt += 0.005
        time.sleep(max(0.0, nxt - time.time()))

def last_reload():
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith(metric + " "):
            return float(line.split()[1])
    return None

def reloader():
    n = 0
    while not stop.wait(1.0):
        n += 1
        src = variant_a if n % 2 else variant_b
        with open(src) as f, open(cfg + ".tmp", "w") as g:
            g.write(f.read())
        os.replace(cfg + ".tmp", cfg)
        how = "SIGHUP" if n % 2 else "POST"
        t = time.time()
        if how == "POST":
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("POST", "/-/reload")
            r = c.getresponse(); r.read(); c.close()
            reloads.append((how, t, time.time() - t, r.status))
        else:
            before = last_reload()
            os.kill(pid, signal.SIGHUP)
            took = None
            if metric:
                deadline = t + 10
                while time.time() < deadline:
                    now = last_reload()
                    if now is not None and now != before:
                        took = time.time() - t
                        break
                    time.sleep(0.005)
            reloads.append((how, t, took, 200))

load = subprocess.Popen(["wrk", "-t1", "-c8", "-d%ds" % duration, "-s", wrk_script, "http://127.0.0.1:%d" % port, "--", who + "load"], stdout=subprocess.PIPE, text=True)
threads = [threading.Thread(target=paced), threading.Thread(target=reloader)]
for th in threads:
    th.start()
time.sleep(duration)
stop.set()
for th in threads:
    th.join()
out = load.communicate()[0]
load_rate = next((l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")), "?")
# Near a reload: sent from 250 ms before it began until 250 ms after it ended.
def near_reload(t):
    return any(r[1] - 0.25 <= t <= r[1] + (r[2] or 0) + 0.25 for r in reloads)
near = [l for t, l in lat if near_reload(t)]
far = [l for t, l in lat if not near_reload(t)]
def ms(v): return f"{v * 1000:.1f}"
def q(v, p): return sorted(v)[min(len(v) - 1, int(len(v) * p))] if v else float("nan")
post = [r[2] for r in reloads if r[0] == "POST"]
hup = [r[2] for r in reloads if r[0] == "SIGHUP" and r[2] is not None]
print(f"  {who}: {len(reloads)} reloads ({len(post)} POST /-/reload: median {ms(statistics.median(post))} ms, max {ms(max(post))} ms"
      + (f"; {len(hup)} SIGHUP: median {ms(statistics.median(hup))} ms, max {ms(max(hup))} ms" if hup else f"; {len(reloads) - len(post)} SIGHUP, not timed")
      + f"); load {load_rate} req/s; paced client ({len(lat)} requests): within 250 ms of a reload p50 {ms(q(near, .5))} p99 {ms(q(near, .99))} max {ms(max(near))} ms, otherwise p50 {ms(q(far, .5))} p99 {ms(q(far, .99))} max {ms(max(far))} ms; not 200: {refused[0]}"
      + "; reload statuses " + ",".join(sorted({str(r[3]) for r in reloads})))
PY

# --- lookout -------------------------------------------------------------------
LPORT=$(free_port)
# lookout_variant FILE CONCURRENCY TIMEOUT ROUTES
lookout_variant() {
  {
    cat <<YAML
server: {listen: "127.0.0.1:$LPORT", enable_lifecycle: true}
data_dir: $WORK/data
probe_files: []
alerts: {enabled: false}
relay:
$4
  destinations:
YAML
    for d in 1 2 3 4; do
      echo "    - {name: d$d, type: webhook, url: \"http://127.0.0.1:$SPORT/lookout-d$d\", concurrency: $2, timeout: $3}"
    done
  } > "$1"
}
lookout_variant "$WORK/lookout-a.yaml" 64 10s "  routes: [{destinations: [d1, d2, d3, d4]}]"
lookout_variant "$WORK/lookout-b.yaml" 32 5s "  routes: [{matchers: ['severity=\"critical\"'], destinations: [d1, d2, d3, d4]}, {destinations: [d1, d2, d3, d4]}]"
cp "$WORK/lookout-a.yaml" "$WORK/lookout.yaml"
"$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level error &
LPID=$!; PIDS+=("$LPID")
wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"
echo "== reloads every second (SIGHUP and POST /-/reload in turn) for ${DURATION}s under wrk -t1 -c8 and a client posting every 5 ms; stand-in answers after 10 ms"
python3 "$WORK/drive.py" lookout "$LPORT" "$LPID" "$DURATION" "$WORK/webhook.lua" /webhook "$WORK/lookout.yaml" \
  "$WORK/lookout-b.yaml" "$WORK/lookout-a.yaml" lookout_config_last_reload_success_timestamp_seconds
accepted=$(python3 -c "import sqlite3; print(sqlite3.connect('$WORK/data/outbox.db').execute('select count(*) from notifications').fetchone()[0])")
for d in 1 2 3 4; do
  line=$(settle "/lookout-d$d" "$accepted")
  python3 - "$d" "$accepted" "$line" <<'PY'
import sys
d, accepted, (req, alerts, _, _) = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
alerts = int(alerts)
print(f"    d{d}: {accepted} accepted, {alerts} delivered: lost {max(0, accepted - alerts)}, delivered twice {max(0, alerts - accepted)}")
PY
done
dead=$(python3 -c "import sqlite3; print(sqlite3.connect('$WORK/data/outbox.db').execute(\"select count(*) from deliveries where state != 'done'\").fetchone()[0])")
echo "    deliveries not done (pending, dead): $dead"
stop_pid "$LPID"

# --- Alertmanager ----------------------------------------------------------------
AMPORT=$(free_port)
am_variant() {
  cat > "$1" <<YAML
route:
  receiver: hook
  group_by: ['...']
  group_wait: $2
  group_interval: 1h
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs: [{url: "http://127.0.0.1:$SPORT/am", send_resolved: false, max_alerts: $3}]
YAML
}
am_variant "$WORK/am-a.yml" 0s 0
am_variant "$WORK/am-b.yml" 1s 10
cp "$WORK/am-a.yml" "$WORK/am.yml"
"$AM" --config.file="$WORK/am.yml" --storage.path="$WORK/am" --web.listen-address="127.0.0.1:$AMPORT" --cluster.listen-address= >/dev/null 2>&1 &
AMPID=$!; PIDS+=("$AMPID")
wait_until 30 "alertmanager on port $AMPORT" curl -sf "http://127.0.0.1:$AMPORT/-/ready"
python3 "$WORK/drive.py" alertmanager "$AMPORT" "$AMPID" "$DURATION" "$WORK/am.lua" /api/v2/alerts "$WORK/am.yml" \
  "$WORK/am-b.yml" "$WORK/am-a.yml" ""
stop_pid "$AMPID"
