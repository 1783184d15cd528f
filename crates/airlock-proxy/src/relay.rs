//! The session relay: after login, bytes flow both ways until one side ends
//! the session, the session's time is up, or the gateway shuts down.
//!
//! Both directions run concurrently inside the session's one task. They must:
//! a client that pipelines queries while PostgreSQL is busy writing results
//! would deadlock a relay that blocks on one direction while the other's
//! buffers are full. Each direction reads into a bounded buffer, scans it for
//! message boundaries, and writes what it read before reading more, so a slow
//! reader on one side pushes back on the other side's socket instead of
//! growing memory.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use airlock_pgwire::messages::tag::{backend as btag, frontend as ftag};
use airlock_pgwire::ProtocolError;

use crate::audit::SessionLog;
use crate::completion::Tracker;
use crate::error::UserFacingError;
use crate::gate::{Gate, Substitutions};
use crate::parameters::ParameterWatch;
use crate::results::{Out, ResultFilter};
use crate::scanner::{Scanner, Step};

/// Read size: large enough that a stream of small rows costs few syscalls,
/// small enough that 500 idle sessions stay cheap.
const READ_CHUNK: usize = 8 * 1024;
/// A buffer grown for one large inspected message is given back once idle.
const SHRINK_ABOVE: usize = 64 * 1024;
/// How long a session that must end may take to reach a message boundary
/// before it is cut mid-message.
const END_GRACE: Duration = Duration::from_millis(500);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its connection without Terminate.
    ClientClosed,
    /// The upstream closed its connection (its FATAL, if any, was relayed).
    UpstreamClosed,
    /// The session's time ran out (credential expiry).
    Expired,
    /// The gateway is shutting down.
    Shutdown,
    /// The grant behind the session ended (expired, revoked, or no longer
    /// allowed by the policy); the text says which grant and why.
    AccessEnded(String),
    /// A side broke the protocol; the text says how.
    ProtocolViolation(String),
    /// An IO error on one side.
    Io(String),
    /// What PostgreSQL reported shows the session's protection moved
    /// ([`crate::parameters`]); the text says what changed.
    ProtectionLost(String),
    /// The audit log could not make the session's records durable
    /// (`fsync = "always"`): nothing more is forwarded.
    AuditFailed(String),
}

impl EndReason {
    pub fn as_text(&self) -> String {
        match self {
            EndReason::ClientTerminated => "client terminated".into(),
            EndReason::ClientClosed => "client disconnected".into(),
            EndReason::UpstreamClosed => "upstream closed the connection".into(),
            EndReason::Expired => "session credential expired".into(),
            EndReason::Shutdown => "gateway shut down".into(),
            EndReason::AccessEnded(s) => s.clone(),
            EndReason::ProtocolViolation(s) => format!("protocol violation: {s}"),
            EndReason::Io(s) => format!("connection error: {s}"),
            EndReason::ProtectionLost(s) => format!("session protection lost: {s}"),
            EndReason::AuditFailed(s) => format!("audit log failed: {s}"),
        }
    }
}

pub struct RelayLimits {
    pub max_message: usize,
    /// When the session must end (credential expiry); `None` for never.
    pub deadline: Option<Instant>,
    /// What the client is told when `deadline` ends the session; `None`
    /// says the session credential expired.
    pub deadline_message: Option<String>,
    /// Set by the access enforcer when the session's grant ends: the text
    /// names the grant and why.
    pub stop: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// Checks every ParameterStatus the upstream sends.
    pub watch: ParameterWatch,
    /// Counts the upstream's ReadyForQuery messages for the gate of a read
    /// session, which waits on them.
    pub ready: Option<tokio::sync::watch::Sender<u64>>,
}

pub struct RelayStats {
    pub from_client: u64,
    pub to_client: u64,
}

