#!/usr/bin/env bash
# A private PostgreSQL for the tests and the benches, from Debian's
# `postgresql` package: a throw-away cluster in DIR, trust authentication,
# listening on 127.0.0.1:PORT only (and a socket in DIR), with a database
# `test`. Run as root, the server runs as the `postgres` user (PostgreSQL
# refuses to run as root).
#
#   tests/postgres.sh start DIR PORT [--tls CERT KEY [--client-ca CA]]
#                                      # prints the URL of database `test`
#   tests/postgres.sh stop DIR         # fast shutdown; DIR is left to the caller
#   tests/postgres.sh kill DIR         # SIGKILL the postmaster (a crash)
#
# --tls: `ssl = on` with that PEM certificate and key (copied into DIR, the
# key made private as PostgreSQL demands); plain connections are still
# accepted. --client-ca: TCP connections only over TLS with a client
# certificate that CA signed, its CN mapped to user `postgres`
# (`hostssl all all 127.0.0.1/32 cert map=test`); the script's own
# connections then go through the socket in DIR.
set -euo pipefail

say() { printf 'tests/postgres.sh: %s\n' "$*" >&2; }

bindir() {
  local d
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)"
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    say "no PostgreSQL server binaries under /usr/lib/postgresql: install Debian's postgresql package"
    exit 1
  fi
  printf '%s' "$d"
}

# Runs a server binary as `postgres` when root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd="${1:-}"
dir="${2:-}"
[ -n "$dir" ] || { say "usage: $0 start DIR PORT | stop DIR | kill DIR"; exit 2; }
BIN="$(bindir)"
case "$cmd" in
start)
  port="${3:?PORT}"
  shift 3
  cert="" key="" client_ca=""
  while (($#)); do
    case "$1" in
    --tls) cert="${2:?CERT}" key="${3:?KEY}"; shift 3 ;;
    --client-ca) client_ca="${2:?CA}"; shift 2 ;;
    *) say "unknown option $1"; exit 2 ;;
    esac
  done
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200"
  admin_host=127.0.0.1
  if [ -n "$cert" ]; then
    mkdir -p "$dir/tls"
    cp "$cert" "$dir/tls/server.crt"
    cp "$key" "$dir/tls/server.key"
    chmod 600 "$dir/tls/server.key"
    opts="$opts -c ssl=on -c ssl_cert_file=$dir/tls/server.crt -c ssl_key_file=$dir/tls/server.key"
    if [ -n "$client_ca" ]; then
      cp "$client_ca" "$dir/tls/client-ca.crt"
      printf 'local all all trust\nhostssl all all 127.0.0.1/32 cert map=test\n' >"$dir/tls/hba.conf"
      printf 'test /^(.*)$ postgres\n' >"$dir/tls/ident.conf"
      opts="$opts -c ssl_ca_file=$dir/tls/client-ca.crt -c hba_file=$dir/tls/hba.conf -c ident_file=$dir/tls/ident.conf"
      admin_host="$dir"
    fi
    [ "$(id -u)" -eq 0 ] && chown -R postgres: "$dir/tls"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$opts" start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }
  as_pg "$BIN/psql" -h "$admin_host" -p "$port" -U postgres -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
    as_pg "$BIN/createdb" -h "$admin_host" -p "$port" -U postgres test
  printf 'postgres://postgres@127.0.0.1:%s/test\n' "$port"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  fi
  ;;
kill)
  if [ -f "$dir/data/postmaster.pid" ]; then
    kill -9 "$(head -n1 "$dir/data/postmaster.pid")"
  fi
  ;;
*)
  say "usage: $0 start DIR PORT | stop DIR | kill DIR"
  exit 2
  ;;
esac
