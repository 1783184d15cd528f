//! Attacks on "read access cannot write", through real clients against a
//! real PostgreSQL whose read credential **can** write (the hard case: the
//! database layer is switched off, so the classifier and the watch must
//! hold alone). Each test reproduces one class of attack, asserts that the
//! database, files and sequences are unchanged, and that the audit log says
//! what was refused.

mod common;

use std::process::Command;

use airlock_audit::Event;
use common::{audit_entries as entries, sqlstate as code, stderr, stdout, Options, World};

/// The read credential can write (member of the write role, may write
/// server files), and the database has user functions that loosen a
/// session's protection or write.
const WEAKEN: &str = r#"
GRANT orders_rw TO orders_ro;
GRANT pg_write_server_files TO orders_ro;
CREATE FUNCTION public.loosen() RETURNS text LANGUAGE sql
  AS $$ SELECT set_config('default_transaction_read_only', 'off', false) $$;
CREATE FUNCTION public.loosen_strings() RETURNS text LANGUAGE sql
  AS $$ SELECT set_config('standard_conforming_strings', 'off', false) $$;
CREATE FUNCTION public.become_writer() RETURNS text LANGUAGE sql
  AS $$ SELECT set_config('role', 'orders_rw', false) $$;
CREATE FUNCTION public.purge() RETURNS bigint LANGUAGE sql
  AS $$ WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d $$;
"#;

/// What must not change: rows, a sequence, large objects, locks held.
const STATE: &str = "SELECT (SELECT count(*) FROM orders) || ',' || \
     (SELECT last_value FROM orders_id_seq) || ',' || \
     (SELECT count(*) FROM pg_largeobject_metadata) || ',' || \
     (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')";

async fn weak_world() -> World {
    let w = World::start_with(Options {
        resource_extra: "read_credential_can_write = \"allow\"".into(),
        ..Options::default()
    })
    .await;
    w.cluster.psql("orders", WEAKEN).unwrap();
    w
}

