//! The `backend` fuzz target's checks, run by `cargo test` on stable: over
//! every file of the seed corpus, and over 20,000 deterministic pseudo-random
//! inputs. CI thereby exercises the decoders the relay applies to upstream
//! bytes (RowDescription, DataRow, ErrorResponse/NoticeResponse, framing)
//! without nightly or cargo-fuzz; `fuzz/README.md` says how to run the real
//! fuzzer.

#[path = "common/backend_model.rs"]
mod backend_model;

use std::collections::BTreeSet;
use std::path::PathBuf;

use airlock_pgwire::messages::{
    encode_data_row, Authentication, BackendKeyData, CommandComplete, ErrorResponse, Field,
    ParameterStatus, ReadyForQuery, RowDescription, TransactionStatus,
};
use airlock_pgwire::{BackendMessage, Frame};
use backend_model::{check_backend_input, End, Outcome, Verdict, MAX_FRAME};
use bytes::{BufMut, Bytes, BytesMut};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/backend")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the backend seed corpus {} is missing ({e}): it is checked in with the crate",
            dir.display()
        )
    });
    let mut files: Vec<(String, Vec<u8>)> = entries
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
    match std::panic::catch_unwind(|| check_backend_input(data)) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("backend model failed on {what}: {hex}");
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn every_corpus_file_keeps_the_properties() {
    let files = corpus();
    assert!(
        files.len() >= 12,
        "the backend seed corpus has {} files, expected at least 12",
        files.len()
    );
    let mut total = backend_model::Counts::default();
    for (name, data) in &files {
        let c = check(name, data).counts();
        total.row_descriptions += c.row_descriptions;
        total.data_rows += c.data_rows;
        total.bad_data_rows += c.bad_data_rows;
        total.errors += c.errors;
        total.notices += c.notices;
        total.lossy_error_responses += c.lossy_error_responses;
        total.bad_row_descriptions += c.bad_row_descriptions;
        total.bad_error_responses += c.bad_error_responses;
    }
    assert!(total.row_descriptions > 0, "no seed has a valid 'T'");
    assert!(total.data_rows > 0, "no seed has a valid 'D'");
    assert!(total.bad_data_rows > 0, "no seed has a malformed 'D'");
    assert!(total.errors > 0, "no seed has a valid 'E'");
    assert!(total.notices > 0, "no seed has a valid 'N'");
    assert!(
        total.lossy_error_responses > 0,
        "no seed has a non-UTF-8 'E'"
    );
    assert!(
        total.bad_row_descriptions > 0,
        "no seed has a malformed 'T'"
    );
    assert!(total.bad_error_responses > 0, "no seed has a malformed 'E'");
}

