//! The statement gate: every statement a client sends is classified with
//! PostgreSQL's grammar and decided against the session's access before any
//! byte of it reaches the upstream.
//!
//! Inspected: each Query (all its statements; one refused statement refuses
//! the whole message, none of it runs), each Parse, and the fast-path
//! FunctionCall. A FunctionCall names a function by OID only: a call of one
//! of the built-in large-object functions ([`FAST_PATH_FUNCTIONS`], fixed
//! OIDs) is decided as the `SELECT pg_catalog.name($1, ...)` it stands for,
//! so the same access rules and guardrails apply; any other OID, and any
//! call in a session whose results are filtered (masking, `max_rows`), is
//! refused (rule `fast_path`).
//!
//! **How a refusal is answered.** The gateway does not write the error to
//! the client itself: responses to earlier pipelined messages may still be
//! on their way, and the transaction must end up exactly as PostgreSQL would
//! leave it after a failed statement. Instead it sends the upstream, in the
//! refused message's place, a statement that cannot parse and carries a
//! per-session token (`airlock_refused_<nonce>_<n>`). PostgreSQL answers it
//! in order with a syntax error (aborting an explicit transaction, or
//! skipping to Sync in the extended protocol, as for any error), and the
//! upstream→client direction swaps that error for the gateway's refusal.
//! After a refused Parse the gateway drops the client's messages until Sync
//! (forwarding Flush, so a client waiting on it is answered) and forwards the
//! Sync: the client's ReadyForQuery comes from PostgreSQL and carries the
//! true transaction status. Nothing of the refused statement is forwarded.
//!
//! **Read sessions.** Every function a statement calls must be on the read
//! allowlist or, by the resource's catalog, a user-defined one
//! ([`airlock_sql::functions`]). A statement that may run code the gateway
//! cannot see into (a user function, or an operator, cast, view or
//! row-level security policy that calls one, `set_config` with arguments
//! that are not constants, FETCH or EXECUTE of something prepared earlier) is
//! *opaque*: it must end its Query or its pipeline (Sync), since PostgreSQL
//! reports what such code changed only before the next ReadyForQuery. And
//! after each Query and each Sync the gate forwards nothing more until that
//! ReadyForQuery has come back: the watch on ParameterStatus
//! ([`crate::parameters`]) always acts before the client's next statement reaches
//! the server.
//!
//! **One write per read.** The gate handles the messages of one client read
//! into `out`, queuing their records in the [`SessionLog`] and keeping a
//! journal of what it did ([`Batch`]). [`Gate::commit`], called by the relay
//! right before `out` goes upstream, writes all the records in one append and
//! only then tells the upstream→client side what answers to expect. If that
//! write fails, `out` is rebuilt from the journal: each statement and Bind of
//! the read is refused with the audit error (as if it had failed alone), and
//! nothing whose record was lost is forwarded.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use airlock_config::Access;
use airlock_pgwire::messages::tag::frontend as ftag;
use airlock_pgwire::sqlstate;
use airlock_pgwire::Frame;
use airlock_sql::mask::ColumnPattern;
use airlock_sql::{
    Class, Classifier, FunctionCatalog, FunctionCheck, Guardrails, Prepared, Rule, Statement,
    Verdict, Violation,
};

use crate::audit::{Protocol, SessionLog};
use crate::completion::{Completions, Names, Track};
use crate::error::UserFacingError;
use crate::metrics::{ProxyMetrics, RefusalLabels};
use crate::results::{Expect, Expectations};

const TOKEN_PREFIX: &[u8] = b"airlock_refused_";
/// What a Parse may carry beyond its query text: a statement name and up
/// to 65535 parameter type OIDs (4 bytes each).
const PARSE_ALLOWANCE: usize = 320 * 1024;
/// Refusals waiting for their error from the upstream. More than this
/// outstanding means the upstream skipped some (an earlier error in the same
/// pipeline): the oldest are forgotten.
const MAX_PENDING: usize = 256;

/// Refusals on their way through the upstream, shared by the two directions
/// of one session.
#[derive(Default)]
pub struct Substitutions {
    pending: Mutex<VecDeque<(Vec<u8>, Bytes)>>,
    count: AtomicUsize,
}

impl Substitutions {
    fn push(&self, token: Vec<u8>, response: Bytes) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= MAX_PENDING {
            p.pop_front();
        }
        p.push_back((token, response));
        self.count.store(p.len(), Ordering::Release);
    }

    /// Takes back a refusal not sent after all.
    fn forget(&self, token: &[u8]) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|(t, _)| t != token);
        self.count.store(p.len(), Ordering::Release);
    }

    /// Whether any refusal is outstanding (cheap; checked per ErrorResponse).
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// The refusal to send instead of this upstream ErrorResponse body, if
    /// it is the error a refusal provoked.
    pub fn take_for(&self, error_body: &[u8]) -> Option<Bytes> {
        let at = find(error_body, TOKEN_PREFIX)?;
        let rest = &error_body[at..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .unwrap_or(rest.len());
        let token = &rest[..end];
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let i = p.iter().position(|(t, _)| t == token)?;
        let (_, response) = p.remove(i)?;
        // Refusals queued before this one were skipped by the upstream.
        p.drain(..i);
        self.count.store(p.len(), Ordering::Release);
        Some(response)
    }
}

/// What a read session is told when strict masking refuses its statement.
fn masked_use_refusal(u: &airlock_sql::MaskedUse, resource: &str) -> UserFacingError {
    UserFacingError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("Airlock refused the statement on \"{resource}\": {u}"),
    )
    .detail(
        "masking is strict on this resource: a masked column may only be selected as a plain \
         output column of the outermost query, where its values are masked; used anywhere else \
         (an expression, a condition, an ordering, a subquery, a whole row) its value could come \
         back unmasked",
    )
    .hint("select the column by name in the outermost SELECT list and filter, order or join on other columns; if you need the values, request access for a role that sees them unmasked")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the gate produced since the last [`Gate::commit`]: the journal of
/// one client read, kept until its records are written.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    /// Answers the upstream→client side is told to expect at commit, in
    /// the order the messages go upstream.
    tracks: Vec<Track>,
    expects: Vec<Expect>,
}

/// One handled message: where its output lies in `out` and in the queues
/// of answers, and what it was.
struct Entry {
    out: std::ops::Range<usize>,
    tracks: std::ops::Range<usize>,
    expects: std::ops::Range<usize>,
    kind: Kind,
}

enum Kind {
    /// Forwarded as the client sent it (its type), with no record of its own.
    Forward(u8),
    /// An allowed Query, its record in the batch.
    Query,
    /// An allowed Parse of the statement with this name, its record in the
    /// batch.
    Parse(Bytes),
    /// A Bind, its record in the batch.
    Bind,
    /// A statement the gate refused: its provoked message carries token
    /// number `seq`.
    Refused { seq: u64, how: Provoke },
}

/// Where the next entry starts.
struct Mark {
    out: usize,
    tracks: usize,
    expects: usize,
}

