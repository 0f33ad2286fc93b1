#!/usr/bin/env bash
# False verdicts and recovery: the local stack (deploy/local/stack.sh) under
# steady synthetic load (redis-benchmark writing and reading keys) for
# DURATION seconds, with lookout running config/lookout.yaml and its probes.
# Every EVENT_EVERY seconds one event is injected, cycling through:
#   resetstat       CONFIG RESETSTAT (counters fall to 0, no restart)
#   redis           Redis stopped and started (counters and keys lost)
#   redis-exporter  the exporter stopped and started
#   prometheus      Prometheus stopped and started (its TSDB kept)
# At the end, from lookout's history database: verdicts by kind, the
# disagree verdicts (every source is honest, so each is false: goal zero),
# and for each event how long until every source was judged `agree` again.
set -euo pipefail
USAGE="usage: bench/crosscheck-soak.sh [SECONDS]   (default 600)
Verdicts from honest sources on the local stack under steady load, with a statistics reset and
restarts of Redis, redis_exporter and Prometheus injected in turn every EVENT_EVERY seconds
(default 180, so each kind recurs every 12 minutes): verdicts by kind, false disagree verdicts
(goal 0), each event's time until every source was judged agree again, and lookout's CPU time.
Environment: EVENT_EVERY (seconds between events), OUTAGE (seconds a restarted service stays down,
default 0: a plain restart, usually shorter than a scrape interval), SOAK_OUT (directory kept after the run with
history.db, events.tsv, lookout.log and report.txt; default /tmp/lookout-soak-<start time>).
Needs target/release/lookout (or LOOKOUT_BIN), redis-benchmark, redis-cli, curl, python3, and the
local stack (deploy/local/stack.sh up, which this script runs)."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
DURATION="${SECONDS_ARG:-600}"
EVENT_EVERY="${EVENT_EVERY:-180}"
[[ "$EVENT_EVERY" =~ ^[1-9][0-9]*$ ]] || die "EVENT_EVERY must be a positive whole number of seconds, not \`$EVENT_EVERY\`"
OUTAGE="${OUTAGE:-0}"
[[ "$OUTAGE" =~ ^[0-9]+$ ]] || die "OUTAGE must be a whole number of seconds, not \`$OUTAGE\`"
OUT="${SOAK_OUT:-/tmp/lookout-soak-$(date -u +%Y%m%dT%H%M%SZ)}"
need redis-benchmark redis-cli curl python3
need_lookout
mkdir -p "$OUT"
cd "$ROOT"
STACK=deploy/local/stack.sh
timeout 600 "$STACK" up >/dev/null || die "$STACK up failed (or took over 10 minutes)"

# lookout runs from copies of its configuration, so that editing the
# repository during a long run changes nothing in it. Prometheus scrapes
# lookout at 127.0.0.1:9464: that port when free, else any.
CONF="$WORK/conf"
mkdir -p "$CONF"
cp config/lookout.yaml "$CONF/"
cp -r probes "$CONF/"
PORT=9464
(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && PORT=$(free_port)
STARTED=$(date -u +%s)
(cd "$CONF" && LOOKOUT_LISTEN="127.0.0.1:$PORT" LOOKOUT_DATA_DIR="$OUT/data" \
  LOOKOUT_WEBHOOK_TOKEN_FILE="$ROOT/.stack/webhook-token" \
  exec "$LOOKOUT" run -c lookout.yaml --log-level warn >"$OUT/lookout.log" 2>&1) &
LPID=$!
PIDS+=("$LPID")
wait_until 20 "lookout on port $PORT" curl -sf "http://127.0.0.1:$PORT/-/healthy"
printf 'soak: %s s from %s, an event every %s s (restarts down %s s), lookout %s (pid %s) on :%s, output in %s\n' \
  "$DURATION" "$(date -u +%FT%TZ)" "$EVENT_EVERY" "$OUTAGE" "$LOOKOUT" "$LPID" "$PORT" "$OUT"

# Steady load: 200 requests/s of SET and GET over 10,000 keys (some miss).
# While Redis restarts the benchmark fails and the next second tries again.
(
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    timeout 30 redis-benchmark -p 16379 -q -n 200 -c 2 -t set,get -r 12000 >/dev/null 2>&1 || true
    sleep 1
  done
) &
PIDS+=($!)

now() { date -u +%s.%N; }

# inject KIND: performs one event; events.tsv gets its kind, when it began
# and when the stack was whole again (a restarted service ready).
inject() {
  local kind="$1" t0 t1
  t0=$(now)
  case "$kind" in
    resetstat) redis-cli -p 16379 CONFIG RESETSTAT >/dev/null || echo "soak: CONFIG RESETSTAT failed" >&2 ;;
    *)
      "$STACK" down "$kind" 2>/dev/null || echo "soak: $STACK down $kind failed" >&2
      sleep "$OUTAGE"
      # stack.sh up waits until the service answers (Redis PONG, the
      # exporter reaching Redis, Prometheus ready).
      "$STACK" up "$kind" >/dev/null 2>&1 || echo "soak: $STACK up $kind failed" >&2
      ;;
  esac
  t1=$(now)
  printf '%s\t%s\t%s\n' "$kind" "$t0" "$t1" >>"$OUT/events.tsv"
  printf 'soak: %s  %s (%.1f s)\n' "$(date -u +%T)" "$kind" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}

