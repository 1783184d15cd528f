# shellcheck shell=bash
# Shared by bench/pgbench.sh, bench/audit.sh and bench/idle_memory.sh: a throwaway PostgreSQL
# cluster, an Airlock gateway in front of it, and cleanup of both.
#
# Sourced, not run. The caller sets `set -euo pipefail` and calls
# `bench_setup` first; everything lives under $BENCH_TMP and is removed by
# the EXIT trap, also on Ctrl-C or a failed step.

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AIRLOCK="$BENCH_ROOT/target/release/airlock"

BENCH_TMP=""
PG_BIN=""
PG_DATA=""
PG_PORT=""
PG_SOCK=""
GW_PID=""
# Every gateway started, for cleanup (bench/audit.sh runs several).
ALL_GW_PIDS=()
GW_PG_PORT=""
GW_HTTP_PORT=""
GW_DIR=""
BENCH_RW_PASSWORD=""
PGB_PID=""
PGB_PORT=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# initdb and postgres refuse to run as root: as root they run as `postgres`.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

find_pg_bin() {
    local d
    if command -v initdb >/dev/null 2>&1; then
        d="$(dirname "$(readlink -f "$(command -v initdb)")")"
        if [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            PG_BIN="$d"
            return
        fi
    fi
    # Debian/Ubuntu keep the server binaries off PATH; take the newest.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            PG_BIN="$d"
            return
        fi
    done
    die "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor under /usr/lib/postgresql/*/bin"
}

# A TCP port on 127.0.0.1 that nobody listens on. Random rather than
# sequential so two runs on one machine do not race for the same port.
free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

wait_port() {
    local port="$1" what="$2" i
    for i in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    die "$what did not start listening on port $port"
}

secret() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }

# Reads one field from JSON on stdin with jq or, failing that, python3.
json_get() {
    if command -v jq >/dev/null 2>&1; then
        jq -er "$1"
    else
        python3 -c 'import json,sys
v = json.load(sys.stdin)
for k in sys.argv[1].lstrip(".").split("."):
    v = v[k]
print(v)' "$1"
    fi
}

# bench_cleanup [EXIT_STATUS]: the status defaults to that of the command
# the EXIT trap interrupted.
bench_cleanup() {
    local rc=${1:-$?}
    trap - EXIT INT TERM
    stop_gateway
    local p
    for p in "${ALL_GW_PIDS[@]}"; do
        GW_PID="$p"
        stop_gateway
    done
    stop_pgbouncer
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
        if [ "$rc" != 0 ]; then
            log "failed (exit $rc); last lines of the logs:"
            for f in "$BENCH_TMP"/pg.log "$BENCH_TMP"/gateway*.log "$BENCH_TMP"/pgbouncer.log; do
                [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
            done
        fi
        rm -rf "$BENCH_TMP"
    fi
    exit "$rc"
}

bench_setup() {
    [ "${BASH_VERSINFO[0]}" -ge 4 ] || die "bash 4 or newer is needed"
    BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench.XXXXXX")"
    # The postgres user must reach its data directory inside.
    chmod 755 "$BENCH_TMP"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    find_pg_bin
    command -v pgbench >/dev/null 2>&1 || [ -x "$PG_BIN/pgbench" ] || die "pgbench not found"
    if ! command -v pgbench >/dev/null 2>&1; then PATH="$PG_BIN:$PATH"; fi
    command -v psql >/dev/null 2>&1 || PATH="$PATH:$PG_BIN"
}

build_airlock() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        log "building airlock (release)"
        (cd "$BENCH_ROOT" && cargo build --release -p airlock --quiet)
    fi
    [ -x "$AIRLOCK" ] || die "$AIRLOCK is missing; build it with: cargo build --release -p airlock"
}

