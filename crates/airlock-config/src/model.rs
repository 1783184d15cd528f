//! The validated configuration: what the rest of Airlock reads.
//!
//! Every value here has passed validation (see `validate.rs`), defaults are filled in and relative
//! paths are resolved against the config file's directory, so consumers never re-check or re-resolve.
//! Nothing here holds a secret: upstream passwords are only named (`password_env`) and read from the
//! environment on demand, which is why all of these types can derive `Debug` safely.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use airlock_sql::mask::{ColumnPattern, Detector, Detectors};
use airlock_sql::Guardrails;

use crate::names::{ResourceName, RoleName, UserName};
use crate::secret::{MissingSecret, SecretProblem};
use crate::units::ByteSize;
use crate::{ConfigError, Secret};

/// The `[gateway]` table, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Where Postgres clients connect, `host:port` (the host may be a name or a bracketed IPv6).
    pub listen_postgres: String,
    /// Where the HTTP API, console and OTLP/HTTP listen, `host:port`.
    pub listen_http: String,
    /// The data directory, resolved against the config file's directory.
    pub data_dir: PathBuf,
    /// The host name clients use to reach the gateway, without brackets even for IPv6 (callers
    /// building a URI add them). Defaults to the host of `listen_postgres`, with the wildcard
    /// addresses `0.0.0.0` and `::` replaced by `localhost`.
    pub public_host: String,
    /// The gateway's TLS certificate chain (PEM). Set together with `tls_key`, or neither, in which
    /// case the gateway generates its own CA in the data directory.
    pub tls_cert: Option<PathBuf>,
    /// The private key for `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// Whether Postgres clients may connect without TLS. Default `false`.
    pub allow_plaintext: bool,
    /// Whether the HTTP API is served over TLS with the gateway's certificate.
    /// Default `true`; turn off only behind a TLS-terminating proxy or on loopback.
    pub http_tls: bool,
    /// The largest protocol message accepted from a client or upstream. Default 1 GiB.
    pub max_message_size: ByteSize,
    /// The longest statement text the gateway classifies; longer ones are
    /// refused with SQLSTATE 54000 (parameters are not statement text).
    /// Default 1 MiB.
    pub max_statement_size: ByteSize,
    /// The most memory a read session may give `work_mem`,
    /// `maintenance_work_mem` and `temp_buffers` (and `hash_mem_multiplier`
    /// is capped at 2). Default 64 MiB.
    pub read_work_mem: ByteSize,
    /// `idle_in_transaction_session_timeout` of read sessions, which they
    /// cannot lift (an idle transaction would block migrations and vacuum).
    /// Default 5m.
    pub read_idle_in_transaction_timeout: Duration,
    /// The longest a session credential minted by `airlock connect` may live. Default and maximum 8h.
    pub credential_ttl: Duration,
    /// Time allowed for connecting and logging in to an upstream database. Default 10s.
    pub connect_timeout: Duration,
    /// Client connections the PostgreSQL listener holds at once, logged in
    /// or not; more are refused with SQLSTATE 53300. Default 1000.
    pub max_client_connections: usize,
    /// Connections that have not logged in yet, held at once; more are
    /// closed at once. They do not count against `max_client_connections`,
    /// so idle sockets cannot keep people out. Default 32.
    pub max_unauthenticated: usize,
    /// How long a connection may take to log in (TLS, startup, SCRAM)
    /// before it is closed. Default 10s.
    pub login_timeout: Duration,
    /// Where OTLP/gRPC listens, `host:port`; `None` when set to "off".
    /// Default `127.0.0.1:4317`, the OTLP port.
    pub listen_otlp_grpc: Option<String>,
}

