#!/usr/bin/env bash
# Set-up command 2: install what is missing, then run the whole test suite
# (unit tests, and integration tests against a real PostgreSQL with psql,
# pgbench, tokio-postgres and psycopg as clients), plus format and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