fn state(w: &World) -> String {
    w.cluster.psql("orders", STATE).unwrap()
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

/// The audit record of the statement whose text contains `needle`.
async fn audited(w: &World, needle: &str) -> airlock_audit::Statement {
    for _ in 0..100 {
        let found = entries(&w.data_dir())
            .into_iter()
            .find_map(|e| match e.event {
                Event::Statement(s) if s.display_text().contains(needle) => Some(s),
                _ => None,
            });
        if let Some(s) = found {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no audit record of a statement containing {needle:?}");
}

/// The reason recorded at the end of the session `session`.
async fn end_reason(w: &World, session: &str) -> String {
    for _ in 0..150 {
        let found = entries(&w.data_dir())
            .into_iter()
            .find_map(|e| match e.event {
                Event::SessionEnd {
                    session: s, reason, ..
                } if s == session => Some(reason),
                _ => None,
            });
        if let Some(r) = found {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("session {session} has no end record");
}

/// Class 1: built-ins that run SQL, change settings, take locks, write
/// sequences, large objects or files are refused under read access, however
/// they are called. The first case is the issue's own: `query_to_xml`
/// running `set_config` inside a harmless-looking SELECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_that_write_or_run_sql_are_refused_by_the_allowlist() {
    let w = weak_world().await;
    let before = state(&w);
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let cases: &[(&str, &str, &str)] = &[
        (
            "SELECT query_to_xml('select set_config(''default_transaction_read_only'', ''off'', false), set_config(''standard_conforming_strings'', ''off'', false)', true, true, '')",
            "25006",
            "executes_sql",
        ),
        ("SELECT * FROM pg_catalog.query_to_xml('select 1', true, true, '')", "25006", "executes_sql"),
        ("SELECT cursor_to_xml('c', 1, true, true, '')", "25006", "executes_sql"),
        ("SELECT ts_stat('select to_tsvector(status) from orders')", "25006", "executes_sql"),
        ("SELECT table_to_xml('customers', true, true, '')", "25006", "executes_sql"),
        ("SELECT setval('orders_id_seq', 100000)", "25006", "sequence_function"),
        ("SELECT pg_notify('ch', 'x')", "25006", "listen_notify"),
        ("SELECT pg_advisory_lock(42)", "25006", "advisory_lock"),
        ("SELECT lo_create(0)", "25006", "large_object"),
        ("SELECT lo_from_bytea(0, 'x')", "25006", "large_object"),
        ("SELECT set_config('role', 'orders_rw', false)", "25006", "identity_setting"),
        ("SELECT txid_current()", "25006", "function_not_allowed"),
        ("SELECT pg_current_xact_id()", "25006", "function_not_allowed"),
        ("SELECT pg_catalog.brin_summarize_new_values('orders_pkey')", "25006", "admin_function"),
        // EXPLAIN does not run the statement, but planning may call functions.
        ("EXPLAIN SELECT txid_current()", "25006", "function_not_allowed"),
        ("SELECT no_such_function(1)", "42883", "unknown_function"),
        // A function named like a denied built-in is refused in any schema.
        ("SELECT public.query_to_xml('select 1', true, true, '')", "25006", "executes_sql"),
        // An allowed built-in's name in a user schema is a user function
        // only if that schema has one.
        ("SELECT public.lower('x')", "42883", "unknown_function"),
    ];
    for (sql, sqlstate, rule) in cases {
        let e = client
            .simple_query(sql)
            .await
            .expect_err(&format!("{sql} must be refused"));
        assert_eq!(code(&e), *sqlstate, "{sql}: {}", message(&e));
        assert!(message(&e).contains(rule), "{sql}: {}", message(&e));
        // The extended protocol too, with the SQL text as a bound parameter
        // where the function takes one.
        let e = client
            .query(*sql, &[])
            .await
            .expect_err(&format!("{sql} (extended) must be refused"));
        assert_eq!(code(&e), *sqlstate, "{sql} (extended)");
        let record = audited(&w, sql).await;
        assert_eq!(record.decision, "refused", "{sql}");
        assert_eq!(record.rule, *rule, "{sql}");
    }
    let e = client
        .query(
            "SELECT query_to_xml($1, true, true, '')",
            &[&"select set_config('default_transaction_read_only', 'off', false)"],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
    // What the allowlist lets through still works, user functions included.
    let row = client
        .query_one(
            "SELECT lower('A'), now() IS NOT NULL, pg_backend_pid() > 0, count(*) FROM orders",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "a");
    assert_eq!(state(&w), before, "nothing changed");
    w.stop().await;
}

/// Class 1, third layer: a user function the gateway cannot see into turns
/// the read-only default off (and standard_conforming_strings, and changes
/// the role). PostgreSQL reports the change; the session ends before the
/// client's next statement reaches the server, pipelined or not, and the
/// audit log says what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_ends_a_read_session_whose_protection_moved() {
    let w = weak_world().await;
    let before = state(&w);
    for (loosen, what) in [
        ("SELECT public.loosen()", "default_transaction_read_only"),
        (
            "SELECT public.loosen_strings()",
            "standard_conforming_strings",
        ),
    ] {
        // psql: one statement at a time.
        let conn = w.connect("oncall1", "read").await;
        let o = w.psql(
            &conn,
            &[
                "-c",
                loosen,
                "-c",
                "SELECT public.purge()",
                "-c",
                "DELETE FROM orders",
            ],
        );
        assert!(!o.status.success(), "{loosen}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains("terminating connection"), "{err}");
        assert!(err.contains(what), "{err}");

        // tokio-postgres: the next statements are already on their way
        // (pipelined) when the report arrives.
        let conn = w.connect("oncall1", "read").await;
        let client = w.tokio_pg(&conn).await;
        let (a, b, c) = tokio::join!(
            client.simple_query(loosen),
            client.simple_query("SELECT public.purge()"),
            client.query("SELECT public.purge()", &[]),
        );
        assert!(
            b.is_err() && c.is_err(),
            "{loosen}: nothing after it may run"
        );
        drop(a);
        let session = audited(&w, loosen).await.session;
        let reason = end_reason(&w, &session).await;
        assert!(reason.contains(what), "{reason}");
        assert_eq!(state(&w), before, "{loosen}: nothing changed");
    }
    w.stop().await;
}

/// Class 1, within one Query or one pipeline: PostgreSQL reports changes
/// only when the Query or the pipeline ends, so a statement that may run
/// unseen code must be the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_runs_after_a_user_function_in_the_same_query_or_pipeline() {
    let w = weak_world().await;
    let before = state(&w);
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let e = client
        .simple_query("SELECT public.loosen(); COMMIT; SELECT public.purge()")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000", "{}", message(&e));
    // One statement after it in a pipeline (psycopg's pipeline mode sends
    // one Sync at the end): BEGIN/COMMIT around each, so that without the
    // gateway the second transaction would start read-write.
    let script = r#"
import os, psycopg
with psycopg.connect(os.environ["AIRLOCK_URI"], autocommit=True) as conn:
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            conn.execute("SELECT public.loosen()")
            conn.execute("COMMIT")
            conn.execute("BEGIN")
            conn.execute("SELECT public.purge()")
            conn.execute("COMMIT")
        print("ran")
    except psycopg.Error as e:
        print("refused", e.sqlstate)
"#;
    let conn = w.connect("oncall1", "read").await;
    let o = Command::new("python3")
        .args(["-c", script])
        .env("AIRLOCK_URI", conn.uri())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.starts_with("refused"), "{out} {}", stderr(&o));
    assert_eq!(state(&w), before, "nothing changed");
    w.stop().await;
}

/// Class 1, user code that runs without being called by name: an operator,
/// a cast and a view backed by a user function that turns backslash escapes
/// on (`standard_conforming_strings = off`) are as opaque as the function.
/// Regression: they passed as plain reads, so a statement pipelined after
/// one was parsed by PostgreSQL with the setting the gateway did not see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_casts_and_views_that_run_user_code_are_opaque() {
    let w = weak_world().await;
    w.cluster
        .psql(
            "orders",
            r#"
CREATE FUNCTION public.loosen_op(int, int) RETURNS int LANGUAGE sql
  AS $$ SELECT length(set_config('standard_conforming_strings', 'off', false)) + $1 + $2 $$;
CREATE OPERATOR public.### (LEFTARG = int, RIGHTARG = int, FUNCTION = public.loosen_op);
CREATE TYPE public.tag AS (v text);
CREATE FUNCTION public.to_tag(text) RETURNS public.tag LANGUAGE sql
  AS $$ SELECT ROW(set_config('standard_conforming_strings', 'off', false))::public.tag $$;
CREATE CAST (text AS public.tag) WITH FUNCTION public.to_tag(text);
CREATE VIEW public.loosening AS SELECT public.loosen_strings() AS x;
GRANT SELECT ON public.loosening TO orders_ro;
"#,
        )
        .unwrap();
    let before = state(&w);
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    for first in [
        "SELECT 1 ### 2",
        "SELECT 1 OPERATOR(public.###) 2",
        "SELECT 'x'::text::public.tag",
        "SELECT x FROM public.loosening",
    ] {
        let sql = format!("{first}; SELECT count(*) FROM orders");
        let e = client
            .simple_query(&sql)
            .await
            .expect_err(&format!("{sql} must be refused"));
        assert_eq!(code(&e), "0A000", "{sql}: {}", message(&e));
        assert!(
            message(&e).contains("user-defined code"),
            "{sql}: {}",
            message(&e)
        );
        let record = audited(&w, &sql).await;
        assert_eq!(record.rule, "opaque_pipelined", "{sql}");
    }
    // Built-in operators, casts and tables stay transparent.
    let rows = client
        .simple_query("SELECT 1 + 2, 'x'::text; SELECT count(*) FROM orders WHERE id > 0")
        .await
        .unwrap();
    assert!(rows.len() > 2);
    assert_eq!(state(&w), before, "nothing changed");
    w.stop().await;
}

/// Regression: `COPY t TO ''` was classified as a copy to the client and
/// cached by shape; `COPY t TO '/path/file'` then came from the cache as
/// allowed, for every read session. With a credential that may write server
/// files, the file would have been written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_a_file_is_never_served_from_the_cache() {
    let w = weak_world().await;
    let target = w.dir.path().join("stolen.csv");
    let _ = std::fs::remove_file(&target);
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let e = client
        .simple_query("COPY customers TO ''")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
    let sql = format!("COPY customers TO '{}'", target.display());
    let e = client.simple_query(&sql).await.unwrap_err();
    assert_eq!(code(&e), "25006", "{}", message(&e));
    assert!(message(&e).contains("copy_to_file"), "{}", message(&e));
    assert!(!target.exists(), "no file was written");
    w.stop().await;
}

/// Every built-in of the live server is either allowed (and then immutable
/// or stable, or reviewed), refused by a rule of its own, or refused as not
/// on the allowlist: none silently passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_holds_against_the_live_pg_proc() {
    let w = World::start().await;
    let rows = w
        .cluster
        .psql(
            "orders",
            "SELECT proname, bool_and(provolatile IN ('i', 's')) FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE nspname IN ('pg_catalog', 'information_schema') GROUP BY proname",
        )
        .unwrap();
    let catalog_rows = w
        .cluster
        .psql("orders", airlock_sql::functions::CATALOG_QUERY)
        .unwrap();
    let catalog = airlock_sql::FunctionCatalog::from_rows(catalog_rows.lines().map(|l| {
        let mut f = l.split('|');
        (
            f.next().unwrap().to_owned(),
            f.next().unwrap().to_owned(),
            f.next() == Some("t"),
        )
    }));
    let reviewed = airlock_sql::functions::reviewed_volatile();
    let (mut allowed, mut by_rule, mut not_allowed) = (0, 0, 0);
    let mut wrong = Vec::new();
    for line in rows.lines() {
        let (name, nonvolatile) = line.split_once('|').unwrap();
        let call = airlock_sql::FunctionCall::new(None, name.to_owned());
        let verdict = airlock_sql::classify(&format!("SELECT \"{name}\"()"));
        let rule = verdict.rule();
        match catalog.check([&call]) {
            airlock_sql::FunctionCheck::Transparent => {
                allowed += 1;
                if nonvolatile != "t" && !reviewed.contains(&name) {
                    wrong.push(format!("{name} is allowed but volatile and not reviewed"));
                }
                if rule.class() != airlock_sql::Class::Read {
                    // Allowed by name but refused by its own rule: fine.
                    by_rule += 1;
                }
            }
            airlock_sql::FunctionCheck::Refused(r, _) => {
                assert_eq!(r, airlock_sql::Rule::FunctionNotAllowed, "{name}");
                not_allowed += 1;
            }
            airlock_sql::FunctionCheck::Opaque => {
                wrong.push(format!("{name}: a built-in counted as a user function"))
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        allowed > 2000 && not_allowed > 100,
        "{allowed} allowed, {not_allowed} refused, {by_rule} by rule"
    );
    // Through the gateway, a sample of each.
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    client
        .simple_query("SELECT version(), current_setting('work_mem'), pg_sleep(0), random() < 2")
        .await
        .unwrap();
    let e = client
        .simple_query("SELECT pg_export_snapshot()")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
    w.stop().await;
}

/// The database layer: a read credential that can write is refused, at
/// start (the gateway does not start) and before read sessions (a grant
/// made while the gateway runs), unless the resource allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_credential_that_can_write_is_refused() {
    let w = World::start().await;
    // Clean: nothing to report.
    let resource = w.config.resource("orders").unwrap().clone();
    let tls = airlock_proxy::backend::UpstreamTlsConfigs::default();
    let timeout = std::time::Duration::from_secs(10);
    let found = airlock_proxy::catalog::check_read_credential(&resource, &tls, timeout)
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
    // Each way a read credential can write is found.
    w.cluster
        .psql(
            "orders",
            "GRANT orders_rw TO orders_ro; GRANT pg_signal_backend TO orders_ro; \
             CREATE TABLE owned_by_ro (x int); ALTER TABLE owned_by_ro OWNER TO orders_ro",
        )
        .unwrap();
    let found = airlock_proxy::catalog::check_read_credential(&resource, &tls, timeout)
        .await
        .unwrap()
        .join("; ");
    for what in [
        "may write orders (as orders_",
        "may advance sequence orders_id_seq (as orders_",
        "is a member of pg_signal_backend",
        "owns owned_by_ro",
    ] {
        assert!(found.contains(what), "{what} in {found}");
    }
    // A read session is refused (the grant came after the start).
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("its read credential can write"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("orders_rw"),
        "details stay in the gateway's log"
    );
    // And the gateway does not start with it.
    let mut config = w.config.clone();
    let data = tempfile::tempdir().unwrap();
    config.gateway.data_dir = data.path().to_path_buf();
    let listeners = airlock::gateway::Listeners {
        postgres: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        otlp_grpc: None,
    };
    let started = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        airlock::gateway::run(
            config,
            listeners,
            tokio_util::sync::CancellationToken::new(),
            std::sync::Arc::new(airlock_access::SystemClock),
        ),
    )
    .await
    .expect("the start is refused, not left running");
    let e = format!("{:#}", started.unwrap_err());
    assert!(e.contains("read credential can write"), "{e}");
    assert!(e.contains("read_credential_can_write = \"allow\""), "{e}");
    w.stop().await;
}

