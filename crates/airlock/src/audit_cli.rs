//! `airlock audit ...` and `airlock replay`: search, verify, export and
//! reindex the audit log, and replay a session. These read the files in the
//! data directory (run them on the gateway host, or on a copy of the log);
//! `verify` needs nothing but the log and the public key.
//!
//! Exit codes: `verify` exits 1 when the log fails verification and 2 when
//! it cannot be read; the others exit 1 on any error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use airlock_audit::index::{Index, RecordQuery};
use airlock_audit::read::Entry;
use airlock_audit::{Event, Expect, PublicKey};
use airlock_config::text::{escape, escape_lines};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    #[command(flatten)]
    pub query: QueryArgs,
}

/// Which records `airlock audit` shows: the newest `--limit` that match, oldest first.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The gateway's config (for its data directory).
    #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
    pub config: PathBuf,
    /// Records about or by this user.
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub resource: Option<String>,
    #[arg(long)]
    pub session: Option<String>,
    /// From this long ago (`1h`, `7d`) or this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this long ago or this time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only these kinds (repeat or comma-separate): statement, session_start, access, ...
    #[arg(long = "kind", value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Case-insensitive text in the statement, event text, end reason or error.
    #[arg(long)]
    pub grep: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// One JSON record per line, as stored.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every hash link and checkpoint signature, and that the log needs
    /// them (a checkpoint at least every checkpoint_every records or
    /// interval, no long unsigned tail); prints OK or the first bad record.
    Verify {
        /// An audit directory, or one exported file. Default: the config's data_dir/audit.
        path: Option<PathBuf>,
        /// The trusted public key (PEM or hex). Default: the one in the audit directory.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// A file whose last checkpoint the log must still contain (an earlier
        /// export): detects a log cut back before it.
        #[arg(long)]
        anchor: Option<PathBuf>,
        /// A file of anchors the gateway sent off the host ([audit] anchors:
        /// its stdout, syslog or webhook bodies, one per line; other lines
        /// are skipped): the log must still hold every checkpoint they name,
        /// byte for byte. Repeatable.
        #[arg(long)]
        anchors: Vec<PathBuf>,
        #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write the records, with their chain fields, as JSON lines (verifiable with `verify`).
    Export {
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        config: PathBuf,
    },
    /// Drop the query index and rebuild it from the log.
    Reindex {
        #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        config: PathBuf,
    },
    /// Print the checkpoint public key (PEM), for verifying the log elsewhere.
    PublicKey {
        #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        config: PathBuf,
    },
    /// Sessions recorded in the log, newest first.
    Sessions {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        active: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        config: PathBuf,
    },
}

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => query(args.query),
        Some(AuditCommand::Verify {
            path,
            public_key,
            anchor,
            anchors,
            config,
            json,
        }) => verify(path, public_key, anchor, &anchors, &config, json),
        Some(AuditCommand::Export {
            format: _,
            since,
            until,
            output,
            config,
        }) => export(&config, since.as_deref(), until.as_deref(), output),
        Some(AuditCommand::Reindex { config }) => {
            let data_dir = data_dir(&config)?;
            let mut index = Index::open(
                &airlock_audit::index_path(&data_dir),
                &airlock_audit::audit_dir(&data_dir),
            )?;
            index.clear()?;
            let mut tailer = index.tailer()?;
            let n = index.catch_up(&mut tailer)?;
            println!("reindexed {n} records");
            Ok(ExitCode::SUCCESS)
        }
        Some(AuditCommand::PublicKey { config }) => {
            let dir = airlock_audit::audit_dir(&data_dir(&config)?);
            let key = PublicKey::read(&dir.join(airlock_audit::PUBLIC_KEY_FILE))?;
            print!("{}", key.to_pem());
            Ok(ExitCode::SUCCESS)
        }
        Some(AuditCommand::Sessions {
            user,
            resource,
            since,
            active,
            limit,
            json,
            config,
        }) => {
            let index = open_index(&config)?;
            let now = now_ms();
            let list = index.sessions(&airlock_audit::index::SessionQuery {
                user,
                resource,
                since_ms: since.as_deref().map(|s| parse_time(s, now)).transpose()?,
                active_only: active,
                limit,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                println!("no sessions");
            }
            for s in list {
                let end = match (&s.ended_ms, &s.end_reason) {
                    (Some(e), Some(r)) => format!("ended {} ({})", time_text(*e), escape(r)),
                    _ => "open".into(),
                };
                println!(
                    "{}  {}  {}@{} {}{}  {} statements ({} refused)  {}",
                    s.id,
                    time_text(s.started_ms),
                    s.user,
                    s.resource,
                    s.access,
                    if s.break_glass { " BREAK-GLASS" } else { "" },
                    s.statement_count,
                    s.refused_count,
                    end
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn data_dir(config: &Path) -> anyhow::Result<PathBuf> {
    let c = airlock_config::Config::load(config)?;
    Ok(c.gateway.data_dir)
}

/// The index, brought up to date with the log first (indexing is
/// idempotent, so this is safe while the gateway runs).
fn open_index(config: &Path) -> anyhow::Result<Index> {
    let data_dir = data_dir(config)?;
    let audit = airlock_audit::audit_dir(&data_dir);
    if !audit.is_dir() {
        bail!(
            "there is no audit log in {} (has the gateway run with this config?)",
            audit.display()
        );
    }
    let mut index = Index::open(&airlock_audit::index_path(&data_dir), &audit)?;
    let mut tailer = index.tailer()?;
    index.catch_up(&mut tailer)?;
    Ok(index)
}

fn now_ms() -> i64 {
    airlock_audit::log::system_now_ms()
}

/// `1h` (that long ago), an RFC 3339 time, or milliseconds since the epoch.
pub fn parse_time(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(d) = airlock_config::parse_duration(text) {
        return Ok(now - d.as_millis() as i64);
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    bail!("{text:?} is neither a duration like 1h or 7d, nor a time like 2026-11-22T02:00:00Z")
}

pub fn time_text(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

fn query(q: QueryArgs) -> anyhow::Result<ExitCode> {
    for k in &q.kinds {
        if !Event::KINDS.contains(&k.as_str()) {
            bail!(
                "unknown --kind {k:?}; the kinds are: {}",
                Event::KINDS.join(", ")
            );
        }
    }
    let now = now_ms();
    let index = open_index(&q.config)?;
    let entries = index.records(&RecordQuery {
        user: q.user,
        resource: q.resource,
        session: q.session,
        since_ms: q.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
        until_ms: q.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        kinds: q.kinds,
        grep: q.grep,
        limit: q.limit,
    })?;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        if q.json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            writeln!(out, "{}", describe(e))?;
        }
    }
    if entries.is_empty() && !q.json {
        writeln!(out, "no matching records")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One line for a person: the record's own text (statements, reasons,
/// errors: untrusted) is escaped, so a terminal shows what it says.
fn describe(e: &Entry) -> String {
    let what = escape(&e.event.summary()).into_owned();
    format!(
        "{}  #{}  {:<15} {}",
        time_text(e.ts),
        e.seq,
        e.event.kind(),
        what
    )
}

fn verify(
    path: Option<PathBuf>,
    public_key: Option<PathBuf>,
    anchor: Option<PathBuf>,
    anchor_files: &[PathBuf],
    config: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let path =
        match path {
            Some(p) => p,
            None => airlock_audit::audit_dir(&data_dir(config).context(
                "no audit directory given, and the config could not be read to find one",
            )?),
        };
    let is_dir = path.is_dir();
    let key = match &public_key {
        Some(k) => PublicKey::read(k)?,
        None if is_dir => {
            let k = path.join(airlock_audit::PUBLIC_KEY_FILE);
            eprintln!(
                "note: trusting the public key in {} itself; this catches damage, not someone who could rewrite the directory. Pass --public-key with a copy kept elsewhere.",
                k.display()
            );
            PublicKey::read(&k)?
        }
        None => bail!("verifying a file needs the public key: pass --public-key (see `airlock audit public-key`)"),
    };
    let anchor = match anchor {
        None => None,
        Some(f) => {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            let a = text
                .lines()
                .rev()
                .find_map(airlock_audit::verify::anchor_from_line);
            match a {
                Some(a) => Some(a),
                None => bail!("{} holds no checkpoint record to anchor on", f.display()),
            }
        }
    };
    let mut anchors = Vec::new();
    for f in anchor_files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let found = airlock_audit::Anchor::read_all(&text);
        if found.is_empty() {
            bail!(
                "{} holds no audit anchors (lines with \"event\":\"audit.checkpoint\", as the gateway sends them per [audit] anchors); pass the file its stdout, syslog or webhook receiver wrote",
                f.display()
            );
        }
        anchors.extend(found);
    }
    // The rules for checkpoints that do not sign their own (logs written
    // before they did): the config's, else the defaults.
    let terms = airlock_config::Config::load(config)
        .ok()
        .map(|c| airlock_audit::Terms {
            every: c.audit.checkpoint_every,
            interval_ms: u64::try_from(c.audit.checkpoint_interval.as_millis()).unwrap_or(u64::MAX),
            late: false,
        });
    let expect = Expect {
        key: Some(key),
        anchor,
        partial: !is_dir,
        anchors,
        terms,
        written_seq: None,
    };
    let started = std::time::Instant::now();
    let report = if is_dir {
        airlock_audit::verify_dir(&path, &expect)
    } else {
        airlock_audit::verify_file(&path, &expect)
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let elapsed = started.elapsed();
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json(&key))?);
    } else {
        println!("log          {}", path.display());
        println!("key          {}", key.id());
        match (report.first_seq, report.last_seq) {
            (Some(a), Some(b)) => println!(
                "records      {} (seq {a} to {b}) in {} segment(s), checked in {:.2}s",
                report.records,
                report.segments,
                elapsed.as_secs_f64()
            ),
            _ => println!("records      0"),
        }
        if let (Some(a), Some(b)) = (report.first_ts, report.last_ts) {
            println!("time span    {} to {}", time_text(a), time_text(b));
        }
        match &report.last_checkpoint {
            Some(c) => println!(
                "checkpoint   {} in all; last: record {} at {}",
                report.checkpoints,
                c.seq,
                time_text(c.ts)
            ),
            None => println!("checkpoint   none"),
        }
        if report.late_checkpoints > 0 {
            println!(
                "late         {} checkpoint(s) sealed late, as they sign (after a crash, a failed write or a clock jump)",
                report.late_checkpoints
            );
        }
        if let Some(t) = report.terms {
            println!(
                "rules        a checkpoint every {} records or {} ms, as the checkpoints sign",
                t.every, t.interval_ms
            );
        }
        if report.unsealed > 0 {
            println!(
                "unsealed     {} record(s) after the last checkpoint (chained, not yet signed)",
                report.unsealed
            );
        }
        if report.anchors > 0 {
            println!(
                "anchors      {} checked{}",
                report.anchors,
                if report.anchors_retired > 0 {
                    format!(
                        ", {} of them for records retention removed",
                        report.anchors_retired
                    )
                } else {
                    String::new()
                }
            );
        }
        if let Some(t) = report.retained_from {
            println!("retention    records 1 to {t} were removed by retention, as the log records");
        }
        match &report.problem {
            None => println!("OK"),
            Some(p) => println!("FAILED: {p}"),
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn export(
    config: &Path,
    since: Option<&str>,
    until: Option<&str>,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let now = now_ms();
    let since = since.map(|s| parse_time(s, now)).transpose()?;
    let until = until.map(|s| parse_time(s, now)).transpose()?;
    let dir = airlock_audit::audit_dir(&data_dir(config)?);
    let mut out: Box<dyn std::io::Write> = match &output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut n = 0u64;
    let mut failed: Option<std::io::Error> = None;
    airlock_audit::read::scan(&dir, 0, |raw| {
        if since.is_some_and(|s| raw.ts < s) || until.is_some_and(|u| raw.ts >= u) {
            return Ok(true);
        }
        if let Err(e) = out.write_all(raw.line).and_then(|()| out.write_all(b"\n")) {
            failed = Some(e);
            return Ok(false);
        }
        n += 1;
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(e).context("writing the export");
    }
    out.flush().context("writing the export")?;
    if let Some(p) = output {
        eprintln!("exported {n} records to {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `airlock replay SESSION_ID`: the session as it happened. Statements,
/// rows, errors and end reasons are shown escaped (`airlock_config::text`):
/// what reached PostgreSQL is recorded exactly, and a CR or an escape
/// sequence in it must not redraw the terminal; `--json` has the exact text.
pub fn replay(config: &Path, session: &str, json: bool) -> anyhow::Result<ExitCode> {
    let index = open_index(config)?;
    let Some(s) = index.session(session)? else {
        bail!("no session {session} in the audit log (list them with `airlock audit sessions`)");
    };
    let entries = index.records(&RecordQuery {
        session: Some(session.to_owned()),
        limit: 1_000_000,
        ..RecordQuery::default()
    })?;
    if json {
        for e in &entries {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "session {}: {}@{} {} access, grant {}{}, from {}",
        s.id,
        s.user,
        s.resource,
        s.access,
        s.grant_id,
        if s.break_glass { " BREAK-GLASS" } else { "" },
        escape(&s.client_addr)
    );
    let start = s.started_ms;
    for e in &entries {
        let at = format!("+{:.3}s", (e.ts - start) as f64 / 1000.0);
        match &e.event {
            Event::SessionStart(_) => println!("{at:>10}  started at {}", time_text(e.ts)),
            Event::Statement(st) => {
                println!("{at:>10}  #{} {} [{}]", st.n, st.decision, st.rule);
                for line in escape_lines(&st.display_text()).lines() {
                    println!("{:>10}    {line}", "");
                }
                if let Some(code) = &st.sqlstate {
                    println!("{:>10}    refused with {code}", "");
                }
            }
            Event::StatementDone(d) => {
                match &d.sqlstate {
                    Some(code) => println!(
                        "{at:>10}  #{} failed after {}: {code} {}",
                        d.n,
                        airlock_audit::event::micros(d.duration_us),
                        escape(d.error.as_deref().unwrap_or(""))
                    ),
                    None => println!(
                        "{at:>10}  #{} done in {}: {}",
                        d.n,
                        airlock_audit::event::micros(d.duration_us),
                        escape(&d.tags.join(", "))
                    ),
                }
                if !d.columns.is_empty() {
                    let columns: Vec<_> = d.columns.iter().map(|c| escape(c)).collect();
                    println!("{:>10}    {}", "", columns.join(" | "));
                    for row in &d.first_rows {
                        let cells: Vec<_> = row
                            .iter()
                            .map(|v| escape(v.as_deref().unwrap_or("NULL")))
                            .collect();
                        println!("{:>10}    {}", "", cells.join(" | "));
                    }
                }
            }
            Event::SessionEnd { reason, .. } => println!("{at:>10}  ended: {}", escape(reason)),
            other => println!("{at:>10}  {}", other.kind()),
        }
    }
    Ok(ExitCode::SUCCESS)
}
