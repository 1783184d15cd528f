#!/usr/bin/env bash
# Runs a real driver's own test suite (psycopg2 2.9.10, from its PyPI sdist)
# twice: straight against PostgreSQL 15, then through Airlock with a write
# grant, and prints both pass counts and the tests that fail only through
# Airlock (docs/connecting.md, "Differences from a direct connection", says
# which of those are deliberate).
#
#   scripts/driver-suites.sh            # builds target/release/airlock if needed
#   AIRLOCK_BIN=target/debug/airlock scripts/driver-suites.sh   # slower: debug SCRAM
#   KEEP=1 scripts/driver-suites.sh     # keep the work directory (logs, results)
#   SUITES=pg8000 scripts/driver-suites.sh   # one suite only (psycopg2, pg8000)
#
# Needs: PostgreSQL 15 server binaries, python3 with venv and pip, network
# access to PyPI (the sdists, the psycopg2-binary wheel, pg8000 and pytest). Runs as root too
# (the server then runs as the `postgres` user). Exit status: 0 when every
# test that passes directly passes through Airlock, except the documented
# classes listed in EXPECTED below; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# One collation for sort, comm and join.
export LC_ALL=C

PSYCOPG2_VERSION=2.9.10
PG8000_VERSION=1.31.6
SUITES=${SUITES:-psycopg2 pg8000}
# Tests that fail through Airlock by design, one per line with the class
# (docs/connecting.md). Anything else failing only through Airlock is a bug.
EXPECTED="$ROOT/scripts/driver-suites.expected"

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
AIRLOCK_BIN=${AIRLOCK_BIN:-}
if [[ -z $AIRLOCK_BIN ]]; then
    cargo build -q --release -p airlock --bin airlock
    AIRLOCK_BIN=$ROOT/target/release/airlock
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

# 1. The suites and the drivers to run them with.
echo "== psycopg2 $PSYCOPG2_VERSION and pg8000 $PG8000_VERSION: sdists (tests) and drivers"
python3 -m venv "$W/venv"
"$W/venv/bin/pip" -q install "psycopg2-binary==$PSYCOPG2_VERSION" "pg8000==$PG8000_VERSION" \
    pytest pytest-mock pytest-benchmark pytz
(cd "$W" && "$W/venv/bin/pip" -q download --no-binary :all: --no-deps \
    "psycopg2==$PSYCOPG2_VERSION" "pg8000==$PG8000_VERSION" \
    && tar xzf "psycopg2-$PSYCOPG2_VERSION.tar.gz" && tar xzf "pg8000-$PG8000_VERSION.tar.gz")

# 2. PostgreSQL 15: a superuser role for each suite (the direct run and the
#    gateway's write credential are the same role, so both runs may do the
#    same). pg8000's suite logs in as `postgres` to the database `postgres`.
echo "== PostgreSQL"
PG_PORT=$(free_port)
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
mkdir -p "$W/pg" "$W/sock"
if [[ $(id -u) == 0 ]]; then chown postgres: "$W/pg" "$W/sock"; fi
as_pg "$PGBIN/initdb" -D "$W/pg" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$W/initdb.log"
as_pg "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pg/server.log" -w \
    -o "-p $PG_PORT -k $W/sock -c listen_addresses=127.0.0.1 -c max_prepared_transactions=10 -c max_connections=100" start >/dev/null
PG_PID=1
as_pg "$PGBIN/psql" -X -q -h "$W/sock" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE drivers LOGIN SUPERUSER PASSWORD '$PASSWORD';
CREATE ROLE drivers_ro LOGIN PASSWORD '$PASSWORD';
ALTER ROLE postgres PASSWORD '$PASSWORD';
CREATE DATABASE psycopg2_test OWNER drivers;
SQL