impl Gateway {
    /// Default for `max_message_size`: the largest message Postgres itself accepts.
    pub const DEFAULT_MAX_MESSAGE_SIZE: ByteSize = ByteSize::GIB;
    /// Smallest accepted `max_message_size`: below this, ordinary startup and error messages fail.
    pub const MIN_MAX_MESSAGE_SIZE: ByteSize = ByteSize(8 * 1024);
    /// Largest accepted `max_message_size`; Postgres' own limit, so a bigger one only costs memory.
    pub const MAX_MAX_MESSAGE_SIZE: ByteSize = ByteSize::GIB;
    /// Default for `max_statement_size`.
    pub const DEFAULT_MAX_STATEMENT_SIZE: ByteSize = ByteSize(1024 * 1024);
    /// Smallest accepted `max_statement_size`.
    pub const MIN_MAX_STATEMENT_SIZE: ByteSize = ByteSize(1024);
    /// Largest accepted `max_statement_size`: parse trees of bigger texts
    /// take hundreds of megabytes.
    pub const MAX_MAX_STATEMENT_SIZE: ByteSize = ByteSize(64 * 1024 * 1024);
    /// Default for `read_work_mem`.
    pub const DEFAULT_READ_WORK_MEM: ByteSize = ByteSize(64 << 20);
    /// Default for `read_idle_in_transaction_timeout`.
    pub const DEFAULT_READ_IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(300);
    /// The ceiling of `hash_mem_multiplier` in read sessions.
    pub const READ_HASH_MEM_MULTIPLIER: f64 = 2.0;
    /// Default and ceiling of `credential_ttl`: one working shift.
    pub const MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(8 * 3600);
    /// Default for `max_unauthenticated`.
    pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 32;
    /// Default for `login_timeout`.
    pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for `max_client_connections`.
    pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 1000;
    /// Default for `listen_otlp_grpc`: OTLP's gRPC port, on loopback.
    pub const DEFAULT_LISTEN_OTLP_GRPC: &'static str = "127.0.0.1:4317";
    /// Default for `connect_timeout`.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The certificate and key paths, when the operator supplied them.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        }
    }
}

/// What kind of system a resource is. Only Postgres for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A PostgreSQL database reached over the Postgres wire protocol.
    Postgres,
}

impl ResourceKind {
    /// Every supported kind, for error messages and listings.
    pub const ALL: &'static [ResourceKind] = &[ResourceKind::Postgres];

    /// The name used in `airlock.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Postgres => "postgres",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ResourceKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unsupported resource kind {s:?}: supported kinds are {}",
                    quoted_list(ResourceKind::ALL.iter().map(|k| k.as_str()))
                )
            })
    }
}

/// How the gateway talks TLS to an upstream database; the names follow libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, without verifying its certificate.
    #[default]
    Prefer,
    /// TLS always, without verifying the server's certificate.
    Require,
    /// TLS always, verifying the certificate chain (against `ca_file` or the system roots) and
    /// that the certificate names `host`.
    VerifyFull,
}

impl UpstreamTls {
    /// Every mode, for error messages and listings.
    pub const ALL: &'static [UpstreamTls] = &[
        UpstreamTls::Disable,
        UpstreamTls::Prefer,
        UpstreamTls::Require,
        UpstreamTls::VerifyFull,
    ];

    /// The mode of a resource whose `tls` is omitted: `verify-full` with a CA to verify
    /// against, else `require`.
    pub fn default_for(has_ca_file: bool) -> UpstreamTls {
        if has_ca_file {
            UpstreamTls::VerifyFull
        } else {
            UpstreamTls::Require
        }
    }

    /// Whether the upstream may be reached without TLS at all (`disable`, `prefer`): an
    /// impostor on the network path then sees the login. The gateway warns about these at start.
    pub fn allows_plaintext(self) -> bool {
        matches!(self, UpstreamTls::Disable | UpstreamTls::Prefer)
    }

    /// Whether the upstream's certificate is verified (chain and host name), which is what
    /// makes handing it a password (cleartext or MD5) safe.
    pub fn verifies_peer(self) -> bool {
        self == UpstreamTls::VerifyFull
    }

    /// The name used in `airlock.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamTls::Disable => "disable",
            UpstreamTls::Prefer => "prefer",
            UpstreamTls::Require => "require",
            UpstreamTls::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UpstreamTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        UpstreamTls::ALL
            .iter()
            .copied()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown tls mode {s:?}: expected one of {}",
                    quoted_list(UpstreamTls::ALL.iter().map(|m| m.as_str()))
                )
            })
    }
}

/// An access level. Read sessions use the resource's read credential (and the database is told
/// `default_transaction_read_only=on`); write sessions use the write credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read-only access.
    Read,
    /// Read-write access.
    Write,
}

impl Access {
    /// Both levels.
    pub const ALL: &'static [Access] = &[Access::Read, Access::Write];