/// Each handcrafted seed is there to reach one path; a seed that silently
/// stops earlier would leave the fuzzer to rediscover that path from scratch.
#[test]
fn seeds_reach_the_paths_they_were_written_for() {
    let cases: &[(&str, &str)] = &[
        ("simple_select", "T D D C Z | eof"),
        ("data_row_nulls_and_empty", "T D | eof"),
        ("zero_columns", "T D C Z | eof"),
        ("error_response", "E Z | eof"),
        ("notice_response", "N C Z | eof"),
        ("error_non_utf8", "~E | eof"),
        ("malformed_data_rows", "!D !D !D !D !D !D | eof"),
        // PostgreSQL marks NULL with -1 only; any other negative length is
        // a malformed row, as in Bind and FunctionCall.
        ("data_row_length_below_minus_one", "!D | eof"),
        ("malformed_row_descriptions", "!T !T !T !T !T | eof"),
        ("startup_sequence", "R R R R S S K Z | eof"),
        ("extended_query_results", "1 2 t T D s 3 n I A v Z | eof"),
        ("copy_out", "H d d c C Z | eof"),
        ("malformed_error_responses", "!E !E !E !N | eof"),
        ("malformed_other_messages", "!Z !Z !K !R !S !C | eof"),
        ("truncated_data_row", "T | truncated"),
        (
            "oversized_frame",
            "T | TooLarge { tag: 68, len: 2147483647, max: 65536 }",
        ),
        (
            "negative_frame_length",
            "Z | BadLength { tag: 68, len: -1 }",
        ),
        ("frame_length_too_small", "| BadLength { tag: 90, len: 3 }"),
    ];
    for (name, want) in cases {
        let data = std::fs::read(corpus_dir().join(name)).unwrap_or_else(|e| {
            panic!(
                "seed {name} is missing from {}: {e}",
                corpus_dir().display()
            )
        });
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

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Text without NUL (non-UTF-8 values come from `random_error_body`).
    fn text(&mut self) -> String {
        const WORDS: &[&str] = &["", "id", "email", "SELECT 1", "ERROR", "42P01", "ö", "ü∂"];
        WORDS[self.below(WORDS.len())].to_string()
    }

    fn interesting_i32(&mut self) -> i32 {
        const VALUES: &[i32] = &[
            -2,
            -1,
            0,
            1,
            2,
            3,
            4,
            5,
            8,
            19,
            0x7fff,
            0x8000,
            0xffff,
            MAX_FRAME as i32,
            MAX_FRAME as i32 + 1,
            i32::MAX,
            i32::MIN,
        ];
        VALUES[self.below(VALUES.len())]
    }

    fn interesting_i16(&mut self) -> i16 {
        const VALUES: &[i16] = &[-1, 0, 1, 2, 3, 9, 0x7fff, i16::MIN];
        VALUES[self.below(VALUES.len())]
    }
}

fn random_row_description(rng: &mut Rng) -> RowDescription {
    RowDescription {
        fields: (0..rng.below(4))
            .map(|_| Field {
                name: rng.text().into(),
                table_oid: if rng.chance(2) { 0 } else { rng.next() as u32 },
                column: rng.interesting_i16(),
                type_oid: [16, 17, 20, 23, 25, 1043, 3802][rng.below(7)],
                type_size: rng.interesting_i16(),
                type_modifier: rng.interesting_i32(),
                format: rng.below(2) as i16,
            })
            .collect(),
    }
}

/// The body of an ErrorResponse, now and then with a value that is not
/// UTF-8 (which the typed encoder cannot produce).
fn random_error_body(rng: &mut Rng) -> Bytes {
    let mut e = ErrorResponse::error("42501", rng.text());
    if rng.chance(2) {
        e = e.with_detail(rng.text());
    }
    if rng.chance(3) {
        e = e.with_hint(rng.text());
    }
    if !rng.chance(4) {
        return e.encode_body();
    }
    let mut b = BytesMut::new();
    b.put_slice(b"SERROR\0Mbad \xff\xfe byte\0");
    b.put_slice(&e.encode_body());
    b.freeze()
}

/// One frame of a plausible upstream stream, encoded by the crate's own
/// encoders; `D` rows take their width from the last `T`.
fn random_frame(rng: &mut Rng, columns: &mut usize) -> Frame {
    let mut out = BytesMut::new();
    match rng.below(12) {
        0..=1 => {
            let rd = random_row_description(rng);
            *columns = rd.fields.len();
            return Frame::new(b'T', rd.encode_body());
        }
        2..=5 => {
            let values: Vec<Option<Vec<u8>>> = (0..*columns)
                .map(|_| (!rng.chance(4)).then(|| rng.bytes(12)))
                .collect();
            encode_data_row(&mut out, values.iter().map(|v| v.as_deref()));
            let body = out.split_off(5).freeze();
            return Frame::new(b'D', body);
        }
        6 => return Frame::new(b'E', random_error_body(rng)),
        7 => return Frame::new(b'N', random_error_body(rng)),
        8 => BackendMessage::CommandComplete(CommandComplete {
            tag: format!("SELECT {}", rng.below(100)),
        })
        .encode(&mut out),
        9 => BackendMessage::ReadyForQuery(ReadyForQuery {
            status: [
                TransactionStatus::Idle,
                TransactionStatus::InTransaction,
                TransactionStatus::Failed,
            ][rng.below(3)],
        })
        .encode(&mut out),
        10 => match rng.below(3) {
            0 => BackendMessage::Authentication(Authentication::Ok).encode(&mut out),
            1 => BackendMessage::BackendKeyData(BackendKeyData {
                process_id: rng.next() as i32,
                secret_key: rng.next() as i32,
            })
            .encode(&mut out),
            _ => BackendMessage::ParameterStatus(ParameterStatus::new("TimeZone", "UTC"))
                .encode(&mut out),
        },
        _ => {
            let tag = b"123nsIcdAtHG"[rng.below(12)];
            return Frame::new(tag, rng.bytes(8));
        }
    }
    let tag = out[0];
    Frame::new(tag, out.split_off(5).freeze())
}

/// Damage inside one body, keeping the frame's length word right, so that
/// the body decoders (not the framing) meet it: bit flips, counts and value
/// lengths overwritten with interesting numbers, insertions, truncation.
fn mutate_body(rng: &mut Rng, body: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let len = body.len();
        match rng.below(6) {
            0 if len > 0 => {
                let at = rng.below(len);
                body[at] ^= 1 << rng.below(8);
            }
            // The count of a T or D.
            1 if len >= 2 => body[..2].copy_from_slice(&rng.interesting_i16().to_be_bytes()),
            2 if len >= 4 => {
                let at = rng.below(len - 3);
                body[at..at + 4].copy_from_slice(&rng.interesting_i32().to_be_bytes());
            }
            3 => {
                let at = rng.below(len + 1);
                body.insert(at, rng.next() as u8);
            }
            4 => body.truncate(rng.below(len + 1)),
            _ if len > 0 => {
                body.remove(rng.below(len));
            }
            _ => body.push(0),
        }
    }
}

