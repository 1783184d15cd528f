//! Offline verification: every hash link, every checkpoint signature, the
//! order and completeness of the records, and the segment boundaries.
//!
//! It stops at the first problem and names it: a record **modified**
//! (its bytes no longer hash to what the next record holds, or it is not a
//! record at all), records **deleted** (a gap in the sequence), records
//! **reordered**, the log **truncated** (it ends mid-record, before an
//! anchored checkpoint, or before the record the live writer last wrote),
//! a **forged checkpoint** (its signature does not verify with the public
//! key).
//!
//! A hash chain alone proves nothing against someone who can rewrite the
//! files: they can re-hash it from any point. Only the signatures bind it,
//! so the log must *need* them: it has **no checkpoint** at all → fails; a
//! stretch between checkpoints (or from the start to the first one) longer
//! than the signed rules allow → **checkpoint gap**; an unsigned tail after
//! the last checkpoint longer than that → **unsealed tail**; a `retention`
//! record that the checkpoint written with it does not sign → **forged
//! retention**. The rules ([`Terms`]) are read only from checkpoints whose
//! signature verified; [`Expect::terms`] (the CLI's config) stands in only
//! where no checkpoint of format 2 gives them.

use std::fmt;
use std::path::Path;

use std::collections::HashMap;

use crate::anchor::Anchor;
use crate::event::Event;
use crate::key::{PublicKey, Terms};
use crate::record::{self, Hash, GENESIS};
use crate::segment;
use crate::AuditError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Modified,
    Deleted,
    Reordered,
    Truncated,
    ForgedCheckpoint,
    /// No checkpoint verifies: nothing in the log is signed.
    NoCheckpoint,
    /// More records or more time between two checkpoints (or from the
    /// start to the first) than the signed rules allow.
    CheckpointGap,
    /// The log ends with more unsigned records, or a longer stretch of
    /// time, after its last checkpoint than the rules allow.
    UnsealedTail,
    /// A `retention` record not sealed by the checkpoint written with it.
    ForgedRetention,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemKind::Modified => "modified",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::ForgedCheckpoint => "forged checkpoint",
            ProblemKind::NoCheckpoint => "no checkpoint",
            ProblemKind::CheckpointGap => "checkpoint gap",
            ProblemKind::UnsealedTail => "unsealed tail",
            ProblemKind::ForgedRetention => "forged retention",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The record the problem is pinned on, when there is one.
    pub seq: Option<u64>,
    /// Where: the segment file and the byte offset in it.
    pub segment: String,
    pub offset: u64,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "record {seq} {}: {}", self.kind, self.detail)?,
            None => write!(f, "{}: {}", self.kind, self.detail)?,
        }
        write!(f, " ({} at byte {})", self.segment, self.offset)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub seq: u64,
    pub ts: i64,
    pub hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub records: u64,
    pub segments: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub checkpoints: u64,
    /// Checkpoints that say they sealed late (after a crash, a failed
    /// write or a clock jump).
    pub late_checkpoints: u64,
    pub last_checkpoint: Option<CheckpointInfo>,
    /// The rules of the last checkpoint that signs them.
    pub terms: Option<Terms>,
    /// Anchors checked ([`Expect::anchors`]), and of those the ones whose
    /// records retention removed.
    pub anchors: usize,
    pub anchors_retired: usize,
    /// Records after the last checkpoint: chained but not yet signed.
    pub unsealed: u64,
    /// Records before the first one present were removed by retention
    /// (through this seq), as the log itself records.
    pub retained_from: Option<u64>,
    /// Verifying a log being written ([`verify_live_dir`]): bytes of a
    /// record being written at its very end, not checked.
    pub in_progress: u64,
    pub problem: Option<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The report as `airlock audit verify --json` and the API give it.
    pub fn to_json(&self, key: &PublicKey) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "records": self.records,
            "segments": self.segments,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "checkpoints": self.checkpoints,
            "late_checkpoints": self.late_checkpoints,
            "checkpoint_every": self.terms.map(|t| t.every),
            "checkpoint_interval_ms": self.terms.map(|t| t.interval_ms),
            "anchors": self.anchors,
            "anchors_retired": self.anchors_retired,
            "last_checkpoint": self.last_checkpoint.as_ref().map(|c| serde_json::json!({
                "seq": c.seq, "ts": c.ts, "hash": crate::record::hex(&c.hash),
            })),
            "unsealed": self.unsealed,
            "retained_from": self.retained_from,
            "in_progress_bytes": self.in_progress,
            "key": key.id(),
            "problem": self.problem.as_ref().map(|p| serde_json::json!({
                "kind": p.kind.to_string(), "seq": p.seq, "segment": p.segment,
                "offset": p.offset, "detail": p.detail, "text": p.to_string(),
            })),
        })
    }
}

