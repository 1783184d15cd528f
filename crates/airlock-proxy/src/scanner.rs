//! Message-boundary scanning for the session relay.
//!
//! The relay forwards bytes, not messages: it reads whatever the socket has,
//! finds the message boundaries, lets the session look at the few message
//! types it must see whole (a Query's text, a ReadyForQuery's status), and
//! writes the same bytes out in one call. Messages nobody needs to inspect
//! (DataRow, CopyData, ...) are forwarded as they arrive, even when only part
//! of one has been read, so a 500 MB row streams through a small buffer.
//! Inspected messages must fit in the buffer and are capped by the
//! configured maximum message size. Some inspected types also have a
//! smaller cap ([`Scanner::hold_oversized`]): a message of such a type that
//! declares a longer length is reported before any more of it is buffered,
//! so the caller can read it through in small pieces and refuse it.

use airlock_pgwire::codec::peek_header;
use airlock_pgwire::ProtocolError;

/// What the inspector wants after seeing a whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Forward it and keep scanning.
    Forward,
    /// Forward it, then stop: nothing after it is to be forwarded.
    ForwardAndStop,
    /// Stop before it: the caller takes the message (whole, at the front of
    /// what is left) and decides what to send instead.
    Hold,
}

/// The result of one scan over a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes at the front of the buffer that may be forwarded now.
    pub forward: usize,
    /// The inspector asked to stop after the forwarded bytes.
    pub stop: bool,
    /// Bytes the next inspected message needs in the buffer at once (its
    /// whole length), when it is not complete yet; the caller grows the
    /// buffer to at least this before reading again.
    pub need: usize,
    /// The inspector held the message that starts right after the forwarded
    /// bytes; its total length (header included).
    pub held: Option<usize>,
    /// The message that starts right after the forwarded bytes is of a type
    /// capped by [`Scanner::hold_oversized`] and declares more than the cap:
    /// its total length (header included). Only its header is known to be
    /// in the buffer.
    pub oversized: Option<usize>,
}

#[derive(Debug)]
pub struct Scanner {
    max_message: usize,
    /// Bytes of an uninspected message still to pass through.
    skip: usize,
    /// Message types with a smaller cap, and the cap (total length).
    oversized: Option<(&'static [u8], usize)>,
}

impl Scanner {
    pub fn new(max_message: usize) -> Scanner {
        Scanner {
            max_message,
            skip: 0,
            oversized: None,
        }
    }

    /// Messages of the types in `tags` longer than `limit` bytes (header
    /// included) are not buffered: the scan stops before them and reports
    /// [`Scanned::oversized`].
    pub fn hold_oversized(mut self, tags: &'static [u8], limit: usize) -> Scanner {
        self.oversized = Some((tags, limit));
        self
    }

    /// True when the bytes forwarded so far end on a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.skip == 0
    }

