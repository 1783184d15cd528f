//! A loaded runbook: the checked, typed form of one file.
//!
//! Everything here has passed `file.rs`'s checks, so the code that plans and runs steps can rely on
//! it: templates refer only to declared parameters, URLs have a literal host, argv[0] is a literal
//! absolute path, SQL text holds no templates. The types serialize for `airlock runbook show` and
//! the API (durations as `"30s"`, patterns and templates as written); secrets are never in a
//! runbook, only the names of the variables that hold them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use airlock_config::{Access, ByteSize, ResourceName, RoleName};
use serde::{Serialize, Serializer};

use crate::params::ParamValue;
use crate::template::Template;

/// One reviewed, parameterised action.
#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    /// `[a-z0-9][a-z0-9-]{0,62}`, unique in the directory.
    pub name: String,
    /// What it does, for people choosing one.
    pub description: String,
    /// Roles whose members may run it.
    pub roles: Vec<RoleName>,
    /// How many approvals a run needs first; 0 runs at once.
    pub approvals: u32,
    /// Roles whose members may approve (non-empty when `approvals > 0`).
    pub approvers: Vec<RoleName>,
    /// The whole run's limit.
    #[serde(serialize_with = "duration")]
    pub timeout: Duration,
    /// Declared parameters, in file order.
    pub params: Vec<Param>,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Hex SHA-256 of the file's text: which version of the runbook ran.
    pub digest: String,
    /// Lines of the keys that refer to airlock.toml (`roles[0]`, `step[1].resource`), for
    /// [`crate::Runbooks::check_config`]'s diagnostics.
    #[serde(skip)]
    pub(crate) lines: BTreeMap<String, usize>,
}

impl Runbook {
    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// One `[[param]]`.
#[derive(Debug, Clone, Serialize)]
pub struct Param {
    /// `[a-z_][a-z0-9_]*`.
    pub name: String,
    /// Optional help text (empty when not given).
    pub description: String,
    /// The type and its constraints.
    #[serde(flatten)]
    pub kind: ParamKind,
    /// Used when the parameter is not given; already validated against the constraints.
    pub default: Option<ParamValue>,
    /// Whether it must be given: true unless there is a default.
    pub required: bool,
    /// Whether a value may start with `-` where the parameter is a whole
    /// argv element (where a program would read it as an option). Default
    /// false: such a value is refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_leading_dash: bool,
}

/// A parameter's type and constraints.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ParamKind {
    /// Text, at most `max_len` characters, optionally matching `pattern` as a whole.
    String {
        /// Matched against the whole value.
        pattern: Option<Pattern>,
        /// In characters (default 256).
        max_len: usize,
    },
    /// A whole number (i64), optionally bounded.
    Int {
        /// Smallest allowed.
        min: Option<i64>,
        /// Largest allowed.
        max: Option<i64>,
    },
    /// `true` or `false`.
    Bool,
    /// One of a fixed list of strings.
    Enum {
        /// The allowed values.
        values: Vec<String>,
    },
}

/// A `pattern`: compiled anchored at both ends, so it always matches the whole value whether or
/// not the author wrote `^...$`. The `regex` crate matches in linear time, so a value cannot make
/// validation slow.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source` as `^(?:source)$`.
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Pattern {
            source: source.to_owned(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// One `[[step]]`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 0-based position.
    pub index: usize,
    /// As given, or `"<kind> <index>"`.
    pub name: String,
    /// The step's own limit (never more than the run's).
    #[serde(serialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Output kept per stream (default 64KiB).
    pub max_output: ByteSize,
    /// What it does.
    #[serde(flatten)]
    pub action: StepAction,
}

/// The three kinds of step.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StepAction {
    /// A statement through the gateway's own proxy path.
    Sql(SqlStep),
    /// One HTTP request.
    Http(HttpStep),
    /// One process, never a shell.
    Command(CommandStep),
}

impl StepAction {
    /// The kind, for events and outcomes.
    pub fn kind(&self) -> StepKind {
        match self {
            StepAction::Sql(_) => StepKind::Sql,
            StepAction::Http(_) => StepKind::Http,
            StepAction::Command(_) => StepKind::Command,
        }
    }
}

/// `sql`, `http` or `command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// `kind = "sql"`.
    Sql,
    /// `kind = "http"`.
    Http,
    /// `kind = "command"`.
    Command,
}

impl StepKind {
    /// `"sql"`, `"http"` or `"command"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Sql => "sql",
            StepKind::Http => "http",
            StepKind::Command => "command",
        }
    }
}

/// `kind = "sql"`: the SQL text is fixed; parameters travel as bound arguments (`$1`, `$2`, ...).
#[derive(Debug, Clone, Serialize)]
pub struct SqlStep {
    /// The `[[resource]]` of airlock.toml it runs on (checked against the config by the gateway).
    pub resource: ResourceName,
    /// Which credential it runs with.
    pub access: Access,
    /// The statement, never rendered.
    pub sql: String,
    /// `$1`, `$2`, ... in order; every one is used by `sql`.
    pub args: Vec<Template>,
    /// Rows the executor returns at most (default 1000).
    pub max_rows: usize,
}

/// `kind = "http"`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpStep {
    /// GET, POST, PUT, PATCH, DELETE or HEAD.
    pub method: String,
    /// Where it goes; only the path and query values can hold parameters.
    pub url: UrlTemplate,
    /// In file order (names lowercase).
    pub headers: Vec<(String, HeaderTemplate)>,
    /// JSON body: the TOML `body` with template strings still in it.
    pub body: Option<serde_json::Value>,
    /// Statuses that count as success; empty means any 2xx.
    pub expect_status: Vec<u16>,
}

/// A URL split so that parameters can only ever fill whole path segments' contents and query
/// values, each percent-encoded.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    /// As written.
    pub(crate) source: String,
    /// `scheme://authority`, literal.
    pub(crate) origin: String,
    /// Path segments after the authority (each without `/`).
    pub(crate) path: Vec<Template>,
    /// Query pairs: literal key, optional value template.
    pub(crate) query: Option<Vec<(String, Option<Template>)>>,
}

impl UrlTemplate {
    /// The URL as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Serialize for UrlTemplate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// A header value: text (a template), or a secret read from the gateway's environment when the
/// request is sent.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum HeaderTemplate {
    /// `X-Reason = "rollback {{service}}"`.
    Text(Template),
    /// `Authorization = { env = "DEPLOY_TOKEN", prefix = "Bearer " }`.
    Env {
        /// The variable.
        env: String,
        /// Put before the value (may be empty).
        prefix: String,
    },
}

/// `kind = "command"`: argv[0] runs directly, with a cleared environment.
#[derive(Debug, Clone, Serialize)]
pub struct CommandStep {
    /// argv[0] is a literal absolute path; each element renders to exactly one argument.
    pub argv: Vec<Template>,
    /// Variables passed through from the gateway's environment (when set there).
    pub env: Vec<String>,
    /// Extra variables (applied after `env`).
    pub set_env: BTreeMap<String, Template>,
    /// Working directory (default `/`).
    pub cwd: Option<PathBuf>,
}

pub(crate) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&airlock_config::format_duration(*d))
}

fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}