/// One session's gate.
pub struct Gate {
    classifier: Classifier,
    access: Access,
    resource: String,
    metrics: Arc<ProxyMetrics>,
    subs: Arc<Substitutions>,
    nonce: String,
    seq: u64,
    /// After a refused Parse: drop everything until Sync.
    discarding: bool,
    rails: Guardrails,
    /// Masking applies to this session.
    masking: bool,
    /// Strict masking (read sessions): the masked column patterns and the
    /// relations (lower case) that carry such columns.
    strict_masking: Option<(Vec<ColumnPattern>, Arc<HashSet<String>>)>,
    /// Shared with the result filter when results are filtered.
    expect: Option<Arc<Expectations>>,
    /// True while the result filter's cancel is on its way upstream.
    paused: Option<tokio::sync::watch::Receiver<bool>>,
    /// What the upstream→client side needs to record how statements end.
    completions: Arc<Completions>,
    names: Names,
    /// Read sessions: see the module docs.
    read: Option<ReadChecks>,
    /// The read being handled, until [`Gate::commit`].
    batch: Batch,
}

/// What a read session's gate keeps beyond the rest.
struct ReadChecks {
    /// The upstream's functions.
    functions: Arc<FunctionCatalog>,
    /// ReadyForQuery messages the upstream→client side has seen.
    ready: tokio::sync::watch::Receiver<u64>,
    /// Query and Sync messages sent upstream: each is answered by exactly one
    /// ReadyForQuery (a read session never enters COPY FROM, where Sync
    /// would be ignored).
    syncs_sent: u64,
    /// Set by a Query or Sync in the batch being handled: the number of
    /// ReadyForQuery that answer it.
    barrier: Option<u64>,
    /// Forward nothing more until this many ReadyForQuery have been seen
    /// (the barrier of the last batch sent).
    awaiting: Option<u64>,
    /// Whether each prepared statement and portal is opaque; a name not
    /// here (forgotten past the bound) counts as opaque.
    statements: std::collections::HashMap<Vec<u8>, bool>,
    portals: std::collections::HashMap<Vec<u8>, bool>,
    /// The portal of an opaque Execute since the last Sync.
    opaque_in_batch: Option<Vec<u8>>,
    /// Ceilings on what read sessions may set.
    limits: ReadLimits,
}

/// Ceilings on settings in read sessions (`[gateway] read_work_mem`,
/// `read_idle_in_transaction_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub work_mem: airlock_config::ByteSize,
    pub idle_in_transaction: std::time::Duration,
}

impl ReadLimits {
    pub fn of(gateway: &airlock_config::Gateway) -> ReadLimits {
        ReadLimits {
            work_mem: gateway.read_work_mem,
            idle_in_transaction: gateway.read_idle_in_transaction_timeout,
        }
    }

    /// Whether a read session may give `name` the `value`; `Err` says why
    /// not. Settings without a ceiling are decided elsewhere.
    pub fn check(
        &self,
        name: &str,
        value: &airlock_sql::settings::SettingValue,
    ) -> Result<(), String> {
        use airlock_sql::settings::SettingValue as V;
        let cap_bytes = self.work_mem.0 as f64;
        let what = match name {
            "work_mem" | "maintenance_work_mem" | "temp_buffers" => {
                let unit_kb = if name == "temp_buffers" { 8.0 } else { 1.0 };
                let limit = format!("{}", airlock_config::ByteSize(self.work_mem.0));
                match value {
                    V::Default => return Ok(()),
                    V::Const(v) => match pg_memory_bytes(v, unit_kb) {
                        Some(b) if b <= cap_bytes => return Ok(()),
                        _ => format!("{name} up to {limit} (read_work_mem in [gateway])"),
                    },
                    V::Unknown => format!("{name} only to a constant up to {limit}"),
                }
            }
            "hash_mem_multiplier" => {
                let cap = airlock_config::Gateway::READ_HASH_MEM_MULTIPLIER;
                match value {
                    V::Default => return Ok(()),
                    V::Const(v) => match v.trim().parse::<f64>() {
                        Ok(m) if m.is_finite() && m <= cap => return Ok(()),
                        _ => format!("hash_mem_multiplier up to {cap}"),
                    },
                    V::Unknown => format!("hash_mem_multiplier only to a constant up to {cap}"),
                }
            }
            "idle_in_transaction_session_timeout" => {
                let cap = self.idle_in_transaction;
                let limit = airlock_config::format_duration(cap);
                match value {
                    // RESET returns to the gateway's startup value.
                    V::Default => return Ok(()),
                    V::Const(v) => match pg_duration_ms(v) {
                        Some(ms) if ms > 0.0 && ms <= cap.as_millis() as f64 => return Ok(()),
                        _ => format!("idle_in_transaction_session_timeout between 1ms and {limit} (read_idle_in_transaction_timeout in [gateway]; an idle transaction holds back migrations and vacuum)"),
                    },
                    V::Unknown => format!("idle_in_transaction_session_timeout only to a constant up to {limit}"),
                }
            }
            _ => return Ok(()),
        };
        Err(what)
    }
}

/// A setting's value split as PostgreSQL reads numbers with units: the
/// number and what follows it (the unit, possibly empty).
fn number_and_unit(value: &str) -> Option<(f64, &str)> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 = number.parse().ok()?;
    n.is_finite().then_some((n, unit.trim()))
}

