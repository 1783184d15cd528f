//! The SQLSTATE codes Airlock itself sends (the upstream's own codes pass
//! through untouched).

pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const CONNECTION_FAILURE: &str = "08006";
pub const SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: &str = "08001";
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
pub const INVALID_PASSWORD: &str = "28P01";
pub const INVALID_CATALOG_NAME: &str = "3D000";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
pub const INTERNAL_ERROR: &str = "XX000";
pub const QUERY_CANCELED: &str = "57014";
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
/// `disk_full`: the gateway's audit log could not be written for lack of space.
pub const DISK_FULL: &str = "53100";
/// `io_error`: the gateway's audit log could not be written.
pub const IO_ERROR: &str = "58030";
