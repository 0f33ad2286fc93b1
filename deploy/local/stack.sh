#!/usr/bin/env bash
# The monitoring stack on loopback, without Docker: Redis, redis_exporter,
# Prometheus, Alertmanager and the two reference health endpoints (Django and
# FastAPI), as the compose files run them, on ports that leave the standard
# ones free. lookout itself is not started here: run it against this stack
# (its Prometheus job and Alertmanager webhook point at 127.0.0.1:9464).
#
#   deploy/local/stack.sh up [SERVICE...]     start what is not running, wait until ready
#   deploy/local/stack.sh down [SERVICE...]   stop what this script started
#   deploy/local/stack.sh status              table of services; exit 3 if one is down
#   deploy/local/stack.sh env                 shell exports for scripts and tests
#   deploy/local/stack.sh logs SERVICE        last lines of a service's log
#   deploy/local/stack.sh venv                only create or update .stack/venv (the
#                                             reference endpoints' Python), for tests
#
# Services: redis, redis-exporter, prometheus, alertmanager, django, fastapi.
# State (pid files, logs, data, the Python venv, the webhook token) lives in
# .stack/ at the repository root. Every command is idempotent: `up` twice
# starts nothing the second time, `down` twice stops nothing.
#
# `up` installs missing Debian packages with apt-get (as root, or via sudo).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STACK="$ROOT/.stack"
RUN="$STACK/run"
LOGS="$STACK/log"
ENDPOINTS="$ROOT/deploy/reference-endpoints"
VENV="$STACK/venv"
TOKEN_FILE="$STACK/webhook-token"

HOST=127.0.0.1
REDIS_PORT=16379
EXPORTER_PORT=19121
PROMETHEUS_PORT=19090
ALERTMANAGER_PORT=19093
DJANGO_PORT=18000
FASTAPI_PORT=18001
LOOKOUT_LISTEN=127.0.0.1:9464
REDIS_URL="redis://$HOST:$REDIS_PORT/0"

# Start order; `down` stops in reverse.
SERVICES=(redis redis-exporter prometheus alertmanager django fastapi)

# Seconds a service may take to become ready after it starts.
READY_TIMEOUT=60
POLL=0.2

log() { printf '%s\n' "$*" >&2; }
die() { log "stack.sh: error: $*"; exit 1; }

port_of() {
  case "$1" in
    redis) echo "$REDIS_PORT" ;;
    redis-exporter) echo "$EXPORTER_PORT" ;;
    prometheus) echo "$PROMETHEUS_PORT" ;;
    alertmanager) echo "$ALERTMANAGER_PORT" ;;
    django) echo "$DJANGO_PORT" ;;
    fastapi) echo "$FASTAPI_PORT" ;;
    *) die "unknown service '$1' (one of: ${SERVICES[*]})" ;;
  esac
}

address_of() {
  case "$1" in
    redis) echo "$REDIS_URL" ;;
    django) echo "http://$HOST:$DJANGO_PORT/health/redis/" ;;
    fastapi) echo "http://$HOST:$FASTAPI_PORT/api/health/redis" ;;
    *) echo "http://$HOST:$(port_of "$1")" ;;
  esac
}

# A string that must appear in the process's command line, so that a pid file
# left behind by a crash never points us at an unrelated process that reused
# the pid. Redis rewrites its command line to "redis-server host:port".
signature_of() {
  case "$1" in
    redis) echo "redis-server" ;;
    redis-exporter) echo "prometheus-redis-exporter" ;;
    prometheus) echo "--web.listen-address=$HOST:$PROMETHEUS_PORT" ;;
    alertmanager) echo "--web.listen-address=$HOST:$ALERTMANAGER_PORT" ;;
    django) echo "serve_django.py" ;;
    fastapi) echo "serve_fastapi.py" ;;
  esac
}

pidfile_of() { echo "$RUN/$1.pid"; }
logfile_of() { echo "$LOGS/$1.log"; }

