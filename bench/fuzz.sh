#!/usr/bin/env bash
# Coverage-guided fuzzing of what lookout reads from outside (fuzz/: webhook
# bodies, configuration files, health-endpoint answers, Redis INFO), each
# target for SECONDS. Seeds are in fuzz/seeds/<target> (in the repository);
# what the fuzzer finds new goes to fuzz/corpus/<target> and is reused by the
# next run; a crash is written to fuzz/artifacts/<target>/ and named here.
set -euo pipefail
USAGE="usage: bench/fuzz.sh [SECONDS]   (default 60, per target)
Runs every cargo-fuzz target for SECONDS: executions, executions per second, corpus size and
crashes of each. With a nightly toolchain it runs \`cargo +nightly fuzz run\` (AddressSanitizer);
on stable, \`cargo fuzz run --sanitizer none\`. FUZZ_TOOLCHAIN=stable or nightly forces one;
FUZZ_TARGETS=\"a b\" runs only those. Needs cargo-fuzz (\`cargo install cargo-fuzz\`)."
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args 1 "$@"
SECS="${SECONDS_ARG:-60}"
need cargo
cargo fuzz --version >/dev/null 2>&1 || die "missing cargo-fuzz: run \`cargo install cargo-fuzz\` and run again"
cd "$ROOT"

case "${FUZZ_TOOLCHAIN:-}" in
  "") if rustup run nightly rustc --version >/dev/null 2>&1; then TOOLCHAIN=nightly; else TOOLCHAIN=stable; fi ;;
  stable | nightly) TOOLCHAIN="$FUZZ_TOOLCHAIN" ;;
  *) die "FUZZ_TOOLCHAIN must be stable or nightly, not \`$FUZZ_TOOLCHAIN\`" ;;
esac
if [[ "$TOOLCHAIN" == nightly ]]; then
  rustup run nightly rustc --version >/dev/null 2>&1 || die "FUZZ_TOOLCHAIN=nightly, but no nightly toolchain: rustup toolchain install nightly"
  # AddressSanitizer, cargo-fuzz's default, needs -Z flags: nightly only.
  CARGO=(cargo +nightly fuzz)
  SANITIZER=()
  echo "fuzz: nightly toolchain, AddressSanitizer"
else
  CARGO=(cargo fuzz)
  SANITIZER=(--sanitizer none)
  echo "fuzz: stable toolchain, no sanitizer (a nightly toolchain would add AddressSanitizer)"
fi

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
  mapfile -t TARGETS < <("${CARGO[@]}" list)
fi
((${#TARGETS[@]})) || die "no fuzz targets in fuzz/"
"${CARGO[@]}" build "${SANITIZER[@]}" >"$WORK/build.log" 2>&1 || {
  tail -n 30 "$WORK/build.log" >&2
  die "cargo fuzz build failed"
}

printf '%-16s %12s %10s %8s  %s\n' target executions exec/s corpus result
crashed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
  log="$WORK/$t.log"
  status=0
  # New inputs go to the first directory; the seeds are only read.
  "${CARGO[@]}" run "${SANITIZER[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  [[ -n "$took" && "$took" -gt 0 ]] || took="$SECS"
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  if ((status == 0)); then
    result="no crash"
  else
    crashed=$((crashed + 1))
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    result="CRASH (exit $status): ${artifact:-see below}"
    cp "$log" "fuzz/artifacts/$t.log" 2>/dev/null || true
  fi
  printf '%-16s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "$(( ${runs:-0} / took ))" "$corpus" "$result"
  if ((status != 0)); then
    grep -E "panicked at|ERROR: |SUMMARY" "$log" | head -n 5 | sed 's/^/    /'
  fi
done
((crashed == 0)) || die "$crashed target(s) crashed; reproduce with: ${CARGO[*]} run ${SANITIZER[*]} TARGET ARTIFACT"
