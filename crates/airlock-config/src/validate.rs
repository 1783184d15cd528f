//! Semantic checks: from the file as written ([`crate::raw`]) to the typed [`crate::Config`].
//!
//! Every check runs even after an earlier one failed, and every failure becomes a [`Diagnostic`]
//! with its line, so the operator sees all problems in one go. Only a file without any problem is
//! turned into a `Config`; there is no partially valid configuration.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;

use crate::error::Diagnostic;
use crate::model::{
    quoted_list, Access, AccessSettings, AnchorSink, AuditFsync, AuditSettings, BreakGlassRule,
    Entitlement, Gateway, Guardrail, Masking, MaskingMode, RequestableRule, Resource, ResourceKind,
    Role, RunbookSettings, TelemetrySettings, Threshold, ThresholdStat, UpstreamCredential,
    UpstreamTls, User, Webhook, WEBHOOK_EVENTS,
};
use crate::names::{ResourceName, RoleName, UserName};
use crate::raw::{
    RawAccess, RawAudit, RawConfig, RawCredential, RawGateway, RawGuardrail, RawMasking,
    RawResource, RawRole, RawRunbooks, RawTelemetry, RawUser, RawWebhook,
};
use crate::span::line_of;
use crate::units::{format_duration, parse_duration, ByteSize};
use airlock_sql::mask::{ColumnPattern, Detector};
use airlock_sql::Guardrails;

/// What the checks produce when there was no problem.
pub(crate) struct Checked {
    pub gateway: Gateway,
    pub resources: Vec<Resource>,
    pub roles: Vec<Role>,
    pub users: Vec<User>,
    pub access: AccessSettings,
    pub webhooks: Vec<Webhook>,
    pub audit: AuditSettings,
    pub telemetry: TelemetrySettings,
    pub runbooks: RunbookSettings,
}

/// What cross-references need to know about a resource, taken from the raw file so that they can be
/// checked even when some other field of the resource is wrong.
struct ResourceFacts {
    line: usize,
    has_read: bool,
    has_write: bool,
}

struct Checker<'a> {
    text: &'a str,
    file: &'a Path,
    /// The config file's directory: relative paths in the file are relative to it.
    dir: PathBuf,
    diagnostics: Vec<Diagnostic>,
}

