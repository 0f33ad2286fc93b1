#!/usr/bin/env bash
# The relay under an alert storm, beyond raw delivery rate:
#  1. durable intake while a backlog is queued: a first wrk burst (3 s)
#     fills the outbox for a webhook destination limited to 1/s, then wrk
#     (2 threads, 16 connections, 10 s, one unique alert per request)
#     measures webhooks/s answered 200 (each fsync'd), beside
#     Alertmanager's own `POST /api/v2/alerts` (in memory only); three
#     fresh rounds (ROUNDS), each Alertmanager then lookout, median ratio; with
#     PIN=1, wrk runs on CPU 0 and the server measured on CPU 1 (each
#     then has one core, and the two do not trade places on the cores
#     from run to run: steadier ratios on a shared two-core machine);
#  2. a storm: 500 groups firing within 8 s, then 100 of them resolved
#     within 2 s, to a Slack stand-in that answers 429 (Retry-After: 1) to
#     more than about one message a second, and to a PagerDuty stand-in. Printed:
#     for Slack, the time until every group has been shown in its newest
#     state (one digest after `coalesce_after`, default 30 s) and the
#     messages sent; for PagerDuty (its own default rate, 2/s, PagerDuty's
#     120 events a minute per key), the time until all 600 events arrived
#     and whether each group's came in order.
# Not compared with Alertmanager in part 2: its Slack notifier does not
# retry a 429 (see REFERENCE part 2, 3.1), so a rate-limited storm loses
# messages rather than taking longer.
set -euo pipefail
USAGE="usage: bench/relay-storm.sh
Intake with a backlog queued vs. Alertmanager; a 500-group storm to Slack (1/s) and PagerDuty stand-ins.
RATE: the part-1 destination's rate_limit (default 1/s; \`unlimited\`: delivered as it comes, nothing queued).
PD_RATE: PagerDuty's rate_limit (default: the type's, 2/s). PART=1 or PART=2: only that part.
PIN=1: part 1 with wrk on CPU 0 and the server on CPU 1 (needs taskset and two CPUs).
ROUNDS: part 1's rounds (default 3).
Needs target/release/lookout (or LOOKOUT_BIN), wrk, prometheus-alertmanager, curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 0 "$@"
need wrk prometheus-alertmanager curl python3
need_lookout
ROUNDS="${ROUNDS:-3}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive whole number, not \`$ROUNDS\`"
AM="$(command -v prometheus-alertmanager)"
write_wrk_scripts "$WORK"

