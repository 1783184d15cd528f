//! What running drivers' own test suites through the gateway found
//! (issue 18, section 7; `scripts/driver-suites.sh` runs psycopg2's suite
//! both ways), each checked with a real client.

mod common;

use std::process::Command;

use common::{stderr, stdout, World};

/// psql through the gateway with the credential's environment, without
/// stopping at the first error (the caller looks at stderr).
fn psql(conn: &airlock::client::Connection, commands: &[&str]) -> std::process::Output {
    let mut c = Command::new("psql");
    c.args(["-X", "-At", "-v", "ON_ERROR_STOP=1"]);
    for command in commands {
        c.args(["-c", command]);
    }
    c.envs(conn.env()).output().expect("psql runs")
}

/// Every audit record line under the world's data directory, as text.
fn audit_lines(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    airlock_audit::read::scan(&airlock_audit::audit_dir(&w.data_dir()), 0, |raw| {
        out.push(String::from_utf8_lossy(raw.line).into_owned());
        Ok(true)
    })
    .unwrap();
    out
}

/// Regression: every fast-path FunctionCall was refused, and libpq's
/// large-object interface (`lo_import`, `lo_open`, `lo_read`, `lo_write`,
/// which psycopg2's `lobject` and psql's `\lo_*` use) speaks nothing else:
/// 41 of psycopg2's tests that pass directly failed through Airlock. A call
/// of a built-in large-object function is now decided as the SELECT it
/// stands for: allowed with write access, refused by the same large-object
/// rule under read access, and recorded with the function's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_through_libpq_fast_path_calls() {
    let w = World::start().await;
    let write = w.connect("lead1", "write").await;
    let read = w.connect("oncall1", "read").await;

    // Bigger than libpq's 8 KiB and the gateway's read buffer, so
    // lo_write and lo_read run many times, in binary with every byte value.
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let file = w.dir.path().join("blob.in");
    std::fs::write(&file, &data).unwrap();
    let o = psql(&write, &[&format!("\\lo_import '{}'", file.display())]);
    assert!(o.status.success(), "lo_import: {}", stderr(&o));
    let oid: u32 = stdout(&o)
        .trim()
        .strip_prefix("lo_import ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("lo_import prints its oid: {}", stdout(&o)));

    let back = w.dir.path().join("blob.out");
    let o = psql(
        &write,
        &[&format!("\\lo_export {oid} '{}'", back.display())],
    );
    assert!(o.status.success(), "lo_export: {}", stderr(&o));
    assert!(
        std::fs::read(&back).unwrap() == data,
        "the object comes back as written"
    );

    // Read access: the same rule as `SELECT lo_open(...)`, not a blanket
    // fast-path refusal, and nothing of it ran.
    let o = psql(&read, &[&format!("\\lo_export {oid} '{}'", back.display())]);
    assert!(
        !o.status.success(),
        "a read session exported a large object"
    );
    let err = stderr(&o);
    assert!(err.contains("(rule large_object)"), "{err}");

    let o = psql(&write, &[&format!("\\lo_unlink {oid}")]);
    assert!(o.status.success(), "lo_unlink: {}", stderr(&o));

    // Each call is in the audit log under the function's name.
    let lines = audit_lines(&w);
    for call in [
        "pg_catalog.lowrite($1, $2)",
        "pg_catalog.loread($1, $2)",
        "pg_catalog.lo_unlink($1)",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(call)),
            "no audit record of {call}"
        );
    }
    // With its arguments, as a Bind of the statement: the unlinked OID, and
    // for each lowrite the descriptor and the (bounded) data written.
    let entries = common::audit_entries(&w.data_dir());
    let args_of = |needle: &str| -> Vec<Vec<airlock_audit::BoundParam>> {
        let calls: Vec<(String, u64)> = entries
            .iter()
            .filter_map(|e| match &e.event {
                airlock_audit::Event::Statement(s) if s.display_text().contains(needle) => {
                    Some((s.session.clone(), s.n))
                }
                _ => None,
            })
            .collect();
        calls
            .iter()
            .map(|(session, n)| {
                entries
                    .iter()
                    .find_map(|e| match &e.event {
                        airlock_audit::Event::Bind(b) if &b.session == session && b.n == *n => {
                            Some(b.params.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("no arguments recorded for {needle} #{n}"))
            })
            .collect()
    };
    let unlink = args_of("pg_catalog.lo_unlink($1)");
    assert_eq!(unlink.len(), 1);
    assert_eq!(unlink[0].len(), 1);
    assert_eq!(unlink[0][0].len, 4, "an oid, in binary");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(unlink[0][0].base64.as_deref().unwrap())
        .unwrap();
    assert_eq!(u32::from_be_bytes(bytes.try_into().unwrap()), oid);
    let writes = args_of("pg_catalog.lowrite($1, $2)");
    assert!(writes.len() > 1, "{} lowrite calls", writes.len());
    let written: i64 = writes.iter().map(|p| p[1].len).sum();
    assert_eq!(
        written,
        data.len() as i64,
        "every byte written is accounted for"
    );
    w.stop().await;
}

/// The gateway names fast-path calls by the built-in OIDs in its table;
/// they must be the server's own. A wrong entry would decide a call as a
/// different function than the one that runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_table_is_the_servers_catalog() {
    let w = World::start().await;
    let write = w.connect("lead1", "write").await;
    let client = w.tokio_pg(&write).await;
    for &(oid, name, arity) in airlock_proxy::gate::FAST_PATH_FUNCTIONS {
        let row = client
            .query_one(
                "select proname::text, pronargs::int, n.nspname::text from pg_catalog.pg_proc p \
                 join pg_catalog.pg_namespace n on n.oid = p.pronamespace where p.oid = $1::int::oid",
                &[&(oid as i32)],
            )
            .await
            .unwrap_or_else(|e| panic!("oid {oid} ({name}) is in pg_proc: {e}"));
        assert_eq!(row.get::<_, String>(0), name, "oid {oid}");
        assert_eq!(row.get::<_, i32>(1) as usize, arity, "{name}");
        assert_eq!(row.get::<_, String>(2), "pg_catalog", "{name}");
    }
    w.stop().await;
}

/// Under masking or `max_rows` a fast-path call is still refused: its
/// answer (a FunctionCallResponse) has no columns for the result filter to
/// mask or count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_calls_are_refused_where_results_are_filtered() {
    let policy = format!(
        "[[resource.masking]]\ncolumns = [\"email\"]\n{}",
        common::DEFAULT_POLICY
    );
    let w = World::start_with(common::Options {
        policy: Some(policy),
        ..common::Options::default()
    })
    .await;
    let write = w.connect("lead1", "write").await;
    let file = w.dir.path().join("small.in");
    std::fs::write(&file, b"hello").unwrap();
    let o = psql(&write, &[&format!("\\lo_import '{}'", file.display())]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("Airlock refuses this fast-path function call"),
        "{err}"
    );
    w.stop().await;
}
