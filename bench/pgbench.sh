#!/usr/bin/env bash
# pgbench -S (read-only point selects) directly against PostgreSQL and
# through Airlock, with and without TLS on the client side (and through
# PgBouncer in session mode as a reference, when installed), interleaved per
# cell so that background load on a shared machine hits every variant alike.
# Prints two markdown tables: tps with ratios to direct, and each proxy's CPU
# time per transaction (which background load disturbs much less than tps).
#
# Usage: bench/pgbench.sh            (from anywhere; builds target/release/airlock)
# Environment (all optional):
#   DURATION=15          seconds per pgbench run
#   MODES="simple extended prepared"
#   CLIENTS="1 10 50"
#   REPEAT=1             runs per cell and variant; the median tps is reported
#   WARMUP=5             seconds of unreported warm-up (0 to skip)
#   SCALE=10             pgbench -i scale
#   SKIP_BUILD=1         use the existing target/release/airlock
#   RESULTS=FILE         also append the table to FILE
#   RULES=on             guardrails and masking on the gateway's resource
#                        (see gateway_rules in lib.sh); off for classification only
#   PGBOUNCER=auto       also measure PgBouncer (session mode, TLS and plain)
#                        as a reference proxy when it is installed; 0 to skip
#   BASELINE_BIN=PATH    also measure another airlock binary (e.g. the build
#                        before a change) as variant `before-plain`, same
#                        config, plain TCP: the "before and after" of a change
#                        in one interleaved run
#
# Needs PostgreSQL's server binaries and pgbench; as root, the `postgres`
# user (initdb refuses root). Everything is removed on exit.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-15}"
MODES="${MODES:-simple extended prepared}"
CLIENTS="${CLIENTS:-1 10 50}"
REPEAT="${REPEAT:-1}"
WARMUP="${WARMUP:-5}"


# The whole machine's CPU time from /proc/stat, in clock ticks:
# "busy total steal" (busy = user + nice + system).
machine_ticks() {
    local f
    read -r -a f </proc/stat
    # cpu user nice system idle iowait irq softirq steal ...
    echo "$((f[1] + f[2] + f[3])) $((f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7] + f[8])) $((f[8]))"
}

# Clock ticks used so far by the benchmark's own processes: pgbench (a
# finished child of this shell), PostgreSQL (the postmaster and its finished
# backends), the gateway and PgBouncer. The rest of the machine's busy time is
# other work, which on a shared 2-CPU machine moves the numbers.
own_ticks() {
    local f total=0 pm pid
    f=($(cut -d')' -f2- "/proc/$$/stat"))
    total=$((f[13] + f[14]))
    pm="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$pm" ] && [ -r "/proc/$pm/stat" ]; then
        f=($(cut -d')' -f2- "/proc/$pm/stat"))
        total=$((total + f[11] + f[12] + f[13] + f[14]))
        # Live backends too: PgBouncer keeps its server connections open
        # across runs, and a backend that ends later moves its time into
        # the postmaster's children's time above.
        for pid in $(ps --ppid "$pm" -o pid= 2>/dev/null); do
            f=($(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null)) || continue
            if [ "${#f[@]}" -gt 12 ]; then total=$((total + f[11] + f[12])); fi
        done
    fi
    for pid in "$GW_PID" "${BASE_PID:-}" "$(cat "$BENCH_TMP/pgbouncer/pgbouncer.pid" 2>/dev/null || true)"; do
        if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
            f=($(cut -d')' -f2- "/proc/$pid/stat"))
            total=$((total + f[11] + f[12]))
        fi
    done
    echo "$total"
}


