//! A session's account in the audit log: every statement is written (handed
//! to the kernel) before it is forwarded, and refused when it cannot be.
//!
//! The records of one client read (statements, Bind values, and the
//! completions waiting) are queued while the gate handles its messages and
//! written in one append by [`SessionLog::flush`], which the relay calls
//! right before it forwards that read: one encode, hash and `write(2)` per
//! read instead of one per message. When that write fails, nothing of the
//! read is forwarded and the gate refuses each of its statements
//! ([`crate::gate::Gate::commit`]).

use airlock_audit::{AuditError, AuditLog, Classified, Event, Statement};
use airlock_pgwire::sqlstate;
use airlock_sql::Verdict;

use crate::error::UserFacingError;

/// False only in the `bench-no-audit` benchmark build: statements are then
/// not recorded at all (the baseline bench/audit.sh compares against).
pub const RECORDS: bool = !cfg!(feature = "bench-no-audit");

/// How a client sent a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Simple,
    Extended,
    FastPath,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
            Protocol::FastPath => "fastpath",
        }
    }
}

/// Completion records (`statement_done`) waiting to be written with the
/// session's next records: one `write(2)` for all instead of several.
/// A session that sends nothing more has them written within
/// [`Deferred::WITHIN`] by the upstream→client side, and at its end.
#[derive(Default)]
pub struct Deferred {
    inner: std::sync::Mutex<(Vec<Event>, Option<std::time::Instant>)>,
}

impl Deferred {
    /// How long a completion record may wait for a statement to ride with.
    pub const WITHIN: std::time::Duration = std::time::Duration::from_millis(100);
    /// More than this many waiting are written at once.
    const MAX_WAITING: usize = 256;

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Event>, Option<std::time::Instant>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, e: Event) {
        let mut g = self.lock();
        g.0.push(e);
        g.1.get_or_insert_with(std::time::Instant::now);
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Vec<Event> {
        let mut g = self.lock();
        g.1 = None;
        std::mem::take(&mut g.0)
    }

    /// When what is waiting must be written.
    pub fn due(&self) -> Option<std::time::Instant> {
        let g = self.lock();
        if g.0.len() >= Self::MAX_WAITING {
            return Some(std::time::Instant::now());
        }
        g.1.map(|t| t + Self::WITHIN)
    }
}

pub struct SessionLog {
    audit: AuditLog,
    session: String,
    n: u64,
    /// The last record this session wrote: what `durable` waits for.
    last_seq: u64,
    deferred: std::sync::Arc<Deferred>,
    /// Statement and Bind records of the read being handled, in message
    /// order, waiting for [`SessionLog::flush`].
    pending: Vec<Event>,
}

/// How much of a text refused as too long its audit record keeps.
pub const CUT_TEXT_PREFIX: usize = 4096;

/// A statement text for its audit record.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    /// The whole text.
    Whole(&'a [u8]),
    /// The start of a text too long to keep, its length and SHA-256.
    Cut {
        prefix: &'a [u8],
        len: u64,
        sha256: [u8; 32],
    },
}

impl SessionLog {
    pub fn new(audit: AuditLog, session: String) -> SessionLog {
        SessionLog {
            audit,
            session,
            n: 0,
            last_seq: 0,
            deferred: std::sync::Arc::default(),
            pending: Vec::new(),
        }
    }

    /// Where completion records wait for the next statement record.
    pub fn deferred(&self) -> std::sync::Arc<Deferred> {
        self.deferred.clone()
    }

    /// Queues the record of a statement as the client sent it, with how it
    /// was classified and decided, and returns its number. `refusal` is the
    /// rule and SQLSTATE of a refusal. The record is written by
    /// [`SessionLog::flush`], before anything of the read is forwarded.
    ///
    /// A text refused as too long is recorded cut: its first
    /// [`CUT_TEXT_PREFIX`] bytes, its length and its SHA-256.
    pub fn statement(
        &mut self,
        protocol: Protocol,
        text: &[u8],
        param_types: &[u32],
        verdict: &Verdict,
        refusal: Option<(&str, &str)>,
    ) -> u64 {
        let text = if verdict.rule() == airlock_sql::Rule::TooLong {
            use sha2::Digest as _;
            Text::Cut {
                prefix: &text[..text.len().min(CUT_TEXT_PREFIX)],
                len: text.len() as u64,
                sha256: sha2::Sha256::digest(text).into(),
            }
        } else {
            Text::Whole(text)
        };
        self.record(protocol, text, param_types, verdict, refusal)
    }

    /// The record of a statement whose text was never held whole (the
    /// relay read it through, see [`crate::relay`]): its start, length and
    /// SHA-256.
    pub fn statement_cut(
        &mut self,
        protocol: Protocol,
        text: Text<'_>,
        verdict: &Verdict,
        refusal: Option<(&str, &str)>,
    ) -> u64 {
        self.record(protocol, text, &[], verdict, refusal)
    }