# start_pg MAX_CONNECTIONS: initdb, start, load pgbench's tables at scale
# $SCALE (default 10) and create the role bench_rw that the gateway logs in as.
start_pg() {
    local max_conn="$1"
    PG_DATA="$BENCH_TMP/pgdata"
    PG_SOCK="$BENCH_TMP/sock"
    PG_PORT="$(free_port)"
    mkdir -p "$PG_DATA" "$PG_SOCK"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DATA" "$PG_SOCK"; fi
    log "initdb ($("$PG_BIN/initdb" --version))"
    # Local (socket) connections are trusted for setup; TCP needs SCRAM, as
    # the benchmark clients and the gateway use.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$BENCH_TMP/initdb.log" 2>&1 ||
        die "initdb failed: $(tail -n 5 "$BENCH_TMP/initdb.log")"
    cat >>"$PG_DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = $max_conn
shared_buffers = 128MB
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
    touch "$BENCH_TMP/pg.log"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$BENCH_TMP/pg.log"; fi
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$BENCH_TMP/pg.log" -w -t 60 start >/dev/null ||
        die "PostgreSQL did not start"
    BENCH_RW_PASSWORD="$(secret)"
    export BENCH_RW_PASSWORD
    local scale="${SCALE:-10}"
    log "PostgreSQL on 127.0.0.1:$PG_PORT; pgbench -i -s $scale"
    psql_admin postgres -c "CREATE DATABASE bench" >/dev/null
    as_pg pgbench -i -s "$scale" -q -h "$PG_SOCK" -p "$PG_PORT" -U postgres bench \
        >"$BENCH_TMP/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -n 5 "$BENCH_TMP/pgbench-init.log")"
    # bench_rw reads and writes (direct runs, PgBouncer, a read-write run
    # with -b tpcb-like); the gateway's read sessions use bench_ro, SELECT
    # only, since the gateway refuses a read credential that can write.
    # Both have the same password.
    psql_admin bench >/dev/null <<EOF
CREATE ROLE bench_rw LOGIN PASSWORD '$BENCH_RW_PASSWORD';
GRANT SELECT, INSERT, UPDATE, DELETE ON pgbench_accounts, pgbench_branches,
      pgbench_tellers, pgbench_history TO bench_rw;
CREATE ROLE bench_ro LOGIN PASSWORD '$BENCH_RW_PASSWORD';
GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO bench_ro;
VACUUM ANALYZE;
EOF
}

psql_admin() {
    local db="$1"
    shift
    as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d "$db" "$@"
}

pg_version() { psql_admin postgres -Atc "SHOW server_version"; }

# gateway_rules: the guardrails and masking of the benchmark's resource,
# unless RULES=off: every result row then goes through the result filter
# (max_rows counting, column patterns and all four value detectors).
gateway_rules() {
    [ "${RULES:-on}" = off ] && return 0
    cat <<'RULES'
[[resource.guardrails]]
deny = ["drop", "truncate", "alter_table", "grant"]
require_where = true
max_rows = 10000
statement_timeout = "60s"

[[resource.masking]]
columns = ["email", "phone", "*_ssn", "card_number"]
detectors = ["email", "credit_card", "phone", "iban"]
RULES
}

