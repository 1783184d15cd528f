//! OTLP/HTTP: `POST /v1/traces`, `/v1/logs` and `/v1/metrics` on
//! `listen_http`, protobuf or JSON bodies, optionally gzip.
//!
//! Answers follow the OTLP/HTTP spec: 200 with an `Export*ServiceResponse`
//! (carrying `partial_success` when some records were rejected), or an error
//! status whose body is a `google.rpc.Status` in the request's encoding:
//! 400 malformed, 401 no or bad ingest token, 413 too large, 415 content type
//! or encoding not spoken, 503 with `Retry-After` when the store is behind
//! (OTLP clients retry that), 500 when the store failed.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use prost_otlp::Message;

use crate::body::{self, Encoding};
use crate::convert;
use crate::receiver::{Accepted, Receiver, Refusal};

/// Seconds a busy receiver asks clients to wait.
const RETRY_AFTER_SECS: u32 = 1;

/// The three OTLP/HTTP routes.
pub fn router(receiver: Receiver) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .route("/v1/metrics", post(metrics))
        .with_state(receiver)
}

/// The parts of a request every signal handles the same way: token, content
/// type and encoding, size.
async fn prepare(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Encoding, body::Compression, Bytes), (Encoding, Refusal)> {
    // Until the content type is known, refusals are answered in JSON.
    let fallback = Encoding::Json;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    receiver.authorize(auth).map_err(|r| (fallback, r))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let encoding =
        Encoding::from_content_type(content_type).map_err(|e| (fallback, refusal_of(&e)))?;
    let compression = body::Compression::from_content_encoding(
        headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|e| (encoding, refusal_of(&e)))?;
    let too_large = || {
        Refusal::TooLarge(format!(
            "the request body is larger than the limit of {} bytes ([telemetry] max_request_size); send smaller batches",
            receiver.max_request
        ))
    };
    // Refuse a declared length over the limit before reading any of it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > receiver.max_request as u64) {
        return Err((encoding, too_large()));
    }
    let raw: Bytes = axum::body::to_bytes(body, receiver.max_request)
        .await
        .map_err(|_| (encoding, too_large()))?;
    Ok((encoding, compression, raw))
}

/// Decompresses and parses on a blocking thread: inflating a large gzip body
/// takes milliseconds, which the runtime's workers owe to the proxy.
async fn decode<R: Send + 'static>(
    receiver: &Receiver,
    (encoding, compression, raw): (Encoding, body::Compression, Bytes),
    parse: fn(Encoding, &[u8]) -> Result<R, body::DecodeError>,
) -> Result<R, Refusal> {
    let max = receiver.max_request;
    tokio::task::spawn_blocking(move || {
        let bytes = body::decompress(compression, &raw, max)?;
        parse(encoding, &bytes)
    })
    .await
    .map_err(|e| Refusal::Failed(format!("decoding the request failed: {e}")))?
    .map_err(|e| refusal_of(&e))
}

fn refusal_of(e: &body::DecodeError) -> Refusal {
    match e.status() {
        413 => Refusal::TooLarge(e.to_string()),
        415 => Refusal::Unsupported(e.to_string()),
        _ => Refusal::Malformed(e.to_string()),
    }
}

async fn traces(State(r): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    export(
        &r,
        &headers,
        body,
        body::decode_traces,
        convert::traces,
        Accepted::traces,
    )
    .await
}

async fn logs(State(r): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    export(
        &r,
        &headers,
        body,
        body::decode_logs,
        convert::logs,
        Accepted::logs,
    )
    .await
}

async fn metrics(State(r): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    export(
        &r,
        &headers,
        body,
        body::decode_metrics,
        convert::metrics,
        Accepted::metrics,
    )
    .await
}

/// One export request of any signal: prepare, parse, convert and store, then
/// answer in the request's encoding.
async fn export<R: Send + 'static, M: Message + serde::Serialize>(
    r: &Receiver,
    headers: &HeaderMap,
    body: Body,
    parse: fn(Encoding, &[u8]) -> Result<R, body::DecodeError>,
    convert: fn(R, &convert::Limits) -> convert::Converted,
    answer: fn(Accepted) -> M,
) -> Response {
    let prepared = match prepare(r, headers, body).await {
        Ok(v) => v,
        Err((encoding, refusal)) => return refuse(encoding, &refusal),
    };
    let encoding = prepared.0;
    let request = match decode(r, prepared, parse).await {
        Ok(req) => req,
        Err(refusal) => return refuse(encoding, &refusal),
    };
    match r.store(request, convert).await {
        Ok(accepted) => respond(encoding, &answer(accepted)),
        Err(refusal) => refuse(encoding, &refusal),
    }
}

fn respond<M: Message + serde::Serialize>(encoding: Encoding, message: &M) -> Response {
    let (content_type, bytes) = match encoding {
        Encoding::Protobuf => ("application/x-protobuf", message.encode_to_vec()),
        Encoding::Json => (
            "application/json",
            serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec()),
        ),
    };
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

/// An error answer: the HTTP status OTLP prescribes and a `google.rpc.Status`.
pub fn refuse(encoding: Encoding, refusal: &Refusal) -> Response {
    // gRPC codes, as google.rpc.Status carries them.
    let (status, code) = match refusal {
        Refusal::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, 16),
        Refusal::Malformed(_) => (StatusCode::BAD_REQUEST, 3),
        Refusal::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 8),
        Refusal::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 3),
        Refusal::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, 14),
        Refusal::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, 13),
    };
    let message = refusal.message();
    let (content_type, bytes) = match encoding {
        Encoding::Protobuf => ("application/x-protobuf", rpc_status(code, message)),
        Encoding::Json => (
            "application/json",
            serde_json::to_vec(&serde_json::json!({ "code": code, "message": message }))
                .expect("a JSON object"),
        ),
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], bytes).into_response();
    if matches!(refusal, Refusal::Busy(_)) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    if matches!(refusal, Refusal::Unauthenticated(_)) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"airlock-otlp\""),
        );
    }
    response
}

/// `google.rpc.Status { code = 1; message = 2; }` in protobuf, encoded by
/// hand: the message has two scalar fields, and a generated type would pull
/// in googleapis for nothing.
fn rpc_status(code: i32, message: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(message.len() + 8);
    prost_otlp::encoding::int32::encode(1, &code, &mut buf);
    prost_otlp::encoding::string::encode(2, &message.to_owned(), &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_status_is_protobuf_status() {
        let bytes = rpc_status(3, "bad");
        // field 1 varint 3, field 2 length-delimited "bad".
        assert_eq!(bytes, vec![0x08, 3, 0x12, 3, b'b', b'a', b'd']);
    }
}