    fn record(
        &mut self,
        protocol: Protocol,
        text: Text<'_>,
        param_types: &[u32],
        verdict: &Verdict,
        refusal: Option<(&str, &str)>,
    ) -> u64 {
        self.n += 1;
        if !RECORDS {
            return self.n;
        }
        let mut s = Statement {
            session: self.session.clone(),
            n: self.n,
            protocol: protocol.as_str().to_owned(),
            text: None,
            text_base64: None,
            text_len: None,
            text_sha256: None,
            classified: verdict
                .statements
                .iter()
                .map(|s| Classified {
                    kind: s.kind.clone(),
                    rule: s.rule.as_str().to_owned(),
                })
                .collect(),
            decision: if refusal.is_some() {
                "refused"
            } else {
                "allowed"
            }
            .to_owned(),
            rule: match refusal {
                Some((rule, _)) => rule.to_owned(),
                None => verdict.rule().as_str().to_owned(),
            },
            sqlstate: refusal.map(|(_, code)| code.to_owned()),
            param_types: param_types.to_vec(),
        };
        match text {
            Text::Whole(t) => s.set_text(t),
            Text::Cut {
                prefix,
                len,
                sha256,
            } => s.set_cut_text(prefix, len, sha256),
        }
        self.pending.push(Event::Statement(s));
        self.n
    }

    /// Queues the values of a Bind of statement `n` for
    /// [`SessionLog::flush`].
    pub fn bind(&mut self, n: u64, body: &[u8]) {
        if !RECORDS {
            return;
        }
        let event =
            match airlock_pgwire::messages::Bind::decode(bytes::Bytes::copy_from_slice(body)) {
                Ok(b) => {
                    let values: Vec<Option<&[u8]>> =
                        b.params.iter().map(|v| v.as_deref()).collect();
                    airlock_audit::Bind {
                        session: self.session.clone(),
                        n,
                        portal: String::from_utf8_lossy(&b.portal).into_owned(),
                        params: airlock_audit::BoundParam::capture(&b.param_formats, &values),
                    }
                }
                // PostgreSQL will refuse it; the record says what was sent.
                Err(_) => airlock_audit::Bind {
                    session: self.session.clone(),
                    n,
                    portal: String::new(),
                    params: airlock_audit::BoundParam::capture(&[1], &[Some(body)]),
                },
            };
        self.pending.push(Event::Bind(event));
    }

    /// Queues the arguments of a fast-path call, recorded as statement
    /// `n` (`SELECT pg_catalog.f($1, ...)`), as the values bound to it: a
    /// Bind record of the unnamed portal, like an extended-protocol call's.
    pub fn call_args(&mut self, n: u64, body: &[u8]) {
        if !RECORDS {
            return;
        }
        let params = match airlock_pgwire::messages::FunctionCall::decode(
            bytes::Bytes::copy_from_slice(body),
        ) {
            Ok(c) => {
                let values: Vec<Option<&[u8]>> = c.args.iter().map(|v| v.as_deref()).collect();
                airlock_audit::BoundParam::capture(&c.arg_formats, &values)
            }
            // PostgreSQL will refuse it; the record says what was sent.
            Err(_) => airlock_audit::BoundParam::capture(&[1], &[Some(body)]),
        };
        self.pending.push(Event::Bind(airlock_audit::Bind {
            session: self.session.clone(),
            n,
            portal: String::new(),
            params,
        }));
    }

    /// Writes the queued statement and Bind records, with the completions
    /// waiting before them, in one append; `Ok(true)` when it wrote. When
    /// this returns `Ok`, the records are in the kernel. When it fails they
    /// are dropped (the completions with them: the statements they describe
    /// have their records) and nothing they describe may be forwarded.
    pub fn flush(&mut self) -> Result<bool, AuditError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let mut batch = self.deferred.take();
        if batch.is_empty() {
            std::mem::swap(&mut batch, &mut self.pending);
        } else {
            batch.append(&mut self.pending);
        }
        let written = self.audit.append(&batch);
        // Keep the larger allocation for the next read.
        batch.clear();
        if batch.capacity() > self.pending.capacity() {
            self.pending = batch;
        }
        self.last_seq = written?;
        Ok(true)
    }

    /// Statements recorded so far.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Waits until this session's records are as durable as the fsync mode
    /// promises (`always`: on disk).
    pub async fn durable(&self) -> Result<(), AuditError> {
        if !RECORDS || self.last_seq == 0 {
            return Ok(());
        }
        self.audit.durable(self.last_seq).await
    }
}

/// What the client is told when its statement could not be recorded.
pub fn refusal(e: &AuditError, resource: &str) -> UserFacingError {
    let code = if e.is_disk_full() {
        sqlstate::DISK_FULL
    } else {
        sqlstate::IO_ERROR
    };
    UserFacingError::error(
        code,
        format!("Airlock refused the statement on \"{resource}\": its audit record could not be written"),
    )
    .detail(format!("{e}; nothing was sent to the database"))
    .hint("the gateway's audit log must be writable (see its /healthz); tell the gateway's operator, then retry")
}
