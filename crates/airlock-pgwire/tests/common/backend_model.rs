//! A model of what the gateway's relay does with the bytes an upstream
//! PostgreSQL server sends (to mask results and limit rows), with the
//! properties every input must keep. It is the body of the `backend` fuzz
//! target and of the stable test `tests/backend_fuzz_corpus.rs`.
//!
//! Shared by path (`#[path = ...] mod backend_model;`) for the reasons given
//! in `frontend_model.rs`: the fuzz project is a separate Cargo workspace, and
//! the crate's public API should not grow a module that exists only for
//! testing.
//!
//! The input is a stream of backend frames, split with `decode_frame` and a
//! small cap; the model stops at the first framing error or incomplete frame.
//! Properties checked, by assertion (a failure is a panic, which is what the
//! fuzzer looks for):
//! - no decoder panics, on any input; `peek_header` agrees with
//!   `decode_frame`;
//! - `T`: a RowDescription that decodes re-encodes to the same body and
//!   decodes back to the same value;
//! - `D`: a DataRow whose values all walk without error re-encodes, with
//!   `encode_data_row`, to the same message byte for byte, and its count is
//!   the number of values; a walk that fails ends right after the error; no
//!   value slice lies outside the body;
//! - `E`/`N`: an ErrorResponse/NoticeResponse that decodes, and whose field
//!   values are all UTF-8 on the wire, re-encodes to the same body;
//!   `BackendMessage::decode` accepts it exactly when `ErrorResponse::decode`
//!   does.

use airlock_pgwire::codec::{decode_frame, peek_header};
use airlock_pgwire::messages::{
    data_row_values, encode_data_row, tag, ErrorResponse, RowDescription,
};
use airlock_pgwire::{BackendMessage, Frame, ProtocolError};
use bytes::{BufMut, Bytes, BytesMut};

/// The cap on a frame in the model. Small, so that the fuzzer reaches the
/// "too large" path with short inputs.
pub const MAX_FRAME: usize = 64 * 1024;

/// What the model made of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decoded (for `D`: every value walked), and the round trip held.
    Ok,
    /// `E`/`N` that decoded, but with a field value that is not UTF-8 on the
    /// wire: decoding replaces it lossily, so the bytes are not compared.
    Lossy,
    /// Its decoder refused it (for `D`: the header or a value was malformed).
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub tag: u8,
    pub verdict: Verdict,
}

/// Why the model stopped reading.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The input ended on a frame boundary.
    Eof,
    /// The input ended inside a frame: the relay would wait for more.
    Truncated { pending: usize },
    /// A frame header can never become valid (bad or too large length).
    FrameRejected(ProtocolError),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub frames: Vec<Seen>,
    pub end: End,
}

/// Counts per message kind, for coverage assertions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub row_descriptions: usize,
    pub bad_row_descriptions: usize,
    pub data_rows: usize,
    pub bad_data_rows: usize,
    /// `E` and `N` that decoded, byte-compared or lossy.
    pub errors: usize,
    pub notices: usize,
    pub bad_error_responses: usize,
    pub lossy_error_responses: usize,
    /// Any other tag, decoded or refused by `BackendMessage::decode`.
    pub others: usize,
    pub bad_others: usize,
}

impl Outcome {
    /// A one-line description for table tests, e.g. `T D !D C Z | eof`
    /// (`!` refused, `~` decoded lossily).
    pub fn summary(&self) -> String {
        let mut out: Vec<String> = self
            .frames
            .iter()
            .map(|s| {
                let mark = match s.verdict {
                    Verdict::Ok => "",
                    Verdict::Lossy => "~",
                    Verdict::Rejected => "!",
                };
                format!("{mark}{}", tag_text(s.tag))
            })
            .collect();
        out.push("|".to_string());
        out.push(match &self.end {
            End::Eof => "eof".to_string(),
            End::Truncated { .. } => "truncated".to_string(),
            End::FrameRejected(e) => format!("{e:?}"),
        });
        out.join(" ")
    }

    pub fn counts(&self) -> Counts {
        use tag::backend as t;
        let mut c = Counts::default();
        for s in &self.frames {
            let bad = s.verdict == Verdict::Rejected;
            match s.tag {
                t::ROW_DESCRIPTION if bad => c.bad_row_descriptions += 1,
                t::ROW_DESCRIPTION => c.row_descriptions += 1,
                t::DATA_ROW if bad => c.bad_data_rows += 1,
                t::DATA_ROW => c.data_rows += 1,
                t::ERROR_RESPONSE | t::NOTICE_RESPONSE if bad => c.bad_error_responses += 1,
                t::ERROR_RESPONSE | t::NOTICE_RESPONSE => {
                    if s.tag == t::ERROR_RESPONSE {
                        c.errors += 1;
                    } else {
                        c.notices += 1;
                    }
                    if s.verdict == Verdict::Lossy {
                        c.lossy_error_responses += 1;
                    }
                }
                _ if bad => c.bad_others += 1,
                _ => c.others += 1,
            }
        }
        c
    }
}

fn tag_text(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        char::from(tag).to_string()
    } else {
        format!("\\x{tag:02x}")
    }
}

