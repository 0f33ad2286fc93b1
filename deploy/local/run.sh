#!/usr/bin/env bash
# The main job on this machine: start the local monitoring stack on loopback
# (installing its Debian packages when missing), build lookout and run it
# against the stack with config/lookout.yaml. Ctrl-C stops lookout; the
# stack keeps running (`deploy/local/stack.sh down` stops it).
#
# Status page: http://127.0.0.1:9464/   metrics: http://127.0.0.1:9464/metrics
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
deploy/local/stack.sh up
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
exec target/release/lookout run -c config/lookout.yaml "$@"
