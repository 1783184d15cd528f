//! `airlock runbooks` and `airlock run`: list the runbooks the caller may
//! run, show what a run would do (`--dry-run`), run one with its output
//! streamed to the terminal as the gateway runs it, or file it for approval
//! and start it once approved (`--request ID`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use airlock_config::text::{escape, escape_lines};

use crate::access_cli::runtime;
use crate::client::{query_value, Api};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The runbook to run (see `airlock runbooks`).
    #[arg(required_unless_present = "request", conflicts_with = "request")]
    pub name: Option<String>,
    /// A parameter, `NAME=VALUE` (repeatable). The value is taken as is: no
    /// shell or template ever sees it.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Why: the incident or ticket (required when the runbook needs approval).
    #[arg(long)]
    pub reason: Option<String>,
    /// Show what would run, with secrets redacted, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start the approved run of this request, exactly as approved.
    #[arg(long)]
    pub request: Option<String>,
    /// The gateway's events as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// A string of the gateway's answer for one line of the terminal: control
/// and invisible formatting characters escaped (`airlock_config::text`).
fn text(v: &Value) -> std::borrow::Cow<'_, str> {
    escape(v.as_str().unwrap_or(""))
}

/// The same for several lines (SQL, a program's output): LF and TAB kept.
fn lines(v: &Value) -> std::borrow::Cow<'_, str> {
    escape_lines(v.as_str().unwrap_or(""))
}

/// `NAME=VALUE` pairs; a name given twice is a mistake, not an override.
fn parse_params(given: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in given {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param {p:?} is not NAME=VALUE");
        };
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("--param {k} is given twice");
        }
    }
    Ok(out)
}

