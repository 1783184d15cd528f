#!/usr/bin/env bash
# Set-up command 2: install what is missing, then run the whole test suite
# (unit tests, and integration tests against a real PostgreSQL with psql,
# pgbench, tokio-postgres and psycopg as clients), plus format and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: cargo prints a result line per test
# binary, and the last one is often an empty doc-test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
