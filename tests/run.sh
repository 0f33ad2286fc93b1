#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain:
# installs what the build needs (a C compiler for ring and the bundled
# SQLite, pkg-config) and what the tests run for real (redis-server,
# redis_exporter, Prometheus, Alertmanager, Chromium and their tools, from
# Debian's packages), checks that rustc is recent enough, then runs
# `cargo fmt --check`, the Rust tests, the deploy/ checks and
# `cargo clippy --all-targets -- -D warnings`. Every step runs even when an
# earlier one failed; the run fails if any did, and says which.
#
#   tests/run.sh [ARGS for cargo test…]
#
# Safe to run again: installs only what is missing. Tests start their own
# servers on free loopback ports; they need nothing on 6379.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'tests/run.sh: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# ----------------------------------------------------------- packages --

# What the build and the tests need, as Debian packages.
PACKAGES=(
  gcc libc6-dev make pkg-config # ring and rusqlite's bundled SQLite compile C
  procps                        # ps, for the deploy checks and the benches
  python3 python3-venv          # the reference endpoints' venv, deploy/ checks
  redis-server redis-tools prometheus prometheus-redis-exporter
  prometheus-alertmanager chromium sqlite3
  openssl                       # test certificates (TLS stand-ins)
  postgresql                    # the relay's shared store (tests/postgres.sh)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} first"
    SUDO=(sudo)
  fi
  # Another apt (unattended-upgrades on a fresh machine) may hold the lock: wait for it.
  APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
  "${APT[@]}" update -qq || die "apt-get update failed"
  "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
fi

# ---------------------------------------------------------- toolchain --

if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  die "no Rust toolchain on PATH: install it with rustup (https://rustup.rs), then run again"
fi
need="$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)"
[ -n "$need" ] || die "no rust-version in Cargo.toml"
have="$(rustc --version | awk '{print $2}')"
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  die "rustc $have is older than $need, the rust-version in Cargo.toml: run \`rustup update stable\`"
fi
# cargo subcommand -> the rustup component that provides it
for pair in fmt:rustfmt clippy:clippy; do
  sub="${pair%%:*}" component="${pair#*:}"
  cargo "$sub" --version >/dev/null 2>&1 && continue
  command -v rustup >/dev/null || die "cargo $sub is missing and there is no rustup to add $component"
  say "adding the $component component"
  rustup component add "$component" || die "rustup component add $component failed"
done

# The reference health endpoints (Django, FastAPI) run from a venv that the
# local stack's script keeps in .stack/venv.
deploy/local/stack.sh venv

# --------------------------------------------------------- PostgreSQL --

# The relay store's tests need a PostgreSQL: the one on 127.0.0.1:5432 when
# it answers (trust authentication, database `test`), else a private one
# started here and stopped on exit. The tests never skip for want of one.
if [ -z "${LOOKOUT_TEST_POSTGRES_URL:-}" ]; then
  if psql "postgres://postgres@127.0.0.1:5432/test" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    export LOOKOUT_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
  else
    mkdir -p "$ROOT/.stack"
    PG_DIR="$(mktemp -d "$ROOT/.stack/postgres.XXXXXX")"
    trap 'bash "$ROOT/tests/postgres.sh" stop "$PG_DIR"; rm -rf "$PG_DIR"' EXIT
    say "no PostgreSQL on 127.0.0.1:5432: starting one in $PG_DIR"
    LOOKOUT_TEST_POSTGRES_URL="$(bash tests/postgres.sh start "$PG_DIR" "${LOOKOUT_TEST_POSTGRES_PORT:-54329}")" ||
      die "cannot start a PostgreSQL for the tests (see above)"
    export LOOKOUT_TEST_POSTGRES_URL
  fi
fi
say "PostgreSQL for the tests: $LOOKOUT_TEST_POSTGRES_URL"

# -------------------------------------------------------------- steps --

failed=()
step() {
  local name="$1"
  shift
  say "== $name"
  if "$@"; then
    say "ok: $name"
  else
    say "FAILED: $name"
    failed+=("$name")
  fi
}

export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step "cargo fmt --check" cargo fmt --check
step "cargo test" cargo test --locked --all-targets --no-fail-fast "$@"
# The binary the tests just built checks the shipped lookout configurations.
# Run with bash: the checks do not depend on the script's exec bit.
step "deploy/validate.sh" env LOOKOUT_BIN="$ROOT/target/debug/lookout" bash deploy/validate.sh
step "cargo clippy --all-targets -- -D warnings" cargo clippy --locked --all-targets -- -D warnings

if ((${#failed[@]})); then
  list="$(printf '%s; ' "${failed[@]}")"
  say "failed: ${list%; }"
  exit 1
fi
say "all passed"
