//! Just-in-time access through the real `airlock` binary, as people use it:
//! each user has their own AIRLOCK_HOME and logs in with a token; then
//! request → list → approve → grants → connect (psql writes with the printed
//! URI and through `--exec psql`) → revoke; deny; break-glass; a reviewed
//! statement run once with `exec`; `webhooks status`. Every refusal must exit
//! non-zero and say what to do next.

mod common;

use std::time::Duration;

use common::cli::{airlock_in, has, row, word_after, Run, User};
use common::{jit_world, World};
use serde_json::Value;

const WEBHOOK_SECRET_ENV: &str = "AIRLOCK_TEST_CLI_WEBHOOK_SECRET";

/// Runs psql (not airlock) against a connection URI, as a user pasting it would.
async fn psql_uri(uri: &str, sql: &str) -> Run {
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", uri, "-c", sql])
        .env_remove("PGPASSWORD")
        .env_remove("PGSSLROOTCERT")
        .output()
        .await
        .expect("psql runs");
    Run {
        args: format!("(psql) {sql}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn orders_status(w: &World, id: u32) -> String {
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
async fn login_and_its_failures() {
    let w = jit_world("").await;
    let (server, ca) = (w.http(), w.ca_file());
    let ca = ca.to_str().unwrap();

    // Not logged in: every verb says how to log in.
    let nobody = User::new("nobody");
    for args in [
        &["requests"][..],
        &["grants"],
        &["connect", "orders"],
        &["webhooks", "status"],
    ] {
        let err = nobody.run(args).await;
        has(
            err.fails(),
            &["not logged in", "run: airlock login --server"],
        );
    }

    // A token that is not one: refused, nothing stored, still not logged in.
    let run = nobody
        .run(&[
            "login",
            "--server",
            &server,
            "--ca-file",
            ca,
            "--token",
            "alk_not-a-token",
        ])
        .await;
    has(
        run.fails(),
        &["401", "airlock token issue", "airlock login"],
    );
    assert!(!nobody.home.path().join("credentials.json").exists());

    // Without the gateway's CA the HTTPS certificate is not trusted.
    let token = w.token("lead1");
    let run = nobody
        .run(&["login", "--server", &server, "--token", &token])
        .await;
    has(run.fails(), &[&format!("reaching the gateway at {server}")]);

    // The token may come from AIRLOCK_TOKEN instead of --token.
    let lead1 = User::new("lead1");
    let run = airlock_in(
        lead1.home.path(),
        &["login", "--server", &server, "--ca-file", ca],
        &[("AIRLOCK_TOKEN", &token)],
    )
    .await;
    assert_eq!(run.ok(), format!("logged in to {server} as lead1\n"));
    let stored = std::fs::read_to_string(lead1.home.path().join("credentials.json")).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["user"], "lead1");
    assert_eq!(stored["token"], token.as_str());
    let whoami = lead1.run(&["whoami", "--json"]).await.json();
    assert_eq!(whoami["user"], "lead1");

    // Neither --token, AIRLOCK_TOKEN nor a token on standard input: says
    // how to give one.
    let run = nobody.run(&["login", "--server", &server]).await;
    has(run.fails(), &["no API token was given", "AIRLOCK_TOKEN"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_connect_write_revoke() {
    let w = jit_world("").await;
    let oncall1 = User::logged_in(&w, "oncall1").await;
    let lead1 = User::logged_in(&w, "lead1").await;
    let lead2 = User::logged_in(&w, "lead2").await;

    // No grant yet: connect for write says how to get one.
    let run = oncall1
        .run(&["connect", "orders", "--access", "write"])
        .await;
    has(
        run.fails(),
        &[
            "user \"oncall1\" has no write access to \"orders\" (standing access is read)",
            "request it: airlock request orders --access write",
            "in an emergency: airlock break-glass orders --access write",
            "(403 Forbidden)",
        ],
    );
    let run = oncall1.run(&["grants"]).await;
    assert_eq!(
        run.ok(),
        "no live grants; standing access is listed by `airlock resources`\n"
    );

    // Refusals when filing: above the rule's max, no reason, a blank reason.
    let run = oncall1
        .run(&[
            "request", "orders", "--access", "write", "--for", "2h", "--reason", "INC-42",
        ])
        .await;
    has(
        run.fails(),
        &[
            "2h is above the 1h that role \"oncall\" may request for write on \"orders\"",
            "ask for --for 1h or less",
        ],
    );
    let run = oncall1
        .run(&["request", "orders", "--access", "write", "--for", "30m"])
        .await;
    has(run.usage_error(), &["--reason <REASON>"]);
    let run = oncall1
        .run(&["request", "orders", "--for", "30m", "--reason", "  "])
        .await;
    has(
        run.fails(),
        &["a request needs a reason", "say why with --reason"],
    );
    let run = oncall1
        .run(&["request", "orders", "--for", "soon", "--reason", "x"])
        .await;
    has(run.fails(), &["\"soon\"", "use a duration like 30m or 1h"]);
    // Read is standing already: nothing to request.
    let run = oncall1
        .run(&["request", "orders", "--access", "read", "--reason", "x"])
        .await;
    has(
        run.fails(),
        &[
            "you already have standing read access to \"orders\"",
            "airlock connect orders --access read",
        ],
    );
    // A lead has no requestable rule for it.
    let run = lead1
        .run(&["request", "orders", "--access", "write", "--reason", "x"])
        .await;
    has(
        run.fails(),
        &["no write access to \"orders\"", "(403 Forbidden)"],
    );
    // Nothing was filed by any of that.
    assert_eq!(lead1.run(&["requests"]).await.ok(), "no requests\n");

    // Filed: the id and who can approve.
    let out = oncall1
        .run(&[
            "request",
            "orders",
            "--access",
            "write",
            "--for",
            "30m",
            "--reason",
            "INC-42: stuck orders",
        ])
        .await;
    let out = out.ok();
    let id = word_after(out, "request ").to_owned();
    assert!(id.starts_with("req_"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("request {id} filed: write on orders for 30m")
    );
    assert_eq!(lines[1], "needs 1 approval(s) from: lead1, lead2");
    assert!(lines[2].starts_with("it expires unapproved at "), "{out}");
    assert_eq!(
        lines[3],
        "once approved: airlock connect orders --access write"
    );

    // The lists: pending for approvers, mine for the requester, none of the
    // approver's own.
    for u in [&lead1, &lead2, &oncall1] {
        let out = u.run(&["requests", "--pending"]).await;
        let line = row(out.ok(), &id);
        has(
            line,
            &[
                "oncall1",
                "pending",
                "write on orders for 30m",
                "0/1",
                "INC-42: stuck orders",
            ],
        );
        assert!(out.stdout.starts_with("REQUEST "), "{}", out.stdout);
    }
    let out = oncall1.run(&["requests", "--mine"]).await;
    row(out.ok(), &id);
    assert_eq!(
        lead1.run(&["requests", "--mine"]).await.ok(),
        "no requests\n"
    );
    let list = lead2.run(&["requests", "--json"]).await.json();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["user"], "oncall1");
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(list[0]["approvers"], serde_json::json!(["lead1", "lead2"]));
    assert_eq!(list[0]["duration_ms"], 30 * 60 * 1000);

    // Not one's own; not an unknown id.
    let run = oncall1.run(&["approve", &id]).await;
    has(
        run.fails(),
        &[
            "nobody approves their own request",
            "ask one of: lead1, lead2",
        ],
    );
    let run = lead1.run(&["approve", "req_nope"]).await;
    has(
        run.fails(),
        &["no request req_nope that you can see", "airlock requests"],
    );

    // Approved by lead1: a grant.
    let out = lead1.run(&["approve", &id, "--comment", "go"]).await;
    let out = out.ok();
    assert!(
        out.starts_with(&format!(
            "approved request {id}: oncall1 has write on orders for 30m"
        )),
        "{out}"
    );
    let grant = word_after(out, ", grant ").to_owned();
    assert!(grant.starts_with("grt_"), "{out}");
    // A second approval is a conflict that says there is nothing left to do.
    let run = lead2.run(&["approve", &id]).await;
    has(
        run.fails(),
        &[
            &format!("request {id} is already approved"),
            "(409 Conflict)",
            "nothing more to do",
        ],
    );
    assert_eq!(
        lead2.run(&["requests", "--pending"]).await.ok(),
        "no requests\n"
    );
    let seen = oncall1.run(&["requests", "--mine", "--json"]).await.json();
    assert_eq!(seen[0]["state"], "approved");
    assert_eq!(seen[0]["grant_id"], grant.as_str());
    assert_eq!(seen[0]["approvals"][0]["approver"], "lead1");
    assert_eq!(seen[0]["approvals"][0]["comment"], "go");

    // The live grant and its end, to the requester and (with --all) to approvers.
    let json = oncall1.run(&["grants", "--json"]).await.json();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json[0]["id"], grant.as_str());
    assert_eq!(json[0]["state"], "live");
    let ends = json[0]["ends_ms"].as_i64().unwrap();
    let left = ends - common::now_ms();
    assert!(
        (29 * 60 * 1000..=30 * 60 * 1000).contains(&left),
        "ends in {left} ms"
    );
    let ends_text = airlock::format_time(ends);
    let out = oncall1.run(&["grants"]).await;
    let line = row(out.ok(), &grant);
    has(
        line,
        &[
            "oncall1",
            "orders",
            "write",
            "requested",
            "live",
            &ends_text,
            "INC-42",
        ],
    );
    let out = lead2.run(&["grants", "--all"]).await;
    has(row(out.ok(), &grant), &["live", &ends_text]);
    assert_eq!(
        lead2.run(&["grants"]).await.ok(),
        "no live grants; standing access is listed by `airlock resources`\n",
        "without --all a lead sees only grants of their own"
    );

    // connect picks the live grant and prints a URI that psql can use.
    let out = oncall1
        .run(&["connect", "orders", "--access", "write"])
        .await;
    let out = out.ok();
    has(
        out,
        &[
            "for oncall1 on orders (write access), valid until",
            "Connection URI:",
            "export PGPASSWORD='",
            "sslmode=verify-full",
            "airlock connect orders --access write --exec psql",
        ],
    );
    let uri = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("postgresql://"))
        .unwrap_or_else(|| panic!("no URI in:\n{out}"))
        .to_owned();
    assert!(uri.contains("sslrootcert="), "{uri}");
    let run = psql_uri(&uri, "UPDATE orders SET status = 'cli-uri' WHERE id = 11").await;
    assert_eq!(run.ok(), "UPDATE 1\n");
    assert_eq!(orders_status(&w, 11), "cli-uri");
    // --json names the grant; --exec runs psql with the PG* environment.
    let json = oncall1
        .run(&["connect", "orders", "--access", "write", "--json"])
        .await
        .json();
    assert_eq!(json["grant_id"], grant.as_str());
    assert_eq!(json["access"], "write");
    assert_eq!(json["env"]["PGSSLMODE"], "verify-full");
    let run = oncall1
        .run(&[
            "connect",
            "orders",
            "--access",
            "write",
            "--exec",
            "psql",
            "--",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "UPDATE orders SET status = 'cli-exec' WHERE id = 12 RETURNING id",
        ])
        .await;
    assert_eq!(run.ok(), "12\nUPDATE 1\n", "{}", run.show());
    has(&run.stderr, &["airlock: oncall1 on orders (write)"]);
    assert_eq!(orders_status(&w, 12), "cli-exec");
    // A failing client's exit code is passed on.
    let run = oncall1
        .run(&[
            "connect",
            "orders",
            "--access",
            "write",
            "--exec",
            "psql",
            "--",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SELECT 1/0",
        ])
        .await;
    assert_ne!(run.code, 0, "{}", run.show());
    has(&run.stderr, &["division by zero"]);

    // Revoke: a reason is required; then the grant ends and so does its credential.
    let run = lead2.run(&["revoke", &grant]).await;
    has(run.usage_error(), &["--reason <REASON>"]);
    let run = lead2.run(&["revoke", &grant, "--reason", "  "]).await;
    has(run.fails(), &["reason", "--reason"]);
    let out = lead2
        .run(&["revoke", &grant, "--reason", "incident over"])
        .await;
    assert_eq!(
        out.ok(),
        format!(
            "revoked grant {grant} (write on orders held by oncall1); its live sessions are being ended\n"
        )
    );
    let run = lead2.run(&["revoke", &grant, "--reason", "again"]).await;
    has(
        run.fails(),
        &[
            &format!("grant {grant} was already revoked"),
            "(409 Conflict)",
        ],
    );
    let run = lead1.run(&["revoke", "grt_nope", "--reason", "x"]).await;
    has(
        run.fails(),
        &["no grant grt_nope that you can see", "airlock grants --all"],
    );
    assert_eq!(
        oncall1.run(&["grants"]).await.ok(),
        "no live grants; standing access is listed by `airlock resources`\n"
    );
    let out = oncall1.run(&["grants", "--all"]).await;
    has(row(out.ok(), &grant), &["revoked"]);
    let run = psql_uri(&uri, "SELECT 1").await;
    assert_ne!(run.code, 0, "the revoked grant's credential is refused");
    has(&run.stderr, &["password authentication failed"]);
    let run = oncall1
        .run(&["connect", "orders", "--access", "write"])
        .await;
    has(
        run.fails(),
        &[
            "airlock request orders --access write",
            "airlock break-glass orders",
        ],
    );
    // Read is untouched.
    let json = oncall1.run(&["connect", "orders", "--json"]).await.json();
    assert_eq!(json["grant_id"], "standing:oncall:orders:read");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_break_glass_exec_and_webhooks_status() {
    std::env::set_var(WEBHOOK_SECRET_ENV, "whsec-cli-7c2e");
    let (good_url, received) = receiver().await;
    // A port nothing listens on (bound, then freed).
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_url =
        format!("http://127.0.0.1:{dead_port}/services/T0/B0/DEADSECRETPATH?token=QUERYSECRET");
    let w = jit_world(&format!(
        r#"
[[webhook]]
url = "{good_url}"
events = ["*"]
secret_env = "{WEBHOOK_SECRET_ENV}"

[[webhook]]
url = "{dead_url}"
events = ["break_glass.used", "request.created"]
secret_env = "{WEBHOOK_SECRET_ENV}"
"#
    ))
    .await;
    let oncall1 = User::logged_in(&w, "oncall1").await;
    let lead1 = User::logged_in(&w, "lead1").await;

    // Deny: only approvers, and only with a reason.
    let out = oncall1
        .run(&["request", "orders", "--for", "15m", "--reason", "INC-9"])
        .await;
    let id = word_after(out.ok(), "request ").to_owned();
    let run = lead1.run(&["deny", &id]).await;
    has(run.usage_error(), &["--reason <REASON>"]);
    let run = oncall1.run(&["deny", &id, "--reason", "never mind"]).await;
    has(
        run.fails(),
        &[
            "you cannot deny your own request",
            "it expires by itself at",
        ],
    );
    let out = lead1
        .run(&["deny", &id, "--reason", "use the runbook"])
        .await;
    assert_eq!(out.ok(), format!("denied request {id} of oncall1\n"));
    let seen = oncall1.run(&["requests", "--mine", "--json"]).await.json();
    assert_eq!(seen[0]["state"], "denied");
    assert_eq!(seen[0]["decided_by"], "lead1");
    assert_eq!(seen[0]["decision_comment"], "use the runbook");
    has(row(oncall1.run(&["requests"]).await.ok(), &id), &["denied"]);
    let run = lead1.run(&["approve", &id]).await;
    has(
        run.fails(),
        &[
            "was denied by lead1",
            "the requester can file a new request",
        ],
    );
    let run = oncall1
        .run(&["connect", "orders", "--access", "write"])
        .await;
    has(run.fails(), &["airlock request orders --access write"]);

    // Break-glass: refused above its max and for a role without the rule;
    // then immediate and loud.
    let run = oncall1
        .run(&["break-glass", "orders", "--for", "2h", "--reason", "x"])
        .await;
    has(
        run.fails(),
        &[
            "lasts at most 30m for role \"oncall\"",
            "ask for --for 30m or less",
        ],
    );
    let run = lead1.run(&["break-glass", "orders", "--reason", "x"]).await;
    has(
        run.fails(),
        &[
            "no role of user \"lead1\" allows break-glass write access to \"orders\"",
            "request it instead: airlock request orders --access write",
        ],
    );
    let run = oncall1
        .run(&["break-glass", "orders", "--for", "10m"])
        .await;
    has(run.usage_error(), &["--reason <REASON>"]);
    let run = oncall1
        .run(&[
            "break-glass",
            "orders",
            "--access",
            "write",
            "--for",
            "10m",
            "--reason",
            "orders table locked",
        ])
        .await;
    let out = run.ok();
    has(
        &run.stderr,
        &["BREAK-GLASS", "announced to the approvers", "marked"],
    );
    let bg = word_after(out, "grant ").to_owned();
    assert!(bg.starts_with("grt_"), "{out}");
    has(
        out,
        &[
            "write access to orders until",
            "connect: airlock connect orders --access write",
        ],
    );
    let json = oncall1.run(&["grants", "--json"]).await.json();
    assert_eq!(json[0]["id"], bg.as_str());
    assert_eq!(json[0]["kind"], "break_glass");
    let left = json[0]["ends_ms"].as_i64().unwrap() - common::now_ms();
    assert!((9 * 60 * 1000..=10 * 60 * 1000).contains(&left), "{left}");
    has(
        row(oncall1.run(&["grants"]).await.ok(), &bg),
        &["break_glass", "live", "orders table locked"],
    );
    let json = oncall1
        .run(&["connect", "orders", "--access", "write", "--json"])
        .await
        .json();
    assert_eq!(json["grant_id"], bg.as_str());
    let run = psql_uri(
        json["uri"].as_str().unwrap(),
        "UPDATE orders SET status = 'glass' WHERE id = 21",
    )
    .await;
    assert_eq!(run.ok(), "UPDATE 1\n");
    assert_eq!(orders_status(&w, 21), "glass");
    let sessions = oncall1.run(&["sessions", "--json"]).await.json();
    let write = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["access"] == "write")
        .unwrap_or_else(|| panic!("a write session in {sessions}"));
    assert_eq!(write["break_glass"], true, "{write}");
    // The owner may end it early.
    let out = oncall1
        .run(&["revoke", &bg, "--reason", "lock cleared"])
        .await;
    has(out.ok(), &[&format!("revoked grant {bg}")]);

    // A reviewed statement: filed, listed with its text, approved, run once.
    let sql = "UPDATE orders SET status = 'refunded' WHERE id = 3 RETURNING id, status";
    let run = oncall1.run(&["exec", "orders", "-c", sql]).await;
    has(run.fails(), &["say why with --reason"]);
    let run = oncall1.run(&["exec", "orders", "--reason", "x"]).await;
    has(run.fails(), &["give the statement to review with -c"]);
    let run = oncall1.run(&["exec"]).await;
    has(run.usage_error(), &["<RESOURCE>"]);
    // What the gateway refuses at every level is not even filed for review.
    let run = oncall1
        .run(&[
            "exec",
            "orders",
            "-c",
            "SET standard_conforming_strings = off",
            "--reason",
            "x",
        ])
        .await;
    has(
        run.fails(),
        &["refused by Airlock at every access level", "(400"],
    );
    let run = oncall1
        .run(&[
            "exec",
            "orders",
            "-c",
            "UPDAT orders SET x = 1",
            "--reason",
            "x",
        ])
        .await;
    has(run.fails(), &["could not parse this statement"]);
    let out = oncall1
        .run(&["exec", "orders", "-c", sql, "--reason", "refund INC-7"])
        .await;
    let out = out.ok();
    let stmt = word_after(out, "request ").to_owned();
    assert_eq!(
        out,
        format!(
            "request {stmt} filed for review of exactly this statement on orders:\n  {sql}\nneeds 1 approval(s) from: lead1, lead2\nonce approved: airlock exec --run {stmt}\n"
        )
    );
    let out = lead1.run(&["requests", "--pending"]).await;
    let out = out.ok();
    has(row(out, &stmt), &["statement on orders", "refund INC-7"]);
    has(out, &[&format!("    statement: {sql}")]);
    let run = oncall1.run(&["exec", "--run", &stmt]).await;
    has(
        run.fails(),
        &[
            &format!("request {stmt} has 0 of 1 approval(s)"),
            "wait for an approver: lead1, lead2",
        ],
    );
    let out = lead1.run(&["approve", &stmt]).await;
    assert_eq!(
        out.ok(),
        format!("approved request {stmt}: oncall1 may run the reviewed statement once\n")
    );
    let run = lead1.run(&["exec", "--run", &stmt]).await;
    has(
        run.fails(),
        &[&format!(
            "only oncall1 can run the statement of request {stmt}"
        )],
    );
    assert_eq!(orders_status(&w, 3), "delivered", "not run yet");
    let out = oncall1.run(&["exec", "--run", &stmt]).await;
    let out = out.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["id | status", "3 | refunded"], "{out}");
    assert!(
        lines[2].starts_with("UPDATE 1 (committed; session sess_"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(orders_status(&w, 3), "refunded");
    let run = oncall1.run(&["exec", "--run", &stmt]).await;
    has(
        run.fails(),
        &[
            &format!("the statement of request {stmt} already ran at"),
            "a reviewed statement runs once; file a new request to run it again",
        ],
    );
    // One that fails is rolled back, reported, exits non-zero and counts as run.
    let out = oncall1
        .run(&[
            "exec",
            "orders",
            "-c",
            "UPDATE orders SET id = NULL WHERE id = 4",
            "--reason",
            "x",
        ])
        .await;
    let bad = word_after(out.ok(), "request ").to_owned();
    lead1.run(&["approve", &bad]).await.ok();
    let run = oncall1.run(&["exec", "--run", &bad]).await;
    assert_eq!(run.code, 1, "{}", run.show());
    has(
        &run.stderr,
        &[
            "the statement failed and was rolled back",
            "(SQLSTATE 23502)",
            "file it again to retry",
        ],
    );
    let json = oncall1.run(&["exec", "--run", &bad, "--json"]).await;
    has(json.fails(), &["already ran"]);
    // An access request cannot be run as a statement.
    let run = oncall1.run(&["exec", "--run", &id]).await;
    assert_eq!(run.code, 1, "{}", run.show());

    // webhooks status: each target with its URL redacted and its counts.
    let expected_good = received_count_settles(&received).await;
    let mut status = Value::Null;
    for _ in 0..100 {
        // The webhook status is for admins ([access] admin_roles): lead1.
        status = lead1.run(&["webhooks", "status", "--json"]).await.json();
        if status[0]["delivered"] == expected_good && status[1]["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let good_port = good_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert_eq!(status[0]["url"], format!("http://127.0.0.1:{good_port}/…"));
    assert_eq!(status[0]["delivered"], expected_good, "{status}");
    assert_eq!(status[0]["failed"], 0, "{status}");
    assert_eq!(status[1]["url"], format!("http://127.0.0.1:{dead_port}/…"));
    assert_eq!(status[1]["delivered"], 0, "{status}");
    assert!(status[1]["last_error"].is_string(), "{status}");
    has(
        oncall1.run(&["webhooks", "status"]).await.fails(),
        &["admin_roles"],
    );
    let out = lead1.run(&["webhooks", "status"]).await;
    let out = out.ok();
    for secret in ["SECRETPATH", "DEADSECRETPATH", "QUERYSECRET", "whsec-cli"] {
        assert!(!out.contains(secret), "{secret} shown in:\n{out}");
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("http://127.0.0.1:{good_port}/…"), "{out}");
    assert_eq!(lines[1], "  events:    *", "{out}");
    assert_eq!(
        lines[2],
        format!("  delivered: {expected_good}  failed: 0  dropped: 0  pending: 0"),
        "{out}"
    );
    assert!(lines[3].starts_with("  last delivered: "), "{out}");
    let dead_at = lines
        .iter()
        .position(|l| *l == format!("http://127.0.0.1:{dead_port}/…"))
        .unwrap_or_else(|| panic!("no dead target in:\n{out}"));
    assert_eq!(
        lines[dead_at + 1],
        "  events:    break_glass.used, request.created",
        "{out}"
    );
    assert!(
        lines[dead_at + 2].starts_with("  delivered: 0  failed: 0  dropped: 0  pending: "),
        "{out}"
    );
    assert!(lines[dead_at + 3].starts_with("  last error: "), "{out}");
    w.stop().await;
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A receiver that accepts every delivery.
async fn receiver() -> (String, Received) {
    let received: Received = Default::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hook/T0001/SECRETPATH",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                store
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook/T0001/SECRETPATH"), received)
}

/// The number of deliveries received once no more arrive for half a second.
async fn received_count_settles(received: &Received) -> u64 {
    let mut last = usize::MAX;
    for _ in 0..20 {
        let now = received.lock().unwrap().len();
        if now == last && now > 0 {
            return now as u64;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("deliveries did not settle: {last} so far");
}