# The stand-in: every POST answered; /slack at most one a second (else 429
# with Retry-After: 1); GET /report prints what a person would have seen.
cat > "$WORK/standin.py" <<'PY'
import asyncio, json, re, sys, time
port = int(sys.argv[1])
log = {"/slack": [], "/pd": [], "/hook": []}
last_slack = [0.0]
limited = [0]
async def handle(r, w):
    try:
        while True:
            line = await r.readline()
            if not line:
                return
            method, target, _ = line.decode().split(" ", 2)
            length = 0
            while True:
                h = await r.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            body = await r.readexactly(length) if length else b""
            status, extra, out = "200 OK", "Content-Type: text/plain\r\n", b"ok"
            if method == "GET":
                out = json.dumps(report()).encode()
            else:
                now = time.time()
                # One a second, with Slack's tolerance of a little jitter.
                if target == "/slack" and now - last_slack[0] < 0.9:
                    limited[0] += 1
                    status, extra, out = "429 Too Many Requests", "Retry-After: 1\r\nContent-Type: application/json\r\n", b'{"ok":false,"error":"rate_limited"}'
                else:
                    if target == "/slack":
                        last_slack[0] = now
                    log.setdefault(target, []).append((now, body))
                    if target == "/pd":
                        status, extra, out = "202 Accepted", "Content-Type: application/json\r\n", b'{"status":"success"}'
            w.write(b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n%s" % (status.encode(), extra.encode(), len(out), out))
            await w.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
def report():
    # Slack: when was every group last shown in the state it ended in?
    shown, t_all = {}, None
    for t, b in log["/slack"]:
        m = json.loads(b)
        text = m.get("text", "") + " " + " ".join(a.get("title", "") + " " + a.get("text", "") for a in m.get("attachments", []))
        text += " " + "\n".join(b.get("text", {}).get("text", "") for b in m.get("blocks", []))
        for st, g in re.findall(r"\[(FIRING|RESOLVED)[^\]]*\] Storm(\d+) ", text):
            shown[int(g)] = st
        final = all(shown.get(g) == ("RESOLVED" if g < 100 else "FIRING") for g in range(500))
        if final and t_all is None:
            t_all = t
    digests = sum(1 for _, b in log["/slack"] if "[DIGEST]" in json.loads(b).get("text", ""))
    # PagerDuty: each group's events in order (trigger, then resolve for the first 100).
    per = {}
    for t, b in log["/pd"]:
        e = json.loads(b)
        per.setdefault(e["dedup_key"], []).append(e["event_action"])
    ok = sum(1 for v in per.values() if v in (["trigger"], ["trigger", "resolve"]))
    return {"slack_messages": len(log["/slack"]), "slack_digests": digests, "slack_429": limited[0],
            "slack_all_seen_at": t_all, "slack_groups_seen": len(shown),
            "pd_events": len(log["/pd"]), "pd_last_at": log["/pd"][-1][0] if log["/pd"] else None,
            "pd_groups_in_order": ok, "pd_groups": len(per)}
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    await s.serve_forever()
asyncio.run(main())
PY
SPORT=$(free_port)
python3 "$WORK/standin.py" "$SPORT" &
PIDS+=($!)
wait_until 10 "the stand-in on port $SPORT" curl -sf "http://127.0.0.1:$SPORT/report"

# --- 1. intake with a backlog queued -----------------------------------------
AMPORT=$(free_port)
LPORT=$(free_port)
cat > "$WORK/am.yml" <<YAML
route: {receiver: none}
receivers: [{name: none}]
YAML
relay_config "$LPORT" "$WORK/data" "  destinations: [{name: slow, type: webhook, url: \"http://127.0.0.1:$SPORT/hook\", rate_limit: ${RATE:-1/s}}]" > "$WORK/lookout.yaml"
if [[ "${PART:-1}" == 1 ]]; then
# Each command of part 1 prefixed with where it runs (nothing unless PIN=1).
SERVER_CPU=() CLIENT_CPU=()
if [[ "${PIN:-}" == 1 ]]; then
  need taskset
  (($(nproc) >= 2)) || die "PIN=1 needs two CPUs; this machine has $(nproc)"
  SERVER_CPU=(taskset -c 1) CLIENT_CPU=(taskset -c 0)
  echo "(pinned: wrk on CPU 0, the server on CPU 1; after each rate, how CPU 1 spent the run, from /proc/stat)"
fi
# cpu_split BEFORE AFTER: CPU 1's time between two /proc/stat lines, by
# kind; nothing unless pinned (unpinned, CPU 1 runs anything).
cpu_split() {
  ((${#SERVER_CPU[@]})) || return 0
  python3 -c "
import sys
a, b = ([int(x) for x in l.split()[1:9]] for l in sys.argv[1:3])
d = [y - x for x, y in zip(a, b)]
print(', '.join(f'{n} {v * 100 / sum(d):.0f}%' for n, v in zip('user nice system idle iowait irq softirq steal'.split(), d) if v))
" "$1" "$2"
}
cpu1() { grep '^cpu1 ' /proc/stat; }
echo "== intake with a backlog queued for a destination limited to ${RATE:-1/s} (wrk -t2 -c16 -d10s, one unique alert per request, $ROUNDS rounds)"
ratios=()
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/am" "$WORK/data"
  "${SERVER_CPU[@]}" "$AM" --config.file="$WORK/am.yml" --storage.path="$WORK/am" --web.listen-address="127.0.0.1:$AMPORT" --cluster.listen-address= >/dev/null 2>&1 &
  AMPID=$!; PIDS+=("$AMPID")
  wait_until 30 "alertmanager on port $AMPORT" curl -sf "http://127.0.0.1:$AMPORT/-/ready"
  before=$(cpu1)
  am_rate=$(timeout 60 "${CLIENT_CPU[@]}" wrk -t2 -c16 -d10s -s "$WORK/am.lua" "http://127.0.0.1:$AMPORT" -- "am$round" | awk '/Requests\/sec/ {print $2}')
  am_split=$(cpu_split "$before" "$(cpu1)")
  stop_pid "$AMPID"
  "${SERVER_CPU[@]}" "$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn &
  LPID=$!; PIDS+=("$LPID")
  wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"
  timeout 60 "${CLIENT_CPU[@]}" wrk -t2 -c16 -d3s -s "$WORK/webhook.lua" "http://127.0.0.1:$LPORT" -- "fill$round" >/dev/null
  backlog=$(python3 -c "import sqlite3; print(sqlite3.connect('$WORK/data/outbox.db').execute(\"select count(*) from deliveries where state='pending'\").fetchone()[0])")
  before=$(cpu1)
  timeout 60 "${CLIENT_CPU[@]}" wrk -t2 -c16 -d10s -s "$WORK/webhook.lua" "http://127.0.0.1:$LPORT" -- "lk$round" > "$WORK/wrk.out"
  lk_split=$(cpu_split "$before" "$(cpu1)")
  lk_rate=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  refused=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.out")
  stop_pid "$LPID"
  ratio=$(python3 -c "print(f'{float(\"$lk_rate\")/float(\"$am_rate\"):.2f}')")
  ratios+=("$ratio")
  echo "round $round: alertmanager $am_rate alerts/s (memory only); lookout $lk_rate webhooks/s with $backlog queued before (each fsync'd before 200; not 200: ${refused:-0}); ratio $ratio"
  if ((${#SERVER_CPU[@]})); then
    echo "  CPU 1 under alertmanager: $am_split"
    echo "  CPU 1 under lookout:      $lk_split"
  fi
done
python3 -c "import statistics, sys; print('median ratio lookout/alertmanager: %.2f' % statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
fi
[[ "${PART:-2}" == 2 ]] || exit 0

# --- 2. a 500-group storm ----------------------------------------------------
LPORT=$(free_port)
relay_config "$LPORT" "$WORK/storm" "  destinations:
    - {name: slack, type: slack, webhook_url: \"http://127.0.0.1:$SPORT/slack\", rate_limit: 1/s}
    - {name: pager, type: pagerduty, routing_key: \"0123456789abcdef0123456789abcdef\", url: \"http://127.0.0.1:$SPORT/pd\"${PD_RATE:+, rate_limit: $PD_RATE}}" > "$WORK/storm.yaml"
"$LOOKOUT" run -c "$WORK/storm.yaml" --log-level warn &
LPID=$!; PIDS+=("$LPID")
wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"
cat > "$WORK/storm.py" <<'PY'
import http.client, json, sys, time
port = int(sys.argv[1])
def body(i, status):
    g = '{}:{alertname="Storm%d"}' % i
    a = {"status": status, "labels": {"alertname": "Storm%d" % i, "severity": "critical"}, "annotations": {"summary": "storm", "runbook_url": "https://runbooks.example/storm"}, "startsAt": "2026-11-25T16:43:58Z", "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-25T16:53:58Z", "generatorURL": "http://prometheus:9090/graph", "fingerprint": ""}
    return json.dumps({"receiver": "lookout", "status": status, "alerts": [a], "groupLabels": {"alertname": "Storm%d" % i}, "commonLabels": a["labels"], "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4", "groupKey": g, "truncatedAlerts": 0})
c = http.client.HTTPConnection("127.0.0.1", port)
t0 = time.time()
plan = [(i, "firing", t0 + i * 8 / 500) for i in range(500)] + [(i, "resolved", t0 + 8 + i * 2 / 100) for i in range(100)]
for i, status, at in plan:
    d = at - time.time()
    if d > 0:
        time.sleep(d)
    c.request("POST", "/webhook", body(i, status), {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
print(t0)
PY
echo "== storm: 500 groups firing within 8 s, 100 of them resolved within the next 2 s; Slack stand-in 1/s, PagerDuty stand-in"
t0=$(timeout 60 python3 "$WORK/storm.py" "$LPORT")
storm_report() { curl -sf "http://127.0.0.1:$SPORT/report"; }
for _ in $(seq 1 1200); do
  r=$(storm_report)
  python3 -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r['slack_all_seen_at'] and r['pd_events'] >= 600 else 1)" "$r" && break
  sleep 1
done
python3 - "$(storm_report)" "$t0" <<'PY'
import json, sys
r, t0 = json.loads(sys.argv[1]), float(sys.argv[2])
seen = f"{r['slack_all_seen_at'] - t0:.1f} s" if r["slack_all_seen_at"] else "never (within 20 min)"
print(f"  slack: every group shown in its final state after {seen}; {r['slack_messages']} messages ({r['slack_digests']} digest), {r['slack_429']} answered 429; one message per group at 1/s would take 500 s")
pd = f"{r['pd_last_at'] - t0:.1f} s" if r["pd_last_at"] else "-"
print(f"  pagerduty: {r['pd_events']} of 600 events, the last after {pd}; {r['pd_groups_in_order']} of {r['pd_groups']} groups in order")
PY
