//! PostgreSQL frontend/backend protocol 3.0: one type per wire message, a
//! framing codec with size caps, and server-side SCRAM-SHA-256.
//!
//! This crate knows bytes and messages only: nothing about users, policy or
//! sessions. Decoders never panic on input from the network; "incomplete
//! frame" (`Ok(None)`) and "protocol violation" (`Err`) are different cases.

pub mod codec;
pub mod messages;
pub mod reader;
pub mod scram;
pub mod sqlstate;

pub use codec::{decode_frame, decode_startup, peek_header, Frame, StartupPacket};
pub use messages::{BackendMessage, FrontendMessage};

/// Bytes that can never become a valid message: the connection must be closed
/// (after an ErrorResponse where the protocol allows one).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid startup packet length {0} (must be 8..=10000 bytes)")]
    BadStartupLength(i32),
    #[error("unsupported frontend protocol {}.{}: Airlock speaks protocol 3.0", .0 >> 16, .0 & 0xffff)]
    UnsupportedProtocol(i32),
    #[error("invalid length {len} in message '{}'", char::from(*tag))]
    BadLength { tag: u8, len: i32 },
    #[error("message '{}' of {len} bytes exceeds the limit of {max} bytes", char::from(*tag))]
    TooLarge { tag: u8, len: usize, max: usize },
    #[error("malformed {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    #[error("unexpected message type '{}' ({context})", char::from(*tag))]
    UnexpectedTag { tag: u8, context: &'static str },
}
