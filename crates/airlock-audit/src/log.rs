//! The writer: appends records to the current segment, seals the chain with
//! checkpoints, rolls segments, applies retention, and fsyncs per the mode.
//!
//! One mutex orders appends: encoding, hashing and `write(2)` of a batch take
//! a few microseconds, so callers (the proxy's session tasks) append inline
//! and know, when `append` returns, that their records are in the kernel. The
//! fsync is never done under that mutex: a syncer thread does it on a clone
//! of the file handle, at once (`always`, group commit: every waiter of a
//! round shares one fsync) or at most `window` after the first unsynced write
//! (`batched`).
//!
//! A failed write (disk full, permission, IO error) leaves the chain where it
//! was: the partial bytes are cut off again, or, when even that fails, the
//! next append starts a new segment with a `recovered` record. Until a write
//! succeeds, [`AuditLog::health`] says why the log is failing.
//!
//! Checkpoints keep the promise the verifier holds the log to (and which
//! each one signs, [`Terms`]): at most `checkpoint_every` records between
//! two checkpoints, even inside one large batch, and at most the interval
//! (plus the verifier's slack) in time, unless the checkpoint says it is
//! late: it seals a tail that a crash left unsealed (done at once on open),
//! or records that waited through a failed write or a clock jump.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::anchor::Anchor;
use crate::event::{Event, RemovedSegment};
use crate::key::{SigningKey, Terms};
use crate::record::{self, Hash, GENESIS};
use crate::segment::{self, Segment};
use crate::AuditError;

/// When records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// Before `durable` returns: survives power loss; each statement waits
    /// for a disk flush (shared with every statement of the same round).
    Always,
    /// At most this long after a record was written: a process crash loses
    /// nothing; power loss loses at most the window.
    Batched(Duration),
    /// Never by Airlock: the kernel writes back when it likes (a process
    /// crash loses nothing; power loss may lose tens of seconds).
    Off,
}

pub type NowMs = Arc<dyn Fn() -> i64 + Send + Sync>;

#[derive(Clone)]
pub struct Options {
    pub fsync: FsyncMode,
    /// Seal the chain after this many records...
    pub checkpoint_every: u64,
    /// ...or this long after the first unsealed record.
    pub checkpoint_interval: Duration,
    /// Start a new segment once the current one is this large.
    pub segment_bytes: u64,
    pub now_ms: NowMs,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            fsync: FsyncMode::Batched(Duration::from_millis(10)),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            segment_bytes: 64 * 1024 * 1024,
            now_ms: Arc::new(system_now_ms),
        }
    }
}

pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why the log is not writing, for the health endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub reason: String,
    pub since_ms: i64,
}

/// The highest seq the syncer has made durable, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Durable {
    seq: u64,
    failed: Option<String>,
}

#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    key: SigningKey,
    key_id: String,
    opts: Options,
    state: Mutex<State>,
    /// Wakes the syncer: something to sync, or closing.
    wake: Condvar,
    durable: watch::Sender<Durable>,
    /// The highest seq written: the index follows it.
    written: watch::Sender<u64>,
    /// The newest checkpoint, for sending off the host.
    anchor: watch::Sender<Option<Anchor>>,
    failing: Mutex<Option<Failing>>,
}

