//! Just-in-time access end to end, with a real PostgreSQL and real clients:
//! request → deny; request → approve → connect with write → write → expiry
//! ends the live session within a second → reconnect refused; the same for
//! revoke and for a policy reload that removes the rule; break-glass;
//! reviewed statements; webhooks signed and retried; and bad input that
//! changes nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{jit_world, World};
use serde_json::{json, Value};

const WEBHOOK_SECRET_ENV: &str = "AIRLOCK_TEST_WEBHOOK_SECRET";
const WEBHOOK_SECRET: &str = "whsec-test-5d1e";

/// POST and return (status, body) without failing on errors.
async fn call(w: &World, user: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let client = w.http_client();
    let url = format!("{}{path}", w.http());
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url).json(&body),
    };
    let resp = req.bearer_auth(w.token(user)).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn request_write(w: &World, duration: &str) -> String {
    let (status, body) = call(
        w,
        "oncall1",
        "POST",
        "/api/v1/requests",
        json!({ "resource": "orders", "access": "write", "for": duration, "reason": "INC-42: stuck orders" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["approvers"], json!(["lead1", "lead2"]));
    body["id"].as_str().unwrap().to_owned()
}

async fn approve(w: &World, id: &str) -> String {
    let (status, body) = call(
        w,
        "lead1",
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        json!({ "comment": "go" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "approved");
    body["grant_id"].as_str().unwrap().to_owned()
}

/// A live session whose end (and the FATAL that ended it) can be awaited.
struct Live {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

async fn live(w: &World, conn: &airlock::client::Connection) -> Live {
    let (client, connection) = w
        .tokio_pg_config(conn)
        .connect(w.tls(conn))
        .await
        .expect("connects");
    Live {
        client,
        connection: tokio::spawn(connection),
    }
}

/// Waits until the gateway ends the idle session; returns the FATAL the
/// client received and how long after `from` it arrived.
async fn ended_within(live: Live, from: Instant) -> (String, Duration) {
    let result = tokio::time::timeout(Duration::from_secs(10), live.connection)
        .await
        .expect("the session was ended")
        .unwrap();
    let took = from.elapsed();
    let e = result.expect_err("ended by the server with an error");
    let text = match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    drop(live.client);
    (text, took)
}

#[tokio::test]
async fn request_then_deny() {
    let w = jit_world("").await;
    let id = request_write(&w, "30m").await;
    // The requester cannot deny or approve; an approver denies with a reason.
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (403, Some("self_approval")),
        "{b}"
    );
    let (s, b) = call(
        &w,
        "lead1",
        "POST",
        &format!("/api/v1/requests/{id}/deny"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("missing_reason")),
        "{b}"
    );
    let (s, b) = call(
        &w,
        "lead1",
        "POST",
        &format!("/api/v1/requests/{id}/deny"),
        json!({ "reason": "use a runbook" }),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "denied");
    // Denied stays denied.
    let (s, b) = call(
        &w,
        "lead2",
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("already_denied")),
        "{b}"
    );
    // No write access came of it.
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        "/api/v1/credentials",
        json!({ "resource": "orders", "access": "write" }),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("airlock request orders --access write"),
        "{b}"
    );
    w.stop().await;
}

#[tokio::test]
async fn approved_grant_writes_then_expires_and_ends_the_live_session() {
    let w = jit_world("").await;
    let id = request_write(&w, "4s").await;
    // Visible to approvers, not to others.
    let (_, list) = call(
        &w,
        "lead2",
        "GET",
        "/api/v1/requests?pending=true",
        Value::Null,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let grant = approve(&w, &id).await;
    let conn = w.connect("oncall1", "write").await;
    assert_eq!(conn.credential.grant_id, grant);
    assert!(conn.credential.expires_at_ms <= common::now_ms() + 4_000);
    let session = live(&w, &conn).await;
    session
        .client
        .simple_query("UPDATE orders SET status = 'fixed' WHERE id = 1")
        .await
        .expect("write allowed under the grant");
    let (_, grants) = call(&w, "oncall1", "GET", "/api/v1/grants", Value::Null).await;
    assert_eq!(grants[0]["id"], grant.as_str());
    assert_eq!(grants[0]["state"], "live");
    // At expiry the live session is ended with a FATAL naming the grant.
    let expires = grants[0]["ends_ms"].as_i64().unwrap();
    let wait = (expires - common::now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let (err, took) = ended_within(session, Instant::now()).await;
    assert!(took < Duration::from_secs(1), "ended after {took:?}");
    assert!(
        err.contains("57P01") && err.contains(&format!("grant {grant}")) && err.contains("expired"),
        "{err}"
    );
    // Reconnecting with the same credential and minting a new one are refused.
    let e = w
        .tokio_pg_config(&conn)
        .connect(w.tls(&conn))
        .await
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("expired") || e.as_db_error().is_some(),
        "{e}"
    );
    let (s, _) = call(
        &w,
        "oncall1",
        "POST",
        "/api/v1/credentials",
        json!({ "resource": "orders", "access": "write" }),
    )
    .await;
    assert_eq!(s, 403);
    w.stop().await;
}

#[tokio::test]
async fn revoke_ends_the_live_session_and_its_credentials() {
    let w = jit_world("").await;
    let id = request_write(&w, "30m").await;
    let grant = approve(&w, &id).await;
    let conn = w.connect("oncall1", "write").await;
    let session = live(&w, &conn).await;
    session.client.simple_query("SELECT 1").await.unwrap();
    let start = Instant::now();
    let (s, b) = call(
        &w,
        "lead2",
        "POST",
        &format!("/api/v1/grants/{grant}/revoke"),
        json!({ "reason": "incident over" }),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "revoked");
    let (err, took) = ended_within(session, start).await;
    assert!(took < Duration::from_secs(1), "ended after {took:?}");
    assert!(
        err.contains(&format!("grant {grant}")) && err.contains("revoked by lead2: incident over"),
        "{err}"
    );
    let e = w
        .tokio_pg_config(&conn)
        .connect(w.tls(&conn))
        .await
        .err()
        .expect("refused");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "28P01", "{db:?}");
    // Revoking twice is a clear conflict.
    let (s, b) = call(
        &w,
        "lead2",
        "POST",
        &format!("/api/v1/grants/{grant}/revoke"),
        json!({ "reason": "again" }),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("already_revoked")),
        "{b}"
    );
    w.stop().await;
}

#[tokio::test]
async fn policy_reload_that_removes_the_rule_ends_the_session() {
    let w = jit_world("").await;
    let id = request_write(&w, "30m").await;
    let grant = approve(&w, &id).await;
    let read = w.connect("oncall1", "read").await;
    let reader = w.tokio_pg(&read).await;
    let conn = w.connect("oncall1", "write").await;
    let session = live(&w, &conn).await;
    session.client.simple_query("SELECT 1").await.unwrap();
    let path = w.dir.path().join("airlock.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // First an invalid policy: refused, the old one stays, the session lives.
    std::fs::write(
        &path,
        text.replace("approvers = [\"sre-lead\"]", "approvers = [\"nobody\"]"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    session
        .client
        .simple_query("SELECT 1")
        .await
        .expect("an invalid policy changes nothing");
    // Then the rule is removed.
    let start = Instant::now();
    std::fs::write(
        &path,
        text.replace(
            "requestable = [{ resource = \"orders\", access = \"write\", max = \"1h\", approvals = 1, approvers = [\"sre-lead\"] }]\n",
            "",
        ),
    )
    .unwrap();
    let (err, took) = ended_within(session, start).await;
    assert!(
        took < Duration::from_secs(3),
        "poll (1s) + enforcement took {took:?}"
    );
    assert!(
        err.contains(&format!("grant {grant}")) && err.contains("no longer allowed by the policy"),
        "{err}"
    );
    // Standing read access is untouched by the reload.
    reader
        .simple_query("SELECT count(*) FROM orders")
        .await
        .expect("read session lives on");
    w.stop().await;
}

#[tokio::test]
async fn break_glass_is_immediate_marked_and_announced() {
    std::env::set_var(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET);
    let (url, received) = receiver(Arc::new(true.into())).await;
    let w = jit_world(&format!(
        "[[webhook]]\nurl = \"{url}\"\nevents = [\"*\"]\nsecret_env = \"{WEBHOOK_SECRET_ENV}\"\n"
    ))
    .await;
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        "/api/v1/break-glass",
        json!({ "resource": "orders", "reason": "orders table locked" }),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["kind"], "break_glass");
    let (s, b2) = call(
        &w,
        "oncall1",
        "POST",
        "/api/v1/break-glass",
        json!({ "resource": "orders", "for": "2h", "reason": "x" }),
    )
    .await;
    assert_eq!(
        (s, b2["error"].as_str()),
        (400, Some("duration_too_long")),
        "{b2}"
    );
    let conn = w.connect("oncall1", "write").await;
    assert_eq!(conn.credential.grant_id, b["id"].as_str().unwrap());
    let client = w.tokio_pg(&conn).await;
    client
        .simple_query("UPDATE orders SET status = 'x' WHERE id = 2")
        .await
        .unwrap();
    drop(client);
    let api = w.api("oncall1");
    // The index follows the log a moment behind: wait for the session.
    let mut sessions: Vec<airlock_audit::index::SessionRow> = Vec::new();
    for _ in 0..50 {
        sessions = api.get("/api/v1/sessions").await.unwrap();
        if sessions.iter().any(|s| s.access == "write") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let s = sessions
        .iter()
        .find(|s| s.access == "write")
        .expect("write session");
    assert!(s.break_glass, "{s:?}");
    assert_eq!(s.grant_id, b["id"].as_str().unwrap());
    let event = wait_for_event(&received, "break_glass.used").await;
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .contains("BREAK-GLASS: oncall1 took write access to orders"),
        "{event}"
    );
    w.stop().await;
}

#[tokio::test]
async fn reviewed_statement_runs_once_exactly_as_approved() {
    let w = jit_world("").await;
    let sql = "UPDATE orders SET status = 'refunded' WHERE id = 3 RETURNING id, status";
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        "/api/v1/requests",
        json!({ "resource": "orders", "statement": sql, "reason": "refund INC-7" }),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(b["kind"], "statement");
    // Approvers see the exact statement.
    let (_, seen) = call(
        &w,
        "lead1",
        "GET",
        &format!("/api/v1/requests/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(seen["statement"], sql);
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        &format!("/api/v1/requests/{id}/execute"),
        json!({}),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (409, Some("not_approved")), "{b}");
    let (s, _) = call(
        &w,
        "lead1",
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = call(
        &w,
        "lead1",
        "POST",
        &format!("/api/v1/requests/{id}/execute"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (403, Some("not_requester")),
        "{b}"
    );
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        &format!("/api/v1/requests/{id}/execute"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["command_tag"], "UPDATE 1");
    assert_eq!(b["rows"], json!([["3", "refunded"]]));
    assert_eq!(b["committed"], true);
    let out = w
        .cluster
        .psql("orders", "SELECT status FROM orders WHERE id = 3")
        .unwrap();
    assert_eq!(out.trim(), "refunded");
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        &format!("/api/v1/requests/{id}/execute"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("already_executed")),
        "{b}"
    );
    // A statement that fails is rolled back and reported with its SQLSTATE.
    let (_, b) = call(&w, "oncall1", "POST", "/api/v1/requests", json!({ "resource": "orders", "statement": "UPDATE orders SET id = NULL WHERE id = 4", "reason": "x" })).await;
    let id2 = b["id"].as_str().unwrap().to_owned();
    call(
        &w,
        "lead2",
        "POST",
        &format!("/api/v1/requests/{id2}/approve"),
        json!({}),
    )
    .await;
    let (s, b) = call(
        &w,
        "oncall1",
        "POST",
        &format!("/api/v1/requests/{id2}/execute"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["error"]["sqlstate"], "23502", "{b}");
    // Two statements in one request cannot run as one reviewed statement.
    let (_, b) = call(
        &w,
        "oncall1",
        "POST",
        "/api/v1/requests",
        json!({ "resource": "orders", "statement": "SELECT 1; DELETE FROM orders", "reason": "x" }),
    )
    .await;
    let id3 = b["id"].as_str().unwrap().to_owned();
    call(
        &w,
        "lead2",
        "POST",
        &format!("/api/v1/requests/{id3}/approve"),
        json!({}),
    )
    .await;
    let (_, b) = call(
        &w,
        "oncall1",
        "POST",
        &format!("/api/v1/requests/{id3}/execute"),
        json!({}),
    )
    .await;
    assert_eq!(b["error"]["sqlstate"], "42601", "{b}");
    let count = w
        .cluster
        .psql("orders", "SELECT count(*) FROM orders")
        .unwrap();
    assert_eq!(count.trim(), "600");
    w.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let w = jit_world("").await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "resource": "payments", "reason": "x" }),
            404,
            "access_denied",
        ),
        (
            json!({ "resource": "orders", "for": "2h", "reason": "x" }),
            400,
            "duration_too_long",
        ),
        (
            json!({ "resource": "orders", "for": "soon", "reason": "x" }),
            400,
            "bad_duration",
        ),
        (
            json!({ "resource": "orders", "reason": "   " }),
            400,
            "missing_reason",
        ),
        (json!({ "resource": "orders" }), 400, "bad_request"),
        (
            json!({ "resource": "orders", "access": "read", "reason": "x" }),
            409,
            "already_allowed",
        ),
    ];
    for (body, status, code) in cases {
        let (s, b) = call(&w, "oncall1", "POST", "/api/v1/requests", body.clone()).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (status, Some(code)),
            "{body}: {b}"
        );
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
    }
    let (_, list) = call(&w, "oncall1", "GET", "/api/v1/requests", Value::Null).await;
    assert_eq!(list, json!([]), "nothing was filed");
    // Approving twice.
    let id = request_write(&w, "30m").await;
    approve(&w, &id).await;
    let (s, b) = call(
        &w,
        "lead1",
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("already_approved")),
        "{b}"
    );
    // Someone who may not see it is told it does not exist.
    let (s, _) = call(
        &w,
        "oncall1",
        "GET",
        "/api/v1/requests/req_nope",
        Value::Null,
    )
    .await;
    assert_eq!(s, 404);
    // A token of a user removed from the policy.
    let token = w.token("lead2");
    let path = w.dir.path().join("airlock.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[[user]]\nname = \"lead2\"\nroles = [\"sre-lead\"]\n", ""),
    )
    .unwrap();
    let mut status = 0;
    for _ in 0..40 {
        let resp = w
            .http_client()
            .get(format!("{}/api/v1/requests", w.http()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        status = resp.status().as_u16();
        if status == 403 {
            let b: Value = resp.json().await.unwrap();
            assert_eq!(b["error"], "unknown_user", "{b}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 403,
        "the removed user's token stops working after the reload"
    );
    w.stop().await;
}

#[tokio::test]
async fn approving_an_expired_request_is_refused() {
    let w = jit_world("").await;
    let path = w.dir.path().join("airlock.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("request_ttl = \"1h\"", "request_ttl = \"1s\""),
    )
    .unwrap();
    // Wait for the reload to apply (a request filed now expires in 1s).
    let mut id = String::new();
    for _ in 0..50 {
        id = request_write(&w, "30m").await;
        let (_, b) = call(
            &w,
            "oncall1",
            "GET",
            &format!("/api/v1/requests/{id}"),
            Value::Null,
        )
        .await;
        if b["expires_ms"].as_i64().unwrap() - b["created_ms"].as_i64().unwrap() == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, b) = call(
        &w,
        "lead1",
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("request_expired")),
        "{b}"
    );
    let (_, b) = call(
        &w,
        "oncall1",
        "GET",
        &format!("/api/v1/requests/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(b["state"], "expired");
    w.stop().await;
}

type Received = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver that checks every signature. It answers 503 while `up`
/// is false.
async fn receiver(up: Arc<std::sync::atomic::AtomicBool>) -> (String, Received) {
    use axum::http::{HeaderMap, StatusCode};
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hook/T0001/SECRETPATH",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                if !up.load(std::sync::atomic::Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let sig = headers
                    .get("x-airlock-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                assert!(
                    airlock_webhook::verify(WEBHOOK_SECRET.as_bytes(), &body, sig),
                    "bad signature {sig}"
                );
                assert!(!airlock_webhook::verify(b"wrong", &body, sig));
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    headers["x-airlock-event"].to_str().unwrap(),
                    v["event"].as_str().unwrap()
                );
                store.lock().unwrap().push(v);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook/T0001/SECRETPATH"), received)
}

async fn wait_for_event(received: &Received, kind: &str) -> Value {
    for _ in 0..100 {
        if let Some(v) = received.lock().unwrap().iter().find(|v| v["event"] == kind) {
            return v.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {kind} event arrived; got {:?}",
        received.lock().unwrap()
    );
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_after_the_receiver_was_down() {
    std::env::set_var(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET);
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, received) = receiver(up.clone()).await;
    let w = jit_world(&format!(
        "[[webhook]]\nurl = \"{url}\"\nevents = [\"request.created\", \"request.approved\", \"grant.revoked\"]\nsecret_env = \"{WEBHOOK_SECRET_ENV}\"\n"
    ))
    .await;
    let id = request_write(&w, "30m").await;
    // The first attempt meets a receiver that is down; the retry (after 1s) gets through.
    tokio::time::sleep(Duration::from_millis(300)).await;
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let created = wait_for_event(&received, "request.created").await;
    assert_eq!(created["data"]["request"]["id"], id.as_str());
    assert!(
        created["text"]
            .as_str()
            .unwrap()
            .contains("oncall1 requests write access to orders for 30m"),
        "{created}"
    );
    let grant = approve(&w, &id).await;
    let approved = wait_for_event(&received, "request.approved").await;
    assert_eq!(approved["data"]["grant"]["id"], grant.as_str());
    call(
        &w,
        "lead1",
        "POST",
        &format!("/api/v1/grants/{grant}/revoke"),
        json!({ "reason": "done" }),
    )
    .await;
    wait_for_event(&received, "grant.revoked").await;
    let status: Vec<airlock_webhook::TargetStatus> =
        w.api("lead1").get("/api/v1/webhooks").await.unwrap();
    assert_eq!(status.len(), 1);
    assert!(status[0].delivered >= 3, "{status:?}");
    assert!(
        status[0].last_error.is_some(),
        "the first attempt failed: {status:?}"
    );
    let shown = serde_json::to_string(&status).unwrap();
    assert!(
        !shown.contains("SECRETPATH") && !shown.contains(WEBHOOK_SECRET),
        "{shown}"
    );
    w.stop().await;
}
