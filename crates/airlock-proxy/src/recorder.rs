//! Records sessions and the statements they send in the store, off the hot
//! path.
//!
//! Sessions hand events to a bounded channel; one writer thread drains it and
//! writes batches (one SQLite transaction per batch). When the writer falls
//! behind, sessions wait on the channel instead of dropping records: this
//! record is the gateway core's account of what people did, until the
//! hash-chained audit log of a later issue replaces it (with its stricter
//! "written before forwarded" rule).

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use airlock_store::{SessionRecord, StatementRecord, Store};

const CHANNEL_CAPACITY: usize = 16 * 1024;
const MAX_BATCH: usize = 2048;
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

#[derive(Debug)]
pub enum RecordEvent {
    Started(SessionRecord),
    Statement(StatementRecord),
    Ended {
        id: String,
        ended_ms: i64,
        reason: String,
    },
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<RecordEvent>,
}

pub struct RecorderThread {
    handle: Option<JoinHandle<()>>,
}

impl RecorderThread {
    /// Waits until every event sent before all `Recorder` clones were dropped
    /// has been written.
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> (Recorder, RecorderThread) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("airlock-recorder".into())
            .spawn(move || writer(store, rx))
            .expect("spawning the recorder thread");
        (
            Recorder { tx },
            RecorderThread {
                handle: Some(handle),
            },
        )
    }

    pub async fn record(&self, event: RecordEvent) {
        // An error means the writer is gone (the gateway is stopping): there is
        // no one left to hand the record to.
        if let Err(e) = self.tx.send(event).await {
            // Only the kind: statement texts may hold sensitive values.
            let kind = match e.0 {
                RecordEvent::Started(_) => "session start",
                RecordEvent::Statement(_) => "statement",
                RecordEvent::Ended { .. } => "session end",
            };
            tracing::error!(kind, "session recorder is gone; record lost");
        }
    }
}

fn writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<RecordEvent>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        drain(&mut rx, &mut batch);
        if batch.len() < MAX_BATCH / 4 {
            // Under load, one SQLite transaction per few milliseconds costs
            // far less CPU (which the gateway shares with the database) than
            // one per event; an idle gateway pays only this short delay.
            std::thread::sleep(BATCH_WINDOW);
            drain(&mut rx, &mut batch);
        }
        write_batch(store.as_ref(), &mut batch);
    }
}

fn drain(rx: &mut mpsc::Receiver<RecordEvent>, batch: &mut Vec<RecordEvent>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(_) => break,
        }
    }
}

/// Writes events in order, grouping runs of statements into one call.
fn write_batch(store: &dyn Store, batch: &mut Vec<RecordEvent>) {
    let mut statements: Vec<StatementRecord> = Vec::new();
    let flush = |statements: &mut Vec<StatementRecord>| {
        if !statements.is_empty() {
            if let Err(e) = store.statements(statements) {
                tracing::error!(error = %e, count = statements.len(), "recording statements failed");
            }
            statements.clear();
        }
    };
    for event in batch.drain(..) {
        match event {
            RecordEvent::Statement(s) => statements.push(s),
            RecordEvent::Started(s) => {
                flush(&mut statements);
                if let Err(e) = store.session_started(&s) {
                    tracing::error!(error = %e, session = %s.id, "recording session start failed");
                }
            }
            RecordEvent::Ended {
                id,
                ended_ms,
                reason,
            } => {
                flush(&mut statements);
                if let Err(e) = store.session_ended(&id, ended_ms, &reason) {
                    tracing::error!(error = %e, session = %id, "recording session end failed");
                }
            }
        }
    }
    flush(&mut statements);
}

/// One session's statements on their way to the recorder.
pub struct SessionLog {
    recorder: Recorder,
    clock: Arc<dyn airlock_access::Clock>,
    session_id: String,
    seq: i64,
    pending: Vec<StatementRecord>,
}

impl SessionLog {
    pub fn new(
        recorder: Recorder,
        clock: Arc<dyn airlock_access::Clock>,
        session_id: String,
    ) -> SessionLog {
        SessionLog {
            recorder,
            clock,
            session_id,
            seq: 0,
            pending: Vec::new(),
        }
    }

    /// Notes a statement text about to be forwarded (a Query, a Parse, a
    /// fast-path call). Text in another client_encoding than UTF-8 is kept
    /// with invalid sequences replaced.
    pub fn statement(&mut self, text: &[u8]) {
        self.seq += 1;
        self.pending.push(StatementRecord {
            session_id: self.session_id.clone(),
            seq: self.seq,
            at_ms: self.clock.now_ms(),
            text: String::from_utf8_lossy(text).into_owned(),
        });
    }

    pub fn count(&self) -> i64 {
        self.seq
    }

    /// Hands pending statements to the recorder, waiting if it is behind.
    pub async fn flush(&mut self) {
        for s in self.pending.drain(..) {
            self.recorder.record(RecordEvent::Statement(s)).await;
        }
    }
}
