//! Reviewers see exactly what will run (issue 18): text holding control or
//! invisible formatting characters is refused when it is filed, and whatever
//! untrusted text got in another way (a statement through the proxy, an
//! OTLP log body or span name, a runbook's output) reaches the terminal
//! escaped. Real PostgreSQL, the real gateway, the real `airlock` binary.

mod common;

use std::path::Path;

use common::cli::{has, word_after, User};
use common::{jit_world, World};
use serde_json::{json, Value};

/// What a terminal must never receive raw from untrusted text: CR, ESC,
/// backspace, BEL, C1 controls (CSI, NEL) and bidi overrides/isolates.
#[track_caller]
fn no_raw_controls(what: &str, text: &str) {
    let bad: Vec<String> = text
        .chars()
        .filter(|&c| airlock_config::text::is_unsafe(c))
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    assert!(bad.is_empty(), "{what}: raw {bad:?} in:\n{text:?}");
}

async fn post(w: &World, user: &str, path: &str, body: Value) -> (u16, Value) {
    let r = w
        .http_client()
        .post(format!("{}{path}", w.http()))
        .bearer_auth(w.token(user))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Regression: a reviewed statement holding a carriage return and terminal
/// escape sequences showed in `airlock requests` as `DELETE FROM customers
/// WHERE id = 5`; it was approved as one row and deleted five. Now it is
/// refused when filed, with an error naming the character and where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewed_statement_with_cr_and_escapes_is_refused_at_filing() {
    let w = jit_world("").await;
    let hidden =
        "DELETE FROM customers WHERE id <= 5 -- \r\x1b[2KDELETE FROM customers WHERE id = 5";
    let (status, e) = post(
        &w,
        "oncall1",
        "/api/v1/requests",
        json!({ "resource": "orders", "statement": hidden, "reason": "INC-18" }),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], "unsafe_character", "{e}");
    let message = e["message"].as_str().unwrap();
    has(
        message,
        &[
            "the statement contains a carriage return (U+000D, shown as \\r) at line 1, column 40",
            "can make what people see differ from what is filed",
        ],
    );
    has(e["hint"].as_str().unwrap(), &["remove it", "CRLF"]);

    // Bidi overrides and isolates, zero-width characters, C1 controls: the
    // same answer, each named.
    for (statement, named) in [
        (
            "SELECT 1 -- \u{202e}5 = di",
            "right-to-left override (U+202E",
        ),
        ("SELECT 1 -- \u{2067}x", "right-to-left isolate (U+2067"),
        ("SELECT\u{200b} 1", "zero-width space (U+200B"),
        (
            "SELECT 1 \u{9b}2K",
            "control sequence introducer (CSI) (U+009B",
        ),
    ] {
        let (status, e) = post(
            &w,
            "oncall1",
            "/api/v1/requests",
            json!({ "resource": "orders", "statement": statement, "reason": "INC-18" }),
        )
        .await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("unsafe_character"))
        );
        has(e["message"].as_str().unwrap(), &[named]);
    }

    // Reasons of every kind go through the same check.
    let (status, e) = post(
        &w,
        "oncall1",
        "/api/v1/requests",
        json!({ "resource": "orders", "access": "write", "for": "10m", "reason": "INC-18 \x1b[8mhidden" }),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("unsafe_character"))
    );
    has(
        e["message"].as_str().unwrap(),
        &["the reason contains an escape"],
    );
    let (status, e) = post(
        &w,
        "oncall1",
        "/api/v1/break-glass",
        json!({ "resource": "orders", "reason": "db down \u{202e}" }),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("unsafe_character"))
    );

    // Windows line endings are filed as LF: what is stored is what
    // approvers see and what runs.
    let (status, filed) = post(
        &w,
        "oncall1",
        "/api/v1/requests",
        json!({ "resource": "orders",
                "statement": "UPDATE orders SET status = 'refunded'\r\nWHERE id = 3\r\n",
                "reason": "INC-18\r\nrefund" }),
    )
    .await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(
        filed["statement"],
        "UPDATE orders SET status = 'refunded'\nWHERE id = 3\n"
    );
    assert_eq!(filed["reason"], "INC-18\nrefund");
    let id = filed["id"].as_str().unwrap().to_owned();

    // An approver's comment and a denial's reason too.
    let (status, e) = post(
        &w,
        "lead1",
        &format!("/api/v1/requests/{id}/approve"),
        json!({ "comment": "ok\r" }),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("unsafe_character"))
    );
    has(
        e["message"].as_str().unwrap(),
        &["the comment contains a carriage return"],
    );
    let (status, e) = post(
        &w,
        "lead1",
        &format!("/api/v1/requests/{id}/deny"),
        json!({ "reason": "no\u{2066}" }),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("unsafe_character"))
    );

    // The CLI says the same, and its own error output stays escaped.
    let oncall1 = User::logged_in(&w, "oncall1").await;
    let run = oncall1
        .run(&["exec", "orders", "-c", hidden, "--reason", "INC-18"])
        .await;
    let err = run.fails();
    has(err, &["carriage return (U+000D, shown as \\r)", "(400"]);
    no_raw_controls("airlock exec", err);
    let run = oncall1
        .run(&["exec", "orders", "-c", "SELECT 1\r\n", "--reason", "INC-18"])
        .await;
    let out = run.ok();
    let stmt = word_after(out, "request ").to_owned();
    has(out, &["of exactly this statement on orders:\n  SELECT 1\n"]);

    // A statement filed before this check (put in the store directly): shown
    // escaped to its approver, and never run even once approved.
    let store = airlock::gateway::open_store(&w.data_dir()).unwrap();
    let mut old = store.request(&stmt).unwrap().unwrap();
    old.id = format!("{stmt}old");
    old.statement = Some(hidden.to_owned());
    store.insert_request(&old).unwrap();
    let lead1 = User::logged_in(&w, "lead1").await;
    let run = lead1.run(&["requests", "--pending"]).await;
    let out = run.ok();
    no_raw_controls("airlock requests", out);
    has(
        out,
        &["statement: DELETE FROM customers WHERE id <= 5 -- \\r\\x1b[2KDELETE FROM customers WHERE id = 5"],
    );
    lead1.run(&["approve", &old.id]).await.ok();
    let run = oncall1.run(&["exec", "--run", &old.id]).await;
    let err = run.fails();
    has(
        err,
        &[
            "contains a carriage return",
            "it was not run",
            "(409",
            "file it again",
        ],
    );
    no_raw_controls("airlock exec --run", err);
    let conn = w.connect("oncall1", "read").await;
    let out = w.psql(
        &conn,
        &[
            "-X",
            "-At",
            "-c",
            "SELECT count(*) FROM customers WHERE id <= 5",
        ],
    );
    assert_eq!(common::stdout(&out).trim(), "5", "nothing was deleted");
    w.stop().await;
}

