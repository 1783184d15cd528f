//! `airlock timeline`, `airlock trace`, `airlock compare` and `airlock
//! deploy mark`: the telemetry side of an incident, through the API.
//!
//! What services send (log bodies, span names, attributes, service and
//! version names) and what people wrote (access events) is untrusted: it is
//! printed escaped (`airlock_config::text`, `trace::one_line`); `--json`
//! prints it exactly.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use airlock_config::text::{escape, escape_lines};
use airlock_store::telemetry::{Deploy, EventKind, TimelineEvent};
use airlock_telemetry::compare::Comparison;
use airlock_telemetry::trace::{format_ns, one_line, TraceView};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::client::{self, query_value};

/// How often `--follow` asks for new events.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
pub struct TimelineArgs {
    /// Start of the window: a duration ago (1h, 30m) or RFC 3339.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// End of the window (default now): a duration ago or RFC 3339.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub version: Option<String>,
    #[arg(long)]
    pub env: Option<String>,
    /// Only this trace: all its spans and logs.
    #[arg(long)]
    pub trace: Option<String>,
    /// Case-insensitive text in a log body, span name, error or access event.
    #[arg(long)]
    pub grep: Option<String>,
    /// Record or resource attribute equal to a value (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attrs: Vec<String>,
    /// Comma-separated: logs, spans, metrics, deploys, access.
    #[arg(long, default_value = "logs,spans,metrics,deploys,access")]
    pub kinds: String,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Keep printing new events as they arrive.
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per event (JSON lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DeployCommand {
    /// Record a deploy: a marker on the timeline and the start of a version.
    Mark {
        #[arg(long)]
        service: String,
        #[arg(long)]
        version: Option<String>,
        /// The deployment id (deployment.id in telemetry).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deploy markers, oldest first.
    List {
        #[arg(long)]
        service: Option<String>,
        /// A duration ago (7d) or RFC 3339.
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long)]
        json: bool,
    },
}

fn now_ms() -> i64 {
    airlock_access::Clock::now_ms(&airlock_access::SystemClock)
}

fn time_ms(flag: &str, text: &str) -> anyhow::Result<i64> {
    crate::audit_cli::parse_time(text, now_ms()).map_err(|e| anyhow::anyhow!("{flag} {text}: {e}"))
}

/// `HH:MM:SS.mmm` in UTC, with the date when the window spans days.
fn clock_text(ns: i64, with_date: bool) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = if with_date {
        time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z"
        )
    } else {
        time::macros::format_description!("[hour]:[minute]:[second].[subsecond digits:3]")
    };
    t.format(&fmt).unwrap_or_else(|_| ns.to_string())
}

/// One line for a person.
pub fn describe(e: &TimelineEvent, with_date: bool) -> String {
    let kind = match e.kind {
        EventKind::Log => "log",
        EventKind::Span => "span",
        EventKind::Metric => "metric",
        EventKind::Deploy => "DEPLOY",
        EventKind::Access => "access",
    };
    let who = match (&e.service, &e.version) {
        (Some(s), Some(v)) => format!("{}@{}", escape(s), escape(v)),
        (Some(s), None) => escape(s).into_owned(),
        _ => String::new(),
    };
    let mut line = format!(
        "{} {:<6} {}{:<24} ",
        clock_text(e.time_ns, with_date),
        kind,
        if e.error { "!" } else { " " },
        who
    );
    match e.kind {
        EventKind::Log => {
            let sev = escape(e.detail["severity_text"].as_str().unwrap_or(""));
            if !sev.is_empty() {
                line.push_str(&sev);
                line.push(' ');
            }
            line.push_str(&one_line(&e.summary, 200));
        }
        EventKind::Span => {
            line.push_str(&one_line(&e.summary, 120));
            if let Some(d) = e.duration_ns {
                line.push_str(&format!(" {}", format_ns(d)));
            }
            if let Some(status) = e.detail["status_message"]
                .as_str()
                .filter(|s| !s.is_empty())
            {
                line.push_str(&format!(" error: {}", one_line(status, 120)));
            }
        }
        _ => line.push_str(&one_line(&e.summary, 200)),
    }
    if let Some(t) = &e.trace_id {
        line.push_str(&format!("  trace={}", escape(t)));
    }
    line
}

#[derive(serde::Deserialize)]
struct Page {
    events: Vec<TimelineEvent>,
}