# run_variant VARIANT MODE CLIENTS SECONDS LOG
run_variant() {
    local v="$1"
    shift
    case "$v" in
    direct) run_pgbench 127.0.0.1 "$PG_PORT" bench_rw "$BENCH_RW_PASSWORD" bench disable "$@" ;;
    airlock-tls) PROXY_PID="$GW_PID" \
        run_pgbench 127.0.0.1 "$GW_PG_PORT" "$GW_USER" "$GW_PASSWORD" "$GW_DATABASE" require "$@" ;;
    airlock-plain) PROXY_PID="$GW_PID" \
        run_pgbench 127.0.0.1 "$GW_PG_PORT" "$GW_USER" "$GW_PASSWORD" "$GW_DATABASE" disable "$@" ;;
    before-plain) PROXY_PID="$BASE_PID" \
        run_pgbench 127.0.0.1 "$BASE_PORT" "$BASE_USER" "$BASE_PASSWORD" "$BASE_DATABASE" disable "$@" ;;
    pgbouncer-tls) PROXY_PID="$(cat "$BENCH_TMP/pgbouncer/pgbouncer.pid")" \
        run_pgbench 127.0.0.1 "$PGB_PORT" bench_rw "$BENCH_RW_PASSWORD" bench require "$@" ;;
    pgbouncer-plain) PROXY_PID="$(cat "$BENCH_TMP/pgbouncer/pgbouncer.pid")" \
        run_pgbench 127.0.0.1 "$PGB_PORT" bench_rw "$BENCH_RW_PASSWORD" bench disable "$@" ;;
    *) die "unknown variant $v" ;;
    esac
}