fn param_help(p: &Value) -> String {
    let kind = p["type"].as_str().unwrap_or("");
    let shape = match kind {
        "enum" => p["values"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .unwrap_or_default(),
        "int" => match (p["min"].as_i64(), p["max"].as_i64()) {
            (Some(a), Some(b)) => format!("int {a}..{b}"),
            (Some(a), None) => format!("int >= {a}"),
            (None, Some(b)) => format!("int <= {b}"),
            (None, None) => "int".to_owned(),
        },
        "string" => match p["pattern"].as_str() {
            Some(re) => format!("text matching {re}"),
            None => "text".to_owned(),
        },
        other => other.to_owned(),
    };
    let mut line = format!("--param {}=<{shape}>", p["name"].as_str().unwrap_or("?"));
    if !p["default"].is_null() {
        line.push_str(&format!(" (default {})", p["default"]));
    } else if p["required"] == false {
        line.push_str(" (optional)");
    }
    if let Some(d) = p["description"].as_str().filter(|d| !d.is_empty()) {
        line.push_str(&format!("  {}", escape(d)));
    }
    line
}

/// `airlock runbooks [NAME] [--json]`
pub fn list(name: Option<&str>, json_out: bool) -> anyhow::Result<ExitCode> {
    let all: Value =
        runtime()?.block_on(async { Api::from_login()?.get("/api/v1/runbooks").await })?;
    let mut books: Vec<Value> = all["runbooks"].as_array().cloned().unwrap_or_default();
    if let Some(n) = name {
        books.retain(|b| b["name"] == n);
        if books.is_empty() {
            bail!("there is no runbook {n:?} that you may run (see: airlock runbooks)");
        }
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&books)?);
        return Ok(ExitCode::SUCCESS);
    }
    if books.is_empty() {
        println!("no runbooks you may run");
        return Ok(ExitCode::SUCCESS);
    }
    for b in &books {
        let approvals = b["approvals"].as_u64().unwrap_or(0);
        println!(
            "{}  {}{}",
            text(&b["name"]),
            text(&b["description"]),
            if approvals > 0 {
                format!(
                    "  [needs {approvals} approval(s) from {}]",
                    b["approvers"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" or "))
                        .unwrap_or_default()
                )
            } else {
                String::new()
            }
        );
        for p in b["params"].as_array().into_iter().flatten() {
            println!("    {}", param_help(p));
        }
        for (i, s) in b["steps"].as_array().into_iter().flatten().enumerate() {
            println!(
                "    step {}: {} ({} {})",
                i + 1,
                text(&s["name"]),
                text(&s["kind"]),
                text(&s["target"])
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `airlock run ...`
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let api = Api::from_login()?;
    let response = match (&args.request, &args.name) {
        (Some(id), _) => {
            if !args.params.is_empty() || args.reason.is_some() || args.dry_run {
                bail!("--request runs the run as approved: --param, --reason and --dry-run do not apply");
            }
            rt.block_on(api.post_streaming(
                &format!("/api/v1/requests/{}/run", query_value(id)),
                &json!({}),
            ))?
        }
        (None, Some(name)) => {
            let body = json!({
                "params": parse_params(&args.params)?,
                "reason": args.reason,
                "dry_run": args.dry_run,
            });
            rt.block_on(api.post_streaming(
                &format!("/api/v1/runbooks/{}/runs", query_value(name)),
                &body,
            ))?
        }
        (None, None) => bail!("name a runbook, or give --request ID"),
    };
    let streaming = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    if !streaming {
        let v: Value = rt.block_on(response.json())?;
        return answer(&v, args.json);
    }
    rt.block_on(follow(response, args.json))
}

/// A dry run's plan, or a request filed for approval.
fn answer(v: &Value, json_out: bool) -> anyhow::Result<ExitCode> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if v["dry_run"] == true {
        let plan = &v["plan"];
        println!(
            "runbook {} (digest {}) would run{}:",
            text(&plan["runbook"]),
            &plan["digest"].as_str().unwrap_or("")
                [..12.min(plan["digest"].as_str().unwrap_or("").len())],
            if v["needs_approval"] == true {
                ", once approved"
            } else {
                ""
            }
        );
        for s in plan["steps"].as_array().into_iter().flatten() {
            let n = s["index"].as_u64().unwrap_or(0) + 1;
            println!("  step {n}: {} ({})", text(&s["name"]), text(&s["kind"]));
            match s["kind"].as_str() {
                Some("sql") => {
                    println!(
                        "    on {} with {} access",
                        text(&s["resource"]),
                        text(&s["access"])
                    );
                    for l in lines(&s["sql"]).trim().lines() {
                        println!("    | {l}");
                    }
                    for (i, a) in s["args"].as_array().into_iter().flatten().enumerate() {
                        println!("    ${} = {}", i + 1, escape(&a.to_string()));
                    }
                }
                Some("http") => {
                    println!("    {} {}", text(&s["method"]), text(&s["url"]));
                    for h in s["headers"].as_array().into_iter().flatten() {
                        println!("    {}: {}", text(&h["name"]), text(&h["value"]));
                    }
                    if !s["body"].is_null() {
                        println!("    body {}", escape(&s["body"].to_string()));
                    }
                }
                Some("command") => {
                    println!("    argv {}", escape(&s["argv"].to_string()));
                    if let Some(env) = s["env"].as_object().filter(|e| !e.is_empty()) {
                        println!(
                            "    env {}",
                            escape(&Value::Object(env.clone()).to_string())
                        );
                    }
                }
                _ => println!("    {}", escape(&s.to_string())),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A request view: the request's fields, and its approvers.
    let r = v;
    let id = text(&r["id"]);
    println!(
        "runbook {} needs approval: request {id} filed (approvers: {})",
        text(&r["resource"]),
        v["approvers"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    println!("once approved, start it with: airlock run --request {id}");
    Ok(ExitCode::SUCCESS)
}

/// Prints the run's events as they arrive; the exit code is the run's.
async fn follow(mut response: reqwest::Response, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut buf: Vec<u8> = Vec::new();
    let mut ok = None;
    let mut steps = 0;
    let mut out = std::io::stdout();
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the gateway's answer broke off")?
    {
        buf.extend_from_slice(&chunk);
        while let Some(at) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=at).collect();
            let Ok(e) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if e["event"] == "finished" {
                ok = Some(e["status"] == "ok");
            }
            if json_out {
                out.write_all(&line)?;
                out.flush()?;
                continue;
            }
            match e["event"].as_str() {
                Some("run_started") => {
                    steps = e["steps"].as_u64().unwrap_or(0);
                    println!(
                        "run {} of runbook {}: {steps} step(s)",
                        text(&e["run"]),
                        text(&e["runbook"])
                    );
                }
                Some("step_started") => println!(
                    "▶ step {}/{steps} {}: {}",
                    e["index"].as_u64().unwrap_or(0) + 1,
                    text(&e["name"]),
                    text(&e["summary"])
                ),
                Some("output") => {
                    // A program's output: its lines and tabs kept, and
                    // every other control character (progress bars' CR,
                    // colour escapes) shown escaped.
                    let text = lines(&e["text"]);
                    if e["stream"] == "stderr" {
                        eprint!("{text}");
                    } else {
                        print!("{text}");
                    }
                    out.flush()?;
                }
                Some("step_finished") => {
                    let n = e["index"].as_u64().unwrap_or(0) + 1;
                    let name = text(&e["name"]);
                    let mut what = Vec::new();
                    if let Some(c) = e["exit_code"].as_i64() {
                        what.push(format!("exit {c}"));
                    }
                    if let Some(c) = e["http_status"].as_u64() {
                        what.push(format!("HTTP {c}"));
                    }
                    if let Some(r) = e["rows"].as_u64() {
                        what.push(format!("{r} row(s)"));
                    }
                    if e["output_truncated"] == true {
                        what.push("output cut at the limit".into());
                    }
                    let detail = if what.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", what.join(", "))
                    };
                    match e["status"].as_str() {
                        Some("ok") => println!(
                            "✔ step {n}/{steps} {name}: ok in {} ms{detail}",
                            e["duration_ms"]
                        ),
                        Some("skipped") => println!("- step {n}/{steps} {name}: skipped"),
                        Some(status) => println!(
                            "✘ step {n}/{steps} {name}: {}{detail}: {}",
                            status.replace('_', " "),
                            text(&e["error"])
                        ),
                        None => {}
                    }
                }
                Some("finished") => println!(
                    "run {}: {} in {} ms",
                    text(&e["runbook"]),
                    text(&e["status"]).replace('_', " "),
                    e["duration_ms"]
                ),
                _ => {}
            }
        }
    }
    match ok {
        Some(true) => Ok(ExitCode::SUCCESS),
        Some(false) => Ok(ExitCode::FAILURE),
        None => bail!(
            "the connection closed before the run ended; the run goes on in the gateway; follow its records with: airlock timeline --kinds access --grep runbook --follow"
        ),
    }
}