# 3. The gateway: resources psycopg2_test and postgres, users `driver` and
#    `postgres` (pg8000's suite always logs in as that) with standing write.
#    pg8000 cannot be told to use TLS from outside its tests, hence
#    allow_plaintext (the psycopg2 run still uses TLS: the credential's
#    PGSSLMODE).
echo "== Airlock"
GW_PG_PORT=$(free_port)
GW_HTTP_PORT=$(free_port)
cat >"$W/airlock.toml" <<TOML
[gateway]
listen_postgres = "127.0.0.1:$GW_PG_PORT"
listen_http = "127.0.0.1:$GW_HTTP_PORT"
listen_otlp_grpc = "off"
data_dir = "./data"
allow_plaintext = true

[[resource]]
name = "psycopg2_test"
kind = "postgres"
host = "127.0.0.1"
port = $PG_PORT
database = "psycopg2_test"
tls = "disable"
read  = { user = "drivers_ro", password_env = "DRIVERS_PASSWORD" }
write = { user = "drivers", password_env = "DRIVERS_PASSWORD" }

[[resource]]
name = "postgres"
kind = "postgres"
host = "127.0.0.1"
port = $PG_PORT
database = "postgres"
tls = "disable"
read  = { user = "drivers_ro", password_env = "DRIVERS_PASSWORD" }
write = { user = "postgres", password_env = "DRIVERS_PASSWORD" }

[[role]]
name = "writer"
standing = [{ resource = "psycopg2_test", access = "write" }, { resource = "postgres", access = "write" }]

[[user]]
name = "driver"
roles = ["writer"]

[[user]]
name = "postgres"
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
credential() { # airlock user, resource: the credential's JSON in $W/<resource>.json
    export AIRLOCK_HOME=$W/home-$1
    "$AIRLOCK_BIN" token issue "$1" --config "$W/airlock.toml" 2>/dev/null | tail -1 | tr -d '[:space:]' >"$W/token-$1"
    "$AIRLOCK_BIN" login --server "https://127.0.0.1:$GW_HTTP_PORT" --ca-file "$W/data/tls/ca.crt" <"$W/token-$1" >/dev/null
    "$AIRLOCK_BIN" connect "$2" --access write --ttl 8h --json >"$W/$2.json"
}
json() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
credential driver psycopg2_test
credential postgres postgres

# 4. The suites, both ways. Each writes one `outcome<TAB>suite:test id` line
#    per test, so the two runs can be compared test by test.
cat >"$W/run_psycopg2.py" <<'PY'
import sys, unittest
sys.path.insert(0, sys.argv[1])
import tests

class Result(unittest.TextTestResult):
    def _out(self, outcome, test):
        with open(sys.argv[2], "a") as f:
            f.write(f"{outcome}\tpsycopg2:{test.id()}\n")
    def addSuccess(self, t): super().addSuccess(t); self._out("pass", t)
    def addFailure(self, t, e): super().addFailure(t, e); self._out("fail", t)
    def addError(self, t, e): super().addError(t, e); self._out("fail", t)
    def addSkip(self, t, r): super().addSkip(t, r); self._out("skip", t)
    def addExpectedFailure(self, t, e): super().addExpectedFailure(t, e); self._out("pass", t)
    def addUnexpectedSuccess(self, t): super().addUnexpectedSuccess(t); self._out("fail", t)

unittest.TextTestRunner(resultclass=Result, stream=sys.stderr, verbosity=1).run(tests.test_suite())
PY
# pytest's own report, one line per test: "PASSED test/...::name" etc.
cat >"$W/pytest_results.py" <<'PY'
import xml.etree.ElementTree as ET, sys
for case in ET.parse(sys.argv[1]).iter("testcase"):
    kinds = {c.tag for c in case}
    outcome = "fail" if kinds & {"failure", "error"} else "skip" if "skipped" in kinds else "pass"
    print(f"{outcome}\t{sys.argv[2]}:{case.get('classname')}.{case.get('name')}")
PY