/// Runs the relay until the session ends.
#[allow(clippy::too_many_arguments)]
pub async fn relay<C, U>(
    client: C,
    client_buf: BytesMut,
    upstream: U,
    upstream_buf: BytesMut,
    mut limits: RelayLimits,
    shutdown: CancellationToken,
    sink: &mut SessionLog,
    gate: &mut Gate,
    filter: Option<&mut ResultFilter>,
    tracker: &mut Tracker,
    txn_status: &AtomicU8,
) -> (EndReason, RelayStats)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut upstream_r, mut upstream_w) = tokio::io::split(upstream);
    let mut c2u_stats = 0u64;
    let mut u2c_stats = 0u64;

    let ending = CancellationToken::new();
    let subs = gate.substitutions();
    // Set when the session was cut mid-message: no goodbye can be framed then.
    let mut cut = false;
    let reason = {
        let c2u = client_to_upstream(
            &mut client_r,
            client_buf,
            &mut upstream_w,
            limits.max_message,
            sink,
            gate,
            &mut c2u_stats,
        );
        let u2c = upstream_to_client(
            &mut upstream_r,
            upstream_buf,
            &mut client_w,
            limits.max_message,
            txn_status,
            &subs,
            filter,
            tracker,
            &mut u2c_stats,
            &ending,
            (&mut limits.watch, limits.ready.as_ref()),
        );
        tokio::pin!(c2u);
        tokio::pin!(u2c);
        let deadline = async {
            match limits.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut stop = limits.stop;
        let stopped = async {
            match stop.as_mut() {
                Some(rx) => {
                    let why = rx
                        .wait_for(Option::is_some)
                        .await
                        .map(|v| v.clone().unwrap_or_default());
                    match why {
                        Ok(why) => why,
                        // The enforcer is gone (gateway stopping): shutdown handles that.
                        Err(_) => std::future::pending().await,
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopped);
        let mut end_requested: Option<EndReason> = None;
        // Once an end is requested the upstream→client direction gets this
        // long to reach a message boundary; then the session is cut anyway.
        let grace = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                r = &mut c2u => break r,
                r = &mut u2c => break end_requested.take().unwrap_or(r),
                _ = &mut deadline, if end_requested.is_none() => {
                    end_requested = Some(match limits.deadline_message.take() {
                        Some(why) => EndReason::AccessEnded(why),
                        None => EndReason::Expired,
                    });
                    ending.cancel();
                    grace.as_mut().reset(Instant::now() + END_GRACE);
                }
                why = &mut stopped, if end_requested.is_none() => {
                    end_requested = Some(EndReason::AccessEnded(why));
                    ending.cancel();
                    grace.as_mut().reset(Instant::now() + END_GRACE);
                }
                _ = shutdown.cancelled(), if end_requested.is_none() => {
                    end_requested = Some(EndReason::Shutdown);
                    ending.cancel();
                    grace.as_mut().reset(Instant::now() + END_GRACE);
                }
                _ = &mut grace, if end_requested.is_some() => {
                    cut = true;
                    break end_requested.take().unwrap_or(EndReason::Shutdown);
                }
            }
        }
    };
    let stats = RelayStats {
        from_client: c2u_stats,
        to_client: u2c_stats,
    };

    // Tell the client why, unless it already left. The upstream→client
    // direction stopped at a message boundary, so the FATAL is well-framed.
    let goodbye = match &reason {
        _ if cut => None,
        EndReason::Expired => Some(
            UserFacingError::fatal(
                airlock_pgwire::sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because the session credential expired",
            )
            .hint("get a new credential with `airlock connect <resource>` and reconnect"),
        ),
        EndReason::Shutdown => Some(
            UserFacingError::fatal(
                airlock_pgwire::sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because the Airlock gateway is shutting down",
            )
            .hint("reconnect in a moment; the gateway is restarting or being replaced"),
        ),
        EndReason::AccessEnded(why) => Some(UserFacingError::fatal(
            airlock_pgwire::sqlstate::ADMIN_SHUTDOWN,
            format!("terminating connection: {why}"),
        )),
        EndReason::ProtocolViolation(s) => Some(UserFacingError::protocol(s.clone())),
        EndReason::ProtectionLost(s) => Some(
            UserFacingError::fatal(
                airlock_pgwire::sqlstate::ADMIN_SHUTDOWN,
                format!("terminating connection: {s}"),
            )
            .detail("Airlock ends a session whose protection moved, before anything more of it reaches the database; the audit log records what changed")
            .hint("a function or setting changed the session; reconnect, and do not change this setting"),
        ),
        EndReason::AuditFailed(s) => Some(
            UserFacingError::fatal(
                airlock_pgwire::sqlstate::IO_ERROR,
                format!("terminating connection: the Airlock audit log failed ({s})"),
            )
            .detail("statements already sent were not forwarded")
            .hint("tell the gateway's operator (see its /healthz); reconnect once the audit log is healthy"),
        ),
        _ => None,
    };
    let sent_goodbye = goodbye.is_some();
    if let Some(e) = goodbye {
        let mut out = BytesMut::new();
        airlock_pgwire::BackendMessage::ErrorResponse(e.to_response()).encode(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            client_w.write_all(&out).await?;
            client_w.flush().await
        })
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), client_w.shutdown()).await;
    if sent_goodbye {
        // Closing a socket with unread input makes the kernel send a reset,
        // which can destroy the FATAL before the client reads it (a client
        // cut off mid-message is typically still writing). Read and discard
        // briefly so the goodbye arrives.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let mut sink = vec![0u8; 16 * 1024];
            while matches!(client_r.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    // Leave the upstream politely so PostgreSQL does not log an unexpected EOF.
    if reason != EndReason::ClientTerminated {
        let mut x = BytesMut::new();
        airlock_pgwire::Frame::new(ftag::TERMINATE, bytes::Bytes::new()).encode(&mut x);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            upstream_w.write_all(&x).await?;
            upstream_w.flush().await
        })
        .await;
    }
    (reason, stats)
}

