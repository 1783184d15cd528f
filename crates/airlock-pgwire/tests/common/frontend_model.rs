//! A model of what the gateway does with the bytes a client sends, with the
//! properties every input must keep. It is the body of the `frontend` fuzz
//! target and of the stable test `tests/fuzz_corpus.rs`.
//!
//! The file is shared by path (`#[path = ...] mod frontend_model;`) rather
//! than exported by `airlock-pgwire`: the fuzz project is a separate Cargo
//! workspace that cannot see the crate's integration tests, and the crate's
//! public API should not grow a module that exists only for testing. A module
//! included by path from both places is written once, cannot drift, and keeps
//! its `//!` docs (which `include!` would reject as inner attributes).
//!
//! Properties checked, by assertion (a failure is a panic, which is what the
//! fuzzer looks for):
//! - no decoder panics, on any input;
//! - everything decoded re-encodes to the same bytes (CopyFail excepted: it
//!   keeps text lossily) and decodes back to the same value;
//! - feeding the input in small chunks, as reads from a socket do, gives the
//!   same messages and the same end as feeding it at once: "incomplete" never
//!   turns into "violation" or the other way round.

use airlock_pgwire::codec::{
    decode_frame, decode_startup, StartupPacket, DEFAULT_MAX_MESSAGE, GSSENC_REQUEST_CODE,
    MAX_STARTUP_PACKET,
};
use airlock_pgwire::messages::startup::encode_ssl_request;
use airlock_pgwire::messages::{tag, PasswordMessage, SaslInitialResponse, SaslResponse};
use airlock_pgwire::{Frame, FrontendMessage, ProtocolError};
use bytes::{BufMut, Bytes, BytesMut};

/// The cap on a tagged message in the model. Small, unlike the gateway's
/// default, so that the fuzzer reaches the "too large" path with short inputs.
pub const MAX_FRAME: usize = 64 * 1024;

/// One thing the gateway decoded, in the order it decoded them.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Startup(StartupPacket),
    /// A frame that decoded as a message of the post-authentication protocol.
    Message {
        tag: u8,
        message: FrontendMessage,
    },
    /// A frame whose body is not a valid message of its type. The gateway
    /// answers with an ErrorResponse; the framing is intact, so the model
    /// goes on with the next frame, which lets one input exercise more.
    Rejected {
        tag: u8,
        error: ProtocolError,
    },
    /// A `p` frame, decoded as each of its three meanings; which one applies
    /// depends on the authentication request the server sent last.
    /// SASLResponse is opaque and always decodes.
    Password {
        password: bool,
        sasl_initial: bool,
    },
}

/// Why the gateway stopped reading.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The input ended on a packet boundary.
    Eof,
    /// The input ended inside a packet: the gateway would wait for more.
    Truncated { pending: usize },
    /// A CancelRequest: the gateway acts on it and closes the connection.
    Cancelled,
    /// The first packet can never become valid: close.
    StartupRejected(ProtocolError),
    /// A frame header can never become valid (bad or too large length): close.
    FrameRejected(ProtocolError),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub end: End,
}

impl Outcome {
    /// A one-line description for table tests, e.g. `ssl startup Q S | eof`.
    pub fn summary(&self) -> String {
        let mut out: Vec<String> = self
            .events
            .iter()
            .map(|e| match e {
                Event::Startup(StartupPacket::SslRequest) => "ssl".to_string(),
                Event::Startup(StartupPacket::GssEncRequest) => "gssenc".to_string(),
                Event::Startup(StartupPacket::Cancel(_)) => "cancel".to_string(),
                Event::Startup(StartupPacket::Startup(_)) => "startup".to_string(),
                Event::Message { tag, .. } => tag_text(*tag),
                Event::Rejected { tag, .. } => format!("!{}", tag_text(*tag)),
                Event::Password { password: true, .. } => "p:password".to_string(),
                Event::Password {
                    sasl_initial: true, ..
                } => "p:sasl-initial".to_string(),
                Event::Password { .. } => "p:opaque".to_string(),
            })
            .collect();
        out.push("|".to_string());
        out.push(match &self.end {
            End::Eof => "eof".to_string(),
            End::Truncated { .. } => "truncated".to_string(),
            End::Cancelled => "closed".to_string(),
            End::StartupRejected(e) | End::FrameRejected(e) => format!("{e:?}"),
        });
        out.join(" ")
    }
}

