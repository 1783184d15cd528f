//! The `frontend` fuzz target's checks, run by `cargo test` on stable: over
//! every file of the seed corpus, and over 20,000 deterministic pseudo-random
//! inputs. CI thereby exercises the client-facing decoders without nightly or
//! cargo-fuzz; `fuzz/README.md` says how to run the real fuzzer.

#[path = "common/frontend_model.rs"]
mod frontend_model;

use std::collections::BTreeSet;
use std::path::PathBuf;

use airlock_pgwire::messages::{
    Bind, Close, CopyData, CopyFail, Describe, Execute, FunctionCall, Parse, PasswordMessage,
    Query, SaslInitialResponse,
};
use airlock_pgwire::{Frame, FrontendMessage};
use bytes::{BufMut, Bytes, BytesMut};
use frontend_model::{check_frontend_input, End, Event, Outcome, MAX_FRAME};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frontend")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/frontend must exist")
        .map(|entry| {
            let path = entry.expect("readable corpus directory").path();
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&path).expect("readable corpus file");
            (name, data)
        })
        .collect();
    files.sort();
    files
}

/// Runs the model, printing the input in hex when it panics so that it can
/// be added to the corpus and handed to whoever fixes the decoder.
fn check(what: &str, data: &[u8]) -> Outcome {
    match std::panic::catch_unwind(|| check_frontend_input(data)) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("frontend model failed on {what}: {hex}");
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn every_corpus_file_keeps_the_properties() {
    let files = corpus();
    assert!(files.len() >= 12, "the seed corpus is missing");
    for (name, data) in &files {
        check(name, data);
    }
}

/// Each handcrafted seed is there to reach one path; a seed that silently
/// stops earlier (say, at a startup packet that no longer decodes) would
/// leave the fuzzer to rediscover that path from scratch.
#[test]
fn seeds_reach_the_paths_they_were_written_for() {
    let cases: &[(&str, &str)] = &[
        ("startup", "startup | eof"),
        ("ssl_then_startup", "ssl startup | eof"),
        ("gssenc_ssl_startup", "gssenc ssl startup | eof"),
        ("cancel_request", "cancel | closed"),
        ("simple_query", "startup Q X | eof"),
        ("extended_query", "startup P B D E C H S | eof"),
        ("sasl_scram", "startup p:sasl-initial p:opaque Q | eof"),
        ("password_cleartext", "startup p:password S | eof"),
        ("copy_in", "startup Q d d c f | eof"),
        ("function_call", "startup F | eof"),
        ("malformed_messages", "startup !D !B !S !Z !Q S | eof"),
        ("truncated_query", "startup | truncated"),
        (
            "oversized_frame",
            "startup | TooLarge { tag: 100, len: 2147483647, max: 65536 }",
        ),
        (
            "negative_frame_length",
            "startup | BadLength { tag: 81, len: -1 }",
        ),
        ("startup_length_too_small", "| BadStartupLength(7)"),
        ("startup_length_too_large", "| BadStartupLength(10001)"),
        ("protocol_2", "| UnsupportedProtocol(131072)"),
        (
            "ssl_request_with_trailing_bytes",
            "| Malformed { what: \"SSLRequest/GSSENCRequest\", why: \"unexpected bytes after the request code\" }",
        ),
    ];
    for (name, want) in cases {
        let data = std::fs::read(corpus_dir().join(name))
            .unwrap_or_else(|e| panic!("seed {name} is missing: {e}"));
        assert_eq!(check(name, &data).summary(), *want, "seed {name}");
    }
}

/// SplitMix64: small, fast, and the same sequence on every platform and
/// version, which a dependency's generator does not promise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, max_len: usize) -> Bytes {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| self.next() as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    /// Text for a NUL-terminated field: usually without NUL, so that the
    /// message stays well formed; now and then with one, so that it is not.
    fn cstr(&mut self) -> Bytes {
        const WORDS: &[&str] = &["", "s1", "p", "select 1", "select $1::int", "ö"];
        if self.chance(8) {
            return self.bytes(12);
        }
        Bytes::from_static(WORDS[self.below(WORDS.len())].as_bytes())
    }

    fn i16s(&mut self, max: usize) -> Vec<i16> {
        (0..self.below(max + 1))
            .map(|_| [0, 1, 2, -1][self.below(4)])
            .collect()
    }

    fn values(&mut self, max: usize) -> Vec<Option<Bytes>> {
        (0..self.below(max + 1))
            .map(|_| (!self.chance(4)).then(|| self.bytes(8)))
            .collect()
    }

    fn interesting_i32(&mut self) -> i32 {
        const VALUES: &[i32] = &[
            -2,
            -1,
            0,
            3,
            4,
            5,
            7,
            8,
            16,
            10_000,
            10_001,
            MAX_FRAME as i32,
            MAX_FRAME as i32 + 1,
            i32::MAX,
            i32::MIN,
            80_877_102,
            80_877_103,
            80_877_104,
            196_608,
        ];
        VALUES[self.below(VALUES.len())]
    }
}