# Everything runs from one function so that bash has parsed the whole
# script before it starts: editing this file during a run cannot derail it.
main() {
    bench_setup
    raise_nofile
    build_airlock
    start_pg 200
    if [ -n "${BASELINE_BIN:-}" ]; then
        [ -x "$BASELINE_BIN" ] || die "BASELINE_BIN=$BASELINE_BIN is not an executable"
        GW_BIN="$BASELINE_BIN" start_gateway before
        gateway_credential
        BASE_PID="$GW_PID" BASE_PORT="$GW_PG_PORT" BASE_USER="$GW_USER"
        BASE_PASSWORD="$GW_PASSWORD" BASE_DATABASE="$GW_DATABASE"
    fi
    start_gateway gw
    gateway_credential
    variants=(direct airlock-tls airlock-plain)
    [ -n "${BASELINE_BIN:-}" ] && variants+=(before-plain)
    if [ "${PGBOUNCER:-auto}" != 0 ]; then
        if start_pgbouncer; then
            variants+=(pgbouncer-tls pgbouncer-plain)
        elif [ "${PGBOUNCER:-auto}" = 1 ]; then
            die "PGBOUNCER=1 but pgbouncer is not installed"
        fi
    fi

    check_and_warm_up "${variants[@]}"

    cells=$(($(wc -w <<<"$MODES") * $(wc -w <<<"$CLIENTS")))
    runs=$((cells * ${#variants[@]} * REPEAT))
    log "$cells cells x ${#variants[@]} variants (${variants[*]}) x $REPEAT x ${DURATION}s: about $((runs * (DURATION + 1) / 60 + 1)) min"

    header="| mode     | clients | direct tps |"
    rule="|----------|--------:|-----------:|"
    for v in "${variants[@]:1}"; do
        h="$(printf '%s tps' "${v/-/ }")"
        header+="$(printf ' %*s | ratio |' "${#h}" "$h")"
        rule+="$(printf -- '-%*s:|------:|' "${#h}" '' | tr ' ' -)"
    done
    header+=" other cpu | steal |"
    rule+="----------:|------:|"
    cpu_header="| mode     | clients |"
    cpu_rule="|----------|--------:|"
    for v in "${variants[@]:1}"; do
        cpu_header+="$(printf ' %17s |' "$v")"
        cpu_rule+="------------------:|"
    done

    rows=()
    cpu_rows=()
    for mode in $MODES; do
        for c in $CLIENTS; do
            declare -A runs_of=()
            read -r busy0 total0 steal0 <<<"$(machine_ticks)"
            own0="$(own_ticks)"
            for r in $(seq 1 "$REPEAT"); do
                # Interleaved: every variant once, then the next repetition.
                for v in "${variants[@]}"; do
                    runs_of[$v]+=" $(run_variant "$v" "$mode" "$c" "$DURATION" "$BENCH_TMP/$mode-$c-$r-$v.log")"
                done
            done
            # shellcheck disable=SC2086 # the runs are a space-separated list
            base="$(median ${runs_of[direct]})"
            read -r -a direct_runs <<<"${runs_of[direct]}"
            row="$(printf '| %-8s | %7s | %10s |' "$mode" "$c" "$(fmt_tps "$base")")"
            cpu_row="$(printf '| %-8s | %7s |' "$mode" "$c")"
            detail="direct${runs_of[direct]}"
            for v in "${variants[@]:1}"; do
                # shellcheck disable=SC2086
                m="$(median ${runs_of[$v]})"
                # The ratio of each repetition to the direct run next to it in
                # time, then their median: closer than a ratio of medians when
                # the background load changes between repetitions.
                read -r -a v_runs <<<"${runs_of[$v]}"
                ratios=()
                for r in "${!v_runs[@]}"; do ratios+=("$(ratio "${v_runs[$r]}" "${direct_runs[$r]}")"); done
                h="$(printf '%s tps' "${v/-/ }")"
                row+="$(printf ' %*s | %5s |' "${#h}" "$(fmt_tps "$m")" "$(fmt_ratio "$(median "${ratios[@]}")")")"
                detail+="; $v${runs_of[$v]}"
                totals=()
                for r in $(seq 1 "$REPEAT"); do
                    totals+=("$(cpu_per_tx "$BENCH_TMP/$mode-$c-$r-$v.log")")
                done
                cpu_row+="$(printf ' %17s |' "$(fmt_cpu "$(median "${totals[@]}")")")"
            done
            cpu_rows+=("$cpu_row")
            read -r busy1 total1 steal1 <<<"$(machine_ticks)"
            own1="$(own_ticks)"
            other="$(awk -v b=$((busy1 - busy0)) -v o=$((own1 - own0)) -v t=$((total1 - total0)) \
                'BEGIN { x = t > 0 ? 100 * (b - o) / t : 0; printf "%.0f\n", (x < 0 ? 0 : x) }')"
            steal="$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN { printf "%.0f\n", (t > 0 ? 100 * s / t : 0) }')"
            row+="$(printf ' %9s | %5s |' "$other" "$steal")"
            rows+=("$row")
            log "$row"
            log "  runs: $detail"
            for v in "${variants[@]}"; do
                for r in $(seq 1 "$REPEAT"); do
                    f="$BENCH_TMP/$mode-$c-$r-$v.log"
                    if ! grep -q '^tps = ' "$f"; then
                        log "$mode/$c/$v run $r failed:"
                        tail -n 5 "$f" >&2
                    fi
                done
            done
            unset runs_of
        done
    done

    gw_rss="$(rss_kib "$GW_PID" 2>/dev/null || echo '?')"
    gw_data="$(du -sh "$GW_DIR/data" 2>/dev/null | cut -f1)"
    {
        echo
        echo "pgbench -S -T ${DURATION}, -j min(clients,2), scale ${SCALE:-10}; tps: median of $REPEAT run(s)"
        echo "PostgreSQL $(pg_version); $(nproc) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "ratio: median over repetitions of tps / the direct tps of the same repetition"
        echo "other cpu: % of the machine's CPU time used by processes outside the benchmark during the cell;"
        echo "steal: % of it the hypervisor gave to other guests (both make the cell's numbers less reliable)"
        echo "gateway RSS after the runs: ${gw_rss} KiB; its data dir: ${gw_data}"
        echo
        echo "$header"
        echo "$rule"
        printf '%s\n' "${rows[@]}"
        echo
        echo "Proxy CPU per transaction, microseconds (user+system, all threads):"
        echo
        echo "$cpu_header"
        echo "$cpu_rule"
        printf '%s\n' "${cpu_rows[@]}"
    } | tee -a "${RESULTS:-/dev/null}"
}

main "$@"
