//! Decoding an OTLP/HTTP request body: picking the encoding from the
//! `Content-Type`, undoing `Content-Encoding: gzip` without letting a small
//! body expand into gigabytes, and parsing the protobuf or JSON export
//! request of one signal.
//!
//! Every failure is one [`DecodeError`], which knows its HTTP status (400,
//! 413 or 415) and whose message is safe to send back to the client: it never
//! echoes more than a few dozen characters of what the client sent.
//!
//! OTLP/JSON is parsed with opentelemetry-proto's serde derives, which
//! already follow the OTLP spec's JSON rules: camelCase keys, hex trace and
//! span ids, integer enums, 64-bit integers as strings or numbers, unknown
//! fields ignored. Where they are stricter than the protobuf JSON mapping
//! that OTLP/JSON builds on, a second, lenient pass fixes the body up before
//! giving up (see [`decode_traces`]); a body the fast path accepts never pays
//! for it.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::MultiGzDecoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost_otlp::Message;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The two media types OTLP/HTTP defines, as named in 415 responses.
pub const ACCEPTED_CONTENT_TYPES: &str = "application/x-protobuf or application/json";

/// The content codings accepted, as named in 415 responses.
pub const ACCEPTED_CONTENT_ENCODINGS: &str = "gzip or identity (or no Content-Encoding)";

/// At most this many characters of client input (a header value, a parser's
/// message quoting a JSON string) go back into an error message.
const MAX_ECHO: usize = 64;
const MAX_DETAIL: usize = 200;

/// How an OTLP/HTTP body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding named by a `Content-Type` header: the media type is
    /// compared case-insensitively and parameters (`; charset=utf-8`) are
    /// ignored. A missing or other type is a 415 error. Pass a header that is
    /// not valid UTF-8 as its lossy conversion.
    pub fn from_content_type(value: Option<&str>) -> Result<Encoding, DecodeError> {
        let Some(value) = value else {
            return Err(DecodeError::UnsupportedContentType { got: None });
        };
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Ok(Encoding::Json)
        } else {
            Err(DecodeError::UnsupportedContentType {
                got: Some(echo(value, MAX_ECHO)),
            })
        }
    }

    /// The `Content-Type` of this encoding. OTLP/HTTP answers in the
    /// encoding of the request.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "JSON",
        }
    }
}

/// How an OTLP/HTTP body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Identity,
    Gzip,
}

impl Compression {
    /// The compression named by a `Content-Encoding` header: none, empty or
    /// `identity`, or `gzip` (and its old alias `x-gzip`), case-insensitively.
    /// Anything else, including a list of several codings, is a 415 error:
    /// OTLP exporters only ever send one.
    pub fn from_content_encoding(value: Option<&str>) -> Result<Compression, DecodeError> {
        let coding = value.unwrap_or("").trim();
        if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
            Ok(Compression::Identity)
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            Ok(Compression::Gzip)
        } else {
            Err(DecodeError::UnsupportedContentEncoding {
                got: echo(coding, MAX_ECHO),
            })
        }
    }
}

/// Why a request body could not be decoded. `Display` is the message for
/// the client; [`status`](Self::status) is the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// 415: no `Content-Type`, or one OTLP/HTTP does not define.
    #[error("{}", unsupported_type_message(.got.as_deref()))]
    UnsupportedContentType { got: Option<String> },
    /// 415: a `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding \"{got}\": accepted are {ACCEPTED_CONTENT_ENCODINGS}")]
    UnsupportedContentEncoding { got: String },
    /// 413: the body as received is over the limit.
    #[error("the request body is over the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// 413: the body, once decompressed, is over the limit.
    #[error("the decompressed request body is over the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    /// 400: `Content-Encoding: gzip` but the body is not gzip.
    #[error("the body is not valid gzip: {detail}")]
    Gzip { detail: String },
    /// 400: the body does not parse as the signal's export request.
    #[error("the body is not a valid OTLP {message} ({encoding}): {detail}")]
    Malformed {
        /// The protobuf message expected, e.g. `ExportTraceServiceRequest`.
        message: &'static str,
        /// "protobuf" or "JSON".
        encoding: &'static str,
        detail: String,
    },
}

