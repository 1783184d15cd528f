//! What the chain and tampering tests share: a real log written by the real
//! writer with a real key in a temporary directory, and its lines.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::event::Event;
use airlock_audit::{
    segment, verify_dir, Anchor, AuditLog, Expect, FsyncMode, Options, ProblemKind, PublicKey,
    SigningKey,
};

/// The fixture's clock at the start.
pub const T0: i64 = 1_700_000_000_000;

pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub key_path: PathBuf,
    pub clock: Arc<AtomicI64>,
    /// The `i`th record [`Fixture::write`] appends.
    event: fn(u64) -> Event,
}

impl Fixture {
    pub fn new(event: fn(u64) -> Event) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        Fixture {
            dir: tmp.path().join("audit"),
            key_path: tmp.path().join("keys/audit.pem"),
            clock: Arc::new(AtomicI64::new(T0)),
            _tmp: tmp,
            event,
        }
    }

    /// Batched fsync, a checkpoint every 10 records, one segment.
    pub fn options(&self) -> Options {
        let clock = self.clock.clone();
        Options {
            fsync: FsyncMode::Batched(Duration::from_millis(10)),
            checkpoint_every: 10,
            checkpoint_interval: Duration::from_secs(3600),
            segment_bytes: 64 * 1024 * 1024,
            now_ms: Arc::new(move || clock.load(Ordering::Relaxed)),
        }
    }

    pub fn key(&self) -> SigningKey {
        SigningKey::load_or_create(&self.key_path).unwrap()
    }

    pub fn open(&self, opts: Options) -> AuditLog {
        AuditLog::open(&self.dir, self.key(), opts).unwrap()
    }

    pub fn public(&self) -> PublicKey {
        self.key().public()
    }

    pub fn expect(&self) -> Expect {
        Expect {
            key: Some(self.public()),
            ..Expect::default()
        }
    }

    /// `n` records, one append each (a checkpoint every 10 records and one
    /// at close), one millisecond apart; returns the anchors the writer
    /// published as it went.
    pub fn write(&self, n: u64) -> Vec<Anchor> {
        let log = self.open(self.options());
        let anchors = log.anchors();
        let mut seen = Vec::new();
        for i in 0..n {
            log.append(&[(self.event)(i)]).unwrap();
            self.clock.fetch_add(1, Ordering::Relaxed);
            if let Some(a) = anchors.borrow().clone() {
                if seen.last() != Some(&a) {
                    seen.push(a);
                }
            }
        }
        log.close().unwrap();
        let last = anchors.borrow().clone().unwrap();
        if seen.last() != Some(&last) {
            seen.push(last);
        }
        seen
    }

    pub fn only_segment(&self) -> PathBuf {
        let segs = segment::list(&self.dir).unwrap();
        assert_eq!(segs.len(), 1);
        segs[0].path.clone()
    }

    /// The first problem the verifier finds; there must be one.
    pub fn problem(&self, expect: &Expect) -> (ProblemKind, Option<u64>, String) {
        let report = verify_dir(&self.dir, expect).unwrap();
        let Some(p) = report.problem.clone() else {
            panic!("tampering must be found: {report:?}");
        };
        (p.kind, p.seq, p.to_string())
    }
}

/// A statement record of `sql`, classified as `rule`.
pub fn statement(i: u64, sql: &str, rule: &str) -> Event {
    let mut s = airlock_audit::Statement {
        session: "s1".into(),
        n: i + 1,
        protocol: "simple".into(),
        text: None,
        text_base64: None,
        text_len: None,
        text_sha256: None,
        classified: vec![airlock_audit::Classified {
            kind: rule.into(),
            rule: rule.into(),
        }],
        decision: "allowed".into(),
        rule: rule.into(),
        sqlstate: None,
        param_types: Vec::new(),
    };
    s.set_text(sql.as_bytes());
    Event::Statement(s)
}

/// The lines of a segment file (none torn).
pub fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let (lines, torn) = segment::lines(&bytes);
    assert!(torn.is_empty());
    lines.into_iter().map(|(_, l)| l.to_vec()).collect()
}

pub fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    std::fs::write(path, out).unwrap();
}
