//! API tokens through the real API and the real `airlock` binary: listing
//! and revoking (one's own, an admin's for everyone, nobody else's),
//! revocation ending the token's live sessions and credentials, the default
//! expiry of `airlock token issue`, `airlock login` from standard input;
//! the endpoints gated by role; and the data directory's permissions.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::cli::{airlock_in, has, User};
use common::World;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

async fn call(w: &World, method: &str, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let url = format!("{}{path}", w.http());
    let http = w.http_client();
    let mut req = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        "POST" => http
            .post(url)
            .json(&serde_json::json!({ "service": "checkout", "version": "v9" })),
        m => panic!("method {m}"),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The id of the token `secret` (the one its own listing marks current).
async fn token_id(w: &World, secret: &str) -> String {
    let (status, list) = call(w, "GET", "/api/v1/tokens", Some(secret)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["current"] == true)
        .unwrap_or_else(|| panic!("no current token in {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_and_revoked_by_their_owner_or_an_admin_only() {
    let w = World::start().await;
    let (a1, a2) = (w.token("oncall1"), w.token("oncall1"));
    let admin = w.token("lead1");
    let (a1_id, a2_id, admin_id) = (
        token_id(&w, &a1).await,
        token_id(&w, &a2).await,
        token_id(&w, &admin).await,
    );

    // Own tokens: both of oncall1's, newest first, nobody else's, and
    // nothing secret.
    let (status, mine) = call(&w, "GET", "/api/v1/tokens", Some(&a1)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&mine), vec![a2_id.clone(), a1_id.clone()]);
    let text = mine.to_string();
    assert!(!text.contains(&a1) && !text.contains(&a2) && !text.contains("hash"));
    assert_eq!(mine[0]["state"], "active");

    // Others' tokens: admins only.
    for q in ["?all=true", "?user=lead1"] {
        let (status, body) = call(&w, "GET", &format!("/api/v1/tokens{q}"), Some(&a1)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{q}: {body}");
        assert!(body["message"].as_str().unwrap().contains("admin_roles"));
    }
    let (status, all) = call(&w, "GET", "/api/v1/tokens?all=true", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    for id in [&a1_id, &a2_id, &admin_id] {
        assert!(ids(&all).contains(id), "{all}");
    }
    let (_, theirs) = call(&w, "GET", "/api/v1/tokens?user=oncall1", Some(&admin)).await;
    assert_eq!(ids(&theirs), vec![a2_id.clone(), a1_id.clone()]);

    // Someone else's token is answered like a missing one, and stays valid.
    for id in [admin_id.as_str(), "tok_nonexistent"] {
        let (status, body) = call(&w, "DELETE", &format!("/api/v1/tokens/{id}"), Some(&a1)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["message"], format!("no token {id:?} of yours"));
    }
    assert_eq!(
        call(&w, "GET", "/api/v1/whoami", Some(&admin)).await.0,
        StatusCode::OK
    );

    // The owner revokes one; it no longer authenticates.
    let (status, revoked) = call(&w, "DELETE", &format!("/api/v1/tokens/{a2_id}"), Some(&a1)).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    let (status, body) = call(&w, "GET", "/api/v1/whoami", Some(&a2)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].as_str().unwrap().contains("revoked"));

    // An admin revokes someone else's.
    let (status, _) = call(
        &w,
        "DELETE",
        &format!("/api/v1/tokens/{a1_id}"),
        Some(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(&w, "GET", "/api/v1/whoami", Some(&a1)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Both revocations are access events in the audit log, by whom, of
    // whose token, without secrets.
    let mut revoked = Vec::new();
    airlock_audit::read::scan(&airlock_audit::audit_dir(&w.data_dir()), 0, |raw| {
        let e = airlock_audit::read::Entry::parse(raw.line).unwrap();
        if let airlock_audit::Event::Access {
            event, actor, data, ..
        } = e.event
        {
            if event == "token.revoked" {
                revoked.push((actor, data["token"]["id"].as_str().unwrap().to_owned()));
                let line = String::from_utf8_lossy(raw.line);
                assert!(!line.contains(&a1) && !line.contains(&a2), "{line}");
            }
        }
        Ok(true)
    })
    .unwrap();
    assert_eq!(
        revoked,
        vec![("oncall1".to_owned(), a2_id), ("lead1".to_owned(), a1_id)]
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_ends_its_live_sessions_and_revokes_its_credentials() {
    let w = World::start().await;
    let (doomed, kept) = (w.token("oncall1"), w.token("oncall1"));
    let doomed_id = token_id(&w, &doomed).await;
    let mint = |secret: String| {
        let w = &w;
        async move {
            let api = airlock::client::Api::new(&w.http(), &secret, Some(&w.ca_file())).unwrap();
            let credential: airlock::client::Credential = api
                .post(
                    "/api/v1/credentials",
                    &serde_json::json!({ "resource": "orders", "access": "read" }),
                )
                .await
                .unwrap();
            airlock::client::Connection {
                credential,
                ca_file: None,
            }
        }
    };
    let (c_doomed, c_kept) = (mint(doomed.clone()).await, mint(kept.clone()).await);
    let (s_doomed, s_kept) = (w.tokio_pg(&c_doomed).await, w.tokio_pg(&c_kept).await);
    s_doomed.simple_query("select 1").await.unwrap();

    let (status, _) = call(
        &w,
        "DELETE",
        &format!("/api/v1/tokens/{doomed_id}"),
        Some(&doomed),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The live session minted with the revoked token ends (FATAL), the
    // other token's session goes on.
    let mut ended = None;
    for _ in 0..40 {
        if let Err(e) = s_doomed.simple_query("select 1").await {
            ended = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = ended.expect("the session of the revoked token ended");
    let text = format!("{e:?}");
    assert!(
        text.contains("was revoked") || s_doomed.is_closed(),
        "{text}"
    );
    s_kept.simple_query("select 1").await.unwrap();

    // Its credential no longer logs in; the other still does.
    let err = w
        .tokio_pg_config(&c_doomed)
        .connect(w.tls(&c_doomed))
        .await
        .err()
        .expect("a revoked credential is refused");
    assert!(
        format!("{err:?}").contains("password authentication failed"),
        "{err:?}"
    );
    let _again = w.tokio_pg(&c_kept).await;
    w.stop().await;
}

/// Runs `airlock` with `stdin` piped in.
async fn airlock_stdin(
    home: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_HOME", home)
        .env("AIRLOCK_LOG", "off")
        .env_remove("AIRLOCK_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_issues_expiring_tokens_logs_in_from_stdin_lists_and_revokes() {
    let w = World::start().await;
    let config = w.dir.path().join("airlock.toml");
    let config = config.to_str().unwrap();
    let home = tempfile::tempdir().unwrap();

    // Issued without --ttl: expires after [access] token_ttl (30 days).
    let issue = airlock_in(
        home.path(),
        &["token", "issue", "oncall1", "--config", config],
        &[],
    )
    .await;
    let secret = issue.ok().trim().to_owned();
    assert!(secret.starts_with("alk_"), "{}", issue.show());

    // Login reads the token from standard input; nothing on argv.
    let (server, ca) = (w.http(), w.ca_file());
    let login = [
        "login",
        "--server",
        server.as_str(),
        "--ca-file",
        ca.to_str().unwrap(),
    ];
    let (code, out, err) = airlock_stdin(home.path(), &login, &format!("{secret}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("logged in to {server} as oncall1\n"));

    let user = User {
        name: "oncall1",
        home,
    };
    let list = user.run(&["token", "list", "--json"]).await.json();
    let me = &list[0];
    assert_eq!(me["current"], true, "{list}");
    let days = (me["expires_ms"].as_i64().unwrap() - me["created_ms"].as_i64().unwrap()) as f64
        / 86_400_000.0;
    assert!((days - 30.0).abs() < 0.01, "{list}");

    // --ttl never, only when asked for.
    let forever = airlock_in(
        user.home.path(),
        &[
            "token", "issue", "oncall1", "--config", config, "--ttl", "never",
        ],
        &[],
    )
    .await;
    let forever = forever.ok().trim().to_owned();
    let forever_id = token_id(&w, &forever).await;
    let list = user.run(&["token", "list", "--json"]).await.json();
    let t = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == forever_id.as_str())
        .unwrap();
    assert!(t["expires_ms"].is_null(), "{list}");

    // The human listing, then a revocation by id.
    let text = user.run(&["token", "list"]).await.ok().to_owned();
    has(
        &text,
        &[&forever_id, "active", "expires never", "(this CLI's)"],
    );
    let out = user.run(&["token", "revoke", &forever_id]).await;
    has(out.ok(), &["revoked API token", &forever_id]);
    assert_eq!(
        call(&w, "GET", "/api/v1/whoami", Some(&forever)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Another's token, as a non-admin: not found.
    let lead = w.token("lead1");
    let lead_id = token_id(&w, &lead).await;
    has(
        user.run(&["token", "revoke", &lead_id]).await.fails(),
        &["no token", "airlock token list"],
    );
    has(
        user.run(&["token", "list", "--all"]).await.fails(),
        &["admin_roles"],
    );

    // An empty standard input is refused with what to do.
    let other = tempfile::tempdir().unwrap();
    let (code, _, err) = airlock_stdin(other.path(), &login, "").await;
    assert_eq!(code, 1, "{err}");
    has(&err, &["no API token was given", "AIRLOCK_TOKEN"]);
    w.stop().await;
}

/// Regression: /metrics answered anyone, and the webhook status, telemetry
/// reads and deploy marks anyone with a token. Each is gated by role now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoints_are_gated_by_role() {
    let w = World::start().await;
    let (admin, oncall, visitor) = (w.token("lead1"), w.token("oncall1"), w.token("visitor"));
    let trace = "/api/v1/traces/0af7651916cd43dd8448eb211c80319c";
    let compare = "/api/v1/compare?service=checkout&from=v1&to=v2";
    // (method, path, refused, allowed)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("GET", "/metrics", oncall.as_str(), admin.as_str()),
        ("GET", "/api/v1/webhooks", &oncall, &admin),
        ("GET", "/api/v1/timeline", &visitor, &oncall),
        ("GET", trace, &visitor, &oncall),
        ("GET", compare, &visitor, &oncall),
        ("GET", "/api/v1/deploys", &visitor, &oncall),
        ("POST", "/api/v1/deploys", &visitor, &oncall),
        ("POST", "/api/v1/deploys", &visitor, &admin),
    ];
    for (method, path, refused, allowed) in cases {
        let (status, body) = call(&w, method, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        let (status, body) = call(&w, method, path, Some(*refused)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"], "role_required", "{body}");
        let (status, body) = call(&w, method, path, Some(*allowed)).await;
        assert!(
            status.is_success() || (status == StatusCode::NOT_FOUND && path.contains("traces")),
            "{method} {path}: {status} {body}"
        );
    }

    // Prometheus' scrape token reads /metrics and nothing else; a wrong one
    // reads nothing.
    let (status, body) = call(&w, "GET", "/metrics", Some(common::METRICS_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.as_str().unwrap().contains("# EOF"), "{body}");
    for path in ["/api/v1/whoami", "/api/v1/timeline", "/api/v1/webhooks"] {
        let (status, _) = call(&w, "GET", path, Some(common::METRICS_TOKEN)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, _) = call(&w, "GET", "/metrics", Some("test-scrape-token-wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    w.stop().await;
}

/// Regression: a data directory that already existed kept its loose modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loose_existing_data_dir_is_made_private_and_core_dumps_are_off() {
    let mut w = World::start_with(common::Options {
        subprocess: true,
        ..Default::default()
    })
    .await;
    let data = w.data_dir();
    let config = w.dir.path().join("airlock.toml");
    let http = w.http();
    let client = w.http_client();
    // Stop the gateway (SIGTERM, as in production) but keep the world's files.
    let mut first = w.child.take().unwrap();
    let _ = std::process::Command::new("kill")
        .arg(first.id().to_string())
        .status();
    assert!(first.wait().unwrap().success());

    // Loosen everything the gateway made, and add a stray file.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let mut all = vec![data.clone()];
    let mut i = 0;
    while i < all.len() {
        if all[i].is_dir() {
            for e in std::fs::read_dir(&all[i]).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    for p in &all {
        set(p, if p.is_dir() { 0o755 } else { 0o644 });
    }
    std::fs::write(data.join("stray.txt"), "x").unwrap();
    set(&data.join("stray.txt"), 0o666);
    all.push(data.join("stray.txt"));

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..400 {
        if client.get(format!("{http}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    assert!(up, "the gateway came back up");

    // (SQLite removes its -wal and -shm files at a clean close.)
    for p in all.iter().filter(|p| p.exists()) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{} is {:o}", p.display(), mode(p));
    }
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], &["0", "0"], "{core}");
    drop(w);
}