    /// `"read"` or `"write"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad, not write_str: table columns use width specifiers.
        f.pad(self.as_str())
    }
}

impl FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Access::Read),
            "write" => Ok(Access::Write),
            _ => Err(format!(
                "unknown access {s:?}: expected \"read\" or \"write\""
            )),
        }
    }
}

/// One upstream database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The name clients use as `database` in their startup message.
    pub name: ResourceName,
    /// What the resource is.
    pub kind: ResourceKind,
    /// Upstream host name or IP address.
    pub host: String,
    /// Upstream port. Default 5432.
    pub port: u16,
    /// The upstream database name.
    pub database: String,
    /// TLS towards the upstream. Default `verify-full` with a `ca_file`, else `require`.
    pub tls: UpstreamTls,
    /// CA bundle for `verify-full`, resolved against the config file's directory.
    pub ca_file: Option<PathBuf>,
    /// `read_credential_can_write = "allow"`: accept a read credential that
    /// can write (the gateway checks at start and before read sessions, and
    /// refuses one that can, unless this is set; loudly logged). Default
    /// `"refuse"`.
    pub read_credential_can_write: bool,
    /// Credential used for read sessions.
    pub read: Option<UpstreamCredential>,
    /// Credential used for write sessions.
    pub write: Option<UpstreamCredential>,
    /// `[[resource.guardrails]]` entries, in file order.
    pub guardrails: Vec<Guardrail>,
    /// `[[resource.masking]]` entries, in file order.
    pub masking: Vec<Masking>,
}

/// A `[[resource.guardrails]]` entry: limits on what sessions may run even
/// when their access level allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    /// Whose sessions it applies to: users holding any of these roles. Empty
    /// (the key omitted): every session on the resource, at either level.
    pub roles: Vec<RoleName>,
    /// What it enforces.
    pub rails: Guardrails,
}

/// A `[[resource.masking]]` entry: which result values are masked, and for
/// whom they are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masking {
    /// Column-name patterns: matching columns are masked whole.
    pub columns: Vec<ColumnPattern>,
    /// Value detectors run over every other value.
    pub detectors: Vec<Detector>,
    /// Users holding any of these roles see values unmasked.
    pub unmasked_roles: Vec<RoleName>,
    /// What else is refused to protect the columns. Default strict.
    pub mode: MaskingMode,
}

/// How far masking goes for the columns of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskingMode {
    /// Values in results are masked, and in read sessions a statement that
    /// uses a masked column anywhere but as a plain output column of the
    /// outermost query is refused (see `airlock_sql::columns`).
    #[default]
    Strict,
    /// Values in results are masked; derived values (`ssn || ''`, a cast's
    /// error, a WHERE clause's answer) pass.
    Lenient,
}

/// The masking in force for one session: the union of the entries that
/// apply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRules {
    /// Column-name patterns.
    pub columns: Vec<ColumnPattern>,
    /// Value detectors.
    pub detectors: Detectors,
    /// Strict masking applies (some entry in force is strict and has
    /// column patterns): read sessions may use masked columns only as plain
    /// output columns.
    pub strict: bool,
}

impl Resource {
    /// The guardrails for a session of a user holding `roles`: every entry
    /// without `roles` or naming one of them, merged (strictest wins).
    pub fn guardrails_for(&self, roles: &[RoleName]) -> Guardrails {
        Guardrails::merge(
            self.guardrails
                .iter()
                .filter(|g| g.roles.is_empty() || g.roles.iter().any(|r| roles.contains(r)))
                .map(|g| &g.rails),
        )
    }

    /// The masking for a session of a user holding `roles`, `None` when
    /// nothing is masked for them: every entry none of whose
    /// `unmasked_roles` they hold, merged.
    pub fn masking_for(&self, roles: &[RoleName]) -> Option<MaskRules> {
        let mut columns: Vec<ColumnPattern> = Vec::new();
        let mut detectors = Vec::new();
        let mut strict = false;
        for m in &self.masking {
            if m.unmasked_roles.iter().any(|r| roles.contains(r)) {
                continue;
            }
            strict |= m.mode == MaskingMode::Strict && !m.columns.is_empty();
            for c in &m.columns {
                if !columns.contains(c) {
                    columns.push(c.clone());
                }
            }
            detectors.extend(m.detectors.iter().copied());
        }
        let detectors = Detectors::new(&detectors);
        (!columns.is_empty() || !detectors.is_empty()).then_some(MaskRules {
            columns,
            detectors,
            strict,
        })
    }

