//! Offline verification: every hash link, every checkpoint signature, the
//! order and completeness of the records, and the segment boundaries.
//!
//! It stops at the first problem and names it: a record **modified**
//! (its bytes no longer hash to what the next record holds, or it is not a
//! record at all), records **deleted** (a gap in the sequence), records
//! **reordered**, the log **truncated** (it ends mid-record, or before an
//! anchored checkpoint), or a **forged checkpoint** (its signature does not
//! verify with the public key).

use std::fmt;
use std::path::Path;

use crate::event::Event;
use crate::key::PublicKey;
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
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemKind::Modified => "modified",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::ForgedCheckpoint => "forged checkpoint",
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
    pub last_checkpoint: Option<CheckpointInfo>,
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
}

impl<'a> Verifier<'a> {
    fn new(expect: &'a Expect) -> Verifier<'a> {
        Verifier {
            expect,
            report: Report::default(),
            last: None,
            start_gap: None,
            anchor_seen: false,
            live: false,
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
                    Event::Checkpoint { sealed, key, sig } => {
                        if let Some(pk) = &self.expect.key {
                            let fine = sealed + 1 == head.seq
                                && key == pk.id()
                                && pk.verify_checkpoint(head.seq, head.ts, &head.prev, &sig);
                            if !fine {
                                let detail = if key != pk.id() {
                                    format!("it names key {key}, not the trusted key {}", pk.id())
                                } else {
                                    "its signature does not verify with the public key: it was forged, or the records before it were rewritten".into()
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
                        self.report.checkpoints += 1;
                        self.report.unsealed = 0;
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
                        if let Some((first, prev, ..)) = &self.start_gap {
                            if through_seq + 1 == *first && through_hash == record::hex(prev) {
                                self.report.retained_from = Some(through_seq);
                                self.start_gap = None;
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.report.unsealed += 1;
        self.last = Some((head.seq, hash));
        self.count(&head, hash);
        true
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
    }

    fn finish(mut self) -> Report {
        if self.report.problem.is_some() {
            return self.report;
        }
        if let Some((first, _, name, offset)) = self.start_gap.take() {
            let detail = format!(
                "the log starts at record {first}: records 1 to {} are missing and no retention record accounts for them",
                first - 1
            );
            self.problem(ProblemKind::Deleted, Some(1), &name, offset, detail);
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
            }
        }
        self.report
    }
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