/// A memory setting's value in bytes, as PostgreSQL reads it: a number
/// with an optional unit (`B`, `kB`, `MB`, `GB`, `TB`, case-sensitive);
/// without one, in the setting's own unit (`unit_kb` kilobytes).
fn pg_memory_bytes(value: &str, unit_kb: f64) -> Option<f64> {
    let (n, unit) = number_and_unit(value)?;
    let factor = match unit {
        "" => unit_kb * 1024.0,
        "B" => 1.0,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (n >= 0.0).then_some(n * factor)
}

/// A time setting's value in milliseconds, as PostgreSQL reads it: a
/// number with an optional unit (`us`, `ms`, `s`, `min`, `h`, `d`);
/// without one, milliseconds.
fn pg_duration_ms(value: &str) -> Option<f64> {
    let (n, unit) = number_and_unit(value)?;
    let factor = match unit {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(n * factor)
}

/// Names kept per session, at most (as for [`Names`]).
const MAX_OPAQUE_NAMES: usize = 10_000;

fn remember(map: &mut std::collections::HashMap<Vec<u8>, bool>, name: &[u8], opaque: bool) {
    // Clients reuse their names (the unnamed ones above all): no new key then.
    if let Some(known) = map.get_mut(name) {
        *known = opaque;
        return;
    }
    if map.len() >= MAX_OPAQUE_NAMES {
        map.clear();
    }
    map.insert(name.to_vec(), opaque);
}

/// A name-terminated field at the start of `body`.
fn first_name(body: &[u8]) -> &[u8] {
    body.split(|&b| b == 0).next().unwrap_or(b"")
}

impl Gate {
    pub fn new(
        classifier: Classifier,
        access: Access,
        resource: String,
        metrics: Arc<ProxyMetrics>,
    ) -> Gate {
        Gate {
            classifier,
            access,
            resource,
            metrics,
            subs: Arc::new(Substitutions::default()),
            nonce: format!("{:016x}", rand::random::<u64>()),
            seq: 0,
            discarding: false,
            rails: Guardrails::default(),
            masking: false,
            strict_masking: None,
            expect: None,
            paused: None,
            completions: Arc::new(Completions::default()),
            names: Names::default(),
            read: None,
            batch: Batch::default(),
        }
    }

    /// A read session's checks: `functions` is the upstream's catalog,
    /// `ready` counts the ReadyForQuery messages the upstream sent.
    pub fn with_read_checks(
        mut self,
        functions: Arc<FunctionCatalog>,
        ready: tokio::sync::watch::Receiver<u64>,
        limits: ReadLimits,
    ) -> Gate {
        self.read = Some(ReadChecks {
            functions,
            ready,
            syncs_sent: 0,
            barrier: None,
            awaiting: None,
            statements: Default::default(),
            portals: Default::default(),
            opaque_in_batch: None,
            limits,
        });
        self
    }

    /// Whether the last message must be answered before anything more is
    /// sent: the relay then sends what it has, and [`Gate::wait_answered`]
    /// holds back whatever comes next.
    pub fn at_barrier(&self) -> bool {
        self.read.as_ref().is_some_and(|r| r.barrier.is_some())
    }

    /// In a read session, waits until the last Query or Sync sent has been
    /// answered: its ReadyForQuery (and every ParameterStatus before it)
    /// seen by the upstream→client side. Returns at once if that side has
    /// ended. The relay calls it before it writes anything more upstream,
    /// and [`Gate::commit`] writes no record before it: the wait usually
    /// costs nothing, since a client sends its next query after the answer.
    pub async fn wait_answered(&mut self) {
        if let Some(r) = self.read.as_mut() {
            if let Some(n) = r.awaiting.take() {
                let _ = r.ready.wait_for(|seen| *seen >= n).await;
            }
        }
    }

    /// A Query or Sync went upstream.
    fn sent_sync(&mut self) {
        if let Some(r) = self.read.as_mut() {
            r.syncs_sent += 1;
            r.barrier = Some(r.syncs_sent);
            r.opaque_in_batch = None;
        }
    }

    /// A Query counted by [`Gate::sent_sync`] will not go upstream after all.
    fn unsent_sync(&mut self) {
        if let Some(r) = self.read.as_mut() {
            r.syncs_sent -= 1;
            r.barrier = r.barrier.map(|b| b.min(r.syncs_sent));
        }
    }

    /// Enforces `rails` on every statement.
    pub fn with_guardrails(mut self, rails: Guardrails) -> Gate {
        self.rails = rails;
        self
    }

    /// Results are filtered (masking, `max_rows`): the gate tells the
    /// filter, through `expect`, what the upstream will answer; with
    /// `masking` it also describes each portal before its Execute and
    /// refuses COPY to the client (its rows carry no column names).
    pub fn with_results(
        mut self,
        expect: Arc<Expectations>,
        masking: bool,
        paused: tokio::sync::watch::Receiver<bool>,
    ) -> Gate {
        self.expect = Some(expect);
        self.masking = masking;
        self.paused = Some(paused);
        self
    }

    /// Strict masking: a statement may use a column matching `patterns` only
    /// as a plain output column of its outermost query, and may not reach
    /// the columns of `relations` without naming them
    /// ([`airlock_sql::columns`]).
    pub fn with_strict_masking(
        mut self,
        patterns: Vec<ColumnPattern>,
        relations: Arc<HashSet<String>>,
    ) -> Gate {
        self.strict_masking = Some((patterns, relations));
        self
    }

    /// Waits while a cancel of a cut result is on its way: nothing new may
    /// reach the upstream before the cancel has, or the cancel could hit it.
    pub async fn unpaused(&mut self) {
        if let Some(rx) = self.paused.as_mut() {
            // An error means the sender is gone: nothing to wait for.
            let _ = rx.wait_for(|p| !*p).await;
        }
    }

    pub fn substitutions(&self) -> Arc<Substitutions> {
        self.subs.clone()
    }

    /// The queue the upstream→client side matches answers against.
    pub fn completions(&self) -> Arc<Completions> {
        self.completions.clone()
    }

    /// The longest Query or Parse (header included) the relay hands the
    /// gate whole: the statement limit plus room for a Parse's name and
    /// parameter types. Longer ones are read through without being held and
    /// refused ([`Gate::refuse_oversized`]).
    pub fn oversized_limit(&self) -> usize {
        self.classifier
            .options()
            .max_statement_bytes
            .saturating_add(5 + PARSE_ALLOWANCE)
    }

    /// Refuses a Query or Parse longer than [`Gate::oversized_limit`], which
    /// the relay read through without holding it: the audit record keeps
    /// the start of its text, its length and its SHA-256. Answered like any
    /// refusal, in order.
    pub fn refuse_oversized(
        &mut self,
        tag: u8,
        text: &crate::relay::OversizedText,
        out: &mut BytesMut,
        log: &mut SessionLog,
    ) {
        if self.discarding {
            // Dropped until Sync, like anything else after a refused Parse.
            return;
        }
        let mark = self.mark(out);
        let verdict = Verdict::refused(
            Rule::TooLong,
            format!(
                "the statement is {} bytes; the gateway's limit is {} bytes",
                text.len,
                self.classifier.options().max_statement_bytes
            ),
        );
        let e = refusal(&verdict, self.access, &self.resource);
        let rule = verdict.rule().as_str();
        let protocol = if tag == ftag::QUERY {
            Protocol::Simple
        } else {
            Protocol::Extended
        };
        log.statement_cut(
            protocol,
            crate::audit::Text::Cut {
                prefix: &text.prefix,
                len: text.len,
                sha256: text.sha256,
            },
            &verdict,
            Some((rule, e.code)),
        );
        let kind = if tag == ftag::QUERY {
            self.refuse(rule, e, Provoke::Query, out)
        } else {
            self.names.parsed(&text.name, 0);
            self.discarding = true;
            self.refuse(rule, e, Provoke::Parse, out)
        };
        self.journal(mark, out, kind);
    }

    /// Whether the gate must see messages of this type whole.
    pub fn inspects(&self, tag: u8) -> bool {
        self.discarding
            || matches!(tag, ftag::QUERY | ftag::PARSE | ftag::FUNCTION_CALL)
            || (self.read.is_some()
                && matches!(tag, ftag::SYNC | ftag::BIND | ftag::EXECUTE | ftag::CLOSE))
            || ((crate::audit::RECORDS || self.expect.is_some())
                && matches!(tag, ftag::EXECUTE | ftag::DESCRIBE | ftag::SYNC))
            || (crate::audit::RECORDS && matches!(tag, ftag::BIND | ftag::CLOSE))
    }

    fn track(&mut self, t: Track) {
        if crate::audit::RECORDS {
            self.batch.tracks.push(t);
        }
    }

    fn expect(&mut self, e: Expect) {
        if self.expect.is_some() {
            self.batch.expects.push(e);
        }
    }

    fn mark(&self, out: &BytesMut) -> Mark {
        Mark {
            out: out.len(),
            tracks: self.batch.tracks.len(),
            expects: self.batch.expects.len(),
        }
    }

    /// Notes in the batch's journal what the message begun at `mark` became.
    fn journal(&mut self, mark: Mark, out: &BytesMut, kind: Kind) {
        let b = &mut self.batch;
        b.entries.push(Entry {
            out: mark.out..out.len(),
            tracks: mark.tracks..b.tracks.len(),
            expects: mark.expects..b.expects.len(),
            kind,
        });
    }

    /// Handles one whole inspected message (header included): appends to
    /// `out` what goes upstream in its place, and queues in `log` the records
    /// that [`Gate::commit`] writes before any of it is sent.
    pub async fn handle(&mut self, msg: Bytes, out: &mut BytesMut, log: &mut SessionLog) {
        let mark = self.mark(out);
        if let Some(kind) = self.handle_message(msg, out, log).await {
            self.journal(mark, out, kind);
        }
    }

    /// [`Gate::handle`]: what the message became, `None` when it was dropped.
    async fn handle_message(
        &mut self,
        msg: Bytes,
        out: &mut BytesMut,
        log: &mut SessionLog,
    ) -> Option<Kind> {
        let tag = msg[0];
        let body = &msg[5..];
        let at = std::time::Instant::now();
        if self.discarding {
            match tag {
                ftag::SYNC => {
                    self.discarding = false;
                    self.expect(Expect::Sync);
                    self.track(Track::Sync);
                    out.extend_from_slice(&msg);
                    self.sent_sync();
                }
                ftag::FLUSH => out.extend_from_slice(&msg),
                _ => return None,
            }
            return Some(Kind::Forward(tag));
        }
        let kind = match tag {
            ftag::QUERY => {
                let text = body.strip_suffix(&[0]).unwrap_or(body);
                self.query_like(Protocol::Simple, text, &msg, at, out, log)
                    .await
            }
            ftag::PARSE => {
                let name_len = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                let name = &body[..name_len];
                let text = parse_query_text(body);
                let verdict = self.classify(text).await;
                let decision = self
                    .pipelined_after_opaque()
                    .and_then(|()| self.decide(&verdict));
                let refused = decision.as_ref().err().map(|(e, label)| (*label, e.code));
                let n = log.statement(
                    Protocol::Extended,
                    text,
                    &parse_param_types(body),
                    &verdict,
                    refused,
                );
                match decision {
                    Ok(opaque) => {
                        self.names.parsed(name, n);
                        if let Some(r) = self.read.as_mut() {
                            remember(&mut r.statements, name, opaque);
                        }
                        self.track(Track::Parse { n, at });
                        out.extend_from_slice(&msg);
                        Kind::Parse(msg.slice(5..5 + name_len))
                    }
                    Err((e, label)) => {
                        self.names.parsed(name, 0);
                        self.discarding = true;
                        self.refuse(label, e, Provoke::Parse, out)
                    }
                }
            }
            ftag::FUNCTION_CALL => {
                let oid = body
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                // A call of a known built-in is decided as the SELECT that
                // calls it (same classifier, access, guardrails). Not when
                // results are filtered: its answer carries no columns, so
                // masking and max_rows could not see it.
                let known = fast_path_function(oid).filter(|_| self.expect.is_none());
                let Some((name, arity)) = known else {
                    return Some(self.refuse_fast_path(oid, out, log));
                };
                let args = (1..=arity)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let text = format!(
                    "SELECT pg_catalog.{name}({args}) -- fast-path function call, oid {oid}"
                );
                // Answered like a Query: a result (here a
                // FunctionCallResponse) or an error, then ReadyForQuery.
                self.query_like(Protocol::FastPath, text.as_bytes(), &msg, at, out, log)
                    .await
            }
            ftag::BIND => {
                let n = self.names.bound(body);
                log.bind(n, body);
                if let Some(r) = self.read.as_mut() {
                    let mut parts = body.splitn(3, |&b| b == 0);
                    let (portal, stmt) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
                    let opaque = r.statements.get(stmt).copied().unwrap_or(true);
                    remember(&mut r.portals, portal, opaque);
                }
                out.extend_from_slice(&msg);
                Kind::Bind
            }
            ftag::CLOSE => {
                self.names.closed(body);
                out.extend_from_slice(&msg);
                Kind::Forward(tag)
            }
            ftag::EXECUTE => {
                let portal = first_name(body);
                if let Some(r) = self.read.as_mut() {
                    // Continuing the same portal runs no new statement.
                    if r.opaque_in_batch.as_deref().is_some_and(|p| p != portal) {
                        let (e, label) = pipelined_refusal(&self.resource);
                        tracing::info!(resource = %self.resource, "refused an Execute pipelined after a user-function call");
                        self.discarding = true;
                        return Some(self.refuse(label, e, Provoke::Parse, out));
                    }
                    if r.portals.get(portal).copied().unwrap_or(true) {
                        r.opaque_in_batch = Some(portal.to_vec());
                    }
                }
                let (n, formats) = self.names.executed(body);
                if self.masking {
                    // Describe the portal right before it runs: the result
                    // filter takes the columns from the answer and swallows it.
                    let portal = body
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(body, |n| &body[..n]);
                    let describe = airlock_pgwire::messages::Describe {
                        kind: b'P',
                        name: Bytes::copy_from_slice(portal),
                    };
                    Frame::new(ftag::DESCRIBE, describe.encode_body()).encode(out);
                    self.expect(Expect::OurDescribe);
                    self.track(Track::Describe { n });
                }
                self.track(Track::Execute { n, at, formats });
                out.extend_from_slice(&msg);
                Kind::Forward(tag)
            }
            ftag::DESCRIBE => {
                self.expect(Expect::Describe);
                let n = self.names.described(body);
                self.track(Track::Describe { n });
                out.extend_from_slice(&msg);
                Kind::Forward(tag)
            }
            ftag::SYNC => {
                self.expect(Expect::Sync);
                self.track(Track::Sync);
                out.extend_from_slice(&msg);
                self.sent_sync();
                Kind::Forward(tag)
            }
            _ => {
                out.extend_from_slice(&msg);
                Kind::Forward(tag)
            }
        };
        Some(kind)
    }

    /// Writes the records of the read in `out` (one append), then tells the
    /// upstream→client side what answers to expect; the relay sends `out`
    /// next. In a read session the relay first waits for the answer to the
    /// last batch ([`Gate::wait_answered`]). If the records cannot be written, `out` is rebuilt first so
    /// that nothing whose record was lost goes upstream: each statement and
    /// Bind in it is refused with the audit error, in order, and after a
    /// refused Parse or Bind the rest up to Sync is dropped, as after any
    /// refused Parse.
    pub fn commit(&mut self, out: &mut BytesMut, log: &mut SessionLog) {
        match log.flush() {
            Ok(true) => {
                self.metrics.audit_writes.inc();
            }
            Ok(false) => {}
            Err(e) => self.refuse_batch(&e, out),
        }
        if let Some(r) = self.read.as_mut() {
            // What goes next waits for this batch's answer.
            if let Some(n) = r.barrier.take() {
                r.awaiting = Some(n);
            }
        }
        let b = &mut self.batch;
        b.entries.clear();
        if !b.tracks.is_empty() {
            self.completions.push_all(b.tracks.drain(..));
        }
        if let Some(q) = &self.expect {
            if !b.expects.is_empty() {
                q.push_all(b.expects.drain(..));
            }
        }
    }

    /// [`Gate::commit`] when the write failed: see there.
    fn refuse_batch(&mut self, error: &airlock_audit::AuditError, out: &mut BytesMut) {
        tracing::warn!(resource = %self.resource, error = %error, "the audit log could not record a client's statements; they are refused");
        let e = crate::audit::refusal(error, &self.resource);
        let mut response = BytesMut::new();
        airlock_pgwire::BackendMessage::ErrorResponse(e.to_response()).encode(&mut response);
        let response = response.freeze();
        let old = out.split().freeze();
        let Batch {
            entries,
            tracks,
            expects,
        } = std::mem::take(&mut self.batch);
        // After a refused Parse or Bind the upstream skips to Sync: so does
        // the gate.
        let mut skipping = false;
        let mut at = 0;
        for entry in entries {
            // Between entries: messages the gate does not inspect (Flush,
            // COPY data), which go as they came.
            out.extend_from_slice(&old[at..entry.out.start]);
            at = entry.out.end;
            let keep = match entry.kind {
                Kind::Forward(tag) => {
                    if tag == ftag::SYNC {
                        skipping = false;
                    }
                    !skipping || tag == ftag::SYNC || tag == ftag::FLUSH
                }
                Kind::Query => {
                    self.unsent_sync();
                    if !skipping {
                        self.refuse("audit_failed", e.clone(), Provoke::Query, out);
                    }
                    false
                }
                Kind::Parse(name) => {
                    self.names.parsed(&name, 0);
                    if !skipping {
                        self.refuse("audit_failed", e.clone(), Provoke::Parse, out);
                        skipping = true;
                    }
                    false
                }
                Kind::Bind => {
                    if !skipping {
                        self.refuse("audit_failed", e.clone(), Provoke::Parse, out);
                        skipping = true;
                    }
                    false
                }
                Kind::Refused { seq, how } => {
                    // Refused anyway; the client learns that the audit log
                    // failed, as it would have without the policy's refusal.
                    // Queued again: the upstream answers the refusals in
                    // the order of the rebuilt batch.
                    let token = self.token(seq).into_bytes();
                    self.subs.forget(&token);
                    if skipping {
                        if how == Provoke::Query {
                            self.unsent_sync();
                        }
                        false
                    } else {
                        self.subs.push(token, response.clone());
                        skipping = how == Provoke::Parse;
                        true
                    }
                }
            };
            if keep {
                out.extend_from_slice(&old[entry.out]);
                self.batch.tracks.extend_from_slice(&tracks[entry.tracks]);
                self.batch
                    .expects
                    .extend_from_slice(&expects[entry.expects]);
            }
        }
        out.extend_from_slice(&old[at..]);
        if skipping {
            self.discarding = true;
        }
        // The journal of the rebuilt batch is not needed: it has no records.
        self.batch.entries.clear();
    }

    /// In a read session, a statement parsed after an opaque Execute in the
    /// same pipeline is refused: PostgreSQL would parse and run it before
    /// reporting what the opaque one changed.
    fn pipelined_after_opaque(&self) -> Result<(), (UserFacingError, &'static str)> {
        match &self.read {
            Some(r) if r.opaque_in_batch.is_some() => Err(pipelined_refusal(&self.resource)),
            _ => Ok(()),
        }
    }

    /// Under read access, the functions each statement calls, by the
    /// upstream's catalog. `Ok(true)`: the text is opaque (see the module
    /// docs); it may only be the last statement of its text.
    fn check_reads(&self, verdict: &Verdict) -> Result<bool, (UserFacingError, &'static str)> {
        let Some(r) = &self.read else {
            return Ok(false);
        };
        let mut opaque_before_last = false;
        let mut opaque = false;
        for s in &verdict.statements {
            for (name, value) in &s.values {
                if let Err(allowed) = r.limits.check(name, value) {
                    return Err((
                        UserFacingError::error(
                            sqlstate::INSUFFICIENT_PRIVILEGE,
                            format!("read sessions on \"{}\" may set {allowed}", self.resource),
                        )
                        .hint("choose a smaller value, or ask the gateway's operator"),
                        "read_limit",
                    ));
                }
            }
            opaque_before_last |= opaque;
            opaque = match r.functions.check_statement(s) {
                FunctionCheck::Transparent => runs_unseen_code(s),
                FunctionCheck::Opaque => true,
                FunctionCheck::Refused(rule, call) => {
                    return Err((function_refusal(rule, &call, &self.resource), rule.as_str()));
                }
            };
        }
        if opaque_before_last {
            return Err(pipelined_refusal(&self.resource));
        }
        Ok(opaque)
    }

    /// Access, then the read checks, then guardrails, then what masking
    /// cannot cover. The label names the rule for metrics. `Ok(true)`: the
    /// text is opaque (read sessions only).
    fn decide(&self, verdict: &Verdict) -> Result<bool, (UserFacingError, &'static str)> {
        decide(verdict, self.access, &self.resource).map_err(|e| (e, verdict.rule().as_str()))?;
        let opaque = self.check_reads(verdict)?;
        if let Err(v) = self.rails.check(verdict) {
            return Err(guardrail_refusal(&v, &self.resource));
        }
        if self.masking
            && verdict
                .statements
                .iter()
                .any(|s| s.rule == Rule::CopyToClient || s.also.contains(&Rule::CopyToClient))
        {
            return Err((
                UserFacingError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "COPY to the client is not available on \"{}\" while masking applies to your session",
                        self.resource
                    ),
                )
                .detail("COPY output carries no column names, so Airlock could not mask it")
                .hint("use SELECT: masked values are replaced in query results"),
                "masking_copy",
            ));
        }
        if let Some((patterns, relations)) = &self.strict_masking {
            for s in &verdict.statements {
                let masked_relation = |name: &str| relations.contains(&name.to_lowercase());
                if let Some(u) = s.columns.strict_violation(patterns, masked_relation) {
                    return Err((masked_use_refusal(&u, &self.resource), "masked_column_use"));
                }
            }
        }
        Ok(opaque)
    }

    async fn classify(&self, text: &[u8]) -> Arc<Verdict> {
        // Bytes that are not UTF-8 come from a single-byte or EUC client
        // encoding (the unsafe multi-byte ones are refused at login and by
        // SET): none of their bytes above 0x7F is SQL syntax, so replacing
        // them keeps the statement's structure.
        let text = String::from_utf8_lossy(text);
        self.classifier.classify(&text).await
    }

    /// A message answered like a Query (a Query; an allowed fast-path call,
    /// whose arguments are recorded too): classified as `text`, decided,
    /// recorded, then forwarded or refused in its place.
    async fn query_like(
        &mut self,
        protocol: Protocol,
        text: &[u8],
        msg: &[u8],
        at: std::time::Instant,
        out: &mut BytesMut,
        log: &mut SessionLog,
    ) -> Kind {
        let verdict = self.classify(text).await;
        let decision = self.decide(&verdict);
        let refused = decision.as_ref().err().map(|(e, label)| (*label, e.code));
        let n = log.statement(protocol, text, &[], &verdict, refused);
        if protocol == Protocol::FastPath {
            log.call_args(n, &msg[5..]);
        }
        match decision {
            Ok(_) => {
                self.expect(Expect::Query);
                self.track(Track::Query { n, at });
                out.extend_from_slice(msg);
                self.sent_sync();
                Kind::Query
            }
            Err((e, label)) => self.refuse(label, e, Provoke::Query, out),
        }
    }

    /// Refuses a fast-path FunctionCall of a function the gateway cannot
    /// name (or in a session whose results are filtered).
    fn refuse_fast_path(&mut self, oid: u32, out: &mut BytesMut, log: &mut SessionLog) -> Kind {
        let verdict = Verdict::refused(Rule::FastPath, format!("function oid {oid}"));
        let e = refusal(&verdict, self.access, &self.resource);
        let text = format!("-- fast-path function call, oid {oid}");
        let rule = verdict.rule().as_str();
        log.statement(
            Protocol::FastPath,
            text.as_bytes(),
            &[],
            &verdict,
            Some((rule, e.code)),
        );
        self.refuse(rule, e, Provoke::Query, out)
    }

    /// The token a refusal's provoked message carries.
    fn token(&self, seq: u64) -> String {
        format!("airlock_refused_{}_{}", self.nonce, seq)
    }

    fn refuse(
        &mut self,
        rule: &'static str,
        e: UserFacingError,
        how: Provoke,
        out: &mut BytesMut,
    ) -> Kind {
        self.seq += 1;
        tracing::info!(
            resource = %self.resource,
            rule,
            code = e.code,
            "statement refused"
        );
        self.metrics
            .refused
            .get_or_create(&RefusalLabels {
                resource: self.resource.clone(),
                rule,
            })
            .inc();
        let token = self.token(self.seq);
        let mut response = BytesMut::new();
        airlock_pgwire::BackendMessage::ErrorResponse(e.to_response()).encode(&mut response);
        self.subs
            .push(token.clone().into_bytes(), response.freeze());
        let provoked = match how {
            Provoke::Query => airlock_pgwire::messages::Query::new(&token).encode_body(),
            Provoke::Parse => airlock_pgwire::messages::Parse {
                name: Bytes::new(),
                query: Bytes::from(token),
                param_types: Vec::new(),
            }
            .encode_body(),
        };
        // The provoked message's answer is the refusal, not a completion.
        let at = std::time::Instant::now();
        let tag = match how {
            Provoke::Query => {
                self.expect(Expect::Query);
                self.track(Track::Query { n: 0, at });
                self.sent_sync();
                ftag::QUERY
            }
            Provoke::Parse => {
                self.track(Track::Parse { n: 0, at });
                ftag::PARSE
            }
        };
        Frame::new(tag, provoked).encode(out);
        Kind::Refused { seq: self.seq, how }
    }
}

