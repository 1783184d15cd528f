//! Runbook files, typed parameter validation and execution of sql, http and
//! command steps.
//!
//! Reserved by the gateway-core issue; filled by the runbooks issue. It must
//! never pass a parameter through a shell.
