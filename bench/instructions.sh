#!/usr/bin/env bash
# User-space instructions and system calls the gateway spends per pgbench -S
# transaction, counted rather than timed: deterministic where CPU time on a
# shared 2-CPU machine moves by several microseconds between runs. Each
# binary serves under valgrind's callgrind (instructions, all threads) and
# then under strace -c (system calls), one read session, 1 client.
#
# Usage: BINS="/path/before /path/after" bench/instructions.sh
# Environment (optional): MODES="simple extended prepared", TX=2000 (the
# long measured run; a run of TX/10 warms up, one of TX/5 is subtracted),
# KEEP=PREFIX keeps each strace summary and the long run's callgrind profile
# as PREFIX-st-<binary #>-<mode>.txt and PREFIX-callgrind-<binary #>-<mode>.out.
# Needs valgrind, strace, PostgreSQL's server binaries and pgbench.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODES="${MODES:-simple extended prepared}"
TX="${TX:-2000}"

# pgbench_tx MODE N: N transactions through the gateway started last.
pgbench_tx() {
    env -u PGSSLROOTCERT PGHOST=127.0.0.1 PGPORT="$GW_PG_PORT" PGUSER="$GW_USER" \
        PGPASSWORD="$GW_PASSWORD" PGDATABASE="$GW_DATABASE" PGSSLMODE=disable \
        pgbench -S -M "$1" -c 1 -t "$2" -n >"$BENCH_TMP/pgbench.log" 2>&1 ||
        die "pgbench failed: $(tail -n 3 "$BENCH_TMP/pgbench.log")"
}

# serve_with WRAPPER BIN NAME: starts BIN's gateway with `serve` run under
# WRAPPER (a command prefix; other subcommands run plain).
serve_with() {
    local wrapper="$1" bin="$2" name="$3" shim="$BENCH_TMP/$3.sh"
    cat >"$shim" <<SHIM
#!/usr/bin/env bash
if [ "\$1" = serve ]; then exec $wrapper "$bin" "\$@"; fi
exec "$bin" "\$@"
SHIM
    chmod +x "$shim"
    GW_BIN="$shim" start_gateway "$name"
    gateway_credential
}

main() {
    bench_setup
    [ -n "${BINS:-}" ] || die "set BINS to the airlock binaries to compare"
    command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || die "valgrind is needed"
    command -v strace >/dev/null || die "strace is needed"
    start_pg 20
    local results=() bin mode i=0 out ir
    for bin in $BINS; do
        i=$((i + 1))
        for mode in $MODES; do
            out="$BENCH_TMP/cg-$i-$mode.out"
            serve_with "valgrind --tool=callgrind --callgrind-out-file=$out" "$bin" "cg$i$mode"
            pgbench_tx "$mode" $((TX / 10))
            # Two runs, short and long: their difference leaves out what a
            # run costs once (the login's SCRAM above all).
            callgrind_control -z "$GW_PID" >/dev/null
            pgbench_tx "$mode" $((TX / 5))
            callgrind_control -d "$GW_PID" >/dev/null
            callgrind_control -z "$GW_PID" >/dev/null
            pgbench_tx "$mode" "$TX"
            callgrind_control -d "$GW_PID" >/dev/null
            sleep 1
            ir="$(awk '/^summary:/ { print $2 }' "$out.1" "$out.2" 2>/dev/null | paste -sd' ' | awk -v n=$((TX - TX / 5)) '{ print ($2 - $1) / n }')"
            stop_gateway
            serve_with "strace -f -qq -c -o $BENCH_TMP/st-$i-$mode.txt" "$bin" "st$i$mode"
            pgbench_tx "$mode" "$TX"
            # strace ignores TERM while it runs a command: stop the gateway itself.
            kill -TERM "$(pgrep -P "$GW_PID")" 2>/dev/null || true
            wait "$GW_PID" 2>/dev/null || true
            GW_PID=""
            if [ -n "${KEEP:-}" ]; then
                cp "$BENCH_TMP/st-$i-$mode.txt" "$KEEP-st-$i-$mode.txt"
                cp "$out.2" "$KEEP-callgrind-$i-$mode.out"
            fi
            # Calls per transaction, by name, the most frequent first.
            sys="$(awk -v tx="$TX" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $4 >= tx / 4 { printf "%s %.2f, ", $NF, $4 / tx }' "$BENCH_TMP/st-$i-$mode.txt")"
            results+=("$(printf '| %s | %s | %.0f | %s |' "$bin" "$mode" "$ir" "${sys%, }")")
            log "${results[-1]}"
        done
    done
    echo
    echo "pgbench -S -c 1 -t $TX per run, plain TCP, one read session per binary and mode"
    echo
    echo "| binary | mode | user-space instructions per tx | system calls per tx (those at least every 4th tx) |"
    echo "| --- | --- | --: | --- |"
    printf '%s\n' "${results[@]}"
}

main "$@"
