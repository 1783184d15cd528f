#!/usr/bin/env bash
# Runs a real driver's own test suite (psycopg2 2.9.10, from its PyPI sdist)
# twice: straight against PostgreSQL 15, then through Airlock with a write
# grant, and prints both pass counts and the tests that fail only through
# Airlock (docs/connecting.md, "Differences from a direct connection", says
# which of those are deliberate).
#
#   scripts/driver-suites.sh            # builds target/debug/airlock if needed
#   AIRLOCK_BIN=target/release/airlock scripts/driver-suites.sh
#   KEEP=1 scripts/driver-suites.sh     # keep the work directory (logs, results)
#
# Needs: PostgreSQL 15 server binaries, python3 with venv and pip, network
# access to PyPI (the sdist and the psycopg2-binary wheel). Runs as root too
# (the server then runs as the `postgres` user). Exit status: 0 when every
# test that passes directly passes through Airlock, except the documented
# classes listed in EXPECTED below; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# One collation for sort, comm and join.
export LC_ALL=C

PSYCOPG2_VERSION=2.9.10
# Tests that fail through Airlock by design, one per line with the class
# (docs/connecting.md). Anything else failing only through Airlock is a bug.
EXPECTED="$ROOT/scripts/driver-suites.expected"

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
AIRLOCK_BIN=${AIRLOCK_BIN:-}
if [[ -z $AIRLOCK_BIN ]]; then
    cargo build -q -p airlock --bin airlock
    AIRLOCK_BIN=$ROOT/target/debug/airlock
fi
AIRLOCK_BIN=$(realpath "$AIRLOCK_BIN")

W=$(mktemp -d /tmp/airlock-driver-suites.XXXXXX)
chmod 755 "$W"
PG_PID=
GW_PID=
as_pg() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
    set +e
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    [[ -n $PG_PID ]] && as_pg "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1
    if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# 1. The suite and a driver to run it with.
echo "== psycopg2 $PSYCOPG2_VERSION: sdist (tests) and binary wheel (driver)"
python3 -m venv "$W/venv"
"$W/venv/bin/pip" -q install "psycopg2-binary==$PSYCOPG2_VERSION"
(cd "$W" && "$W/venv/bin/pip" -q download --no-binary :all: --no-deps "psycopg2==$PSYCOPG2_VERSION" \
    && tar xzf "psycopg2-$PSYCOPG2_VERSION.tar.gz")
SUITE=$W/psycopg2-$PSYCOPG2_VERSION

# 2. PostgreSQL 15: a superuser role for the suite (the direct run and the
#    gateway's write credential are the same role, so both runs may do the same).
echo "== PostgreSQL"
PG_PORT=$(free_port)
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
mkdir -p "$W/pg" "$W/sock"
[[ $(id -u) == 0 ]] && chown postgres: "$W/pg" "$W/sock"
echo "$PASSWORD" >"$W/pw" && chmod 644 "$W/pw"
as_pg "$PGBIN/initdb" -D "$W/pg" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$W/initdb.log"
as_pg "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pg/server.log" -w \
    -o "-p $PG_PORT -k $W/sock -c listen_addresses=127.0.0.1 -c max_prepared_transactions=10 -c max_connections=100" start >/dev/null
PG_PID=1
as_pg "$PGBIN/psql" -X -q -h "$W/sock" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE drivers LOGIN SUPERUSER PASSWORD '$PASSWORD';
CREATE ROLE drivers_ro LOGIN PASSWORD '$PASSWORD';
CREATE DATABASE psycopg2_test OWNER drivers;
SQL

# 3. The gateway: resource psycopg2_test, user `driver` with standing write.
echo "== Airlock"
GW_PG_PORT=$(free_port)
GW_HTTP_PORT=$(free_port)
cat >"$W/airlock.toml" <<TOML
[gateway]
listen_postgres = "127.0.0.1:$GW_PG_PORT"
listen_http = "127.0.0.1:$GW_HTTP_PORT"
listen_otlp_grpc = "off"
data_dir = "./data"

[[resource]]
name = "psycopg2_test"
kind = "postgres"
host = "127.0.0.1"
port = $PG_PORT
database = "psycopg2_test"
tls = "disable"
read  = { user = "drivers_ro", password_env = "DRIVERS_PASSWORD" }
write = { user = "drivers", password_env = "DRIVERS_PASSWORD" }

[[role]]
name = "writer"
standing = [{ resource = "psycopg2_test", access = "write" }]

[[user]]
name = "driver"
roles = ["writer"]
TOML
export DRIVERS_PASSWORD=$PASSWORD
(cd "$W" && exec "$AIRLOCK_BIN" serve --config airlock.toml) >"$W/gateway.out" 2>"$W/gateway.log" &
GW_PID=$!
for _ in $(seq 200); do
    [[ -f $W/data/tls/ca.crt ]] && curl -sf --cacert "$W/data/tls/ca.crt" \
        "https://127.0.0.1:$GW_HTTP_PORT/healthz" >/dev/null && break
    kill -0 "$GW_PID" 2>/dev/null || { cat "$W/gateway.log"; exit 1; }
    sleep 0.1