/// The built-in functions a fast-path FunctionCall may name, by OID, with
/// their number of arguments: libpq's large-object interface (`lo_open`,
/// `lo_read`, `lo_write`, ... in the client library, which psycopg2's
/// `lobject` and other drivers use). Built-in OIDs are fixed in
/// PostgreSQL's catalog (`pg_proc.dat`) and never reused by objects a user
/// creates (those start at 16384); `tests/drivers.rs` checks this table
/// against a real server's `pg_proc`. The server-side `lo_import` and
/// `lo_export`, which touch the server's files, are deliberately absent.
pub const FAST_PATH_FUNCTIONS: &[(u32, &str, usize)] = &[
    (715, "lo_create", 1),
    (952, "lo_open", 2),
    (953, "lo_close", 1),
    (954, "loread", 2),
    (955, "lowrite", 2),
    (956, "lo_lseek", 3),
    (957, "lo_creat", 1),
    (958, "lo_tell", 1),
    (964, "lo_unlink", 1),
    (1004, "lo_truncate", 2),
    (3170, "lo_lseek64", 3),
    (3171, "lo_tell64", 1),
    (3172, "lo_truncate64", 2),
];

/// The name and number of arguments of the built-in function a fast-path
/// call names, when it is one the gateway decides ([`FAST_PATH_FUNCTIONS`]).
pub fn fast_path_function(oid: u32) -> Option<(&'static str, usize)> {
    FAST_PATH_FUNCTIONS
        .iter()
        .find(|(o, _, _)| *o == oid)
        .map(|(_, name, arity)| (*name, *arity))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provoke {
    Query,
    Parse,
}

/// The parameter type OIDs a Parse body declares (after the name and the
/// query); empty when there are none or the body is malformed (PostgreSQL
/// refuses it then).
fn parse_param_types(body: &[u8]) -> Vec<u32> {
    let mut fields = body.splitn(3, |&b| b == 0);
    let (Some(_), Some(_), Some(rest)) = (fields.next(), fields.next(), fields.next()) else {
        return Vec::new();
    };
    let Some(count) = rest.get(..2).map(|c| i16::from_be_bytes([c[0], c[1]])) else {
        return Vec::new();
    };
    rest[2..]
        .chunks_exact(4)
        .take(usize::try_from(count).unwrap_or(0))
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The query text of a Parse body (name, then query, NUL-terminated).
fn parse_query_text(body: &[u8]) -> &[u8] {
    body.iter()
        .position(|&b| b == 0)
        .map(|n| &body[n + 1..])
        .and_then(|rest| rest.iter().position(|&b| b == 0).map(|m| &rest[..m]))
        .unwrap_or(b"")
}

/// Whether a session with `access` may run what `verdict` describes.
pub fn decide(verdict: &Verdict, access: Access, resource: &str) -> Result<(), UserFacingError> {
    match (verdict.class(), access) {
        (Class::Read, _) | (Class::Write, Access::Write) => Ok(()),
        _ => Err(refusal(verdict, access, resource)),
    }
}

/// The error a client gets for a refused statement.
pub fn refusal(verdict: &Verdict, access: Access, resource: &str) -> UserFacingError {
    let s = verdict.deciding();
    let rule = s.rule;
    let what = match &s.detail {
        Some(d) if rule.class() != Class::Refused => format!("{}: {d}", rule.describe()),
        _ => rule.describe().to_owned(),
    };
    let several = verdict.statements.len() > 1;
    let none_ran = if several {
        " None of the statements in this query were run."
    } else {
        ""
    };
    match rule {
        Rule::SyntaxError => UserFacingError::error(
            "42601",
            format!(
                "Airlock could not parse this statement, so it was not sent: {}",
                s.detail.as_deref().unwrap_or("syntax error")
            ),
        )
        .hint("fix the statement; Airlock forwards only statements PostgreSQL's grammar accepts"),
        Rule::TooLong => UserFacingError::error(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "statement refused by Airlock: {}",
                s.detail.as_deref().unwrap_or("too long")
            ),
        )
        .hint("split it into smaller statements or send large values as parameters; the limit is max_statement_size in the gateway's [gateway] settings"),
        Rule::TooDeep => UserFacingError::error(
            "54001",
            format!(
                "statement refused by Airlock: it is nested too deeply to classify ({})",
                s.detail.as_deref().unwrap_or("too deep")
            ),
        )
        .hint("simplify the statement's nesting"),
        Rule::FastPath if access == Access::Read => read_refusal(resource, &what, rule, none_ran),
        Rule::FastPath => UserFacingError::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "Airlock refuses this fast-path function call ({})",
                s.detail.as_deref().unwrap_or("unknown function")
            ),
        )
        .detail("a fast-path call names its function by OID only; Airlock decides the built-in large-object functions, and those only in sessions without masking or max_rows")
        .hint("call the function with SELECT instead"),
        Rule::StandardConformingStrings | Rule::ClientEncoding => UserFacingError::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "statement refused by Airlock at every access level: {what} (rule {})",
                rule.as_str()
            ),
        )
        .detail("Airlock reads every statement the way PostgreSQL will; this setting would make them read differently")
        .hint("keep standard_conforming_strings on and use UTF8 (or another ASCII-safe client encoding)"),
        _ => read_refusal(resource, &what, rule, none_ran),
    }
}