/// What the verifier trusts and expects.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub key: Option<PublicKey>,
    /// A checkpoint known from elsewhere (seq and its record's hash): the
    /// log must contain it, so it cannot have been cut back before it.
    pub anchor: Option<(u64, Hash)>,
    /// The input may start anywhere in the chain (an export with `--since`).
    pub partial: bool,
    /// Checkpoints sent off the host ([`crate::anchor`]): the log must hold
    /// each, byte for byte, unless retention removed it.
    pub anchors: Vec<Anchor>,
    /// Sealing rules for stretches no format-2 checkpoint gives rules for
    /// (logs written before checkpoints signed them). Default: the
    /// gateway's defaults.
    pub terms: Option<Terms>,
    /// A live log: the seq of the last record its writer wrote, taken
    /// before the files are read. The files must reach it; less means
    /// records were cut from them while the gateway runs.
    pub written_seq: Option<u64>,
}

/// Verifies the segments in `dir`.
pub fn verify_dir(dir: &Path, expect: &Expect) -> Result<Report, AuditError> {
    verify_segments(dir, expect, false)
}

/// Verifies the segments of a log that the gateway is writing right now: an
/// unfinished line at the very end of the last segment is a write in
/// progress (reported in [`Report::in_progress`]), not a truncation.
pub fn verify_live_dir(dir: &Path, expect: &Expect) -> Result<Report, AuditError> {
    verify_segments(dir, expect, true)
}

fn verify_segments(dir: &Path, expect: &Expect, live: bool) -> Result<Report, AuditError> {
    let segments = segment::list(dir)?;
    let mut v = Verifier::new(expect);
    v.live = live;
    v.report.segments = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        let bytes =
            std::fs::read(&seg.path).map_err(|e| AuditError::io("reading", &seg.path, e))?;
        let next_first = match segments.get(i + 1) {
            Some(next) => segment::first_line(&next.path)?,
            None => None,
        };
        if !v.segment(
            &seg.name,
            &bytes,
            i + 1 == segments.len(),
            next_first.as_deref(),
        ) {
            break;
        }
    }
    Ok(v.finish())
}

/// Verifies one stream of records, such as an export.
pub fn verify_file(path: &Path, expect: &Expect) -> Result<Report, AuditError> {
    let bytes = std::fs::read(path).map_err(|e| AuditError::io("reading", path, e))?;
    let mut v = Verifier::new(expect);
    v.report.segments = 1;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    v.segment(&name, &bytes, true, None);
    Ok(v.finish())
}

struct Verifier<'a> {
    expect: &'a Expect,
    report: Report,
    /// The seq and hash of the last record checked.
    last: Option<(u64, Hash)>,
    /// The first record present, when it does not start the chain.
    start_gap: Option<(u64, Hash, String, u64)>,
    anchor_seen: bool,
    /// The log is being written: see [`verify_live_dir`].
    live: bool,
    /// The first record after the last checkpoint (or the first record):
    /// its seq, ts and place.
    stretch: Option<(u64, i64, String, u64)>,
    /// A `retention` record waiting for the checkpoint that must follow it:
    /// its seq, whether it accounts for the start gap, and its place.
    retention: Option<(u64, bool, String, u64)>,
    /// [`Expect::anchors`] by seq, and whether each was found as sent.
    anchors_at: HashMap<u64, Vec<usize>>,
    anchor_found: Vec<Option<bool>>,
}

impl<'a> Verifier<'a> {
    fn new(expect: &'a Expect) -> Verifier<'a> {
        let mut anchors_at: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, a) in expect.anchors.iter().enumerate() {
            anchors_at.entry(a.seq).or_default().push(i);
        }
        Verifier {
            expect,
            report: Report::default(),
            last: None,
            start_gap: None,
            anchor_seen: false,
            live: false,
            stretch: None,
            retention: None,
            anchors_at,
            anchor_found: vec![None; expect.anchors.len()],
        }
    }

