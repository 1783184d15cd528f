#!/usr/bin/env bash
# Set-up command 1: build Airlock and run the quickstart (a throwaway
# PostgreSQL with sample data and a gateway in front of it). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p airlock
exec target/release/airlock quickstart "$@"
