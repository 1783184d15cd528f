//! The schema of `airlock.toml`: gateway settings, resources, roles and users.
//!
//! [`Config::load`] reads the file, [`Config::from_str`] parses text; both validate everything and
//! either return a complete [`Config`] or errors that name the file, line and key
//! (`airlock.toml:12: unknown key `passwrd` in [[resource]] "orders": ...`).
//!
//! Loading happens in two passes. First toml and serde read the text into raw structs that mirror
//! the file and keep byte spans (`raw.rs`); they refuse unknown keys and wrong types, one error at a
//! time because the parse cannot go on past them. Then `validate.rs` checks names, addresses,
//! durations, sizes and cross-references, collecting every problem, and builds the typed model
//! (`model.rs`). The crate does no IO beyond reading the file and, on request, environment
//! variables named by `password_env`: secrets are never in the file.

#![forbid(unsafe_code)]

mod error;
mod model;
mod names;
mod raw;
mod secret;
mod span;
pub mod text;
mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ConfigError, Diagnostic};
pub use model::{
    redact_url, Access, AccessSettings, AnchorSink, AuditFsync, AuditSettings, BreakGlassRule,
    Entitlement, Gateway, Guardrail, MaskRules, Masking, MaskingMode, RequestableRule, Resource,
    ResourceKind, Role, RunbookSettings, TelemetrySettings, Threshold, ThresholdStat,
    UpstreamCredential, UpstreamTls, User, Webhook, WEBHOOK_EVENTS,
};
pub use names::{NameError, ResourceName, RoleName, UserName};
pub use secret::{MissingSecret, Secret, SecretProblem};
pub use units::{format_duration, parse_duration, ByteSize};

/// A loaded and validated `airlock.toml`.
#[derive(Clone)]
pub struct Config {
    /// The file this configuration came from (as given; used in messages and to resolve relative
    /// paths, which are already resolved in the fields below).
    pub path: PathBuf,
    /// `[gateway]`.
    pub gateway: Gateway,
    /// `[[resource]]` entries, in file order.
    pub resources: Vec<Resource>,
    /// `[[role]]` entries, in file order.
    pub roles: Vec<Role>,
    /// `[[user]]` entries, in file order.
    pub users: Vec<User>,
    /// `[access]`.
    pub access: AccessSettings,
    /// `[[webhook]]` entries, in file order.
    pub webhooks: Vec<Webhook>,
    /// `[audit]`.
    pub audit: AuditSettings,
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// `[runbooks]`.
    pub runbooks: RunbookSettings,
    /// The text the configuration was parsed from, kept for diagnostics about it later (reload
    /// diffs, `policy test`). Shared because `Config` is cloned into every task.
    source: Arc<str>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Parses and validates `text`. `path` is used only in messages and to resolve relative paths
    /// (against its directory); nothing is read from it.
    // Not `FromStr`: that trait cannot take the path.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text)
            .map_err(|err| ConfigError::Parse(span::toml_error(text, path, &err)))?;
        let checked = validate::check(text, path, raw).map_err(ConfigError::Invalid)?;
        Ok(Config {
            path: path.to_path_buf(),
            gateway: checked.gateway,
            resources: checked.resources,
            roles: checked.roles,
            users: checked.users,
            access: checked.access,
            audit: checked.audit,
            telemetry: checked.telemetry,
            runbooks: checked.runbooks,
            webhooks: checked.webhooks,
            source: Arc::from(text),
        })
    }

    /// The resource called `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Checks that every `password_env` variable named by a resource is set and non-empty, without
    /// returning values. `serve` calls this at start so a missing secret fails loudly and early
    /// rather than at the first session. Reports every missing variable at once.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        let mut missing = Vec::new();
        for resource in &self.resources {
            for &access in Access::ALL {
                if let Err(ConfigError::MissingSecret(found)) = resource.password(access) {
                    missing.extend(found);
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::MissingSecret(missing))
        }
    }

    /// Every environment variable this file names as holding a secret of
    /// the gateway's (upstream passwords, webhook signing secrets, ingest
    /// and metrics tokens). Nothing the gateway starts (a runbook's command, an HTTP
    /// header) may be handed one of them.
    pub fn secret_env_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .resources
            .iter()
            .flat_map(|r| [r.read.as_ref(), r.write.as_ref()])
            .flatten()
            .filter_map(|c| c.password_env.as_deref())
            .chain(self.webhooks.iter().map(|w| w.secret_env.as_str()))
            .chain(self.telemetry.ingest_tokens_env.as_deref())
            .chain(self.access.metrics_token_env.as_deref())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Checks that every webhook's `secret_env` is set, reporting all problems at once.
    pub fn check_webhook_secrets(&self) -> Result<(), Vec<String>> {
        let problems: Vec<String> = self
            .webhooks
            .iter()
            .filter_map(|w| w.secret().err())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The SHA-256 of the source text, hex: names a policy version in logs and the audit log.
    pub fn source_sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.source.as_bytes()))
    }

    /// The text this configuration was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Config {
    /// Everything but the source text, which is long and already on disk.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("gateway", &self.gateway)
            .field("resources", &self.resources)
            .field("roles", &self.roles)
            .field("users", &self.users)
            .field("access", &self.access)
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Config {
    /// Equal when the settings are; comments and formatting in the source do not count, so a
    /// reload can tell whether anything actually changed.
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.gateway == other.gateway
            && self.resources == other.resources
            && self.roles == other.roles
            && self.users == other.users
            && self.access == other.access
            && self.webhooks == other.webhooks
    }
}

impl Eq for Config {}
