//! The access verbs of the CLI: request, requests, approve, deny, grants,
//! revoke, break-glass, exec, webhooks status. Each is one HTTP API call; the
//! gateway decides, the CLI prints.
//!
//! Reasons, statements, parameters and rows are untrusted text: they are
//! printed through `airlock_config::text` (control and invisible formatting
//! characters escaped, so the terminal shows what the bytes say); `--json`
//! prints them exactly, JSON-escaped.

use std::process::ExitCode;

use serde_json::{json, Value};

use airlock_api::access::{GrantView, RequestView};
use airlock_api::exec::ExecOutcome;
use airlock_config::text::{escape, escape_lines};

use crate::client::Api;
use crate::format_time;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn get<T: serde::de::DeserializeOwned>(path: &str) -> anyhow::Result<T> {
    runtime()?.block_on(async { Api::from_login()?.get(path).await })
}

fn post<T: serde::de::DeserializeOwned>(path: &str, body: Value) -> anyhow::Result<T> {
    runtime()?.block_on(async { Api::from_login()?.post(path, &body).await })
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

fn describe(v: &RequestView) -> String {
    let r = &v.request;
    match r.kind {
        airlock_access::RequestKind::Access => format!(
            "{} on {} for {}",
            r.access,
            r.resource,
            airlock_config::format_duration(std::time::Duration::from_millis(r.duration_ms as u64))
        ),
        airlock_access::RequestKind::Statement => format!("statement on {}", r.resource),
        airlock_access::RequestKind::Runbook => format!("runbook {}", r.resource),
    }
}

/// `airlock request RESOURCE --access write --for 30m --reason TEXT`
pub fn request(
    resource: &str,
    access: &str,
    duration: Option<&str>,
    reason: &str,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let v: RequestView = post(
        "/api/v1/requests",
        json!({ "resource": resource, "access": access, "for": duration, "reason": reason }),
    )?;
    if json_out {
        return print_json(&v);
    }
    println!("request {} filed: {}", v.request.id, describe(&v));
    println!(
        "needs {} approval(s) from: {}",
        v.request.approvals_required,
        if v.approvers.is_empty() {
            "nobody (ask the platform team)".to_owned()
        } else {
            v.approvers.join(", ")
        }
    );
    println!(
        "it expires unapproved at {}",
        format_time(v.request.expires_ms)
    );
    println!("once approved: airlock connect {resource} --access {access}");
    Ok(ExitCode::SUCCESS)
}

/// `airlock exec RESOURCE --reason TEXT -c SQL` files a reviewed statement.
pub fn exec_request(
    resource: &str,
    sql: &str,
    reason: &str,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let v: RequestView = post(
        "/api/v1/requests",
        json!({ "resource": resource, "statement": sql, "reason": reason }),
    )?;
    if json_out {
        return print_json(&v);
    }
    println!(
        "request {} filed for review of exactly this statement on {resource}:",
        v.request.id
    );
    // As filed (CRLF line endings become LF), which is what approvers see.
    let filed = v.request.statement.as_deref().unwrap_or(sql);
    println!("  {}", escape_lines(filed).replace('\n', "\n  "));
    println!(
        "needs {} approval(s) from: {}",
        v.request.approvals_required,
        v.approvers.join(", ")
    );
    println!("once approved: airlock exec --run {}", v.request.id);
    Ok(ExitCode::SUCCESS)
}

/// `airlock exec --run ID` runs an approved statement once.
pub fn exec_run(id: &str, json_out: bool) -> anyhow::Result<ExitCode> {
    let out: ExecOutcome = post(&format!("/api/v1/requests/{id}/execute"), json!({}))?;
    if json_out {
        print_json(&out)?;
    } else if let Some(r) = &out.result {
        if !r.columns.is_empty() {
            let columns: Vec<_> = r.columns.iter().map(|c| escape(c)).collect();
            println!("{}", columns.join(" | "));
            for row in &r.rows {
                let cells: Vec<_> = row
                    .iter()
                    .map(|c| escape(c.as_deref().unwrap_or("NULL")))
                    .collect();
                println!("{}", cells.join(" | "));
            }
            if r.row_count as usize > r.rows.len() {
                println!("({} rows, first {} shown)", r.row_count, r.rows.len());
            }
        }
        println!("{} (committed; session {})", r.command_tag, out.session_id);
    }
    match &out.error {
        Some(e) => {
            eprintln!(
                "error: the statement failed and was rolled back: {} (SQLSTATE {})",
                escape_lines(&e.message),
                escape(&e.sqlstate)
            );
            eprintln!("it counts as run: a reviewed statement runs once; file it again to retry");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `airlock requests [--pending] [--mine]`
pub fn requests(pending: bool, mine: bool, json_out: bool) -> anyhow::Result<ExitCode> {
    let list: Vec<RequestView> = get(&format!("/api/v1/requests?pending={pending}&mine={mine}"))?;
    if json_out {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no requests");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<26} {:<10} {:<12} {:<28} {:<9} {:<20} REASON",
        "REQUEST", "USER", "STATE", "WHAT", "APPROVALS", "CREATED"
    );
    for v in &list {
        let r = &v.request;
        println!(
            "{:<26} {:<10} {:<12} {:<28} {:<9} {:<20} {}",
            r.id,
            r.user,
            r.state.as_str(),
            describe(v),
            format!("{}/{}", r.approvals.len(), r.approvals_required),
            format_time(r.created_ms),
            escape(&r.reason)
        );
        if let Some(sql) = &r.statement {
            println!(
                "    statement: {}",
                escape_lines(sql).replace('\n', "\n               ")
            );
        }
        if let Some(run) = &r.runbook {
            // What the approver approves: the parameters and each step as
            // it will run.
            let params: Vec<String> = run["params"]
                .as_object()
                .map(|p| {
                    p.iter()
                        .map(|(k, v)| {
                            format!("{}={}", escape(k), escape(v.as_str().unwrap_or_default()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!("    parameters: {}", params.join(" "));
            for s in run["plan"]["steps"].as_array().into_iter().flatten() {
                println!(
                    "    step {}: {} ({})",
                    s["index"].as_u64().unwrap_or(0) + 1,
                    escape(s["name"].as_str().unwrap_or("")),
                    escape(s["kind"].as_str().unwrap_or(""))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `airlock approve ID [--comment TEXT]`
pub fn approve(id: &str, comment: Option<&str>, json_out: bool) -> anyhow::Result<ExitCode> {
    let v: RequestView = post(
        &format!("/api/v1/requests/{id}/approve"),
        json!({ "comment": comment }),
    )?;
    if json_out {
        return print_json(&v);
    }
    let r = &v.request;
    match (&r.state, &r.grant_id) {
        (airlock_access::RequestState::Approved, Some(g)) => {
            println!(
                "approved request {id}: {} has {}, grant {g}",
                r.user,
                describe(&v)
            )
        }
        (airlock_access::RequestState::Approved, None)
            if r.kind == airlock_access::RequestKind::Runbook =>
        {
            println!(
                "approved request {id}: {} may start the run of runbook {} once (airlock run --request {id})",
                r.user, r.resource
            )
        }
        (airlock_access::RequestState::Approved, None) => {
            println!(
                "approved request {id}: {} may run the reviewed statement once",
                r.user
            )
        }
        _ => println!(
            "approval recorded: {} of {} for request {id}",
            r.approvals.len(),
            r.approvals_required
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `airlock deny ID --reason TEXT`
pub fn deny(id: &str, reason: &str, json_out: bool) -> anyhow::Result<ExitCode> {
    let v: RequestView = post(
        &format!("/api/v1/requests/{id}/deny"),
        json!({ "reason": reason }),
    )?;
    if json_out {
        return print_json(&v);
    }
    println!("denied request {id} of {}", v.request.user);
    Ok(ExitCode::SUCCESS)
}

fn print_grants(list: &[GrantView]) {
    println!(
        "{:<26} {:<10} {:<12} {:<6} {:<12} {:<8} {:<20} REASON",
        "GRANT", "USER", "RESOURCE", "ACCESS", "KIND", "STATE", "ENDS"
    );
    for v in list {
        let g = &v.grant;
        println!(
            "{:<26} {:<10} {:<12} {:<6} {:<12} {:<8} {:<20} {}",
            g.id,
            g.user,
            g.resource,
            g.access,
            g.kind,
            v.state,
            format_time(v.ends_ms.unwrap_or(g.expires_ms)),
            escape(&g.reason)
        );
    }
}

/// `airlock grants [--all]`
pub fn grants(all: bool, json_out: bool) -> anyhow::Result<ExitCode> {
    let list: Vec<GrantView> = get(&format!("/api/v1/grants?all={all}"))?;
    if json_out {
        return print_json(&list);
    }
    if list.is_empty() {
        println!(
            "{}",
            if all {
                "no grants"
            } else {
                "no live grants; standing access is listed by `airlock resources`"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_grants(&list);
    Ok(ExitCode::SUCCESS)
}

/// `airlock revoke GRANT_ID --reason TEXT`
pub fn revoke(id: &str, reason: &str, json_out: bool) -> anyhow::Result<ExitCode> {
    let v: GrantView = post(
        &format!("/api/v1/grants/{id}/revoke"),
        json!({ "reason": reason }),
    )?;
    if json_out {
        return print_json(&v);
    }
    println!(
        "revoked grant {id} ({} on {} held by {}); its live sessions are being ended",
        v.grant.access, v.grant.resource, v.grant.user
    );
    Ok(ExitCode::SUCCESS)
}

/// `airlock break-glass RESOURCE --reason TEXT`
pub fn break_glass(
    resource: &str,
    access: &str,
    duration: Option<&str>,
    reason: &str,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let v: GrantView = post(
        "/api/v1/break-glass",
        json!({ "resource": resource, "access": access, "for": duration, "reason": reason }),
    )?;
    // Loud in every output format: stderr is not part of the JSON.
    eprintln!("BREAK-GLASS: this is announced to the approvers and every record of your sessions is marked.");
    if json_out {
        return print_json(&v);
    }
    println!(
        "grant {}: {access} access to {resource} until {}",
        v.grant.id,
        format_time(v.ends_ms.unwrap_or(v.grant.expires_ms))
    );
    println!("connect: airlock connect {resource} --access {access}");
    Ok(ExitCode::SUCCESS)
}

/// `airlock webhooks status`
pub fn webhooks_status(json_out: bool) -> anyhow::Result<ExitCode> {
    let list: Vec<airlock_webhook::TargetStatus> = get("/api/v1/webhooks")?;
    if json_out {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no webhooks are configured");
        return Ok(ExitCode::SUCCESS);
    }
    for t in &list {
        println!("{}", t.url);
        println!("  events:    {}", t.events.join(", "));
        println!(
            "  delivered: {}  failed: {}  dropped: {}  pending: {}{}",
            t.delivered,
            t.failed,
            t.dropped,
            t.pending,
            if t.retrying { " (retrying)" } else { "" }
        );
        if let Some(ms) = t.last_success_ms {
            println!("  last delivered: {}", format_time(ms));
        }
        if let (Some(e), Some(ms)) = (&t.last_error, t.last_error_ms) {
            println!("  last error: {} ({})", format_time(ms), escape(e));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `airlock token list`: newest first, never a secret.
pub fn token_list(all: bool, user: Option<&str>, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut path = String::from("/api/v1/tokens");
    if all {
        path.push_str("?all=true");
    } else if let Some(u) = user {
        path.push_str(&format!("?user={}", crate::client::query_value(u)));
    }
    let list: Vec<airlock_api::tokens::TokenView> = get(&path)?;
    if json_out {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no API tokens");
        return Ok(ExitCode::SUCCESS);
    }
    for t in &list {
        let expires = match t.expires_ms {
            Some(ms) => format_time(ms),
            None => "never".to_owned(),
        };
        println!(
            "{}  {}  {}{}  created {}  expires {}{}",
            t.id,
            escape(&t.user),
            t.state,
            if t.current { " (this CLI's)" } else { "" },
            format_time(t.created_ms),
            expires,
            t.label
                .as_deref()
                .map(|l| format!("  {}", escape(l)))
                .unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `airlock token revoke ID`.
pub fn token_revoke(id: &str) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/tokens/{}", crate::client::query_value(id));
    let t: airlock_api::tokens::TokenView =
        runtime()?.block_on(async { Api::from_login()?.delete(&path).await })?;
    println!(
        "revoked API token {} of {}; the session credentials it minted are revoked and their sessions ended",
        t.id,
        escape(&t.user)
    );
    Ok(ExitCode::SUCCESS)
}