fn random_message(rng: &mut Rng) -> FrontendMessage {
    match rng.below(13) {
        0 => FrontendMessage::Query(Query { sql: rng.cstr() }),
        1 => FrontendMessage::Parse(Parse {
            name: rng.cstr(),
            query: rng.cstr(),
            param_types: (0..rng.below(4)).map(|_| rng.next() as u32).collect(),
        }),
        2 => FrontendMessage::Bind(Bind {
            portal: rng.cstr(),
            statement: rng.cstr(),
            param_formats: rng.i16s(3),
            params: rng.values(3),
            result_formats: rng.i16s(3),
        }),
        3 => FrontendMessage::Describe(Describe {
            kind: if rng.chance(2) { b'S' } else { b'P' },
            name: rng.cstr(),
        }),
        4 => FrontendMessage::Execute(Execute {
            portal: rng.cstr(),
            max_rows: rng.interesting_i32(),
        }),
        5 => FrontendMessage::Close(Close {
            kind: if rng.chance(2) { b'S' } else { b'P' },
            name: rng.cstr(),
        }),
        6 => FrontendMessage::Sync,
        7 => FrontendMessage::Flush,
        8 => FrontendMessage::Terminate,
        9 => FrontendMessage::CopyData(CopyData {
            data: rng.bytes(32),
        }),
        10 => FrontendMessage::CopyDone,
        11 => FrontendMessage::CopyFail(CopyFail {
            message: "client aborted".to_string(),
        }),
        _ => FrontendMessage::FunctionCall(FunctionCall {
            function_oid: rng.next() as u32,
            arg_formats: rng.i16s(3),
            args: rng.values(3),
            result_format: rng.i16s(1).first().copied().unwrap_or(0),
        }),
    }
}

/// A `p` frame in one of its three meanings.
fn random_password_frame(rng: &mut Rng, dst: &mut BytesMut) {
    let body = match rng.below(3) {
        0 => PasswordMessage {
            password: rng.cstr(),
        }
        .encode_body(),
        1 => SaslInitialResponse {
            mechanism: "SCRAM-SHA-256".to_string(),
            data: (!rng.chance(4)).then(|| rng.bytes(40)),
        }
        .encode_body(),
        _ => rng.bytes(40),
    };
    Frame::new(b'p', body).encode(dst);
}

