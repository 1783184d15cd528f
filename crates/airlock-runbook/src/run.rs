//! Executing a [`Plan`]: step by step, stopping at the first failure, under the run's and each
//! step's time limit, reporting as it goes.
//!
//! The runner emits [`RunEvent`]s on a channel while it works, so the gateway can stream output to
//! a terminal and record each step in the audit log, and returns a [`RunOutcome`] at the end. Both
//! hold bounded output (each step keeps at most `max_output` bytes per stream) and never a secret:
//! a header read from the environment is resolved just before the request is sent and lives only in
//! the request. Lifecycle events are sent with backpressure (the audit log must see them); output
//! chunks are offered without waiting and dropped when the channel is full, so a slow terminal
//! cannot slow a production action down. The outcome keeps the output either way.
//!
//! SQL steps go through [`SqlExecutor`], which the gateway implements with its own proxy path
//! (classification, guardrails, masking, audit); this crate never connects to a database.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use airlock_config::{format_duration, Access, ResourceName};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::model::StepKind;
use crate::plan::{HeaderValue, Plan, PlannedAction, PlannedHttp, PlannedSql, PlannedStep};

/// A boxed, sendable future: what [`SqlExecutor::execute`] returns (no async-trait needed).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs a sql step's statement. Implemented by the gateway so that runbook SQL takes the same path
/// as a person's: classification, guardrails, masking and the audit log.
pub trait SqlExecutor: Send + Sync {
    /// Runs `request.sql` on `request.resource` with `request.args` bound as `$1`, `$2`, ...
    /// (never spliced into the text), returning at most `max_rows` rows within `timeout`. The error
    /// is shown to the person running the runbook and recorded, so it must hold no secret.
    fn execute(&self, request: SqlRequest) -> BoxFuture<Result<SqlOutput, String>>;
}

/// One statement for the [`SqlExecutor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlRequest {
    /// The `[[resource]]` to run on.
    pub resource: ResourceName,
    /// Which credential.
    pub access: Access,
    /// The statement exactly as in the runbook.
    pub sql: String,
    /// `$1`, `$2`, ... as text.
    pub args: Vec<String>,
    /// Return at most this many rows.
    pub max_rows: usize,
    /// Time left for the step.
    pub timeout: Duration,
}

/// What a statement returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SqlOutput {
    /// Column names (empty for statements without rows).
    pub columns: Vec<String>,
    /// Values as text; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows the statement produced or affected (may exceed `rows.len()`).
    pub row_count: u64,
    /// `SELECT 3`, `UPDATE 1`, ...
    pub command_tag: String,
}

/// Where the runner reads environment variables (secret headers, a command's allowlist).
#[derive(Debug, Clone, Default)]
pub enum Environment {
    /// The gateway process's own environment.
    #[default]
    Process,
    /// A fixed set: for tests, and for a gateway that wants to pass a curated set.
    Fixed(Arc<BTreeMap<String, String>>),
}

impl Environment {
    pub(crate) fn get(&self, name: &str) -> Option<OsString> {
        match self {
            Environment::Process => std::env::var_os(name),
            Environment::Fixed(map) => map.get(name).map(OsString::from),
        }
    }
}

/// Executes plans. Cheap to clone; one can serve many runs at once.
#[derive(Clone)]
pub struct Runner {
    http: reqwest::Client,
    sql: Option<Arc<dyn SqlExecutor>>,
    env: Environment,
}

/// The runner could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// reqwest refused the client configuration.
    #[error("cannot build the HTTP client for runbooks: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// `ok`, `failed`, `timed_out` or `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It did what it should.
    Ok,
    /// It ran and failed, or could not start.
    Failed,
    /// It hit its own or the run's limit and was stopped.
    TimedOut,
    /// An earlier step did not succeed, so it did not run.
    Skipped,
}

impl StepStatus {
    /// As serialized: `ok`, `failed`, `timed_out`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed_out",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// `ok`, `failed` or `timed_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every step succeeded.
    Ok,
    /// A step failed.
    Failed,
    /// A step hit a time limit.
    TimedOut,
}

impl RunStatus {
    /// As serialized: `ok`, `failed`, `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
        }
    }
}

