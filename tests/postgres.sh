#!/usr/bin/env bash
# A private PostgreSQL for the tests and the benches, from Debian's
# `postgresql` package: a throw-away cluster in DIR, trust authentication,
# listening on 127.0.0.1:PORT only (and a socket in DIR), with a database
# `test`. Run as root, the server runs as the `postgres` user (PostgreSQL
# refuses to run as root).
#
#   tests/postgres.sh start DIR PORT   # prints the URL of database `test`
#   tests/postgres.sh stop DIR         # fast shutdown; DIR is left to the caller
#   tests/postgres.sh kill DIR         # SIGKILL the postmaster (a crash)
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
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres test
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
