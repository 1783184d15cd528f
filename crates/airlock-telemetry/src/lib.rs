//! OTLP receivers, telemetry storage, the merged incident timeline, traces and
//! version comparison.
//!
//! Data flow: a receiver ([`otlp_http`] on `listen_http`, [`otlp_grpc`] on
//! `listen_otlp_grpc`) authenticates the request, decodes its body
//! ([`body`]), converts OTLP into Airlock's flat records ([`convert`]) and
//! hands the batch to [`ingest`], whose one writer thread stores batches in
//! groups through [`airlock_store::telemetry::TelemetryStore`]. Readers (the
//! API's timeline, trace and compare endpoints) query the store directly.
//!
//! Nothing here runs on the proxy's hot path: decoding runs on blocking
//! threads, storing on the writer thread, and a full queue is answered with
//! OTLP's retryable status rather than waited on.

pub mod body;
pub mod compare;
pub mod convert;
pub mod ingest;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod receiver;
pub mod trace;
