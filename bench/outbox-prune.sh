#!/usr/bin/env bash
# The relay's weekly housekeeping on a big outbox: ROWS notifications
# received eight days ago, each with one delivery, half delivered (pruned)
# and half dead-lettered (kept, with their notifications), and a Slack
# thread for every fifth group. `lookout run` prunes at start; printed: the
# seconds until the delivered half and its threads are gone,
# and the slowest answer to a webhook sent every 0.2 s meanwhile (pruning
# holds SQLite's write lock).
set -euo pipefail
USAGE="usage: [ROWS=1000000] [WAIT=600] bench/outbox-prune.sh
Time for lookout's prune of ROWS week-old notifications, and webhook answer times meanwhile.
Needs target/release/lookout (or LOOKOUT_BIN), curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 0 "$@"
need curl python3
need_lookout
ROWS="${ROWS:-1000000}"
WAIT="${WAIT:-600}"

LPORT=$(free_port)
relay_config "$LPORT" "$WORK/data" "$NOWHERE" > "$WORK/lookout.yaml"
start() {
  "$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn &
  LPID=$!
  PIDS+=("$LPID")
  wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/ready/relay"
}
# The outbox as this lookout lays it out, then filled while it is stopped.
start
stop_pid "$LPID"
python3 - "$WORK/data/outbox.db" "$ROWS" <<'PY'
import sqlite3, sys, time
db, rows = sys.argv[1], int(sys.argv[2])
old = time.time() - 8 * 86400
c = sqlite3.connect(db)
c.execute("BEGIN")
c.executemany("INSERT INTO notifications (id, received, group_key, dedup, payload) VALUES (?, ?, ?, ?, '{}')",
              ((i, old, f"g{i}", f"{i:064x}") for i in range(1, rows + 1)))
c.executemany("INSERT INTO deliveries (notification, destination, group_key, state, attempts, next_attempt, created, grouped) VALUES (?, 'log', ?, ?, 1, ?, ?, 1)",
              ((i, f"g{i}", "done" if i % 2 else "dead", old, old) for i in range(1, rows + 1)))
# A Slack thread for every fifth group, delivered and dead alike: the
# prune forgets those of the delivered half.
c.execute("CREATE TABLE IF NOT EXISTS threads (destination TEXT NOT NULL, group_key TEXT NOT NULL, channel TEXT NOT NULL, ts TEXT NOT NULL, PRIMARY KEY (destination, group_key))")
c.executemany("INSERT INTO threads VALUES ('log', ?, 'C1', '1700000000.000001')", ((f"g{i}",) for i in range(1, rows + 1, 5)))
c.commit()
PY
# The week-old ones (the webhooks sent meanwhile are not).
count() { python3 -c "import sqlite3,sys,time; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM notifications WHERE received < ?', (time.time() - 86400,)).fetchone()[0])" "$WORK/data/outbox.db"; }
threads() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM threads').fetchone()[0])" "$WORK/data/outbox.db"; }
echo "== prune of $ROWS week-old notifications (half delivered, half dead-lettered) at start"
t0=$(date +%s.%N)
start
slowest=0
n=0
while true; do
  left=$(count)
  ((left <= ROWS - ROWS / 2 && $(threads) <= ROWS / 10)) && break
  elapsed=$(python3 -c "print(int($(date +%s.%N) - $t0))")
  if ((elapsed >= WAIT)); then
    echo "  not done after $WAIT s: $left notifications left"
    break
  fi
  n=$((n + 1))
  body="{\"receiver\":\"r\",\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{\"alertname\":\"Prune$n\"},\"annotations\":{},\"startsAt\":\"2026-11-25T16:43:58Z\",\"endsAt\":\"0001-01-01T00:00:00Z\",\"generatorURL\":\"\",\"fingerprint\":\"\"}],\"groupLabels\":{},\"commonLabels\":{\"alertname\":\"Prune$n\"},\"commonAnnotations\":{},\"externalURL\":\"\",\"version\":\"4\",\"groupKey\":\"{}:{alertname=\\\"Prune$n\\\"}\",\"truncatedAlerts\":0}"
  t=$(curl -s --max-time 15 -o /dev/null -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' --data "$body" "http://127.0.0.1:$LPORT/webhook") || true
  [[ -n "$t" ]] || t="000 15"
  [[ "${t%% *}" == 200 ]] || echo "  a webhook was answered ${t%% *}"
  slowest=$(python3 -c "print(max($slowest, ${t##* }))")
  sleep 0.2
done
done_at=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
echo "  $(count) week-old notifications and $(threads) threads left $done_at s after the start (including the start itself); slowest of $n webhooks meanwhile: ${slowest} s"