    /// The credential for `access`, if the resource has one.
    pub fn credential(&self, access: Access) -> Option<&UpstreamCredential> {
        match access {
            Access::Read => self.read.as_ref(),
            Access::Write => self.write.as_ref(),
        }
    }

    /// Reads the upstream password for `access` from the environment.
    ///
    /// `Ok(None)` when the resource has no credential for `access` or the credential names no
    /// variable (trust authentication upstream). Errors name this resource, unlike
    /// [`UpstreamCredential::password`], which does not know it.
    pub fn password(&self, access: Access) -> Result<Option<Secret>, ConfigError> {
        let Some(credential) = self.credential(access) else {
            return Ok(None);
        };
        credential.password().map_err(|err| match err {
            ConfigError::MissingSecret(mut missing) => {
                for m in &mut missing {
                    m.resource = Some(self.name.clone());
                    m.access = Some(access);
                }
                ConfigError::MissingSecret(missing)
            }
            other => other,
        })
    }
}

/// The upstream login Airlock injects for one access level of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCredential {
    /// Upstream user name.
    pub user: String,
    /// The environment variable holding the password; `None` when the upstream trusts the gateway
    /// without one (trust authentication, or client certificates).
    pub password_env: Option<String>,
}

impl UpstreamCredential {
    /// Reads the password from the environment variable named by `password_env`.
    ///
    /// `Ok(None)` when no variable is named. A variable that is unset, empty or not UTF-8 is an error
    /// ([`ConfigError::MissingSecret`]) rather than an empty password, so a deployment mistake fails
    /// loudly instead of surfacing later as a confusing upstream authentication failure.
    pub fn password(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(var) = &self.password_env else {
            return Ok(None);
        };
        let problem = match std::env::var(var) {
            Ok(value) if !value.is_empty() => return Ok(Some(Secret::new(value))),
            Ok(_) => SecretProblem::Empty,
            Err(std::env::VarError::NotPresent) => SecretProblem::Unset,
            Err(std::env::VarError::NotUnicode(_)) => SecretProblem::NotUnicode,
        };
        Err(ConfigError::MissingSecret(vec![MissingSecret {
            resource: None,
            access: None,
            user: self.user.clone(),
            var: var.clone(),
            problem,
        }]))
    }
}

/// A role: what its users may reach at all times (standing), on request with approval
/// (requestable), and in an emergency without approval (break-glass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role's name.
    pub name: RoleName,
    /// Access the role's users have at all times, without a request.
    pub standing: Vec<Entitlement>,
    /// Access the role's users may request; approvers grant it for a bounded time.
    pub requestable: Vec<RequestableRule>,
    /// Access the role's users may take at once in an emergency, loudly and briefly.
    pub break_glass: Vec<BreakGlassRule>,
}

/// `requestable = [{ resource, access, max, approvals, approvers }]` in a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestableRule {
    /// The resource.
    pub resource: ResourceName,
    /// The level.
    pub access: Access,
    /// The longest grant a request under this rule may ask for.
    pub max: Duration,
    /// How many distinct approvers must approve. At least 1; default 1.
    pub approvals: u32,
    /// Roles whose users may approve. Nobody approves their own request.
    pub approvers: Vec<RoleName>,
}

/// `break_glass = [{ resource, access, max }]` in a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassRule {
    /// The resource.
    pub resource: ResourceName,
    /// The level.
    pub access: Access,
    /// The longest a break-glass grant lasts; at most [`AccessSettings::MAX_BREAK_GLASS`].
    pub max: Duration,
}