# Prints the pid of a running service started by this script, or fails.
running_pid() {
  local pidfile pid
  pidfile="$(pidfile_of "$1")"
  [[ -f "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  # grep without -q reads all its input: with pipefail, an early exit would
  # fail the pipeline through tr's SIGPIPE.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F -- "$(signature_of "$1")" >/dev/null || return 1
  echo "$pid"
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Whether a service's prerequisites exist in the repository; the reference
# endpoints are written separately and may not be there yet.
available() {
  case "$1" in
    django) [[ -f "$ENDPOINTS/serve_django.py" && -f "$ENDPOINTS/requirements.txt" ]] ;;
    fastapi) [[ -f "$ENDPOINTS/serve_fastapi.py" && -f "$ENDPOINTS/requirements.txt" ]] ;;
    *) return 0 ;;
  esac
}

# Succeeds once the service answers as it should.
ready() {
  case "$1" in
    redis) [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] ;;
    # Ready once it has reached Redis, not merely once it listens.
    redis-exporter) curl -fsS --max-time 2 "http://$HOST:$EXPORTER_PORT/metrics" 2>/dev/null | grep '^redis_up 1' >/dev/null ;;
    prometheus) curl -fsS --max-time 2 -o /dev/null "http://$HOST:$PROMETHEUS_PORT/-/ready" 2>/dev/null ;;
    alertmanager) curl -fsS --max-time 2 -o /dev/null "http://$HOST:$ALERTMANAGER_PORT/-/ready" 2>/dev/null ;;
    # Any HTTP answer: the endpoint's own status code is what lookout probes.
    django | fastapi) [[ "$(http_status "$(address_of "$1")")" != 000 ]] ;;
  esac
}

http_status() {
  curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- packages --

# command -> Debian package, for everything `up` runs.
ensure_packages() {
  local -a missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v prometheus-redis-exporter >/dev/null || missing+=(prometheus-redis-exporter)
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v curl >/dev/null || missing+=(curl)
  { command -v setsid && command -v flock; } >/dev/null || missing+=(util-linux)
  command -v python3 >/dev/null || missing+=(python3)
  if command -v python3 >/dev/null && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
  fi
  ((${#missing[@]} == 0)) && return 0

  local -a sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "missing packages: ${missing[*]} (run as root or install them)"
    sudo=(sudo)
  fi
  log "Installing Debian packages: ${missing[*]}"
  # Another apt run may hold the lock (an image still provisioning): wait for it.
  local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
  "${apt[@]}" update -qq >/dev/null || die "apt-get update failed"
  "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# ------------------------------------------------------------ preparation --

ensure_token() {
  if [[ ! -s "$TOKEN_FILE" ]]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_FILE")
    log "Generated the webhook bearer token in ${TOKEN_FILE#"$ROOT"/}"
  fi
}

# The venv (the reference endpoints' requirements and the tests' own) is
# rebuilt only when one of those files changed.
ensure_venv() {
  local req="$ENDPOINTS/requirements.txt" treq="$ROOT/tests/requirements.txt" stamp="$VENV/.requirements.sha256" sum
  sum="$(cat "$req" "$treq" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(<"$stamp")" == "$sum" ]]; then
    return 0
  fi
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  log "Installing the reference endpoints' requirements into ${VENV#"$ROOT"/}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req" -r "$treq" \
    >"$LOGS/pip.log" 2>&1 || { tail -n 20 "$LOGS/pip.log" >&2; die "pip install -r $req -r $treq failed (log: $LOGS/pip.log)"; }
  echo "$sum" >"$stamp"
}

# --------------------------------------------------------------- processes --

# Writes the command line of a service, one argument per line, to stdout.
command_of() {
  case "$1" in
    redis)
      printf '%s\n' redis-server --bind "$HOST" --port "$REDIS_PORT" --dir "$STACK/redis" \
        --appendonly no --save '' --daemonize no --protected-mode yes --loglevel notice
      ;;
    redis-exporter)
      printf '%s\n' prometheus-redis-exporter "--redis.addr=redis://$HOST:$REDIS_PORT" \
        "--web.listen-address=$HOST:$EXPORTER_PORT"
      ;;
    prometheus)
      printf '%s\n' prometheus "--config.file=$HERE/prometheus.yml" \
        "--storage.tsdb.path=$STACK/prometheus" --storage.tsdb.retention.time=2d \
        "--web.listen-address=$HOST:$PROMETHEUS_PORT" --web.enable-lifecycle
      ;;
    alertmanager)
      printf '%s\n' prometheus-alertmanager "--config.file=$HERE/alertmanager.yml" \
        "--storage.path=$STACK/alertmanager" "--web.listen-address=$HOST:$ALERTMANAGER_PORT" \
        --cluster.listen-address=
      ;;
    django)
      printf '%s\n' "$VENV/bin/python" "$ENDPOINTS/serve_django.py" --port "$DJANGO_PORT"
      ;;
    fastapi)
      printf '%s\n' "$VENV/bin/python" "$ENDPOINTS/serve_fastapi.py" --port "$FASTAPI_PORT"
      ;;
  esac
}