/// Whether a statement runs code prepared or declared earlier (FETCH from a
/// cursor, EXECUTE of a prepared statement), which may call anything.
fn runs_unseen_code(s: &Statement) -> bool {
    s.changes_settings_opaquely
        || s.kind == "fetch"
        || matches!(s.prepared, Some(Prepared::Execute(_)))
}

/// The error for a function the read checks refused, and its rule.
fn function_refusal(rule: Rule, call: &str, resource: &str) -> UserFacingError {
    match rule {
        Rule::UnknownFunction => UserFacingError::error(
            "42883",
            format!(
                "function {call} is not in the catalog of \"{resource}\" as Airlock last read it, so it was not sent (rule unknown_function)"
            ),
        )
        .detail("read sessions may call PostgreSQL's functions on Airlock's read allowlist and the database's own user-defined functions")
        .hint(format!(
            "check the name and its schema; a function created in the last {} is known to new read sessions after that: reconnect then",
            airlock_config::format_duration(crate::catalog::FUNCTION_CATALOG_TTL)
        )),
        _ => read_refusal(resource, &format!("{}: {call}", rule.describe()), rule, ""),
    }
}

/// The error for a statement that a read session sent after an opaque one
/// in the same Query or pipeline.
fn pipelined_refusal(resource: &str) -> (UserFacingError, &'static str) {
    (
        UserFacingError::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "read access to \"{resource}\": a statement that may run user-defined code (a user function, operator or cast, a view or row-level security policy that calls one, a cursor or a prepared statement) must be the last of its query or pipeline"
            ),
        )
        .detail("Airlock checks what such a call changed in the session before the next statement reaches the database; PostgreSQL reports it only when the query or pipeline ends. Nothing after the call was run.")
        .hint("send the statements as separate queries, or end the pipeline (Sync) after the call"),
        "opaque_pipelined",
    )
}

