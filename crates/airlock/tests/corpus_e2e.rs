//! Every write and every refused text of the classification corpus, sent
//! through a read session of the real gateway to a real PostgreSQL: each is
//! refused by the gateway (25006 for writes, 42601 or 0A000 for what is
//! refused at every level), and the database is unchanged afterwards: rows,
//! sequences, objects, roles, large objects, prepared transactions, slots,
//! the session's locks and its settings.

mod common;

use common::{Options, World};
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    sql: String,
    class: String,
    rule: String,
}

/// The objects the corpus names, with privileges generous enough that the
/// database's own permission checks would not be what stops a write.
const FIXTURE: &str = r#"
CREATE TABLE IF NOT EXISTS archive (LIKE orders);
CREATE TABLE IF NOT EXISTS audit_log (id serial PRIMARY KEY, msg text);
CREATE TABLE IF NOT EXISTS t (id int, a int, b text, "update" int, "insert" int);
INSERT INTO t VALUES (1, 1, 'x', 1, 1), (2, 2, 'y', 2, 2);
CREATE SEQUENCE IF NOT EXISTS s;
CREATE SEQUENCE IF NOT EXISTS order_seq;
CREATE OR REPLACE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
CREATE OR REPLACE FUNCTION "NextVal"(text) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE OR REPLACE PROCEDURE archive_orders() LANGUAGE sql AS 'SELECT 1';
CREATE OR REPLACE PROCEDURE p(int) LANGUAGE sql AS 'SELECT 1';
CREATE OR REPLACE VIEW open_orders AS SELECT * FROM orders WHERE status = 'pending';
CREATE MATERIALIZED VIEW IF NOT EXISTS order_totals AS
    SELECT customer_id, sum(total_cents) AS total FROM orders GROUP BY 1;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO orders_ro;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO orders_ro;
GRANT CREATE ON SCHEMA public TO orders_ro;
"#;

/// One line that changes if anything the corpus could touch changed.
const STATE: &str = r#"
SELECT concat_ws(' ',
  (SELECT count(*) FROM orders), (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o),
  (SELECT count(*) FROM customers), (SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM customers c),
  (SELECT count(*) FROM archive), (SELECT count(*) FROM audit_log),
  (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t),
  (SELECT last_value || '/' || is_called FROM s), (SELECT last_value || '/' || is_called FROM order_seq),
  (SELECT last_value FROM orders_id_seq), (SELECT last_value FROM customers_id_seq),
  (SELECT md5(string_agg(relname::text || relkind::text || coalesce(relacl::text, ''), ',' ORDER BY relname))
     FROM pg_class WHERE relnamespace = 'public'::regnamespace),
  (SELECT md5(string_agg(proname::text || prosrc, ',' ORDER BY proname)) FROM pg_proc
     WHERE pronamespace = 'public'::regnamespace),
  (SELECT count(*) FROM pg_namespace), (SELECT count(*) FROM pg_roles),
  (SELECT count(*) FROM pg_database), (SELECT count(*) FROM pg_extension),
  (SELECT count(*) FROM pg_largeobject_metadata), (SELECT count(*) FROM pg_prepared_xacts),
  (SELECT count(*) FROM pg_replication_slots), (SELECT count(*) FROM pg_db_role_setting),
  (SELECT count(*) FROM pg_policy), (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_in_the_corpus_changes_anything_under_read_access() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpus/sql-classification.toml"
    ))
    .unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    // The fixture lets the read credential write: the gateway must hold
    // alone, so the check that would refuse such a credential is waived.
    let w = World::start_with(Options {
        resource_extra: "read_credential_can_write = \"allow\"".into(),
        ..Options::default()
    })
    .await;
    w.cluster.psql("orders", FIXTURE).unwrap();
    let before = w.cluster.psql("orders", STATE).unwrap();

    let read = w.connect("oncall1", "read").await;
    let db = w.tokio_pg(&read).await;
    let mut tried = 0;
    let mut wrong = Vec::new();
    for c in corpus.case.iter().filter(|c| c.class != "read") {
        tried += 1;
        let expected = match (c.class.as_str(), c.rule.as_str()) {
            ("write", _) => "25006",
            (_, "syntax_error") => "42601",
            _ => "0A000",
        };
        match db.batch_execute(&c.sql).await {
            Ok(()) => wrong.push(format!("{:?}: ran", c.sql)),
            Err(e) => {
                let code = e.as_db_error().map(|d| d.code().code().to_owned());
                if code.as_deref() != Some(expected) {
                    wrong.push(format!("{:?}: expected {expected}, got {e}", c.sql));
                }
            }
        }
        assert!(!db.is_closed(), "the session died after {:?}", c.sql);
    }
    assert!(tried >= 300, "only {tried} write/refused cases");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The session itself: no locks held, settings as the gateway set them.
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() \
                     AND locktype = 'advisory'), \
                    current_setting('transaction_read_only'), \
                    current_setting('default_transaction_read_only'), \
                    current_setting('standard_conforming_strings'), \
                    current_setting('search_path'), current_user::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    assert_eq!(row.get::<_, String>(1), "on");
    assert_eq!(row.get::<_, String>(2), "on");
    assert_eq!(row.get::<_, String>(3), "on");
    assert_eq!(row.get::<_, String>(4), "\"$user\", public");
    assert_eq!(row.get::<_, String>(5), "orders_ro");
    drop(db);

    let after = w.cluster.psql("orders", STATE).unwrap();
    assert_eq!(before, after, "the database changed");
    w.stop().await;
}