start() {
  local name="$1" port pid logfile deadline
  port="$(port_of "$name")"
  logfile="$(logfile_of "$name")"

  if pid="$(running_pid "$name")"; then
    # Pick up edited rules and routes without a restart.
    case "$name" in
      prometheus | alertmanager)
        if curl -fsS -X POST --max-time 5 -o /dev/null "http://$HOST:$port/-/reload"; then
          log "$name: already running (pid $pid), configuration reloaded"
        else
          log "$name: already running (pid $pid), reload failed: see $logfile"
        fi
        ;;
      *) log "$name: already running (pid $pid)" ;;
    esac
  else
    rm -f "$(pidfile_of "$name")"
    if port_open "$port"; then
      die "$name: port $HOST:$port is in use by a process this script did not start: $(ss -Hltnp "sport = :$port" 2>/dev/null | awk '{print $NF}' | head -n1)"
    fi
    local -a cmd env=(env -u REDIS_PASSWORD -u REDIS_USER -u REDIS_USERNAME -u REDIS_HOST -u REDIS_PORT -u REDIS_DB -u REDIS_ADDR)
    mapfile -t cmd < <(command_of "$name")
    case "$name" in
      redis) mkdir -p "$STACK/redis" ;;
      django | fastapi) env+=(REDIS_URL="$REDIS_URL") ;;
    esac
    printf '\n==== %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$logfile"
    # setsid: the service outlives this shell and ignores its terminal's signals.
    # 9>&-: the service must not inherit (and hold forever) the lock of take_lock.
    setsid "${env[@]}" "${cmd[@]}" >>"$logfile" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$(pidfile_of "$name")"
    log "$name: started (pid $pid), log ${logfile#"$ROOT"/}"
  fi

  deadline=$((SECONDS + READY_TIMEOUT))
  until ready "$name"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      rm -f "$(pidfile_of "$name")"
      die "$name exited before it was ready (log: $logfile)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$logfile" >&2 || true
      die "$name not ready after ${READY_TIMEOUT}s (log: $logfile)"
    fi
    sleep "$POLL"
  done
}

stop() {
  local name="$1" pid deadline
  if ! pid="$(running_pid "$name")"; then
    rm -f "$(pidfile_of "$name")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name: still running 15s after SIGTERM, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep "$POLL"
  done
  rm -f "$(pidfile_of "$name")"
  log "$name: stopped (pid $pid)"
}

