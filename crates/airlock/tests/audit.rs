//! The audit log through a real gateway and PostgreSQL: every statement,
//! allowed or refused, is recorded with its classification and decision
//! before it is forwarded; sessions, access events and the gateway's own
//! start and stop are in the chain; `airlock audit verify` passes, and fails
//! on a tampered copy; a full disk refuses statements (none forwarded) and
//! the gateway recovers when space returns.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use airlock_audit::read::Entry;
use airlock_audit::Event;
use common::{
    audit_entries as entries, sqlstate as code, stderr, stdout, Options, World, DEFAULT_POLICY,
};

fn airlock(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_CONFIG", config)
        .env("AIRLOCK_LOG", "warn")
        .output()
        .expect("airlock runs")
}

fn statements(entries: &[Entry]) -> Vec<airlock_audit::Statement> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Statement(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_sessions_and_access_events_are_chained_and_verify() {
    let w = World::start().await;
    let config = w.dir.path().join("airlock.toml");
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    client
        .simple_query("SELECT 1 AS one; SELECT 'two'")
        .await
        .unwrap();
    client
        .query("SELECT id FROM customers WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    let e = client
        .simple_query("DELETE FROM customers")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006", "{e}");
    drop(client);
    // A login with a wrong password is refused, and recorded.
    let mut bad = w.tokio_pg_config(&conn);
    bad.password("not-the-password");
    let e = bad.connect(w.tls(&conn)).await.err().expect("refused");
    assert_eq!(code(&e), "28P01", "{e}");

    // The session's end is written when the relay notices the client left.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = entries(&w.data_dir());
        if all
            .iter()
            .any(|e| matches!(e.event, Event::SessionEnd { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kinds: Vec<&str> = all.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds[0], "gateway_started", "{kinds:?}");
    // The credential was minted through the API: an access event.
    assert!(
        all.iter()
            .any(|e| matches!(&e.event, Event::Access { event, actor, .. }
            if event == "credential.issued" && actor == "oncall1")),
        "{kinds:?}"
    );
    // The token behind that API call was issued offline; the gateway
    // recorded its issuance before accepting it (never its secret or hash).
    let position = |name: &str| {
        all.iter()
            .position(|e| matches!(&e.event, Event::Access { event, .. } if event == name))
    };
    let issued = position("token.issued").expect("token issuance recorded");
    assert!(issued < position("credential.issued").unwrap(), "{kinds:?}");
    let Event::Access { data, text, .. } = &all[issued].event else {
        unreachable!()
    };
    assert_eq!(data["token"]["user"], "oncall1", "{data}");
    assert!(
        data["token"].get("hash").is_none() && !text.contains("alk_"),
        "{data} {text}"
    );
    let start = all
        .iter()
        .find_map(|e| match &e.event {
            Event::SessionStart(s) => Some(s.clone()),
            _ => None,
        })
        .expect("session start recorded");
    assert_eq!(
        (
            start.user.as_str(),
            start.resource.as_str(),
            start.access.as_str()
        ),
        ("oncall1", "orders", "read")
    );
    assert!(start.tls);
    assert_eq!(start.credential, conn.credential.id);
    assert_eq!(start.roles, vec!["oncall".to_owned()]);

    let refused = all
        .iter()
        .find_map(|e| match &e.event {
            Event::LoginRefused {
                user,
                resource,
                sqlstate,
                client_addr,
                reason,
                ..
            } => Some((user, resource, sqlstate, client_addr, reason)),
            _ => None,
        })
        .expect("the refused login is recorded");
    assert_eq!(refused.0, &conn.credential.user);
    assert_eq!(refused.1, "orders");
    assert_eq!(refused.2, "28P01");
    assert!(refused.3.starts_with("127.0.0.1:"), "{refused:?}");
    assert!(!refused.4.contains("not-the-password"), "{refused:?}");

    let st = statements(&all);
    let texts: Vec<String> = st.iter().map(|s| s.display_text()).collect();
    // Raw text as the client sent it, once per Query or Parse.
    assert!(
        texts.contains(&"SELECT 1 AS one; SELECT 'two'".to_owned()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"SELECT id FROM customers WHERE id = $1".to_owned()),
        "{texts:?}"
    );
    let multi = st
        .iter()
        .find(|s| s.display_text().starts_with("SELECT 1 AS one"))
        .unwrap();
    assert_eq!(multi.classified.len(), 2);
    assert_eq!(multi.protocol, "simple");
    assert_eq!(multi.decision, "allowed");
    let ext = st.iter().find(|s| s.display_text().contains("$1")).unwrap();
    assert_eq!(ext.protocol, "extended");
    let delete = st
        .iter()
        .find(|s| s.display_text() == "DELETE FROM customers")
        .unwrap();
    assert_eq!(delete.decision, "refused");
    assert_eq!(delete.rule, "delete");
    assert_eq!(delete.sqlstate.as_deref(), Some("25006"));
    assert_eq!(delete.classified[0].kind, "delete");
    // Numbered in order within the session.
    let ns: Vec<u64> = st.iter().map(|s| s.n).collect();
    assert_eq!(ns, (1..=ns.len() as u64).collect::<Vec<_>>());

    // The index (what `audit`, `audit sessions` and `replay` read) agrees.
    let sessions = airlock(&["audit", "sessions", "--json"], &config);
    assert!(sessions.status.success(), "{sessions:?}");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&sessions.stdout).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["statement_count"], st.len() as i64);
    assert_eq!(list[0]["refused_count"], 1);
    let sid = list[0]["id"].as_str().unwrap().to_owned();
    let replay = airlock(&["replay", &sid], &config);
    let text = stdout(&replay);
    assert!(replay.status.success(), "{replay:?}");
    assert!(text.contains("DELETE FROM customers"), "{text}");
    assert!(text.contains("refused [delete]"), "{text}");
    let found = airlock(
        &["audit", "--grep", "customers", "--kind", "statement"],
        &config,
    );
    let text = stdout(&found);
    assert_eq!(text.lines().count(), 2, "{text}");
    let json = airlock(
        &[
            "audit",
            "--user",
            "oncall1",
            "--json",
            "--kind",
            "statement",
        ],
        &config,
    );
    for line in stdout(&json).lines() {
        let e: Entry = serde_json::from_str(line).unwrap();
        assert!(matches!(e.event, Event::Statement(_)));
    }
    let bad = airlock(&["audit", "--kind", "statments"], &config);
    assert!(!bad.status.success());
    assert!(common::stderr(&bad).contains("unknown --kind"), "{bad:?}");

    // The API's session listing reads the same index.
    let api = w.api("oncall1");
    let via_api: Vec<serde_json::Value> = api.get("/api/v1/sessions").await.unwrap();
    assert_eq!(via_api[0]["id"], sid.as_str());
    let stmts: Vec<serde_json::Value> = api
        .get(&format!("/api/v1/sessions/{sid}/statements"))
        .await
        .unwrap();
    assert_eq!(stmts.len(), st.len());
    let health: serde_json::Value = w
        .http_client()
        .get(format!("{}/healthz", w.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["audit"]["status"], "ok");

    // Stop the gateway: the chain is sealed, and verifies.
    let data_dir = w.data_dir();
    let dir = w.dir.path().to_path_buf();
    let keep = tempfile::tempdir().unwrap();
    w.stop_keeping_files(keep.path()).await;
    let audit_dir = keep.path().join("audit");
    let verify = airlock(&["audit", "verify", audit_dir.to_str().unwrap()], &config);
    let text = stdout(&verify);
    assert!(
        verify.status.success(),
        "{text}\n{}",
        common::stderr(&verify)
    );
    assert!(text.ends_with("OK\n"), "{text}");
    assert!(!text.contains("unsealed"), "closed cleanly: {text}");
    let _ = (data_dir, dir);

    // Exported with its chain fields, it verifies elsewhere with the key.
    let pem = keep.path().join("key.pem");
    std::fs::copy(audit_dir.join(airlock_audit::PUBLIC_KEY_FILE), &pem).unwrap();
    let export = keep.path().join("export.jsonl");
    let mut lines = Vec::new();
    for seg in airlock_audit::segment::list(&audit_dir).unwrap() {
        lines.extend(std::fs::read(&seg.path).unwrap());
    }
    std::fs::write(&export, &lines).unwrap();
    let ok = airlock(
        &[
            "audit",
            "verify",
            "--public-key",
            pem.to_str().unwrap(),
            export.to_str().unwrap(),
        ],
        &config,
    );
    assert!(ok.status.success(), "{}", stdout(&ok));

    // One changed byte in a statement's text: named, and exit code 1.
    let seg = airlock_audit::segment::list(&audit_dir).unwrap()[0]
        .path
        .clone();
    let bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(b"DELETE FROM customers".len())
        .position(|w| w == b"DELETE FROM customers")
        .unwrap();
    let mut tampered = bytes.clone();
    tampered[at] = b'd';
    std::fs::write(&seg, &tampered).unwrap();
    let failed = airlock(
        &[
            "audit",
            "verify",
            "--public-key",
            pem.to_str().unwrap(),
            audit_dir.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    let text = stdout(&failed);
    assert!(
        text.contains("FAILED: record") && text.contains("modified"),
        "{text}"
    );
}

fn completions(entries: &[Entry]) -> Vec<airlock_audit::StatementDone> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::StatementDone(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Waits until the session's end is in the log, then returns every record.
async fn entries_after_session_end(data_dir: &Path) -> Vec<Entry> {
    for _ in 0..100 {
        let all = entries(data_dir);
        if all
            .iter()
            .any(|e| matches!(e.event, Event::SessionEnd { .. }))
        {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the session's end was never recorded");
}

/// The error text a refused API call gives (status and message).
async fn refused(api: &airlock::client::Api, path: &str) -> String {
    api.get::<serde_json::Value>(path)
        .await
        .expect_err("refused")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_statement_end_is_recorded_with_rows_errors_and_masked_first_rows() {
    let policy = format!(
        r#"
[[resource.masking]]
columns = ["email"]
detectors = ["phone"]

[audit]
replay_rows = 3
auditor_roles = ["sre-lead"]
{DEFAULT_POLICY}"#
    );
    let w = World::start_with(Options {
        policy: Some(policy),
        ..Options::default()
    })
    .await;
    let config = w.dir.path().join("airlock.toml");
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    // Simple protocol: one record per Query, for all its statements.
    client
        .simple_query("SELECT id, name, email, phone FROM customers ORDER BY id LIMIT 5; SELECT 2")
        .await
        .unwrap();
    let e = client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01");
    let e = client
        .simple_query("DELETE FROM customers WHERE id = 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25006");
    // Extended protocol: prepared once, executed twice (binary results).
    let stmt = client
        .prepare("SELECT id, email FROM customers WHERE id = $1")
        .await
        .unwrap();
    for id in [7i32, 8] {
        client.query_one(&stmt, &[&id]).await.unwrap();
    }
    // A failing Bind (a value the type rejects) fails its Execute.
    let e = client
        .query("SELECT $1::int / 0", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22012");
    drop(client);
    let all = entries_after_session_end(&w.data_dir()).await;
    let st = statements(&all);
    let done = completions(&all);
    let n_of = |text: &str| {
        st.iter()
            .find(|s| s.display_text().starts_with(text))
            .unwrap_or_else(|| panic!("no record of {text}"))
            .n
    };
    let of = |n: u64| -> Vec<&airlock_audit::StatementDone> {
        done.iter().filter(|d| d.n == n).collect()
    };

    let first = of(n_of("SELECT id, name, email, phone"));
    assert_eq!(first.len(), 1, "{done:?}");
    let d = first[0];
    assert_eq!(d.tags, vec!["SELECT 5", "SELECT 1"]);
    assert_eq!(d.rows, 6);
    assert_eq!(d.sqlstate, None);
    assert_eq!(d.columns, vec!["id", "name", "email", "phone"]);
    // replay_rows = 3, of the first result only, masked as the client saw them.
    assert_eq!(d.first_rows.len(), 3);
    assert_eq!(
        d.first_rows[0],
        vec![
            Some("1".to_owned()),
            Some("Customer 001".to_owned()),
            Some("[masked]".to_owned()),
            Some("[masked]".to_owned())
        ]
    );

    let missing = of(n_of("SELECT * FROM no_such_table"));
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].sqlstate.as_deref(), Some("42P01"));
    assert!(missing[0]
        .error
        .as_deref()
        .unwrap()
        .contains("no_such_table"));
    // A refused statement never ran: its record holds the refusal, no end.
    assert!(of(n_of("DELETE FROM customers")).is_empty(), "{done:?}");

    let runs = of(n_of("SELECT id, email FROM customers WHERE id = $1"));
    assert_eq!(runs.len(), 2, "one record per Execute: {done:?}");
    for (run, id) in runs.iter().zip([7, 8]) {
        assert_eq!(run.tags, vec!["SELECT 1"]);
        assert_eq!(run.rows, 1);
        assert_eq!(run.columns, vec!["id", "email"]);
        // Binary values are decoded where the type is known; the masked
        // email as the client got it.
        assert_eq!(run.first_rows.len(), 1);
        assert_eq!(
            run.first_rows[0][0].as_deref(),
            Some(id.to_string().as_str())
        );
        assert_eq!(run.first_rows[0][1].as_deref(), Some("[masked]"));
    }
    let div = of(n_of("SELECT $1::int / 0"));
    assert_eq!(div.len(), 1, "{done:?}");
    assert_eq!(div[0].sqlstate.as_deref(), Some("22012"));

    // No unmasked value reached the log.
    for seg in airlock_audit::segment::list(&airlock_audit::audit_dir(&w.data_dir())).unwrap() {
        let text = std::fs::read_to_string(&seg.path).unwrap();
        assert!(!text.contains("@example.com"), "an email in the audit log");
    }

    // The replay shows it all, through the index.
    let session = st[0].session.clone();
    let out = airlock(&["replay", &session], &config);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("done in"), "{text}");
    assert!(text.contains("SELECT 5, SELECT 1"), "{text}");
    assert!(
        text.contains("1 | Customer 001 | [masked] | [masked]"),
        "{text}"
    );
    assert!(
        text.contains("failed after") && text.contains("42P01"),
        "{text}"
    );

    // The API gives the same to the console: each statement with its runs.
    let api = w.api("oncall1");
    let path = format!("/api/v1/sessions/{session}/statements");
    let mut stmts: Vec<serde_json::Value> = Vec::new();
    for _ in 0..100 {
        stmts = api.get(&path).await.unwrap();
        if stmts.len() == st.len()
            && stmts
                .iter()
                .any(|s| s["runs"].as_array().is_some_and(|r| r.len() == 2))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let prepared = stmts
        .iter()
        .find(|s| s["text"] == "SELECT id, email FROM customers WHERE id = $1")
        .unwrap();
    assert_eq!(prepared["runs"].as_array().unwrap().len(), 2, "{prepared}");
    assert_eq!(prepared["runs"][1]["first_rows"][0][1], "[masked]");
    assert!(prepared["runs"][0]["duration_us"].as_u64().unwrap() > 0);

    // Search through the API: anyone, their own records; an auditor,
    // everyone's; verify for auditors only.
    let found: serde_json::Value = api
        .get("/api/v1/audit?kind=statement&grep=no_such_table")
        .await
        .unwrap();
    let records = found["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{found}");
    assert_eq!(records[0]["kind"], "statement");
    assert_eq!(
        records[0]["prev"].as_str().unwrap().len(),
        64,
        "chain fields"
    );
    let text = refused(&api, "/api/v1/audit?user=lead1").await;
    assert!(
        text.contains("auditor_roles") && text.contains("403"),
        "{text}"
    );
    let text = refused(&api, "/api/v1/audit/verify").await;
    assert!(
        text.contains("auditor_roles") && text.contains("403"),
        "{text}"
    );
    let text = refused(&api, "/api/v1/audit?kind=statments").await;
    assert!(
        text.contains("unknown record kind") && text.contains("400"),
        "{text}"
    );
    let lead = w.api("lead1");
    let theirs: serde_json::Value = lead
        .get(&format!(
            "/api/v1/audit?user=oncall1&session={session}&kind=statement_done&limit=2"
        ))
        .await
        .unwrap();
    let records = theirs["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "the newest two: {theirs}");
    assert_eq!(records[1]["sqlstate"], "22012", "{theirs}");
    // Sessions: an auditor lists anyone's, others only their own.
    let listed: Vec<serde_json::Value> = lead
        .get("/api/v1/sessions?user=oncall1&since_ms=0")
        .await
        .unwrap();
    assert!(
        listed.iter().any(|s| s["id"] == session.as_str()),
        "{listed:?}"
    );
    let text = refused(&api, "/api/v1/sessions?user=lead1").await;
    assert!(
        text.contains("auditor_roles") && text.contains("403"),
        "{text}"
    );
    let report: serde_json::Value = lead.get("/api/v1/audit/verify").await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["records"].as_u64().unwrap() > 10, "{report}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_statements_and_the_gateway_recovers() {
    // The data directory on a small tmpfs of its own.
    let w = World::start_with(Options {
        data_dir_tmpfs: Some(8 * 1024 * 1024),
        policy: Some(format!("{DEFAULT_POLICY}\n[audit]\nfsync = \"batched\"\n")),
        ..Options::default()
    })
    .await;
    w.cluster
        .psql(
            "orders",
            "CREATE TABLE audit_probe (n int); GRANT ALL ON audit_probe TO orders_rw;",
        )
        .unwrap();
    let conn = w.connect("lead1", "write").await;
    let client = w.tokio_pg(&conn).await;
    client
        .simple_query("INSERT INTO audit_probe VALUES (1)")
        .await
        .unwrap();

    // Fill the disk.
    let filler = w.data_dir().join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // The segment's last page may still have room for a record or two.
    let mut full = false;
    for _ in 0..200 {
        match client.simple_query("SELECT 1").await {
            Ok(_) => continue,
            Err(e) => {
                assert_eq!(code(&e), "53100", "{e}");
                full = true;
                break;
            }
        }
    }
    assert!(full, "the audit log never ran out of space");
    // Both protocols are refused with 53100, and nothing reaches PostgreSQL.
    let e = client
        .simple_query("INSERT INTO audit_probe VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "53100", "{e}");
    let msg = e.as_db_error().unwrap();
    assert!(
        msg.message().contains("audit record could not be written"),
        "{}",
        msg.message()
    );
    assert!(
        msg.detail().unwrap_or("").contains("nothing was sent"),
        "{msg:?}"
    );
    let e = client
        .execute("INSERT INTO audit_probe VALUES ($1)", &[&3i32])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "53100", "{e}");
    let count = w
        .cluster
        .psql("orders", "SELECT count(*) FROM audit_probe")
        .unwrap();
    assert_eq!(
        count.trim(),
        "1",
        "only the statement recorded before the disk filled ran"
    );
    // The health endpoint says so.
    let r = w
        .http_client()
        .get(format!("{}/healthz", w.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let health: serde_json::Value = r.json().await.unwrap();
    assert_eq!(health["audit"]["status"], "failing", "{health}");
    // The session goes on: the refusal was a statement error.
    assert!(!client.is_closed());

    // Space returns: statements run again and are recorded.
    std::fs::remove_file(&filler).unwrap();
    client
        .simple_query("INSERT INTO audit_probe VALUES (4)")
        .await
        .unwrap();
    client
        .execute("INSERT INTO audit_probe VALUES ($1)", &[&5i32])
        .await
        .unwrap();
    let count = w
        .cluster
        .psql("orders", "SELECT count(*) FROM audit_probe")
        .unwrap();
    assert_eq!(count.trim(), "3");
    let r = w
        .http_client()
        .get(format!("{}/healthz", w.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(client);
    let texts: Vec<String> = statements(&entries(&w.data_dir()))
        .iter()
        .map(|s| s.display_text())
        .collect();
    // Every statement that ran has its record; the refused ones have none.
    assert!(texts.contains(&"INSERT INTO audit_probe VALUES (1)".to_owned()));
    assert!(texts.contains(&"INSERT INTO audit_probe VALUES (4)".to_owned()));
    assert!(!texts.contains(&"INSERT INTO audit_probe VALUES (2)".to_owned()));
    let keep = tempfile::tempdir().unwrap();
    w.stop_keeping_files(keep.path()).await;
    let report = airlock_audit::verify_dir(
        &keep.path().join("audit"),
        &airlock_audit::Expect {
            key: Some(
                airlock_audit::PublicKey::read(
                    &keep
                        .path()
                        .join("audit")
                        .join(airlock_audit::PUBLIC_KEY_FILE),
                )
                .unwrap(),
            ),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.problem);
}

/// SIGKILL while pgbench runs through the gateway (`fsync = "batched"`):
/// after a restart the chain verifies, and every statement PostgreSQL
/// executed (its own `log_statement = 'all'` log is the ground truth) has
/// its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_loses_no_record_of_what_ran() {
    let mut w = World::start_with(Options {
        subprocess: true,
        policy: Some(format!("{DEFAULT_POLICY}\n[audit]\nfsync = \"batched\"\n")),
        ..Options::default()
    })
    .await;
    w.cluster
        .psql(
            "postgres",
            "ALTER SYSTEM SET log_statement = 'all'; SELECT pg_reload_conf();",
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config = w.dir.path().join("airlock.toml");
    let conn = w.connect("oncall1", "read").await;
    let script = w.dir.path().join("probe.sql");
    std::fs::write(
        &script,
        "\\set n random(1, 1000000000)\nSELECT :n AS crash_probe;\n",
    )
    .unwrap();
    let mut pgbench = Command::new("pgbench")
        .args(["-n", "-M", "simple", "-c", "4", "-j", "2", "-T", "30", "-f"])
        .arg(&script)
        .envs(conn.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(w.dir.path().join("pgbench.log")).unwrap())
        .spawn()
        .expect("pgbench runs");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SIGKILL: no shutdown path runs.
    let mut child = w.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = tokio::task::spawn_blocking(move || pgbench.wait()).await;

    // Restart on the same config and data directory.
    let restarted = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("AIRLOCK_LOG", "info")
        .stderr(std::fs::File::create(w.dir.path().join("gateway2.log")).unwrap())
        .spawn()
        .unwrap();
    w.child = Some(restarted);
    let mut up = false;
    for _ in 0..400 {
        if let Ok(r) = w
            .http_client()
            .get(format!("{}/healthz", w.http()))
            .send()
            .await
        {
            up = r.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the gateway restarts on its own log");
    // Then stop it cleanly, so the whole log is at rest for verify.
    let mut child = w.child.take().unwrap();
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());

    let verify = airlock(&["audit", "verify"], &config);
    assert!(
        verify.status.success(),
        "{}\n{}",
        stdout(&verify),
        common::stderr(&verify)
    );

    let recorded: std::collections::HashSet<String> = statements(&entries(&w.data_dir()))
        .iter()
        .map(|s| s.display_text())
        .collect();
    let log = std::fs::read_to_string(w.cluster.log_file()).unwrap();
    let executed: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("statement: ").map(|(_, s)| s))
        .filter(|s| s.trim_end_matches(';').ends_with("AS crash_probe"))
        .collect();
    assert!(
        executed.len() > 100,
        "pgbench ran: {} statements\npgbench: {}\nlog tail: {}",
        executed.len(),
        std::fs::read_to_string(w.dir.path().join("pgbench.log")).unwrap_or_default(),
        log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
    );
    let missing: Vec<&&str> = executed
        .iter()
        .filter(|s| !recorded.contains(&format!("{s};")) && !recorded.contains(**s))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} executed statements have no audit record, e.g. {:?}",
        missing.len(),
        executed.len(),
        missing.first()
    );
    // The sessions the kill cut off were ended in the log at restart.
    assert!(entries(&w.data_dir()).iter().any(|e| matches!(&e.event,
        Event::SessionEnd { reason, .. } if reason == "gateway restarted")));
}

/// Issue 18: a log cut back on a record boundary (checkpoints and all)
/// verified OK. The gateway (the real binary) prints an anchor for its
/// checkpoints on standard output; `airlock audit verify --anchors` with
/// those lines catches the cut, and passes on the log as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_back_fails_verify_against_the_anchors_the_gateway_sent() {
    let mut w = World::start_with(Options {
        subprocess: true,
        policy: Some(format!(
            "{DEFAULT_POLICY}\n[audit]\ncheckpoint_every = 5\ncheckpoint_interval = \"1s\"\n"
        )),
        ..Options::default()
    })
    .await;
    let config = w.dir.path().join("airlock.toml");
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    // Anchors go out at most once a second: statements over a few seconds.
    for i in 0..8 {
        client
            .simple_query(&format!("SELECT {i} AS anchored"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    drop(client);
    // SIGTERM: the clean stop, whose closing checkpoint is anchored too.
    let mut child = w.child.take().unwrap();
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());

    let out = w.dir.path().join("gateway.out");
    let sent = std::fs::read_to_string(&out).unwrap();
    let anchors = airlock_audit::Anchor::read_all(&sent);
    assert!(anchors.len() >= 3, "anchors on stdout:\n{sent}");
    // Some log lines around them, as a collector would keep them.
    let collected = w.dir.path().join("collected.log");
    std::fs::write(
        &collected,
        format!("Dec 07 21:34:35 host airlock[1]: listening\n{sent}not json {{\n"),
    )
    .unwrap();
    let audit_dir = airlock_audit::audit_dir(&w.data_dir());
    let pem = w.dir.path().join("pinned.pem");
    std::fs::copy(audit_dir.join(airlock_audit::PUBLIC_KEY_FILE), &pem).unwrap();
    let verify = |anchors: bool| {
        let mut args = vec!["audit", "verify", "--public-key", pem.to_str().unwrap()];
        if anchors {
            args.extend(["--anchors", collected.to_str().unwrap()]);
        }
        airlock(&args, &config)
    };
    let ok = verify(true);
    assert!(ok.status.success(), "{}\n{}", stdout(&ok), stderr(&ok));
    assert!(
        stdout(&ok).contains(&format!("anchors      {} checked", anchors.len())),
        "{}",
        stdout(&ok)
    );

    // Cut the log back to just after the first anchored checkpoint.
    let first = anchors.iter().map(|a| a.seq).min().unwrap();
    let last = anchors.iter().map(|a| a.seq).max().unwrap();
    let segs = airlock_audit::segment::list(&audit_dir).unwrap();
    assert_eq!(segs.len(), 1);
    let bytes = std::fs::read(&segs[0].path).unwrap();
    let (lines, _) = airlock_audit::segment::lines(&bytes);
    let keep = lines
        .iter()
        .position(|(_, l)| airlock_audit::record::parse_head(l).unwrap().seq == first)
        .unwrap();
    let end = lines[keep + 1].0 as usize;
    std::fs::write(&segs[0].path, &bytes[..end]).unwrap();
    // On its own, what is left still verifies...
    let alone = verify(false);
    assert!(alone.status.success(), "{}", stdout(&alone));
    // ...but not against the anchors.
    let failed = verify(true);
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    let text = stdout(&failed);
    assert!(
        text.contains("FAILED: record")
            && text.contains("truncated")
            && text.contains("sent off the host"),
        "{text}"
    );
    assert!(last > first, "{first} {last}");
}

/// Issue 18: the API's verify read only the files, so records cut from
/// them while the gateway runs went unnoticed; it compares them with the
/// writer's own count now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_verify_finds_records_cut_from_a_live_log() {
    let w = World::start_with(Options {
        policy: Some(format!(
            "{DEFAULT_POLICY}\n[audit]\nauditor_roles = [\"sre-lead\"]\ncheckpoint_interval = \"1s\"\n"
        )),
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    for i in 0..5 {
        client
            .simple_query(&format!("SELECT {i} AS live"))
            .await
            .unwrap();
    }
    drop(client);
    let lead = w.api("lead1");
    // Wait until everything is sealed, so nothing more is written.
    let mut sealed = false;
    for _ in 0..100 {
        let report: serde_json::Value = lead.get("/api/v1/audit/verify").await.unwrap();
        assert_eq!(report["ok"], true, "{report}");
        if report["unsealed"] == 0 && report["in_progress_bytes"] == 0 {
            sealed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sealed, "the live log is sealed within its interval");
    let segs = airlock_audit::segment::list(&airlock_audit::audit_dir(&w.data_dir())).unwrap();
    let path = &segs.last().unwrap().path;
    let bytes = std::fs::read(path).unwrap();
    let (lines, _) = airlock_audit::segment::lines(&bytes);
    let cut = lines[lines.len() - 3].0 as usize;
    std::fs::write(path, &bytes[..cut]).unwrap();
    let report: serde_json::Value = lead.get("/api/v1/audit/verify").await.unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["problem"]["kind"], "truncated", "{report}");
    assert!(
        report["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("while it runs"),
        "{report}"
    );
    w.stop().await;
}

/// The `audit.checkpoint` webhook carries the anchors to a receiver that
/// asked for them (by name); its bodies, kept one per line, are what
/// `verify --anchors` reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_a_webhook_that_names_them_and_anchor_the_log() {
    use std::sync::{Arc, Mutex};
    const SECRET_ENV: &str = "AIRLOCK_TEST_ANCHOR_WEBHOOK_SECRET";
    std::env::set_var(SECRET_ENV, "anchor-hook-secret");
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = bodies.clone();
    let app = axum::Router::new().route(
        "/anchors",
        axum::routing::post(move |body: String| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let w = World::start_with(Options {
        policy: Some(format!(
            "{DEFAULT_POLICY}\n[audit]\ncheckpoint_interval = \"1s\"\nanchors = [\"webhook\"]\n\n[[webhook]]\nurl = \"http://{addr}/anchors\"\nevents = [\"audit.checkpoint\"]\nsecret_env = \"{SECRET_ENV}\"\n"
        )),
        ..Options::default()
    })
    .await;
    let config = w.dir.path().join("airlock.toml");
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    // Two rounds, each sealed within the interval and announced.
    for round in 1..=2 {
        client
            .simple_query(&format!("SELECT {round} AS hooked"))
            .await
            .unwrap();
        let mut arrived = false;
        for _ in 0..100 {
            if bodies.lock().unwrap().len() >= round {
                arrived = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            arrived,
            "an audit.checkpoint webhook arrives within the interval"
        );
    }
    drop(client);
    let keep = tempfile::tempdir().unwrap();
    w.stop_keeping_files(keep.path()).await;
    let text = bodies.lock().unwrap().join("\n");
    let anchors = airlock_audit::Anchor::read_all(&text);
    assert!(!anchors.is_empty(), "{text}");
    assert!(text.contains("\"event\":\"audit.checkpoint\""), "{text}");
    let hooks = keep.path().join("hooks.jsonl");
    std::fs::write(&hooks, &text).unwrap();
    let audit_dir = keep.path().join("audit");
    let pem = keep.path().join("pinned.pem");
    std::fs::copy(audit_dir.join(airlock_audit::PUBLIC_KEY_FILE), &pem).unwrap();
    let verify = || {
        airlock(
            &[
                "audit",
                "verify",
                "--public-key",
                pem.to_str().unwrap(),
                "--anchors",
                hooks.to_str().unwrap(),
                audit_dir.to_str().unwrap(),
            ],
            &config,
        )
    };
    let ok = verify();
    assert!(ok.status.success(), "{}\n{}", stdout(&ok), stderr(&ok));
    // Cut back to just after the first anchored checkpoint.
    assert!(anchors.len() >= 2, "{text}");
    let first = anchors.iter().map(|a| a.seq).min().unwrap();
    let seg = &airlock_audit::segment::list(&audit_dir).unwrap()[0].path;
    let bytes = std::fs::read(seg).unwrap();
    let (lines, _) = airlock_audit::segment::lines(&bytes);
    let at = lines
        .iter()
        .position(|(_, l)| airlock_audit::record::parse_head(l).unwrap().seq == first)
        .unwrap();
    std::fs::write(seg, &bytes[..lines[at + 1].0 as usize]).unwrap();
    let failed = verify();
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    assert!(stdout(&failed).contains("truncated"), "{}", stdout(&failed));
}

/// The gateway's count of audit writes made before forwarding what clients
/// sent (`airlock_postgres_audit_writes_total`).
async fn audit_writes(w: &World) -> u64 {
    let text = w
        .http_client()
        .get(format!("{}/metrics", w.http()))
        .bearer_auth(common::METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("airlock_postgres_audit_writes_total "))
        .unwrap_or_else(|| panic!("no audit_writes counter in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The value of an int4 parameter as tokio-postgres binds it (binary,
/// big-endian), as its bind record keeps it (base64).
fn int4_base64(v: i32) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(v.to_be_bytes())
}

/// Regression: in the extended protocol one client read cost two audit
/// writes (the Parse's record appended at once, the Bind's before the read
/// was forwarded), and every execution of a prepared statement its own: the
/// issue-18 read checks and Bind records cost 4–8 µs per transaction. Now
/// everything one read carries is written in one append, just before the
/// read is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_read_is_one_audit_write() {
    use tokio_postgres::types::Type;
    let w = World::start().await;
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;

    // Parse, Bind, Describe, Execute and Sync in one write.
    let before = audit_writes(&w).await;
    let rows = client
        .query_typed("SELECT $1::int + 1 AS next", &[(&41i32, Type::INT4)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    assert_eq!(
        audit_writes(&w).await - before,
        1,
        "Parse/Bind/Describe/Execute/Sync in one read is one audit write"
    );

    // A prepared statement: Parse/Describe/Sync once, then Bind/Execute/Sync
    // per execution.
    let before = audit_writes(&w).await;
    let select = client
        .prepare("SELECT id FROM customers WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(audit_writes(&w).await - before, 1, "the prepare");
    let before = audit_writes(&w).await;
    for id in 1..=3i32 {
        client.query(&select, &[&id]).await.unwrap();
    }
    assert_eq!(
        audit_writes(&w).await - before,
        3,
        "one audit write per execution"
    );

    // A simple Query too.
    let before = audit_writes(&w).await;
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(audit_writes(&w).await - before, 1, "a simple Query");

    // The records keep the messages' order and numbers: each Bind record
    // names its statement's n and follows its statement record directly
    // (written together, nothing of another write between them).
    drop(client);
    let all = entries_after_session_end(&w.data_dir()).await;
    let typed = all
        .iter()
        .find(|e| {
            matches!(&e.event, Event::Statement(s) if s.display_text() == "SELECT $1::int + 1 AS next")
        })
        .expect("the statement record");
    let Event::Statement(s) = &typed.event else {
        unreachable!()
    };
    let next = all.iter().find(|e| e.seq == typed.seq + 1).unwrap();
    match &next.event {
        Event::Bind(b) => {
            assert_eq!((b.session.as_str(), b.n), (s.session.as_str(), s.n));
            assert_eq!(b.params[0].base64, Some(int4_base64(41)));
        }
        other => panic!("the Bind record follows its statement's, not {other:?}"),
    }
    let prepared = statements(&all)
        .into_iter()
        .find(|s| s.display_text() == "SELECT id FROM customers WHERE id = $1")
        .expect("the prepared statement's record");
    let binds: Vec<_> = all
        .iter()
        .filter_map(|e| match &e.event {
            Event::Bind(b) if b.session == prepared.session && b.n == prepared.n => {
                b.params[0].base64.clone()
            }
            _ => None,
        })
        .collect();
    assert_eq!(binds, (1..=3).map(int4_base64).collect::<Vec<_>>());
    w.stop().await;
}

/// With the audit log unwritable, a read carrying Parse, Bind, Execute and
/// Sync is refused whole with 53100, and so is an execution of a statement
/// prepared earlier (its Bind's record cannot be written; this used to end
/// the session): nothing of either reaches PostgreSQL, the session goes on,
/// and both work again once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_extended_protocol_reads_whole() {
    use tokio_postgres::types::Type;
    let w = World::start_with(Options {
        data_dir_tmpfs: Some(8 * 1024 * 1024),
        policy: Some(format!("{DEFAULT_POLICY}\n[audit]\nfsync = \"batched\"\n")),
        ..Options::default()
    })
    .await;
    w.cluster
        .psql(
            "orders",
            "CREATE TABLE audit_probe (n int, pad text); GRANT ALL ON audit_probe TO orders_rw;",
        )
        .unwrap();
    let conn = w.connect("lead1", "write").await;
    let client = w.tokio_pg(&conn).await;
    // A failed write is cut off again, so what room is left is less than the
    // first write refused (the SELECT 1's below): the padding makes each
    // record here larger than that.
    let pad = "x".repeat(1000);
    let insert = client
        .prepare("INSERT INTO audit_probe VALUES ($1, $2)")
        .await
        .unwrap();
    client.execute(&insert, &[&1i32, &pad]).await.unwrap();

    let filler = w.data_dir().join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // The segment's last page may still have room for a record or two.
    let mut full = false;
    for _ in 0..200 {
        match client.simple_query("SELECT 1").await {
            Ok(_) => continue,
            Err(e) => {
                assert_eq!(code(&e), "53100", "{e}");
                full = true;
                break;
            }
        }
    }
    assert!(full, "the audit log never ran out of space");

    let e = client
        .query_typed(
            "INSERT INTO audit_probe VALUES ($1, $2)",
            &[(&2i32, Type::INT4), (&pad, Type::TEXT)],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "53100", "{e}");
    let msg = e.as_db_error().unwrap();
    assert!(
        msg.message().contains("audit record could not be written"),
        "{}",
        msg.message()
    );
    assert!(
        msg.detail().unwrap_or("").contains("nothing was sent"),
        "{msg:?}"
    );
    let e = client.execute(&insert, &[&3i32, &pad]).await.unwrap_err();
    assert_eq!(code(&e), "53100", "{e}");
    assert!(
        !client.is_closed(),
        "a statement error, not the session's end"
    );
    let count = w
        .cluster
        .psql(
            "orders",
            "SELECT string_agg(n::text, ',' ORDER BY n) FROM audit_probe",
        )
        .unwrap();
    assert_eq!(count.trim(), "1", "nothing refused reached PostgreSQL");

    std::fs::remove_file(&filler).unwrap();
    client.execute(&insert, &[&4i32, &pad]).await.unwrap();
    client
        .query_typed(
            "INSERT INTO audit_probe VALUES ($1, $2)",
            &[(&5i32, Type::INT4), (&pad, Type::TEXT)],
        )
        .await
        .unwrap();
    let count = w
        .cluster
        .psql(
            "orders",
            "SELECT string_agg(n::text, ',' ORDER BY n) FROM audit_probe",
        )
        .unwrap();
    assert_eq!(count.trim(), "1,4,5");
    drop(client);
    // What ran has its Bind record; what was refused left none.
    let bound: Vec<String> = entries_after_session_end(&w.data_dir())
        .await
        .iter()
        .filter_map(|e| match &e.event {
            Event::Bind(b) => b.params.first().and_then(|p| p.base64.clone()),
            _ => None,
        })
        .collect();
    for (v, ran) in [(1, true), (2, false), (3, false), (4, true), (5, true)] {
        assert_eq!(bound.contains(&int4_base64(v)), ran, "value {v}: {bound:?}");
    }
    w.stop().await;
}