/// A plausible client stream: optional SSL/GSSENC requests, a startup
/// packet, then a few messages, all encoded by the crate's own encoders.
fn random_session(rng: &mut Rng) -> BytesMut {
    let mut out = BytesMut::new();
    for _ in 0..rng.below(3) {
        out.put_i32(8);
        out.put_i32(if rng.chance(2) {
            80_877_103
        } else {
            80_877_104
        });
    }
    if rng.chance(10) {
        airlock_pgwire::messages::CancelRequest {
            process_id: rng.next() as i32,
            secret_key: rng.next() as i32,
        }
        .encode(&mut out);
    }
    let mut params = vec![("user".to_string(), "oncall1".to_string())];
    if rng.chance(2) {
        params.push(("database".to_string(), "orders".to_string()));
    }
    airlock_pgwire::messages::StartupMessage::new(params).encode(&mut out);
    for _ in 0..rng.below(8) {
        if rng.chance(5) {
            random_password_frame(rng, &mut out);
        } else {
            random_message(rng).encode(&mut out);
        }
    }
    out
}

/// Byte-level damage of the kind a fuzzer does: flips, interesting length
/// words, insertions, deletions, truncation and duplication.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(6) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len >= 4 => {
                let at = rng.below(len - 3);
                data[at..at + 4].copy_from_slice(&rng.interesting_i32().to_be_bytes());
            }
            2 => {
                let at = rng.below(len + 1);
                data.insert(at, rng.next() as u8);
            }
            3 if len > 0 => {
                data.remove(rng.below(len));
            }
            4 => data.truncate(rng.below(len + 1)),
            _ if len > 0 => {
                let from = rng.below(len);
                let to = from + rng.below(len - from) + 1;
                let copy = data[from..to].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            _ => data.push(rng.next() as u8),
        }
    }
}

#[test]
fn pseudo_random_inputs_keep_the_properties() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, data)| data).collect();
    let mut rng = Rng(0x5eed_a1c0_0000_0001);
    // What the inputs reached, so that a generator that stops producing
    // interesting inputs fails here rather than passing vacuously.
    let mut reached = BTreeSet::new();
    for i in 0..20_000 {
        let data: Vec<u8> = match rng.below(4) {
            0 => rng.bytes(64).to_vec(),
            1 => {
                let mut d = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, &mut d);
                d
            }
            _ => {
                let mut d = random_session(&mut rng).to_vec();
                if rng.chance(2) {
                    mutate(&mut rng, &mut d);
                }
                d
            }
        };
        let outcome = check(&format!("generated input #{i}"), &data);
        for event in &outcome.events {
            reached.insert(match event {
                Event::Startup(p) => format!("startup {}", startup_kind(p)),
                Event::Message { tag, .. } => format!("message {}", char::from(*tag)),
                Event::Rejected { .. } => "rejected message".to_string(),
                Event::Password { password: true, .. } => "p password".to_string(),
                Event::Password {
                    sasl_initial: true, ..
                } => "p sasl-initial".to_string(),
                Event::Password { .. } => "p opaque".to_string(),
            });
        }
        reached.insert(
            match outcome.end {
                End::Eof => "end eof",
                End::Truncated { .. } => "end truncated",
                End::Cancelled => "end cancelled",
                End::StartupRejected(_) => "end startup rejected",
                End::FrameRejected(_) => "end frame rejected",
            }
            .to_string(),
        );
    }
    let mut want: BTreeSet<String> = "BCDEFHPQSXcdf"
        .chars()
        .map(|t| format!("message {t}"))
        .collect();
    for other in [
        "startup ssl",
        "startup gssenc",
        "startup cancel",
        "startup startup",
        "rejected message",
        "p password",
        "p sasl-initial",
        "p opaque",
        "end eof",
        "end truncated",
        "end cancelled",
        "end startup rejected",
        "end frame rejected",
    ] {
        want.insert(other.to_string());
    }
    let missing: Vec<&String> = want.difference(&reached).collect();
    assert!(missing.is_empty(), "no generated input reached {missing:?}");
}

fn startup_kind(p: &airlock_pgwire::StartupPacket) -> &'static str {
    use airlock_pgwire::StartupPacket as S;
    match p {
        S::SslRequest => "ssl",
        S::GssEncRequest => "gssenc",
        S::Cancel(_) => "cancel",
        S::Startup(_) => "startup",
    }
}
