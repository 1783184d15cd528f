#!/usr/bin/env bash
# What the audit log costs the gateway: pgbench -S through three gateways in
# front of one PostgreSQL, interleaved per cell, with the direct connection
# as the same-run baseline:
#
#   noaudit  the same source built with the `bench-no-audit` feature of
#            airlock-proxy: no statement or completion record is built or
#            written, and the gate and relay look at only what the proxy
#            itself needs (the gateway-core baseline). Benchmark builds only.
#   batched  the default: records written before forwarding, fsync within 10 ms
#   always   every record fsynced before its statement is forwarded
#
# Prints tps and ratios to direct, the audit cost as 1 - ratio / noaudit
# ratio (per repetition, then the median), and the gateways' CPU per
# transaction, the steadier figure on a shared machine.
#
# Usage: bench/audit.sh            (from anywhere; builds both binaries)
# Environment (all optional):
#   DURATION=10          seconds per pgbench run
#   MODES="simple extended prepared"
#   CLIENTS="1 10"
#   REPEAT=3             runs per cell and variant; medians are reported
#   WARMUP=3             seconds of unreported warm-up per variant (0 to skip)
#   SCALE=10             pgbench -i scale
#   SKIP_BUILD=1         use target/release/airlock and target/release/airlock-noaudit
#   RESULTS=FILE         also append the tables to FILE
#   RULES=on             guardrails and masking on the resource (lib.sh)
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-10}"
MODES="${MODES:-simple extended prepared}"
CLIENTS="${CLIENTS:-1 10}"
REPEAT="${REPEAT:-3}"
WARMUP="${WARMUP:-3}"
NOAUDIT="$BENCH_ROOT/target/release/airlock-noaudit"

declare -A V_PORT V_USER V_PASS V_DB V_PID

build_both() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        log "building airlock (release) with the bench-no-audit feature"
        (cd "$BENCH_ROOT" && cargo build --release -p airlock --features airlock-proxy/bench-no-audit --quiet)
        cp "$AIRLOCK" "$NOAUDIT"
        log "building airlock (release)"
        (cd "$BENCH_ROOT" && cargo build --release -p airlock --quiet)
    fi
    [ -x "$AIRLOCK" ] || die "$AIRLOCK is missing"
    [ -x "$NOAUDIT" ] || die "$NOAUDIT is missing; run without SKIP_BUILD=1 once"
}

# start_variant NAME BINARY FSYNC
start_variant() {
    local name="$1"
    GW_BIN="$2" GW_EXTRA="$(printf '[audit]\nfsync = "%s"\n' "$3")" start_gateway "$name"
    gateway_credential
    V_PORT[$name]="$GW_PG_PORT" V_USER[$name]="$GW_USER" V_PASS[$name]="$GW_PASSWORD"
    V_DB[$name]="$GW_DATABASE" V_PID[$name]="$GW_PID"
}

# run_variant VARIANT MODE CLIENTS SECONDS LOG
run_variant() {
    local v="$1"
    shift
    case "$v" in
    direct) run_pgbench 127.0.0.1 "$PG_PORT" bench_rw "$BENCH_RW_PASSWORD" bench disable "$@" ;;
    *) PROXY_PID="${V_PID[$v]}" \
        run_pgbench 127.0.0.1 "${V_PORT[$v]}" "${V_USER[$v]}" "${V_PASS[$v]}" "${V_DB[$v]}" disable "$@" ;;
    esac
}