done
export AIRLOCK_HOME=$W/home
"$AIRLOCK_BIN" token issue driver --config "$W/airlock.toml" | tail -1 | tr -d '[:space:]' >"$W/token"
"$AIRLOCK_BIN" login --server "https://127.0.0.1:$GW_HTTP_PORT" --ca-file "$W/data/tls/ca.crt" <"$W/token" >/dev/null
"$AIRLOCK_BIN" connect psycopg2_test --access write --ttl 8h --json >"$W/credential.json"

# 4. The suite, both ways. A small runner writes one `outcome<TAB>test id`
#    line per test, so the two runs can be compared test by test.
cat >"$W/run_suite.py" <<'PY'
import sys, unittest
sys.path.insert(0, sys.argv[1])
import tests

class Result(unittest.TextTestResult):
    def _out(self, outcome, test):
        with open(sys.argv[2], "a") as f:
            f.write(f"{outcome}\t{test.id()}\n")
    def addSuccess(self, t): super().addSuccess(t); self._out("pass", t)
    def addFailure(self, t, e): super().addFailure(t, e); self._out("fail", t)
    def addError(self, t, e): super().addError(t, e); self._out("fail", t)
    def addSkip(self, t, r): super().addSkip(t, r); self._out("skip", t)
    def addExpectedFailure(self, t, e): super().addExpectedFailure(t, e); self._out("pass", t)
    def addUnexpectedSuccess(self, t): super().addUnexpectedSuccess(t); self._out("fail", t)

unittest.TextTestRunner(resultclass=Result, stream=sys.stderr, verbosity=1).run(tests.test_suite())
PY

run_suite() { # name, then the environment for libpq
    local name=$1
    shift
    : >"$W/$name.results"
    echo "== suite: $name"
    (cd "$W" && env -u PGSERVICE PSYCOPG2_TESTDB=psycopg2_test "$@" timeout 900 \
        "$W/venv/bin/python" "$W/run_suite.py" "$SUITE" "$W/$name.results") >"$W/$name.log" 2>&1 || true
    sort -o "$W/$name.results" "$W/$name.results"
}
run_suite direct PSYCOPG2_TESTDB_HOST=127.0.0.1 PSYCOPG2_TESTDB_PORT="$PG_PORT" \
    PSYCOPG2_TESTDB_USER=drivers PGPASSWORD="$PASSWORD" PGSSLMODE=disable
mapfile -t GW_ENV < <(python3 -c '
import json, sys
for k, v in json.load(open(sys.argv[1]))["env"].items():
    print(f"{k}={v}")' "$W/credential.json")
GW_ENV+=("PSYCOPG2_TESTDB_HOST=127.0.0.1" "PSYCOPG2_TESTDB_PORT=$GW_PG_PORT"
    "PSYCOPG2_TESTDB_USER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["user"])' "$W/credential.json")")
run_suite airlock "${GW_ENV[@]}"

# 5. The comparison.
count() { grep -c "^$1	" "$W/$2.results" || true; }
echo
echo "psycopg2 $PSYCOPG2_VERSION suite: $(wc -l <"$W/direct.results") tests"
for run in direct airlock; do
    printf '  %-8s passed %5s  failed %4s  skipped %4s\n' "$run" \
        "$(count pass "$run")" "$(count fail "$run")" "$(count skip "$run")"
done
grep '^pass	' "$W/direct.results" | cut -f2 | sort >"$W/direct.pass"
grep '^pass	' "$W/airlock.results" | cut -f2 | sort >"$W/airlock.pass"
comm -23 "$W/direct.pass" "$W/airlock.pass" >"$W/only-through-airlock"
grep -v '^#' "$EXPECTED" | sed '/^$/d' | sort -t '	' -k1,1 >"$W/expected"
cut -f1 "$W/expected" >"$W/expected.ids"
comm -23 "$W/only-through-airlock" "$W/expected.ids" >"$W/unexpected"
echo "  pass directly, not through Airlock: $(wc -l <"$W/only-through-airlock")"
# The documented differences, counted by class.
join -t '	' "$W/only-through-airlock" "$W/expected" | cut -f2 | sort | uniq -c | sed 's/^ */    /'
comm -13 "$W/only-through-airlock" "$W/expected.ids" | sed 's/^/  documented, but did not differ this time: /'
if [[ -s $W/unexpected ]]; then
    echo "  UNEXPECTED (fail only through Airlock; KEEP=1 keeps airlock.log with the errors):"
    sed 's/^/    /' "$W/unexpected"
    exit 1
fi
echo "  no unexpected differences"