/// Runs the model over one upstream byte stream and checks every property.
/// Panics when a property does not hold.
pub fn check_backend_input(data: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    let end = loop {
        let peeked = peek_header(&buf, MAX_FRAME);
        match decode_frame(&mut buf, MAX_FRAME) {
            Ok(None) => {
                assert!(
                    matches!(peeked, Ok(None) | Ok(Some(_))),
                    "peek_header refused a header decode_frame waits on"
                );
                break if buf.is_empty() {
                    End::Eof
                } else {
                    End::Truncated { pending: buf.len() }
                };
            }
            Ok(Some(frame)) => {
                assert_eq!(
                    peeked,
                    Ok(Some((frame.tag, frame.wire_len()))),
                    "peek_header disagrees with decode_frame"
                );
                assert!(frame.wire_len() <= MAX_FRAME + 1, "frame above the cap");
                frames.push(Seen {
                    tag: frame.tag,
                    verdict: check_frame(&frame),
                });
            }
            Err(e) => {
                assert_eq!(
                    peeked.as_ref().err(),
                    Some(&e),
                    "peek_header disagrees with decode_frame"
                );
                break End::FrameRejected(e);
            }
        }
    };
    Outcome { frames, end }
}

fn check_frame(frame: &Frame) -> Verdict {
    use tag::backend as t;
    let decoded = BackendMessage::decode(frame);
    match frame.tag {
        t::ROW_DESCRIPTION => {
            assert_eq!(
                decoded.as_ref(),
                Ok(&BackendMessage::Other(frame.clone())),
                "RowDescription is relayed uninterpreted by BackendMessage"
            );
            check_row_description(&frame.body)
        }
        t::DATA_ROW => {
            assert_eq!(
                decoded.as_ref(),
                Ok(&BackendMessage::Other(frame.clone())),
                "DataRow is relayed uninterpreted by BackendMessage"
            );
            check_data_row(&frame.body)
        }
        t::ERROR_RESPONSE | t::NOTICE_RESPONSE => {
            let verdict = check_error_response(&frame.body);
            match (&decoded, verdict) {
                (Err(_), Verdict::Rejected) => {}
                (Ok(BackendMessage::ErrorResponse(_)), Verdict::Ok | Verdict::Lossy)
                    if frame.tag == t::ERROR_RESPONSE => {}
                (Ok(BackendMessage::NoticeResponse(_)), Verdict::Ok | Verdict::Lossy)
                    if frame.tag == t::NOTICE_RESPONSE => {}
                _ => panic!(
                    "BackendMessage::decode gave {decoded:?} where ErrorResponse::decode gave {verdict:?}"
                ),
            }
            verdict
        }
        _ => match decoded {
            Ok(_) => Verdict::Ok,
            Err(_) => Verdict::Rejected,
        },
    }
}

fn check_row_description(body: &Bytes) -> Verdict {
    let Ok(rd) = RowDescription::decode(body.clone()) else {
        return Verdict::Rejected;
    };
    let again = rd.encode_body();
    assert_eq!(&again, body, "RowDescription re-encodes differently");
    let decoded = RowDescription::decode(again).expect("re-encoded RowDescription must decode");
    assert_eq!(decoded, rd, "RowDescription round trip");
    Verdict::Ok
}

fn check_data_row(body: &Bytes) -> Verdict {
    let Ok((n, mut walk)) = data_row_values(body) else {
        return Verdict::Rejected;
    };
    let (lo, hi) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
    let mut values: Vec<Option<&[u8]>> = Vec::new();
    let mut failed = false;
    for value in walk.by_ref() {
        match value {
            Ok(v) => {
                if let Some(v) = v {
                    let start = v.as_ptr() as usize;
                    assert!(
                        lo <= start && start + v.len() <= hi,
                        "DataRow value lies outside the body"
                    );
                }
                values.push(v);
                assert!(
                    values.len() <= n,
                    "DataRow walk yields more values than its count"
                );
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if failed {
        assert!(walk.next().is_none(), "DataRow walk goes on after an error");
        return Verdict::Rejected;
    }
    assert_eq!(values.len(), n, "DataRow count differs from its values");
    let mut again = BytesMut::new();
    encode_data_row(&mut again, values.iter().copied());
    let mut original = BytesMut::with_capacity(body.len() + 5);
    original.put_u8(tag::backend::DATA_ROW);
    original.put_i32((body.len() + 4) as i32);
    original.put_slice(body);
    assert_eq!(again, original, "DataRow re-encodes differently");
    Verdict::Ok
}

fn check_error_response(body: &Bytes) -> Verdict {
    let Ok(e) = ErrorResponse::decode(body.clone()) else {
        return Verdict::Rejected;
    };
    let again = e.encode_body();
    if !all_field_values_utf8(body) {
        // Decoding replaced the invalid bytes: compare values only.
        let decoded = ErrorResponse::decode(again).expect("re-encoded ErrorResponse must decode");
        assert_eq!(decoded, e, "lossy ErrorResponse round trip");
        return Verdict::Lossy;
    }
    assert_eq!(&again, body, "ErrorResponse re-encodes differently");
    let decoded = ErrorResponse::decode(again).expect("re-encoded ErrorResponse must decode");
    assert_eq!(decoded, e, "ErrorResponse round trip");
    Verdict::Ok
}

/// Whether every field value of a well-formed ErrorResponse body (code
/// byte, NUL-terminated value, ..., final NUL) is valid UTF-8.
fn all_field_values_utf8(body: &[u8]) -> bool {
    let mut rest = body;
    while let Some((&code, after)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let Some(nul) = after.iter().position(|&b| b == 0) else {
            break;
        };
        if std::str::from_utf8(&after[..nul]).is_err() {
            return false;
        }
        rest = &after[nul + 1..];
    }
    true
}
