//! The file as written: serde structs that mirror `airlock.toml` key for key.
//!
//! Values that need checking beyond their TOML type (names, addresses, durations, sizes, enums) are
//! kept as strings or raw values with their byte spans, so `validate.rs` can check them all, report
//! every problem at once with its line, and only then build the typed [`crate::Config`]. Unknown keys
//! are refused here (`deny_unknown_fields`): a typo in a security setting must not be ignored.

use serde::Deserialize;
use serde_spanned::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub gateway: RawGateway,
    #[serde(default)]
    pub resource: Vec<RawResource>,
    #[serde(default)]
    pub role: Vec<RawRole>,
    #[serde(default)]
    pub user: Vec<RawUser>,
    #[serde(default)]
    pub access: Option<RawAccess>,
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub telemetry: Option<RawTelemetry>,
    #[serde(default)]
    pub runbooks: Option<RawRunbooks>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRunbooks {
    pub dir: Spanned<String>,
    #[serde(default)]
    pub max_output: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    #[serde(default)]
    pub retain: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub ingest_tokens_env: Option<Spanned<String>>,
    #[serde(default)]
    pub max_request_size: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub max_pending: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub min_free_space: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub max_size: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub threshold: Vec<Spanned<RawThreshold>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThreshold {
    pub name: Spanned<String>,
    pub metric: Spanned<String>,
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    #[serde(default)]
    pub above: Option<Spanned<f64>>,
    #[serde(default)]
    pub stat: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    #[serde(default)]
    pub fsync: Option<Spanned<String>>,
    #[serde(default)]
    pub checkpoint_every: Option<Spanned<i64>>,
    #[serde(default)]
    pub checkpoint_interval: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub retain: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub replay_rows: Option<Spanned<i64>>,
    #[serde(default)]
    pub segment_size: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub auditor_roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub anchors: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    #[serde(default)]
    pub request_ttl: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub max_grant: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub token_ttl: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub admin_roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub telemetry_roles: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub deploy_roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub metrics_token_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: Spanned<String>,
    pub events: Spanned<Vec<Spanned<String>>>,
    pub secret_env: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub listen_postgres: Spanned<String>,
    pub listen_http: Spanned<String>,
    pub data_dir: Spanned<String>,
    #[serde(default)]
    pub public_host: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_cert: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_key: Option<Spanned<String>>,
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default = "yes")]
    pub http_tls: bool,
    /// An integer or a string: checked in `validate.rs`.
    #[serde(default)]
    pub max_message_size: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub max_statement_size: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub read_work_mem: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub read_idle_in_transaction_timeout: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub credential_ttl: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub connect_timeout: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub max_client_connections: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_unauthenticated: Option<Spanned<i64>>,
    #[serde(default)]
    pub login_timeout: Option<Spanned<toml::Value>>,
    /// `host:port`, or "off".
    #[serde(default)]
    pub listen_otlp_grpc: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResource {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub host: Spanned<String>,
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    pub database: Spanned<String>,
    #[serde(default)]
    pub tls: Option<Spanned<String>>,
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub read_credential_can_write: Option<Spanned<String>>,
    #[serde(default)]
    pub read: Option<Spanned<RawCredential>>,
    #[serde(default)]
    pub write: Option<Spanned<RawCredential>>,
    #[serde(default)]
    pub guardrails: Vec<Spanned<RawGuardrail>>,
    #[serde(default)]
    pub masking: Vec<Spanned<RawMasking>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuardrail {
    #[serde(default)]
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub require_where: bool,
    #[serde(default)]
    pub max_rows: Option<Spanned<i64>>,
    #[serde(default)]
    pub statement_timeout: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMasking {
    #[serde(default)]
    pub columns: Vec<Spanned<String>>,
    #[serde(default)]
    pub detectors: Vec<Spanned<String>>,
    #[serde(default)]
    pub unmasked_roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    pub user: Spanned<String>,
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRole {
    pub name: Spanned<String>,
    #[serde(default)]
    pub standing: Vec<Spanned<RawEntitlement>>,
    #[serde(default)]
    pub requestable: Vec<Spanned<RawRequestable>>,
    #[serde(default)]
    pub break_glass: Vec<Spanned<RawBreakGlass>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequestable {
    pub resource: Spanned<String>,
    pub access: Spanned<String>,
    pub max: Spanned<toml::Value>,
    #[serde(default)]
    pub approvals: Option<Spanned<i64>>,
    pub approvers: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreakGlass {
    pub resource: Spanned<String>,
    pub access: Spanned<String>,
    pub max: Spanned<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntitlement {
    pub resource: Spanned<String>,
    pub access: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub name: Spanned<String>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
}

fn yes() -> bool {
    true
}