    /// Scans `buf` from its start. `inspect(tag)` says whether a message type
    /// must be seen whole; `on_message(tag, body)` is then called with it.
    pub fn scan<E>(
        &mut self,
        buf: &[u8],
        inspect: impl Fn(u8) -> bool,
        mut on_message: impl FnMut(u8, &[u8]) -> Result<Step, E>,
    ) -> Result<Scanned, E>
    where
        E: From<ProtocolError>,
    {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - pos);
                self.skip -= n;
                pos += n;
                if self.skip > 0 {
                    return Ok(Scanned {
                        forward: pos,
                        stop: false,
                        need: 0,
                        held: None,
                        oversized: None,
                    });
                }
            }
            let Some((tag, total)) = peek_header(&buf[pos..], self.max_message)? else {
                return Ok(Scanned {
                    forward: pos,
                    stop: false,
                    need: 5,
                    held: None,
                    oversized: None,
                });
            };
            if !inspect(tag) {
                self.skip = total;
                continue;
            }
            if let Some((tags, limit)) = self.oversized {
                if total > limit && tags.contains(&tag) {
                    return Ok(Scanned {
                        forward: pos,
                        stop: false,
                        need: 0,
                        held: None,
                        oversized: Some(total),
                    });
                }
            }
            if buf.len() - pos < total {
                return Ok(Scanned {
                    forward: pos,
                    stop: false,
                    need: total,
                    held: None,
                    oversized: None,
                });
            }
            let step = on_message(tag, &buf[pos + 5..pos + total])?;
            if step == Step::Hold {
                return Ok(Scanned {
                    forward: pos,
                    stop: false,
                    need: 0,
                    held: Some(total),
                    oversized: None,
                });
            }
            pos += total;
            if step == Step::ForwardAndStop {
                return Ok(Scanned {
                    forward: pos,
                    stop: true,
                    need: 0,
                    held: None,
                    oversized: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_pgwire::Frame;
    use bytes::BytesMut;

    fn wire(frames: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = BytesMut::new();
        for (t, body) in frames {
            Frame::new(*t, body.to_vec()).encode(&mut b);
        }
        b.to_vec()
    }

    /// Feeds `bytes` in chunks of `chunk` and returns (forwarded bytes, inspected messages).
    fn run(bytes: &[u8], chunk: usize) -> (Vec<u8>, Vec<(u8, Vec<u8>)>) {
        let mut scanner = Scanner::new(1 << 20);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for piece in bytes.chunks(chunk) {
            buf.extend_from_slice(piece);
            let s = scanner
                .scan::<ProtocolError>(
                    &buf,
                    |t| t == b'Q' || t == b'Z',
                    |t, body| {
                        seen.push((t, body.to_vec()));
                        Ok(Step::Forward)
                    },
                )
                .unwrap();
            out.extend_from_slice(&buf[..s.forward]);
            buf.drain(..s.forward);
        }
        assert!(buf.is_empty(), "everything is forwarded in the end");
        (out, seen)
    }

    #[test]
    fn forwards_everything_in_any_chunking() {
        let big = vec![7u8; 10_000];
        let bytes = wire(&[
            (b'Q', b"select 1\0"),
            (b'D', &big),
            (b'Z', b"I"),
            (b'd', b""),
            (b'Q', b"select 2\0"),
        ]);
        for chunk in [1, 2, 3, 5, 7, 64, 4096, bytes.len()] {
            let (out, seen) = run(&bytes, chunk);
            assert_eq!(out, bytes, "chunk {chunk}");
            assert_eq!(
                seen,
                vec![
                    (b'Q', b"select 1\0".to_vec()),
                    (b'Z', b"I".to_vec()),
                    (b'Q', b"select 2\0".to_vec())
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn uninspected_messages_stream_before_they_are_complete() {
        let bytes = wire(&[(b'D', &[1u8; 1000])]);
        let mut scanner = Scanner::new(1 << 20);
        let s = scanner
            .scan::<ProtocolError>(&bytes[..100], |_| false, |_, _| Ok(Step::Forward))
            .unwrap();
        assert_eq!(s.forward, 100);
        assert!(!scanner.at_boundary());
    }

    #[test]
    fn inspected_message_waits_and_reports_need() {
        let bytes = wire(&[(b'Q', &[b'x'; 99])]);
        let mut scanner = Scanner::new(1 << 20);
        let s = scanner
            .scan::<ProtocolError>(&bytes[..50], |_| true, |_, _| Ok(Step::Forward))
            .unwrap();
        assert_eq!((s.forward, s.need), (0, 104));
    }

    #[test]
    fn hold_stops_before_the_message() {
        let bytes = wire(&[(b'S', b""), (b'Q', b"x\0"), (b'S', b"")]);
        let mut scanner = Scanner::new(1 << 20);
        let s = scanner
            .scan::<ProtocolError>(&bytes, |t| t == b'Q', |_, _| Ok(Step::Hold))
            .unwrap();
        assert_eq!((s.forward, s.held), (5, Some(7)));
        assert!(scanner.at_boundary());
    }

    #[test]
    fn oversized_inspected_messages_are_reported_from_their_header() {
        let bytes = wire(&[(b'S', b""), (b'Q', &[b'x'; 200]), (b'D', &[0u8; 300])]);
        let mut scanner = Scanner::new(1 << 20).hold_oversized(b"QP", 100);
        // Only the header of the long Query has arrived.
        let s = scanner
            .scan::<ProtocolError>(&bytes[..10], |t| t != b'D', |_, _| Ok(Step::Forward))
            .unwrap();
        assert_eq!((s.forward, s.oversized), (5, Some(205)));
        // Uninspected types are not capped.
        let mut scanner = Scanner::new(1 << 20).hold_oversized(b"QP", 100);
        let s = scanner
            .scan::<ProtocolError>(&bytes[210..], |t| t != b'D', |_, _| Ok(Step::Forward))
            .unwrap();
        assert_eq!((s.forward, s.oversized), (305, None));
    }

    #[test]
    fn stop_and_caps() {
        let bytes = wire(&[(b'X', b""), (b'Q', b"after\0")]);
        let mut scanner = Scanner::new(1 << 20);
        let s = scanner
            .scan::<ProtocolError>(&bytes, |t| t == b'X', |_, _| Ok(Step::ForwardAndStop))
            .unwrap();
        assert_eq!((s.forward, s.stop), (5, true));

        let mut small = Scanner::new(16);
        let too_big = wire(&[(b'D', &[0u8; 64])]);
        assert!(matches!(
            small.scan::<ProtocolError>(&too_big, |_| false, |_, _| Ok(Step::Forward)),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