fn unsupported_type_message(got: Option<&str>) -> String {
    match got {
        None => format!("missing Content-Type: OTLP/HTTP accepts {ACCEPTED_CONTENT_TYPES}"),
        Some(got) => {
            format!(
                "unsupported Content-Type \"{got}\": OTLP/HTTP accepts {ACCEPTED_CONTENT_TYPES}"
            )
        }
    }
}

impl DecodeError {
    /// The HTTP status for this error: 415 for a media type or coding we do
    /// not speak, 413 for a body over a limit, 400 for a body that is broken.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::UnsupportedContentType { .. }
            | DecodeError::UnsupportedContentEncoding { .. } => 415,
            DecodeError::BodyTooLarge { .. } | DecodeError::DecompressedTooLarge { .. } => 413,
            DecodeError::Gzip { .. } | DecodeError::Malformed { .. } => 400,
        }
    }
}

/// At most `max` characters of `s`, control characters replaced, with "…"
/// when cut: client input goes back to the client (and into logs) only in
/// small, printable pieces.
fn echo(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4) + 3);
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// Like [`echo`], but a long text keeps its beginning and its end: parser
/// messages put the cause or the position last (prost: "field path: cause";
/// serde_json: "… at line 1 column 80").
fn echo_ends(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return echo(s, max);
    }
    let head: String = s.chars().take(max / 2).collect();
    let tail: String = s.chars().skip(n - max / 2).collect();
    format!("{} … {}", echo(&head, max), echo(&tail, max))
}

/// Checks the length of a body as received against `max_body`. The HTTP
/// server should also refuse to read more than that (a `Content-Length`
/// over the limit, or a chunked body that keeps coming); this is the check
/// and the error in one place.
pub fn check_body_len(len: usize, max_body: usize) -> Result<(), DecodeError> {
    if len > max_body {
        Err(DecodeError::BodyTooLarge { limit: max_body })
    } else {
        Ok(())
    }
}

/// Undoes the body's compression. An uncompressed body is borrowed as is
/// (and held to `max_decoded` too, so the limit means one thing). A gzip
/// body is inflated at most to `max_decoded` bytes: one byte more and the
/// inflation stops with [`DecodeError::DecompressedTooLarge`], so a gzip
/// bomb costs at most `max_decoded` bytes of memory and the time to inflate
/// that much, whatever it would expand to. Concatenated gzip members are
/// accepted (RFC 1952 allows them; some proxies produce them).
pub fn decompress(
    compression: Compression,
    body: &[u8],
    max_decoded: usize,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    match compression {
        Compression::Identity => {
            if body.len() > max_decoded {
                return Err(DecodeError::DecompressedTooLarge { limit: max_decoded });
            }
            Ok(Cow::Borrowed(body))
        }
        Compression::Gzip => gunzip(body, max_decoded).map(Cow::Owned),
    }
}

fn gunzip(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    // Telemetry compresses about 5-10×; start there, and grow in steps no
    // larger than what is left of the limit (plus the one byte that tells
    // "exactly at the limit" from "over it"), so the buffer never exceeds
    // max_decoded + 1 however far the stream would go.
    const STEP: usize = 64 * 1024;
    let mut out: Vec<u8> = Vec::with_capacity(body.len().saturating_mul(8).min(max_decoded) + 1);
    let mut decoder = MultiGzDecoder::new(body);
    loop {
        if out.len() > max_decoded {
            return Err(DecodeError::DecompressedTooLarge { limit: max_decoded });
        }
        let room = (max_decoded + 1 - out.len()).min(STEP);
        let start = out.len();
        out.resize(start + room, 0);
        match decoder.read(&mut out[start..]) {
            Ok(0) => {
                out.truncate(start);
                return Ok(out);
            }
            Ok(n) => out.truncate(start + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(start),
            Err(e) => {
                return Err(DecodeError::Gzip {
                    detail: echo(&e.to_string(), MAX_DETAIL),
                })
            }
        }
    }
}

/// Content-Type, Content-Encoding, size limits and decompression in one
/// call: what an OTLP/HTTP handler does before parsing the signal's request.
/// `max_body` bounds the body as received, `max_decoded` the body after
/// decompression.
pub fn prepare<'a>(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &'a [u8],
    max_body: usize,
    max_decoded: usize,
) -> Result<(Encoding, Cow<'a, [u8]>), DecodeError> {
    let encoding = Encoding::from_content_type(content_type)?;
    let compression = Compression::from_content_encoding(content_encoding)?;
    check_body_len(body.len(), max_body)?;
    Ok((encoding, decompress(compression, body, max_decoded)?))
}