/// The error for a statement a guardrail refused, and its metrics label.
pub fn guardrail_refusal(v: &Violation, resource: &str) -> (UserFacingError, &'static str) {
    let reviewed = format!("have it reviewed and run once: airlock exec {resource} -c \"...\"");
    match v {
        Violation::Denied { word, what } => (
            UserFacingError::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "statement refused by a guardrail on \"{resource}\": {what} is denied (deny \"{word}\")"
                ),
            )
            .detail("guardrails apply even with write access")
            .hint(reviewed),
            "guardrail_deny",
        ),
        Violation::NoWhere { kind } => (
            UserFacingError::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "statement refused by a guardrail on \"{resource}\": {} without WHERE would affect every row (require_where)",
                    kind.to_uppercase()
                ),
            )
            .hint(format!("add a WHERE clause (WHERE true if you mean every row), or {reviewed}")),
            "guardrail_require_where",
        ),
        Violation::Timeout { timeout } => (
            UserFacingError::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "statement refused by a guardrail on \"{resource}\": statement_timeout is fixed at {} for this session",
                    airlock_config::format_duration(*timeout)
                ),
            )
            .hint(format!("RESET statement_timeout returns to the guardrail's value; for a longer statement, {reviewed}")),
            "guardrail_statement_timeout",
        ),
    }
}