    fn problem(
        &mut self,
        kind: ProblemKind,
        seq: Option<u64>,
        segment: &str,
        offset: u64,
        detail: String,
    ) {
        self.report.problem = Some(Problem {
            kind,
            seq,
            segment: segment.to_owned(),
            offset,
            detail,
        });
    }

    /// The rules for what follows the last checkpoint: its signed ones, or
    /// the stand-ins.
    fn tail_terms(&self) -> Terms {
        self.report.terms.or(self.expect.terms).unwrap_or_default()
    }

    /// Checks one segment; `false` once a problem was found.
    fn segment(
        &mut self,
        name: &str,
        bytes: &[u8],
        is_last: bool,
        next_first: Option<&[u8]>,
    ) -> bool {
        let (lines, torn) = segment::lines(bytes);
        for (i, &(offset, line)) in lines.iter().enumerate() {
            if !self.record(name, &lines, i, offset, line) {
                return false;
            }
        }
        if !torn.is_empty() && is_last && self.live {
            self.report.in_progress = torn.len() as u64;
            return true;
        }
        if !torn.is_empty() {
            let offset = (bytes.len() - torn.len()) as u64;
            let explained = next_first.and_then(parse_event).is_some_and(|e| {
                matches!(e, Event::Recovered { segment, offset: o, torn_bytes }
                        if segment == name && o == offset && torn_bytes == torn.len() as u64)
            });
            if !explained {
                let after = self
                    .last
                    .map_or(String::new(), |(s, _)| format!(" after record {s}"));
                let detail = if is_last {
                    format!(
                        "the log ends in the middle of a record{after} ({} bytes of an unfinished write; a crash, or a write in progress: the gateway seals it when it next starts)",
                        torn.len()
                    )
                } else {
                    format!(
                        "the segment ends in the middle of a record{after} ({} bytes), and the next segment does not record a recovery",
                        torn.len()
                    )
                };
                self.problem(ProblemKind::Truncated, None, name, offset, detail);
                return false;
            }
        }
        true
    }