pub fn timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let since = time_ms("--since", &args.since)?;
    let until = args
        .until
        .as_deref()
        .map(|u| time_ms("--until", u))
        .transpose()?;
    if args.follow && until.is_some() {
        bail!("--follow reads until now and on; leave out --until");
    }
    let mut base = format!(
        "/api/v1/timeline?kinds={}&limit={}",
        query_value(&args.kinds),
        args.limit
    );
    for (name, value) in [
        ("service", &args.service),
        ("version", &args.version),
        ("env", &args.env),
        ("trace", &args.trace),
        ("grep", &args.grep),
    ] {
        if let Some(v) = value {
            base.push_str(&format!("&{name}={}", query_value(v)));
        }
    }
    if !args.attrs.is_empty() {
        for a in &args.attrs {
            if !a.contains('=') {
                bail!("--attr {a:?} is not KEY=VALUE");
            }
        }
        base.push_str(&format!("&attr={}", query_value(&args.attrs.join(","))));
    }
    let runtime = crate::access_cli::runtime()?;
    let api = client::Api::from_login()?;
    let span_days = until.unwrap_or_else(now_ms) - since > 86_400_000;
    let mut out = std::io::stdout().lock();
    let mut print = |e: &TimelineEvent| -> anyhow::Result<()> {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            writeln!(out, "{}", describe(e, span_days))?;
        }
        out.flush()?;
        Ok(())
    };
    let mut path = format!("{base}&since_ms={since}");
    if let Some(u) = until {
        path.push_str(&format!("&until_ms={u}"));
    }
    let page: Page = runtime.block_on(api.get(&path))?;
    if page.events.is_empty() && !args.follow && !args.json {
        println!("no events in the window");
    }
    for e in &page.events {
        print(e)?;
    }
    if !args.follow {
        if page.events.len() >= args.limit {
            eprintln!(
                "(the first {} events; narrow the window or filters, or raise --limit)",
                args.limit
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Follow: ask for what is at or after the newest event seen, and skip
    // the events already printed at that instant (several can share it).
    let mut cursor = page
        .events
        .iter()
        .map(|e| e.time_ns)
        .max()
        .unwrap_or(since.saturating_mul(1_000_000));
    let mut at_cursor: HashSet<String> = page
        .events
        .iter()
        .filter(|e| e.time_ns == cursor)
        .map(event_key)
        .collect();
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        let page: Page = match runtime.block_on(api.get(&format!("{base}&since_ns={cursor}"))) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("airlock: {}; retrying", escape_lines(&format!("{e:#}")));
                continue;
            }
        };
        for e in page.events {
            if e.time_ns == cursor && at_cursor.contains(&event_key(&e)) {
                continue;
            }
            if e.time_ns > cursor {
                cursor = e.time_ns;
                at_cursor.clear();
            }
            at_cursor.insert(event_key(&e));
            print(&e)?;
        }
    }
}

fn event_key(e: &TimelineEvent) -> String {
    format!(
        "{:?}|{}|{}|{}",
        e.kind,
        e.span_id.as_deref().unwrap_or(""),
        e.summary,
        e.detail
    )
}

pub fn trace(trace_id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let id = trace_id.trim();
    if airlock_telemetry::convert::hex_trace_id(id).is_none() {
        bail!("{id:?} is not a trace id: 32 hexadecimal digits, not all zeros");
    }
    let view: TraceView = crate::access_cli::runtime()?.block_on(async {
        client::Api::from_login()?
            .get(&format!("/api/v1/traces/{id}"))
            .await
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .map_or(40, |c| c.saturating_sub(90).clamp(20, 80));
        print!("{}", view.render(width));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn compare(
    service: &str,
    from: &str,
    to: &str,
    since: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let since = time_ms("--since", since)?;
    let path = format!(
        "/api/v1/compare?service={}&from={}&to={}&since_ms={since}",
        query_value(service),
        query_value(from),
        query_value(to)
    );
    let c: Comparison = crate::access_cli::runtime()?
        .block_on(async { client::Api::from_login()?.get(&path).await })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", c.render());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn deploy(cmd: DeployCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeployCommand::Mark {
            service,
            version,
            id,
            commit,
            env,
            json,
        } => {
            if version.is_none() && id.is_none() {
                bail!("give --version, --id (the deployment id), or both");
            }
            let body = serde_json::json!({
                "service": service,
                "version": version,
                "id": id,
                "commit": commit,
                "env": env,
            });
            let d: Deploy = crate::access_cli::runtime()?.block_on(async {
                client::Api::from_login()?
                    .post("/api/v1/deploys", &body)
                    .await
                    .context("marking the deploy")
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!(
                    "deploy {} marked: {} {} at {}",
                    d.id,
                    escape(&d.service),
                    escape(
                        d.version
                            .as_deref()
                            .or(d.deployment_id.as_deref())
                            .unwrap_or("")
                    ),
                    clock_text(d.time_ns, true)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DeployCommand::List {
            service,
            since,
            json,
        } => {
            let since = time_ms("--since", &since)?;
            let mut path = format!("/api/v1/deploys?since_ms={since}");
            if let Some(s) = &service {
                path.push_str(&format!("&service={}", query_value(s)));
            }
            #[derive(serde::Deserialize)]
            struct List {
                deploys: Vec<Deploy>,
            }
            let list: List = crate::access_cli::runtime()?
                .block_on(async { client::Api::from_login()?.get(&path).await })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list.deploys)?);
            } else if list.deploys.is_empty() {
                println!("no deploys");
            } else {
                for d in &list.deploys {
                    println!(
                        "{}  {:<16} {:<16} {:<10} {:<8} {}{}",
                        clock_text(d.time_ns, true),
                        escape(&d.service),
                        escape(d.version.as_deref().unwrap_or("-")),
                        escape(d.env.as_deref().unwrap_or("-")),
                        d.source.as_str(),
                        escape(&d.actor),
                        d.commit
                            .as_deref()
                            .map(|c| format!(" commit {}", escape(c)))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
