//! Real drivers through the gateway: tokio-postgres (pipelining, cancel,
//! binary results, portals with row limits, notifications, notices),
//! pgbench in every query mode, and Python's psycopg 3.

mod common;

use std::process::Command;

use common::{stderr, stdout, World};
use futures_util::{future::join_all, StreamExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_pipelines_cancels_and_streams() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;

    // Pipelined: many queries in flight on one connection before any answer.
    let stmt = client
        .prepare("select $1::int * 2, $2::text")
        .await
        .unwrap();
    let futures = (0..200).map(|i| {
        let client = &client;
        let stmt = &stmt;
        async move {
            let row = client
                .query_one(stmt, &[&i, &format!("n{i}")])
                .await
                .unwrap();
            (row.get::<_, i32>(0), row.get::<_, String>(1))
        }
    });
    let results = join_all(futures).await;
    for (i, (doubled, text)) in results.into_iter().enumerate() {
        assert_eq!((doubled, text), (i as i32 * 2, format!("n{i}")));
    }

    // Binary results: tokio-postgres asks for binary formats.
    let row = client
        .query_one(
            "select 1.5::float8, '\\xdeadbeef'::bytea, now()::timestamptz, 42::int8",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 1.5);
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(row.get::<_, i64>(3), 42);

    // Execute with a row limit: a portal read 7 rows at a time (PortalSuspended).
    let mut client2 = w.tokio_pg(&conn).await;
    let tx = client2.transaction().await.unwrap();
    let portal = tx
        .bind("select id from orders order by id", &[])
        .await
        .unwrap();
    let mut seen = 0;
    loop {
        let rows = tx.query_portal(&portal, 7).await.unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 7);
        seen += rows.len();
    }
    assert_eq!(seen, 600);
    tx.commit().await.unwrap();

    // A large result streams through (about 20 MB).
    let rows = client
        .query_raw(
            "select repeat('x', 1000) from generate_series(1, 20000)",
            std::iter::empty::<i32>(),
        )
        .await
        .unwrap();
    let n = rows
        .fold(0usize, |n, r| async move {
            n + r.unwrap().get::<_, String>(0).len()
        })
        .await;
    assert_eq!(n, 20_000 * 1000);

    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_upstream() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let token = client.cancel_token();
    let tls = w.tls(&conn);
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(tls).await
    });
    let started = std::time::Instant::now();
    let err = client.query("select pg_sleep(30)", &[]).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    canceller.await.unwrap().unwrap();
    // The session survives a cancelled query.
    assert_eq!(
        client
            .query_one("select 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );

    // A forged key cancels nothing and does not disturb the gateway.
    let mut raw = tokio::net::TcpStream::connect(w.pg_addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    raw.write_all(&[0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2])
        .await
        .unwrap();
    drop(raw);
    assert_eq!(
        client
            .query_one("select 8", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        8
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_notifications_pass_through() {
    let w = World::start().await;
    let conn = w.connect("lead1", "write").await;
    let (client, mut connection) = w
        .tokio_pg_config(&conn)
        .connect(w.tls(&conn))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        // Stop at the first error: a closed connection keeps returning one.
        while let Some(Ok(m)) = stream.next().await {
            if tx.send(m).is_err() {
                break;
            }
        }
    });
    client.batch_execute("LISTEN orders_changed").await.unwrap();
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
        .await
        .unwrap();
    let other = w.tokio_pg(&w.connect("lead1", "write").await).await;
    other
        .batch_execute("NOTIFY orders_changed, 'order 7'")
        .await
        .unwrap();
    let mut got_notice = false;
    let mut got_notification = false;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !(got_notice && got_notification) {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("messages arrive")
            .unwrap();
        match m {
            tokio_postgres::AsyncMessage::Notice(n) => {
                got_notice |= n.message() == "hello from plpgsql";
            }
            tokio_postgres::AsyncMessage::Notification(n) => {
                got_notification |= n.channel() == "orders_changed" && n.payload() == "order 7";
            }
            _ => {}
        }
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_every_mode() {
    let w = World::start().await;
    let write = w.connect("lead1", "write").await;
    // pgbench -i creates tables: the write credential's role needs CREATE on
    // the schema, which the sample seed does not give; grant it for the test.
    w.cluster
        .psql("orders", "grant create on schema public to orders_rw; grant select on all tables in schema public to orders_ro; alter default privileges for role orders_rw in schema public grant select on tables to orders_ro")
        .unwrap();
    let o = Command::new("pgbench")
        .args(["-i", "-s", "1", "-q"])
        .envs(write.env())
        .output()
        .unwrap();
    assert!(o.status.success(), "pgbench -i: {}", stderr(&o));
    let read = w.connect("oncall1", "read").await;
    for mode in ["simple", "extended", "prepared"] {
        let o = Command::new("pgbench")
            .args(["-S", "-M", mode, "-c", "4", "-j", "2", "-t", "100", "-n"])
            .envs(read.env())
            .output()
            .unwrap();
        assert!(o.status.success(), "pgbench -M {mode}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("number of transactions actually processed: 400/400"),
            "{mode}: {out}"
        );
        assert!(
            out.contains("number of failed transactions: 0"),
            "{mode}: {out}"
        );
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_through_the_gateway() {
    let w = World::start().await;
    let conn = w.connect("lead1", "write").await;
    let script = r#"
import os, sys, psycopg
uri = os.environ["AIRLOCK_URI"]
with psycopg.connect(uri) as conn:
    assert conn.pgconn.ssl_in_use, "TLS expected"
    with conn.cursor() as cur:
        cur.execute("select count(*) from orders where status = %s", ("shipped",))
        (n,) = cur.fetchone()
        cur.execute("create temp table t(id int, v text)")
        cur.executemany("insert into t values (%s, %s)", [(i, f"v{i}") for i in range(50)])
        with cur.copy("copy t (id, v) from stdin") as copy:
            for i in range(50, 100):
                copy.write_row((i, f"v{i}"))
        cur.execute("select count(*), sum(id) from t")
        assert cur.fetchone() == (100, 4950), "rows"
        rows = []
        with cur.copy("copy (select id from t order by id) to stdout") as copy:
            for row in copy.rows():
                rows.append(row)
        assert len(rows) == 100
        # server-side cursor (DECLARE/FETCH) and binary parameters
        with conn.cursor(name="c1") as named:
            named.execute("select id from orders order by id")
            assert len(named.fetchmany(25)) == 25
        cur.execute("select %b::bytea", (b"\x00\x01\xff",))
        assert cur.fetchone()[0] == b"\x00\x01\xff"
        try:
            cur.execute("select 1/0")
        except psycopg.errors.DivisionByZero:
            conn.rollback()
        cur.execute("select 'ok'")
        print(cur.fetchone()[0], n)
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .env("AIRLOCK_URI", conn.uri())
        .output()
        .unwrap();
    assert!(o.status.success(), "psycopg: {}", stderr(&o));
    assert!(stdout(&o).starts_with("ok "), "{}", stdout(&o));
    w.stop().await;
}