    fn record(
        &mut self,
        name: &str,
        lines: &[(u64, &[u8])],
        i: usize,
        offset: u64,
        line: &[u8],
    ) -> bool {
        let Some(head) = record::parse_head(line) else {
            let seq = self.last.map(|(s, _)| s + 1);
            self.problem(
                ProblemKind::Modified,
                seq,
                name,
                offset,
                "the line is not a well-formed record (its fixed head was changed)".into(),
            );
            return false;
        };
        let hash = record::hash(line);
        match self.last {
            None => {
                if head.seq == 1 {
                    if head.prev != GENESIS {
                        self.problem(
                            ProblemKind::Modified,
                            Some(1),
                            name,
                            offset,
                            "the first record's prev is not the genesis value".into(),
                        );
                        return false;
                    }
                } else if !self.expect.partial {
                    self.start_gap = Some((head.seq, head.prev, name.to_owned(), offset));
                }
                self.report.first_seq = Some(head.seq);
                self.report.first_ts = Some(head.ts);
            }
            Some((last_seq, last_hash)) => {
                let expected = last_seq + 1;
                if head.seq != expected {
                    let later = lines[i + 1..]
                        .iter()
                        .any(|(_, l)| record::parse_head(l).is_some_and(|h| h.seq == expected));
                    let (kind, detail) = if head.seq < expected || later {
                        (
                            ProblemKind::Reordered,
                            format!("record {} comes where record {expected} belongs", head.seq),
                        )
                    } else {
                        let last_missing = head.seq - 1;
                        (
                            ProblemKind::Deleted,
                            if last_missing == expected {
                                format!("record {expected} is missing: record {last_seq} is followed by record {}", head.seq)
                            } else {
                                format!("records {expected} to {last_missing} are missing: record {last_seq} is followed by record {}", head.seq)
                            },
                        )
                    };
                    self.problem(kind, Some(expected), name, offset, detail);
                    return false;
                }
                if head.prev != last_hash {
                    // Either the previous record was changed, or this one's
                    // `prev` was: in the second case this record's own hash is
                    // off too, so the next record's link breaks as well.
                    let next_breaks = lines
                        .get(i + 1)
                        .and_then(|(_, l)| record::parse_head(l))
                        .is_some_and(|n| n.prev != hash);
                    let (seq, detail) = if next_breaks {
                        (
                            head.seq,
                            "its link to the record before it was changed".to_owned(),
                        )
                    } else {
                        (
                            last_seq,
                            format!(
                                "its bytes no longer hash to the prev that record {} holds",
                                head.seq
                            ),
                        )
                    };
                    self.problem(ProblemKind::Modified, Some(seq), name, offset, detail);
                    return false;
                }
            }
        }
        if head.kind != "checkpoint" {
            if let Some((seq, _, seg, at)) = self.retention.take() {
                self.problem(
                    ProblemKind::ForgedRetention,
                    Some(seq),
                    &seg,
                    at,
                    format!(
                        "the retention record is followed by record {} ({}), not by the checkpoint the gateway writes with it, so no signature covers it: it was forged, or the log was rewritten after it",
                        head.seq, head.kind
                    ),
                );
                return false;
            }
        }
        match head.kind {
            "checkpoint" | "retention" => {
                let Some(event) = parse_event(line) else {
                    self.problem(
                        ProblemKind::Modified,
                        Some(head.seq),
                        name,
                        offset,
                        format!("the {} record's fields are unreadable", head.kind),
                    );
                    return false;
                };
                match event {
                    Event::Checkpoint {
                        sealed,
                        key,
                        every,
                        interval_ms,
                        late,
                        sig,
                    } => {
                        // Format 2 signs its rules; format 1 has none.
                        let terms = match (every, interval_ms) {
                            (Some(every), Some(interval_ms)) => Some(Terms {
                                every,
                                interval_ms,
                                late,
                            }),
                            (None, None) if !late => None,
                            _ => {
                                self.problem(
                                    ProblemKind::Modified,
                                    Some(head.seq),
                                    name,
                                    offset,
                                    "the checkpoint's rules are incomplete (a field was removed)"
                                        .into(),
                                );
                                return false;
                            }
                        };
                        if let Some(pk) = &self.expect.key {
                            let signed = match &terms {
                                Some(t) => {
                                    pk.verify_checkpoint_v2(head.seq, head.ts, &head.prev, t, &sig)
                                }
                                None => pk.verify_checkpoint(head.seq, head.ts, &head.prev, &sig),
                            };
                            let fine = sealed + 1 == head.seq && key == pk.id() && signed;
                            if !fine {
                                let detail = if key != pk.id() {
                                    format!("it names key {key}, not the trusted key {}", pk.id())
                                } else {
                                    "its signature does not verify with the public key: it was forged, or the records before it (or its rules) were rewritten".into()
                                };
                                self.problem(
                                    ProblemKind::ForgedCheckpoint,
                                    Some(head.seq),
                                    name,
                                    offset,
                                    detail,
                                );
                                return false;
                            }
                        }
                        if !self.stretch_fits(&head, terms, name, offset) {
                            return false;
                        }
                        if let Some((_, accounts, ..)) = self.retention.take() {
                            // Signed now: the retention record explains the
                            // missing start.
                            if accounts {
                                if let Some((first, ..)) = self.start_gap.take() {
                                    self.report.retained_from = Some(first - 1);
                                }
                            }
                        }
                        self.report.checkpoints += 1;
                        self.report.late_checkpoints += u64::from(late);
                        if terms.is_some() {
                            self.report.terms = terms;
                        }
                        self.report.unsealed = 0;
                        self.stretch = None;
                        self.report.last_checkpoint = Some(CheckpointInfo {
                            seq: head.seq,
                            ts: head.ts,
                            hash,
                        });
                        self.last = Some((head.seq, hash));
                        self.count(&head, hash);
                        return true;
                    }
                    Event::Retention {
                        through_seq,
                        through_hash,
                        ..
                    } => {
                        let accounts = self.start_gap.as_ref().is_some_and(|(first, prev, ..)| {
                            through_seq + 1 == *first && through_hash == record::hex(prev)
                        });
                        self.retention = Some((head.seq, accounts, name.to_owned(), offset));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if self.stretch.is_none() {
            self.stretch = Some((head.seq, head.ts, name.to_owned(), offset));
        }
        self.report.unsealed += 1;
        self.last = Some((head.seq, hash));
        self.count(&head, hash);
        true
    }

    /// Whether the stretch a verified checkpoint seals keeps the rules:
    /// those it signs, or the looser of them and the previous checkpoint's
    /// (a writer restarted with other settings).
    fn stretch_fits(
        &mut self,
        head: &record::Head<'_>,
        signed: Option<Terms>,
        name: &str,
        offset: u64,
    ) -> bool {
        let Some((first, first_ts, ..)) = self.stretch.clone() else {
            return true;
        };
        let terms = match (self.report.terms, signed) {
            (Some(before), Some(now)) => Terms {
                late: now.late,
                ..before.looser(&now)
            },
            (None, Some(now)) => now,
            (Some(before), None) => Terms {
                late: false,
                ..before
            },
            (None, None) => self.expect.terms.unwrap_or_default(),
        };
        let records = self.report.unsealed;
        let span = head.ts.saturating_sub(first_ts);
        let what = if self.report.checkpoints == 0 {
            "from the start of the log to the first checkpoint"
        } else {
            "between two checkpoints"
        };
        let detail = if records > terms.max_records() {
            format!(
                "{records} records (records {first} to {}) come {what}, more than the {} its writer's rules allow (checkpoint_every = {}): checkpoints were removed and the chain re-hashed",
                head.seq - 1,
                terms.max_records(),
                terms.every
            )
        } else if !terms.late && span > terms.max_span_ms() {
            format!(
                "{} pass {what} (from record {first} to record {}), more than the {} its writer's rules allow (checkpoint_interval = {}), and the checkpoint does not say it was late: checkpoints were removed and the chain re-hashed",
                duration_text(span),
                head.seq,
                duration_text(terms.max_span_ms()),
                duration_text(i64::try_from(terms.interval_ms).unwrap_or(i64::MAX)),
            )
        } else {
            return true;
        };
        self.problem(
            ProblemKind::CheckpointGap,
            Some(head.seq),
            name,
            offset,
            detail,
        );
        false
    }

    fn count(&mut self, head: &record::Head<'_>, hash: Hash) {
        self.report.records += 1;
        self.report.last_seq = Some(head.seq);
        self.report.last_ts = Some(head.ts);
        if let Some((seq, want)) = self.expect.anchor {
            if seq == head.seq {
                self.anchor_seen = hash == want;
            }
        }
        if let Some(at) = self.anchors_at.get(&head.seq) {
            for &i in at {
                self.anchor_found[i] = Some(self.expect.anchors[i].hash == hash);
            }
        }
    }

    fn finish(mut self) -> Report {
        self.report.anchors = self.expect.anchors.len();
        if self.report.problem.is_some() {
            return self.report;
        }
        if let Some((seq, _, seg, at)) = self.retention.take() {
            // A live log may be read between the two halves of the one
            // write that holds a retention record and its checkpoint.
            if !(self.live && self.report.in_progress > 0) {
                self.problem(
                    ProblemKind::ForgedRetention,
                    Some(seq),
                    &seg,
                    at,
                    "the log ends with a retention record that no checkpoint signs (the gateway writes the two together): it was forged, or the log was cut right after it".into(),
                );
                return self.report;
            }
        }
        if let Some((first, _, name, offset)) = self.start_gap.take() {
            let detail = format!(
                "the log starts at record {first}: records 1 to {} are missing and no signed retention record accounts for them",
                first - 1
            );
            self.problem(ProblemKind::Deleted, Some(1), &name, offset, detail);
            return self.report;
        }
        if !self.tail_fits() {
            return self.report;
        }
        if let Some((seq, _)) = self.expect.anchor {
            if !self.anchor_seen {
                let last = self.report.last_seq.unwrap_or(0);
                let (kind, detail) = if last < seq {
                    (
                        ProblemKind::Truncated,
                        format!(
                            "the log ends at record {last}, before the anchored checkpoint {seq}"
                        ),
                    )
                } else {
                    (
                        ProblemKind::Modified,
                        format!("record {seq} is not the anchored checkpoint"),
                    )
                };
                self.problem(kind, Some(seq), "", 0, detail);
                return self.report;
            }
        }
        if !self.anchors_hold() {
            return self.report;
        }
        if let Some(written) = self.expect.written_seq {
            let last = self.report.last_seq.unwrap_or(0);
            if last < written {
                let detail = format!(
                    "the files end at record {last}, but the gateway has written through record {written}: records were cut from the files while it runs"
                );
                self.problem(ProblemKind::Truncated, Some(last + 1), "", 0, detail);
            }
        }
        self.report
    }

    /// A log must have a checkpoint, and what follows its last one must be
    /// no longer than the rules allow (a crash leaves at most that much,
    /// and the next start seals it).
    fn tail_fits(&mut self) -> bool {
        let terms = self.tail_terms();
        let (seg, at) = self
            .stretch
            .as_ref()
            .map_or((String::new(), 0), |(_, _, s, o)| (s.clone(), *o));
        let tail = self.report.unsealed;
        let span = match (&self.stretch, self.report.last_ts) {
            (Some((_, first_ts, ..)), Some(last_ts)) => last_ts.saturating_sub(*first_ts),
            _ => 0,
        };
        // A live log's first checkpoint may still be on its way.
        if self.report.checkpoints == 0 && !(self.live && self.report.records > 0) {
            let detail = if self.report.records == 0 {
                "the log holds no records, so nothing in it is signed".to_owned()
            } else {
                format!(
                    "none of its {} records is a checkpoint that verifies, so nothing in it is signed: checkpoints were removed and the chain re-hashed, or the log was written without the key",
                    self.report.records
                )
            };
            self.problem(ProblemKind::NoCheckpoint, None, &seg, at, detail);
            return false;
        }
        let first = self.stretch.as_ref().map(|(s, ..)| *s);
        if tail > terms.max_records() {
            let detail = format!(
                "the last {tail} records (from record {}) follow the last checkpoint unsigned, more than the {} the rules allow (checkpoint_every = {}): checkpoints were removed and the chain re-hashed, or records were added without the key",
                first.unwrap_or(0),
                terms.max_records(),
                terms.every
            );
            self.problem(ProblemKind::UnsealedTail, first, &seg, at, detail);
            return false;
        }
        if span > terms.max_span_ms() {
            let detail = format!(
                "the records after the last checkpoint (from record {}) span {} unsigned, more than the {} the rules allow (checkpoint_interval = {}): checkpoints were removed and the chain re-hashed, or records were added without the key",
                first.unwrap_or(0),
                duration_text(span),
                duration_text(terms.max_span_ms()),
                duration_text(i64::try_from(terms.interval_ms).unwrap_or(i64::MAX)),
            );
            self.problem(ProblemKind::UnsealedTail, first, &seg, at, detail);
            return false;
        }
        true
    }

    /// Every anchor is in the log as it was sent, or was removed by
    /// (signed) retention.
    fn anchors_hold(&mut self) -> bool {
        let mut order: Vec<usize> = (0..self.expect.anchors.len()).collect();
        order.sort_by_key(|&i| self.expect.anchors[i].seq);
        let last = self.report.last_seq.unwrap_or(0);
        for i in order {
            let a = &self.expect.anchors[i];
            let (kind, detail) = match self.anchor_found[i] {
                Some(true) => continue,
                None if self.report.retained_from.is_some_and(|r| a.seq <= r) => {
                    self.report.anchors_retired += 1;
                    continue;
                }
                // Before the start of a part of the chain (an export --since).
                None if self.expect.partial
                    && self.report.first_seq.is_some_and(|f| a.seq < f) =>
                {
                    continue;
                }
                None if a.seq > last => (
                    ProblemKind::Truncated,
                    format!(
                        "the log ends at record {last}, before checkpoint {} that was sent off the host (anchored at {} ms): the log was cut back",
                        a.seq, a.ts
                    ),
                ),
                _ => (
                    ProblemKind::Modified,
                    format!(
                        "record {} is not the checkpoint that was sent off the host (key {}, hash {}): the log was rewritten{}",
                        a.seq,
                        a.key,
                        record::hex(&a.hash),
                        match &self.expect.key {
                            Some(pk) if pk.id() != a.key =>
                                format!(", or the anchor is from another key than the trusted {}", pk.id()),
                            _ => String::new(),
                        }
                    ),
                ),
            };
            let seq = a.seq;
            self.problem(kind, Some(seq), "", 0, detail);
            return false;
        }
        true
    }
}

/// A duration in ms for people, as the config writes them: `950ms`,
/// `10s`, `2m30s`, `1h`, `26h5m`.
fn duration_text(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

fn parse_event(line: &[u8]) -> Option<Event> {
    serde_json::from_slice(line).ok()
}

/// Reads an anchor from a checkpoint record line (as `verify --json` or an
/// export prints it).
pub fn anchor_from_line(line: &str) -> Option<(u64, Hash)> {
    let line = line.trim_end_matches(['\n', '\r']);
    let head = record::parse_head(line.as_bytes())?;
    (head.kind == "checkpoint").then(|| (head.seq, record::hash(line.as_bytes())))
}