/// Which stream an output chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// A command's standard output.
    Stdout,
    /// A command's standard error.
    Stderr,
    /// An HTTP response body.
    Body,
    /// A sql step's rows, as a text table.
    Rows,
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepOutcome {
    /// 0-based position.
    pub index: usize,
    /// The step's name.
    pub name: String,
    /// Its kind.
    pub kind: StepKind,
    /// How it ended.
    pub status: StepStatus,
    /// How long it took.
    pub duration_ms: u64,
    /// A command's exit code (none when killed by a signal).
    pub exit_code: Option<i32>,
    /// The response's status.
    pub http_status: Option<u16>,
    /// Rows a statement returned or affected.
    pub rows: Option<u64>,
    /// Output kept (at most `max_output` bytes per stream, lossy UTF-8).
    pub output: String,
    /// Whether output was cut at the limit.
    pub output_truncated: bool,
    /// Why it did not succeed.
    pub error: Option<String>,
}

/// What happened to a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    /// The runbook.
    pub runbook: String,
    /// Its file's digest.
    pub digest: String,
    /// How it ended.
    pub status: RunStatus,
    /// How long it took.
    pub duration_ms: u64,
    /// Every step, skipped ones included.
    pub steps: Vec<StepOutcome>,
    /// The first failed step's error.
    pub error: Option<String>,
}

/// The end of a run, without the steps' output (already streamed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// The runbook.
    pub runbook: String,
    /// Its file's digest.
    pub digest: String,
    /// How it ended.
    pub status: RunStatus,
    /// How long it took.
    pub duration_ms: u64,
    /// The step that did not succeed.
    pub failed_step: Option<usize>,
    /// Its error.
    pub error: Option<String>,
}

impl RunOutcome {
    /// The outcome without output.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            runbook: self.runbook.clone(),
            digest: self.digest.clone(),
            status: self.status,
            duration_ms: self.duration_ms,
            failed_step: self
                .steps
                .iter()
                .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::TimedOut))
                .map(|s| s.index),
            error: self.error.clone(),
        }
    }
}

/// What the runner reports while it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// A step is about to run.
    StepStarted {
        /// Its position.
        index: usize,
        /// Its name.
        name: String,
        /// Its kind.
        kind: StepKind,
        /// One line saying what it does ([`PlannedStep::summary`]).
        summary: String,
    },
    /// A chunk of output, as it arrives (whole UTF-8 characters).
    Output {
        /// The step.
        index: usize,
        /// Where it came from.
        stream: OutputStream,
        /// The text.
        text: String,
    },
    /// A step ended (or was skipped).
    StepFinished(StepOutcome),
    /// The run ended.
    Finished(RunSummary),
}

/// What a step's executor found out; the runner adds name, timing and output.
#[derive(Debug, Default)]
pub(crate) struct StepResult {
    pub timed_out: bool,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub http_status: Option<u16>,
    pub rows: Option<u64>,
}

impl StepResult {
    pub(crate) fn failed(error: impl Into<String>) -> StepResult {
        StepResult {
            error: Some(error.into()),
            ..StepResult::default()
        }
    }
}

impl Runner {
    /// A runner with a default HTTP client. The process must have a rustls crypto provider
    /// installed (the gateway installs ring's at start).
    pub fn new() -> Result<Runner, RunnerError> {
        Runner::with_http_client(reqwest::Client::builder())
    }

    /// A runner whose HTTP client starts from `builder` (e.g. with the gateway's CA roots).
    /// Redirects are turned off whatever the builder says: a redirect could carry a secret header
    /// to another host.
    pub fn with_http_client(builder: reqwest::ClientBuilder) -> Result<Runner, RunnerError> {
        let http = builder
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(RunnerError::HttpClient)?;
        Ok(Runner {
            http,
            sql: None,
            env: Environment::Process,
        })
    }

    /// Sets the executor for sql steps; without one they fail.
    pub fn with_sql(mut self, executor: Arc<dyn SqlExecutor>) -> Runner {
        self.sql = Some(executor);
        self
    }

    /// Sets where environment variables come from (default: the process's).
    pub fn with_env(mut self, env: Environment) -> Runner {
        self.env = env;
        self
    }

