#!/usr/bin/env bash
# The relay as replicas on one PostgreSQL (a private cluster started here
# with tests/postgres.sh: Debian's postgresql package, fsync and
# synchronous_commit on), measured three ways:
#  1. durable intake: two replicas, each driven by its own wrk (1 thread,
#     8 connections, 10 s, one unique alert per request), summed, beside one
#     Alertmanager's in-memory `POST /api/v2/alerts` (wrk -t2 -c16 -d10s),
#     in three alternating rounds; the median ratio is the figure. Nothing
#     is routed anywhere: pure intake, every webhook committed before 200;
#  2. end to end: a burst (wrk, 2 s, into both replicas) delivered by both
#     to one webhook stand-in answering at once: delivered/s from the first
#     delivery to the last;
#  3. takeover: replica A holds claims (its sends hang at the stand-in), B
#     idles; A is killed with SIGKILL; the time until B has delivered all of
#     them, against the lease (LEASE, default 5s).
set -euo pipefail
USAGE="usage: [LEASE=5s] [POOL_SIZE=8] [PART=1|2|3] bench/relay-replicas.sh
Durable intake of two lookout replicas on PostgreSQL vs. Alertmanager, delivered/s through both, takeover time after kill -9.
POOL_SIZE: each replica's relay.store.pool_size. PART: only that part.
Needs target/release/lookout (or LOOKOUT_BIN), wrk, prometheus-alertmanager, curl, python3, Debian's postgresql."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 0 "$@"
LEASE="${LEASE:-5s}"
[[ "$LEASE" =~ ^[1-9][0-9]*s$ ]] || die "LEASE must be whole seconds such as 5s, not \`$LEASE\`"
POOL_SIZE="${POOL_SIZE:-8}"
[[ "$POOL_SIZE" =~ ^[1-9][0-9]*$ ]] || die "POOL_SIZE must be a positive whole number, not \`$POOL_SIZE\`"
[[ "${PART:-}" =~ ^[123]?$ ]] || die "PART must be 1, 2 or 3, not \`$PART\`"
part() { [[ -z "${PART:-}" || "$PART" == "$1" ]]; }
need wrk prometheus-alertmanager curl python3
need_lookout
[[ -n "$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null)" ]] ||
  die "missing: the PostgreSQL server (postgresql); install it (apt-get install postgresql) and run again"
AM="$(command -v prometheus-alertmanager)"
write_wrk_scripts "$WORK"

# --- PostgreSQL --------------------------------------------------------------
chmod 0755 "$WORK" # the server may run as `postgres`
PGPORT=$(free_port)
bash "$ROOT/tests/postgres.sh" start "$WORK/pg" "$PGPORT" >/dev/null || die "cannot start PostgreSQL"
stop_pg() { bash "$ROOT/tests/postgres.sh" stop "$WORK/pg" || true; }
trap 'stop_pg; bench_cleanup' EXIT
# db NAME: a fresh database, its URL on stdout.
db() {
  python3 - "$PGPORT" "$1" <<'PY'
import subprocess, sys
port, name = sys.argv[1], sys.argv[2]
for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "test", "-qAtc", sql], check=True, stdout=subprocess.DEVNULL)
print(f"postgres://postgres@127.0.0.1:{port}/{name}")
PY
}
rows() { psql "$1" -qAtc "$2"; }

# Of `relay.store`, beside the URL and the replica name.
STORE_KEYS="lease: $LEASE, pool_size: $POOL_SIZE"
P1=$(free_port)
P2=$(free_port)