fn read_refusal(resource: &str, what: &str, rule: Rule, none_ran: &str) -> UserFacingError {
    UserFacingError::error(
        sqlstate::READ_ONLY_SQL_TRANSACTION,
        format!(
            "read access to \"{resource}\" cannot run this statement: {what} (rule {}).{none_ran}",
            rule.as_str()
        ),
    )
    .hint(format!(
        "to write, request write access: airlock request {resource} --access write --for 30m --reason \"...\"; \
         or have one statement reviewed: airlock exec {resource} -c \"...\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write session's gate and its log over a real audit log in `dir`.
    fn gate_and_log(dir: &std::path::Path) -> (Gate, SessionLog, airlock_audit::AuditLog) {
        let key = airlock_audit::SigningKey::load_or_create(&dir.join("key")).unwrap();
        let audit = airlock_audit::AuditLog::open(
            &dir.join("audit"),
            key,
            airlock_audit::Options::default(),
        )
        .unwrap();
        let gate = Gate::new(
            Classifier::new(airlock_sql::ClassifierOptions {
                threads: 1,
                ..Default::default()
            }),
            Access::Write,
            "orders".into(),
            Arc::new(ProxyMetrics::default()),
        );
        let log = SessionLog::new(audit.clone(), "s-test".into());
        (gate, log, audit)
    }

    fn frame(tag: u8, body: Bytes) -> Bytes {
        let mut b = BytesMut::new();
        Frame::new(tag, body).encode(&mut b);
        b.freeze()
    }

    fn parse(name: &str, query: &str) -> Bytes {
        let p = airlock_pgwire::messages::Parse {
            name: Bytes::copy_from_slice(name.as_bytes()),
            query: Bytes::copy_from_slice(query.as_bytes()),
            param_types: Vec::new(),
        };
        frame(ftag::PARSE, p.encode_body())
    }

    fn bind(statement: &str, value: &str) -> Bytes {
        let b = airlock_pgwire::messages::Bind {
            portal: Bytes::new(),
            statement: Bytes::copy_from_slice(statement.as_bytes()),
            param_formats: Vec::new(),
            params: vec![Some(Bytes::copy_from_slice(value.as_bytes()))],
            result_formats: Vec::new(),
        };
        frame(ftag::BIND, b.encode_body())
    }

    fn execute() -> Bytes {
        let e = airlock_pgwire::messages::Execute {
            portal: Bytes::new(),
            max_rows: 0,
        };
        frame(ftag::EXECUTE, e.encode_body())
    }

    fn sync() -> Bytes {
        frame(ftag::SYNC, Bytes::new())
    }

    fn query(text: &str) -> Bytes {
        frame(
            ftag::QUERY,
            airlock_pgwire::messages::Query::new(text).encode_body(),
        )
    }

    /// The messages in `out`: type and body.
    fn messages(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut all = Vec::new();
        while out.len() >= 5 {
            let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
            all.push((out[0], out[5..1 + len].to_vec()));
            out = &out[1 + len..];
        }
        assert!(out.is_empty(), "whole messages");
        all
    }

    /// The refusal token a provoked message carries.
    fn token(body: &[u8]) -> String {
        let at = find(body, TOKEN_PREFIX).expect("a provoked message");
        let t: Vec<u8> = body[at..]
            .iter()
            .copied()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .collect();
        String::from_utf8(t).unwrap()
    }

    async fn handle_all(gate: &mut Gate, log: &mut SessionLog, msgs: &[Bytes], out: &mut BytesMut) {
        for m in msgs {
            gate.handle(m.clone(), out, log).await;
        }
    }

    #[tokio::test]
    async fn a_read_with_several_statements_is_written_in_one_append() {
        let dir = tempfile::tempdir().unwrap();
        let (mut gate, mut log, audit) = gate_and_log(dir.path());
        let read = [
            parse("", "INSERT INTO t VALUES ($1)"),
            bind("", "7"),
            execute(),
            sync(),
            query("SELEC 1"),
            query("SELECT 1"),
        ];
        let mut out = BytesMut::new();
        handle_all(&mut gate, &mut log, &read, &mut out).await;
        assert_eq!(audit.written_seq(), 0, "nothing written before the commit");
        gate.commit(&mut out, &mut log);
        assert_eq!(gate.metrics.audit_writes.get(), 1);
        // Three statement records and one Bind record, in message order.
        let mut kinds = Vec::new();
        airlock_audit::read::scan(&dir.path().join("audit"), 0, |raw| {
            let e = airlock_audit::read::Entry::parse(raw.line).unwrap();
            kinds.push(match e.event {
                airlock_audit::Event::Statement(s) => format!("statement {} {}", s.n, s.decision),
                airlock_audit::Event::Bind(b) => format!("bind {}", b.n),
                other => format!("{other:?}"),
            });
            Ok(true)
        })
        .unwrap();
        assert_eq!(
            kinds,
            [
                "statement 1 allowed",
                "bind 1",
                "statement 2 refused",
                "statement 3 allowed"
            ]
        );
        // What goes upstream: the allowed messages as sent, the refused
        // one's provoked stand-in.
        let sent = messages(&out);
        let tags: Vec<u8> = sent.iter().map(|m| m.0).collect();
        assert_eq!(tags, b"PBESQQ");
        assert!(out.starts_with(&read[..4].concat()));
        assert!(token(&sent[4].1).starts_with("airlock_refused_"));
        assert_eq!(sent[5].1, b"SELECT 1\0");
    }

    #[tokio::test]
    async fn a_read_whose_records_cannot_be_written_forwards_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut gate, mut log, audit) = gate_and_log(dir.path());
        // Every append fails from now on.
        audit.close().unwrap();
        let read = [
            // An execution of a statement prepared earlier.
            bind("s1", "secret"),
            execute(),
            sync(),
            // Parse to Sync in one go.
            parse("", "INSERT INTO t VALUES ($1)"),
            bind("", "7"),
            frame(
                ftag::DESCRIBE,
                airlock_pgwire::messages::Describe {
                    kind: b'P',
                    name: Bytes::new(),
                }
                .encode_body(),
            ),
            execute(),
            sync(),
            // Refused by the gate anyway, then allowed.
            query("SELEC 1"),
            query("DELETE FROM t"),
            // A Parse whose Sync comes in a later read.
            parse("s2", "SELECT 2"),
        ];
        let mut out = BytesMut::new();
        handle_all(&mut gate, &mut log, &read, &mut out).await;
        gate.commit(&mut out, &mut log);
        assert_eq!(gate.metrics.audit_writes.get(), 0);
        let sent = messages(&out);
        let tags: Vec<u8> = sent.iter().map(|m| m.0).collect();
        assert_eq!(
            tags, b"PSPSQQP",
            "each statement refused; nothing else but Syncs"
        );
        for (tag, body) in &sent {
            if *tag == ftag::SYNC {
                continue;
            }
            // Each is answered with the audit error, in place of what
            // PostgreSQL says about the provoked message.
            let error = format!("syntax error at or near \"{}\"", token(body));
            let response = gate.subs.take_for(error.as_bytes()).expect("a refusal");
            assert!(find(&response, b"58030").is_some());
            assert!(find(&response, b"audit record could not be written").is_some());
        }
        // After the last refused Parse, the rest waits for Sync, as after
        // any refused Parse.
        let mut more = BytesMut::new();
        handle_all(
            &mut gate,
            &mut log,
            &[bind("s2", "x"), execute(), sync()],
            &mut more,
        )
        .await;
        gate.commit(&mut more, &mut log);
        assert_eq!(messages(&more), [(ftag::SYNC, Vec::new())]);
    }

    #[test]
    fn setting_values_are_read_with_postgresqls_units() {
        assert_eq!(pg_memory_bytes("64MB", 1.0), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(pg_memory_bytes("4096", 1.0), Some(4096.0 * 1024.0));
        assert_eq!(pg_memory_bytes("100", 8.0), Some(100.0 * 8.0 * 1024.0));
        assert_eq!(
            pg_memory_bytes(" 1.5 GB ", 1.0),
            Some(1.5 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(
            pg_memory_bytes("64mb", 1.0),
            None,
            "units are case-sensitive"
        );
        assert_eq!(pg_memory_bytes("-1", 1.0), None);
        assert_eq!(pg_duration_ms("30s"), Some(30_000.0));
        assert_eq!(pg_duration_ms("5min"), Some(300_000.0));
        assert_eq!(pg_duration_ms("250"), Some(250.0));
        assert_eq!(pg_duration_ms("1 fortnight"), None);
    }

    #[test]
    fn substitution_matches_its_token_and_forgets_skipped_ones() {
        let s = Substitutions::default();
        s.push(b"airlock_refused_ab_1".to_vec(), Bytes::from_static(b"one"));
        s.push(b"airlock_refused_ab_2".to_vec(), Bytes::from_static(b"two"));
        assert!(s.any());
        assert_eq!(s.take_for(b"Mcolumn x does not exist\0"), None);
        // _1 is a prefix of _12: the token must match whole.
        assert_eq!(
            s.take_for(b"syntax error at or near \"airlock_refused_ab_12\""),
            None
        );
        assert_eq!(
            s.take_for(b"Msyntax error at or near \"airlock_refused_ab_2\"\0"),
            Some(Bytes::from_static(b"two"))
        );
        assert!(!s.any(), "the skipped _1 is forgotten");
    }

    #[test]
    fn read_sessions_get_25006_naming_the_rule_and_the_way_to_write() {
        let v = airlock_sql::classify("DELETE FROM orders");
        let e = decide(&v, Access::Read, "orders").unwrap_err();
        assert_eq!(e.code, "25006");
        assert!(e.message.contains("rule delete"), "{}", e.message);
        assert!(e
            .hint
            .unwrap()
            .contains("airlock request orders --access write"));
        assert!(decide(&v, Access::Write, "orders").is_ok());
        let v = airlock_sql::classify("SELEC 1");
        assert_eq!(
            decide(&v, Access::Write, "orders").unwrap_err().code,
            "42601"
        );
        let v = airlock_sql::classify("SET standard_conforming_strings = off");
        assert_eq!(
            decide(&v, Access::Write, "orders").unwrap_err().code,
            "0A000"
        );
    }
}
