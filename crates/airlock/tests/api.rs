//! The HTTP API: health, metrics, OpenAPI, bearer tokens, credential minting
//! rules, and that no upstream password ever appears in a response.

mod common;

use common::{World, RO_ENV, RW_ENV};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_auth_routes_and_credential_rules() {
    let w = World::start().await;
    let http = w.http_client();
    let base = w.http();

    // The API speaks only TLS by default: a plaintext request gets no answer.
    let mut raw = tokio::net::TcpStream::connect(w.http_addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        raw.read_to_end(&mut answer),
    )
    .await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // Public endpoints.
    let health: serde_json::Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let doc: serde_json::Value = http
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let ca = http
        .get(format!("{base}/api/v1/ca.crt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    // Every documented route is served (none falls through to 404 with a
    // valid token); lead1 is an admin, so the admin-only ones answer too.
    let token = w.token("oncall1");
    let admin = w.token("lead1");
    for (method, path) in airlock_api::openapi::ROUTES {
        let url = format!("{base}{}", path.replace("{id}", "sess_nonexistent"));
        let req = match *method {
            "get" => http.get(&url),
            "post" => http
                .post(&url)
                .json(&serde_json::json!({ "resource": "orders" })),
            "delete" => http.delete(&url),
            m => panic!("method {m}"),
        };
        let resp = req.bearer_auth(&admin).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        // Served: answered by the route's handler (a success, or the
        // handler's own refusal of this placeholder input), never by the
        // fallback or a method mismatch.
        assert!(
            !body.contains("no such endpoint") && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status} {body}"
        );
        assert!(
            status.is_success() || status.is_client_error(),
            "{method} {path}: {status} {body}"
        );
        // (explain and compare need parameters; verify needs an auditor role)
        if !path.contains("{id}")
            && *method == "get"
            && !path.contains("explain")
            && !path.ends_with("/compare")
            && !path.ends_with("/audit/verify")
        {
            assert!(status.is_success(), "{method} {path}: {status} {body}");
        }
    }
    let resp = http
        .get(format!("{base}/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Bearer auth: missing, malformed, unknown.
    for (header, fragment) in [
        (None, "no Authorization header"),
        (Some("Basic abc"), "not `Bearer <token>`"),
        (Some("Bearer alk_unknown"), "unknown token"),
    ] {
        let mut req = http.get(format!("{base}/api/v1/whoami"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(fragment),
            "{body}"
        );
        assert!(
            body["hint"]
                .as_str()
                .unwrap()
                .contains("airlock token issue"),
            "{body}"
        );
    }

    // Only the token's hash is stored.
    let store = airlock::gateway::open_store(&w.data_dir()).unwrap();
    let tokens = store.list_tokens(Some("oncall1")).unwrap();
    assert!(!tokens.is_empty());
    let db = std::fs::read(airlock::gateway::store_path(&w.data_dir())).unwrap();
    let wal = std::fs::read(w.data_dir().join("airlock.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !contains(bytes, token.as_bytes()),
            "token text found in the store"
        );
    }

    // Credential rules: (user, body, status, fragment)
    let cases = [
        (
            "oncall1",
            serde_json::json!({"resource": "orders", "access": "write"}),
            StatusCode::FORBIDDEN,
            "standing access is read",
        ),
        (
            "visitor",
            serde_json::json!({"resource": "orders"}),
            StatusCode::FORBIDDEN,
            "no read access",
        ),
        (
            "oncall1",
            serde_json::json!({"resource": "payments"}),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "oncall1",
            serde_json::json!({"resource": "orders", "ttl": "9h"}),
            StatusCode::BAD_REQUEST,
            "at most 8h",
        ),
        (
            "oncall1",
            serde_json::json!({"resource": "orders", "ttl": "soon"}),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            "oncall1",
            serde_json::json!({"resource": "orders", "acess": "read"}),
            StatusCode::BAD_REQUEST,
            "acess",
        ),
    ];
    for (user, body, status, fragment) in cases {
        let resp = http
            .post(format!("{base}/api/v1/credentials"))
            .bearer_auth(w.token(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{user} {body}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(fragment), "{user} {body}: {text}");
    }

    // A good credential: 8h by default, shorter on request, verifier-only storage.
    let resp = http
        .post(format!("{base}/api/v1/credentials"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"resource": "orders", "ttl": "30m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let text = resp.text().await.unwrap();
    let cred: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ttl_ms = cred["expires_at_ms"].as_i64().unwrap() - common::now_ms();
    assert!((29 * 60_000..=30 * 60_000).contains(&ttl_ms), "{ttl_ms}");
    let secret = cred["password"].as_str().unwrap();
    assert!(secret.len() >= 43);
    let stored = store.credentials_for("oncall1", "orders", 0, 10).unwrap();
    assert!(stored
        .iter()
        .all(|c| c.verifier.starts_with("SCRAM-SHA-256$4096:")));
    let db = std::fs::read(airlock::gateway::store_path(&w.data_dir())).unwrap();
    let wal = std::fs::read(w.data_dir().join("airlock.db-wal")).unwrap_or_default();
    assert!(!contains(&db, secret.as_bytes()) && !contains(&wal, secret.as_bytes()));

    // No upstream password anywhere in what the API says.
    let ro = std::env::var(RO_ENV).unwrap();
    let rw = std::env::var(RW_ENV).unwrap();
    let mut all = text;
    for path in [
        "/api/v1/whoami",
        "/api/v1/resources",
        "/api/v1/sessions",
        "/metrics",
        "/api/openapi.json",
    ] {
        all.push_str(
            &http
                .get(format!("{base}{path}"))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert!(!all.contains(&ro) && !all.contains(&rw));

    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    assert!(o.status.success());

    // A session's statements are its owner's to read, nobody else's.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let api = airlock::client::Api::new(&base, &token, Some(&w.ca_file())).unwrap();
    let mine: Vec<serde_json::Value> = api.get("/api/v1/sessions").await.unwrap();
    let id = mine[0]["id"].as_str().unwrap().to_owned();
    let statements: Vec<serde_json::Value> = api
        .get(&format!("/api/v1/sessions/{id}/statements"))
        .await
        .unwrap();
    assert_eq!(statements[0]["text"], "select 1");
    let theirs = http
        .get(format!("{base}/api/v1/sessions/{id}/statements"))
        .bearer_auth(w.token("lead1"))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);

    // Metrics count what happened (read by an admin).
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(w.token("lead1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Whole names at the start of a line: a registry prefix once put a stray
    // `_` before every name, which `contains` alone did not notice.
    for name in [
        "airlock_postgres_connections_total{outcome=\"session\"} ",
        "airlock_postgres_sessions_total{resource=\"orders\",access=\"read\"} ",
        "airlock_telemetry_records_total{outcome=\"accepted\"} ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} in {metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .all(|l| l.starts_with('#') || l.starts_with("airlock_")),
        "{metrics}"
    );
    w.stop().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    let w = World::start_with(common::Options {
        subprocess: true,
        ..common::Options::default()
    })
    .await;
    let token = w.token("oncall1");
    let read = w.connect("oncall1", "read").await;
    let write = w.connect("lead1", "write").await;
    assert!(w.psql(&read, &["-c", "select 1"]).status.success());
    assert!(w.psql(&write, &["-c", "select 1"]).status.success());
    let mut bad = read.env();
    for (k, v) in bad.iter_mut() {
        if *k == "PGPASSWORD" {
            *v = "wrong-password-xyz".into();
        }
    }
    let _ = std::process::Command::new("psql")
        .args(["-X", "-c", "select 1"])
        .envs(bad)
        .output()
        .unwrap();
    let _ = w
        .http_client()
        .get(format!("{}/api/v1/whoami", w.http()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(w.dir.path().join("gateway.log")).unwrap();
    assert!(
        log.contains("session started"),
        "the log is being captured: {log}"
    );
    for secret in [
        std::env::var(RO_ENV).unwrap(),
        std::env::var(RW_ENV).unwrap(),
        read.credential.password.clone(),
        write.credential.password.clone(),
        token,
        "wrong-password-xyz".to_owned(),
    ] {
        assert!(!log.contains(&secret), "a secret reached the log");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_api_when_tls_is_turned_off() {
    let w = World::start_with(common::Options {
        http_tls: false,
        ..common::Options::default()
    })
    .await;
    assert!(w.http().starts_with("http://"));
    let me: serde_json::Value = w.api("oncall1").get("/api/v1/whoami").await.unwrap();
    assert_eq!(me["user"], "oncall1");
    // PostgreSQL clients still get TLS with verify-full.
    let conn = w.connect("oncall1", "read").await;
    assert_eq!(common::stdout(&w.psql(&conn, &["-c", "select 5"])), "5\n");
    w.stop().await;
}