/// At reload as at start: a policy whose new read credential can write is
/// refused whole, and the one in force stays; a new credential that cannot
/// write is applied. Regression: the reload applied it, and every read
/// session after it was refused until someone noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_read_credential_that_can_write_is_refused() {
    let w = World::start().await;
    let password = std::env::var(common::RO_ENV).unwrap().replace('\'', "''");
    w.cluster
        .psql(
            "orders",
            &format!(
                "CREATE ROLE orders_ro_writer LOGIN PASSWORD '{password}' IN ROLE orders_ro, orders_rw;
                 CREATE ROLE orders_ro_next LOGIN PASSWORD '{password}' IN ROLE orders_ro;"
            ),
        )
        .unwrap();
    let path = w.dir.path().join("airlock.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let current_user = || async {
        let conn = w.connect("oncall1", "read").await;
        let client = w.tokio_pg(&conn).await;
        let user: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        user
    };
    assert_eq!(current_user().await, "orders_ro");
    std::fs::write(
        &path,
        text.replace("user = \"orders_ro\"", "user = \"orders_ro_writer\""),
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(current_user().await, "orders_ro", "the reload was refused");
    std::fs::write(
        &path,
        text.replace("user = \"orders_ro\"", "user = \"orders_ro_next\""),
    )
    .unwrap();
    let start = std::time::Instant::now();
    loop {
        if current_user().await == "orders_ro_next" {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the clean credential is applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    w.stop().await;
}

/// Over the extended protocol, SQL text and values travel as Bind
/// parameters: they are recorded (bounded, binary as base64, a digest when
/// cut) before the Bind is forwarded, with the Parse's parameter types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_parameters_are_audited() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let long = "x".repeat(5000);
    let row = client
        .query_one(
            "SELECT $1::text AS a, $2::bytea AS b, length($3::text) AS c, $4::int AS d",
            &[&"select 'hidden'", &vec![0u8, 1, 255], &long, &None::<i32>],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("c"), 5000);
    let record = audited(&w, "SELECT $1::text AS a, $2::bytea").await;
    assert!(
        record.param_types.is_empty(),
        "tokio-postgres leaves types to the server"
    );
    let mut bind = None;
    for _ in 0..100 {
        bind = entries(&w.data_dir())
            .into_iter()
            .find_map(|e| match e.event {
                Event::Bind(b) if b.session == record.session && b.n == record.n => Some(b),
                _ => None,
            });
        if bind.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let bind = bind.expect("a bind record");
    let p = &bind.params;
    assert_eq!(p.len(), 4);
    // tokio-postgres sends every value in binary format.
    assert_eq!(
        p[0].base64.as_deref(),
        Some("c2VsZWN0ICdoaWRkZW4n"),
        "select 'hidden'"
    );
    assert_eq!(p[1].base64.as_deref(), Some("AAH/"), "binary as base64");
    assert_eq!(p[1].format, 1);
    assert_eq!(p[2].len, 5000);
    assert_eq!(
        p[2].base64.as_ref().map(String::len),
        Some(1368),
        "cut to 1024 bytes"
    );
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(long.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(p[2].sha256.as_deref(), Some(hex.as_str()));
    assert_eq!(p[3].len, -1, "NULL");
    // Declared parameter types are kept for a faithful replay.
    let typed = client
        .prepare_typed("SELECT $1 AS typed", &[tokio_postgres::types::Type::INT4])
        .await
        .unwrap();
    client.query(&typed, &[&7i32]).await.unwrap();
    assert_eq!(
        audited(&w, "SELECT $1 AS typed").await.param_types,
        vec![23]
    );
    w.stop().await;
}

/// Read sessions get ceilings: memory settings capped, and an idle
/// transaction is ended after `read_idle_in_transaction_timeout` (5m by
/// default), which a read session can lower but not lift, so it cannot hold
/// back a 3 a.m. migration or vacuum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_sessions_cannot_lift_their_ceilings() {
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let show = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> String {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };
    let timeout = show(
        client
            .simple_query("SHOW idle_in_transaction_session_timeout")
            .await
            .unwrap(),
    );
    assert_eq!(timeout, "5min");
    for ok in [
        "SET work_mem = '32MB'",
        "SET work_mem = 4096",
        "SET maintenance_work_mem TO '64MB'",
        "SET hash_mem_multiplier = 1.5",
        "SET idle_in_transaction_session_timeout = '30s'",
        "RESET idle_in_transaction_session_timeout",
        "SELECT set_config('work_mem', '16MB', false)",
    ] {
        client
            .simple_query(ok)
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for refused in [
        "SET work_mem = '10GB'",
        "SET work_mem = 1048576",
        "SET temp_buffers = 100000",
        "SET maintenance_work_mem = '1TB'",
        "SET hash_mem_multiplier = 10",
        "SET idle_in_transaction_session_timeout = 0",
        "SET idle_in_transaction_session_timeout = '1h'",
        "SELECT set_config('work_mem', '2GB', false)",
        "SELECT set_config('idle_in_transaction_session_timeout', '0', false)",
    ] {
        let e = client.simple_query(refused).await.unwrap_err();
        assert_eq!(code(&e), "42501", "{refused}: {}", message(&e));
        assert!(
            message(&e).contains("read sessions on \"orders\" may set"),
            "{}",
            message(&e)
        );
    }
    let timeout = show(
        client
            .simple_query("SHOW idle_in_transaction_session_timeout")
            .await
            .unwrap(),
    );
    assert_eq!(timeout, "5min", "RESET returned to the gateway's default");
    // Startup settings face the same ceilings.
    for options in [
        "-c work_mem=10GB",
        "-c idle_in_transaction_session_timeout=0",
    ] {
        let conn = w.connect("oncall1", "read").await;
        let mut cfg = w.tokio_pg_config(&conn);
        cfg.options(options);
        let e = cfg.connect(w.tls(&conn)).await.err().expect(options);
        assert_eq!(code(&e), "42501", "{options}: {}", message(&e));
        assert!(
            message(&e).contains("refused the startup setting")
                && message(&e).contains("read sessions may set"),
            "{}",
            message(&e)
        );
    }
    // Write sessions are not capped.
    let conn = w.connect("lead1", "write").await;
    let client = w.tokio_pg(&conn).await;
    client.simple_query("SET work_mem = '1GB'").await.unwrap();
    w.stop().await;
}