struct State {
    file: Arc<File>,
    segment: String,
    /// Bytes of the current segment known to hold complete records.
    len: u64,
    next_seq: u64,
    prev: Hash,
    unsealed: u64,
    first_unsealed: Option<Instant>,
    /// The `ts` of the first unsealed record.
    first_unsealed_ts: Option<i64>,
    /// The unsealed records will be sealed late: they were left by an
    /// earlier run, or a write failed while they waited.
    late: bool,
    /// The first unsynced write, when there is one.
    dirty_since: Option<Instant>,
    written_seq: u64,
    /// Set when a failed write left bytes that could not be cut off: the
    /// next append starts a new segment saying so.
    torn: Option<(String, u64, u64)>,
    closed: bool,
    buf: Vec<u8>,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir` and starts its syncer thread.
    pub fn open(dir: &Path, key: SigningKey, opts: Options) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::io("creating", dir, e))?;
        let segments = segment::list(dir)?;
        let tail = Tail::read(&segments)?;
        let key_id = key.public().id();
        write_public_key(dir, &key)?;
        let now = Instant::now();
        let (file, name, len, torn) = match segments.last() {
            Some(last) if tail.torn_bytes == 0 => {
                let file = open_append(&last.path)?;
                (file, last.name.clone(), tail.last_len, None)
            }
            Some(last) => {
                // A write that never finished: leave its bytes where they are
                // (they are evidence); the first append below goes on in a
                // new segment that says so.
                let torn = Some((last.name.clone(), tail.last_len, tail.torn_bytes));
                let file = open_append(&last.path)?;
                (file, last.name.clone(), tail.last_len, torn)
            }
            None => {
                let name = segment::name_for(1);
                let file = create_segment(dir, &name)?;
                (file, name, 0, None)
            }
        };
        let written_seq = tail.next_seq - 1;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            key,
            key_id,
            opts,
            state: Mutex::new(State {
                file: Arc::new(file),
                segment: name,
                len,
                next_seq: tail.next_seq,
                prev: tail.prev,
                unsealed: tail.unsealed,
                first_unsealed: (tail.unsealed > 0).then_some(now),
                first_unsealed_ts: None,
                late: tail.unsealed > 0,
                dirty_since: None,
                written_seq,
                torn,
                closed: false,
                buf: Vec::with_capacity(4096),
            }),
            wake: Condvar::new(),
            durable: watch::channel(Durable {
                seq: written_seq,
                failed: None,
            })
            .0,
            written: watch::channel(written_seq).0,
            anchor: watch::channel(None).0,
            failing: Mutex::new(None),
        });
        let log = AuditLog { inner };
        {
            // Records a crash left unsealed are sealed now, marked late: the
            // verifier accepts no long unsealed tail, and their time to this
            // checkpoint is the time the gateway was down.
            let mut st = log.inner.lock();
            if st.torn.is_some() || st.unsealed > 0 {
                let seal = st.unsealed > 0;
                log.inner.append_locked(&mut st, &[], seal)?;
            }
        }
        let syncer = log.inner.clone();
        std::thread::Builder::new()
            .name("airlock-audit-sync".into())
            .spawn(move || syncer.run_syncer())
            .map_err(|e| AuditError::io("starting the audit syncer", dir, e))?;
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The public half of the signing key: what verifies this log.
    pub fn public_key(&self) -> crate::key::PublicKey {
        self.inner.key.public()
    }

    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// The sealing rules this writer keeps (and signs in each checkpoint).
    pub fn terms(&self) -> Terms {
        self.inner.terms(false)
    }

    /// The seq of the last record written (handed to the kernel).
    pub fn written_seq(&self) -> u64 {
        *self.inner.written.borrow()
    }

    /// Follows the newest checkpoint, to send it off the host. When
    /// checkpoints come faster than a reader reads, it sees the newest; its
    /// signature covers every record before it.
    pub fn anchors(&self) -> watch::Receiver<Option<Anchor>> {
        self.inner.anchor.subscribe()
    }

    /// Writes `events` as consecutive records with one `write(2)`; returns
    /// the seq of the last. When this returns `Ok`, the kernel has them.
    pub fn append(&self, events: &[Event]) -> Result<u64, AuditError> {
        let mut st = self.inner.lock();
        self.inner.append_locked(&mut st, events, false)
    }

    /// Waits until record `seq` is as durable as the fsync mode promises:
    /// on disk for `always`, at once for the others.
    pub async fn durable(&self, seq: u64) -> Result<(), AuditError> {
        if self.inner.opts.fsync != FsyncMode::Always {
            return Ok(());
        }
        let mut rx = self.inner.durable.subscribe();
        let got = rx
            .wait_for(|d| d.seq >= seq || d.failed.is_some())
            .await
            .map_err(|_| AuditError::Closed)?;
        match &got.failed {
            Some(why) if got.seq < seq => Err(AuditError::Sync(why.clone())),
            _ => Ok(()),
        }
    }

    /// Seals the chain now, if anything is unsealed.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut st = self.inner.lock();
        if st.unsealed == 0 {
            return Ok(());
        }
        self.inner.append_locked(&mut st, &[], true).map(|_| ())
    }

    /// Why the log is failing to write, or `None` when it writes.
    pub fn health(&self) -> Option<Failing> {
        self.inner.failing.lock().expect("not poisoned").clone()
    }

    /// Follows the seq of the last record written.
    pub fn written(&self) -> watch::Receiver<u64> {
        self.inner.written.subscribe()
    }

    /// Seals the chain, syncs, and stops the syncer. Appends fail afterwards.
    pub fn close(&self) -> Result<(), AuditError> {
        let mut st = self.inner.lock();
        if st.closed {
            return Ok(());
        }
        let sealed = if st.unsealed > 0 {
            self.inner.append_locked(&mut st, &[], true).map(|_| ())
        } else {
            Ok(())
        };
        let synced = st
            .file
            .sync_data()
            .map_err(|e| AuditError::io("syncing", &self.inner.dir.join(&st.segment), e));
        if synced.is_ok() {
            let seq = st.written_seq;
            self.inner.durable.send_modify(|d| d.seq = d.seq.max(seq));
        }
        st.closed = true;
        drop(st);
        self.inner.wake.notify_all();
        sealed.and(synced)
    }

    /// Removes the oldest segments whose every record is older than
    /// `now - retain` (never the current one), after recording what goes in
    /// a `retention` record and sealing it. Returns what was removed.
    pub fn apply_retention(
        &self,
        retain: Duration,
        retain_text: &str,
    ) -> Result<Vec<RemovedSegment>, AuditError> {
        let cutoff = (self.inner.opts.now_ms)() - retain.as_millis() as i64;
        let current = self.inner.lock().segment.clone();
        let segments = segment::list(&self.inner.dir)?;
        let mut removed = Vec::new();
        let mut through: Option<(u64, Hash)> = None;
        for seg in &segments {
            if seg.name >= current {
                break;
            }
            let bytes =
                std::fs::read(&seg.path).map_err(|e| AuditError::io("reading", &seg.path, e))?;
            let (lines, _) = segment::lines(&bytes);
            let Some(&(_, last)) = lines.last() else {
                break;
            };
            let Some(head) = record::parse_head(last) else {
                // A damaged segment is kept for `verify` to report.
                break;
            };
            if head.ts >= cutoff {
                break;
            }
            let first = lines
                .first()
                .and_then(|(_, l)| record::parse_head(l))
                .map_or(seg.first_seq, |h| h.seq);
            removed.push(RemovedSegment {
                segment: seg.name.clone(),
                first_seq: first,
                last_seq: head.seq,
                last_ts: head.ts,
            });
            through = Some((head.seq, record::hash(last)));
        }
        let Some((through_seq, through_hash)) = through else {
            return Ok(Vec::new());
        };
        let event = Event::Retention {
            retain: retain_text.to_owned(),
            removed: removed.clone(),
            through_seq,
            through_hash: record::hex(&through_hash),
        };
        {
            let mut st = self.inner.lock();
            self.inner.append_locked(&mut st, &[event], true)?;
            st.file
                .sync_data()
                .map_err(|e| AuditError::io("syncing", &self.inner.dir.join(&st.segment), e))?;
        }
        for r in &removed {
            let path = self.inner.dir.join(&r.segment);
            std::fs::remove_file(&path).map_err(|e| AuditError::io("removing", &path, e))?;
        }
        segment::sync_dir(&self.inner.dir)
            .map_err(|e| AuditError::io("syncing", &self.inner.dir, e))?;
        Ok(removed)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the audit writer never panics holding its lock")
    }

    fn now_ms(&self) -> i64 {
        (self.opts.now_ms)()
    }

    fn terms(&self, late: bool) -> Terms {
        Terms {
            every: self.opts.checkpoint_every.max(1),
            interval_ms: u64::try_from(self.opts.checkpoint_interval.as_millis())
                .unwrap_or(u64::MAX),
            late,
        }
    }

    /// Appends a checkpoint sealing everything before `seq` to `buf`.
    fn seal(&self, buf: &mut Vec<u8>, seq: u64, prev: &Hash, ts: i64, late: bool) -> Anchor {
        let terms = self.terms(late);
        let sig = self.key.sign_checkpoint_v2(seq, ts, prev, &terms);
        let e = Event::Checkpoint {
            sealed: seq - 1,
            key: self.key_id.clone(),
            every: Some(terms.every),
            interval_ms: Some(terms.interval_ms),
            late,
            sig: sig.clone(),
        };
        let hash = record::encode(buf, seq, prev, ts, &e);
        Anchor {
            seq,
            hash,
            ts,
            key: self.key_id.clone(),
            sig,
        }
    }

    fn append_locked(
        &self,
        st: &mut State,
        events: &[Event],
        force_checkpoint: bool,
    ) -> Result<u64, AuditError> {
        if st.closed {
            return Err(AuditError::Closed);
        }
        if let Some((torn_segment, offset, torn_bytes)) = st.torn.clone() {
            // The last failed write left bytes behind: go on in a new segment.
            let name = segment::name_for(st.next_seq);
            let file = match create_segment(&self.dir, &name) {
                Ok(f) => f,
                Err(e) => return Err(self.fail(e)),
            };
            st.file = Arc::new(file);
            st.segment = name;
            st.len = 0;
            st.torn = None;
            let recovered = Event::Recovered {
                segment: torn_segment.clone(),
                offset,
                torn_bytes,
            };
            if let Err(e) = self.write_batch(st, std::slice::from_ref(&recovered), false) {
                st.torn = Some((torn_segment, offset, torn_bytes));
                return Err(e);
            }
        }
        let seq = self.write_batch(st, events, force_checkpoint)?;
        if st.len >= self.opts.segment_bytes {
            if let Err(e) = self.roll(st) {
                tracing::warn!(error = %e, "could not start a new audit segment; the current one grows");
            }
        }
        Ok(seq)
    }

    /// Encodes, chains and writes `events` (and a checkpoint when due).
    fn write_batch(
        &self,
        st: &mut State,
        events: &[Event],
        force_checkpoint: bool,
    ) -> Result<u64, AuditError> {
        let ts = self.now_ms();
        let every = self.opts.checkpoint_every.max(1);
        let max_span = self.terms(false).max_span_ms();
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        let mut seq = st.next_seq;
        let mut prev = st.prev;
        let mut unsealed = st.unsealed;
        let mut first_ts = st.first_unsealed_ts;
        let mut late = st.late;
        let mut anchor = None;
        // Whether a checkpoint in this batch sealed what was unsealed before it.
        let mut sealed_old = false;
        let mut seal =
            |buf: &mut Vec<u8>, seq: &mut u64, prev: &mut Hash, first: Option<i64>, late: bool| {
                // A wall clock that jumped (or a writer that stalled) makes the
                // stretch longer than the rules: the checkpoint says so.
                let late = late || first.is_some_and(|f| ts.saturating_sub(f) > max_span);
                let a = self.seal(buf, *seq, prev, ts, late);
                *prev = a.hash;
                *seq += 1;
                anchor = Some(a);
            };
        for e in events {
            prev = record::encode(&mut buf, seq, &prev, ts, e);
            seq += 1;
            unsealed += 1;
            first_ts.get_or_insert(ts);
            // A large batch is sealed every `every` records, like small ones.
            if unsealed >= every {
                seal(&mut buf, &mut seq, &mut prev, first_ts, late);
                (unsealed, first_ts, late, sealed_old) = (0, None, false, true);
            }
        }
        let due = unsealed > 0
            && (force_checkpoint
                || st
                    .first_unsealed
                    .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_interval));
        if due {
            seal(&mut buf, &mut seq, &mut prev, first_ts, late);
            (unsealed, first_ts, late, sealed_old) = (0, None, false, true);
        }
        if buf.is_empty() {
            st.buf = buf;
            return Ok(st.next_seq - 1);
        }
        let result = (&*st.file).write_all(&buf);
        let wrote = buf.len() as u64;
        st.buf = buf;
        if let Err(e) = result {
            // What was unsealed waits through the failure: sealed late.
            if st.unsealed > 0 {
                st.late = true;
            }
            let path = self.dir.join(&st.segment);
            // Cut off what part of the batch reached the file: it was never
            // acknowledged and the chain must not fork.
            if let Err(cut) = st.file.set_len(st.len) {
                tracing::error!(error = %cut, segment = %st.segment, "could not cut off a failed audit write; the next record starts a new segment");
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                st.torn = Some((st.segment.clone(), st.len, size.saturating_sub(st.len)));
            }
            return Err(self.fail(AuditError::io("writing", &path, e)));
        }
        st.len += wrote;
        st.next_seq = seq;
        st.prev = prev;
        st.unsealed = unsealed;
        st.first_unsealed_ts = first_ts;
        st.late = late;
        if unsealed == 0 {
            st.first_unsealed = None;
        } else if sealed_old || st.first_unsealed.is_none() {
            st.first_unsealed = Some(Instant::now());
        }
        st.written_seq = seq - 1;
        if st.dirty_since.is_none() {
            st.dirty_since = Some(Instant::now());
            self.wake.notify_one();
        }
        self.written.send_replace(seq - 1);
        if let Some(a) = anchor {
            self.anchor.send_replace(Some(a));
        }
        self.recovered();
        Ok(seq - 1)
    }

    /// Seals and syncs the current segment and starts the next one.
    fn roll(&self, st: &mut State) -> Result<(), AuditError> {
        if st.unsealed > 0 {
            self.write_batch(st, &[], true)?;
        }
        let path = self.dir.join(&st.segment);
        st.file
            .sync_data()
            .map_err(|e| AuditError::io("syncing", &path, e))?;
        let synced = st.written_seq;
        self.durable.send_modify(|d| d.seq = d.seq.max(synced));
        let name = segment::name_for(st.next_seq);
        let file = create_segment(&self.dir, &name)?;
        st.file = Arc::new(file);
        st.segment = name;
        st.len = 0;
        st.dirty_since = None;
        Ok(())
    }

    fn fail(&self, e: AuditError) -> AuditError {
        let mut f = self.failing.lock().expect("not poisoned");
        if f.is_none() {
            tracing::error!(error = %e, "the audit log cannot be written; statements are refused until it can");
            *f = Some(Failing {
                reason: e.to_string(),
                since_ms: self.now_ms(),
            });
        } else if let Some(f) = f.as_mut() {
            f.reason = e.to_string();
        }
        e
    }

    fn recovered(&self) {
        let mut f = self.failing.lock().expect("not poisoned");
        if f.take().is_some() {
            tracing::warn!("the audit log is writing again");
        }
    }

    fn run_syncer(self: Arc<Self>) {
        let window = match self.opts.fsync {
            FsyncMode::Always => Duration::ZERO,
            FsyncMode::Batched(w) => w,
            FsyncMode::Off => Duration::MAX,
        };
        let tick = self.opts.checkpoint_interval.min(Duration::from_secs(1));
        let mut st = self.lock();
        loop {
            if st.closed {
                return;
            }
            // A quiet log is still sealed within the checkpoint interval.
            if st
                .first_unsealed
                .is_some_and(|t| t.elapsed() >= self.opts.checkpoint_interval)
            {
                if let Err(e) = self.write_batch(&mut st, &[], true) {
                    tracing::warn!(error = %e, "writing a timed audit checkpoint failed");
                }
            }
            let due = st
                .dirty_since
                .filter(|_| window != Duration::MAX)
                .map(|t| t + window);
            match due {
                Some(due) if Instant::now() >= due => {
                    let file = st.file.clone();
                    let seq = st.written_seq;
                    let segment = st.segment.clone();
                    st.dirty_since = None;
                    drop(st);
                    let result = file.sync_data();
                    match result {
                        Ok(()) => self.durable.send_modify(|d| {
                            d.seq = d.seq.max(seq);
                            d.failed = None;
                        }),
                        Err(e) => {
                            let e =
                                self.fail(AuditError::io("syncing", &self.dir.join(&segment), e));
                            self.durable.send_modify(|d| d.failed = Some(e.to_string()));
                        }
                    }
                    st = self.lock();
                }
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now()).min(tick);
                    st = self.wake.wait_timeout(st, wait).expect("not poisoned").0;
                }
                None => {
                    st = self.wake.wait_timeout(st, tick).expect("not poisoned").0;
                }
            }
        }
    }
}

/// Where the chain stands at the end of the existing segments.
struct Tail {
    next_seq: u64,
    prev: Hash,
    unsealed: u64,
    /// Bytes of the last segment up to its last complete record.
    last_len: u64,
    torn_bytes: u64,
}

impl Tail {
    fn read(segments: &[Segment]) -> Result<Tail, AuditError> {
        let mut tail = Tail {
            next_seq: 1,
            prev: GENESIS,
            unsealed: 0,
            last_len: 0,
            torn_bytes: 0,
        };
        // The last record may sit in an earlier segment when the last one
        // holds nothing complete.
        for (i, seg) in segments.iter().enumerate().rev() {
            let bytes =
                std::fs::read(&seg.path).map_err(|e| AuditError::io("reading", &seg.path, e))?;
            let (lines, torn) = segment::lines(&bytes);
            if i == segments.len() - 1 {
                tail.torn_bytes = torn.len() as u64;
                tail.last_len = (bytes.len() - torn.len()) as u64;
            }
            let Some(&(_, last)) = lines.last() else {
                continue;
            };
            let head = record::parse_head(last).ok_or_else(|| {
                AuditError::Damaged(format!(
                    "the last record of {} is unreadable; run `airlock audit verify` to see what happened to the log",
                    seg.path.display()
                ))
            })?;
            tail.next_seq = head.seq + 1;
            tail.prev = record::hash(last);
            tail.unsealed = lines
                .iter()
                .rev()
                .take_while(|(_, l)| record::parse_head(l).is_none_or(|h| h.kind != "checkpoint"))
                .count() as u64;
            break;
        }
        Ok(tail)
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| AuditError::io("opening", path, e))
}

fn create_segment(dir: &Path, name: &str) -> Result<File, AuditError> {
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| AuditError::io("creating", &path, e))?;
    segment::sync_dir(dir).map_err(|e| AuditError::io("syncing", dir, e))?;
    Ok(file)
}

fn write_public_key(dir: &Path, key: &SigningKey) -> Result<(), AuditError> {
    let path = dir.join(crate::PUBLIC_KEY_FILE);
    let pem = key.public().to_pem();
    if std::fs::read_to_string(&path).is_ok_and(|t| t == pem) {
        return Ok(());
    }
    std::fs::write(&path, pem).map_err(|e| AuditError::io("writing", &path, e))
}
