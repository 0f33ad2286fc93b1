#!/usr/bin/env bash
# What following a Redis topology costs lookout, beside redis_exporter doing
# the same, and how fast lookout sees a failover.
#
# 1. Cost as the topology grows: for each size in SIZES (default 50 100
#    200), a Redis Cluster of that many redis-server processes on loopback
#    (half masters, half replicas, made with redis-cli --cluster create).
#    lookout runs one `kind: redis_cluster` probe every INTERVAL (5 s) for
#    SECONDS; then prometheus-redis-exporter in multi-target mode is driven
#    at the same rate (every node's /scrape?target= every INTERVAL, at most
#    16 at once). For each: CPU seconds of the process (/proc utime+stime)
#    per node per cycle, and its RSS at the end. The lines to compare:
#    CPU ratio lookout/exporter (goal at most 0.25) and lookout's RSS growth
#    per node between sizes (goal at most 50 KB).
# 2. Failover detection: a master, two replicas and three sentinels
#    (down-after 1 s); lookout runs a `kind: redis_sentinel` probe every
#    FAILOVER_EVERY (1 s). The master is killed (SIGKILL); the time of the
#    sentinels' +switch-master (read from a subscription) and the time lookout
#    recorded the new master (lookout_redis_last_failover_timestamp_seconds)
#    give the detection delay (goal: one probe interval + 100 ms).
set -euo pipefail
USAGE="usage: bench/redis-topology.sh [SECONDS]   (default 60 per size)
Environment: SIZES (default \"50 100 200\"), INTERVAL (5), FAILOVER_EVERY (1),
FAILOVER_ROUNDS (3), SKIP_COST=1 / SKIP_FAILOVER=1 to run one part only.
lookout vs. redis_exporter CPU and RSS per node for a cluster of each size,
and the delay from the sentinels' +switch-master to lookout's report.
Needs target/release/lookout (or LOOKOUT_BIN), redis-server, redis-cli,
prometheus-redis-exporter, curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
SECS="${SECONDS_ARG:-60}"
SIZES="${SIZES:-50 100 200}"
INTERVAL="${INTERVAL:-5}"
FAILOVER_EVERY="${FAILOVER_EVERY:-1}"
FAILOVER_ROUNDS="${FAILOVER_ROUNDS:-3}"
need redis-server redis-cli prometheus-redis-exporter curl python3
need_lookout
TICK=$(getconf CLK_TCK)

# ports N: N distinct free loopback ports, one per line, each with its
# cluster bus port (10000 higher: Redis refuses a port above 55535) free too.
# A port another process takes before its server binds it shows as a server
# that never answers, and the run stops there.
ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
held, out = [], []
def grab(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s
while len(out) < int(sys.argv[1]):
    # Below the ephemeral range (32768 and up on Linux), bus port included:
    # 200 nodes' own connections would otherwise take ports picked here.
    p = random.randrange(10000, 22700)
    if p in out or p + 10000 in out or p - 10000 in out:
        continue
    if grab(p) and grab(p + 10000):
        out.append(p)
print("\n".join(map(str, out)))
PY
}

# cpu PID: CPU seconds the process has used (user + system).
cpu() { awk -v t="$TICK" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
# rss PID: resident set, KiB.
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# start_lookout CONFIG PORT: lookout in the background; sets LPID.
start_lookout() {
  "$LOOKOUT" run -c "$1" --log-level warn 2>"$WORK/lookout.log" &
  LPID=$!
  PIDS+=("$LPID")
  wait_until 20 "lookout on port $2" curl -sf "http://127.0.0.1:$2/-/healthy"
}

# metric PORT NAME: the sum of every series of NAME on lookout's /metrics.
metric() { curl -s -m 10 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ ("^" n "([{]|$)") {s+=$2} END {printf "%.6f\n", s}'; }

# ------------------------------------------------------------- 1. cost --
cost_size() {
  local n="$1" p
  local -a node_ports node_pids=()
  mapfile -t node_ports < <(ports "$n")
  for p in "${node_ports[@]}"; do
    mkdir -p "$WORK/n$n-$p"
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/n$n-$p" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 15000 >/dev/null &
    node_pids+=($!)
    PIDS+=($!)
  done
  for p in "${node_ports[@]}"; do wait_until 20 "redis-server on $p" redis-cli -p "$p" PING; done
  local -a addrs=()
  for p in "${node_ports[@]}"; do addrs+=("127.0.0.1:$p"); done
  timeout 600 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$WORK/create.log" 2>&1 ||
    { tail -n 20 "$WORK/create.log" >&2; die "redis-cli --cluster create failed for $n nodes"; }
  cluster_ok() {
    local q
    for q in "${node_ports[@]}"; do
      redis-cli -p "$q" CLUSTER INFO | grep -q "cluster_known_nodes:$n" || return 1
      redis-cli -p "$q" CLUSTER INFO | grep -q 'cluster_state:ok' || return 1
    done
  }
  wait_until 300 "a $n-node cluster to agree" cluster_ok

  # lookout: one redis_cluster probe, seeded with three nodes.
  local lport
  lport=$(free_port)
  cat >"$WORK/lookout-$n.yaml" <<YAML
server: {listen: "127.0.0.1:$lport"}
data_dir: $WORK/data-$n
probe_files: []
probes:
  - name: shards
    kind: redis_cluster
    nodes: [${addrs[0]}, ${addrs[1]}, ${addrs[2]}]
    every: ${INTERVAL}s
    timeout: $((INTERVAL - 1))s
YAML
  start_lookout "$WORK/lookout-$n.yaml" "$lport"
  # The first cycle makes every connection: measured apart.
  wait_until 60 "the first cycle" sh -c "[ \"\$(curl -s http://127.0.0.1:$lport/metrics | awk '/^lookout_probe_runs_total/ {s+=\$2} END {print s+0}')\" -ge 1 ]"
  local runs0 c0 r0 runs1 c1 r1 ok
  runs0=$(metric "$lport" lookout_probe_runs_total)
  c0=$(cpu "$LPID")
  r0=$(rss "$LPID")
  sleep "$SECS"
  runs1=$(metric "$lport" lookout_probe_runs_total)
  c1=$(cpu "$LPID")
  r1=$(rss "$LPID")
  ok=$(metric "$lport" 'lookout_probe_success')
  local nodes_up
  nodes_up=$(metric "$lport" lookout_redis_node_up)
  stop_pid "$LPID"

  # redis_exporter, multi-target: every node's /scrape every INTERVAL.
  local eport epid
  eport=$(free_port)
  prometheus-redis-exporter --web.listen-address="127.0.0.1:$eport" >/dev/null 2>&1 &
  epid=$!
  PIDS+=("$epid")
  wait_until 20 "redis_exporter on port $eport" curl -sf "http://127.0.0.1:$eport/"
  printf '%s\n' "${addrs[@]}" >"$WORK/targets-$n"
  scrape_all() { xargs -P 16 -I{} curl -sf -m "$INTERVAL" -o /dev/null "http://127.0.0.1:$eport/scrape?target=redis://{}" <"$WORK/targets-$n"; }
  scrape_all # first round: connections and warm-up, measured apart
  local e0 er0 cycles=0 end e1 er1 t0
  e0=$(cpu "$epid")
  er0=$(rss "$epid")
  end=$((SECONDS + SECS))
  while ((SECONDS < end)); do
    t0=$(date +%s.%N)
    scrape_all || true
    cycles=$((cycles + 1))
    sleep "$(python3 -c "import time; print(max(0, $INTERVAL - (time.time() - $t0)))")"
  done
  e1=$(cpu "$epid")
  er1=$(rss "$epid")
  stop_pid "$epid"

  for p in "${node_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done

  python3 - "$n" "$runs0" "$runs1" "$c0" "$c1" "$r0" "$r1" "$cycles" "$e0" "$e1" "$er0" "$er1" "$ok" "$nodes_up" <<'PY' | tee -a "$WORK/cost.txt"
import sys
n = int(sys.argv[1]); runs = float(sys.argv[3]) - float(sys.argv[2])
lc = float(sys.argv[5]) - float(sys.argv[4]); lr0, lr1 = int(sys.argv[6]), int(sys.argv[7])
cyc = int(sys.argv[8]); ec = float(sys.argv[10]) - float(sys.argv[9]); er0, er1 = int(sys.argv[11]), int(sys.argv[12])
l_per = lc / (runs * n) * 1e6 if runs else float("nan")
e_per = ec / (cyc * n) * 1e6 if cyc else float("nan")
print(f"{n:4d} nodes | lookout: {runs:.0f} cycles, {lc:.2f} s CPU, {l_per:7.1f} us/node/cycle, RSS {lr1} KiB ({lr1 - lr0:+d} over the window), probe ok={sys.argv[13]}, nodes up={sys.argv[14]}"
      f" | exporter: {cyc} rounds, {ec:.2f} s CPU, {e_per:7.1f} us/node/cycle, RSS {er1} KiB"
      f" | CPU ratio {l_per / e_per:.3f}")
PY
}

if [[ "${SKIP_COST:-}" != 1 ]]; then
  echo "== cost: one redis_cluster probe vs. redis_exporter /scrape, every ${INTERVAL}s, ${SECS}s per size"
  for n in $SIZES; do
    ((n % 2 == 0 && n >= 6)) || die "a size must be even and at least 6 (half masters, half replicas), not $n"
    cost_size "$n"
  done
  python3 - "$WORK/cost.txt" <<'PY'
import re, sys
rows = [l for l in open(sys.argv[1]) if "nodes |" in l]
pts = [(int(l.split()[0]), int(re.search(r"RSS (\d+) KiB", l).group(1))) for l in rows]
if len(pts) >= 2:
    (n0, r0), (n1, r1) = pts[0], pts[-1]
    print(f"lookout RSS growth: {(r1 - r0) * 1024 / (n1 - n0) / 1000:.1f} KB per node between {n0} and {n1} nodes (goal at most 50)")
PY
fi

# --------------------------------------------------------- 2. failover --
failover_round() {
  local -a p
  mapfile -t p < <(ports 6)
  local m="${p[0]}" i
  local -a pids=()
  for i in 0 1 2; do
    mkdir -p "$WORK/f${p[$i]}"
    if ((i == 0)); then
      redis-server --port "${p[$i]}" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/f${p[$i]}" >/dev/null &
    else
      redis-server --port "${p[$i]}" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/f${p[$i]}" --replicaof 127.0.0.1 "$m" >/dev/null &
    fi
    pids+=($!)
    PIDS+=($!)
  done
  for i in 0 1 2; do wait_until 20 "redis-server on ${p[$i]}" redis-cli -p "${p[$i]}" PING; done
  for i in 1 2; do
    wait_until 20 "replica ${p[$i]} in sync" sh -c "redis-cli -p ${p[$i]} INFO replication | grep -q master_link_status:up"
  done
  local sentinels=""
  for i in 3 4 5; do
    mkdir -p "$WORK/s${p[$i]}"
    printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n' \
      "${p[$i]}" "$WORK/s${p[$i]}" "$m" >"$WORK/s${p[$i]}/sentinel.conf"
    redis-server "$WORK/s${p[$i]}/sentinel.conf" --sentinel >/dev/null &
    pids+=($!)
    PIDS+=($!)
    sentinels="${sentinels:+$sentinels, }127.0.0.1:${p[$i]}"
  done
  for i in 3 4 5; do
    wait_until 30 "sentinel ${p[$i]} to know the others" sh -c \
      "redis-cli -p ${p[$i]} SENTINEL MASTER mymaster | grep -A1 '^num-other-sentinels$' | tail -n1 | grep -q '^2$'"
  done
  local lport
  lport=$(free_port)
  cat >"$WORK/lookout-f.yaml" <<YAML
server: {listen: "127.0.0.1:$lport"}
data_dir: $WORK/data-f-$m
probe_files: []
probes:
  - name: ha
    kind: redis_sentinel
    sentinels: [$sentinels]
    master_name: mymaster
    every: ${FAILOVER_EVERY}s
    timeout: 900ms
YAML
  start_lookout "$WORK/lookout-f.yaml" "$lport"
  wait_until 20 "lookout's first sentinel run" sh -c "curl -s http://127.0.0.1:$lport/metrics | grep -q '^lookout_redis_masters'"
  # Subscribe to every sentinel before the kill; prints the Unix time of
  # the first +switch-master (the leader's: the others learn it later).
  python3 - "${p[3]}" "${p[4]}" "${p[5]}" >"$WORK/switch" <<'PY' &
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
bufs = {}
for port in sys.argv[1:]:
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.sendall(b"SUBSCRIBE +switch-master\r\n")
    bufs[s] = b""
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        chunk = key.fileobj.recv(4096)
        if not chunk:
            sys.exit(1)
        bufs[key.fileobj] += chunk
        b = bufs[key.fileobj]
        # The first reply confirms the subscription; the message follows it.
        if b"\r\nmessage\r\n" in b and b.split(b"\r\nmessage\r\n", 1)[1].count(b"\r\n") >= 4:
            print(f"{time.time():.3f}")
            sys.exit(0)
PY
  local sub=$!
  PIDS+=("$sub")
  sleep 0.5
  local killed
  killed=$(date +%s.%N)
  kill -KILL "${pids[0]}"
  wait "${pids[0]}" 2>/dev/null || true
  wait_until 30 "the sentinels' +switch-master" test -s "$WORK/switch"
  wait_until 30 "lookout to report the new master" sh -c \
    "curl -s http://127.0.0.1:$lport/metrics | grep -q '^lookout_redis_last_failover_timestamp_seconds'"
  local seen switched
  switched=$(cat "$WORK/switch")
  seen=$(metric "$lport" lookout_redis_last_failover_timestamp_seconds)
  stop_pid "$LPID"
  for i in "${pids[@]}"; do kill -KILL "$i" 2>/dev/null || true; done
  for i in "${pids[@]}"; do wait "$i" 2>/dev/null || true; done
  : >"$WORK/switch"
  python3 -c "
k, s, l = $killed, $switched, $seen
print(f'kill -9 -> first +switch-master {s - k:6.3f} s | first +switch-master -> lookout reports the new master {(l - s) * 1000:7.1f} ms (probe every ${FAILOVER_EVERY}s; goal at most ${FAILOVER_EVERY} s + 100 ms)')
" | tee -a "$WORK/failover.txt"
}

if [[ "${SKIP_FAILOVER:-}" != 1 ]]; then
  echo "== failover detection: redis_sentinel probe every ${FAILOVER_EVERY}s, ${FAILOVER_ROUNDS} rounds"
  for _ in $(seq "$FAILOVER_ROUNDS"); do failover_round; done
fi
