//! Reading records back: for export, the index, and replay.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::record;
use crate::segment;
use crate::AuditError;

/// One record as stored, with its event decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub prev: String,
    pub ts: i64,
    #[serde(flatten)]
    pub event: Event,
}

impl Entry {
    /// Decodes a record line; `None` for a damaged line or an event kind this
    /// version does not know.
    pub fn parse(line: &[u8]) -> Option<Entry> {
        serde_json::from_slice(line).ok()
    }
}

/// A record line with its fixed head read.
pub struct Raw<'a> {
    pub seq: u64,
    pub ts: i64,
    pub kind: &'a str,
    /// The line without its newline: the bytes that are hashed.
    pub line: &'a [u8],
    /// The segment it is in (the segment's first seq).
    pub segment: u64,
}

/// Calls `f` with every complete record after `after_seq`, in order, until
/// it returns `false`. Lines that are not records are skipped (`verify`
/// reports them); so is the unfinished tail of a segment.
pub fn scan(
    dir: &Path,
    after_seq: u64,
    mut f: impl FnMut(&Raw<'_>) -> Result<bool, AuditError>,
) -> Result<(), AuditError> {
    let segments = segment::list(dir)?;
    for (i, seg) in segments.iter().enumerate() {
        // A segment holds records up to the next one's first seq.
        if segments
            .get(i + 1)
            .is_some_and(|next| next.first_seq <= after_seq + 1)
        {
            continue;
        }
        let bytes =
            std::fs::read(&seg.path).map_err(|e| AuditError::io("reading", &seg.path, e))?;
        let mut go_on = true;
        let mut failed = None;
        segment::for_each_line(&bytes, |_, line| {
            if !go_on {
                return;
            }
            let Some(head) = record::parse_head(line) else {
                return;
            };
            if head.seq <= after_seq {
                return;
            }
            match f(&Raw {
                seq: head.seq,
                ts: head.ts,
                kind: head.kind,
                line,
                segment: seg.first_seq,
            }) {
                Ok(more) => go_on = more,
                Err(e) => {
                    failed = Some(e);
                    go_on = false;
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if !go_on {
            break;
        }
    }
    Ok(())
}

/// Follows the log as it grows: each `poll` hands over the records written
/// since the last one, reading only new bytes.
pub struct Tailer {
    dir: std::path::PathBuf,
    segment: Option<segment::Segment>,
    offset: u64,
    after_seq: u64,
}

impl Tailer {
    /// Starts after record `after_seq` (0 for the beginning).
    pub fn new(dir: &Path, after_seq: u64) -> Tailer {
        Tailer {
            dir: dir.to_path_buf(),
            segment: None,
            offset: 0,
            after_seq,
        }
    }

    /// Starts over after record `after_seq` (when what was handed over
    /// since was not kept).
    pub fn reset(&mut self, after_seq: u64) {
        self.segment = None;
        self.offset = 0;
        self.after_seq = after_seq;
    }

    pub fn after_seq(&self) -> u64 {
        self.after_seq
    }

    /// Calls `f` with each new complete record, at most `limit` of them;
    /// returns how many. The next poll goes on right after the last one.
    pub fn poll(
        &mut self,
        limit: u64,
        mut f: impl FnMut(&Raw<'_>) -> Result<(), AuditError>,
    ) -> Result<u64, AuditError> {
        use std::io::{Read as _, Seek as _};
        let segments = segment::list(&self.dir)?;
        if segments.is_empty() {
            return Ok(0);
        }
        let mut at = match &self.segment {
            Some(cur) => match segments.iter().position(|s| s.name == cur.name) {
                Some(i) => i,
                None => {
                    // Removed by retention: start over by seq.
                    self.offset = 0;
                    self.start_index(&segments)
                }
            },
            None => self.start_index(&segments),
        };
        let mut count = 0;
        let mut chunk: u64 = 4 << 20;
        loop {
            let seg = &segments[at];
            if self.segment.as_ref().is_none_or(|s| s.name != seg.name) {
                self.segment = Some(seg.clone());
                self.offset = 0;
            }
            let mut file = std::fs::File::open(&seg.path)
                .map_err(|e| AuditError::io("opening", &seg.path, e))?;
            file.seek(std::io::SeekFrom::Start(self.offset))
                .map_err(|e| AuditError::io("reading", &seg.path, e))?;
            // A bounded read: catching up on a large backlog must not read
            // the rest of the segment again for every batch.
            let mut bytes = Vec::new();
            (&mut file)
                .take(chunk)
                .read_to_end(&mut bytes)
                .map_err(|e| AuditError::io("reading", &seg.path, e))?;
            let full = bytes.len() as u64 == chunk;
            let mut failed = None;
            // Bytes handled: up to the end of the last line taken or skipped.
            let mut consumed = 0u64;
            let after = &mut self.after_seq;
            let torn = segment::for_each_line(&bytes, |offset, line| {
                if failed.is_some() || count >= limit {
                    return;
                }
                let end = offset + line.len() as u64 + 1;
                let Some(head) = record::parse_head(line) else {
                    consumed = end;
                    return;
                };
                if head.seq <= *after {
                    consumed = end;
                    return;
                }
                let raw = Raw {
                    seq: head.seq,
                    ts: head.ts,
                    kind: head.kind,
                    line,
                    segment: seg.first_seq,
                };
                match f(&raw) {
                    Ok(()) => {
                        *after = head.seq;
                        count += 1;
                        consumed = end;
                    }
                    Err(e) => failed = Some(e),
                }
            });
            if let Some(e) = failed {
                self.offset += consumed;
                return Err(e);
            }
            if count >= limit {
                self.offset += consumed;
                return Ok(count);
            }
            self.offset += (bytes.len() - torn.len()) as u64;
            if full {
                // More of this segment to read; a line longer than the
                // chunk needs a larger one.
                if torn.len() == bytes.len() {
                    chunk *= 2;
                }
                continue;
            }
            if at + 1 < segments.len() {
                at += 1;
            } else {
                return Ok(count);
            }
        }
    }

    fn start_index(&self, segments: &[segment::Segment]) -> usize {
        segments
            .iter()
            .rposition(|s| s.first_seq <= self.after_seq + 1)
            .unwrap_or(0)
    }
}