# --- 1. durable intake ---------------------------------------------------------
if part 1; then
AMPORT=$(free_port)
cat > "$WORK/am.yml" <<YAML
route: {receiver: none}
receivers: [{name: none}]
YAML
echo "== durable intake: two replicas on one PostgreSQL (wrk -t1 -c8 -d10s each) vs. Alertmanager (wrk -t2 -c16 -d10s), 3 rounds"
ratios=()
for round in 1 2 3; do
  rm -rf "$WORK/am"
  "$AM" --config.file="$WORK/am.yml" --storage.path="$WORK/am" --web.listen-address="127.0.0.1:$AMPORT" --cluster.listen-address= >/dev/null 2>&1 &
  AMPID=$!
  PIDS+=("$AMPID")
  wait_until 30 "alertmanager on port $AMPORT" curl -sf "http://127.0.0.1:$AMPORT/-/ready"
  am_rate=$(timeout 60 wrk -t2 -c16 -d10s -s "$WORK/am.lua" "http://127.0.0.1:$AMPORT" -- "$round" | awk '/Requests\/sec/ {print $2}')
  stop_pid "$AMPID"

  url="$(db "intake$round")"
  start_replica a "$P1" "$url" "$STORE_KEYS" "$NOWHERE"
  A=$RPID
  start_replica b "$P2" "$url" "$STORE_KEYS" "$NOWHERE"
  B=$RPID
  commits() { rows "$url" "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
  # WAL flushes to disk (the fsyncs a commit waits for), server-wide.
  syncs() { rows "$url" "SELECT wal_sync FROM pg_stat_wal"; }
  # CPU of the server: the postmaster and its children (the pooled
  # backends stay for the whole run).
  pg_ticks() {
    local pm
    pm=$(head -n1 "$WORK/pg/data/postmaster.pid")
    for p in "$pm" $(pgrep -P "$pm"); do cat "/proc/$p/stat" 2>/dev/null; done | awk '{s += $14 + $15} END {print s}'
  }
  c0=$(commits)
  s0=$(syncs)
  pg0=$(pg_ticks)
  ticks() { awk '{s += $14 + $15} END {print s}' "/proc/$A/stat" "/proc/$B/stat"; }
  cpu0=$(ticks)
  timeout 60 wrk -t1 -c8 -d10s -s "$WORK/webhook.lua" "http://127.0.0.1:$P1" -- "a$round" > "$WORK/wrk-a.out" &
  WA=$!
  timeout 60 wrk -t1 -c8 -d10s -s "$WORK/webhook.lua" "http://127.0.0.1:$P2" -- "b$round" > "$WORK/wrk-b.out"
  wait "$WA"
  ra=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-a.out")
  rb=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-b.out")
  refused=$(cat "$WORK/wrk-a.out" "$WORK/wrk-b.out" | awk '/Non-2xx/ {n += $5} END {print n + 0}')
  stored=$(rows "$url" "SELECT count(*) FROM relay_notifications")
  # Transactions of the whole database (the workers' and gauges' too), so
  # rows per commit is a floor; CPU of both replicas, in seconds.
  per_commit=$(python3 -c "print(f'{$stored / max(1, $(commits) - $c0):.1f}')")
  per_sync=$(python3 -c "print(f'{$stored / max(1, $(syncs) - $s0):.1f}')")
  cpu=$(python3 -c "print(f'{($(ticks) - $cpu0) / $(getconf CLK_TCK):.1f}')")
  pg_cpu=$(python3 -c "print(f'{($(pg_ticks) - $pg0) / $(getconf CLK_TCK):.1f}')")
  lk_rate=$(python3 -c "print(f'{float(\"$ra\") + float(\"$rb\"):.0f}')")
  ratio=$(python3 -c "print(f'{(float(\"$ra\") + float(\"$rb\"))/float(\"$am_rate\"):.2f}')")
  ratios+=("$ratio")
  echo "round $round: alertmanager $am_rate alerts/s (memory only); replicas $ra + $rb = $lk_rate webhooks/s (each committed to PostgreSQL before 200; not 200: $refused; stored $stored, $per_commit rows per commit, $per_sync per WAL fsync; CPU of 10s: replicas ${cpu}s, PostgreSQL ${pg_cpu}s); ratio $ratio; load $(cut -d' ' -f1 /proc/loadavg)"
  stop_pid "$A"
  stop_pid "$B"
done
python3 -c "import statistics; print('median ratio replicas/alertmanager: %.2f' % statistics.median([${ratios[0]}, ${ratios[1]}, ${ratios[2]}]))"

fi

# --- 2. end to end ---------------------------------------------------------------
if part 2 || part 3; then
start_standin
fi
if part 2; then
echo "== end to end: a 2 s burst into both replicas (wrk -t1 -c8 each), delivered by both to a stand-in answering at once"
url="$(db e2e)"
HOOK="  destinations: [{name: hook, type: webhook, url: \"http://127.0.0.1:$SPORT/e2e\"}]"
start_replica a "$P1" "$url" "$STORE_KEYS" "$HOOK"
A=$RPID
start_replica b "$P2" "$url" "$STORE_KEYS" "$HOOK"
B=$RPID
timeout 60 wrk -t1 -c8 -d2s -s "$WORK/webhook.lua" "http://127.0.0.1:$P1" -- "e2ea" >/dev/null &
WA=$!
timeout 60 wrk -t1 -c8 -d2s -s "$WORK/webhook.lua" "http://127.0.0.1:$P2" -- "e2eb" >/dev/null
wait "$WA"
accepted=$(rows "$url" "SELECT count(*) FROM relay_notifications")
report "two replicas" "$accepted" "$(settle /e2e "$accepted")"
twice=$(python3 -c "print(max(0, $(count /e2e | awk '{print $2}') - $accepted))")
echo "  delivered more than once: $twice"
stop_pid "$A"
stop_pid "$B"

fi

# --- 3. takeover after kill -9 -------------------------------------------------------
if part 3; then
N=20
echo "== takeover: replica a holds $N claims (its sends hang), is killed with SIGKILL; lease $LEASE"
url="$(db takeover)"
curl -sf "http://127.0.0.1:$SPORT/delay?ms=600000" >/dev/null
HOOK="  destinations: [{name: hook, type: webhook, url: \"http://127.0.0.1:$SPORT/takeover\", timeout: 1h}]"
start_replica a "$P1" "$url" "$STORE_KEYS" "$HOOK"
A=$RPID
for i in $(seq 1 "$N"); do
  g="{}:{alertname=\\\"Takeover$i\\\"}"
  curl -sf -o /dev/null -H 'Content-Type: application/json' "http://127.0.0.1:$P1/webhook" --data-binary \
    "{\"receiver\":\"lookout\",\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{\"alertname\":\"Takeover$i\"},\"annotations\":{},\"startsAt\":\"2026-11-25T16:43:58Z\",\"endsAt\":\"0001-01-01T00:00:00Z\",\"generatorURL\":\"\",\"fingerprint\":\"\"}],\"groupLabels\":{},\"commonLabels\":{\"alertname\":\"Takeover$i\"},\"commonAnnotations\":{},\"externalURL\":\"\",\"version\":\"4\",\"groupKey\":\"$g\",\"truncatedAlerts\":0}"
done
held() { [[ "$(rows "$url" "SELECT count(*) FROM relay_deliveries WHERE lease_owner LIKE 'a/%'")" -ge "$N" ]]; }
wait_until 20 "replica a to claim all $N" held
start_replica b "$P2" "$url" "$STORE_KEYS" "$HOOK"
B=$RPID
curl -sf "http://127.0.0.1:$SPORT/delay?ms=0" >/dev/null
t0=$(date +%s.%N)
kill -KILL "$A"
delivered() { [[ "$(count /takeover | awk '{print $2}')" -ge "$N" ]]; }
wait_until 120 "replica b to deliver all $N" delivered
t1=$(date +%s.%N)
python3 -c "print(f'  all {$N} delivered by b {$t1 - $t0:.2f} s after a was killed (lease $LEASE; goal: within the lease + 1 s)')"
stop_pid "$B"
fi