# Events at EVENT_EVERY, 2×EVENT_EVERY, …, none in the last EVENT_EVERY
# seconds (or the last 2 minutes, if shorter), so the last one has time to
# settle before the run ends.
KINDS=(resetstat redis redis-exporter prometheus)
: >"$OUT/events.tsv"
settle=$((EVENT_EVERY < 120 ? EVENT_EVERY : 120))
end=$((SECONDS + DURATION))
next=$((SECONDS + EVENT_EVERY))
i=0
while ((next + settle <= end)); do
  sleep $((next - SECONDS))
  kill -0 "$LPID" 2>/dev/null || die "lookout exited during the run (log: $OUT/lookout.log)"
  inject "${KINDS[i % ${#KINDS[@]}]}"
  i=$((i + 1))
  next=$((next + EVENT_EVERY))
done
((end > SECONDS)) && sleep $((end - SECONDS))
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$LPID/stat" 2>/dev/null || echo "?")
stop_pid "$LPID"
python3 - "$OUT/data/history.db" "$OUT/events.tsv" "$cpu" "$DURATION" "$STARTED" <<'PY' | tee "$OUT/report.txt"
import collections, sqlite3, sys

db = sqlite3.connect(sys.argv[1])
events = []
for line in open(sys.argv[2]):
    kind, t0, t1 = line.split("\t")
    events.append((kind, float(t0), float(t1)))
cpu, duration, started = sys.argv[3], sys.argv[4], float(sys.argv[5])

# Every round: its time and each (metric, source) verdict in it.
rounds = collections.OrderedDict()
for ts, metric, source, verdict in db.execute(
        "SELECT ts, metric, source, verdict FROM crosscheck ORDER BY ts"):
    rounds.setdefault(ts, []).append((metric, source, verdict))
times = list(rounds)
print(f"{len(times)} rounds in {duration} s, {len(events)} events injected; lookout CPU time {cpu} s")
print("verdicts by kind:")
for verdict, n in db.execute("SELECT verdict, COUNT(*) FROM crosscheck GROUP BY verdict ORDER BY verdict"):
    print(f"  {verdict}: {n}")

def last_event_before(ts):
    before = [e for e in events if e[1] <= ts]
    return before[-1] if before else None

bad = [(ts, m, s) for ts, rows in rounds.items() for m, s, v in rows if v == "disagree"]
print(f"false disagree verdicts (every source is honest): {len(bad)}")
for ts, m, s in bad:
    e = last_event_before(ts)
    after = f"{ts - e[2]:.0f} s after {e[0]} was back" if e else f"{ts - started:.0f} s after start, before any event"
    print(f"  {s}/{m} at +{ts - started:.0f} s ({after})")

# For each event, within the rounds up to the next event: the verdicts that
# were not `agree` (expected while a source catches up: reset, stale,
# source_down, missing), and when every source was `agree` again after the
# last of them, counted from when the stack was whole again (a restarted
# service ready). A window with no other verdict than agree says the event
# went unseen (a restart shorter than the gap between two samples): 0 s.
print("event-to-correct-verdict (seconds from the stack whole again to every source agree):")
print(f"  {'event':<15} {'at':>7} {'outage':>7} {'settled':>9}  {'per source':<40} verdicts meanwhile")
settled_by_kind = collections.defaultdict(list)
for i, (kind, t0, t1) in enumerate(events):
    limit = events[i + 1][1] if i + 1 < len(events) else float("inf")
    window = [t for t in times if t0 <= t < limit]
    seen = collections.Counter(v for t in window for _, _, v in rounds[t] if v != "agree")
    per_source = {}
    for source in sorted({s for t in window for _, s, _ in rounds[t]}):
        last_bad = max((t for t in window for _, s, v in rounds[t] if s == source and v != "agree"), default=None)
        if last_bad is None:
            continue
        ok = next((t for t in window if t > last_bad
                   and all(v == "agree" for _, s, v in rounds[t] if s == source)
                   and any(s == source for _, s, _ in rounds[t])), None)
        per_source[source] = None if ok is None else ok - t1
    if not seen:
        # Every round judged every source correctly: nothing to recover from.
        settled_by_kind[kind].append(0.0)
        settled = "0 unseen"
    elif any(v is None for v in per_source.values()):
        settled = "never"
    else:
        worst = max(per_source.values())
        settled_by_kind[kind].append(worst)
        settled = f"{worst:.0f}"
    sources = " ".join(f"{s}={'never' if v is None else f'{v:.0f}'}" for s, v in per_source.items()) or "-"
    meanwhile = ", ".join(f"{v}×{n}" for v, n in sorted(seen.items())) or "agree only"
    print(f"  {kind:<15} {t0 - started:>6.0f}s {t1 - t0:>6.1f}s {settled:>9}  {sources:<40} {meanwhile}")
print("settled time by event kind (seconds; unseen events count 0, never-settled ones are left out):")
for kind in ("resetstat", "redis", "redis-exporter", "prometheus"):
    v = sorted(settled_by_kind.get(kind, []))
    if v:
        print(f"  {kind:<15} n={len(v)} min {v[0]:.0f} median {v[len(v) // 2]:.0f} max {v[-1]:.0f}")
    else:
        print(f"  {kind:<15} n=0")
PY
echo "soak: output kept in $OUT"