/// Parses an OTLP trace export request.
///
/// Protobuf is prost's decoding (with its nesting limit of 100). JSON is
/// opentelemetry-proto's serde, and when that fails, one lenient retry that
/// fixes up what the protobuf JSON mapping allows but those derives refuse:
///
/// - `null` for any field (the mapping's "use the default"); the derives
///   refuse it for strings, ids and lists;
/// - `{"arrayValue": {}}` and `{"kvlistValue": {}}`: an empty list with its
///   `values` omitted, as protojson writers (the Collector's among them)
///   emit it; the derives demand `values`;
/// - enum names instead of numbers (`"kind": "SPAN_KIND_SERVER"`): OTLP/JSON
///   says integers, but protojson readers accept both, and so do we;
/// - `"doubleValue": "NaN"` (or `"Infinity"`, `"-Infinity"`, or a number in
///   a string): JSON has no NaN, so the mapping writes it as a string. NaN and
///   the infinities become the string attribute `"NaN"` etc., which is what
///   the conversion turns a non-finite double into anyway.
///
/// - any double field written as a string (`"sum": "3.5"`), which the
///   mapping allows; in metrics, a non-finite one (`"asDouble": "NaN"`,
///   `"sum": "Infinity"`) is dropped: the conversion keeps only finite sums,
///   mins and maxes, and rejects a point without a finite value anyway.
///
/// For metrics the retry also runs when the first pass *succeeded* but left
/// a metric without data: the derives parse a metric's data as a flattened
/// optional field, and serde turns any error inside it into "absent" rather
/// than an error, so one `"aggregationTemporality": "…CUMULATIVE"` or one
/// `null` would otherwise silently lose the metric (the conversion would
/// then reject it as "has no data").
pub fn decode_traces(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<ExportTraceServiceRequest, DecodeError> {
    decode(encoding, bytes, "ExportTraceServiceRequest", |_| false)
}

/// Parses an OTLP logs export request; see [`decode_traces`].
pub fn decode_logs(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<ExportLogsServiceRequest, DecodeError> {
    decode(encoding, bytes, "ExportLogsServiceRequest", |_| false)
}

/// Parses an OTLP metrics export request; see [`decode_traces`].
pub fn decode_metrics(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<ExportMetricsServiceRequest, DecodeError> {
    decode(
        encoding,
        bytes,
        "ExportMetricsServiceRequest",
        metric_without_data,
    )
}

/// Whether a parsed metrics request has a metric without data. The derives
/// parse a metric's data (`"sum": {...}`) as a flattened optional field, and
/// serde turns any error inside one into "absent": an enum name, a `null`
/// or an empty `arrayValue` in one point's attributes loses the metric's
/// whole data without an error.
fn metric_without_data(request: &ExportMetricsServiceRequest) -> bool {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .any(|m| m.data.is_none())
}

fn decode<T>(
    encoding: Encoding,
    bytes: &[u8],
    message: &'static str,
    swallowed: fn(&T) -> bool,
) -> Result<T, DecodeError>
where
    T: Message + Default + DeserializeOwned,
{
    let malformed = |detail: String| DecodeError::Malformed {
        message,
        encoding: encoding.name(),
        detail: echo_ends(&detail, MAX_DETAIL),
    };
    match encoding {
        Encoding::Protobuf => T::decode(bytes).map_err(|e| malformed(e.to_string())),
        Encoding::Json => match serde_json::from_slice::<T>(bytes) {
            Ok(request) if !swallowed(&request) => Ok(request),
            Ok(request) => {
                // Parsed, but maybe only because an error was swallowed; the
                // lenient pass may recover what was lost.
                let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
                    return Ok(request);
                };
                if !lenient(&mut value) {
                    return Ok(request);
                }
                Ok(serde_json::from_value::<T>(value).unwrap_or(request))
            }
            Err(first) => {
                // The error of the first pass is the one reported: it points
                // at a line and column of the body the client sent.
                let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
                    return Err(malformed(first.to_string()));
                };
                if !lenient(&mut value) {
                    return Err(malformed(first.to_string()));
                }
                serde_json::from_value::<T>(value).map_err(|_| malformed(first.to_string()))
            }
        },
    }
}

/// Rewrites, in place, what the protobuf JSON mapping accepts but the
/// derives do not (see [`decode_traces`]). Returns whether anything changed;
/// when nothing did, a retry would fail the same way. Recursion is bounded
/// by serde_json's own nesting limit (128) on the parse before.
fn lenient(value: &mut Value) -> bool {
    let mut changed = false;
    match value {
        Value::Array(items) => {
            for item in items {
                changed |= lenient(item);
            }
        }
        Value::Object(map) => {
            let before = map.len();
            map.retain(|_, v| !v.is_null());
            changed |= map.len() != before;
            for (key, v) in map.iter_mut() {
                if let Value::String(name) = v {
                    if let Some(n) = enum_number(key, name) {
                        *v = Value::from(n);
                        changed = true;
                    }
                    continue;
                }
                if let ("arrayValue" | "kvlistValue", Value::Object(list)) = (key.as_str(), &mut *v)
                {
                    if !list.contains_key("values") {
                        list.insert("values".into(), Value::Array(Vec::new()));
                        changed = true;
                    }
                }
                changed |= lenient(v);
            }
            // Doubles as strings. A number in a string becomes the number.
            // An AnyValue's NaN or infinity becomes a string value; a metric
            // double's is dropped (the conversion keeps only finite sums,
            // mins and maxes, and rejects a point without a finite value).
            for field in [
                "doubleValue",
                "asDouble",
                "sum",
                "min",
                "max",
                "zeroThreshold",
            ] {
                let Some(Value::String(s)) = map.get(field) else {
                    continue;
                };
                match s.trim() {
                    // The mapping's only spellings of the non-finite values.
                    "NaN" | "Infinity" | "-Infinity" => {
                        if let Some(Value::String(s)) = map.remove(field) {
                            if field == "doubleValue" {
                                map.insert("stringValue".into(), Value::String(s));
                            }
                        }
                        changed = true;
                    }
                    text => {
                        // Anything else that is not a finite number stays,
                        // and fails the retry as it failed the first pass.
                        if let Some(n) = finite_number(text) {
                            map.insert(field.into(), n);
                            changed = true;
                        }
                    }
                }
            }
            if let Some(Value::Array(bounds)) = map.get_mut("explicitBounds") {
                for bound in bounds {
                    if let Value::String(s) = bound {
                        if let Some(n) = finite_number(s) {
                            *bound = n;
                            changed = true;
                        }
                    }
                }
            }
        }
        _ => {}
    }
    changed
}

/// A finite number written as a string, as a JSON number.
fn finite_number(s: &str) -> Option<Value> {
    let x = s.trim().parse::<f64>().ok().filter(|x| x.is_finite())?;
    serde_json::Number::from_f64(x).map(Value::Number)
}

/// The number of an OTLP enum value given by name, for the enum fields of
/// the three signals.
fn enum_number(field: &str, name: &str) -> Option<i64> {
    use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
    let n = match field {
        "kind" => SpanKind::from_str_name(name)? as i32,
        "code" => StatusCode::from_str_name(name)? as i32,
        "severityNumber" => SeverityNumber::from_str_name(name)? as i32,
        "aggregationTemporality" => AggregationTemporality::from_str_name(name)? as i32,
        _ => return None,
    };
    Some(i64::from(n))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use flate2::write::GzEncoder;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn one_span_request() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "GET /".into(),
                        start_time_unix_nano: 1,
                        end_time_unix_nano: 2,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn content_types() {
        use Encoding::*;
        let ok = [
            ("application/x-protobuf", Protobuf),
            ("Application/X-Protobuf", Protobuf),
            ("application/json", Json),
            ("application/json; charset=utf-8", Json),
            ("APPLICATION/JSON;charset=UTF-8", Json),
            (" application/x-protobuf ; foo=bar", Protobuf),
        ];
        for (ct, want) in ok {
            assert_eq!(Encoding::from_content_type(Some(ct)).unwrap(), want, "{ct}");
        }
        for ct in [
            "text/plain",
            "application/protobuf",
            "application/jsonx",
            "",
            "multipart/form-data; boundary=x",
        ] {
            let err = Encoding::from_content_type(Some(ct)).unwrap_err();
            assert_eq!(err.status(), 415, "{ct}");
            let msg = err.to_string();
            assert!(msg.contains("application/x-protobuf"), "{msg}");
            assert!(msg.contains("application/json"), "{msg}");
        }
        let missing = Encoding::from_content_type(None).unwrap_err();
        assert_eq!(missing.status(), 415);
        assert!(missing.to_string().starts_with("missing Content-Type"));
    }

    #[test]
    fn long_header_is_not_echoed_whole() {
        let ct = "x".repeat(10_000);
        let msg = Encoding::from_content_type(Some(&ct))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 300, "{}", msg.len());
        let msg = Compression::from_content_encoding(Some(&ct))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 300, "{}", msg.len());
    }

    #[test]
    fn content_encodings() {
        for (ce, want) in [
            (None, Compression::Identity),
            (Some(""), Compression::Identity),
            (Some("identity"), Compression::Identity),
            (Some("gzip"), Compression::Gzip),
            (Some("GZIP"), Compression::Gzip),
            (Some("x-gzip"), Compression::Gzip),
        ] {
            assert_eq!(Compression::from_content_encoding(ce).unwrap(), want);
        }
        for ce in ["br", "deflate", "zstd", "gzip, identity"] {
            let err = Compression::from_content_encoding(Some(ce)).unwrap_err();
            assert_eq!(err.status(), 415);
            assert!(err.to_string().contains("gzip"), "{err}");
            assert!(err.to_string().contains(ce), "{err}");
        }
    }

    #[test]
    fn protobuf_round_trip_through_gzip() {
        let req = one_span_request();
        let raw = req.encode_to_vec();
        let gz = gzip(&raw);
        let (enc, bytes) = prepare(
            Some("application/x-protobuf"),
            Some("gzip"),
            &gz,
            1 << 20,
            1 << 20,
        )
        .unwrap();
        assert_eq!(enc, Encoding::Protobuf);
        assert!(matches!(bytes, Cow::Owned(_)));
        assert_eq!(decode_traces(enc, &bytes).unwrap(), req);
        // Uncompressed: borrowed, not copied.
        let (_, bytes) =
            prepare(Some("application/x-protobuf"), None, &raw, 1 << 20, 1 << 20).unwrap();
        assert!(matches!(bytes, Cow::Borrowed(_)));
    }

    #[test]
    fn gzip_exactly_at_the_limit_is_accepted() {
        let data = vec![7u8; 1000];
        let gz = gzip(&data);
        assert_eq!(
            decompress(Compression::Gzip, &gz, 1000).unwrap().len(),
            1000
        );
        let err = decompress(Compression::Gzip, &gz, 999).unwrap_err();
        assert_eq!(err, DecodeError::DecompressedTooLarge { limit: 999 });
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn concatenated_gzip_members() {
        let mut gz = gzip(b"hello ");
        gz.extend(gzip(b"world"));
        assert_eq!(
            &*decompress(Compression::Gzip, &gz, 100).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn gzip_bomb_is_bounded() {
        // 50 MB of zeros compress to about 50 KB; with a 1 MB limit the
        // inflation must stop after about 1 MB, not inflate all 50.
        let zeros = vec![0u8; 50 << 20];
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).unwrap();
        let bomb = enc.finish().unwrap();
        drop(zeros);
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let started = Instant::now();
        let err = decompress(Compression::Gzip, &bomb, 1 << 20).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.status(), 413);
        assert!(err.to_string().contains("1048576"), "{err}");
        // Inflating 50 MB takes tens of ms in a release build and several
        // times that unoptimised; 1 MB takes about a millisecond. The bound
        // is generous for slow CI machines but still far below inflating
        // the whole bomb in a debug build.
        assert!(took < Duration::from_millis(150), "{took:?}");
    }

    #[test]
    fn broken_gzip_is_400() {
        let err = decompress(Compression::Gzip, b"not gzip at all", 1 << 20).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(
            err.to_string().starts_with("the body is not valid gzip"),
            "{err}"
        );
        let mut gz = gzip(&[1u8; 10_000]);
        gz.truncate(gz.len() / 2);
        assert_eq!(
            decompress(Compression::Gzip, &gz, 1 << 20)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn body_limits() {
        assert!(check_body_len(10, 10).is_ok());
        let err = check_body_len(11, 10).unwrap_err();
        assert_eq!(err.status(), 413);
        let err = prepare(Some("application/json"), None, b"{}", 1, 100).unwrap_err();
        assert_eq!(err, DecodeError::BodyTooLarge { limit: 1 });
        let err = decompress(Compression::Identity, b"{}", 1).unwrap_err();
        assert_eq!(err, DecodeError::DecompressedTooLarge { limit: 1 });
    }

    #[test]
    fn truncated_protobuf_is_400() {
        let raw = one_span_request().encode_to_vec();
        let err = decode_traces(Encoding::Protobuf, &raw[..raw.len() - 3]).unwrap_err();
        assert_eq!(err.status(), 400);
        let msg = err.to_string();
        assert!(
            msg.starts_with("the body is not a valid OTLP ExportTraceServiceRequest (protobuf): "),
            "{msg}"
        );
        // Garbage, and the right bytes for the wrong signal's framing.
        assert_eq!(
            decode_logs(Encoding::Protobuf, b"\xff\xff\xff")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn malformed_json_is_400_and_short() {
        let err = decode_traces(Encoding::Json, b"{\"resourceSpans\": [").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("(JSON)"), "{err}");
        // serde_json quotes a mistyped string in full; the message must not.
        let long = "y".repeat(100_000);
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":5, "kind":"{long}"}}]}}]}}]}}"#
        );
        let err = decode_traces(Encoding::Json, body.as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 400, "{}", err.to_string().len());
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"kind":"{long}"}}]}}]}}]}}"#
        );
        let err = decode_traces(Encoding::Json, body.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.len() < 400, "{}", msg.len());
        // The head and the tail are kept: what was wrong, and where.
        assert!(msg.contains("invalid type: string \"yyy"), "{msg}");
        assert!(msg.contains("at line 1 column 1000"), "{msg}");
    }

    /// The trace example of the OTLP spec (opentelemetry-proto's
    /// examples/trace.json), with the times as strings as the spec's JSON
    /// encoding section writes 64-bit integers.
    const SPEC_TRACE: &str = r#"{
      "resourceSpans": [{
        "resource": {
          "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
        },
        "scopeSpans": [{
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]
          },
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "kind": 2,
            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}]
          }]
        }]
      }]
    }"#;

    #[test]
    fn spec_trace_example() {
        let req = decode_traces(Encoding::Json, SPEC_TRACE.as_bytes()).unwrap();
        let rs = &req.resource_spans[0];
        let attr = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(attr.key, "service.name");
        assert_eq!(
            attr.value.as_ref().unwrap().value,
            Some(Any::StringValue("my.service".into()))
        );
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "my.library");
        let span = &ss.spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
        assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.name, "I'm a server span");

        // The same with the times as JSON numbers, as the example file has them.
        let numbers = SPEC_TRACE
            .replace("\"1544712660000000000\"", "1544712660000000000")
            .replace("\"1544712661000000000\"", "1544712661000000000");
        assert_eq!(
            decode_traces(Encoding::Json, numbers.as_bytes()).unwrap(),
            req
        );

        // And the decoded request survives protobuf unchanged.
        let raw = req.encode_to_vec();
        assert_eq!(decode_traces(Encoding::Protobuf, &raw).unwrap(), req);
    }

    #[test]
    fn json_round_trip_of_the_derives() {
        // What opentelemetry-proto serialises, it reads back.
        let req = one_span_request();
        let json = serde_json::to_vec(&req).unwrap();
        assert_eq!(decode_traces(Encoding::Json, &json).unwrap(), req);
    }

    #[test]
    fn json_values_per_spec() {
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "someFutureField":{"nested":[1,2,3]},
            "attributes":[
              {"key":"s","value":{"stringValue":"v"}},
              {"key":"i1","value":{"intValue":"9007199254740993"}},
              {"key":"i2","value":{"intValue":42}},
              {"key":"d","value":{"doubleValue":1.5}},
              {"key":"b","value":{"boolValue":true}},
              {"key":"y","value":{"bytesValue":"aGVsbG8="}},
              {"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"x"}]}}},
              {"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":false}}]}}},
              {"key":"e","value":{}}
            ]}]}]}],"unknownTopLevel":true}"#;
        let req = decode_traces(Encoding::Json, body.as_bytes()).unwrap();
        let attrs = &req.resource_spans[0].scope_spans[0].spans[0].attributes;
        let v = |i: usize| attrs[i].value.as_ref().unwrap().value.clone();
        assert_eq!(v(0), Some(Any::StringValue("v".into())));
        assert_eq!(v(1), Some(Any::IntValue(9_007_199_254_740_993)));
        assert_eq!(v(2), Some(Any::IntValue(42)));
        assert_eq!(v(3), Some(Any::DoubleValue(1.5)));
        assert_eq!(v(4), Some(Any::BoolValue(true)));
        assert_eq!(v(5), Some(Any::BytesValue(b"hello".to_vec())));
        assert!(matches!(v(6), Some(Any::ArrayValue(a)) if a.values.len() == 2));
        assert!(matches!(v(7), Some(Any::KvlistValue(l)) if l.values[0].key == "k"));
        assert_eq!(v(8), None);
    }

    #[test]
    fn json_leniencies_of_the_second_pass() {
        let body = r#"{"resourceSpans":[{"resource":null,"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "parentSpanId":null,"name":null,
            "kind":"SPAN_KIND_CLIENT","status":{"code":"STATUS_CODE_ERROR","message":"boom"},
            "attributes":[
              {"key":"empty","value":{"arrayValue":{}}},
              {"key":"emptymap","value":{"kvlistValue":{}}},
              {"key":"nan","value":{"doubleValue":"NaN"}},
              {"key":"inf","value":{"doubleValue":"-Infinity"}},
              {"key":"strnum","value":{"doubleValue":"2.5"}},
              {"key":"nullvalue","value":null}
            ]}]}]}]}"#;
        let req = decode_traces(Encoding::Json, body.as_bytes()).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, 3);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert!(span.parent_span_id.is_empty());
        let v = |i: usize| span.attributes[i].value.as_ref().map(|v| v.value.clone());
        assert!(matches!(v(0), Some(Some(Any::ArrayValue(a))) if a.values.is_empty()));
        assert!(matches!(v(1), Some(Some(Any::KvlistValue(l))) if l.values.is_empty()));
        assert_eq!(v(2), Some(Some(Any::StringValue("NaN".into()))));
        assert_eq!(v(3), Some(Some(Any::StringValue("-Infinity".into()))));
        assert_eq!(v(4), Some(Some(Any::DoubleValue(2.5))));
        assert_eq!(v(5), None);

        let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"timeUnixNano":"1","severityNumber":"SEVERITY_NUMBER_ERROR"}]}]}]}"#;
        let req = decode_logs(Encoding::Json, logs.as_bytes()).unwrap();
        assert_eq!(
            req.resource_logs[0].scope_logs[0].log_records[0].severity_number,
            17
        );

        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"c",
            "sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
            "dataPoints":[{"asInt":"3","timeUnixNano":"5"}]}}]}]}]}"#;
        let req = decode_metrics(Encoding::Json, metrics.as_bytes()).unwrap();
        let metric = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        assert!(matches!(&metric.data, Some(Data::Sum(s)) if s.aggregation_temporality == 2));
    }

    #[test]
    fn json_still_rejects_what_is_wrong() {
        for body in [
            // A double that is no number, in any spelling.
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"d","value":{"doubleValue":"abc"}}]}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"d","value":{"doubleValue":"inf"}}]}]}]}]}"#,
            // An unknown enum name.
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_NOPE"}]}]}]}"#,
            // Ids must be hex (the protobuf mapping's base64 is not OTLP/JSON).
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"W47/95gDgQPSabYzgT/GDA=="}]}]}]}"#,
            // A negative time.
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"-5"}]}]}]}"#,
            // Not an object at all.
            r#"[1,2,3]"#,
            "",
        ] {
            let err = decode_traces(Encoding::Json, body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
        }
    }

    #[test]
    fn protobuf_nesting_is_bounded() {
        // prost refuses messages nested over 100 deep: a body of nested
        // arrays cannot recurse the decoder (or the conversion) off the stack.
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
        let mut v = AnyValue {
            value: Some(Any::StringValue("leaf".into())),
        };
        for _ in 0..200 {
            v = AnyValue {
                value: Some(Any::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let mut req = one_span_request();
        req.resource_spans[0].scope_spans[0].spans[0].attributes = vec![KeyValue {
            key: "deep".into(),
            value: Some(v),
            key_strindex: 0,
        }];
        let err = decode_traces(Encoding::Protobuf, &req.encode_to_vec()).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    #[test]
    fn spec_logs_and_metrics_examples() {
        // opentelemetry-proto's examples/logs.json, abridged to its values.
        let logs = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0"},
          "logRecords":[{"timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000",
            "severityNumber":10,"severityText":"Information",
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
            "body":{"stringValue":"Example log record"},
            "attributes":[{"key":"int.attribute","value":{"intValue":"10"}},
              {"key":"double.attribute","value":{"doubleValue":637.704}}]}]}]}]}"#;
        let req = decode_logs(Encoding::Json, logs.as_bytes()).unwrap();
        let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(rec.severity_number, 10);
        assert_eq!(rec.trace_id.len(), 16);
        assert_eq!(
            rec.body.as_ref().unwrap().value,
            Some(Any::StringValue("Example log record".into()))
        );
        assert_eq!(
            decode_logs(Encoding::Protobuf, &req.encode_to_vec()).unwrap(),
            req
        );

        // examples/metrics.json: a sum, a gauge and a histogram.
        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
          {"name":"my.counter","unit":"1","sum":{"aggregationTemporality":1,"isMonotonic":true,
            "dataPoints":[{"asDouble":5,"startTimeUnixNano":"1544712660300000000","timeUnixNano":"1544712660300000000"}]}},
          {"name":"my.gauge","unit":"1","gauge":{"dataPoints":[{"asInt":"10","timeUnixNano":"1544712660300000000"}]}},
          {"name":"my.histogram","unit":"1","histogram":{"aggregationTemporality":1,
            "dataPoints":[{"timeUnixNano":"1544712660300000000","count":"3","sum":3,
              "bucketCounts":["1","1","1"],"explicitBounds":[1,5],"min":1,"max":6}]}}]}]}]}"#;
        let req = decode_metrics(Encoding::Json, metrics.as_bytes()).unwrap();
        use opentelemetry_proto::tonic::metrics::v1::{
            metric::Data, number_data_point::Value as N,
        };
        let ms = &req.resource_metrics[0].scope_metrics[0].metrics;
        assert!(
            matches!(&ms[0].data, Some(Data::Sum(s)) if s.is_monotonic && s.data_points[0].value == Some(N::AsDouble(5.0)))
        );
        assert!(
            matches!(&ms[1].data, Some(Data::Gauge(g)) if g.data_points[0].value == Some(N::AsInt(10)))
        );
        assert!(
            matches!(&ms[2].data, Some(Data::Histogram(h)) if h.data_points[0].bucket_counts == [1, 1, 1] && h.data_points[0].count == 3)
        );
        assert_eq!(
            decode_metrics(Encoding::Protobuf, &req.encode_to_vec()).unwrap(),
            req
        );
    }
}