/// Byte-level damage to the whole stream, length words included.
fn mutate_stream(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(5) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len >= 4 => {
                let at = rng.below(len - 3);
                data[at..at + 4].copy_from_slice(&rng.interesting_i32().to_be_bytes());
            }
            2 => data.truncate(rng.below(len + 1)),
            3 if len > 0 => {
                data.remove(rng.below(len));
            }
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

fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut columns = rng.below(4);
    let mut out = BytesMut::new();
    for _ in 0..1 + rng.below(8) {
        let mut frame = random_frame(rng, &mut columns);
        if rng.chance(3) {
            let mut body = frame.body.to_vec();
            mutate_body(rng, &mut body);
            frame.body = body.into();
        }
        frame.encode(&mut out);
    }
    out.to_vec()
}

#[test]
fn pseudo_random_inputs_keep_the_properties() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, data)| data).collect();
    let mut rng = Rng(0x5eed_bac0_0000_0001);
    // What the inputs reached, so that a generator that stops producing
    // interesting inputs fails here rather than passing vacuously.
    let mut reached = BTreeSet::new();
    for i in 0..20_000 {
        let data: Vec<u8> = match rng.below(4) {
            0 => {
                // Random bytes, usually behind a plausible tag and length.
                let mut d = rng.bytes(48);
                if rng.chance(4) || d.len() < 5 {
                    d
                } else {
                    d[0] = b"TDENZC"[rng.below(6)];
                    let len = d.len() as i32 - 1;
                    d[1..5].copy_from_slice(&len.to_be_bytes());
                    d
                }
            }
            1 => {
                let mut d = seeds[rng.below(seeds.len())].clone();
                mutate_stream(&mut rng, &mut d);
                d
            }
            _ => {
                let mut d = random_stream(&mut rng);
                if rng.chance(4) {
                    mutate_stream(&mut rng, &mut d);
                }
                d
            }
        };
        let outcome = check(&format!("generated input #{i}"), &data);
        for seen in &outcome.frames {
            let kind = match (seen.tag, seen.verdict) {
                (b'T' | b'D' | b'E' | b'N', Verdict::Ok) => format!("{}", char::from(seen.tag)),
                (b'T' | b'D' | b'E' | b'N', Verdict::Rejected) => {
                    format!("!{}", char::from(seen.tag))
                }
                (_, Verdict::Lossy) => "lossy E/N".to_string(),
                (_, Verdict::Ok) => "other".to_string(),
                (_, Verdict::Rejected) => "!other".to_string(),
            };
            reached.insert(kind);
        }
        reached.insert(
            match outcome.end {
                End::Eof => "end eof",
                End::Truncated { .. } => "end truncated",
                End::FrameRejected(_) => "end frame rejected",
            }
            .to_string(),
        );
    }
    let want: BTreeSet<String> = [
        "T",
        "D",
        "E",
        "N",
        "!T",
        "!D",
        "!E",
        "!N",
        "lossy E/N",
        "other",
        "!other",
        "end eof",
        "end truncated",
        "end frame rejected",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let missing: Vec<&String> = want.difference(&reached).collect();
    assert!(missing.is_empty(), "no generated input reached {missing:?}");
}