pub(crate) fn check(text: &str, file: &Path, raw: RawConfig) -> Result<Checked, Vec<Diagnostic>> {
    let mut checker = Checker {
        text,
        file,
        dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        diagnostics: Vec::new(),
    };
    let gateway = checker.gateway(&raw.gateway);
    let access = checker.access(raw.access.as_ref());
    let audit = checker.audit(raw.audit.as_ref());
    let telemetry = checker.telemetry(raw.telemetry.as_ref());
    let runbooks = checker.runbooks(raw.runbooks.as_ref());
    // Rules are checked against the ceiling even when `[access]` itself is wrong.
    let max_grant = access
        .as_ref()
        .map_or(AccessSettings::DEFAULT_MAX_GRANT, |a| a.max_grant);

    let mut resource_facts: HashMap<String, ResourceFacts> = HashMap::new();
    let resources: Vec<Option<Resource>> = raw
        .resource
        .iter()
        .enumerate()
        .map(|(i, r)| checker.resource(i, r, &mut resource_facts))
        .collect();

    let mut role_lines: HashMap<String, usize> = HashMap::new();
    let roles: Vec<Option<Role>> = raw
        .role
        .iter()
        .enumerate()
        .map(|(i, r)| checker.role(i, r, &resource_facts, &mut role_lines, max_grant))
        .collect();

    let mut user_lines: HashMap<String, usize> = HashMap::new();
    let users: Vec<Option<User>> = raw
        .user
        .iter()
        .enumerate()
        .map(|(i, u)| checker.user(i, u, &role_lines, &mut user_lines))
        .collect();
    let roles = checker.approvers(&raw.role, roles, &role_lines, &users);
    checker.resource_roles(&raw.resource, &role_lines);
    checker.auditor_roles(raw.audit.as_ref(), &role_lines);
    checker.access_roles(raw.access.as_ref(), &role_lines);
    let webhooks: Vec<Option<Webhook>> = raw
        .webhook
        .iter()
        .enumerate()
        .map(|(i, w)| checker.webhook(i, w))
        .collect();

    let mut diagnostics = checker.diagnostics;
    if !diagnostics.is_empty() {
        // File order reads best; the sort is stable, so problems on one line keep check order.
        diagnostics.sort_by_key(|d| d.line);
        return Err(diagnostics);
    }
    let all = "every check passed, so every part was built";
    Ok(Checked {
        gateway: gateway.expect(all),
        resources: resources.into_iter().collect::<Option<_>>().expect(all),
        roles: roles.into_iter().collect::<Option<_>>().expect(all),
        users: users.into_iter().collect::<Option<_>>().expect(all),
        access: access.expect(all),
        webhooks: webhooks.into_iter().collect::<Option<_>>().expect(all),
        audit: audit.expect(all),
        telemetry: telemetry.expect(all),
        runbooks: runbooks.expect(all),
    })
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: line_of(self.text, span.start),
            key: key.into(),
            message: message.into(),
        });
    }

    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    /// Resolves a path from the file against the file's directory.
    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        };
        // Drop `.` components so `./airlock-data` next to `/etc/airlock/airlock.toml` reads as
        // `/etc/airlock/airlock-data` in logs. `..` is left alone: resolving it lexically is wrong
        // across symlinks, and resolving it on disk would be IO.
        let cleaned: PathBuf = joined
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if cleaned.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            cleaned
        }
    }

    /// A non-empty path value, resolved.
    fn path(&mut self, value: &Spanned<String>, key: &str, place: &str) -> Option<PathBuf> {
        if value.get_ref().trim().is_empty() {
            self.error(
                value.span(),
                key,
                format!("`{}` {place} is empty", last(key)),
            );
            return None;
        }
        Some(self.resolve(value.get_ref()))
    }

    /// A non-empty string without surrounding whitespace (host names, user names, database names).
    fn text(&mut self, value: &Spanned<String>, key: &str, place: &str) -> Option<String> {
        let text = value.get_ref();
        if text.is_empty() {
            self.error(
                value.span(),
                key,
                format!("`{}` {place} is empty", last(key)),
            );
            None
        } else if text.trim() != text {
            self.error(
                value.span(),
                key,
                format!(
                    "`{}` {place} has leading or trailing whitespace: {text:?}",
                    last(key)
                ),
            );
            None
        } else {
            Some(text.clone())
        }
    }

    fn gateway(&mut self, raw: &RawGateway) -> Option<Gateway> {
        const PLACE: &str = "in [gateway]";
        let listen_postgres = self.listen(&raw.listen_postgres, "gateway.listen_postgres");
        let listen_http = self.listen(&raw.listen_http, "gateway.listen_http");
        if let (Some(pg), Some(http)) = (&listen_postgres, &listen_http) {
            if pg == http && pg.1 != 0 {
                self.error(
                    raw.listen_http.span(),
                    "gateway.listen_http",
                    format!(
                        "`listen_http` {PLACE} is the same address as `listen_postgres` ({}); give each its own port",
                        raw.listen_http.get_ref()
                    ),
                );
            }
        }
        let data_dir = self.path(&raw.data_dir, "gateway.data_dir", PLACE);

        let public_host = match &raw.public_host {
            Some(host) => self.public_host(host),
            // Clients cannot connect to a wildcard address, so the default names this machine.
            None => listen_postgres
                .as_ref()
                .map(|(host, _)| match host.as_str() {
                    "0.0.0.0" | "::" => "localhost".to_owned(),
                    host => host.to_owned(),
                }),
        };

        let tls_cert = raw
            .tls_cert
            .as_ref()
            .map(|p| self.path(p, "gateway.tls_cert", PLACE));
        let tls_key = raw
            .tls_key
            .as_ref()
            .map(|p| self.path(p, "gateway.tls_key", PLACE));
        // Outer Option: the key is in the file; inner: its value is valid.
        let half = match (&raw.tls_cert, &raw.tls_key) {
            (Some(cert), None) => Some(("tls_cert", "tls_key", cert.span())),
            (None, Some(key)) => Some(("tls_key", "tls_cert", key.span())),
            _ => None,
        };
        if let Some((set, unset, span)) = half {
            self.error(
                span,
                format!("gateway.{set}"),
                format!(
                    "`{set}` {PLACE} is set but `{unset}` is not: set both (certificate chain and private key, PEM) or neither (the gateway then generates its own CA)"
                ),
            );
        }
        let (tls_cert, tls_key) = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => (cert.map(Some), key.map(Some)),
            (None, None) => (Some(None), Some(None)),
            _ => (None, None),
        };

        let max_message_size = match &raw.max_message_size {
            None => Some(Gateway::DEFAULT_MAX_MESSAGE_SIZE),
            Some(value) => self.message_size(value),
        };
        let max_statement_size = match &raw.max_statement_size {
            None => Some(Gateway::DEFAULT_MAX_STATEMENT_SIZE),
            Some(value) => self.size(
                value,
                "max_statement_size",
                (Gateway::MIN_MAX_STATEMENT_SIZE, Gateway::MAX_MAX_STATEMENT_SIZE),
                " (larger statements cost the parser too much memory; send such data as parameters)",
            ),
        };
        let read_work_mem = match &raw.read_work_mem {
            None => Some(Gateway::DEFAULT_READ_WORK_MEM),
            Some(value) => self.size(
                value,
                "read_work_mem",
                (ByteSize::MIB, ByteSize(1 << 40)),
                " (the ceiling of work_mem, maintenance_work_mem and temp_buffers in read sessions)",
            ),
        };
        let read_idle_in_transaction_timeout = self.duration(
            raw.read_idle_in_transaction_timeout.as_ref(),
            "read_idle_in_transaction_timeout",
            Gateway::DEFAULT_READ_IDLE_IN_TRANSACTION_TIMEOUT,
        );
        let credential_ttl = self
            .duration(
                raw.credential_ttl.as_ref(),
                "credential_ttl",
                Gateway::MAX_CREDENTIAL_TTL,
            )
            .filter(|ttl| {
                let Some(value) = &raw.credential_ttl else {
                    return true;
                };
                if *ttl <= Gateway::MAX_CREDENTIAL_TTL {
                    return true;
                }
                self.error(
                    value.span(),
                    "gateway.credential_ttl",
                    format!(
                        "`credential_ttl` {PLACE}: {} is above the ceiling of {} (the longest a session credential may live); longer work needs a new credential",
                        format_duration(*ttl),
                        format_duration(Gateway::MAX_CREDENTIAL_TTL)
                    ),
                );
                false
            });
        let connect_timeout = self.duration(
            raw.connect_timeout.as_ref(),
            "connect_timeout",
            Gateway::DEFAULT_CONNECT_TIMEOUT,
        );

        let max_client_connections = match &raw.max_client_connections {
            None => Some(Gateway::DEFAULT_MAX_CLIENT_CONNECTIONS),
            Some(n) if (1..=1_000_000).contains(n.get_ref()) => Some(*n.get_ref() as usize),
            Some(n) => {
                self.error(
                    n.span(),
                    "gateway.max_client_connections",
                    format!(
                        "`max_client_connections` {PLACE} must be between 1 and 1000000, not {}",
                        n.get_ref()
                    ),
                );
                None
            }
        };

        let max_unauthenticated = match &raw.max_unauthenticated {
            None => Some(Gateway::DEFAULT_MAX_UNAUTHENTICATED),
            Some(n) if (1..=1_000_000).contains(n.get_ref()) => Some(*n.get_ref() as usize),
            Some(n) => {
                self.error(
                    n.span(),
                    "gateway.max_unauthenticated",
                    format!(
                        "`max_unauthenticated` {PLACE} must be between 1 and 1000000, not {}",
                        n.get_ref()
                    ),
                );
                None
            }
        };
        let login_timeout = self.duration(
            raw.login_timeout.as_ref(),
            "login_timeout",
            Gateway::DEFAULT_LOGIN_TIMEOUT,
        );

        let listen_otlp_grpc = match &raw.listen_otlp_grpc {
            None => Some(Some(Gateway::DEFAULT_LISTEN_OTLP_GRPC.to_owned())),
            Some(v) if v.get_ref() == "off" => Some(None),
            Some(v) => self
                .listen(v, "gateway.listen_otlp_grpc")
                .map(|_| Some(v.get_ref().clone())),
        };

        Some(Gateway {
            listen_otlp_grpc: listen_otlp_grpc?,
            listen_postgres: listen_postgres.map(|_| raw.listen_postgres.get_ref().clone())?,
            listen_http: listen_http.map(|_| raw.listen_http.get_ref().clone())?,
            data_dir: data_dir?,
            public_host: public_host?,
            tls_cert: tls_cert?,
            tls_key: tls_key?,
            allow_plaintext: raw.allow_plaintext,
            http_tls: raw.http_tls,
            max_message_size: max_message_size?,
            max_statement_size: max_statement_size?,
            read_work_mem: read_work_mem?,
            read_idle_in_transaction_timeout: read_idle_in_transaction_timeout?,
            credential_ttl: credential_ttl?,
            connect_timeout: connect_timeout?,
            max_client_connections: max_client_connections?,
            max_unauthenticated: max_unauthenticated?,
            login_timeout: login_timeout?,
        })
    }

    /// Checks a listen address and returns its (unbracketed) host and port.
    fn listen(&mut self, value: &Spanned<String>, key: &str) -> Option<(String, u16)> {
        let result = split_host_port(value.get_ref());
        match result {
            Ok(pair) => Some(pair),
            Err(why) => {
                self.error(
                    value.span(),
                    key,
                    format!("`{}` in [gateway]: {why}", last(key)),
                );
                None
            }
        }
    }

    fn public_host(&mut self, value: &Spanned<String>) -> Option<String> {
        let raw = value.get_ref();
        let host = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw);
        if is_host(host) {
            Some(host.to_owned())
        } else {
            self.error(
                value.span(),
                "gateway.public_host",
                format!(
                    "`public_host` in [gateway]: {raw:?} is not a host name or IP address (no port, scheme or path)"
                ),
            );
            None
        }
    }

    fn message_size(&mut self, value: &Spanned<toml::Value>) -> Option<ByteSize> {
        self.size(
            value,
            "max_message_size",
            (Gateway::MIN_MAX_MESSAGE_SIZE, Gateway::MAX_MAX_MESSAGE_SIZE),
            " (Postgres' own limit)",
        )
    }

    /// A size in `[gateway]` between `min` and `max`; `above` explains the maximum.
    fn size(
        &mut self,
        value: &Spanned<toml::Value>,
        field: &str,
        (min, max): (ByteSize, ByteSize),
        above: &str,
    ) -> Option<ByteSize> {
        let key = format!("gateway.{field}");
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) => u64::try_from(*n)
                .map(ByteSize)
                .map_err(|_| "a size cannot be negative".to_owned()),
            toml::Value::String(s) => ByteSize::parse(s),
            other => Err(format!(
                "expected a number of bytes or a size string such as \"16MiB\", found a {}",
                other.type_str()
            )),
        };
        let size = match parsed {
            Ok(size) => size,
            Err(why) => {
                self.error(value.span(), key, format!("`{field}` in [gateway]: {why}"));
                return None;
            }
        };
        let why = if size < min {
            format!("{size} is below the minimum of {min}")
        } else if size > max {
            format!("{size} is above the maximum of {max}{above}")
        } else {
            return Some(size);
        };
        self.error(value.span(), key, format!("`{field}` in [gateway]: {why}"));
        None
    }

    /// A positive duration written as a string; `default` when absent.
    fn duration(
        &mut self,
        value: Option<&Spanned<toml::Value>>,
        field: &str,
        default: Duration,
    ) -> Option<Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        self.duration_in(
            value,
            &format!("gateway.{field}"),
            &format!("`{field}` in [gateway]"),
        )
    }

    /// A positive duration written as a string, reported under `key` as `what: why`.
    fn duration_in(
        &mut self,
        value: &Spanned<toml::Value>,
        key: &str,
        what: &str,
    ) -> Option<Duration> {
        let parsed = match value.get_ref() {
            toml::Value::String(s) => parse_duration(s),
            toml::Value::Integer(n) => Err(format!(
                "expected a duration string with a unit, such as \"{n}s\", found the bare integer {n}"
            )),
            other => Err(format!(
                "expected a duration string such as \"30s\" or \"1h30m\", found a {}",
                other.type_str()
            )),
        };
        let why = match parsed {
            Ok(d) if d.is_zero() => "must be longer than 0s".to_owned(),
            Ok(d) => return Some(d),
            Err(why) => why,
        };
        self.error(value.span(), key, format!("{what}: {why}"));
        None
    }

    /// A duration no longer than `ceiling`, whose name the message gives as `ceiling_name`.
    fn bounded_duration(
        &mut self,
        value: &Spanned<toml::Value>,
        key: &str,
        what: &str,
        ceiling: Duration,
        ceiling_name: &str,
    ) -> Option<Duration> {
        let d = self.duration_in(value, key, what)?;
        if d > ceiling {
            self.error(
                value.span(),
                key,
                format!(
                    "{what}: {} is above {ceiling_name} of {}",
                    format_duration(d),
                    format_duration(ceiling)
                ),
            );
            return None;
        }
        Some(d)
    }

    fn access(&mut self, raw: Option<&RawAccess>) -> Option<AccessSettings> {
        let Some(raw) = raw else {
            return Some(AccessSettings::default());
        };
        let request_ttl = match &raw.request_ttl {
            None => Some(AccessSettings::DEFAULT_REQUEST_TTL),
            Some(v) => self.bounded_duration(
                v,
                "access.request_ttl",
                "`request_ttl` in [access]",
                AccessSettings::MAX_REQUEST_TTL,
                "the ceiling",
            ),
        };
        let max_grant = match &raw.max_grant {
            None => Some(AccessSettings::DEFAULT_MAX_GRANT),
            Some(v) => self.bounded_duration(
                v,
                "access.max_grant",
                "`max_grant` in [access]",
                AccessSettings::MAX_MAX_GRANT,
                "the ceiling",
            ),
        };
        let token_ttl = match &raw.token_ttl {
            None => Some(AccessSettings::DEFAULT_TOKEN_TTL),
            Some(v) => self.bounded_duration(
                v,
                "access.token_ttl",
                "`token_ttl` in [access]",
                AccessSettings::MAX_TOKEN_TTL,
                "the ceiling",
            ),
        };
        let admin_roles = self.role_names(
            &raw.admin_roles,
            "access.admin_roles",
            "`admin_roles` in [access]",
        );
        let telemetry_roles = match &raw.telemetry_roles {
            None => Some(None),
            Some(list) => self
                .role_names(
                    list,
                    "access.telemetry_roles",
                    "`telemetry_roles` in [access]",
                )
                .map(Some),
        };
        let deploy_roles = self.role_names(
            &raw.deploy_roles,
            "access.deploy_roles",
            "`deploy_roles` in [access]",
        );
        let metrics_token_env = match &raw.metrics_token_env {
            None => Some(None),
            Some(v) if is_env_name(v.get_ref()) => Some(Some(v.get_ref().clone())),
            Some(v) => {
                self.error(
                    v.span(),
                    "access.metrics_token_env",
                    format!(
                        "`metrics_token_env` in [access]: {:?} is not an environment variable name (letters, digits and '_', not starting with a digit); it names the variable that holds the token, not the token",
                        v.get_ref()
                    ),
                );
                None
            }
        };
        Some(AccessSettings {
            request_ttl: request_ttl?,
            max_grant: max_grant?,
            token_ttl: token_ttl?,
            admin_roles: admin_roles?,
            telemetry_roles: telemetry_roles?,
            deploy_roles: deploy_roles?,
            metrics_token_env: metrics_token_env?,
        })
    }

    fn audit(&mut self, raw: Option<&RawAudit>) -> Option<AuditSettings> {
        let Some(raw) = raw else {
            return Some(AuditSettings::default());
        };
        let fsync = match &raw.fsync {
            None => Some(AuditFsync::Batched),
            Some(v) => match v.get_ref().as_str() {
                "always" => Some(AuditFsync::Always),
                "batched" => Some(AuditFsync::Batched),
                "off" => Some(AuditFsync::Off),
                other => {
                    self.error(
                        v.span(),
                        "audit.fsync",
                        format!(
                            "`fsync` in [audit] must be one of {}, not {other:?}",
                            quoted_list(AuditFsync::ALL.iter().copied())
                        ),
                    );
                    None
                }
            },
        };
        let checkpoint_every = match &raw.checkpoint_every {
            None => Some(AuditSettings::DEFAULT_CHECKPOINT_EVERY),
            Some(v) => self.in_range(
                v,
                "audit.checkpoint_every",
                "`checkpoint_every` in [audit]",
                1..=AuditSettings::MAX_CHECKPOINT_EVERY,
                " records",
            ),
        };
        let checkpoint_interval = match &raw.checkpoint_interval {
            None => Some(AuditSettings::DEFAULT_CHECKPOINT_INTERVAL),
            Some(v) => self.bounded_duration(
                v,
                "audit.checkpoint_interval",
                "`checkpoint_interval` in [audit]",
                AuditSettings::MAX_CHECKPOINT_INTERVAL,
                "the ceiling",
            ),
        };
        let retain = match &raw.retain {
            None => Some(None),
            Some(v) => match self.duration_in(v, "audit.retain", "`retain` in [audit]") {
                Some(d) if d < AuditSettings::MIN_RETAIN => {
                    self.error(
                        v.span(),
                        "audit.retain",
                        format!(
                            "`retain` in [audit]: {} is shorter than the minimum of 1d; leave `retain` out to keep everything",
                            format_duration(d)
                        ),
                    );
                    None
                }
                Some(d) => Some(Some(d)),
                None => None,
            },
        };
        let replay_rows = match &raw.replay_rows {
            None => Some(AuditSettings::DEFAULT_REPLAY_ROWS),
            Some(v) => self
                .in_range(
                    v,
                    "audit.replay_rows",
                    "`replay_rows` in [audit]",
                    0..=AuditSettings::MAX_REPLAY_ROWS as u64,
                    " (0 records no rows)",
                )
                .map(|n| n as usize),
        };
        let segment_size = match &raw.segment_size {
            None => Some(AuditSettings::DEFAULT_SEGMENT_SIZE),
            Some(v) => self.audit_size(v),
        };
        let auditor_roles = self.role_names(
            &raw.auditor_roles,
            "audit.auditor_roles",
            "`auditor_roles` in [audit]",
        );
        let anchors = match &raw.anchors {
            None => Some(AuditSettings::default().anchors),
            Some(list) => {
                let mut out = Some(Vec::new());
                for (i, v) in list.iter().enumerate() {
                    let sink = match v.get_ref().as_str() {
                        "stdout" => AnchorSink::Stdout,
                        "syslog" => AnchorSink::Syslog,
                        "webhook" => AnchorSink::Webhook,
                        other => {
                            self.error(
                                v.span(),
                                format!("audit.anchors[{i}]"),
                                format!(
                                    "`anchors` in [audit]: {other:?} is not a place anchors go; use {} (or [] to send none)",
                                    quoted_list(AnchorSink::ALL.iter().copied())
                                ),
                            );
                            out = None;
                            continue;
                        }
                    };
                    if let Some(o) = out.as_mut().filter(|o| !o.contains(&sink)) {
                        o.push(sink);
                    }
                }
                out
            }
        };
        Some(AuditSettings {
            fsync: fsync?,
            checkpoint_every: checkpoint_every?,
            checkpoint_interval: checkpoint_interval?,
            retain: retain?,
            replay_rows: replay_rows?,
            segment_size: segment_size?,
            auditor_roles: auditor_roles?,
            anchors: anchors?,
        })
    }

    fn runbooks(&mut self, raw: Option<&RawRunbooks>) -> Option<RunbookSettings> {
        let Some(raw) = raw else {
            return Some(RunbookSettings::default());
        };
        let dir = self.path(&raw.dir, "runbooks.dir", "in [runbooks]");
        let max_output = match &raw.max_output {
            None => Some(RunbookSettings::DEFAULT_MAX_OUTPUT),
            Some(v) => self.sized(
                v,
                "runbooks.max_output",
                "`max_output` in [runbooks]",
                (
                    RunbookSettings::MIN_MAX_OUTPUT,
                    RunbookSettings::MAX_MAX_OUTPUT,
                ),
            ),
        };
        Some(RunbookSettings {
            dir: Some(dir?),
            max_output: max_output?,
        })
    }

    fn telemetry(&mut self, raw: Option<&RawTelemetry>) -> Option<TelemetrySettings> {
        let Some(raw) = raw else {
            return Some(TelemetrySettings::default());
        };
        let retain = match &raw.retain {
            None => Some(TelemetrySettings::DEFAULT_RETAIN),
            Some(v) => match self.duration_in(v, "telemetry.retain", "`retain` in [telemetry]") {
                Some(d) if d < TelemetrySettings::MIN_RETAIN => {
                    self.error(
                        v.span(),
                        "telemetry.retain",
                        format!(
                            "`retain` in [telemetry]: {} is shorter than the minimum of 1h",
                            format_duration(d)
                        ),
                    );
                    None
                }
                other => other,
            },
        };
        let ingest_tokens_env = match &raw.ingest_tokens_env {
            None => Some(None),
            Some(v) if is_env_name(v.get_ref()) => Some(Some(v.get_ref().clone())),
            Some(v) => {
                self.error(
                    v.span(),
                    "telemetry.ingest_tokens_env",
                    format!(
                        "`ingest_tokens_env` in [telemetry]: {:?} is not an environment variable name (letters, digits and '_', not starting with a digit); it names the variable that holds the tokens, not a token",
                        v.get_ref()
                    ),
                );
                None
            }
        };
        let max_request_size = match &raw.max_request_size {
            None => Some(TelemetrySettings::DEFAULT_MAX_REQUEST_SIZE),
            Some(v) => self.sized(
                v,
                "telemetry.max_request_size",
                "`max_request_size` in [telemetry]",
                (
                    TelemetrySettings::MIN_MAX_REQUEST_SIZE,
                    TelemetrySettings::MAX_MAX_REQUEST_SIZE,
                ),
            ),
        };
        let max_pending = match &raw.max_pending {
            None => Some(TelemetrySettings::DEFAULT_MAX_PENDING),
            Some(v) => self.sized(
                v,
                "telemetry.max_pending",
                "`max_pending` in [telemetry]",
                (
                    TelemetrySettings::MIN_MAX_PENDING,
                    TelemetrySettings::MAX_MAX_PENDING,
                ),
            ),
        };
        let min_free_space = match &raw.min_free_space {
            None => Some(TelemetrySettings::DEFAULT_MIN_FREE_SPACE),
            Some(v) => self.sized(
                v,
                "telemetry.min_free_space",
                "`min_free_space` in [telemetry]",
                (ByteSize(0), TelemetrySettings::MAX_MIN_FREE_SPACE),
            ),
        };
        let max_size = match &raw.max_size {
            None => Some(TelemetrySettings::DEFAULT_MAX_SIZE),
            Some(v) => self.sized(
                v,
                "telemetry.max_size",
                "`max_size` in [telemetry]",
                (
                    TelemetrySettings::MIN_MAX_SIZE,
                    TelemetrySettings::MAX_MAX_SIZE,
                ),
            ),
        };
        let mut names = HashMap::new();
        let thresholds: Vec<Option<Threshold>> = raw
            .threshold
            .iter()
            .enumerate()
            .map(|(i, t)| self.threshold(i, t, &mut names))
            .collect();
        Some(TelemetrySettings {
            retain: retain?,
            ingest_tokens_env: ingest_tokens_env?,
            max_request_size: max_request_size?,
            max_pending: max_pending?,
            min_free_space: min_free_space?,
            max_size: max_size?,
            thresholds: thresholds.into_iter().collect::<Option<_>>()?,
        })
    }

    fn threshold(
        &mut self,
        index: usize,
        raw: &Spanned<crate::raw::RawThreshold>,
        names: &mut HashMap<String, usize>,
    ) -> Option<Threshold> {
        let key = |field: &str| format!("telemetry.threshold[{index}].{field}");
        let t = raw.get_ref();
        let mut ok = true;
        let name = t.name.get_ref();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            self.error(
                t.name.span(),
                key("name"),
                "`name` in [[telemetry.threshold]] must be 1 to 128 printable characters",
            );
            ok = false;
        } else if let Some(first) = names.insert(name.clone(), index) {
            self.error(
                t.name.span(),
                key("name"),
                format!(
                    "`name` in [[telemetry.threshold]]: {name:?} is already the name of threshold {first}; give each its own"
                ),
            );
            ok = false;
        }
        if t.metric.get_ref().is_empty() {
            self.error(
                t.metric.span(),
                key("metric"),
                "`metric` in [[telemetry.threshold]] must name a metric",
            );
            ok = false;
        }
        let above = match &t.above {
            Some(v) if v.get_ref().is_finite() => Some(*v.get_ref()),
            Some(v) => {
                self.error(
                    v.span(),
                    key("above"),
                    "`above` in [[telemetry.threshold]] must be a finite number",
                );
                None
            }
            None => {
                self.error(
                    raw.span(),
                    key("above"),
                    "a [[telemetry.threshold]] needs `above`, the limit a value crosses (for example above = 0.5)",
                );
                None
            }
        };
        let stat = match &t.stat {
            None => Some(ThresholdStat::Value),
            Some(v) => ThresholdStat::parse(v.get_ref()).or_else(|| {
                self.error(
                    v.span(),
                    key("stat"),
                    format!(
                        "`stat` in [[telemetry.threshold]] must be one of {}, not {:?}",
                        quoted_list(ThresholdStat::ALL.iter().copied()),
                        v.get_ref()
                    ),
                );
                None
            }),
        };
        if !ok {
            return None;
        }
        Some(Threshold {
            name: name.clone(),
            metric: t.metric.get_ref().clone(),
            service: t.service.as_ref().map(|s| s.get_ref().clone()),
            above: above?,
            stat: stat?,
        })
    }

    /// A size between `min` and `max`, reported under `key` as `what: why`.
    fn sized(
        &mut self,
        v: &Spanned<toml::Value>,
        key: &str,
        what: &str,
        (min, max): (ByteSize, ByteSize),
    ) -> Option<ByteSize> {
        let parsed = match v.get_ref() {
            toml::Value::Integer(n) if *n > 0 => Ok(ByteSize(*n as u64)),
            toml::Value::String(s) => s.parse::<ByteSize>(),
            other => Err(format!("expected a size such as \"16MiB\", found {other}")),
        };
        let why = match parsed {
            Ok(s) if s < min => format!("{s} is below the minimum of {min}"),
            Ok(s) if s > max => format!("{s} is above the maximum of {max}"),
            Ok(s) => return Some(s),
            Err(e) => e,
        };
        self.error(v.span(), key, format!("{what}: {why}"));
        None
    }

    /// An integer in `range`; `unit` follows the bounds in the message.
    fn in_range(
        &mut self,
        v: &Spanned<i64>,
        key: &str,
        what: &str,
        range: std::ops::RangeInclusive<u64>,
        unit: &str,
    ) -> Option<u64> {
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(u) if range.contains(&u) => Some(u),
            _ => {
                self.error(
                    v.span(),
                    key,
                    format!(
                        "{what} must be between {} and {}{unit}, not {n}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    fn audit_size(&mut self, v: &Spanned<toml::Value>) -> Option<ByteSize> {
        let parsed = match v.get_ref() {
            toml::Value::Integer(n) if *n > 0 => Ok(ByteSize(*n as u64)),
            toml::Value::String(s) => s.parse::<ByteSize>(),
            other => Err(format!("expected a size such as \"64MiB\", found {other}")),
        };
        let (min, max) = (
            AuditSettings::MIN_SEGMENT_SIZE,
            AuditSettings::MAX_SEGMENT_SIZE,
        );
        let why = match parsed {
            Ok(s) if s < min => format!("{s} is below the minimum of {min}"),
            Ok(s) if s > max => format!("{s} is above the maximum of {max}"),
            Ok(s) => return Some(s),
            Err(e) => e,
        };
        self.error(
            v.span(),
            "audit.segment_size",
            format!("`segment_size` in [audit]: {why}"),
        );
        None
    }

    fn webhook(&mut self, index: usize, raw: &RawWebhook) -> Option<Webhook> {
        let key = |field: &str| format!("webhook[{index}].{field}");
        let url = raw.url.get_ref();
        let url_ok = match url.split_once("://") {
            Some(("http" | "https", rest)) => {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = authority.rsplit('@').next().unwrap_or("");
                !host.is_empty() && !url.chars().any(char::is_whitespace)
            }
            _ => false,
        };
        if !url_ok {
            self.error(
                raw.url.span(),
                key("url"),
                format!(
                    "`url` in [[webhook]]: {:?} is not an http:// or https:// URL with a host",
                    crate::model::redact_url(url)
                ),
            );
        }
        let mut events = Vec::new();
        let mut events_ok = true;
        if raw.events.get_ref().is_empty() {
            self.error(
                raw.events.span(),
                key("events"),
                format!(
                    "`events` in [[webhook]] is empty: list the events to send ({}), or \"*\" for all",
                    quoted_list(WEBHOOK_EVENTS.iter().copied())
                ),
            );
            events_ok = false;
        }
        for (i, e) in raw.events.get_ref().iter().enumerate() {
            let name = e.get_ref();
            if name != "*" && !WEBHOOK_EVENTS.contains(&name.as_str()) {
                self.error(
                    e.span(),
                    format!("webhook[{index}].events[{i}]"),
                    format!(
                        "`events` in [[webhook]]: unknown event {name:?}; known events: {}, or \"*\" for all",
                        quoted_list(WEBHOOK_EVENTS.iter().copied())
                    ),
                );
                events_ok = false;
            } else if events.contains(name) {
                self.error(
                    e.span(),
                    format!("webhook[{index}].events[{i}]"),
                    format!("`events` in [[webhook]] lists {name:?} twice"),
                );
                events_ok = false;
            } else {
                events.push(name.clone());
            }
        }
        let secret_env = raw.secret_env.get_ref();
        let secret_ok = is_env_name(secret_env);
        if !secret_ok {
            self.error(
                raw.secret_env.span(),
                key("secret_env"),
                format!(
                    "`secret_env` in [[webhook]]: {secret_env:?} is not an environment variable name (letters, digits and '_', not starting with a digit)"
                ),
            );
        }
        (url_ok && events_ok && secret_ok).then(|| Webhook {
            url: url.clone(),
            events,
            secret_env: secret_env.clone(),
        })
    }

    fn resource(
        &mut self,
        index: usize,
        raw: &RawResource,
        facts: &mut HashMap<String, ResourceFacts>,
    ) -> Option<Resource> {
        let key = |field: &str| format!("resource[{index}].{field}");
        let place = format!("in [[resource]] {:?}", raw.name.get_ref());

        // Facts are recorded under the name as written, even when it is malformed, so that a bad
        // name is reported once rather than again at every entitlement that uses it.
        let raw_name = raw.name.get_ref();
        let name = if let Some(first) = facts.get(raw_name.as_str()) {
            let first = first.line;
            self.error(
                raw.name.span(),
                key("name"),
                format!(
                    "duplicate resource name {raw_name:?} (first defined at line {first}): resource names must be unique"
                ),
            );
            None
        } else {
            let line = self.line(raw.name.span());
            facts.insert(
                raw_name.clone(),
                ResourceFacts {
                    line,
                    has_read: raw.read.is_some(),
                    has_write: raw.write.is_some(),
                },
            );
            match ResourceName::new(raw_name.as_str()) {
                Ok(name) => Some(name),
                Err(err) => {
                    self.error(
                        raw.name.span(),
                        key("name"),
                        format!("`name` in [[resource]]: {err}"),
                    );
                    None
                }
            }
        };

        let kind = match raw.kind.get_ref().parse::<ResourceKind>() {
            Ok(kind) => Some(kind),
            Err(why) => {
                self.error(
                    raw.kind.span(),
                    key("kind"),
                    format!("`kind` {place}: {why}"),
                );
                None
            }
        };
        let host = self.text(&raw.host, &key("host"), &place);
        let port = match &raw.port {
            None => Some(5432),
            Some(port) if *port.get_ref() == 0 => {
                self.error(
                    port.span(),
                    key("port"),
                    format!("`port` {place}: 0 is not a port an upstream can listen on"),
                );
                None
            }
            Some(port) => Some(*port.get_ref()),
        };
        let database = self.text(&raw.database, &key("database"), &place);
        let tls = match &raw.tls {
            None => Some(UpstreamTls::default_for(raw.ca_file.is_some())),
            Some(mode) => match mode.get_ref().parse::<UpstreamTls>() {
                Ok(mode) => Some(mode),
                Err(why) => {
                    self.error(mode.span(), key("tls"), format!("`tls` {place}: {why}"));
                    None
                }
            },
        };
        let ca_file = match &raw.ca_file {
            None => Some(None),
            Some(path) => {
                let resolved = self.path(path, &key("ca_file"), &place);
                // A CA that is never consulted would give a false sense of verification.
                if tls.is_some_and(|tls| tls != UpstreamTls::VerifyFull) {
                    self.error(
                        path.span(),
                        key("ca_file"),
                        format!(
                            "`ca_file` {place} is only used with tls = \"verify-full\"; set tls = \"verify-full\" or remove ca_file"
                        ),
                    );
                    None
                } else {
                    resolved.map(Some)
                }
            }
        };
        if raw.read.is_none() && raw.write.is_none() {
            self.error(
                raw.name.span(),
                key("read"),
                format!(
                    "[[resource]] {:?} has neither a `read` nor a `write` credential: add read = {{ user = \"...\", password_env = \"...\" }}",
                    raw.name.get_ref()
                ),
            );
        }
        let read_can_write = match &raw.read_credential_can_write {
            None => Some(false),
            Some(v) => match v.get_ref().as_str() {
                "allow" => Some(true),
                "refuse" => Some(false),
                other => {
                    self.error(
                        v.span(),
                        key("read_credential_can_write"),
                        format!(
                            "`read_credential_can_write` {place}: {other:?} is not \"refuse\" (the default) or \"allow\""
                        ),
                    );
                    None
                }
            },
        };
        let read = self.credential(raw.read.as_ref(), &key("read"), "read", &place);
        let write = self.credential(raw.write.as_ref(), &key("write"), "write", &place);
        if let (Some(Some(r)), Some(Some(w)), Some(false)) = (&read, &write, read_can_write) {
            // The read-only promise cannot rest on a credential that writes.
            if r.user == w.user {
                self.error(
                    raw.name.span(),
                    key("read"),
                    format!(
                        "[[resource]] {:?}: the read credential is the same database user as the write credential ({:?}), so read sessions could write; give read sessions their own user with SELECT only (or set read_credential_can_write = \"allow\" to accept the risk)",
                        raw.name.get_ref(),
                        r.user
                    ),
                );
            }
        }
        let guardrails: Option<Vec<Guardrail>> = raw
            .guardrails
            .iter()
            .enumerate()
            .map(|(i, g)| self.guardrail(g, &key(&format!("guardrails[{i}]")), &place))
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let masking: Option<Vec<Masking>> = raw
            .masking
            .iter()
            .enumerate()
            .map(|(i, m)| self.masking(m, &key(&format!("masking[{i}]")), &place))
            .collect::<Vec<_>>()
            .into_iter()
            .collect();

        Some(Resource {
            name: name?,
            kind: kind?,
            host: host?,
            port: port?,
            database: database?,
            tls: tls?,
            ca_file: ca_file?,
            read_credential_can_write: read_can_write?,
            read: read?,
            write: write?,
            guardrails: guardrails?,
            masking: masking?,
        })
    }

    /// A `[[resource.guardrails]]` entry.
    fn guardrail(
        &mut self,
        raw: &Spanned<RawGuardrail>,
        key: &str,
        place: &str,
    ) -> Option<Guardrail> {
        let what = format!("[[resource.guardrails]] {place}");
        let g = raw.get_ref();
        let mut ok = true;
        let roles = match &g.roles {
            None => Vec::new(),
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    list.span(),
                    format!("{key}.roles"),
                    format!("`roles` of {what} is empty: name the roles it applies to, or remove `roles` to apply it to every session"),
                );
                ok = false;
                Vec::new()
            }
            Some(list) => self
                .role_names(
                    list.get_ref(),
                    &format!("{key}.roles"),
                    &format!("`roles` of {what}"),
                )
                .unwrap_or_else(|| {
                    ok = false;
                    Vec::new()
                }),
        };
        let mut deny = Vec::new();
        for (i, word) in g.deny.iter().enumerate() {
            let w = word.get_ref();
            if let Some(why) = airlock_sql::guard::deny_word_problem(w) {
                self.error(
                    word.span(),
                    format!("{key}.deny[{i}]"),
                    format!("`deny` of {what}: {why}"),
                );
                ok = false;
            } else if deny.contains(w) {
                self.error(
                    word.span(),
                    format!("{key}.deny[{i}]"),
                    format!("`deny` of {what} lists {w:?} twice"),
                );
                ok = false;
            } else {
                deny.push(w.clone());
            }
        }
        let max_rows = match &g.max_rows {
            None => None,
            Some(n) if *n.get_ref() < 1 => {
                self.error(
                    n.span(),
                    format!("{key}.max_rows"),
                    format!(
                        "`max_rows` of {what} must be at least 1, found {}",
                        n.get_ref()
                    ),
                );
                ok = false;
                None
            }
            Some(n) => Some(*n.get_ref() as u64),
        };
        let statement_timeout = match &g.statement_timeout {
            None => None,
            Some(v) => {
                // PostgreSQL keeps statement_timeout in milliseconds in an int.
                let d = self.bounded_duration(
                    v,
                    &format!("{key}.statement_timeout"),
                    &format!("`statement_timeout` of {what}"),
                    Duration::from_secs(24 * 3600),
                    "the ceiling",
                );
                if d.is_none() {
                    ok = false;
                }
                d
            }
        };
        let rails = Guardrails {
            deny,
            require_where: g.require_where,
            max_rows,
            statement_timeout,
        };
        if ok && rails.is_empty() {
            self.error(
                raw.span(),
                key,
                format!("{what} sets nothing: give it `deny`, `require_where`, `max_rows` or `statement_timeout`, or remove it"),
            );
            ok = false;
        }
        ok.then_some(Guardrail { roles, rails })
    }

    /// A `[[resource.masking]]` entry.
    fn masking(&mut self, raw: &Spanned<RawMasking>, key: &str, place: &str) -> Option<Masking> {
        let what = format!("[[resource.masking]] {place}");
        let m = raw.get_ref();
        let mut ok = true;
        let mut columns: Vec<ColumnPattern> = Vec::new();
        for (i, c) in m.columns.iter().enumerate() {
            match ColumnPattern::new(c.get_ref()) {
                Ok(p) if columns.contains(&p) => {
                    self.error(
                        c.span(),
                        format!("{key}.columns[{i}]"),
                        format!("`columns` of {what} lists {:?} twice", c.get_ref()),
                    );
                    ok = false;
                }
                Ok(p) => columns.push(p),
                Err(why) => {
                    self.error(
                        c.span(),
                        format!("{key}.columns[{i}]"),
                        format!("`columns` of {what}: {:?}: {why}", c.get_ref()),
                    );
                    ok = false;
                }
            }
        }
        let mut detectors = Vec::new();
        for (i, d) in m.detectors.iter().enumerate() {
            match Detector::parse(d.get_ref()) {
                Some(det) if detectors.contains(&det) => {
                    self.error(
                        d.span(),
                        format!("{key}.detectors[{i}]"),
                        format!("`detectors` of {what} lists {:?} twice", d.get_ref()),
                    );
                    ok = false;
                }
                Some(det) => detectors.push(det),
                None => {
                    self.error(
                        d.span(),
                        format!("{key}.detectors[{i}]"),
                        format!(
                            "`detectors` of {what}: unknown detector {:?}: expected one of {}",
                            d.get_ref(),
                            quoted_list(Detector::ALL.iter().map(|d| d.as_str()))
                        ),
                    );
                    ok = false;
                }
            }
        }
        let unmasked_roles = self
            .role_names(
                &m.unmasked_roles,
                &format!("{key}.unmasked_roles"),
                &format!("`unmasked_roles` of {what}"),
            )
            .unwrap_or_else(|| {
                ok = false;
                Vec::new()
            });
        if ok && columns.is_empty() && detectors.is_empty() {
            self.error(
                raw.span(),
                key,
                format!("{what} masks nothing: give it `columns` or `detectors`, or remove it"),
            );
            ok = false;
        }
        let mode = match m.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "strict")) => MaskingMode::Strict,
            Some((_, "lenient")) => MaskingMode::Lenient,
            Some((raw, other)) => {
                self.error(
                    raw.span(),
                    format!("{key}.mode"),
                    format!(
                        "`mode` of {what}: unknown mode {other:?}: expected \"strict\" (a masked column may only be selected as a plain output column) or \"lenient\" (results are masked, derived values pass)"
                    ),
                );
                ok = false;
                MaskingMode::Strict
            }
        };
        ok.then_some(Masking {
            columns,
            detectors,
            unmasked_roles,
            mode,
        })
    }

    /// Role names in a list, syntax only (that they are defined is checked by
    /// [`Checker::resource_roles`] once every role is known).
    fn role_names(
        &mut self,
        list: &[Spanned<String>],
        key: &str,
        what: &str,
    ) -> Option<Vec<RoleName>> {
        let mut out = Some(Vec::with_capacity(list.len()));
        for (i, r) in list.iter().enumerate() {
            match RoleName::new(r.get_ref().as_str()) {
                Ok(role)
                    if out
                        .as_ref()
                        .is_some_and(|l: &Vec<RoleName>| l.contains(&role)) =>
                {
                    self.error(
                        r.span(),
                        format!("{key}[{i}]"),
                        format!("{what} lists role \"{role}\" twice"),
                    );
                    out = None;
                }
                Ok(role) => {
                    if let Some(l) = out.as_mut() {
                        l.push(role);
                    }
                }
                Err(err) => {
                    self.error(r.span(), format!("{key}[{i}]"), format!("{what}: {err}"));
                    out = None;
                }
            }
        }
        out
    }

    /// Every role the role lists of `[access]` name is defined.
    fn access_roles(&mut self, raw: Option<&RawAccess>, roles: &HashMap<String, usize>) {
        let Some(raw) = raw else { return };
        let lists: [(&str, &[Spanned<String>]); 3] = [
            ("admin_roles", &raw.admin_roles),
            (
                "telemetry_roles",
                raw.telemetry_roles.as_deref().unwrap_or(&[]),
            ),
            ("deploy_roles", &raw.deploy_roles),
        ];
        for (key, list) in lists {
            for (i, role) in list.iter().enumerate() {
                let name = role.get_ref();
                if RoleName::new(name.as_str()).is_ok() && !roles.contains_key(name.as_str()) {
                    let known = defined_list(roles.keys(), "roles");
                    self.error(
                        role.span(),
                        format!("access.{key}[{i}]"),
                        format!("`{key}` in [access] names unknown role {name:?} ({known})"),
                    );
                }
            }
        }
    }

    /// Every role `[audit] auditor_roles` names is defined.
    fn auditor_roles(&mut self, raw: Option<&RawAudit>, roles: &HashMap<String, usize>) {
        for (i, role) in raw.iter().flat_map(|a| a.auditor_roles.iter()).enumerate() {
            let name = role.get_ref();
            if RoleName::new(name.as_str()).is_ok() && !roles.contains_key(name.as_str()) {
                let known = defined_list(roles.keys(), "roles");
                self.error(
                    role.span(),
                    format!("audit.auditor_roles[{i}]"),
                    format!("`auditor_roles` in [audit] names unknown role {name:?} ({known})"),
                );
            }
        }
    }

    /// Every role named by a resource's guardrails and masking is defined.
    fn resource_roles(&mut self, resources: &[RawResource], roles: &HashMap<String, usize>) {
        for (index, r) in resources.iter().enumerate() {
            let place = format!("in [[resource]] {:?}", r.name.get_ref());
            let mut refs: Vec<(&Spanned<String>, String, String)> = Vec::new();
            for (i, g) in r.guardrails.iter().enumerate() {
                for (j, role) in g
                    .get_ref()
                    .roles
                    .iter()
                    .flat_map(|l| l.get_ref().iter())
                    .enumerate()
                {
                    refs.push((
                        role,
                        format!("resource[{index}].guardrails[{i}].roles[{j}]"),
                        format!("`roles` of [[resource.guardrails]] {place}"),
                    ));
                }
            }
            for (i, m) in r.masking.iter().enumerate() {
                for (j, role) in m.get_ref().unmasked_roles.iter().enumerate() {
                    refs.push((
                        role,
                        format!("resource[{index}].masking[{i}].unmasked_roles[{j}]"),
                        format!("`unmasked_roles` of [[resource.masking]] {place}"),
                    ));
                }
            }
            for (role, key, what) in refs {
                let name = role.get_ref();
                if RoleName::new(name.as_str()).is_ok() && !roles.contains_key(name.as_str()) {
                    let known = defined_list(roles.keys(), "roles");
                    self.error(
                        role.span(),
                        key,
                        format!("{what} names unknown role {name:?} ({known})"),
                    );
                }
            }
        }
    }

    /// `Some(None)` for an absent credential, `None` for an invalid one.
    fn credential(
        &mut self,
        raw: Option<&Spanned<RawCredential>>,
        key: &str,
        field: &str,
        place: &str,
    ) -> Option<Option<UpstreamCredential>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let raw = raw.get_ref();
        let place = format!("in `{field}` of {}", place.trim_start_matches("in "));
        let user = self.text(&raw.user, &format!("{key}.user"), &place);
        let password_env = match &raw.password_env {
            None => Some(None),
            Some(var) if is_env_name(var.get_ref()) => Some(Some(var.get_ref().clone())),
            Some(var) => {
                self.error(
                    var.span(),
                    format!("{key}.password_env"),
                    format!(
                        "`password_env` {place}: {:?} is not an environment variable name (letters, digits and '_', not starting with a digit)",
                        var.get_ref()
                    ),
                );
                None
            }
        };
        Some(Some(UpstreamCredential {
            user: user?,
            password_env: password_env?,
        }))
    }

    fn role(
        &mut self,
        index: usize,
        raw: &RawRole,
        resources: &HashMap<String, ResourceFacts>,
        role_lines: &mut HashMap<String, usize>,
        max_grant: Duration,
    ) -> Option<Role> {
        let role_label = format!("[[role]] {:?}", raw.name.get_ref());
        // Recorded under the name as written even when malformed; see `resource`.
        let raw_name = raw.name.get_ref();
        let name = if let Some(&first) = role_lines.get(raw_name.as_str()) {
            self.error(
                raw.name.span(),
                format!("role[{index}].name"),
                format!(
                    "duplicate role name {raw_name:?} (first defined at line {first}): role names must be unique"
                ),
            );
            None
        } else {
            role_lines.insert(raw_name.clone(), self.line(raw.name.span()));
            match RoleName::new(raw_name.as_str()) {
                Ok(name) => Some(name),
                Err(err) => {
                    self.error(
                        raw.name.span(),
                        format!("role[{index}].name"),
                        format!("`name` in [[role]]: {err}"),
                    );
                    None
                }
            }
        };

        let mut standing = Some(Vec::with_capacity(raw.standing.len()));
        for (i, entry) in raw.standing.iter().enumerate() {
            let key = format!("role[{index}].standing[{i}]");
            let what = format!("`standing[{i}]` of {role_label}");
            let e = entry.get_ref();
            let entitlement = self.rule_target(&e.resource, &e.access, &key, &what, resources);
            standing = self.add_rule(
                standing,
                entitlement,
                |e| (&e.resource, e.access),
                entry.span(),
                key,
                &what,
            );
        }

        let mut requestable = Some(Vec::with_capacity(raw.requestable.len()));
        for (i, entry) in raw.requestable.iter().enumerate() {
            let key = format!("role[{index}].requestable[{i}]");
            let what = format!("`requestable[{i}]` of {role_label}");
            let e = entry.get_ref();
            let target = self.rule_target(&e.resource, &e.access, &key, &what, resources);
            let max = self.bounded_duration(
                &e.max,
                &format!("{key}.max"),
                &format!("`max` of {what}"),
                max_grant,
                "the gateway's ceiling (`max_grant` in [access])",
            );
            let approvals = match &e.approvals {
                None => Some(1),
                Some(n) if (1..=10).contains(n.get_ref()) => Some(*n.get_ref() as u32),
                Some(n) => {
                    self.error(
                        n.span(),
                        format!("{key}.approvals"),
                        format!(
                            "`approvals` of {what} must be between 1 and 10, not {}; access that needs no approval is `standing` or `break_glass`",
                            n.get_ref()
                        ),
                    );
                    None
                }
            };
            let mut approvers = Some(Vec::new());
            if e.approvers.get_ref().is_empty() {
                self.error(
                    e.approvers.span(),
                    format!("{key}.approvers"),
                    format!(
                        "`approvers` of {what} is empty: name the roles whose users may approve"
                    ),
                );
                approvers = None;
            }
            for (j, a) in e.approvers.get_ref().iter().enumerate() {
                match RoleName::new(a.get_ref().as_str()) {
                    Ok(name) => {
                        if let Some(list) = approvers.as_mut() {
                            if list.contains(&name) {
                                self.error(
                                    a.span(),
                                    format!("{key}.approvers[{j}]"),
                                    format!("`approvers` of {what} lists role \"{name}\" twice"),
                                );
                            } else {
                                list.push(name);
                            }
                        }
                    }
                    Err(err) => {
                        self.error(
                            a.span(),
                            format!("{key}.approvers[{j}]"),
                            format!("`approvers` of {what}: {err}"),
                        );
                        approvers = None;
                    }
                }
            }
            if let (Some(t), Some(list)) = (&target, &standing) {
                if list.contains(t) {
                    self.error(
                        entry.span(),
                        key.clone(),
                        format!(
                            "{what}: {} access to \"{}\" is already standing for this role, so requesting it would grant nothing",
                            t.access, t.resource
                        ),
                    );
                }
            }
            let rule = match (target, max, approvals, approvers) {
                (Some(t), Some(max), Some(approvals), Some(approvers)) => Some(RequestableRule {
                    resource: t.resource,
                    access: t.access,
                    max,
                    approvals,
                    approvers,
                }),
                _ => None,
            };
            requestable = self.add_rule(
                requestable,
                rule,
                |r| (&r.resource, r.access),
                entry.span(),
                key,
                &what,
            );
        }

        let mut break_glass = Some(Vec::with_capacity(raw.break_glass.len()));
        let ceiling = max_grant.min(AccessSettings::MAX_BREAK_GLASS);
        for (i, entry) in raw.break_glass.iter().enumerate() {
            let key = format!("role[{index}].break_glass[{i}]");
            let what = format!("`break_glass[{i}]` of {role_label}");
            let e = entry.get_ref();
            let target = self.rule_target(&e.resource, &e.access, &key, &what, resources);
            let max = self.bounded_duration(
                &e.max,
                &format!("{key}.max"),
                &format!("`max` of {what}"),
                ceiling,
                if ceiling == AccessSettings::MAX_BREAK_GLASS {
                    "the break-glass ceiling"
                } else {
                    "the gateway's ceiling (`max_grant` in [access])"
                },
            );
            let rule = match (target, max) {
                (Some(t), Some(max)) => Some(BreakGlassRule {
                    resource: t.resource,
                    access: t.access,
                    max,
                }),
                _ => None,
            };
            break_glass = self.add_rule(
                break_glass,
                rule,
                |r| (&r.resource, r.access),
                entry.span(),
                key,
                &what,
            );
        }
        Some(Role {
            name: name?,
            standing: standing?,
            requestable: requestable?,
            break_glass: break_glass?,
        })
    }

    /// Adds a checked rule to its list unless the list already has one for the same resource and
    /// level. `None` (some rule of the list was invalid) stays `None`.
    fn add_rule<T>(
        &mut self,
        list: Option<Vec<T>>,
        rule: Option<T>,
        target: impl Fn(&T) -> (&ResourceName, Access),
        span: Range<usize>,
        key: String,
        what: &str,
    ) -> Option<Vec<T>> {
        let (mut list, rule) = (list?, rule?);
        let (resource, access) = target(&rule);
        if list.iter().any(|x| target(x) == (resource, access)) {
            self.error(
                span,
                key,
                format!("{what} repeats {access} access to resource \"{resource}\""),
            );
            return None;
        }
        list.push(rule);
        Some(list)
    }

    /// The (resource, access) a rule names, checked against the resources.
    fn rule_target(
        &mut self,
        resource: &Spanned<String>,
        access: &Spanned<String>,
        key: &str,
        what: &str,
        resources: &HashMap<String, ResourceFacts>,
    ) -> Option<Entitlement> {
        let name = match ResourceName::new(resource.get_ref().as_str()) {
            Ok(r) => Some(r),
            // The resource is defined with this malformed name: reported there already.
            Err(_) if resources.contains_key(resource.get_ref()) => None,
            Err(err) => {
                self.error(
                    resource.span(),
                    format!("{key}.resource"),
                    format!("{what}: {err}"),
                );
                None
            }
        };
        let level = match access.get_ref().parse::<Access>() {
            Ok(a) => Some(a),
            Err(why) => {
                self.error(
                    access.span(),
                    format!("{key}.access"),
                    format!("{what}: {why}"),
                );
                None
            }
        };
        self.entitlement(name?, level?, resource.span(), key, what, resources)
    }

    /// Cross-checks of `approvers`, which need every role and user: each names a defined role,
    /// and every user who may request under a rule can get its approvals from other people.
    fn approvers(
        &mut self,
        raw: &[RawRole],
        roles: Vec<Option<Role>>,
        role_lines: &HashMap<String, usize>,
        users: &[Option<User>],
    ) -> Vec<Option<Role>> {
        let mut defined = true;
        for (index, r) in raw.iter().enumerate() {
            for (i, rule) in r.requestable.iter().enumerate() {
                for (j, a) in rule.get_ref().approvers.get_ref().iter().enumerate() {
                    if RoleName::new(a.get_ref().as_str()).is_ok()
                        && !role_lines.contains_key(a.get_ref())
                    {
                        self.error(
                            a.span(),
                            format!("role[{index}].requestable[{i}].approvers[{j}]"),
                            format!(
                                "`approvers` of `requestable[{i}]` of [[role]] {:?} names unknown role {:?} ({})",
                                r.name.get_ref(),
                                a.get_ref(),
                                defined_list(role_lines.keys(), "roles")
                            ),
                        );
                        defined = false;
                    }
                }
            }
        }
        let all_known =
            defined && roles.iter().all(Option::is_some) && users.iter().all(Option::is_some);
        if !all_known {
            return roles;
        }
        let users: Vec<&User> = users.iter().flatten().collect();
        for (index, role) in roles.iter().flatten().enumerate() {
            for (i, rule) in role.requestable.iter().enumerate() {
                let approvers: Vec<&str> = users
                    .iter()
                    .filter(|u| u.roles.iter().any(|r| rule.approvers.contains(r)))
                    .map(|u| u.name.as_str())
                    .collect();
                for requester in users.iter().filter(|u| u.roles.contains(&role.name)) {
                    let others = approvers
                        .iter()
                        .filter(|a| **a != requester.name.as_str())
                        .count();
                    if others >= rule.approvals as usize {
                        continue;
                    }
                    let span = raw[index].requestable[i].span();
                    let roles_list = quoted_list(rule.approvers.iter().map(|r| r.as_str()));
                    let holders = if approvers.is_empty() {
                        "no user holds them".to_owned()
                    } else {
                        format!("only {} hold them", quoted_list(approvers.iter().copied()))
                    };
                    self.error(
                        span,
                        format!("role[{index}].requestable[{i}].approvers"),
                        format!(
                            "`requestable[{i}]` of [[role]] \"{}\": a request by user \"{}\" could never be approved: it needs {} approval(s) from users holding {roles_list}, {holders}, and nobody approves their own request; add approvers or lower `approvals`",
                            role.name, requester.name, rule.approvals
                        ),
                    );
                    break; // one message per rule is enough
                }
            }
        }
        roles
    }

    /// Checks that an entitlement's resource exists and has a credential for its access level.
    fn entitlement(
        &mut self,
        resource: ResourceName,
        access: Access,
        span: Range<usize>,
        key: &str,
        what: &str,
        resources: &HashMap<String, ResourceFacts>,
    ) -> Option<Entitlement> {
        let Some(facts) = resources.get(resource.as_str()) else {
            let known = defined_list(resources.keys(), "resources");
            self.error(
                span,
                format!("{key}.resource"),
                format!("{what} names unknown resource \"{resource}\" ({known})"),
            );
            return None;
        };
        let has = match access {
            Access::Read => facts.has_read,
            Access::Write => facts.has_write,
        };
        if !has {
            self.error(
                span,
                format!("{key}.access"),
                format!(
                    "{what} grants {access} on resource \"{resource}\", which has no `{access}` credential: add {access} = {{ user = \"...\", password_env = \"...\" }} to [[resource]] \"{resource}\" (line {})",
                    facts.line
                ),
            );
            return None;
        }
        Some(Entitlement { resource, access })
    }

    fn user(
        &mut self,
        index: usize,
        raw: &RawUser,
        roles: &HashMap<String, usize>,
        user_lines: &mut HashMap<String, usize>,
    ) -> Option<User> {
        let label = format!("[[user]] {:?}", raw.name.get_ref());
        let name = match UserName::new(raw.name.get_ref().as_str()) {
            Ok(name) => {
                if let Some(&first) = user_lines.get(name.as_str()) {
                    self.error(
                        raw.name.span(),
                        format!("user[{index}].name"),
                        format!(
                            "duplicate user name \"{name}\" (first defined at line {first}): user names must be unique"
                        ),
                    );
                    None
                } else {
                    user_lines.insert(name.as_str().to_owned(), self.line(raw.name.span()));
                    Some(name)
                }
            }
            Err(err) => {
                self.error(
                    raw.name.span(),
                    format!("user[{index}].name"),
                    format!("`name` in [[user]]: {err}"),
                );
                None
            }
        };

        let mut list = Some(Vec::with_capacity(raw.roles.len()));
        for (i, role) in raw.roles.iter().enumerate() {
            let key = format!("user[{index}].roles[{i}]");
            let checked = match RoleName::new(role.get_ref().as_str()) {
                // The role is defined with this malformed name: reported there already.
                Err(_) if roles.contains_key(role.get_ref()) => {
                    list = None;
                    continue;
                }
                Err(err) => Err(format!("`roles` of {label}: {err}")),
                Ok(role) if !roles.contains_key(role.as_str()) => Err(format!(
                    "`roles` of {label} names unknown role \"{role}\" ({})",
                    defined_list(roles.keys(), "roles")
                )),
                Ok(role)
                    if list
                        .as_ref()
                        .is_some_and(|l: &Vec<RoleName>| l.contains(&role)) =>
                {
                    Err(format!("`roles` of {label} lists role \"{role}\" twice"))
                }
                Ok(role) => Ok(role),
            };
            list = match (list, checked) {
                (Some(mut l), Ok(role)) => {
                    l.push(role);
                    Some(l)
                }
                (_, Err(message)) => {
                    self.error(role.span(), key, message);
                    None
                }
                (None, Ok(_)) => None,
            };
        }
        Some(User {
            name: name?,
            roles: list?,
        })
    }
}