/// The `[access]` table, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    /// A pending request expires after this. Default 1h.
    pub request_ttl: Duration,
    /// The gateway's ceiling on any grant: no rule's `max` may be above it. Default 8h.
    pub max_grant: Duration,
    /// How long an API token issued without `--ttl` lives. Default 30d.
    pub token_ttl: Duration,
    /// Admins: list and revoke everyone's API tokens, read `/metrics` and the
    /// webhook status, read telemetry and mark deploys. Default: nobody.
    pub admin_roles: Vec<RoleName>,
    /// Who reads telemetry (timeline, traces, compare, deploy markers) besides
    /// admins. `None` (the default): every user with at least one role.
    pub telemetry_roles: Option<Vec<RoleName>>,
    /// Who marks deploys (`POST /api/v1/deploys`, a CI pipeline's user)
    /// besides admins. Default: nobody else.
    pub deploy_roles: Vec<RoleName>,
    /// The environment variable holding a token that reads `/metrics` and
    /// nothing else, for a Prometheus scraper. `None`: admins' tokens only.
    pub metrics_token_env: Option<String>,
}

impl AccessSettings {
    /// Default for `request_ttl`.
    pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(3600);
    /// Ceiling of `request_ttl`: a request nobody looked at for a day is stale.
    pub const MAX_REQUEST_TTL: Duration = Duration::from_secs(24 * 3600);
    /// Default for `max_grant`: one working shift.
    pub const DEFAULT_MAX_GRANT: Duration = Duration::from_secs(8 * 3600);
    /// Ceiling of `max_grant`.
    pub const MAX_MAX_GRANT: Duration = Duration::from_secs(24 * 3600);
    /// Ceiling of a break-glass rule's `max`, whatever `max_grant` says: break-glass is for the
    /// next few minutes of an emergency, not for the rest of the week.
    pub const MAX_BREAK_GLASS: Duration = Duration::from_secs(4 * 3600);
    /// Default for `token_ttl`.
    pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(30 * 86_400);
    /// Ceiling of `token_ttl`: a token nobody rotates for a year is forgotten
    /// (`airlock token issue --ttl never` is the explicit way to not expire).
    pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 86_400);
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            request_ttl: Self::DEFAULT_REQUEST_TTL,
            max_grant: Self::DEFAULT_MAX_GRANT,
            token_ttl: Self::DEFAULT_TOKEN_TTL,
            admin_roles: Vec::new(),
            telemetry_roles: None,
            deploy_roles: Vec::new(),
            metrics_token_env: None,
        }
    }
}

/// `fsync` in `[audit]`: when audit records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFsync {
    /// Before each statement is forwarded: survives power loss.
    Always,
    /// Within [`AuditSettings::FSYNC_WINDOW`] of the write: survives a process crash; power
    /// loss loses at most the window.
    Batched,
    /// Left to the kernel: survives a process crash only.
    Off,
}

impl AuditFsync {
    pub const ALL: &'static [&'static str] = &["always", "batched", "off"];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditFsync::Always => "always",
            AuditFsync::Batched => "batched",
            AuditFsync::Off => "off",
        }
    }
}

/// Where `[audit] anchors` sends each checkpoint's anchor (a line naming
/// the checkpoint by seq and hash), so a copy of the chain's end lives off
/// the host: `verify --anchors` checks a log against them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorSink {
    /// One JSON line on standard output (journald, container logs).
    Stdout,
    /// The local syslog socket (`/dev/log`), facility local0.
    Syslog,
    /// The `audit.checkpoint` webhook event, to targets that list it.
    Webhook,
}

impl AnchorSink {
    pub const ALL: &'static [&'static str] = &["stdout", "syslog", "webhook"];

    pub fn as_str(self) -> &'static str {
        match self {
            AnchorSink::Stdout => "stdout",
            AnchorSink::Syslog => "syslog",
            AnchorSink::Webhook => "webhook",
        }
    }
}

/// The `[audit]` table, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Default `batched`.
    pub fsync: AuditFsync,
    /// Seal the chain with a signed checkpoint after this many records. Default 1000.
    pub checkpoint_every: u64,
    /// ...or this long after the first unsealed record. Default 10s.
    pub checkpoint_interval: Duration,
    /// Remove segments whose records are all older than this; `None` keeps everything.
    pub retain: Option<Duration>,
    /// How many result rows of each statement are recorded for replay (masked). Default 20.
    pub replay_rows: usize,
    /// A new segment starts once the current one is this large. Default 64 MiB.
    pub segment_size: ByteSize,
    /// Users with one of these roles may search the whole log and run
    /// verify through the API; everyone else sees only their own records.
    pub auditor_roles: Vec<RoleName>,
    /// Where each checkpoint's anchor goes. Default `["stdout", "webhook"]`.
    pub anchors: Vec<AnchorSink>,
}

