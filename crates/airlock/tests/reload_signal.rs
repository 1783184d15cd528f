//! Policy reload of the real `airlock serve` process (a child of the test),
//! triggered by SIGHUP.
//!
//! The gateway reloads on SIGHUP *and* when a poll (every second) sees the
//! file's content hash change, so "the new policy is in force soon after the
//! signal" alone would not prove the signal does anything: the poll would
//! get there too. What only the signal path does is visible in the
//! gateway's log (its stderr, which the test world keeps in `gateway.log`):
//! every reload attempt is logged with its trigger, and the poll never looks
//! at a file whose hash it has already seen. So these tests check both:
//! - the effect, end to end through the API (and a live session);
//! - the log lines with `trigger="SIGHUP"`, including on an unchanged file,
//!   which only the signal handler can produce.

mod common;

use std::time::{Duration, Instant};

use common::{Options, World};
use serde_json::Value;

/// The JIT policy of `tests/jit.rs` (oncall1 reads orders, may request write
/// or take it by break-glass; the leads read).
const POLICY: &str = r#"
[[role]]
name = "oncall"
standing    = [{ resource = "orders", access = "read" }]
requestable = [{ resource = "orders", access = "write", max = "1h", approvals = 1, approvers = ["sre-lead"] }]
break_glass = [{ resource = "orders", access = "write", max = "30m" }]

[[role]]
name = "sre-lead"
standing = [{ resource = "orders", access = "read" }]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "lead1"
roles = ["sre-lead"]

[access]
request_ttl = "1h"
"#;

const REQUESTABLE: &str = "requestable = [{ resource = \"orders\", access = \"write\", max = \"1h\", approvals = 1, approvers = [\"sre-lead\"] }]\n";

async fn world() -> World {
    World::start_with(Options {
        subprocess: true,
        policy: Some(POLICY.to_owned()),
        ..Options::default()
    })
    .await
}

fn policy_path(w: &World) -> std::path::PathBuf {
    // The file `airlock serve --config` was started with.
    w.config.path.clone()
}

/// Rewrites the policy file with `edit` applied to its text (which must change it).
fn rewrite(w: &World, edit: impl FnOnce(&str) -> String) {
    let path = policy_path(w);
    let text = std::fs::read_to_string(&path).unwrap();
    let next = edit(&text);
    assert_ne!(next, text, "the edit changes the file");
    replace_file(&path, &next);
}

/// Replaces the file by rename, as editors do, so the gateway's poll never
/// reads a half-written file.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `text` with `from` replaced; fails if `from` is not there.
fn with(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "no {from:?} in the policy");
    text.replacen(from, to, 1)
}

fn sighup(w: &World) {
    let pid = w
        .gateway_pid()
        .expect("the gateway runs as a child process");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -HUP {pid}: {status}");
}

/// The gateway's log so far, without ANSI colour codes.
fn log(w: &World) -> String {
    let raw = std::fs::read_to_string(w.dir.path().join("gateway.log")).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The log's entries (an entry starts with its timestamp; a multi-line
/// message, like a refused policy's diagnostics, is one entry, followed by
/// its fields).
fn entries(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let starts_entry = line.len() > 10
            && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && line.as_bytes()[4] == b'-';
        match out.last_mut() {
            Some(last) if !starts_entry => {
                last.push('\n');
                last.push_str(line);
            }
            _ => out.push(line.to_owned()),
        }
    }
    out
}

/// The entries after the first `skip` that contain every one of `wants`.
fn entries_with(log: &str, skip: usize, wants: &[&str]) -> Vec<String> {
    entries(log)
        .into_iter()
        .skip(skip)
        .filter(|e| wants.iter().all(|w| e.contains(w)))
        .collect()
}

