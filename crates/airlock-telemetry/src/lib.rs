//! OTLP receivers, telemetry storage, the merged incident timeline, traces and
//! version comparison.
//!
//! Reserved by the gateway-core issue; filled by the telemetry issue. It must
//! never block the proxy's hot path.

pub mod body;
pub mod convert;