impl AuditSettings {
    /// The `batched` window: records are on disk at most this long after their write.
    pub const FSYNC_WINDOW: Duration = Duration::from_millis(10);
    pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
    pub const MAX_CHECKPOINT_EVERY: u64 = 1_000_000;
    pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
    pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);
    /// The shortest `retain`: an audit trail kept for less than a day is not one.
    pub const MIN_RETAIN: Duration = Duration::from_secs(86_400);
    pub const DEFAULT_REPLAY_ROWS: usize = 20;
    pub const MAX_REPLAY_ROWS: usize = 1000;
    pub const DEFAULT_SEGMENT_SIZE: ByteSize = ByteSize(64 * 1024 * 1024);
    pub const MIN_SEGMENT_SIZE: ByteSize = ByteSize(64 * 1024);
    pub const MAX_SEGMENT_SIZE: ByteSize = ByteSize::GIB;
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            fsync: AuditFsync::Batched,
            checkpoint_every: Self::DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: Self::DEFAULT_CHECKPOINT_INTERVAL,
            retain: None,
            replay_rows: Self::DEFAULT_REPLAY_ROWS,
            segment_size: Self::DEFAULT_SEGMENT_SIZE,
            auditor_roles: Vec::new(),
            anchors: vec![AnchorSink::Stdout, AnchorSink::Webhook],
        }
    }
}

/// Which statistic of a histogram point a threshold compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdStat {
    /// Gauges and sums: the point's value; histograms and summaries: sum ÷ count.
    Value,
    /// Histograms and summaries: the mean, sum ÷ count (the same as `Value`).
    Mean,
    /// Histograms: the largest value (`max`, or the upper bound of the last
    /// non-empty bucket when the point has no `max`).
    Max,
    /// Histograms: a quantile estimated from the buckets (the upper bound of
    /// the bucket that holds it).
    P50,
    P95,
    P99,
}

impl ThresholdStat {
    pub const ALL: &'static [&'static str] = &["value", "mean", "max", "p50", "p95", "p99"];

    pub fn parse(s: &str) -> Option<ThresholdStat> {
        Some(match s {
            "value" => ThresholdStat::Value,
            "mean" => ThresholdStat::Mean,
            "max" => ThresholdStat::Max,
            "p50" => ThresholdStat::P50,
            "p95" => ThresholdStat::P95,
            "p99" => ThresholdStat::P99,
            _ => return None,
        })
    }
}

/// A `[[telemetry.threshold]]`: a metric crossing a limit becomes a timeline
/// event, going over and coming back.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub name: String,
    /// The metric's name, exactly.
    pub metric: String,
    /// Only this service's points; every service's when `None`.
    pub service: Option<String>,
    pub above: f64,
    pub stat: ThresholdStat,
}

/// The `[telemetry]` table, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// Telemetry older than this is removed. Default 14d.
    pub retain: Duration,
    /// The environment variable holding the ingest tokens (comma or
    /// whitespace separated). `None`: ingest needs no token.
    pub ingest_tokens_env: Option<String>,
    /// The largest OTLP request accepted, compressed or after
    /// decompression. Default 16 MiB.
    pub max_request_size: ByteSize,
    /// Decoded telemetry waiting for the store at most; above it, receivers
    /// answer with OTLP's retryable "unavailable". Default 256 MiB.
    pub max_pending: ByteSize,
    /// Ingest stops (receivers answer "unavailable") while the data
    /// directory's filesystem has less free space than this, so the audit
    /// log, which lives there too, keeps room. Default 1 GiB.
    pub min_free_space: ByteSize,
    /// The most the telemetry store may hold; above it the oldest
    /// telemetry is removed first, as by `retain`. Default 10 GiB.
    pub max_size: ByteSize,
    pub thresholds: Vec<Threshold>,
}

