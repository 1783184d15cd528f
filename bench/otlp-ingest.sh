#!/usr/bin/env bash
# Sustained OTLP ingest into the embedded telemetry store: the load generator
# (crates/airlock/examples/otlp_load.rs) sends OTLP/HTTP protobuf export
# requests of BATCH spans, then of BATCH log records, over HTTPS to a gateway
# with the default configuration, and waits for every answer (an answer means
# committed to the store). Beside each rate it prints the same machine's raw
# protobuf decode rate of the very same bodies, measured in the same run on
# one core, and the ratio of the two, plus the gateway's CPU per 1,000
# records and the store's size.
#
# ROUNDS rounds of SPANS spans each go into the same store, so later rounds
# show the rate with millions of rows already stored (the indexes grow).
#
# Usage: bench/otlp-ingest.sh
# Environment (all optional):
#   SPANS=1000000       spans per round
#   LOGS=1000000        log records (one round, after the spans)
#   ROUNDS=3            span rounds
#   BATCH=512           records per export request
#   CONCURRENCY=8       requests in flight
#   SKIP_BUILD=1        use the binaries built before
#   RESULTS=FILE        also append the table to FILE
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SPANS="${SPANS:-1000000}"
LOGS="${LOGS:-1000000}"
ROUNDS="${ROUNDS:-3}"
BATCH="${BATCH:-512}"
CONCURRENCY="${CONCURRENCY:-8}"
SCALE="${SCALE:-1}"
LOAD="$BENCH_ROOT/target/release/examples/otlp_load"

bench_setup
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building airlock and the load generator (release)"
    (cd "$BENCH_ROOT" && cargo build --release -p airlock --bin airlock --example otlp_load --quiet)
fi
SKIP_BUILD=1 build_airlock
[ -x "$LOAD" ] || die "$LOAD is missing; run without SKIP_BUILD=1 once"
# The gateway needs a resource to start; the benchmark never connects to it.
start_pg 20
start_gateway otlp
DB="$GW_DIR/data/telemetry/telemetry.db"

# run_load SIGNAL RECORDS: prints the generator's key=value line, with the
# gateway's CPU microseconds per record appended.
run_load() {
    local signal="$1" records="$2" t0 line
    t0="$(cpu_ticks "$GW_PID")"
    line="$("$LOAD" --endpoint "https://127.0.0.1:$GW_HTTP_PORT" --ca-file "$GW_DIR/data/tls/ca.crt" \
        --signal "$signal" --records "$records" --batch "$BATCH" --concurrency "$CONCURRENCY" --quiet)" ||
        die "the load generator failed"
    local ticks=$(($(cpu_ticks "$GW_PID") - t0))
    echo "$line cpu_us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$records" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
}

field() { printf '%s\n' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
db_mb() { du -cm "$DB"* 2>/dev/null | awk 'END { print $1 }'; }

rows=()
stored=0
for r in $(seq 1 "$ROUNDS"); do
    log "round $r: $SPANS spans (store holds $stored)"
    line="$(run_load traces "$SPANS")"
    stored=$((stored + SPANS))
    rows+=("spans|$r|$stored|$line")
done
log "$LOGS log records"
line="$(run_load logs "$LOGS")"
rows+=("logs|1|$LOGS|$line")

table() {
    echo
    echo "## OTLP/HTTP protobuf ingest ($(nproc) vCPU, batches of $BATCH, $CONCURRENCY in flight, HTTPS)"
    echo
    echo "| signal | round | stored after | records/s | raw decode/s (1 core) | ratio | gateway CPU µs/record | request p50 / p99 ms | 503 retried |"
    echo "|---|---|---|---|---|---|---|---|---|"
    local row kind round after line
    for row in "${rows[@]}"; do
        IFS='|' read -r kind round after line <<<"$row"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n' "$kind" "$round" "$after" \
            "$(field "$line" rate)" "$(field "$line" decode_rate)" \
            "$(awk -v a="$(field "$line" ratio)" 'BEGIN { printf "%.3f", a }')" \
            "$(field "$line" cpu_us)" "$(field "$line" p50_ms)" "$(field "$line" p99_ms)" "$(field "$line" busy)"
    done
    echo
    echo "Store size after the run: $(db_mb) MB (telemetry.db with its WAL)."
}

table
if [ -n "${RESULTS:-}" ]; then table >>"$RESULTS"; fi