    /// Runs `plan`, sending events to `events` as it goes. Never fails as a whole: every problem is
    /// a step's outcome. If the receiver is gone, the run goes on (it is already under way and its
    /// outcome is returned); output chunks are dropped when the channel is full.
    pub async fn run(&self, plan: &Plan, events: &mpsc::Sender<RunEvent>) -> RunOutcome {
        let started = Instant::now();
        let deadline = started + plan.timeout;
        let mut status = RunStatus::Ok;
        let mut error = None;
        let mut steps = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let outcome = if status == RunStatus::Ok {
                let _ = events
                    .send(RunEvent::StepStarted {
                        index: step.index,
                        name: step.name.clone(),
                        kind: step.kind(),
                        summary: step.summary(),
                    })
                    .await;
                self.step(step, plan.timeout, deadline, events).await
            } else {
                StepOutcome {
                    status: StepStatus::Skipped,
                    ..empty_outcome(step)
                }
            };
            match outcome.status {
                StepStatus::Failed => status = RunStatus::Failed,
                StepStatus::TimedOut => status = RunStatus::TimedOut,
                StepStatus::Ok | StepStatus::Skipped => {}
            }
            if error.is_none() {
                error.clone_from(&outcome.error);
            }
            let _ = events.send(RunEvent::StepFinished(outcome.clone())).await;
            steps.push(outcome);
        }
        let outcome = RunOutcome {
            runbook: plan.runbook.clone(),
            digest: plan.digest.clone(),
            status,
            duration_ms: millis(started.elapsed()),
            steps,
            error,
        };
        let _ = events.send(RunEvent::Finished(outcome.summary())).await;
        outcome
    }

    async fn step(
        &self,
        step: &PlannedStep,
        run_timeout: Duration,
        deadline: Instant,
        events: &mpsc::Sender<RunEvent>,
    ) -> StepOutcome {
        let started = Instant::now();
        let remaining = deadline.saturating_duration_since(started);
        // Whichever limit is nearer applies; the message says which one it was.
        let (limit, whose) = match step.timeout {
            Some(t) if t <= remaining => (t, "step's"),
            _ => (remaining, "run's"),
        };
        let output = Output::new(step.index, step.max_output, events.clone());
        let mut result = match &step.action {
            PlannedAction::Command(c) => crate::command::run(c, limit, &self.env, &output).await,
            PlannedAction::Http(h) => timeboxed(limit, self.http(h, &output)).await,
            PlannedAction::Sql(s) => timeboxed(limit, self.sql(s, limit, &output)).await,
        };
        if result.timed_out {
            let total = if whose == "run's" { run_timeout } else { limit };
            result.error = Some(format!(
                "timed out: stopped at the {whose} limit of {}",
                format_duration(total)
            ));
        }
        let (text, truncated) = output.into_text();
        StepOutcome {
            status: match (&result.error, result.timed_out) {
                (_, true) => StepStatus::TimedOut,
                (Some(_), false) => StepStatus::Failed,
                (None, false) => StepStatus::Ok,
            },
            duration_ms: millis(started.elapsed()),
            exit_code: result.exit_code,
            http_status: result.http_status,
            rows: result.rows,
            output: text,
            output_truncated: truncated,
            error: result.error,
            ..empty_outcome(step)
        }
    }

    async fn sql(&self, s: &PlannedSql, limit: Duration, output: &Output) -> StepResult {
        let Some(executor) = &self.sql else {
            return StepResult::failed(
                "this gateway runs no sql steps (no SQL executor configured)",
            );
        };
        let request = SqlRequest {
            resource: s.resource.clone(),
            access: s.access,
            sql: s.sql.clone(),
            args: s.args.clone(),
            max_rows: s.max_rows,
            timeout: limit,
        };
        match executor.execute(request).await {
            Ok(rows) => {
                let mut stream = output.stream(OutputStream::Rows);
                output.push(&mut stream, table(&rows).as_bytes());
                output.finish(&mut stream);
                StepResult {
                    rows: Some(rows.row_count),
                    ..StepResult::default()
                }
            }
            Err(e) => StepResult::failed(e),
        }
    }

    async fn http(&self, h: &PlannedHttp, output: &Output) -> StepResult {
        let Ok(method) = reqwest::Method::from_bytes(h.method.as_bytes()) else {
            return StepResult::failed(format!("{:?} is not an HTTP method", h.method));
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for header in &h.headers {
            let (text, secret) = match &header.value {
                HeaderValue::Text(text) => (text.clone(), false),
                HeaderValue::Secret { env, prefix } => {
                    let value = self.env.get(env).and_then(|v| v.into_string().ok());
                    match value.filter(|v| !v.is_empty()) {
                        Some(value) => (format!("{prefix}{value}"), true),
                        None => {
                            return StepResult::failed(format!(
                                "header `{}` comes from environment variable {env}, which is unset, empty or not UTF-8 in the gateway's environment; nothing was sent",
                                header.name
                            ))
                        }
                    }
                }
            };
            let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes());
            let value = reqwest::header::HeaderValue::from_bytes(text.as_bytes());
            match (name, value) {
                (Ok(name), Ok(mut value)) if !text.contains(|c: char| c.is_control() && c != '\t') => {
                    // Keeps the value out of reqwest's and hyper's Debug output too.
                    value.set_sensitive(secret);
                    headers.append(name, value);
                }
                // The message names the header and, for a secret, the variable; never the value.
                _ => {
                    return StepResult::failed(format!(
                        "the value of header `{}` ({}) holds a line break, NUL or another character a header cannot carry; nothing was sent",
                        header.name, header.value
                    ))
                }
            }
        }
        let mut request = self.http.request(method, &h.url).headers(headers);
        if let Some(body) = &h.body {
            request = request.json(body);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return StepResult::failed(format!("request failed: {}", error_chain(&e))),
        };
        let status = response.status().as_u16();
        let mut stream = output.stream(OutputStream::Body);
        let mut read_error = None;
        loop {
            match response.chunk().await {
                // Past the limit there is nothing more to keep: stop reading rather than download
                // the rest of a large body (one more chunk tells whether there was more).
                Ok(Some(chunk)) if stream.is_full(output) => {
                    if !chunk.is_empty() {
                        output.mark_truncated();
                        break;
                    }
                }
                Ok(Some(chunk)) => {
                    if !output.push(&mut stream, &chunk) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(format!("reading the response failed: {}", error_chain(&e)));
                    break;
                }
            }
        }
        output.finish(&mut stream);
        let expected = if h.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            h.expect_status.contains(&status)
        };
        let error = if !expected {
            let wanted = if h.expect_status.is_empty() {
                "any 2xx".to_owned()
            } else {
                h.expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            };
            Some(format!(
                "the server answered HTTP {status}; expected {wanted}"
            ))
        } else {
            read_error
        };
        StepResult {
            http_status: Some(status),
            error,
            ..StepResult::default()
        }
    }
}