impl TelemetrySettings {
    pub const DEFAULT_RETAIN: Duration = Duration::from_secs(14 * 86_400);
    pub const DEFAULT_MAX_REQUEST_SIZE: ByteSize = ByteSize(16 * 1024 * 1024);
    pub const MIN_MAX_REQUEST_SIZE: ByteSize = ByteSize(64 * 1024);
    pub const MAX_MAX_REQUEST_SIZE: ByteSize = ByteSize(256 * 1024 * 1024);
    pub const DEFAULT_MAX_PENDING: ByteSize = ByteSize(256 * 1024 * 1024);
    pub const MIN_MAX_PENDING: ByteSize = ByteSize(1024 * 1024);
    pub const MAX_MAX_PENDING: ByteSize = ByteSize(16 * 1024 * 1024 * 1024);
    pub const DEFAULT_MIN_FREE_SPACE: ByteSize = ByteSize(1024 * 1024 * 1024);
    pub const MAX_MIN_FREE_SPACE: ByteSize = ByteSize(1024 * 1024 * 1024 * 1024);
    pub const DEFAULT_MAX_SIZE: ByteSize = ByteSize(10 * 1024 * 1024 * 1024);
    pub const MIN_MAX_SIZE: ByteSize = ByteSize(1024 * 1024);
    pub const MAX_MAX_SIZE: ByteSize = ByteSize(16 * 1024 * 1024 * 1024 * 1024);
    /// The shortest `retain`.
    pub const MIN_RETAIN: Duration = Duration::from_secs(3600);
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            retain: Self::DEFAULT_RETAIN,
            ingest_tokens_env: None,
            max_request_size: Self::DEFAULT_MAX_REQUEST_SIZE,
            max_pending: Self::DEFAULT_MAX_PENDING,
            min_free_space: Self::DEFAULT_MIN_FREE_SPACE,
            max_size: Self::DEFAULT_MAX_SIZE,
            thresholds: Vec::new(),
        }
    }
}

/// The `[runbooks]` table, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunbookSettings {
    /// The directory of runbook files (`*.toml`), resolved against the
    /// config file's directory. `None`: no runbooks.
    pub dir: Option<std::path::PathBuf>,
    /// What a step's output may keep (per stream) in answers, the audit log
    /// and the timeline; the rest is counted and cut. Default 64 KiB.
    pub max_output: ByteSize,
}

impl RunbookSettings {
    pub const DEFAULT_MAX_OUTPUT: ByteSize = ByteSize(64 * 1024);
    pub const MIN_MAX_OUTPUT: ByteSize = ByteSize(1024);
    pub const MAX_MAX_OUTPUT: ByteSize = ByteSize(16 * 1024 * 1024);
}

/// The events a webhook can subscribe to.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "request.created",
    "request.approved",
    "request.denied",
    "request.expired",
    "grant.expired",
    "grant.revoked",
    "break_glass.used",
    "statement.executed",
    "policy.reloaded",
    "audit.checkpoint",
];

/// A `[[webhook]]`: where access events are POSTed, signed with a secret from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Event names from [`WEBHOOK_EVENTS`], or `"*"` for all.
    pub events: Vec<String>,
    /// The environment variable holding the HMAC-SHA256 signing secret.
    pub secret_env: String,
}

impl Webhook {
    /// `scheme://host[:port]/…`: chat webhook URLs carry a secret in their path, so logs and
    /// listings show only where a webhook goes.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Reads the signing secret from `secret_env`; an unset or empty variable is an error.
    pub fn secret(&self) -> Result<Secret, String> {
        match std::env::var(&self.secret_env) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
            Ok(_) => Err(format!(
                "environment variable {} named by secret_env of the webhook to {} is empty",
                self.secret_env,
                self.redacted_url()
            )),
            Err(_) => Err(format!(
                "environment variable {} named by secret_env of the webhook to {} is not set; set it to the webhook's signing secret",
                self.secret_env,
                self.redacted_url()
            )),
        }
    }
}

/// Access to one resource at one level.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entitlement {
    /// The resource.
    pub resource: ResourceName,
    /// The level.
    pub access: Access,
}

/// An Airlock user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's name, as sent in the Postgres startup message.
    pub name: UserName,
    /// The roles the user holds.
    pub roles: Vec<RoleName>,
}

/// `"a", "b", "c"`: for error messages that list the accepted values.
pub(crate) fn quoted_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|item| format!("{item:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `scheme://host[:port]/…` of a URL (userinfo, path and query dropped). See [`Webhook::redacted_url`].
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<invalid url>".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let tail = if rest.len() > authority.len() {
        "/…"
    } else {
        ""
    };
    format!("{scheme}://{host}{tail}")
}
