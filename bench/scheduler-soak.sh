#!/usr/bin/env bash
# Start-time lateness of the scheduler under load: tests/scheduler_load.rs
# (300 probes at 1 s, half on tokio intervals, half on cron, two threads
# keeping both cores busy), built in release mode and run for SECONDS.
# Prints, per path, the runs of the slowest probe and the p50 and p99 of how
# late runs started. The test itself only asserts that no probe stalls: the
# figures depend on what else the machine runs, so they are measured here.
set -euo pipefail
USAGE="usage: bench/scheduler-soak.sh [SECONDS]   (default 180)
Scheduler start-time lateness (p50, p99) of 300 probes at 1 s with both cores busy.
Needs cargo (the Rust toolchain). Run it on an otherwise idle machine."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
SECS="${SECONDS_ARG:-180}"
need cargo
cd "$ROOT"
# The test runs for SECS, then stops its scheduler (5 s at most); the build
# and the rest get ten minutes.
LOOKOUT_SOAK_SECS="$SECS" timeout $((SECS + 600)) \
  cargo test --release --test scheduler_load -- --nocapture --test-threads 1 2>&1 |
  grep -E '^(every|cron):|runs, .* failed|test result|panicked' ||
  die "the scheduler test printed no figures (build failure? run: cargo test --release --test scheduler_load)"