fn reserve_for_read(buf: &mut BytesMut, need: usize) {
    if buf.is_empty() && buf.capacity() > SHRINK_ABOVE && need <= READ_CHUNK {
        *buf = BytesMut::with_capacity(READ_CHUNK);
    }
    let want = need.max(buf.len() + READ_CHUNK / 2);
    if buf.capacity() < want {
        buf.reserve(want - buf.len());
    }
}

async fn client_to_upstream<R, W>(
    client: &mut R,
    mut buf: BytesMut,
    upstream: &mut W,
    max_message: usize,
    sink: &mut SessionLog,
    gate: &mut Gate,
    bytes_in: &mut u64,
) -> EndReason
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // A Query or Parse longer than the statement limit is never held whole.
    let mut scanner = Scanner::new(max_message)
        .hold_oversized(&[ftag::QUERY, ftag::PARSE], gate.oversized_limit());
    // What goes upstream once the gate has held a message in this batch.
    let mut out = BytesMut::new();
    let mut need = 0;
    loop {
        let mut stop = false;
        while !buf.is_empty() {
            let scanned = scanner.scan::<ProtocolError>(
                &buf,
                |t| t == ftag::TERMINATE || gate.inspects(t),
                |tag, _| {
                    Ok(if tag == ftag::TERMINATE {
                        Step::ForwardAndStop
                    } else {
                        Step::Hold
                    })
                },
            );
            let scanned = match scanned {
                Ok(s) => s,
                Err(e) => return EndReason::ProtocolViolation(e.to_string()),
            };
            need = scanned.need;
            stop = scanned.stop;
            if out.is_empty() && scanned.held.is_none() && scanned.oversized.is_none() {
                // Nothing held in this batch: forward straight from the read
                // buffer (records first, bytes second).
                if let Err(e) = sink.durable().await {
                    return EndReason::AuditFailed(e.to_string());
                }
                if scanned.forward > 0 {
                    gate.wait_answered().await;
                    gate.unpaused().await;
                    if let Err(e) = write_out(upstream, &buf[..scanned.forward]).await {
                        return EndReason::Io(format!("writing to upstream: {e}"));
                    }
                    buf.advance(scanned.forward);
                }
                break;
            }
            out.extend_from_slice(&buf[..scanned.forward]);
            buf.advance(scanned.forward);
            if let Some(total) = scanned.oversized {
                // What came before it goes now, not after the long read.
                if let Err(end) = send(upstream, &mut out, sink, gate).await {
                    return end;
                }
                let (tag, text) = match read_through(client, &mut buf, total, bytes_in).await {
                    Ok(t) => t,
                    Err(end) => return end,
                };
                gate.refuse_oversized(tag, &text, &mut out, sink);
                if let Err(end) = barrier(upstream, &mut out, sink, gate).await {
                    return end;
                }
                continue;
            }
            match scanned.held {
                Some(total) => {
                    let msg = buf.split_to(total).freeze();
                    gate.handle(msg, &mut out, sink).await;
                    if let Err(end) = barrier(upstream, &mut out, sink, gate).await {
                        return end;
                    }
                }
                None => break,
            }
        }
        if let Err(end) = send(upstream, &mut out, sink, gate).await {
            return end;
        }
        if stop {
            return EndReason::ClientTerminated;
        }
        reserve_for_read(&mut buf, need);
        match client.read_buf(&mut buf).await {
            Ok(0) => return EndReason::ClientClosed,
            Ok(n) => *bytes_in += n as u64,
            Err(e) => return EndReason::Io(format!("reading from client: {e}")),
        }
    }
}