main() {
    bench_setup
    raise_nofile
    build_both
    start_pg 200
    # The no-audit build still opens its log (session records are written);
    # its fsync mode does not matter.
    start_variant noaudit "$NOAUDIT" batched
    start_variant batched "$AIRLOCK" batched
    start_variant always "$AIRLOCK" always
    variants=(direct noaudit batched always)
    check_and_warm_up "${variants[@]}"
    cells=$(($(wc -w <<<"$MODES") * $(wc -w <<<"$CLIENTS")))
    log "$cells cells x ${#variants[@]} variants x $REPEAT x ${DURATION}s: about $((cells * ${#variants[@]} * REPEAT * (DURATION + 1) / 60 + 1)) min"

    rows=()
    cpu_rows=()
    for mode in $MODES; do
        for c in $CLIENTS; do
            declare -A runs_of=()
            for r in $(seq 1 "$REPEAT"); do
                for v in "${variants[@]}"; do
                    runs_of[$v]+=" $(run_variant "$v" "$mode" "$c" "$DURATION" "$BENCH_TMP/$mode-$c-$r-$v.log")"
                done
            done
            read -r -a direct_runs <<<"${runs_of[direct]}"
            read -r -a noaudit_runs <<<"${runs_of[noaudit]}"
            # shellcheck disable=SC2086
            row="$(printf '| %-8s | %7s | %10s |' "$mode" "$c" "$(fmt_tps "$(median ${runs_of[direct]})")")"
            cpu_row="$(printf '| %-8s | %7s |' "$mode" "$c")"
            declare -A cpu_of=()
            for v in noaudit batched always; do
                read -r -a v_runs <<<"${runs_of[$v]}"
                ratios=() costs=() cpus=()
                for r in "${!v_runs[@]}"; do
                    ratios+=("$(ratio "${v_runs[$r]}" "${direct_runs[$r]}")")
                    costs+=("$(awk -v a="${v_runs[$r]}" -v b="${noaudit_runs[$r]}" \
                        'BEGIN { if (a == "ERR" || b == "ERR" || b == 0) print "ERR"; else print 100 * (1 - a / b) }')")
                    cpus+=("$(cpu_per_tx "$BENCH_TMP/$mode-$c-$((r + 1))-$v.log")")
                done
                # shellcheck disable=SC2086
                row+="$(printf ' %7s | %5s |' "$(fmt_tps "$(median ${runs_of[$v]})")" "$(fmt_ratio "$(median "${ratios[@]}")")")"
                if [ "$v" != noaudit ]; then
                    row+="$(printf ' %5s |' "$(fmt_cpu "$(median "${costs[@]}")")")"
                fi
                cpu_of[$v]="$(median "${cpus[@]}")"
            done
            for v in noaudit batched always; do
                if [ "$v" = noaudit ]; then
                    cpu_row+="$(printf ' %7s |' "$(fmt_cpu "${cpu_of[$v]}")")"
                else
                    cpu_row+="$(printf ' %7s | %6s |' "$(fmt_cpu "${cpu_of[$v]}")" \
                        "$(awk -v a="${cpu_of[$v]}" -v b="${cpu_of[noaudit]}" \
                            'BEGIN { if (a == "ERR" || b == "ERR" || b == 0) print "-"; else printf "%+.0f%%\n", 100 * (a / b - 1) }')")"
                fi
            done
            rows+=("$row")
            cpu_rows+=("$cpu_row")
            log "$row"
            log "  runs: direct${runs_of[direct]}; noaudit${runs_of[noaudit]}; batched${runs_of[batched]}; always${runs_of[always]}"
            unset runs_of cpu_of
        done
    done

    {
        echo
        echo "pgbench -S -T ${DURATION}, plain (sslmode=disable), scale ${SCALE:-10}, RULES=${RULES:-on}; medians of $REPEAT interleaved runs"
        echo "PostgreSQL $(pg_version); $(nproc) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "ratio: tps / direct tps of the same repetition; cost %: 1 - tps / noaudit tps of the same repetition"
        echo "audit records written: batched $(du -sh "$BENCH_TMP/batched/data/audit" | cut -f1), always $(du -sh "$BENCH_TMP/always/data/audit" | cut -f1)"
        echo
        echo "| mode     | clients | direct tps | noaudit | ratio | batched | ratio | cost % | always | ratio | cost % |"
        echo "|----------|--------:|-----------:|--------:|------:|--------:|------:|-------:|-------:|------:|-------:|"
        printf '%s\n' "${rows[@]}"
        echo
        echo "Gateway CPU per transaction, microseconds (user+system, all threads), and the change from noaudit:"
        echo
        echo "| mode     | clients | noaudit | batched |      Δ | always |      Δ |"
        echo "|----------|--------:|--------:|--------:|-------:|-------:|-------:|"
        printf '%s\n' "${cpu_rows[@]}"
    } | tee -a "${RESULTS:-/dev/null}"
}

main "$@"
