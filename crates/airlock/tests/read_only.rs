//! Read access cannot write: the gateway classifies every statement with
//! PostgreSQL's grammar and refuses writes with 25006 before they are
//! forwarded, in the simple and the extended protocol, and the session goes
//! on with the transaction status PostgreSQL would report.

mod common;

use common::{sqlstate as code, stderr, stdout, World};

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| format!("{} | hint: {:?}", d.message(), d.hint()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_before_they_reach_postgres() {
    let w = World::start().await;
    let read = w.connect("oncall1", "read").await;
    let db = w.tokio_pg(&read).await;

    // Extended protocol (tokio-postgres prepares every statement).
    let e = db
        .execute("DELETE FROM orders WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006", "{e}");
    let m = message(&e);
    assert!(m.contains("rule delete"), "{m}");
    assert!(m.contains("airlock request orders --access write"), "{m}");
    // The session goes on.
    let n: i64 = db
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 600);

    // Simple protocol, several statements: one write refuses them all.
    let e = db
        .batch_execute("SELECT 1; UPDATE orders SET status = 'x'; SELECT 2")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
    assert!(
        message(&e).contains("None of the statements"),
        "{}",
        message(&e)
    );

    // Writes hidden inside reads.
    for sql in [
        "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d",
        "SELECT nextval('orders_id_seq')",
        "SELECT * FROM orders WHERE id = 1 FOR UPDATE",
        "SELECT pg_advisory_lock(1)",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SET transaction_read_only = off",
        "SELECT pg_terminate_backend(pg_backend_pid())",
        "EXPLAIN ANALYZE DELETE FROM orders",
        "BEGIN READ WRITE",
    ] {
        let e = db.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(&e), "25006", "{sql}: {e}");
    }

    // A statement that does not parse is not forwarded: 42601 from Airlock.
    let e = db.batch_execute("SELEC 1").await.unwrap_err();
    assert_eq!(code(&e), "42601");
    assert!(
        message(&e).contains("Airlock could not parse"),
        "{}",
        message(&e)
    );

    // Nothing changed.
    let counts = w
        .cluster
        .psql(
            "orders",
            "SELECT count(*), (SELECT count(*) FROM orders WHERE status = 'x'), \
             (SELECT last_value FROM orders_id_seq) FROM orders",
        )
        .unwrap();
    assert_eq!(counts.trim(), "600|0|600", "{counts}");
    let n: i64 = db.query_one("SELECT 1::int8", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_status_is_what_postgres_reports() {
    let w = World::start().await;
    let read = w.connect("oncall1", "read").await;
    // psql prints the transaction status in its prompt-free mode via
    // \echo :LAST_ERROR_SQLSTATE and the status of the next statements.
    let script = "BEGIN;\n\
        SELECT count(*) FROM orders;\n\
        DELETE FROM orders;\n\
        \\echo after-refusal :LAST_ERROR_SQLSTATE\n\
        SELECT 1;\n\
        ROLLBACK;\n\
        SELECT 'again', count(*) FROM orders;\n";
    let o = std::process::Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=0"])
        .envs(read.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    // The refused DELETE fails the transaction as a PostgreSQL error would:
    // the next statement in it is refused by PostgreSQL (25P02), and after
    // ROLLBACK the session works.
    assert!(out.contains("after-refusal 25006"), "{out}\n{err}");
    assert!(err.contains("rule delete"), "{err}");
    assert!(err.contains("current transaction is aborted"), "{err}");
    assert!(out.contains("again|600"), "{out}\n{err}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_discards_until_sync_and_keeps_pipelines_in_order() {
    let w = World::start().await;
    let read = w.connect("oncall1", "read").await;
    let db = w.tokio_pg(&read).await;
    // tokio-postgres pipelines concurrent queries: a refusal in the middle
    // must come back in order, between the two reads' results.
    let a = db.query_one("SELECT 1::int4", &[]);
    let b = db.execute("UPDATE orders SET status = 'y'", &[]);
    let c = db.query_one("SELECT 3::int4", &[]);
    let (a, b, c) = tokio::join!(a, b, c);
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(code(&b.unwrap_err()), "25006");
    assert_eq!(c.unwrap().get::<_, i32>(0), 3);
    // A named prepared read and its reuse.
    let stmt = db
        .prepare("SELECT status FROM orders WHERE id = $1")
        .await
        .unwrap();
    for id in [1i32, 2, 3] {
        db.query_one(&stmt, &[&id]).await.unwrap();
    }
    // The prepared statement behind a SQL EXECUTE is classified at PREPARE.
    let e = db
        .batch_execute("PREPARE p AS DELETE FROM orders")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
    let e = db.batch_execute("EXECUTE p").await.unwrap_err();
    assert_eq!(
        code(&e),
        "26000",
        "never prepared, so PostgreSQL does not know it"
    );
    db.batch_execute("PREPARE r AS SELECT count(*) FROM orders; EXECUTE r")
        .await
        .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_access_writes_and_the_database_is_the_second_layer() {
    let w = World::start().await;
    let write = w.connect("lead1", "write").await;
    let o = w.psql(
        &write,
        &["-c", "UPDATE orders SET status = 'paid' WHERE id = 1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "UPDATE 1\n");

    // A user function that writes looks like a read to any classifier; the
    // read session's database settings stop it.
    w.cluster
        .psql(
            "orders",
            "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS \
             $$ UPDATE orders SET status = 'sneaky' WHERE id = 2 RETURNING 1 $$;",
        )
        .unwrap();
    let read = w.connect("oncall1", "read").await;
    let o = w.psql(&read, &["-c", "SELECT sneaky()"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("read-only transaction"),
        "{}",
        stderr(&o)
    );

    // The fast-path function call (psql's \lo_import uses it) is refused.
    let file = w.dir.path().join("lo.txt");
    std::fs::write(&file, "x").unwrap();
    let o = w.psql(&read, &["-c", &format!("\\lo_import '{}'", file.display())]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("rule"), "{}", stderr(&o));
    let los = w
        .cluster
        .psql("orders", "SELECT count(*) FROM pg_largeobject_metadata")
        .unwrap();
    assert_eq!(los.trim(), "0");

    // A client encoding that could hide a quote is refused at login.
    let o = std::process::Command::new("psql")
        .args(["-X", "-At", "-c", "select 1"])
        .envs(read.env())
        .env("PGCLIENTENCODING", "SJIS")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("client_encoding"), "{}", stderr(&o));
    w.stop().await;
}
