//! Runbooks end to end through the real `airlock` binary: each step kind
//! against a real target (PostgreSQL through the gateway's own listener, a
//! local HTTP server that records what it received, real processes);
//! parameters that try to break out of their place; roles, approvals and a
//! timed-out step; and the records in the audit log and the timeline.

mod common;

use std::sync::{Arc, Mutex};

use common::cli::{has, User};
use common::{jit_world, World};
use serde_json::Value;

const TOKEN_ENV: &str = "RUNBOOK_TEST_DEPLOY_TOKEN";
const TOKEN: &str = "deploy-secret-7f3e91";

/// What the HTTP target received: method, path and query as sent, the
/// Authorization header, the body.
type Received = Arc<Mutex<Vec<(String, String, Option<String>, Value)>>>;

async fn target() -> (String, Received) {
    let received: Received = Default::default();
    let store = received.clone();
    let app = axum::Router::new().fallback(move |req: axum::http::Request<axum::body::Body>| {
        let store = store.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            store.lock().unwrap().push((
                parts.method.to_string(),
                parts.uri.to_string(),
                parts
                    .headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned()),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ));
            (axum::http::StatusCode::ACCEPTED, "queued rollback\n")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

fn runbooks(dir: &std::path::Path, target: &str, marker: &std::path::Path) {
    let files = [
        (
            "check-order.toml",
            r#"
name = "check-order"
description = "Look at one order and count the orders with a status"
roles = ["oncall"]
timeout = "30s"

[[param]]
name = "id"
type = "int"
min = 1

[[param]]
name = "status"
type = "string"

[[step]]
name = "the order"
kind = "sql"
resource = "orders"
access = "read"
sql = "SELECT id, status FROM orders WHERE id = $1"
args = ["{{id}}"]

[[step]]
name = "with that status"
kind = "sql"
resource = "orders"
access = "read"
sql = "SELECT count(*) AS n FROM orders WHERE status = $1"
args = ["{{status}}"]
"#
            .to_owned(),
        ),
        (
            "rollback-service.toml",
            format!(
                r#"
name = "rollback-service"
description = "Roll a service back"
roles = ["oncall"]
timeout = "30s"

[[param]]
name = "service"
type = "string"

[[param]]
name = "version"
type = "string"

[[step]]
name = "ask the pipeline"
kind = "http"
method = "POST"
url = "{target}/deploy/{{{{service}}}}?version={{{{version}}}}"
headers = {{ Authorization = {{ env = "{TOKEN_ENV}", prefix = "Bearer " }} }}
body = {{ service = "{{{{service}}}}", version = "{{{{version}}}}", action = "rollback" }}
expect_status = [202]
"#
            ),
        ),
        (
            "echo.toml",
            format!(
                r#"
name = "echo"
description = "Say something through a real process"
roles = ["oncall"]
timeout = "30s"

[[param]]
name = "msg"
type = "string"

[[step]]
kind = "command"
argv = ["/usr/bin/printf", "[%s]\n", "{{{{msg}}}}", "{marker}"]
env = ["PATH"]
timeout = "10s"
"#,
                marker = marker.display()
            ),
        ),
        (
            "sneaky-write.toml",
            r#"
name = "sneaky-write"
description = "A read step that tries to write"
roles = ["oncall"]

[[param]]
name = "id"
type = "int"

[[step]]
kind = "sql"
resource = "orders"
access = "read"
sql = "WITH gone AS (DELETE FROM orders WHERE id = $1 RETURNING id) SELECT id FROM gone"
args = ["{{id}}"]
"#
            .to_owned(),
        ),
        (
            "slow.toml",
            r#"
name = "slow"
description = "A step that never finishes in time"
roles = ["oncall"]
timeout = "30s"

[[step]]
kind = "command"
argv = ["/bin/sleep", "30"]
timeout = "1s"

[[step]]
kind = "command"
argv = ["/bin/echo", "never"]
"#
            .to_owned(),
        ),
        (
            "fix-order.toml",
            r#"
name = "fix-order"
description = "Set an order's status (writes; an sre-lead approves)"
roles = ["oncall"]
approvals = 1
approvers = ["sre-lead"]
timeout = "30s"

[[param]]
name = "id"
type = "int"
min = 1

[[param]]
name = "status"
type = "enum"
values = ["pending", "cancelled"]

[[step]]
kind = "sql"
resource = "orders"
access = "write"
sql = "UPDATE orders SET status = $1 WHERE id = $2"
args = ["{{status}}", "{{id}}"]
"#
            .to_owned(),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

struct Setup {
    w: World,
    oncall: User,
    lead: User,
    received: Received,
    marker: std::path::PathBuf,
    _books: tempfile::TempDir,
}

async fn setup() -> Setup {
    std::env::set_var(TOKEN_ENV, TOKEN);
    let books = tempfile::tempdir().unwrap();
    let (url, received) = target().await;
    let marker = books.path().join("pwned");
    runbooks(books.path(), &url, &marker);
    let w = jit_world(&format!(
        "\n[runbooks]\ndir = \"{}\"\n",
        books.path().display()
    ))
    .await;
    let oncall = User::logged_in(&w, "oncall1").await;
    let lead = User::logged_in(&w, "lead1").await;
    Setup {
        w,
        oncall,
        lead,
        received,
        marker,
        _books: books,
    }
}

fn order_status(w: &World, id: u32) -> String {
    w.cluster
        .psql(
            "orders",
            &format!("SELECT status FROM orders WHERE id = {id}"),
        )
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_kind_runs_against_real_targets_and_parameters_stay_data() {
    let Setup {
        w,
        oncall,
        received,
        marker,
        ..
    } = setup().await;

    // The list: what oncall1 may run, with parameters and steps.
    let out = oncall.run(&["runbooks"]).await;
    has(
        out.ok(),
        &[
            "check-order  Look at one order",
            "--param id=<int >= 1>",
            "--param status=<text>",
            "step 1: the order (sql orders (read))",
            "fix-order  Set an order's status",
            "[needs 1 approval(s) from sre-lead]",
        ],
    );

    // sql through the gateway's own listener, as oncall1; a value that
    // would be an injection in spliced SQL is one bound parameter.
    let out = oncall
        .run(&[
            "run",
            "check-order",
            "--param",
            "id=7",
            "--param",
            "status=x' OR '1'='1",
        ])
        .await;
    let text = out.ok();
    has(
        text,
        &[
            "▶ step 1/2 the order: sql on orders (read): SELECT id, status FROM orders WHERE id = $1",
            "✔ step 1/2 the order: ok in",
            "(1 row(s))",
            "✔ step 2/2 with that status: ok in",
            "run check-order: ok in",
        ],
    );
    let status7 = order_status(&w, 7);
    assert!(text.contains(&status7), "{text}");
    // count(*) of the literal status "x' OR '1'='1" is 0: no injection.
    assert!(
        text.lines().any(|l| l.trim() == "0" || l.contains("| 0")),
        "{text}"
    );
    // --json: the events as JSON lines, ending with the outcome.
    let out = oncall
        .run(&[
            "run",
            "check-order",
            "-p",
            "id=8",
            "-p",
            "status=paid",
            "--json",
        ])
        .await;
    let events: Vec<Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "run_started");
    let finished = events.iter().find(|e| e["event"] == "finished").unwrap();
    assert_eq!(finished["status"], "ok");

    // http: the hostile values land as one path segment, one query value
    // and JSON strings; the token comes from the gateway's environment.
    let service = "../../admin?x=1#&a=b";
    let version = "v1\"; rm -rf / $(touch pwned)\n`id` ünï 😀";
    let out = oncall
        .run(&[
            "run",
            "rollback-service",
            "-p",
            &format!("service={service}"),
            "-p",
            &format!("version={version}"),
            "--reason",
            "INC-7 bad deploy",
        ])
        .await;
    let text = out.ok().to_owned();
    has(&text, &["(HTTP 202)", "queued rollback"]);
    assert!(!text.contains(TOKEN), "the token is never shown: {text}");
    {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let (method, uri, auth, body) = &got[0];
        assert_eq!(method, "POST");
        let (path, query) = uri.split_once('?').unwrap();
        let segment = path.strip_prefix("/deploy/").unwrap();
        assert!(!segment.contains('/'), "one segment: {uri}");
        assert_eq!(pct_decode(segment), service);
        let (key, value) = query.split_once('=').unwrap();
        assert_eq!(key, "version");
        assert!(!value.contains('&') && !value.contains('='), "{uri}");
        assert_eq!(pct_decode(value), version);
        assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(body["service"], service);
        assert_eq!(body["version"], version);
        assert_eq!(body["action"], "rollback");
    }
    // --dry-run shows the request with the secret redacted, and sends nothing.
    let out = oncall
        .run(&[
            "run",
            "rollback-service",
            "-p",
            "service=checkout",
            "-p",
            "version=v1.2.3",
            "--dry-run",
        ])
        .await;
    let text = out.ok();
    has(
        text,
        &[
            "would run",
            "POST http://",
            "/deploy/checkout?version=v1%2E2%2E3",
            &format!("authorization: Bearer <secret from env {TOKEN_ENV}>"),
        ],
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(received.lock().unwrap().len(), 1, "a dry run sends nothing");

    // command: each value is one argv element; nothing is run by a shell.
    let msg = "a b; touch $(echo pwned) `id` 'q' \"d\"\nnext";
    let out = oncall
        .run(&["run", "echo", "-p", &format!("msg={msg}")])
        .await;
    let text = out.ok();
    has(text, &[&format!("[{msg}]"), "(exit 0)"]);
    assert!(!marker.exists(), "no shell ran the value");

    // A read step is a read session: the gateway's classifier refuses the
    // write, as it would anyone's.
    let out = oncall.run(&["run", "sneaky-write", "-p", "id=5"]).await;
    assert_eq!(out.code, 1, "{}", out.show());
    has(
        &out.stdout,
        &["✘ step 1/1", "failed", "read access", "DELETE"],
    );
    assert_ne!(order_status(&w, 5), "", "order 5 is still there");

    // A step over its timeout is killed and recorded; the next is skipped.
    let out = oncall.run(&["run", "slow"]).await;
    assert_eq!(out.code, 1, "{}", out.show());
    has(
        &out.stdout,
        &[
            "✘ step 1/2 command 0: timed out",
            "- step 2/2 command 1: skipped",
            "run slow: timed out in",
        ],
    );
    assert!(!out.stdout.contains("never"), "{}", out.show());

    // Bad parameters: every problem at once, nothing runs.
    let e = oncall
        .run(&["run", "check-order", "-p", "id=zero", "-p", "extra=1"])
        .await
        .fails()
        .to_owned();
    has(&e, &["id", "extra", "airlock runbooks check-order"]);
    let e = oncall.run(&["run", "nope"]).await.fails().to_owned();
    has(&e, &["there is no runbook \"nope\"", "airlock runbooks"]);

    // Everything is on record: the runs, their steps, and the SQL sessions.
    let out = oncall
        .run(&[
            "timeline", "--since", "10m", "--kinds", "access", "--grep", "runbook",
        ])
        .await;
    let text = out.ok();
    has(
        text,
        &[
            "started runbook check-order",
            "with id=7 status=x' OR '1'='1",
            "step 1 \"the order\": ok",
            "runbook rollback-service",
            "\"INC-7 bad deploy\"",
            "runbook slow (run",
            "timed out",
        ],
    );
    assert!(!text.contains(TOKEN), "{text}");
    let out = oncall
        .run(&[
            "timeline",
            "--since",
            "10m",
            "--kinds",
            "access",
            "--grep",
            "SELECT count(*)",
        ])
        .await;
    has(
        out.ok(),
        &["SELECT count(*) AS n FROM orders WHERE status = $1"],
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_approvals_and_run_exactly_as_approved() {
    let Setup {
        w, oncall, lead, ..
    } = setup().await;
    // A user without the runbook's role sees none and may run none.
    let visitor = User::logged_in(&w, "lead2").await;
    let out = visitor.run(&["runbooks"]).await;
    assert_eq!(out.ok(), "no runbooks you may run\n");
    let e = visitor
        .run(&["run", "check-order", "-p", "id=1", "-p", "status=paid"])
        .await
        .fails()
        .to_owned();
    has(
        &e,
        &["may not run runbook check-order", "role oncall", "(403"],
    );

    // A write runbook with approvals: a request, not a run.
    let before = order_status(&w, 11);
    assert_ne!(before, "cancelled");
    let e = oncall
        .run(&["run", "fix-order", "-p", "id=11", "-p", "status=cancelled"])
        .await
        .fails()
        .to_owned();
    has(&e, &["needs a reason"]);
    let out = oncall
        .run(&[
            "run",
            "fix-order",
            "-p",
            "id=11",
            "-p",
            "status=cancelled",
            "--reason",
            "INC-9 stuck order",
        ])
        .await;
    let text = out.ok().to_owned();
    has(
        &text,
        &["needs approval: request req_", "airlock run --request req_"],
    );
    let id = text
        .split_whitespace()
        .find(|w| w.starts_with("req_"))
        .unwrap()
        .trim_end_matches([',', ':'])
        .to_owned();
    assert_eq!(order_status(&w, 11), before, "nothing ran yet");
    // Not before approval, not by the requester's own approval.
    let e = oncall
        .run(&["run", "--request", &id])
        .await
        .fails()
        .to_owned();
    has(&e, &["has 0 of 1 approval(s)", "lead1"]);
    oncall.run(&["approve", &id]).await.fails();
    // The approver sees the exact run in the inbox, and approves.
    let out = lead.run(&["requests", "--json"]).await;
    let pending = out.json();
    let filed = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{pending}"));
    assert_eq!(filed["kind"], "runbook");
    assert_eq!(filed["runbook"]["params"]["status"], "cancelled");
    assert_eq!(filed["runbook"]["params"]["id"], "11");
    let out = lead.run(&["requests", "--pending"]).await;
    has(
        out.ok(),
        &[
            "runbook fix-order",
            "parameters: id=11 status=cancelled",
            "step 1: sql 0 (sql)",
        ],
    );
    let out = lead.run(&["approve", &id, "--comment", "ok"]).await;
    has(
        out.ok(),
        &[
            "may start the run of runbook fix-order once",
            "airlock run --request",
        ],
    );
    // The timeline reads the audit index, which its thread fills a moment
    // after the record is written: wait for it (a loaded machine once took
    // longer than the first look).
    let mut text = String::new();
    for _ in 0..50 {
        let out = oncall
            .run(&[
                "timeline",
                "--since",
                "10m",
                "--kinds",
                "access",
                "--grep",
                "approved request",
            ])
            .await;
        text = out.ok().to_owned();
        if text.contains("oncall1 may start the run of runbook fix-order once") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    has(
        &text,
        &["oncall1 may start the run of runbook fix-order once"],
    );
    // oncall1 has no write access of their own; the approval stands in for
    // it, for this run only.
    let out = oncall.run(&["run", "--request", &id]).await;
    has(out.ok(), &["(1 row(s))", "run fix-order: ok in"]);
    assert_eq!(order_status(&w, 11), "cancelled");
    // Once.
    let e = oncall
        .run(&["run", "--request", &id])
        .await
        .fails()
        .to_owned();
    has(&e, &["already started", "file a new request"]);
    // The run's grant is gone: no write access is left behind.
    let e = oncall
        .run(&["connect", "orders", "--access", "write", "--json"])
        .await
        .fails()
        .to_owned();
    has(&e, &["write"]);
    w.stop().await;
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
