# shellcheck shell=bash
# Shared by the bench/ scripts (sourced, not run): usage and argument
# checks, the tools each needs (named when missing, with the Debian package
# that has them), free ports, and waits that give up after a deadline.
#
# A script sets USAGE (its synopsis and what it measures) before sourcing
# this file, then calls bench_args "$@", need TOOL..., need_lookout.

BENCH="$(basename "$0")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOOKOUT="${LOOKOUT_BIN:-$ROOT/target/release/lookout}"

die() {
  printf '%s: %s\n' "$BENCH" "$*" >&2
  exit 2
}

usage() {
  printf '%s\n' "$USAGE"
}

# bench_args MAX_POSITIONAL "$@": -h/--help prints the usage; more than
# MAX_POSITIONAL arguments, an unknown option or a SECONDS that is not a
# positive whole number is an error. Sets SECONDS_ARG to the first argument.
bench_args() {
  local max="$1"
  shift
  # shellcheck disable=SC2034 # read by the script that sourced this file
  SECONDS_ARG=""
  case "${1:-}" in
    -h | --help)
      usage
      exit 0
      ;;
    -*) die "unknown option $1 (usage below)
$(usage)" ;;
  esac
  (($# <= max)) || die "too many arguments (usage below)
$(usage)"
  if (($# >= 1)); then
    [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive whole number, not \`$1\`"
    # shellcheck disable=SC2034
    SECONDS_ARG="$1"
  fi
}

# Debian package of each tool the scripts use.
declare -A PACKAGE=(
  [redis-server]=redis-server [redis-cli]=redis-tools [redis-benchmark]=redis-tools
  [prometheus-redis-exporter]=prometheus-redis-exporter
  [prometheus-blackbox-exporter]=prometheus-blackbox-exporter
  [prometheus-alertmanager]=prometheus-alertmanager
  [curl]=curl [wrk]=wrk [python3]=python3 [sqlite3]=sqlite3 [cargo]="the Rust toolchain (rustup)"
  [valgrind]=valgrind [callgrind_control]=valgrind [taskset]=util-linux
)

# need TOOL...: every tool on PATH (or an absolute path that exists), else
# one message naming all that are missing and where to get them.
need() {
  local -a missing=()
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t (${PACKAGE[$t]:-$t})")
  done
  ((${#missing[@]} == 0)) || die "missing: ${missing[*]}; install them (apt-get install …) and run again"
}

# need_lookout: the binary measured, built in release mode.
need_lookout() {
  [[ -x "$LOOKOUT" ]] || die "no lookout binary at $LOOKOUT: run \`cargo build --release\` first (or set LOOKOUT_BIN)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The relay's part of a configuration routing every webhook nowhere: pure
# intake, every notification stored and none delivered.
# shellcheck disable=SC2034 # read by the scripts that source this file
NOWHERE='  routes:
    - {matchers: ['"'"'alertname="never"'"'"'], destinations: [log]}
  destinations: [{name: log, type: log}]'

# relay_config PORT DATA_DIR RELAY_YAML: a lookout configuration with the
# relay alone (no probes, no synthetic alerts) on 127.0.0.1:PORT;
# RELAY_YAML goes under `relay:`, indented two spaces.
relay_config() {
  cat <<YAML
server: {listen: "127.0.0.1:$1"}
data_dir: $2
probe_files: []
alerts: {enabled: false}
relay:
$3
YAML
}

# start_replica NAME PORT URL STORE_EXTRA RELAY_YAML: a lookout replica on
# the relay store at URL, in the background, ready to take webhooks; sets
# RPID. STORE_EXTRA: more keys of `relay.store` ("lease: 2s, pool_size: 8");
# RELAY_YAML: the rest of `relay:` (routes, destinations).
start_replica() {
  local name="$1" port="$2" url="$3" extra="$4" rest="$5"
  relay_config "$port" "$WORK/data-$name" "  store: {url: \"$url\", replica: $name${extra:+, $extra}}
$rest" > "$WORK/$name.yaml"
  "$LOOKOUT" run -c "$WORK/$name.yaml" --log-level warn &
  RPID=$!
  PIDS+=("$RPID")
  wait_until 20 "replica $name on port $port" curl -sf "http://127.0.0.1:$port/-/ready/relay"
}

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it
# succeeds; after SECONDS, says what never happened and exits 1.
wait_until() {
  local secs="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || {
      printf '%s: gave up after %s s waiting for %s\n' "$BENCH" "$secs" "$what" >&2
      exit 1
    }
    sleep 0.1
  done
}

# stop_pid PID [SECONDS]: SIGTERM, then SIGKILL if it has not exited after
# SECONDS (10); never waits longer.
stop_pid() {
  local pid="$1" secs="${2:-10}"
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      printf '%s: pid %s ignored SIGTERM for %s s; killing it\n' "$BENCH" "$pid" "$secs" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

# Background processes a script started, stopped (bounded) on exit, the
# newest first: a lookout still delivering stops before the stand-in it
# delivers to, rather than log a failed delivery for each one in flight.
PIDS=()
WORK="$(mktemp -d)"
bench_cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}" 5; done
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

# write_wrk_scripts DIR: DIR/webhook.lua posts one unique Alertmanager
# webhook payload per request to lookout's /webhook, DIR/am.lua one unique
# alert per request to Alertmanager's /api/v2/alerts; wrk's script argument
# (the round) keeps alerts unique across runs.
write_wrk_scripts() {
  local dir="$1"
  # Both scripts send one unique alert per request, numbered by this prelude.
  cat > "$dir/unique.lua" <<'LUA'
-- Each wrk thread numbers its own alerts (in one Lua state per thread, so a
-- file-level random number would be the same in both and half the
-- requests would be duplicates).
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
-- The round (wrk's script argument) keeps alerts unique across rounds too.
local round = "0"
init = function(args) round = args[1] or "0" end
local n = 0
LUA
  { cat "$dir/unique.lua"; cat <<'LUA'
request = function()
  n = n + 1
  local g = string.format('{}:{alertname="Bench%s_%d_%d"}', round, tid, n)
  local body = string.format('{"receiver":"lookout","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Bench%s_%d_%d","severity":"critical"},"annotations":{"summary":"bench"},"startsAt":"2026-11-25T16:43:58Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":""}],"groupLabels":{"alertname":"Bench"},"commonLabels":{"severity":"critical"},"commonAnnotations":{},"externalURL":"","version":"4","groupKey":"%s","truncatedAlerts":0}', round, tid, n, g:gsub('"', '\\"'))
  return wrk.format("POST", "/webhook", {["Content-Type"] = "application/json"}, body)
end
LUA
  } > "$dir/webhook.lua"
  { cat "$dir/unique.lua"; cat <<'LUA'
request = function()
  n = n + 1
  local body = string.format('[{"labels":{"alertname":"Bench%s_%d_%d","severity":"critical"},"annotations":{"summary":"bench"}}]', round, tid, n)
  return wrk.format("POST", "/api/v2/alerts", {["Content-Type"] = "application/json"}, body)
end
LUA
  } > "$dir/am.lua"
}

# The webhook stand-in (bench/webhook-standin.py) on port SPORT, as the
# delivery benches read it: it answers every POST 200 (after the delay set
# with GET /delay?ms=N) and counts requests and alerts per path.

# start_standin: starts it on a free port, sets SPORT, waits until it answers.
start_standin() {
  SPORT=$(free_port)
  python3 "$ROOT/bench/webhook-standin.py" "$SPORT" &
  PIDS+=($!)
  wait_until 10 "the stand-in on port $SPORT" curl -sf "http://127.0.0.1:$SPORT/count?path=/none"
}

# count PATH: "requests alerts first last" received on PATH.
count() { curl -sf "http://127.0.0.1:$SPORT/count?path=$1"; }

# settle PATH EXPECTED: waits until PATH has received EXPECTED alerts, or
# nothing more for 5 s, or 120 s in all; prints the count line.
settle() {
  local path="$1" want="$2" last="" same=0 line
  for _ in $(seq 1 1200); do
    line=$(count "$path")
    [[ "$(awk '{print $2}' <<<"$line")" -ge "$want" ]] && break
    if [[ "$line" == "$last" ]]; then same=$((same + 1)); else same=0; last="$line"; fi
    ((same < 50)) || break
    sleep 0.1
  done
  count "$path"
}

# report WHO ACCEPTED LINE
report() {
  python3 - "$@" <<'PY'
import sys
who, accepted, (req, alerts, first, last) = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
alerts, span = int(alerts), float(last) - float(first)
rate = alerts / span if span > 0 else 0.0
print(f"  {who}: {accepted} alerts accepted, {alerts} delivered in {req} notifications over {span:.2f} s: {rate:.0f} delivered/s")
PY
}
