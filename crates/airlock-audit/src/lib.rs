//! The hash-chained, append-only audit log: records, checkpoints, verify and
//! export.
//!
//! Until the "tamper-evident audit log" issue lands, sessions and statements are
//! recorded in the store (`airlock-store`); this crate will replace that record
//! with the chain and must never depend on the proxy.