/// What the relay kept of a Query or Parse too long to hold
/// ([`Gate::refuse_oversized`]).
#[derive(Debug)]
pub struct OversizedText {
    /// A Parse's statement name (its first 1 KiB).
    pub name: Vec<u8>,
    /// The first [`crate::audit::CUT_TEXT_PREFIX`] bytes of the query text.
    pub prefix: Vec<u8>,
    /// The query text's length in bytes (up to its terminating NUL).
    pub len: u64,
    /// The query text's SHA-256.
    pub sha256: [u8; 32],
}

/// Follows a Query or Parse body piece by piece: the name (Parse), then
/// the text up to its NUL (hashed, its start kept), then the rest.
struct TextReader {
    in_name: bool,
    text_done: bool,
    name: Vec<u8>,
    prefix: Vec<u8>,
    len: u64,
    hash: sha2::Sha256,
}

impl TextReader {
    const MAX_NAME: usize = 1024;

    fn new(parse: bool) -> TextReader {
        use sha2::Digest as _;
        TextReader {
            in_name: parse,
            text_done: false,
            name: Vec::new(),
            prefix: Vec::new(),
            len: 0,
            hash: sha2::Sha256::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        use sha2::Digest as _;
        if self.in_name {
            let end = bytes.iter().position(|&b| b == 0);
            let part = &bytes[..end.unwrap_or(bytes.len())];
            let room = Self::MAX_NAME.saturating_sub(self.name.len());
            self.name.extend_from_slice(&part[..part.len().min(room)]);
            match end {
                Some(i) => {
                    self.in_name = false;
                    bytes = &bytes[i + 1..];
                }
                None => return,
            }
        }
        if self.text_done {
            return;
        }
        let end = bytes.iter().position(|&b| b == 0);
        let part = &bytes[..end.unwrap_or(bytes.len())];
        self.hash.update(part);
        self.len += part.len() as u64;
        let room = crate::audit::CUT_TEXT_PREFIX.saturating_sub(self.prefix.len());
        self.prefix.extend_from_slice(&part[..part.len().min(room)]);
        self.text_done = end.is_some();
    }

    fn finish(self) -> OversizedText {
        use sha2::Digest as _;
        OversizedText {
            name: self.name,
            prefix: self.prefix,
            len: self.len,
            sha256: self.hash.finalize().into(),
        }
    }
}

/// Reads a message of `total` bytes (its header at the front of `buf`)
/// through in read-sized pieces, keeping only what [`OversizedText`]
/// holds: memory stays bounded whatever the length the client declared.
async fn read_through<R: AsyncRead + Unpin>(
    client: &mut R,
    buf: &mut BytesMut,
    total: usize,
    bytes_in: &mut u64,
) -> Result<(u8, OversizedText), EndReason> {
    let tag = buf[0];
    buf.advance(5);
    let mut left = total - 5;
    let mut text = TextReader::new(tag == ftag::PARSE);
    loop {
        let n = left.min(buf.len());
        text.feed(&buf[..n]);
        buf.advance(n);
        left -= n;
        if left == 0 {
            return Ok((tag, text.finish()));
        }
        if buf.capacity() > SHRINK_ABOVE {
            *buf = BytesMut::with_capacity(READ_CHUNK);
        }
        buf.reserve(READ_CHUNK);
        match client.read_buf(buf).await {
            Ok(0) => return Err(EndReason::ClientClosed),
            Ok(n) => *bytes_in += n as u64,
            Err(e) => return Err(EndReason::Io(format!("reading from client: {e}"))),
        }
    }
}

/// In a read session, after a message that must be answered before anything
/// more goes upstream (a Query or Sync): sends what the gate has now. What
/// comes after it is read and handled meanwhile, but goes upstream (and is
/// recorded) only once that ReadyForQuery, and every ParameterStatus before
/// it, has been seen ([`Gate::wait_answered`]).
async fn barrier<W: AsyncWrite + Unpin>(
    upstream: &mut W,
    out: &mut BytesMut,
    sink: &mut SessionLog,
    gate: &mut Gate,
) -> Result<(), EndReason> {
    if !gate.at_barrier() {
        return Ok(());
    }
    send(upstream, out, sink, gate).await
}

/// Sends what the gate put in `out`. Records first, bytes second: every
/// record of the batch is written in one append ([`Gate::commit`], which
/// refuses the batch's statements instead when it cannot), and synced with
/// fsync = "always", before any byte of it reaches the upstream.
async fn send<W: AsyncWrite + Unpin>(
    upstream: &mut W,
    out: &mut BytesMut,
    sink: &mut SessionLog,
    gate: &mut Gate,
) -> Result<(), EndReason> {
    if out.is_empty() {
        return Ok(());
    }
    gate.wait_answered().await;
    gate.commit(out, sink);
    if let Err(e) = sink.durable().await {
        return Err(EndReason::AuditFailed(e.to_string()));
    }
    gate.unpaused().await;
    if let Err(e) = write_out(upstream, out).await {
        return Err(EndReason::Io(format!("writing to upstream: {e}")));
    }
    out.clear();
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn upstream_to_client<R, W>(
    upstream: &mut R,
    mut buf: BytesMut,
    client: &mut W,
    max_message: usize,
    txn_status: &AtomicU8,
    subs: &Substitutions,
    mut filter: Option<&mut ResultFilter>,
    tracker: &mut Tracker,
    bytes_out: &mut u64,
    ending: &CancellationToken,
    (watch, ready): (
        &mut ParameterWatch,
        Option<&tokio::sync::watch::Sender<u64>>,
    ),
) -> EndReason
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut scanner = Scanner::new(max_message);
    let filter_tags = filter.as_ref().map_or(0, |f| f.tags());
    let tracked_tags = Tracker::tags();
    // DataRows are seen whole only while the tracker keeps rows for replay;
    // the others are counted as they go by.
    let want_rows = std::cell::Cell::new(tracker.wants_rows());
    let rows_passed = std::cell::Cell::new(0u64);
    // What goes to the client once a message in this batch was replaced.
    let mut out = BytesMut::new();
    let mut need = 0;
    loop {
        while !buf.is_empty() {
            // ErrorResponses are looked at only while a refusal is on its way.
            let watch_errors = subs.any();
            let mut replacement: Option<Bytes> = None;
            let mut broken: Option<String> = None;
            let scanned = scanner.scan::<ProtocolError>(
                &buf,
                |t| {
                    let whole = t == btag::READY_FOR_QUERY
                        || t == btag::PARAMETER_STATUS
                        || (watch_errors && t == btag::ERROR_RESPONSE)
                        || (t < 128 && (filter_tags | tracked_tags) & (1 << t) != 0)
                        || (t == btag::DATA_ROW && want_rows.get());
                    if t == btag::DATA_ROW && !whole {
                        rows_passed.set(rows_passed.get() + 1);
                    }
                    whole
                },
                |tag, body| {
                    if tag == btag::PARAMETER_STATUS {
                        if let Err(why) = watch.observe_body(body) {
                            // Neither this nor anything after it reaches
                            // the client; the session ends here.
                            broken = Some(why);
                            replacement = Some(Bytes::new());
                            return Ok(Step::Hold);
                        }
                    }
                    if tag == btag::READY_FOR_QUERY {
                        if let Some(&status) = body.first() {
                            txn_status.store(status, Ordering::Relaxed);
                        }
                        if let Some(ready) = ready {
                            ready.send_modify(|n| *n += 1);
                        }
                    }
                    if let Some(f) = filter.as_deref_mut() {
                        match f.on_message(tag, body)? {
                            Out::Forward => {}
                            Out::Replace(b) => replacement = Some(b),
                            Out::Drop => replacement = Some(Bytes::new()),
                        }
                    }
                    if watch_errors && tag == btag::ERROR_RESPONSE {
                        if let Some(r) = subs.take_for(body) {
                            // The error a refusal provoked: the client gets the refusal.
                            replacement = Some(r);
                        }
                    }
                    tracker.count_rows(rows_passed.replace(0));
                    tracker.observe(tag, body, replacement.as_deref());
                    want_rows.set(tracker.wants_rows());
                    Ok(if replacement.is_some() {
                        Step::Hold
                    } else {
                        Step::Forward
                    })
                },
            );
            let scanned = match scanned {
                Ok(s) => s,
                Err(e) => {
                    return EndReason::ProtocolViolation(format!("from upstream: {e}"));
                }
            };
            need = scanned.need;
            if let Some(why) = broken {
                out.extend_from_slice(&buf[..scanned.forward]);
                if let Err(e) = write_out(client, &out).await {
                    return EndReason::Io(format!("writing to client: {e}"));
                }
                *bytes_out += out.len() as u64;
                return EndReason::ProtectionLost(why);
            }
            let (Some(total), Some(r)) = (scanned.held, replacement) else {
                // Nothing replaced in this scan.
                if out.is_empty() {
                    if scanned.forward > 0 {
                        if let Err(e) = write_out(client, &buf[..scanned.forward]).await {
                            return EndReason::Io(format!("writing to client: {e}"));
                        }
                        *bytes_out += scanned.forward as u64;
                        buf.advance(scanned.forward);
                    }
                } else {
                    out.extend_from_slice(&buf[..scanned.forward]);
                    buf.advance(scanned.forward);
                }
                break;
            };
            out.extend_from_slice(&buf[..scanned.forward]);
            buf.advance(scanned.forward + total);
            out.extend_from_slice(&r);
        }
        if !out.is_empty() {
            if let Err(e) = write_out(client, &out).await {
                return EndReason::Io(format!("writing to client: {e}"));
            }
            *bytes_out += out.len() as u64;
            out.clear();
        }
        // The results went out: the records of how their statements ended
        // wait for the next statement record, or are written when due.
        tracker.count_rows(rows_passed.replace(0));
        tracker.flush_if_due();
        // The session is to end: stop here if we are between messages, so the
        // caller's FATAL is not spliced into the middle of a row.
        if ending.is_cancelled() && scanner.at_boundary() {
            return EndReason::Shutdown;
        }
        reserve_for_read(&mut buf, need);
        let due = tracker.due();
        tokio::select! {
            r = upstream.read_buf(&mut buf) => match r {
                Ok(0) => return EndReason::UpstreamClosed,
                Ok(_) => {}
                Err(e) => return EndReason::Io(format!("reading from upstream: {e}")),
            },
            _ = ending.cancelled(), if !ending.is_cancelled() && scanner.at_boundary() => {}
            // An idle session's completions are written when due.
            _ = tokio::time::sleep_until(due.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)), if due.is_some() => {
                tracker.flush_if_due();
            }
        }
    }
}

async fn write_out<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    // TLS streams buffer records until flushed; plain TCP flush is free.
    w.flush().await
}