/// The last component of a dotted key, for messages.
fn last(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// `defined roles: "a", "b"` or `no roles are defined`, sorted for stable messages.
fn defined_list<'a>(names: impl Iterator<Item = &'a String>, what: &str) -> String {
    let mut names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        return format!("no {what} are defined");
    }
    names.sort_unstable();
    format!("defined {what}: {}", quoted_list(names))
}

/// Splits `host:port`, where host is a name, an IPv4 address or a bracketed IPv6 address.
/// Port 0 is allowed: it asks the OS for a free port, which tests rely on.
fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let example = "write host:port, e.g. \"127.0.0.1:7432\", \"0.0.0.0:7432\" or \"[::1]:7432\"";
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} has no port: {example}"));
    };
    let host = if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(format!("{addr:?} has an unclosed '[': {example}"));
        };
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?}: {inner:?} is not an IPv6 address"));
        }
        inner
    } else if host.contains(':') {
        return Err(format!(
            "{addr:?}: an IPv6 address needs brackets, e.g. \"[::1]:7432\""
        ));
    } else if !is_host(host) {
        return Err(format!(
            "{addr:?}: {host:?} is not a host name or IP address: {example}"
        ));
    } else {
        host
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{addr:?}: {port:?} is not a port number (0-65535): {example}"))?;
    Ok((host.to_owned(), port))
}