# Expands the services named on the command line (all when none), in start
# order. With --with-deps (for `up`), adds Redis before the services that
# need it.
select_services() {
  local deps=0
  if [[ "${1:-}" == --with-deps ]]; then
    deps=1
    shift
  fi
  local -a want=("$@")
  ((${#want[@]})) || want=("${SERVICES[@]}")
  local s w needs_redis=0
  for w in "${want[@]}"; do
    [[ $deps == 1 && ("$w" == redis-exporter || "$w" == django || "$w" == fastapi) ]] && needs_redis=1
  done
  for s in "${SERVICES[@]}"; do
    for w in "${want[@]}"; do
      if [[ "$s" == "$w" || ("$s" == redis && $needs_redis == 1) ]]; then
        echo "$s"
        break
      fi
    done
  done
}

print_table() {
  local name pid state detail all_up=0
  printf '%-15s %-9s %-8s %-56s %s\n' SERVICE STATE PID ADDRESS LOG
  for name in "${SERVICES[@]}"; do
    detail=""
    if pid="$(running_pid "$name")"; then
      state=running
      case "$name" in
        django | fastapi) detail=" (HTTP $(http_status "$(address_of "$name")"))" ;;
      esac
    elif ! available "$name"; then
      state=skipped pid=- detail=" (deploy/reference-endpoints/ not there yet)"
    else
      state=stopped pid=- all_up=3
    fi
    printf '%-15s %-9s %-8s %-56s %s\n' "$name" "$state" "$pid" "$(address_of "$name")$detail" \
      "${LOGS#"$ROOT"/}/$name.log"
  done
  printf '%-15s %-9s %-8s %-56s %s\n' lookout external - "http://$LOOKOUT_LISTEN" "(not started by this script)"
  return "$all_up"
}

# ---------------------------------------------------------------- commands --

# One `up` or `down` at a time: tests running in parallel may all call `up`.
take_lock() {
  mkdir -p "$RUN"
  exec 9>"$RUN/.lock"
  flock -w 600 9 || die "another stack.sh still holds $RUN/.lock after 600s"
}

# Fails (in this shell, not in a substitution) on an unknown service name.
check_names() {
  local w
  for w in "$@"; do port_of "$w" >/dev/null; done
}

cmd_up() {
  check_names "$@"
  local -a names
  mapfile -t names < <(select_services --with-deps "$@")
  take_lock
  ensure_packages
  mkdir -p "$RUN" "$LOGS"
  ensure_token
  local name
  for name in "${names[@]}"; do
    if ! available "$name"; then
      log "$name: skipped: $ENDPOINTS has no serve_$name.py and requirements.txt yet"
      continue
    fi
    case "$name" in django | fastapi) ensure_venv ;; esac
    start "$name"
  done
  echo
  print_table || true
}

cmd_down() {
  check_names "$@"
  local -a names
  mapfile -t names < <(select_services "$@")
  take_lock
  local i
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do
    stop "${names[i]}"
  done
}

cmd_venv() {
  [[ -f "$ENDPOINTS/requirements.txt" ]] || die "$ENDPOINTS/requirements.txt does not exist"
  command -v python3 >/dev/null || die "python3 is not installed"
  take_lock
  mkdir -p "$LOGS"
  ensure_venv
  echo "$VENV/bin/python"
}

cmd_env() {
  local -a vars=(
    LOOKOUT_STACK_DIR "$STACK"
    LOOKOUT_STACK_REDIS_URL "$REDIS_URL"
    LOOKOUT_STACK_REDIS_HOST "$HOST"
    LOOKOUT_STACK_REDIS_PORT "$REDIS_PORT"
    LOOKOUT_STACK_REDIS_EXPORTER_URL "http://$HOST:$EXPORTER_PORT"
    LOOKOUT_STACK_PROMETHEUS_URL "http://$HOST:$PROMETHEUS_PORT"
    LOOKOUT_STACK_ALERTMANAGER_URL "http://$HOST:$ALERTMANAGER_PORT"
    LOOKOUT_STACK_DJANGO_URL "http://$HOST:$DJANGO_PORT"
    LOOKOUT_STACK_DJANGO_HEALTH_URL "$(address_of django)"
    LOOKOUT_STACK_FASTAPI_URL "http://$HOST:$FASTAPI_PORT"
    LOOKOUT_STACK_FASTAPI_HEALTH_URL "$(address_of fastapi)"
    LOOKOUT_STACK_WEBHOOK_TOKEN_FILE "$TOKEN_FILE"
    LOOKOUT_STACK_LOOKOUT_LISTEN "$LOOKOUT_LISTEN"
  )
  local i
  for ((i = 0; i < ${#vars[@]}; i += 2)); do
    printf 'export %s=%q\n' "${vars[i]}" "${vars[i + 1]}"
  done
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

main() {
  cd "$ROOT"
  (($#)) || usage
  local verb="$1"
  shift
  case "$verb" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) print_table ;;
    env) cmd_env ;;
    venv) cmd_venv ;;
    logs)
      (($# == 1)) || usage
      port_of "$1" >/dev/null
      tail -n 50 "$(logfile_of "$1")"
      ;;
    -h | --help | help) usage 0 ;;
    *) log "stack.sh: unknown command '$verb'"; usage ;;
  esac
}

main "$@"
