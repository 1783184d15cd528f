//! Statement classification with PostgreSQL's own grammar, guardrails on
//! writes, and masking rules for result rows.
//!
//! This room is reserved by the gateway-core issue so that its boundary holds
//! from the start: it will never talk to the network, and the proxy asks it
//! about every statement before forwarding. The classifier lands with the
//! "read-only that cannot be bypassed" issue.