# start_gateway NAME: writes $BENCH_TMP/NAME/airlock.toml (resource `bench`,
# upstream TLS off so only the client side adds TLS, plaintext clients
# allowed so one gateway serves both measurements), starts `airlock serve`,
# and logs in user bench1 under $AIRLOCK_HOME. GW_BIN overrides the binary
# served; GW_EXTRA is appended to the config (e.g. an [audit] table).
start_gateway() {
    local name="$1" bin="${GW_BIN:-$AIRLOCK}"
    GW_DIR="$BENCH_TMP/$name"
    mkdir -p "$GW_DIR"
    GW_PG_PORT="$(free_port)"
    GW_HTTP_PORT="$(free_port)"
    while [ "$GW_HTTP_PORT" = "$GW_PG_PORT" ]; do GW_HTTP_PORT="$(free_port)"; done
    cat >"$GW_DIR/airlock.toml" <<EOF
[gateway]
listen_postgres = "127.0.0.1:$GW_PG_PORT"
listen_http = "127.0.0.1:$GW_HTTP_PORT"
listen_otlp_grpc = "${GW_GRPC_LISTEN:-off}"
data_dir = "$GW_DIR/data"
public_host = "127.0.0.1"
allow_plaintext = true
credential_ttl = "8h"

[[resource]]
name = "bench"
kind = "postgres"
host = "127.0.0.1"
port = $PG_PORT
database = "bench"
tls = "disable"
read  = { user = "bench_ro", password_env = "BENCH_RW_PASSWORD" }
write = { user = "bench_rw", password_env = "BENCH_RW_PASSWORD" }
$(gateway_rules)

[[role]]
name = "bencher"
standing = [{ resource = "bench", access = "read" }]

[[user]]
name = "bench1"
roles = ["bencher"]

${GW_EXTRA:-}
EOF
    local token
    # The gateway's own binary writes its store (another build may not read it).
    token="$("$bin" token issue bench1 --config "$GW_DIR/airlock.toml" 2>/dev/null)" ||
        die "airlock token issue failed"
    # Statement records are logged at info level per session only; warn keeps
    # the log small over thousands of sessions without hiding problems.
    AIRLOCK_LOG="${AIRLOCK_LOG:-warn}" "$bin" serve --config "$GW_DIR/airlock.toml" \
        >"$BENCH_TMP/gateway-$name.log" 2>&1 &
    GW_PID=$!
    ALL_GW_PIDS+=("$GW_PID")
    wait_port "$GW_HTTP_PORT" "the gateway's HTTP API"
    wait_port "$GW_PG_PORT" "the gateway's PostgreSQL listener"
    # The listeners may be up a moment before the generated CA is on disk.
    local i
    for i in $(seq 1 100); do
        [ -s "$GW_DIR/data/tls/ca.crt" ] && break
        sleep 0.1
    done
    export AIRLOCK_HOME="$GW_DIR/home"
    printf '%s\n' "$token" | "$AIRLOCK" login --server "https://127.0.0.1:$GW_HTTP_PORT" \
        --ca-file "$GW_DIR/data/tls/ca.crt" >/dev/null ||
        die "airlock login failed"
    log "gateway $name (pid $GW_PID) on 127.0.0.1:$GW_PG_PORT"
}

# Sets GW_USER, GW_PASSWORD, GW_DATABASE from `airlock connect bench --json`.
gateway_credential() {
    local json
    json="$("$AIRLOCK" connect bench --ttl 8h --json)" || die "airlock connect failed"
    GW_USER="$(printf '%s' "$json" | json_get .env.PGUSER)"
    GW_PASSWORD="$(printf '%s' "$json" | json_get .env.PGPASSWORD)"
    GW_DATABASE="$(printf '%s' "$json" | json_get .env.PGDATABASE)"
}

stop_gateway() {
    if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
        kill -TERM "$GW_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$GW_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    fi
    GW_PID=""
}

# PgBouncer in session mode as a reference proxy, on PGB_PORT: clients log in
# as bench_rw with its password (SCRAM), with TLS (a throwaway self-signed
# certificate) or without. Returns 1 when pgbouncer is not installed.
start_pgbouncer() {
    command -v pgbouncer >/dev/null 2>&1 || return 1
    local dir="$BENCH_TMP/pgbouncer"
    mkdir -p "$dir"
    PGB_PORT="$(free_port)"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
        -keyout "$dir/server.key" -out "$dir/server.crt" >/dev/null 2>&1 ||
        die "openssl could not make a certificate for pgbouncer"
    printf '"bench_rw" "%s"\n' "$BENCH_RW_PASSWORD" >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
pidfile = $dir/pgbouncer.pid
logfile = $BENCH_TMP/pgbouncer.log
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 190
client_tls_sslmode = allow
client_tls_key_file = $dir/server.key
client_tls_cert_file = $dir/server.crt
log_connections = 0
log_disconnections = 0
EOF
    chmod 600 "$dir/server.key" "$dir/userlist.txt"
    touch "$BENCH_TMP/pgbouncer.log"
    # PgBouncer refuses to run as root, like PostgreSQL.
    if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir" "$BENCH_TMP/pgbouncer.log"; fi
    as_pg pgbouncer "$dir/pgbouncer.ini" >>"$BENCH_TMP/pgbouncer.log" 2>&1 &
    PGB_PID=$!
    wait_port "$PGB_PORT" "pgbouncer"
    log "$(pgbouncer --version | head -n 1) (pid $PGB_PID) on 127.0.0.1:$PGB_PORT"
}

