//! Segment files: `<first seq, 20 digits>.log` in the audit directory, read
//! in name order.

use std::path::{Path, PathBuf};

use crate::AuditError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    pub first_seq: u64,
    pub path: PathBuf,
}

pub fn name_for(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// The segments in `dir`, oldest first. Other files are ignored.
pub fn list(dir: &Path) -> Result<Vec<Segment>, AuditError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io("listing", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(first_seq) = stem.parse() else {
            continue;
        };
        out.push(Segment {
            name: name.to_owned(),
            first_seq,
            path: entry.path(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The complete lines of a segment's bytes, each with its byte offset, and
/// the bytes after the last newline (a write that never finished).
pub fn lines(bytes: &[u8]) -> (Vec<(u64, &[u8])>, &[u8]) {
    let mut out = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        out.push((start as u64, &bytes[start..end]));
        start = end + 1;
    }
    (out, &bytes[start..])
}

/// Calls `f` for each complete line; returns the torn tail.
pub fn for_each_line<'a>(bytes: &'a [u8], mut f: impl FnMut(u64, &'a [u8])) -> &'a [u8] {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        f(start as u64, &bytes[start..end]);
        start = end + 1;
    }
    &bytes[start..]
}

/// The first complete line of a segment, if it has one.
pub fn first_line(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).map_err(|e| AuditError::io("opening", path, e))?;
    let mut line = Vec::new();
    std::io::BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(|e| AuditError::io("reading", path, e))?;
    Ok(line.pop().filter(|&b| b == b'\n').map(|_| line))
}

/// Makes a new file's directory entry durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
