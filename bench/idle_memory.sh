#!/usr/bin/env bash
# Memory the gateway holds per idle session: opens CONNECTIONS (500) logged-in
# connections through Airlock, keeps them idle, and compares the gateway's
# RSS (VmRSS) before and after. Once with TLS (sslmode=require), once
# without (sslmode=disable), each against a fresh gateway process so that
# memory freed by the first run cannot hide growth in the second. Then the
# sessions are closed and opened once more: RSS should not grow again (the
# allocator keeps freed memory, so it does not shrink much either).
#
# The idle clients are pgbench clients running a script that only sleeps:
# pgbench logs every client in (SCRAM through the gateway, which opens the
# upstream session) before running the script, and then sends nothing.
#
# Usage: bench/idle_memory.sh
# Environment (all optional): CONNECTIONS=500, SKIP_BUILD=1, RESULTS=FILE
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${CONNECTIONS:-500}"
SCALE="${SCALE:-1}"
IDLE_PID=""

idle_cleanup() {
    local rc=$?
    if [ -n "$IDLE_PID" ]; then
        kill -TERM "$IDLE_PID" 2>/dev/null || true
        wait "$IDLE_PID" 2>/dev/null || true
    fi
    bench_cleanup "$rc"
}

bench_setup
trap idle_cleanup EXIT
raise_nofile
[ "$(ulimit -n)" -gt $((N * 2 + 100)) ] || die "ulimit -n is $(ulimit -n); $N sessions need about $((N * 2 + 100)) descriptors"
build_airlock
start_pg $((N + 50))
printf '\\sleep 600 s\n' >"$BENCH_TMP/idle.sql"

upstream_sessions() {
    psql_admin postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename IN ('bench_ro', 'bench_rw')"
}

# RSS once it has stopped moving (the sessions' start records are written
# by another thread a moment after login).
settled_rss() {
    local prev=0 cur i
    for i in $(seq 1 20); do
        sleep 0.5
        cur="$(rss_kib "$GW_PID")"
        if [ "$cur" = "$prev" ]; then break; fi
        prev="$cur"
    done
    echo "$cur"
}

# open_idle SSLMODE LOG: starts N idle pgbench clients in the background
# (IDLE_PID) and returns once all N sessions have reached PostgreSQL.
open_idle() {
    local i n=0
    env -u PGSSLROOTCERT PGHOST=127.0.0.1 PGPORT="$GW_PG_PORT" PGUSER="$GW_USER" \
        PGPASSWORD="$GW_PASSWORD" PGDATABASE="$GW_DATABASE" PGSSLMODE="$1" \
        pgbench -n -c "$N" -j 2 -t 1 -f "$BENCH_TMP/idle.sql" >"$2" 2>&1 &
    IDLE_PID=$!
    for i in $(seq 1 600); do
        n="$(upstream_sessions)"
        [ "$n" -ge "$N" ] && return
        kill -0 "$IDLE_PID" 2>/dev/null || die "pgbench ended early: $(tail -n 5 "$2")"
        sleep 0.2
    done
    die "only $n of $N sessions reached PostgreSQL"
}

close_idle() {
    local i
    kill -TERM "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=""
    for i in $(seq 1 100); do
        [ "$(upstream_sessions)" -eq 0 ] && return
        sleep 0.2
    done
}

main() {
    local variant sslmode before after closed again per row results=()
    for variant in tls plain; do
        case "$variant" in
        tls) sslmode=require ;;
        plain) sslmode=disable ;;
        esac
        start_gateway "idle-$variant"
        gateway_credential
        # One session first, so one-time allocations (TLS config, runtime,
        # statement caches) are in the baseline rather than charged to the 500.
        env -u PGSSLROOTCERT PGHOST=127.0.0.1 PGPORT="$GW_PG_PORT" PGUSER="$GW_USER" \
            PGPASSWORD="$GW_PASSWORD" PGDATABASE="$GW_DATABASE" PGSSLMODE="$sslmode" \
            psql -X -Atc 'SELECT 1' >/dev/null || die "a first session through the gateway failed"
        before="$(settled_rss)"
        log "$variant: gateway RSS ${before} KiB; opening $N idle sessions"
        open_idle "$sslmode" "$BENCH_TMP/idle-$variant-1.log"
        after="$(settled_rss)"
        close_idle
        closed="$(settled_rss)"
        # A second round: memory the first one freed must be reused, not
        # added to, or sessions leak.
        open_idle "$sslmode" "$BENCH_TMP/idle-$variant-2.log"
        again="$(settled_rss)"
        close_idle
        per="$(awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }')"
        row="$(printf '| %-6s | %11s | %10s | %17s | %8s | %12s | %20s |' \
            "$variant" "$N" "$before" "$after" "$per" "$closed" "$again")"
        results+=("$row")
        log "$row"
        stop_gateway
    done

    {
        echo
        echo "Gateway VmRSS (KiB) with $N idle logged-in sessions; upstream tls=disable"
        echo
        echo "| client | connections | RSS before | RSS with sessions | KiB/conn | after closing | with sessions again |"
        echo "|--------|------------:|-----------:|------------------:|---------:|-------------:|--------------------:|"
        printf '%s\n' "${results[@]}"
    } | tee -a "${RESULTS:-/dev/null}"
}

main "$@"