async fn timeboxed(limit: Duration, work: impl Future<Output = StepResult>) -> StepResult {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| StepResult {
            timed_out: true,
            ..StepResult::default()
        })
}

fn empty_outcome(step: &PlannedStep) -> StepOutcome {
    StepOutcome {
        index: step.index,
        name: step.name.clone(),
        kind: step.kind(),
        status: StepStatus::Skipped,
        duration_ms: 0,
        exit_code: None,
        http_status: None,
        rows: None,
        output: String::new(),
        output_truncated: false,
        error: None,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An error and its sources, `: `-separated (reqwest's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Rows as a small text table, psql style; NULL is shown as `NULL`, line breaks inside values as
/// `\n` so that one row stays one line.
pub(crate) fn table(out: &SqlOutput) -> String {
    const CELL: usize = 80;
    if out.columns.is_empty() {
        return format!("{}\n", out.command_tag);
    }
    let cell = |v: &Option<String>| -> String {
        let text = match v {
            None => "NULL".to_owned(),
            Some(v) => v.escape_debug().to_string(),
        };
        if text.chars().count() > CELL {
            text.chars().take(CELL - 3).chain("...".chars()).collect()
        } else {
            text
        }
    };
    let rows: Vec<Vec<String>> = out
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = out.columns.iter().map(|c| c.chars().count()).collect();
    for row in &rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut text = line(&out.columns);
    text.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    text.push('\n');
    for row in &rows {
        text.push_str(&line(row));
    }
    let shown = out.rows.len() as u64;
    if shown < out.row_count {
        text.push_str(&format!("(showing {shown} of {} rows)\n", out.row_count));
    } else {
        text.push_str(&format!(
            "({shown} {})\n",
            if shown == 1 { "row" } else { "rows" }
        ));
    }
    text
}

/// A step's output: kept up to `limit` bytes per stream, in arrival order, and offered to the
/// event channel chunk by chunk. Shared by a command's two pipe readers, hence the lock (held for
/// a copy, never across an await).
pub(crate) struct Output {
    index: usize,
    limit: usize,
    events: mpsc::Sender<RunEvent>,
    kept: Mutex<(String, bool)>,
}

/// One stream's reading state.
pub(crate) struct Stream {
    kind: OutputStream,
    kept: usize,
    /// Bytes of a character split across reads, held until the rest arrives.
    pending: Vec<u8>,
}

impl Stream {
    fn is_full(&self, output: &Output) -> bool {
        self.kept >= output.limit
    }
}

impl Output {
    pub(crate) fn new(index: usize, limit: usize, events: mpsc::Sender<RunEvent>) -> Output {
        Output {
            index,
            limit,
            events,
            kept: Mutex::new((String::new(), false)),
        }
    }

    pub(crate) fn stream(&self, kind: OutputStream) -> Stream {
        Stream {
            kind,
            kept: 0,
            pending: Vec::new(),
        }
    }

    /// Keeps what fits of `bytes`; returns whether all of it fitted. Bytes past the limit are
    /// dropped and mark the output truncated.
    pub(crate) fn push(&self, stream: &mut Stream, bytes: &[u8]) -> bool {
        let take = bytes.len().min(self.limit - stream.kept);
        stream.kept += take;
        stream.pending.extend_from_slice(&bytes[..take]);
        let full = stream.kept >= self.limit;
        let cut = if full {
            stream.pending.len()
        } else {
            stream.pending.len() - incomplete_tail(&stream.pending)
        };
        let text = String::from_utf8_lossy(&stream.pending[..cut]).into_owned();
        stream.pending.drain(..cut);
        {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            kept.0.push_str(&text);
            kept.1 |= take < bytes.len();
        }
        if !text.is_empty() {
            let _ = self.events.try_send(RunEvent::Output {
                index: self.index,
                stream: stream.kind,
                text,
            });
        }
        take == bytes.len()
    }

    pub(crate) fn mark_truncated(&self) {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
    }

    /// The end of a stream: whatever is pending is kept, lossily.
    pub(crate) fn finish(&self, stream: &mut Stream) {
        if !stream.pending.is_empty() {
            let text = String::from_utf8_lossy(&stream.pending).into_owned();
            stream.pending.clear();
            self.kept
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .push_str(&text);
            let _ = self.events.try_send(RunEvent::Output {
                index: self.index,
                stream: stream.kind,
                text,
            });
        }
    }

    fn into_text(self) -> (String, bool) {
        self.kept
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 character that is not complete yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 != 0x80 {
            let len = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if len > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_whole_characters_and_the_limit() {
        let (tx, mut rx) = mpsc::channel(100);
        let out = Output::new(0, 7, tx);
        let mut s = out.stream(OutputStream::Stdout);
        let text = "aé😀bc".as_bytes(); // 1 + 2 + 4 + 1 + 1 bytes
                                        // Byte by byte: every chunk sent is whole characters.
        for b in text {
            out.push(&mut s, std::slice::from_ref(b));
        }
        out.finish(&mut s);
        let (kept, truncated) = out.into_text();
        assert_eq!(kept, "aé😀");
        assert!(truncated);
        let mut chunks = Vec::new();
        while let Ok(RunEvent::Output { text, .. }) = rx.try_recv() {
            chunks.push(text);
        }
        assert_eq!(chunks, ["a", "é", "😀"]);
    }

    #[test]
    fn output_cut_mid_character_is_lossy_not_invalid() {
        let (tx, _rx) = mpsc::channel(100);
        let out = Output::new(0, 2, tx);
        let mut s = out.stream(OutputStream::Body);
        assert!(!out.push(&mut s, "a😀".as_bytes()));
        out.finish(&mut s);
        assert_eq!(out.into_text(), ("a\u{fffd}".to_owned(), true));
    }

    #[test]
    fn tables_look_like_psql() {
        let cases = [
            (
                SqlOutput {
                    columns: vec!["pid".into(), "state".into()],
                    rows: vec![
                        vec![Some("42".into()), None],
                        vec![Some("7".into()), Some("a\nb".into())],
                    ],
                    row_count: 2,
                    command_tag: "SELECT 2".into(),
                },
                "pid | state\n----+------\n42  | NULL\n7   | a\\nb\n(2 rows)\n",
            ),
            (
                SqlOutput {
                    columns: vec!["n".into()],
                    rows: vec![vec![Some("1".into())]],
                    row_count: 5,
                    command_tag: "SELECT 5".into(),
                },
                "n\n-\n1\n(showing 1 of 5 rows)\n",
            ),
            (
                SqlOutput {
                    command_tag: "UPDATE 3".into(),
                    row_count: 3,
                    ..SqlOutput::default()
                },
                "UPDATE 3\n",
            ),
        ];
        for (out, expected) in cases {
            assert_eq!(table(&out), expected);
        }
    }
}