run_suite() { # suite, run name, then the environment for the driver
    local suite=$1 name=$2
    shift 2
    local out=$W/$suite-$name
    echo "== $suite: $name"
    case $suite in
    psycopg2)
        : >"$out.results"
        (cd "$W" && env PSYCOPG2_TESTDB=psycopg2_test "$@" timeout 900 \
            "$W/venv/bin/python" "$W/run_psycopg2.py" "$W/psycopg2-$PSYCOPG2_VERSION" "$out.results") \
            >"$out.log" 2>&1 || true
        ;;
    pg8000)
        # From the sdist's directory for its `test` package; the installed
        # pg8000 is the driver (the sdist's code is under src/).
        (cd "$W/pg8000-$PG8000_VERSION" && env "$@" timeout 900 "$W/venv/bin/python" -m pytest \
            -p no:cacheprovider -q --benchmark-disable --junitxml="$out.xml" test) >"$out.log" 2>&1 || true
        "$W/venv/bin/python" "$W/pytest_results.py" "$out.xml" pg8000 >"$out.results" || true
        ;;
    esac
    sort -o "$out.results" "$out.results"
}
for suite in $SUITES; do
    case $suite in
    psycopg2)
        run_suite psycopg2 direct PSYCOPG2_TESTDB_HOST=127.0.0.1 PSYCOPG2_TESTDB_PORT="$PG_PORT" \
            PSYCOPG2_TESTDB_USER=drivers PGPASSWORD="$PASSWORD" PGSSLMODE=disable
        mapfile -t env < <(python3 -c '
import json, sys
for k, v in json.load(open(sys.argv[1]))["env"].items():
    print(f"{k}={v}")' "$W/psycopg2_test.json")
        run_suite psycopg2 airlock "${env[@]}" PSYCOPG2_TESTDB_HOST=127.0.0.1 \
            PSYCOPG2_TESTDB_PORT="$GW_PG_PORT" PSYCOPG2_TESTDB_USER=driver
        ;;
    pg8000)
        run_suite pg8000 direct PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGPASSWORD="$PASSWORD"
        run_suite pg8000 airlock PGHOST=127.0.0.1 PGPORT="$GW_PG_PORT" \
            PGPASSWORD="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["env"]["PGPASSWORD"])' "$W/postgres.json")"
        ;;
    *) echo "unknown suite $suite (psycopg2, pg8000)" >&2; exit 2 ;;
    esac
done

# 5. The comparison, per suite, then over all.
count() { grep -c "^$1	" "$2" || true; }
grep -v '^#' "$EXPECTED" | sed '/^$/d' | sort -t '	' -k1,1 >"$W/expected"
cut -f1 "$W/expected" >"$W/expected.ids"
: >"$W/only-through-airlock"
echo
for suite in $SUITES; do
    echo "$suite: $(wc -l <"$W/$suite-direct.results") tests"
    for run in direct airlock; do
        printf '  %-8s passed %5s  failed %4s  skipped %4s\n' "$run" \
            "$(count pass "$W/$suite-$run.results")" "$(count fail "$W/$suite-$run.results")" \
            "$(count skip "$W/$suite-$run.results")"
    done
    grep '^pass	' "$W/$suite-direct.results" | cut -f2 | sort >"$W/$suite-direct.pass" || true
    grep '^pass	' "$W/$suite-airlock.results" | cut -f2 | sort >"$W/$suite-airlock.pass" || true
    comm -23 "$W/$suite-direct.pass" "$W/$suite-airlock.pass" >"$W/$suite-only"
    echo "  pass directly, not through Airlock: $(wc -l <"$W/$suite-only")"
    # The documented differences, counted by class.
    join -t '	' "$W/$suite-only" "$W/expected" | cut -f2 | sort | uniq -c | sed 's/^ */    /'
    cat "$W/$suite-only" >>"$W/only-through-airlock"
    { grep "^$suite:" "$W/expected.ids" || true; } | comm -13 "$W/$suite-only" - |
        sed 's/^/  documented, but did not differ this time: /'
done
sort -o "$W/only-through-airlock" "$W/only-through-airlock"
comm -23 "$W/only-through-airlock" "$W/expected.ids" >"$W/unexpected"
if [[ -s $W/unexpected ]]; then
    echo "UNEXPECTED (fail only through Airlock; KEEP=1 keeps <suite>-airlock.log with the errors):"
    sed 's/^/    /' "$W/unexpected"
    exit 1
fi
echo "no unexpected differences"