stop_pgbouncer() {
    local pidfile="$BENCH_TMP/pgbouncer/pgbouncer.pid"
    # As root PGB_PID is runuser's; the pid file names pgbouncer itself.
    if [ -f "$pidfile" ]; then kill -TERM "$(cat "$pidfile")" 2>/dev/null || true; fi
    if [ -n "$PGB_PID" ]; then
        kill -TERM "$PGB_PID" 2>/dev/null || true
        wait "$PGB_PID" 2>/dev/null || true
    fi
    PGB_PID=""
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

raise_nofile() {
    local hard
    hard="$(ulimit -Hn)"
    if [ "$hard" = unlimited ]; then hard=65536; fi
    ulimit -n "$hard" 2>/dev/null || true
}

# --- pgbench runs (bench/pgbench.sh, bench/audit.sh) ---

# check_and_warm_up VARIANT...: every variant must answer before minutes are
# spent measuring; then WARMUP seconds of each, unreported. The caller
# defines run_variant VARIANT MODE CLIENTS SECONDS LOG.
check_and_warm_up() {
    local v t
    for v in "$@"; do
        t="$(run_variant "$v" simple 1 1 "$BENCH_TMP/check-$v.log")"
        [ "$t" != ERR ] || die "$v does not work: $(tail -n 5 "$BENCH_TMP/check-$v.log")"
    done
    if [ "${WARMUP:-0}" -gt 0 ]; then
        log "warm-up: ${WARMUP}s per variant"
        for v in "$@"; do
            run_variant "$v" simple 2 "$WARMUP" "$BENCH_TMP/warmup-$v.log" >/dev/null
        done
    fi
}
CLK_TCK="$(getconf CLK_TCK)"

# cpu_ticks PID: clock ticks of user+system CPU used so far by the process
# (exited threads included).
cpu_ticks() {
    local f
    f=($(cut -d')' -f2- "/proc/$1/stat"))
    echo $((f[11] + f[12]))
}

# run_pgbench HOST PORT USER PASSWORD DB SSLMODE MODE CLIENTS SECONDS LOG:
# prints the tps without initial connection time, or "ERR". With PROXY_PID
# set, also writes the proxy's CPU ticks during the run to LOG.cpu.
run_pgbench() {
    local host="$1" port="$2" user="$3" pass="$4" db="$5" sslmode="$6" mode="$7" c="$8" secs="$9" out="${10}"
    local j=$((c < 2 ? c : 2)) t0=0 status=0
    if [ -n "${PROXY_PID:-}" ]; then
        t0="$(cpu_ticks "$PROXY_PID")"
    fi
    # PGSSLROOTCERT stays unset: sslmode=require encrypts without verifying,
    # and verification only costs at connection time anyway.
    env -u PGSSLROOTCERT PGHOST="$host" PGPORT="$port" PGUSER="$user" PGPASSWORD="$pass" \
        PGDATABASE="$db" PGSSLMODE="$sslmode" PGAPPNAME=airlock-bench \
        pgbench -S -M "$mode" -c "$c" -j "$j" -T "$secs" -n >"$out" 2>&1 || status=$?
    if [ -n "${PROXY_PID:-}" ]; then
        echo "$(($(cpu_ticks "$PROXY_PID") - t0))" >"$out.cpu"
    fi
    if [ "$status" != 0 ]; then
        echo ERR
        return
    fi
    awk '/^tps = / { print $3; found = 1; exit } END { if (!found) print "ERR" }' "$out"
}


# cpu_per_tx LOG: the proxy's CPU microseconds per transaction in that run
# ("-" when unknown).
cpu_per_tx() {
    local tx
    tx="$(awk '/^number of transactions actually processed:/ { print $6 }' "$1" | cut -d/ -f1)"
    if [ -z "$tx" ] || [ ! -f "$1.cpu" ]; then
        echo "-"
        return
    fi
    awk -v tx="$tx" -v hz="$CLK_TCK" '{ printf "%.1f\n", $1 * 1e6 / hz / tx }' "$1.cpu"
}

median() { printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "ERR"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }' || true; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "ERR" || b == "ERR" || b == 0) print "ERR"; else print a / b }'; }
fmt_ratio() { awk -v a="$1" 'BEGIN { if (a == "ERR") print "-"; else printf "%.2f\n", a }'; }
fmt_cpu() { awk -v a="$1" 'BEGIN { if (a == "ERR") print "-"; else printf "%.1f\n", a }'; }
fmt_tps() { awk -v a="$1" 'BEGIN { if (a == "ERR") print "ERR"; else printf "%.0f\n", a }'; }
