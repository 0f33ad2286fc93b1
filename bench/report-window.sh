#!/usr/bin/env bash
# `lookout report --window 24h` over a day of 1 s history: wall time and
# peak memory. Writes a synthetic day into a fresh history.db (4 probes
# observed every second, a cross-check round every second with 27 entries:
# 345,600 observations and 2,332,800 verdict rows), then times the report.
set -euo pipefail
USAGE="usage: bench/report-window.sh
Wall time and peak memory of lookout report --window 24h over a day of 1 s history.
Needs target/release/lookout (or LOOKOUT_BIN), python3 and /usr/bin/time (package time)."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 0 "$@"
need python3 /usr/bin/time
need_lookout
mkdir -p "$WORK/data"
# Let lookout create the schema (a few seconds of `lookout run`), so the
# benchmark reads exactly its own layout.
cat > "$WORK/lookout.yaml" <<YAML
data_dir: $WORK/data
probe_files: []
probes:
  - {name: redis, kind: redis, url: "redis://127.0.0.1:1"}
  - {name: django, kind: http_health, url: "http://127.0.0.1:1/health/redis/"}
  - {name: fastapi, kind: http_health, url: "http://127.0.0.1:1/api/health/redis"}
  - {name: prometheus, kind: prometheus, url: "http://127.0.0.1:1"}
YAML
PORT=$(free_port)
sed -i "1i server: {listen: \"127.0.0.1:$PORT\"}" "$WORK/lookout.yaml"
"$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level error &
pid=$!
PIDS+=("$pid")
wait_until 20 "lookout to create $WORK/data/history.db" test -f "$WORK/data/history.db"
sleep 1
stop_pid "$pid"
python3 - "$WORK/data/history.db" <<'PY'
import json, random, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
have = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
if "observations" not in have:
    sys.exit("lookout did not create its schema")
now = time.time()
start = now - 86400
probes = [("redis", "redis"), ("django", "http_health"), ("fastapi", "http_health"), ("prometheus", "prometheus")]
metrics = ["latency_seconds", "keyspace_hits", "keyspace_misses", "hit_ratio", "connected_clients", "maxclients", "used_memory_bytes", "maxmemory_bytes", "mem_fragmentation_ratio"]
reading = json.dumps({"values": {m: 1.0 for m in metrics}, "facts": {"run_id": "x" * 40}})
t0 = time.time()
with db:
    db.executemany("INSERT INTO observations (probe, kind, ts, ok, duration, error, reading) VALUES (?,?,?,?,?,?,?)",
                   ((p, k, start + s, 1 if random.random() > 0.001 else 0, 0.001, None, reading) for s in range(86400) for p, k in probes))
    db.executemany("INSERT INTO crosscheck_rounds (ts, verdict) VALUES (?, ?)", ((start + s, "agree") for s in range(86400)))
    db.executemany("INSERT INTO crosscheck (ts, metric, source, verdict, value, reference_value, deviation) VALUES (?,?,?,?,?,?,?)",
                   ((start + s, m, src, "agree" if random.random() > 0.0005 else "disagree", 1.0, 1.0, 0.0) for s in range(86400) for src in ("django", "fastapi", "prometheus") for m in metrics))
print(f"wrote a day of 1 s history in {time.time() - t0:.0f} s")
PY
ls -la "$WORK/data/"
/usr/bin/time -f "lookout report --window 24h: %e s wall, %M KiB max RSS" timeout 600 "$LOOKOUT" report --window 24h -c "$WORK/lookout.yaml" > "$WORK/out.txt" || true
head -5 "$WORK/out.txt"
