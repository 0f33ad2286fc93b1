#!/usr/bin/env bash
# Starts the loopback stack (deploy/local/stack.sh up), builds lookout in
# release mode and runs it in the foreground against the stack, with
# config/lookout.yaml. Extra arguments go to `lookout run`. Ctrl-C stops
# lookout; `deploy/local/stack.sh down` stops the stack.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

deploy/local/stack.sh up
eval "$(deploy/local/stack.sh env)"

if (exec 3<>"/dev/tcp/127.0.0.1/9464") 2>/dev/null; then
  echo "run.sh: 127.0.0.1:9464 is already in use (another lookout?)" >&2
  exit 1
fi

cargo build --release --locked

# Point every probe at the stack, whatever the calling shell has set.
unset REDIS_HOST REDIS_PORT REDIS_USERNAME REDIS_PASSWORD REDIS_DB
export REDIS_URL="$LOOKOUT_STACK_REDIS_URL"
export PROMETHEUS_URL="$LOOKOUT_STACK_PROMETHEUS_URL"
export ALERTMANAGER_URL="$LOOKOUT_STACK_ALERTMANAGER_URL"
export DJANGO_HEALTH_URL="$LOOKOUT_STACK_DJANGO_HEALTH_URL"
export FASTAPI_HEALTH_URL="$LOOKOUT_STACK_FASTAPI_HEALTH_URL"

echo "lookout: http://127.0.0.1:9464/ (status), /metrics, /report" >&2
exec target/release/lookout run -c config/lookout.yaml "$@"
