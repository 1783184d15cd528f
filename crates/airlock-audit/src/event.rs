//! What one record says. The `kind` tag names the variant in snake case.
//!
//! Field order is the declaration order and maps are sorted, so an event
//! always encodes to the same bytes. New fields may be added (readers ignore
//! what they do not know); renaming or removing one changes the format.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The gateway opened the log. `key` is the id of the checkpoint key.
    GatewayStarted {
        version: String,
        key: String,
    },
    /// The gateway closed the log cleanly (a checkpoint follows).
    GatewayStopped {},
    /// The previous segment ends with the incomplete bytes of a write that
    /// never finished (a crash, a full disk); the chain goes on from the last
    /// complete record before them.
    Recovered {
        segment: String,
        offset: u64,
        torn_bytes: u64,
    },
    /// Seals every record before it: `sig` is the Ed25519 signature of
    /// this record's seq, ts and prev and, in format 2 (`every` present),
    /// of the writer's sealing rules ([`crate::key::checkpoint_message_v2`];
    /// format 1, [`crate::key::checkpoint_message`], is still verified).
    Checkpoint {
        /// The last record sealed (this record's seq - 1).
        sealed: u64,
        /// The signing key's id (see [`crate::key::PublicKey::id`]).
        key: String,
        /// The writer's `checkpoint_every` (format 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every: Option<u64>,
        /// The writer's `checkpoint_interval` in ms (format 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval_ms: Option<u64>,
        /// Sealed later than the interval on purpose: the writer reopened a
        /// log a crash left unsealed, or a write failed meanwhile.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        late: bool,
        sig: String,
    },
    /// Old segments were removed by retention; the chain's start is now the
    /// record after `through_seq`, whose `prev` is `through_hash`.
    Retention {
        retain: String,
        removed: Vec<RemovedSegment>,
        through_seq: u64,
        through_hash: String,
    },
    SessionStart(SessionStart),
    /// A login that was refused (wrong credential, no access). Refusals
    /// from one address are aggregated: the first is recorded alone, the
    /// ones after it within a minute by one record with `count`, whose
    /// other fields are those of the last of them.
    LoginRefused {
        user: String,
        resource: String,
        access: String,
        client_addr: String,
        reason: String,
        sqlstate: String,
        /// How many refusals this record stands for, when it aggregates.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    SessionEnd {
        session: String,
        reason: String,
        statements: u64,
        bytes_in: u64,
        bytes_out: u64,
        duration_ms: u64,
    },
    Statement(Statement),
    StatementDone(StatementDone),
    /// The values bound to a prepared statement (a Bind message), written
    /// before the Bind is forwarded.
    Bind(Bind),
    /// An access event (request, approval, denial, expiry, revocation,
    /// break-glass, reviewed exec, token issuance, policy reload, runbook
    /// run): the same `event` name, text and data the webhooks receive.
    Access {
        event: String,
        actor: String,
        text: String,
        data: serde_json::Value,
    },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::GatewayStarted { .. } => "gateway_started",
            Event::GatewayStopped {} => "gateway_stopped",
            Event::Recovered { .. } => "recovered",
            Event::Checkpoint { .. } => "checkpoint",
            Event::Retention { .. } => "retention",
            Event::SessionStart(_) => "session_start",
            Event::LoginRefused { .. } => "login_refused",
            Event::SessionEnd { .. } => "session_end",
            Event::Statement(_) => "statement",
            Event::StatementDone(_) => "statement_done",
            Event::Bind(_) => "bind",
            Event::Access { .. } => "access",
        }
    }

    /// Every kind, for `--kind` validation.
    pub const KINDS: &'static [&'static str] = &[
        "gateway_started",
        "gateway_stopped",
        "recovered",
        "checkpoint",
        "retention",
        "session_start",
        "login_refused",
        "session_end",
        "statement",
        "statement_done",
        "bind",
        "access",
    ];

    /// One line for a person: what happened, without the record's time.
    pub fn summary(&self) -> String {
        match self {
            Event::GatewayStarted { version, key } => {
                format!("gateway {version} started (checkpoint key {key})")
            }
            Event::GatewayStopped {} => "gateway stopped".into(),
            Event::Recovered {
                segment,
                torn_bytes,
                ..
            } => {
                format!(
                    "recovered after an unfinished write ({torn_bytes} bytes at the end of {segment})"
                )
            }
            Event::Checkpoint {
                sealed, key, late, ..
            } => {
                format!(
                    "checkpoint: records 1 to {sealed} sealed by key {key}{}",
                    if *late {
                        " (late: after a restart or a failed write)"
                    } else {
                        ""
                    }
                )
            }
            Event::Retention {
                retain,
                through_seq,
                ..
            } => {
                format!("retention ({retain}): records through {through_seq} removed")
            }
            Event::SessionStart(s) => format!(
                "{} {}@{} {} access, grant {}{}, from {}{}",
                s.session,
                s.user,
                s.resource,
                s.access,
                s.grant,
                if s.break_glass { " BREAK-GLASS" } else { "" },
                s.client_addr,
                if s.tls { " (TLS)" } else { "" }
            ),
            Event::LoginRefused {
                user,
                resource,
                reason,
                count: Some(n),
                client_addr,
                ..
            } => format!(
                "{n} refused logins from {client_addr} within a minute, the last {user}@{resource}: {reason}"
            ),
            Event::LoginRefused {
                user,
                resource,
                reason,
                ..
            } => format!("{user}@{resource} refused: {reason}"),
            Event::SessionEnd {
                session, reason, ..
            } => format!("{session} ended: {reason}"),
            Event::Statement(s) => format!(
                "{} #{} {} ({}): {}",
                s.session,
                s.n,
                s.decision,
                s.rule,
                one_line(&s.display_text())
            ),
            Event::StatementDone(d) => match &d.sqlstate {
                Some(code) => format!(
                    "{} #{} failed {code} after {}",
                    d.session,
                    d.n,
                    micros(d.duration_us)
                ),
                None => format!(
                    "{} #{} done in {}: {} rows {}",
                    d.session,
                    d.n,
                    micros(d.duration_us),
                    d.rows,
                    d.tags.join(", ")
                ),
            },
            Event::Bind(b) => format!(
                "{} #{} bound {} value{}",
                b.session,
                b.n,
                b.params.len(),
                if b.params.len() == 1 { "" } else { "s" }
            ),
            Event::Access { event, text, .. } => format!("{event}: {text}"),
        }
    }

    /// The end of a session whose traffic was never counted: one cut off
    /// during its start, or left open by a crash.
    pub fn session_end_uncounted(session: &str, reason: impl Into<String>) -> Event {
        Event::SessionEnd {
            session: session.to_owned(),
            reason: reason.into(),
            statements: 0,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0,
        }
    }

    /// The session the event belongs to, if any.
    pub fn session(&self) -> Option<&str> {
        match self {
            Event::SessionStart(s) => Some(&s.session),
            Event::SessionEnd { session, .. } => Some(session),
            Event::Statement(s) => Some(&s.session),
            Event::StatementDone(s) => Some(&s.session),
            Event::Bind(b) => Some(&b.session),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedSegment {
    pub segment: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStart {
    pub session: String,
    pub user: String,
    pub resource: String,
    pub access: String,
    /// The time-boxed grant the session runs under; empty for standing access.
    pub grant: String,
    pub break_glass: bool,
    pub credential: String,
    pub client_addr: String,
    pub tls: bool,
    pub roles: Vec<String>,
    /// When the session must end (credential or grant expiry), ms since the epoch.
    pub until_ms: Option<i64>,
}

/// A statement as the client sent it, before it was forwarded or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub session: String,
    /// The statement's number in its session, from 1.
    pub n: u64,
    /// `simple` (Query), `extended` (Parse) or `fastpath` (FunctionCall).
    pub protocol: String,
    /// The text as received, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The text as received, base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_base64: Option<String>,
    /// For a text over `max_statement_size` (refused, rule `too_long`):
    /// `text`/`text_base64` hold only its first bytes, and these its whole
    /// length in bytes and its SHA-256 (hex), so the record stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_sha256: Option<String>,
    /// Each statement of the text: its command kind and classification rule.
    pub classified: Vec<Classified>,
    /// `allowed` or `refused`.
    pub decision: String,
    /// The rule that decided (for a refusal, the one that refused).
    pub rule: String,
    /// The SQLSTATE the client was sent, for a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// The parameter types a Parse declared (type OIDs; 0 = unspecified),
    /// for a faithful replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub param_types: Vec<u32>,
}

impl Statement {
    /// The text, as it would be shown (non-UTF-8 bytes replaced).
    pub fn display_text(&self) -> String {
        match (&self.text, &self.text_base64) {
            (Some(t), _) => t.clone(),
            (None, Some(b)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map(|raw| String::from_utf8_lossy(&raw).into_owned())
                    .unwrap_or_default()
            }
            _ => String::new(),
        }
    }

    /// Records only the start of a text too long to keep: `prefix` (cut
    /// back to a whole UTF-8 character when it is UTF-8), the whole
    /// length and the SHA-256 of the whole text.
    pub fn set_cut_text(&mut self, prefix: &[u8], len: u64, sha256: [u8; 32]) {
        let keep = match std::str::from_utf8(prefix) {
            Ok(_) => prefix.len(),
            // Cut inside a character: drop its first bytes.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => prefix.len(),
        };
        self.set_text(&prefix[..keep]);
        self.text_len = Some(len);
        self.text_sha256 = Some(hex::encode(sha256));
    }

    /// Sets `text` or `text_base64` from the bytes received.
    pub fn set_text(&mut self, raw: &[u8]) {
        match std::str::from_utf8(raw) {
            Ok(t) => self.text = Some(t.to_owned()),
            Err(_) => {
                use base64::Engine as _;
                self.text_base64 = Some(base64::engine::general_purpose::STANDARD.encode(raw));
            }
        }
    }
}

/// A Bind: the values a portal runs its statement with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub session: String,
    /// The `n` of the statement the portal is bound from; 0 when the
    /// statement is unknown to the gateway.
    pub n: u64,
    /// The portal's name; empty for the unnamed portal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub portal: String,
    pub params: Vec<BoundParam>,
}

/// One bound value, bounded: at most [`BoundParam::MAX_VALUE`] bytes of it
/// are kept (and at most [`BoundParam::MAX_MESSAGE`] over one Bind), with
/// the whole value's length and, when cut, its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundParam {
    /// A text-format value that is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A binary-format (or non-UTF-8) value, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// The value's length in bytes; -1 for NULL.
    pub len: i64,
    /// The format code: 0 text, 1 binary.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub format: i16,
    /// SHA-256 (hex) of the whole value, when what is kept is cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

fn is_zero(v: &i16) -> bool {
    *v == 0
}

impl BoundParam {
    /// Bytes of one value kept.
    pub const MAX_VALUE: usize = 1024;
    /// Bytes kept over all the values of one Bind.
    pub const MAX_MESSAGE: usize = 8 * 1024;

    /// The values of one Bind, bounded. `formats` as in the message: empty
    /// means all text, one code applies to all.
    pub fn capture(formats: &[i16], values: &[Option<&[u8]>]) -> Vec<BoundParam> {
        let mut budget = Self::MAX_MESSAGE;
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let format = match formats {
                    [] => 0,
                    [one] => *one,
                    many => many.get(i).copied().unwrap_or(0),
                };
                let Some(v) = v else {
                    return BoundParam {
                        text: None,
                        base64: None,
                        len: -1,
                        format,
                        sha256: None,
                    };
                };
                let keep = v.len().min(Self::MAX_VALUE).min(budget);
                budget -= keep;
                let mut kept = &v[..keep];
                let text = if format == 0 {
                    match std::str::from_utf8(kept) {
                        Ok(t) => Some(t.to_owned()),
                        // Cut inside a character: keep the whole ones.
                        Err(e) if e.error_len().is_none() && keep < v.len() => {
                            kept = &kept[..e.valid_up_to()];
                            std::str::from_utf8(kept).ok().map(str::to_owned)
                        }
                        Err(_) => None,
                    }
                } else {
                    None
                };
                let base64 = match &text {
                    Some(_) => None,
                    None => {
                        use base64::Engine as _;
                        Some(base64::engine::general_purpose::STANDARD.encode(kept))
                    }
                };
                let sha256 = (kept.len() < v.len()).then(|| {
                    use sha2::Digest as _;
                    crate::record::hex(&sha2::Sha256::digest(v).into())
                });
                BoundParam {
                    text,
                    base64,
                    len: v.len() as i64,
                    format,
                    sha256,
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classified {
    pub kind: String,
    pub rule: String,
}

/// How a forwarded statement ended: one per simple Query (all its
/// statements) and one per Execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatementDone {
    pub session: String,
    /// The `n` of the statement record this completes.
    pub n: u64,
    pub duration_us: u64,
    /// Rows returned or affected, summed over the statement's commands.
    pub rows: u64,
    /// Command tags in order (`SELECT 3`, `UPDATE 1`).
    pub tags: Vec<String>,
    /// The error's SQLSTATE, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first result's column names and first rows, as the client saw
    /// them (masked), text values; binary values as `\x` hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_rows: Vec<Vec<Option<String>>>,
    /// An Execute that stopped at its row limit (PortalSuspended): the
    /// portal may be executed again for more rows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

/// `s` on one line (white space runs folded), at most 200 characters.
fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        let cut: String = flat.chars().take(200).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// Microseconds for people.
pub fn micros(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

#[cfg(test)]
mod bind_tests {
    use super::BoundParam;

    #[test]
    fn bound_values_are_kept_bounded_with_a_digest_when_cut() {
        let long = "é".repeat(600); // 1200 bytes, two per character
        let big = vec![7u8; 3000];
        let values = [
            Some("short".as_bytes()),
            None,
            Some(long.as_bytes()),
            Some(&big[..]),
        ];
        let p = BoundParam::capture(&[0, 0, 0, 1], &values);
        assert_eq!(p[0].text.as_deref(), Some("short"));
        assert_eq!((p[0].len, p[0].sha256.is_none()), (5, true));
        assert_eq!(p[1].len, -1);
        // Cut at 1024 bytes, inside no character.
        assert_eq!(p[2].text.as_ref().unwrap().len(), 1024);
        assert_eq!(p[2].len, 1200);
        assert_eq!(p[2].sha256.as_ref().unwrap().len(), 64);
        assert!(p[3].base64.is_some() && p[3].sha256.is_some());
        // Over one message, at most MAX_MESSAGE bytes are kept in all.
        let many: Vec<Option<&[u8]>> = (0..20).map(|_| Some(&big[..])).collect();
        let p = BoundParam::capture(&[1], &many);
        let kept: usize = p
            .iter()
            .map(|v| {
                use base64::Engine as _;
                let b = v.base64.as_deref().unwrap_or_default();
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(kept <= BoundParam::MAX_MESSAGE, "{kept}");
        assert!(p.iter().all(|v| v.len == 3000 && v.sha256.is_some()));
    }
}