/// Untrusted text that legitimately got in — statements through the proxy
/// (control characters inside string literals), rows, OTLP log bodies,
/// attributes and span names, a runbook's output — is recorded exactly and
/// shown escaped by `replay`, `audit`, `timeline`, `trace` and `run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_output_never_carries_raw_control_characters() {
    let books = tempfile::tempdir().unwrap();
    std::fs::write(
        books.path().join("paint.toml"),
        r#"
name = "paint"
description = "Prints colours and overwrites its line"
roles = ["oncall"]

[[step]]
kind = "command"
argv = ["/usr/bin/printf", "working\r\u001b[2Kdone \u001b[31mred\u001b[0m\n"]
"#,
    )
    .unwrap();
    let w = jit_world(&format!(
        "\n[runbooks]\ndir = \"{}\"\n",
        books.path().display()
    ))
    .await;
    let config = w.config.path.clone();

    // Through the proxy: the statement and its row carry CR and ESC inside
    // a string literal, exactly as PostgreSQL received and answered them.
    let conn = w.connect("oncall1", "read").await;
    let client = w.tokio_pg(&conn).await;
    let rows = client
        .simple_query("SELECT 'paid\r\x1b[2Kpending \u{202e}' AS status")
        .await
        .unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .unwrap();
    assert_eq!(row, "paid\r\x1b[2Kpending \u{202e}");
    drop(client);

    // OTLP: a span whose name and a log whose body, severity and service
    // carry escapes.
    let now = common::now_ms() * 1_000_000;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";
    let resource = json!({ "attributes": [
        { "key": "service.name", "value": { "stringValue": "check\u{202e}out" } },
        { "key": "service.version", "value": { "stringValue": "v2\x1b[1A" } },
    ]});
    let http = w.http_client();
    for (path, body) in [
        (
            "/v1/traces",
            json!({ "resourceSpans": [{ "resource": resource, "scopeSpans": [{ "spans": [{
                "traceId": trace_id, "spanId": "10f067aa0ba902b7",
                "name": "GET /cart\x1b[2J", "kind": 2,
                "startTimeUnixNano": (now - 2_000_000).to_string(),
                "endTimeUnixNano": now.to_string(),
                "status": { "code": 2, "message": "boom\rfine" },
            }]}]}]}),
        ),
        (
            "/v1/logs",
            json!({ "resourceLogs": [{ "resource": resource, "scopeLogs": [{ "logRecords": [{
                "timeUnixNano": (now - 1_000_000).to_string(),
                "severityText": "ERROR\x1b[0m", "severityNumber": 17,
                "traceId": trace_id, "spanId": "10f067aa0ba902b7",
                "body": { "stringValue": "payment ok\r\x1b[31mpayment FAILED\x07" },
                "attributes": [{ "key": "note\x1b", "value": { "stringValue": "\u{2066}x" } }],
            }]}]}]}),
        ),
    ] {
        let r = http
            .post(format!("{}{path}", w.http()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {:?}", r.text().await);
    }

    // replay and audit read the log on the gateway host.
    let sessions = airlock(&["audit", "sessions", "--json"], &config);
    let list: Vec<Value> = serde_json::from_str(&sessions).unwrap();
    let sid = list[0]["id"].as_str().unwrap().to_owned();
    let replay = airlock(&["replay", &sid], &config);
    no_raw_controls("airlock replay", &replay);
    has(
        &replay,
        &[
            "SELECT 'paid\\r\\x1b[2Kpending \\u{202e}' AS status",
            "paid\\r\\x1b[2Kpending \\u{202e}",
        ],
    );
    // --json stays exact (JSON-escaped).
    let exact = airlock(&["replay", &sid, "--json"], &config);
    assert!(
        exact.contains(r#"SELECT 'paid\r\u001b[2Kpending "#),
        "{exact}"
    );
    let audit = airlock(&["audit", "--grep", "paid"], &config);
    no_raw_controls("airlock audit", &audit);
    // (The one-line summary folds whitespace, CR included, into spaces.)
    has(&audit, &["'paid \\x1b[2Kpending \\u{202e}'"]);

    // timeline, trace and run talk to the API, as a person would.
    let oncall1 = User::logged_in(&w, "oncall1").await;
    let mut timeline = String::new();
    for _ in 0..100 {
        timeline = oncall1
            .run(&["timeline", "--since", "10m"])
            .await
            .ok()
            .to_owned();
        if timeline.contains("payment") && timeline.contains("GET /cart") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    no_raw_controls("airlock timeline", &timeline);
    has(
        &timeline,
        &[
            "check\\u{202e}out@v2\\x1b[1A",
            "ERROR\\x1b[0m payment ok\\r\\x1b[31mpayment FAILED\\x07",
            "GET /cart\\x1b[2J",
            "error: boom\\rfine",
        ],
    );
    let trace = oncall1.run(&["trace", trace_id]).await;
    let trace = trace.ok();
    no_raw_controls("airlock trace", trace);
    has(
        trace,
        &[
            "GET /cart\\x1b[2J",
            "check\\u{202e}out@v2\\x1b[1A ERROR: boom\\rfine",
            "ERROR\\x1b[0m payment ok\\r\\x1b[31mpayment FAILED\\x07",
        ],
    );

    // A runbook's output: lines kept, CR and colours escaped.
    let run = oncall1.run(&["run", "paint"]).await;
    let out = run.ok();
    no_raw_controls("airlock run", out);
    has(out, &["working\\r\\x1b[2Kdone \\x1b[31mred\\x1b[0m\n"]);
    w.stop().await;
}

fn airlock(args: &[&str], config: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_CONFIG", config)
        .env("AIRLOCK_LOG", "warn")
        .output()
        .expect("airlock runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "airlock {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
