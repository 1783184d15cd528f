//! The web console end to end: a real gateway and PostgreSQL, telemetry and
//! a psql session to look at, then headless Chromium driven by Playwright
//! (`tests/console/e2e.mjs`) through sign-in, a request approved from a
//! second browser context, the grant's countdown, the timeline, a trace, a
//! session replay and every page. Screenshots land in
//! `target/console-screenshots/`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{jit_world, now_ms};

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sign_in_request_approve_countdown_timeline_and_replay() {
    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/setup.sh (npm ci there)",
        dir.display()
    );
    // One runbook, to run from the browser.
    let books = tempfile::tempdir().unwrap();
    std::fs::write(
        books.path().join("greet.toml"),
        r#"
name = "greet"
description = "Say hello through a real process"
roles = ["oncall"]

[[param]]
name = "who"
type = "string"
pattern = "[a-z ]+"

[[step]]
kind = "command"
argv = ["/usr/bin/printf", "hello, %s\n", "{{who}}"]
"#,
    )
    .unwrap();
    let w = jit_world(&format!(
        "\n[audit]\nauditor_roles = [\"sre-lead\"]\n\n[runbooks]\ndir = \"{}\"\n",
        books.path().display()
    ))
    .await;
    let http = w.http_client();

    // A span of checkout v2, thirty seconds ago: its first sight is also an
    // automatic deploy marker.
    let start = (now_ms() - 30_000) * 1_000_000;
    let body = serde_json::json!({ "resourceSpans": [{
        "resource": { "attributes": [
            { "key": "service.name", "value": { "stringValue": "checkout" } },
            { "key": "service.version", "value": { "stringValue": "v2" } },
        ]},
        "scopeSpans": [{ "spans": [{
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
            "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + 12_000_000).to_string(),
        }]}],
    }]});
    let r = http
        .post(format!("{}/v1/traces", w.http()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);

    // A read session with statements, for the timeline and the replay; the
    // second has an escape sequence inside a string literal: recorded
    // exactly, it must show in the replay as a visible badge, never raw.
    let conn = w.connect("oncall1", "read").await;
    let out = w.psql(
        &conn,
        &[
            "-X",
            "-At",
            "-c",
            "SELECT count(*) FROM orders",
            "-c",
            "SELECT 'paint \x1b[31mred' AS painted",
        ],
    );
    assert_eq!(
        common::stdout(&out).lines().next(),
        Some("600"),
        "{}",
        common::stderr(&out)
    );

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    let secrets = [common::RO_ENV, common::RW_ENV]
        .iter()
        .map(|v| std::env::var(v).unwrap())
        .collect::<Vec<_>>()
        .join(",");
    let (oncall, lead) = (w.token("oncall1"), w.token("lead1"));
    let base = w.http();
    let script = dir.join("e2e.mjs");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .current_dir(&dir)
            .env("AIRLOCK_URL", base)
            .env("ONCALL_TOKEN", oncall)
            .env("LEAD_TOKEN", lead)
            .env("SCREENSHOTS", &shots)
            .env("SECRETS", secrets)
            .output()
            .expect("node runs (scripts/setup.sh installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the console e2e failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("console e2e: ok"), "{stdout}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_assets_are_embedded_and_locked_to_this_origin() {
    let w = jit_world("").await;
    let http = w.http_client();
    for (path, content_type) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = http
            .get(format!("{}{path}", w.http()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{path}");
        let h = r.headers().clone();
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        for want in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(want), "{path}: {csp}");
        }
        assert_eq!(h["x-content-type-options"], "nosniff");
        // (The SVG namespace is a name, not a request.)
        let text = r
            .text()
            .await
            .unwrap()
            .replace("http://www.w3.org/2000/svg", "");
        // Nothing from another host: no absolute URLs in what is served.
        assert!(
            !text.contains("https://") && !text.contains("http://"),
            "{path} names another host"
        );
    }
    // The API's own 404 is unchanged beside the console.
    let r = http
        .get(format!("{}/api/v1/nope", w.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    w.stop().await;
}
