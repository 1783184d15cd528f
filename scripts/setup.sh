#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test Airlock:
# PostgreSQL's server and client (the tests and quickstart start a real
# cluster), a C toolchain for bundled SQLite, and Python's psycopg for the
# client tests. Safe to run again; installs only what is missing.
set -euo pipefail
# `--tests` (from scripts/test.sh) adds what only the tests need: Chromium,
# Node.js and Playwright for the web console's end-to-end test.
for_tests=0
[ "${1:-}" = "--tests" ] && for_tests=1

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
pg_server() { have initdb || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }

pg_server || need_apt+=(postgresql)
have psql || need_apt+=(postgresql-client)
have pgbench || need_apt+=(postgresql-contrib)
have cc || need_apt+=(build-essential)
have pkg-config || need_apt+=(pkg-config)
# pg_query (PostgreSQL's own parser) generates its bindings with bindgen.
have_libclang() { compgen -G "/usr/lib/llvm-*/lib/libclang.so" >/dev/null || [ -e /usr/lib/x86_64-linux-gnu/libclang.so ]; }
have_libclang || need_apt+=(libclang-dev)
# The web console's end-to-end test drives Debian's Chromium with Playwright
# (playwright-core from npm; it never downloads a browser of its own).
if [ "$for_tests" = 1 ]; then
  have chromium || need_apt+=(chromium)
  have node || need_apt+=(nodejs)
  have npm || need_apt+=(npm)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian's package starts a cluster of its own; Airlock's tests and
  # quickstart run their own throwaway clusters instead.
  if have pg_lsclusters; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
      $SUDO pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
    done
  fi
fi

if ! python3 -c 'import psycopg' >/dev/null 2>&1; then
  echo "setup: installing psycopg (Python client used by the tests)" >&2
  python3 -m pip install -q --disable-pip-version-check 'psycopg[binary]>=3.1' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages 'psycopg[binary]>=3.1'
fi

# The telemetry tests export through the real OpenTelemetry Python SDK.
if ! python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc' >/dev/null 2>&1; then
  echo "setup: installing the OpenTelemetry Python SDK and OTLP exporters (used by the tests)" >&2
  pkgs=(opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-grpc)
  python3 -m pip install -q --disable-pip-version-check "${pkgs[@]}" 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${pkgs[@]}"
fi

if [ "$for_tests" = 1 ]; then
  console_e2e="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/crates/airlock/tests/console"
  node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$node_major" -lt 20 ]; then
    echo "setup: the console test needs Node.js 20 or newer (Playwright); found $(node --version 2>/dev/null || echo none). Install it from nodejs.org or NodeSource." >&2
    exit 1
  fi
  if [ ! -d "$console_e2e/node_modules/playwright-core" ]; then
    echo "setup: installing playwright-core for the console test (npm ci)" >&2
    (cd "$console_e2e" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

have cargo || { echo "setup: cargo is missing; install Rust from your package manager or rustup" >&2; exit 1; }