/// Waits (up to `within`) for a log entry after the first `skip` that
/// contains every one of `wants`, and returns it.
async fn await_log(w: &World, skip: usize, wants: &[&str], within: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = log(w);
        if let Some(entry) = entries_with(&text, skip, wants).into_iter().next() {
            return entry;
        }
        assert!(
            start.elapsed() < within,
            "no log entry with {wants:?} within {within:?}; the log after entry {skip}:\n{}",
            entries(&text)[skip.min(entries(&text).len())..].join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many entries the log has now: later searches skip them.
fn log_len(w: &World) -> usize {
    entries(&log(w)).len()
}

/// GET as `user`: (status, body).
async fn get(w: &World, token: &str, path: &str) -> (u16, Value) {
    let resp = w
        .http_client()
        .get(format!("{}{path}", w.http()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The outcome the gateway's policy in force gives oncall1 for write on orders.
async fn oncall_write_outcome(w: &World, token: &str) -> String {
    let (status, body) = get(
        w,
        token,
        "/api/v1/policy/explain?resource=orders&access=write",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["outcome"].as_str().unwrap().to_owned()
}

/// Polls `probe` until it returns true, for at most `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_and_is_logged_as_the_trigger() {
    let w = world().await;
    let oncall = w.token("oncall1");
    // A token for a user the policy does not have yet.
    let newbie = w.token("newbie");
    assert_eq!(oncall_write_outcome(&w, &oncall).await, "requestable");
    let (status, body) = get(&w, &newbie, "/api/v1/whoami").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("unknown_user"))
    );

    // SIGHUP on an unchanged file: a reload attempt that only the signal
    // handler makes (the poll skips a hash it has seen), logged as such.
    let mark = log_len(&w);
    sighup(&w);
    let line = await_log(
        &w,
        mark,
        &[
            "trigger=\"SIGHUP\"",
            "policy reloaded: no change in settings",
        ],
        Duration::from_secs(3),
    )
    .await;
    assert!(line.contains(" INFO "), "{line}");
    assert_eq!(oncall_write_outcome(&w, &oncall).await, "requestable");

    // Remove the requestable rule and add a user, then SIGHUP.
    let mark = log_len(&w);
    rewrite(&w, |t| {
        let t = with(t, REQUESTABLE, "");
        format!("{t}\n[[user]]\nname = \"newbie\"\nroles = [\"oncall\"]\n")
    });
    sighup(&w);
    let took = within(Duration::from_secs(3), || async {
        oncall_write_outcome(&w, &oncall).await == "break_glass"
    })
    .await;
    assert!(took.is_some(), "the new policy is in force within 3s");
    let (status, body) = get(&w, &newbie, "/api/v1/whoami").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "newbie");
    let (status, body) = get(&w, &newbie, "/api/v1/resources").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.as_array()
            .unwrap()
            .iter()
            .any(|r| r["resource"] == "orders" && r["access"] == "read"),
        "{body}"
    );
    // The log: the signal was handled after the rewrite, and the new policy
    // was applied exactly once (by the signal, or by the poll when it saw
    // the file first; then the signal found nothing new to apply).
    await_log(&w, mark, &["trigger=\"SIGHUP\""], Duration::from_secs(3)).await;
    let text = log(&w);
    let applied = entries_with(
        &text,
        mark,
        &["policy reloaded from", "1 resources, 2 roles, 3 users"],
    );
    assert_eq!(applied.len(), 1, "{applied:#?}");
    assert!(
        applied[0].contains("trigger=\"SIGHUP\"")
            || (applied[0].contains("trigger=\"file change\"")
                && !entries_with(
                    &text,
                    mark,
                    &["trigger=\"SIGHUP\"", "no change in settings"]
                )
                .is_empty()),
        "{applied:#?}"
    );
    // Nothing else was reloaded or refused since.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = log(&w);
    assert!(
        entries_with(&text, mark, &["policy reload refused"]).is_empty(),
        "{text}"
    );
    assert_eq!(
        entries_with(&text, mark, &["policy reloaded from"]).len(),
        1,
        "{text}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_on_sighup_is_refused_and_live_sessions_survive() {
    let w = world().await;
    let oncall = w.token("oncall1");
    let lead = w.token("lead1");
    let read = w.connect("oncall1", "read").await;
    let session = w.tokio_pg(&read).await;
    let rows = session
        .simple_query("SELECT count(*) FROM orders")
        .await
        .expect("the session works before");
    assert!(!rows.is_empty());

    // Invalid: an unknown role. It would also remove lead1, which would be
    // visible if it were applied.
    let original = std::fs::read_to_string(policy_path(&w)).unwrap();
    let mark = log_len(&w);
    rewrite(&w, |t| {
        let t = with(t, "roles = [\"oncall\"]", "roles = [\"oncal\"]");
        with(
            &t,
            "[[user]]\nname = \"lead1\"\nroles = [\"sre-lead\"]\n",
            "",
        )
    });
    let bad_line = {
        let text = std::fs::read_to_string(policy_path(&w)).unwrap();
        1 + text.lines().position(|l| l.contains("\"oncal\"")).unwrap()
    };
    sighup(&w);
    // The signal's attempt is refused, with the problem and its line.
    let line = await_log(
        &w,
        mark,
        &[
            "trigger=\"SIGHUP\"",
            "policy reload refused; the policy in force stays",
        ],
        Duration::from_secs(3),
    )
    .await;
    assert!(line.contains("ERROR"), "{line}");
    let text = log(&w);
    let diagnostic = format!("{}:{bad_line}:", policy_path(&w).display());
    assert!(
        line.lines()
            .any(|l| l.starts_with(&diagnostic) && l.contains("unknown role \"oncal\"")),
        "want {diagnostic:?} and the unknown role in the refusal:\n{line}"
    );
    assert!(
        entries_with(&text, mark, &["policy reloaded from"]).is_empty(),
        "{text}"
    );

    // The old policy stays in force: lead1 still exists, oncall1 still may request.
    let (status, body) = get(&w, &lead, "/api/v1/whoami").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(oncall_write_outcome(&w, &oncall).await, "requestable");
    // The live session goes on, and new credentials are minted as before.
    let rows = session
        .simple_query("SELECT count(*) FROM orders")
        .await
        .expect("the live session survives a refused reload");
    assert!(!rows.is_empty());
    let again = w.connect("oncall1", "read").await;
    let second = w.tokio_pg(&again).await;
    second.simple_query("SELECT 1").await.unwrap();

    // A second SIGHUP on the same broken file is refused again (the signal
    // always re-reads; only the poll skips a file it has already judged).
    let mark = log_len(&w);
    sighup(&w);
    await_log(
        &w,
        mark,
        &["trigger=\"SIGHUP\"", "policy reload refused"],
        Duration::from_secs(3),
    )
    .await;

    // Fixed (a second lead added) and signalled: applied, and the session
    // still lives (standing read is untouched by the change).
    let lead2 = w.token("lead2");
    assert_eq!(get(&w, &lead2, "/api/v1/whoami").await.0, 403);
    let mark = log_len(&w);
    replace_file(
        &policy_path(&w),
        &format!("{original}\n[[user]]\nname = \"lead2\"\nroles = [\"sre-lead\"]\n"),
    );
    sighup(&w);
    let took = within(Duration::from_secs(3), || async {
        get(&w, &lead2, "/api/v1/whoami").await.0 == 200
    })
    .await;
    assert!(
        took.is_some(),
        "the fixed policy is in force within 3s; the log:\n{}",
        entries(&log(&w))[mark..].join("\n")
    );
    await_log(
        &w,
        mark,
        &["policy reloaded from", "1 resources, 2 roles, 3 users"],
        Duration::from_secs(3),
    )
    .await;
    await_log(&w, mark, &["trigger=\"SIGHUP\""], Duration::from_secs(3)).await;
    session
        .simple_query("SELECT 1")
        .await
        .expect("the live session survives the reload");
    w.stop().await;
}
