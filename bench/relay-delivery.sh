#!/usr/bin/env bash
# Delivery under an alert storm, end to end, beside Alertmanager: a burst of
# unique alerts (wrk, 2 threads, 16 connections, SECONDS, default 2) goes
# into each, and each delivers one notification per alert to the same
# webhook stand-in, which answers after 0 ms, then after 20 ms.
# Alertmanager routes with `group_by: ['...']` and `group_wait: 0s` (one
# notification per alert, at once); lookout has one `webhook` destination
# with its default concurrency, or CONCURRENCY from the environment.
# Printed per run: alerts accepted, delivered, and delivered per second
# (from the first delivery to the last).
set -euo pipefail
USAGE="usage: [CONCURRENCY=N] bench/relay-delivery.sh [SECONDS]
Delivered alerts per second to a webhook stand-in (0 ms and 20 ms answers), lookout vs. Alertmanager.
CONCURRENCY: lookout's webhook \`concurrency\` (default: the type's, 256).
Needs target/release/lookout (or LOOKOUT_BIN), wrk, prometheus-alertmanager, curl, python3."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
BURST="${SECONDS_ARG:-2}"
[[ "${CONCURRENCY:-256}" =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be a positive whole number, not \`$CONCURRENCY\`"
need wrk prometheus-alertmanager curl python3
need_lookout
AM="$(command -v prometheus-alertmanager)"
write_wrk_scripts "$WORK"

start_standin

AMPORT=$(free_port)
LPORT=$(free_port)
round=0
for delay in 0 20; do
  curl -sf "http://127.0.0.1:$SPORT/delay?ms=$delay" >/dev/null
  echo "== stand-in answering after $delay ms; burst: wrk -t2 -c16 -d${BURST}s, one unique alert per request; lookout's concurrency ${CONCURRENCY:-256}"

  round=$((round + 1))
  cat > "$WORK/am.yml" <<YAML
route:
  receiver: hook
  group_by: ['...']
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs: [{url: "http://127.0.0.1:$SPORT/am$round", send_resolved: false}]
YAML
  rm -rf "$WORK/am"
  "$AM" --config.file="$WORK/am.yml" --storage.path="$WORK/am" --web.listen-address="127.0.0.1:$AMPORT" --cluster.listen-address= >/dev/null 2>&1 &
  AMPID=$!; PIDS+=("$AMPID")
  wait_until 30 "alertmanager on port $AMPORT" curl -sf "http://127.0.0.1:$AMPORT/-/ready"
  accepted=$(timeout 60 wrk -t2 -c16 -d"${BURST}s" -s "$WORK/am.lua" "http://127.0.0.1:$AMPORT" -- "am$round" | awk '/requests in/ {print $1}')
  report alertmanager "$accepted" "$(settle "/am$round" "$accepted")"
  stop_pid "$AMPID"

  cat > "$WORK/lookout.yaml" <<YAML
server: {listen: "127.0.0.1:$LPORT"}
data_dir: $WORK/data$round
probe_files: []
alerts: {enabled: false}
relay:
  destinations: [{name: hook, type: webhook, url: "http://127.0.0.1:$SPORT/lookout$round"${CONCURRENCY:+, concurrency: $CONCURRENCY}}]
YAML
  "$LOOKOUT" run -c "$WORK/lookout.yaml" --log-level warn &
  LPID=$!; PIDS+=("$LPID")
  wait_until 20 "lookout on port $LPORT" curl -sf "http://127.0.0.1:$LPORT/-/healthy"
  timeout 60 wrk -t2 -c16 -d"${BURST}s" -s "$WORK/webhook.lua" "http://127.0.0.1:$LPORT" -- "lk$round" > "$WORK/wrk.out"
  accepted=$(python3 -c "import sqlite3; print(sqlite3.connect('$WORK/data$round/outbox.db').execute('select count(*) from notifications').fetchone()[0])")
  report lookout "$accepted" "$(settle "/lookout$round" "$accepted")"
  stop_pid "$LPID"
done
