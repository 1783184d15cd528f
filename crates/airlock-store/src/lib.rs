//! Persistence for Airlock's control plane: API token hashes, per-user SCRAM
//! salts, session credentials (as SCRAM verifiers), access requests,
//! approvals and grants. Sessions and statements are in the audit log
//! (`airlock-audit`), not here.
//!
//! Callers program against the [`Store`] trait and hold an `Arc<dyn Store>`, so
//! a PostgreSQL backend for several gateways can be added later without touching
//! them. The trait therefore speaks only in plain records and `&str`
//! identifiers (callers own the newtypes) and never exposes SQL or a dialect's
//! error codes: constraint violations come back as [`StoreError::AlreadyExists`]
//! or [`StoreError::NotFound`].
//!
//! [`SqliteStore`] is the embedded default: one SQLite file in the data
//! directory.
//!
//! Telemetry (OTLP spans, logs, metric points, deploy markers) has a trait of
//! its own, [`telemetry::TelemetryStore`], implemented by [`SqliteTelemetry`]
//! in a separate SQLite file, because its write volume and retention have
//! nothing in common with the control plane's.
//!
//! The store never reads the clock for domain decisions: every time is passed in
//! by the caller as unix milliseconds (`now_ms`, `since_ms`, ...; telemetry
//! uses OTLP's unix nanoseconds, `*_ns`), because "server time decides" is
//! the gateway's job and tests need a test clock.
//!
//! All methods are synchronous; async callers use `spawn_blocking` or a
//! dedicated writer thread.

#![forbid(unsafe_code)]

mod error;
mod id;
mod records;
mod sqlite;
mod store;
pub mod telemetry;

pub use error::StoreError;
pub use id::new_id;
pub use records::{
    ApiToken, ApproveOutcome, GrantFilter, RequestFilter, SessionCredential, DEFAULT_LIMIT,
};
pub use sqlite::{SqliteStore, SqliteTelemetry, SCHEMA_VERSION, TELEMETRY_SCHEMA_VERSION};
pub use store::Store;
