//! What drivers' own test suites find about the gateway on the wire (issue
//! 18, section 7): cancels, TLS record sizes, backend pids and startup
//! settings, each through a real client.

mod common;

use std::process::Command;

use common::{stderr, stdout, World};

/// Runs a Python script with the connection's PG* environment.
fn python(conn: &airlock::client::Connection, args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .args(args)
        .envs(conn.env())
        .output()
        .expect("python3 runs")
}

const SOCKET_WAITING_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/wire/socket_waiting_client.py"
);

/// Regression: the gateway closed the client's cancel connection before it
/// forwarded the CancelRequest, so libpq (which returns from PQcancel when
/// that connection closes) sent its next statement first and the cancel
/// landed on it: 49 of 50 statements after a cancel were cancelled through
/// Airlock, none directly. Each round cancels a long statement (the cancel
/// must still work) and then cancels while idle, which PostgreSQL ignores,
/// so the statement right after must run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_never_lands_on_the_statement_after_it() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let script = r#"
import threading, time, psycopg
from psycopg import errors
conn = psycopg.connect("", autocommit=True)
hit = 0
for i in range(25):
    def cancel_soon():
        time.sleep(0.2)
        conn.cancel()
    t = threading.Thread(target=cancel_soon)
    t.start()
    try:
        conn.execute("select pg_sleep(20)")
        raise SystemExit("round %d: the long statement was not cancelled" % i)
    except errors.QueryCanceled:
        pass
    t.join()
    conn.cancel()
    try:
        conn.execute("select pg_sleep(0.2)")
    except errors.QueryCanceled:
        hit += 1
print("cancelled afterwards:", hit)
"#;
    let o = python(&conn, &["-c", script]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), "cancelled afterwards: 0");
    w.stop().await;
}

/// Regression: clients were given a gateway-made pid, so finding one's own
/// row in pg_stat_activity, terminating one's own backend and the sender
/// pid of a NOTIFY all failed. The pid is now the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_their_backends_real_pid() {
    let w = World::start().await;
    let conn = w.connect("lead1", "write").await;
    let script = r#"
import psycopg
conn = psycopg.connect("application_name=pid-test", autocommit=True)
pid = conn.info.backend_pid
assert conn.execute("select pg_backend_pid()").fetchone()[0] == pid, "pg_backend_pid"
row = conn.execute(
    "select application_name from pg_stat_activity where pid = %s", (pid,)
).fetchone()
assert row == ("pid-test",), row
conn.execute("listen airlock_pid_test")
conn.execute("notify airlock_pid_test, 'hello'")
n = next(conn.notifies(timeout=5))
assert (n.pid, n.payload) == (pid, "hello"), n
other = psycopg.connect("", autocommit=True)
assert other.info.backend_pid != pid
try:
    other.execute("select pg_terminate_backend(pg_backend_pid())")
    raise SystemExit("the session survived terminating its own backend")
except psycopg.OperationalError:
    pass
gone = conn.execute("select count(*) from pg_stat_activity where pid = %s", (other.info.backend_pid,)).fetchone()[0]
assert gone == 0, "the terminated backend is still there"
print("ok")
"#;
    let o = python(&conn, &["-c", script]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), "ok");
    w.stop().await;
}

/// Regression: a driver that waits on the socket hung fetching a large
/// binary result over TLS through the gateway (7 times out of 8), never
/// directly: the gateway sent 16 KiB TLS records, PostgreSQL at most 8 KiB,
/// and the tail of a record stayed inside the client's TLS library. The
/// sizes vary per round so the last record's size does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_on_the_socket_gets_whole_large_results_over_tls() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let sql = "select decode(repeat('ab', 100000 + (random() * 60000)::int), 'hex')";
    let o = python(&conn, &[SOCKET_WAITING_CLIENT, "40", sql]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        40,
        "{out}"
    );
    w.stop().await;
}

/// Regression: `options` (PGOPTIONS), `statement_timeout` and
/// `idle_in_transaction_session_timeout` sent at startup never reached
/// PostgreSQL. They now pass the rules a SET would face.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_reach_postgresql_or_are_refused_by_name() {
    let w = World::start().await;
    let read = w.connect("oncall1", "read").await;
    let write = w.connect("lead1", "write").await;
    let psql_with = |conn, options: &str, sql: &str| {
        let mut c = Command::new("psql");
        c.args(["-X", "-At", "-c", sql])
            .envs(common_env(conn))
            .env("PGOPTIONS", options);
        c.output().expect("psql runs")
    };

    // psql with PGOPTIONS, a read session.
    let o = psql_with(
        &read,
        r"-c statement_timeout=3s --idle-in-transaction-session-timeout=5s -c datestyle=ISO,\ DMY",
        "select current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'), current_setting('datestyle')",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "3s|5s|ISO, DMY\n");
    // And it is in force: a statement over it is cancelled by PostgreSQL.
    let o = psql_with(&read, "-c statement_timeout=200ms", "select pg_sleep(2)");
    assert!(
        stderr(&o).contains("canceling statement due to statement timeout"),
        "{}",
        stderr(&o)
    );

    // Top-level startup parameters (no libpq option sends them).
    let o = python(
        &read,
        &[
            SOCKET_WAITING_CLIENT,
            "0",
            "select current_setting('statement_timeout') || ' ' || current_setting('idle_in_transaction_session_timeout')",
            "statement_timeout=4s",
            "idle_in_transaction_session_timeout=6s",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "4s 6s\n");

    // tokio-postgres' `options`.
    let mut cfg = w.tokio_pg_config(&read);
    cfg.options("-c lock_timeout=7s");
    let (client, connection) = cfg.connect(w.tls(&read)).await.expect("connects");
    tokio::spawn(connection);
    let row = client.query_one("show lock_timeout", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "7s");
    drop(client);

    // What a read session may not SET it may not ask for at startup either,
    // and the refusal names the setting.
    for options in [
        "-c default_transaction_read_only=off",
        "-c search_path=public,evil",
    ] {
        let o = psql_with(&read, options, "select 1");
        let err = stderr(&o);
        assert!(!o.status.success(), "{options}: {}", stdout(&o));
        let name = options[3..].split('=').next().unwrap();
        assert!(
            err.contains(&format!("Airlock refused the startup setting {name}=")),
            "{options}: {err}"
        );
        assert!(err.contains("needs write access"), "{options}: {err}");
    }
    // A write session may, except for what the gateway itself enforces.
    let o = psql_with(&write, "-c search_path=public", "show search_path");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "public\n");
    for options in ["-c standard_conforming_strings=off", "-c role=postgres"] {
        let o = psql_with(&write, options, "select 1");
        let err = stderr(&o);
        assert!(!o.status.success(), "{options}: {}", stdout(&o));
        assert!(err.contains("Airlock refused the startup setting"), "{err}");
    }
    // Unknown settings are PostgreSQL's to refuse, and it is said so.
    let o = psql_with(&write, "-c no_such_setting=1", "select 1");
    let err = stderr(&o);
    assert!(
        err.contains("the database refused a startup setting") && err.contains("no_such_setting"),
        "{err}"
    );
    // Switches that are not settings are refused, not ignored.
    let o = psql_with(&read, "-e", "select 1");
    assert!(stderr(&o).contains("startup option"), "{}", stderr(&o));
    w.stop().await;
}

fn common_env(conn: &airlock::client::Connection) -> Vec<(&'static str, String)> {
    conn.env()
}