/// A DNS name, an IPv4 address or an (unbracketed) IPv6 address.
fn is_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`: names a shell can export.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        let cases: &[(&str, Option<(&str, u16)>)] = &[
            ("127.0.0.1:7432", Some(("127.0.0.1", 7432))),
            ("0.0.0.0:0", Some(("0.0.0.0", 0))),
            ("localhost:80", Some(("localhost", 80))),
            ("gw.example.com:443", Some(("gw.example.com", 443))),
            ("[::1]:7432", Some(("::1", 7432))),
            ("[::]:7432", Some(("::", 7432))),
            ("::1:7432", None),
            ("[::1:7432", None),
            ("[nope]:7432", None),
            ("127.0.0.1", None),
            ("127.0.0.1:", None),
            ("127.0.0.1:65536", None),
            (":7432", None),
            ("bad host:1", None),
            ("http://x:1", None),
        ];
        for &(addr, expected) in cases {
            let got = split_host_port(addr).ok();
            let expected = expected.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(got, expected, "{addr}");
        }
    }

    #[test]
    fn env_names() {
        let cases = [
            ("ORDERS_RO_PASSWORD", true),
            ("_x1", true),
            ("1X", false),
            ("MY-VAR", false),
            ("", false),
            ("A B", false),
        ];
        for (name, ok) in cases {
            assert_eq!(is_env_name(name), ok, "{name}");
        }
    }
}
