#!/usr/bin/env bash
# What TLS to PostgreSQL costs the replicas' durable intake: one private
# cluster (tests/postgres.sh --tls: `ssl = on`, a certificate of a CA made
# here with openssl, plain connections still accepted), two replicas, each
# driven by its own wrk (1 thread, 8 connections, 10 s, one unique alert per
# request), summed; rounds alternate `sslmode=disable` and
# `sslmode=verify-full` with `ca_file`, on fresh databases of the same
# server, three of each. The figure is the median ratio TLS / plain.
set -euo pipefail
USAGE="usage: bench/relay-store-tls.sh
Durable intake of two lookout replicas on PostgreSQL over TLS (verify-full) vs. plain, side by side on one server.
Needs target/release/lookout (or LOOKOUT_BIN), wrk, openssl, psql, python3, Debian's postgresql."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 0 "$@"
need wrk openssl psql python3
need_lookout
[[ -n "$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null)" ]] ||
  die "missing: the PostgreSQL server (postgresql); install it (apt-get install postgresql) and run again"
write_wrk_scripts "$WORK"

# --- a CA and the server's certificate (SAN 127.0.0.1) -------------------------
(
  cd "$WORK"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout ca.key -out ca.pem 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' >leaf.ext
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile leaf.ext -out server.pem 2>/dev/null
) || die "openssl could not make the certificates"

chmod 0755 "$WORK" # the server may run as `postgres`
PGPORT=$(free_port)
bash "$ROOT/tests/postgres.sh" start "$WORK/pg" "$PGPORT" --tls "$WORK/server.pem" "$WORK/server.key" >/dev/null ||
  die "cannot start PostgreSQL"
stop_pg() { bash "$ROOT/tests/postgres.sh" stop "$WORK/pg" || true; }
trap 'stop_pg; bench_cleanup' EXIT
admin() { psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d test -qAtc "$1"; }

# Replicas take webhooks and route them nowhere (pure intake, $NOWHERE).
# store_keys URL: pool size, and the CA only with TLS (with
# `sslmode=disable` lookout refuses it).
store_keys() {
  if [[ "$1" == *sslmode=disable* ]]; then echo "pool_size: 8"; else echo "pool_size: 8, ca_file: \"$WORK/ca.pem\""; fi
}

P1=$(free_port)
P2=$(free_port)
echo "== durable intake over TLS (sslmode=verify-full) vs. plain (sslmode=disable): two replicas, wrk -t1 -c8 -d10s each, 3 rounds of each, alternating"
ratios=()
for round in 1 2 3; do
  plain="" tls=""
  for mode in disable verify-full; do
    name="intake_${mode//-/_}_$round"
    admin "CREATE DATABASE $name"
    url="postgres://postgres@127.0.0.1:$PGPORT/$name?sslmode=$mode"
    start_replica a "$P1" "$url" "$(store_keys "$url")" "$NOWHERE"
    A=$RPID
    start_replica b "$P2" "$url" "$(store_keys "$url")" "$NOWHERE"
    B=$RPID
    encrypted=$(admin "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = '$name'")
    timeout 60 wrk -t1 -c8 -d10s -s "$WORK/webhook.lua" "http://127.0.0.1:$P1" -- "a$mode$round" > "$WORK/wrk-a.out" &
    WA=$!
    timeout 60 wrk -t1 -c8 -d10s -s "$WORK/webhook.lua" "http://127.0.0.1:$P2" -- "b$mode$round" > "$WORK/wrk-b.out"
    wait "$WA"
    ra=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-a.out")
    rb=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-b.out")
    refused=$(cat "$WORK/wrk-a.out" "$WORK/wrk-b.out" | awk '/Non-2xx/ {n += $5} END {print n + 0}')
    sum=$(python3 -c "print(f'{float(\"$ra\") + float(\"$rb\"):.0f}')")
    if [[ "$mode" == disable ]]; then plain=$sum; else tls=$sum; fi
    echo "round $round, sslmode=$mode: $ra + $rb = $sum webhooks/s (not 200: $refused; sessions encrypted: $encrypted); load $(cut -d' ' -f1 /proc/loadavg)"
    stop_pid "$A"
    stop_pid "$B"
  done
  ratio=$(python3 -c "print(f'{$tls / $plain:.2f}')")
  ratios+=("$ratio")
  echo "round $round: TLS / plain $ratio"
done
python3 -c "import statistics; print('median ratio TLS / plain: %.2f' % statistics.median([${ratios[0]}, ${ratios[1]}, ${ratios[2]}]))"