fn tag_text(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        char::from(tag).to_string()
    } else {
        format!("\\x{tag:02x}")
    }
}

/// Runs the model over one client byte stream and checks every property.
/// Panics when a property does not hold.
pub fn check_frontend_input(data: &[u8]) -> Outcome {
    let whole = {
        let mut gw = Gateway::default();
        gw.feed(data);
        gw.finish()
    };
    let chunked = {
        let mut gw = Gateway::default();
        for chunk in Chunks::new(data) {
            gw.feed(chunk);
        }
        gw.finish()
    };
    assert_eq!(
        whole, chunked,
        "decoding in chunks gave another result than decoding at once"
    );
    whole
}

/// Splits an input into chunks of 1 to 16 bytes, sizes picked by a small
/// generator seeded from the input itself, so a run is reproducible.
struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
}

impl<'a> Chunks<'a> {
    fn new(data: &'a [u8]) -> Chunks<'a> {
        let seed = (data.len() as u32) ^ (u32::from(data.first().copied().unwrap_or(0)) << 16);
        Chunks {
            rest: data,
            state: seed | 1,
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        // xorshift32: any cheap, deterministic sequence will do.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let n = (1 + self.state % 16) as usize;
        let (chunk, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

enum Phase {
    /// Before and between the untagged packets: SSLRequest and
    /// GSSENCRequest may come (more than once) before the StartupMessage.
    Startup,
    /// After the StartupMessage: tagged frames only.
    Frames,
    Closed(End),
}

/// The read loop of one client connection: bytes in, decoded events out.
struct Gateway {
    buf: BytesMut,
    phase: Phase,
    events: Vec<Event>,
}

impl Default for Gateway {
    fn default() -> Gateway {
        Gateway {
            buf: BytesMut::new(),
            phase: Phase::Startup,
            events: Vec::new(),
        }
    }
}

impl Gateway {
    /// What one socket read does: append, then decode all whole packets.
    fn feed(&mut self, chunk: &[u8]) {
        if matches!(self.phase, Phase::Closed(_)) {
            return;
        }
        self.buf.extend_from_slice(chunk);
        loop {
            match self.phase {
                Phase::Startup => {
                    // The decoder consumes the packet; keep a copy of the
                    // bytes it can span to compare the re-encoding with.
                    let head = self.buf[..self.buf.len().min(MAX_STARTUP_PACKET)].to_vec();
                    let before = self.buf.len();
                    match decode_startup(&mut self.buf) {
                        Ok(None) => return,
                        Ok(Some(packet)) => {
                            let used = before - self.buf.len();
                            assert!(used <= head.len(), "first packet above the cap");
                            check_startup_round_trip(&packet, &head[..used]);
                            self.phase = match packet {
                                StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                                    Phase::Startup
                                }
                                StartupPacket::Cancel(_) => Phase::Closed(End::Cancelled),
                                StartupPacket::Startup(_) => Phase::Frames,
                            };
                            self.events.push(Event::Startup(packet));
                        }
                        Err(e) => self.phase = Phase::Closed(End::StartupRejected(e)),
                    }
                }
                Phase::Frames => match decode_frame(&mut self.buf, MAX_FRAME) {
                    Ok(None) => return,
                    Ok(Some(frame)) => {
                        assert!(frame.wire_len() <= MAX_FRAME + 1, "frame above the cap");
                        let event = decode_and_check(&frame);
                        self.events.push(event);
                    }
                    Err(e) => self.phase = Phase::Closed(End::FrameRejected(e)),
                },
                Phase::Closed(_) => return,
            }
        }
    }

    fn finish(self) -> Outcome {
        let end = match self.phase {
            Phase::Closed(end) => end,
            _ if self.buf.is_empty() => End::Eof,
            _ => End::Truncated {
                pending: self.buf.len(),
            },
        };
        Outcome {
            events: self.events,
            end,
        }
    }
}

/// Re-encodes an accepted first packet: it must give back the bytes that
/// were read, and decode to the same value.
fn check_startup_round_trip(packet: &StartupPacket, raw: &[u8]) {
    let mut again = BytesMut::new();
    match packet {
        StartupPacket::SslRequest => encode_ssl_request(&mut again),
        // The crate has no encoder for it: a server never sends one.
        StartupPacket::GssEncRequest => {
            again.put_i32(8);
            again.put_i32(GSSENC_REQUEST_CODE);
        }
        StartupPacket::Cancel(c) => c.encode(&mut again),
        StartupPacket::Startup(m) => m.encode(&mut again),
    }
    assert_eq!(&again[..], raw, "first packet re-encodes differently");
    let decoded = decode_startup(&mut again).expect("re-encoded first packet must decode");
    assert_eq!(decoded.as_ref(), Some(packet), "first packet round trip");
    assert!(again.is_empty(), "re-encoded first packet left bytes over");
}

/// Decodes a frame in every way the gateway may, checking round trips.
fn decode_and_check(frame: &Frame) -> Event {
    let decoded = FrontendMessage::decode(frame);
    if frame.tag == tag::frontend::PASSWORD {
        // `p` is an authentication message, never one of the post-auth set.
        assert!(
            matches!(decoded, Err(ProtocolError::UnexpectedTag { tag: b'p', .. })),
            "'p' decoded as a post-authentication message"
        );
        return decode_password(&frame.body);
    }
    match decoded {
        Ok(message) => {
            check_message_round_trip(frame, &message);
            Event::Message {
                tag: frame.tag,
                message,
            }
        }
        Err(error) => Event::Rejected {
            tag: frame.tag,
            error,
        },
    }
}

fn check_message_round_trip(frame: &Frame, message: &FrontendMessage) {
    let mut wire = BytesMut::new();
    message.encode(&mut wire);
    // CopyFail replaces invalid UTF-8 when it decodes, which can make the
    // re-encoding differ from the input and be up to three times as long:
    // compare bytes for every other message, values for all, and re-split
    // with the protocol's own limit rather than the model's small one.
    if !matches!(message, FrontendMessage::CopyFail(_)) {
        let mut original = BytesMut::new();
        frame.encode(&mut original);
        assert_eq!(wire, original, "message re-encodes differently");
    }
    let again = decode_frame(&mut wire, DEFAULT_MAX_MESSAGE)
        .expect("re-encoded message must frame")
        .expect("re-encoded message must be whole");
    assert!(wire.is_empty(), "re-encoded message left bytes over");
    assert_eq!(again.tag, frame.tag, "message re-encodes with another tag");
    let decoded = FrontendMessage::decode(&again).expect("re-encoded message must decode");
    assert_eq!(&decoded, message, "message round trip");
}

fn decode_password(body: &Bytes) -> Event {
    let password = match PasswordMessage::decode(body.clone()) {
        Ok(m) => {
            let again = m.encode_body();
            assert_eq!(&again, body, "PasswordMessage re-encodes differently");
            let decoded = PasswordMessage::decode(again).expect("re-encoded PasswordMessage");
            assert_eq!(decoded, m, "PasswordMessage round trip");
            true
        }
        Err(_) => false,
    };
    let sasl_initial = match SaslInitialResponse::decode(body.clone()) {
        Ok(m) => {
            let again = m.encode_body();
            assert_eq!(&again, body, "SASLInitialResponse re-encodes differently");
            let decoded =
                SaslInitialResponse::decode(again).expect("re-encoded SASLInitialResponse");
            assert_eq!(decoded, m, "SASLInitialResponse round trip");
            true
        }
        Err(_) => false,
    };
    let sasl = SaslResponse::decode(body.clone()).expect("SASLResponse is opaque");
    assert_eq!(
        &sasl.encode_body(),
        body,
        "SASLResponse re-encodes differently"
    );
    Event::Password {
        password,
        sasl_initial,
    }
}
