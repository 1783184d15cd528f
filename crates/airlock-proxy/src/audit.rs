//! A session's account in the audit log: every statement is written (handed
//! to the kernel) before it is forwarded, and refused when it cannot be.

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

pub struct SessionLog {
    audit: AuditLog,
    session: String,
    n: u64,
    /// The last record this session wrote: what `durable` waits for.
    last_seq: u64,
}

impl SessionLog {
    pub fn new(audit: AuditLog, session: String) -> SessionLog {
        SessionLog {
            audit,
            session,
            n: 0,
            last_seq: 0,
        }
    }

    /// Writes the record of a statement as the client sent it, with how it
    /// was classified and decided. `refusal` is the rule and SQLSTATE of a
    /// refusal. When this returns `Ok`, the record is in the kernel.
    pub fn statement(
        &mut self,
        protocol: Protocol,
        text: &[u8],
        verdict: &Verdict,
        refusal: Option<(&str, &str)>,
    ) -> Result<u64, AuditError> {
        self.n += 1;
        if !RECORDS {
            return Ok(self.n);
        }
        let mut s = Statement {
            session: self.session.clone(),
            n: self.n,
            protocol: protocol.as_str().to_owned(),
            text: None,
            text_base64: None,
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
        };
        s.set_text(text);
        self.last_seq = self.audit.append(&[Event::Statement(s)])?;
        Ok(self.n)
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
