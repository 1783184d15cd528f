//! Reading runbook files: TOML with spans in, a checked [`Runbook`] or `file:line:` diagnostics out.
//!
//! Like `airlock.toml`, a runbook is read in two passes. toml and serde read the text into raw
//! structs that keep byte spans and refuse unknown keys (one error, since the parse cannot go on
//! past it); then the checking pass (`check.rs`) finds everything else and reports every problem
//! at once, each at its line with the key path (`step[1].url`) and what to do about it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use airlock_config::{ByteSize, Diagnostic};
use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use crate::check::Cx;
use crate::model::{Runbook, StepAction};
use crate::{RunbookError, Runbooks};

/// A run's limit when the file gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Output kept per step and stream when the file gives no `max_output`.
pub const DEFAULT_MAX_OUTPUT: ByteSize = ByteSize(64 * 1024);
/// The largest `max_output`: with at most [`MAX_STEPS`] steps it bounds what a run's outcome (and
/// its audit record) can hold.
pub const MAX_OUTPUT_LIMIT: ByteSize = ByteSize(1 << 20);
/// Most steps in one runbook.
pub const MAX_STEPS: usize = 32;
/// `max_rows` of a sql step when the file gives none.
pub const DEFAULT_MAX_ROWS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRunbook {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    pub(crate) roles: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) approvals: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) approvers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) param: Vec<Spanned<RawParam>>,
    #[serde(default)]
    pub(crate) step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawParam {
    pub(crate) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(crate) kind: Spanned<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) values: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) pattern: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_len: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) min: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) max: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) required: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) allow_leading_dash: bool,
}

/// Every key of every kind: serde cannot keep spans through an internally tagged enum, so the
/// kind's own keys are checked by hand (with a better message than serde's, too).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    #[serde(default)]
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) kind: Spanned<String>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_output: Option<Spanned<toml::Value>>,
    // sql
    #[serde(default)]
    pub(crate) resource: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) access: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) sql: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) args: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) max_rows: Option<Spanned<i64>>,
    // http
    #[serde(default)]
    pub(crate) method: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) headers: Option<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    pub(crate) body: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) expect_status: Option<Spanned<Vec<Spanned<i64>>>>,
    // command
    #[serde(default)]
    pub(crate) argv: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) env: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) set_env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    pub(crate) cwd: Option<Spanned<String>>,
}

/// Loads every `*.toml` file directly in `dir` (not recursive), in name order. Reports every
/// problem in every file at once; two runbooks with one name is a problem too.
pub fn load_dir(dir: &Path) -> Result<Runbooks, RunbookError> {
    let io = |source| RunbookError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();

    let mut runbooks = BTreeMap::<String, Runbook>::new();
    let mut diagnostics = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|source| RunbookError::Io {
            path: file.clone(),
            source,
        })?;
        let Ok(text) = String::from_utf8(bytes) else {
            diagnostics.push(diagnostic(&file, 1, "", "the file is not UTF-8 text"));
            continue;
        };
        match parse_with_name_line(&file, &text) {
            Ok((runbook, line)) => {
                if let Some(first) = runbooks.get(&runbook.name) {
                    let message = format!(
                        "`name`: runbook {:?} is already defined in {}: names must be unique",
                        runbook.name,
                        first.file.display()
                    );
                    diagnostics.push(diagnostic(&file, line, "name", message));
                } else {
                    runbooks.insert(runbook.name.clone(), runbook);
                }
            }
            Err(found) => diagnostics.extend(found),
        }
    }
    if diagnostics.is_empty() {
        Ok(Runbooks { by_name: runbooks })
    } else {
        Err(RunbookError::Invalid(diagnostics))
    }
}

/// Parses and checks one runbook. `file` is used in messages and recorded in the [`Runbook`];
/// nothing is read from it.
pub fn parse(file: &Path, text: &str) -> Result<Runbook, Vec<Diagnostic>> {
    parse_with_name_line(file, text).map(|(runbook, _)| runbook)
}

impl Runbooks {
    /// Checks what the runbooks name in airlock.toml: roles and approvers must be `[[role]]`s,
    /// a sql step's resource a `[[resource]]` with a credential for the step's access. Reports
    /// every problem at the runbook file's line. The gateway calls this at start and on reload,
    /// after [`load_dir`] and [`airlock_config::Config::load`].
    pub fn check_config(&self, config: &airlock_config::Config) -> Result<(), Vec<Diagnostic>> {
        let mut found = Vec::new();
        let config_file = config.path.display();
        for runbook in self.iter() {
            let mut problem = |key: String, message: String| {
                // The key's own line, else the nearest enclosing key's.
                let line = std::iter::successors(Some(key.as_str()), |k| {
                    k.rfind(['.', '[']).map(|i| &k[..i])
                })
                .find_map(|k| runbook.lines.get(k))
                .copied()
                .unwrap_or(1);
                found.push(diagnostic(
                    &runbook.file,
                    line,
                    &key,
                    format!("`{key}`: {message}"),
                ));
            };
            let lists = [("roles", &runbook.roles), ("approvers", &runbook.approvers)];
            for (key, roles) in lists {
                for (i, role) in roles.iter().enumerate() {
                    if config.role(role.as_str()).is_none() {
                        problem(
                            format!("{key}[{i}]"),
                            format!("there is no [[role]] {:?} in {config_file}: fix the name or add the role", role.as_str()),
                        );
                    }
                }
            }
            let secrets = config.secret_env_names();
            // A variable a step takes from the gateway's environment must
            // not be one of the gateway's own secrets.
            let gateway_secret = |name: &str| -> Option<String> {
                if secrets.contains(&name) {
                    Some(format!("{name} holds one of the gateway's secrets in {config_file} (an upstream password, a webhook, ingest or metrics secret): a runbook may not pass it on; give the step its own variable"))
                } else if name.starts_with("AIRLOCK_") {
                    Some(format!("{name}: variables named AIRLOCK_* are the gateway's own; give the step its own variable"))
                } else {
                    None
                }
            };
            for step in &runbook.steps {
                let key = format!("step[{}]", step.index);
                match &step.action {
                    StepAction::Command(c) => {
                        for (i, name) in c.env.iter().enumerate() {
                            if let Some(why) = gateway_secret(name) {
                                problem(format!("{key}.env[{i}]"), why);
                            }
                        }
                    }
                    StepAction::Http(h) => {
                        for (header, value) in &h.headers {
                            if let crate::model::HeaderTemplate::Env { env, .. } = value {
                                if let Some(why) = gateway_secret(env) {
                                    problem(format!("{key}.headers.{header}"), why);
                                }
                            }
                        }
                    }
                    StepAction::Sql(_) => {}
                }
                let StepAction::Sql(sql) = &step.action else {
                    continue;
                };
                match config.resource(sql.resource.as_str()) {
                    None => problem(
                        format!("{key}.resource"),
                        format!("there is no [[resource]] {:?} in {config_file}", sql.resource.as_str()),
                    ),
                    Some(resource) if resource.credential(sql.access).is_none() => problem(
                        format!("{key}.access"),
                        format!("resource {:?} has no {} credential in {config_file}: add `{}` to it or use the other access", sql.resource.as_str(), sql.access, sql.access),
                    ),
                    Some(_) => {}
                }
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(found)
        }
    }
}

fn parse_with_name_line(file: &Path, text: &str) -> Result<(Runbook, usize), Vec<Diagnostic>> {
    let raw: RawRunbook = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
    let mut cx = Cx {
        file,
        text,
        found: Vec::new(),
        lines: BTreeMap::new(),
    };
    let runbook = cx.runbook(raw);
    match runbook {
        Some((runbook, line)) if cx.found.is_empty() => Ok((runbook, line)),
        _ => Err(cx.found),
    }
}

pub(crate) fn diagnostic(
    file: &Path,
    line: usize,
    key: &str,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line,
        key: key.to_owned(),
        message: message.into(),
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Turns toml's error (syntax, unknown or missing key, wrong type) into a diagnostic whose key is
/// the path of the innermost key or value at the error's span.
fn toml_error(file: &Path, text: &str, err: &toml::de::Error) -> Diagnostic {
    let span = err.span();
    let line = span.as_ref().map_or(1, |s| line_of(text, s.start));
    let message = err
        .message()
        .trim()
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key");
    let Ok(tree) = DeTable::parse(text) else {
        return diagnostic(file, line, "", format!("invalid TOML: {message}"));
    };
    let key = match span.filter(|s| !s.is_empty()) {
        Some(s) => {
            let mut nodes = Vec::new();
            collect(tree.get_ref(), "", &mut nodes);
            nodes
                .into_iter()
                .filter(|(n, _)| n.start <= s.start && s.end <= n.end)
                .min_by_key(|(n, path)| (n.len(), std::cmp::Reverse(path.len())))
                .map(|(_, path)| path)
                .unwrap_or_default()
        }
        None => String::new(),
    };
    // serde points a missing key at the table it is missing from: name the key itself.
    if let Some(field) = message
        .strip_prefix("missing key `")
        .and_then(|rest| rest.split('`').next())
    {
        let place = if key.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in `{key}`")
        };
        let full = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
        return diagnostic(file, line, &full, format!("missing key `{field}` {place}"));
    }
    let message = if key.is_empty() {
        message
    } else {
        format!("`{key}`: {message}")
    };
    diagnostic(file, line, &key, message)
}

fn collect(table: &DeTable<'_>, prefix: &str, out: &mut Vec<(Range<usize>, String)>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push((key.span(), path.clone()));
        out.push((value.span(), path.clone()));
        collect_value(value.get_ref(), &path, out);
    }
}

fn collect_value(value: &DeValue<'_>, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    match value {
        DeValue::Table(table) => collect(table, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                out.push((item.span(), path.clone()));
                collect_value(item.get_ref(), &path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;
    use crate::ParamValue;

    const TOP: &str = r#"name = "t"
description = "test"
roles = ["oncall"]
timeout = "1m"

[[param]]
name = "service"
type = "enum"
values = ["checkout", "orders"]

[[param]]
name = "n"
type = "int"
default = 1
"#;

    const STEP: &str = r#"
[[step]]
kind = "command"
argv = ["/bin/echo", "{{service}}"]
"#;

    /// The line of `text` marked with `# HERE` (1-based).
    fn marked_line(text: &str) -> usize {
        text.lines()
            .position(|l| l.contains("# HERE"))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no # HERE marker in:\n{text}"))
    }

    #[test]
    fn examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/runbooks");
        let runbooks = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = runbooks.names().collect();
        assert_eq!(
            names,
            [
                "kill-long-queries",
                "restart-instance",
                "rollback-service",
                "verify-replica-lag"
            ]
        );
        let kill = runbooks.get("kill-long-queries").unwrap();
        assert_eq!(kill.approvals, 1);
        assert_eq!(kill.approvers[0].as_str(), "sre-lead");
        for runbook in runbooks.iter() {
            assert_eq!(runbook.digest.len(), 64);
            assert!(runbook.file.starts_with(&dir));
        }
    }

    /// Each case is a whole file with `# HERE` on the line the problem must be reported at, and a
    /// piece of the message, which should say what to do.
    #[test]
    fn bad_files_name_the_line_and_the_fix() {
        let step = |s: &str| format!("{TOP}\n{s}");
        let cases: Vec<(String, &str, &str)> = vec![
            (format!("nmae = \"x\" # HERE\n{TOP}{STEP}"), "nmae", "unknown key `nmae`"),
            (
                TOP.replace("name = \"t\"", "name = \"Bad_Name\" # HERE") + STEP,
                "name",
                "not a valid runbook name: use a lowercase letter or digit first",
            ),
            (
                TOP.replace("timeout = \"1m\"", "timeout = \"5 minutes\" # HERE") + STEP,
                "timeout",
                "invalid duration",
            ),
            (
                TOP.replace("roles = [\"oncall\"]", "roles = [] # HERE") + STEP,
                "roles",
                "list at least one",
            ),
            (
                TOP.replace("roles = [\"oncall\"]", "roles = [\"oncall\"]\napprovals = 1 # HERE") + STEP,
                "approvals",
                "add approvers = [\"role\"]",
            ),
            (
                format!("{}\n[[param]]\nname = \"Bad\" # HERE\ntype = \"bool\"\n{STEP}", TOP),
                "param[2].name",
                "not a valid parameter name",
            ),
            (
                format!("{}\n[[param]]\nname = \"n\" # HERE\ntype = \"bool\"\n{STEP}", TOP),
                "param[2].name",
                "declared twice",
            ),
            (
                format!("{}\n[[param]]\nname = \"x\"\ntype = \"text\" # HERE\n{STEP}", TOP),
                "param[2].type",
                "use \"string\", \"int\", \"bool\" or \"enum\"",
            ),
            (
                format!("{}\n[[param]]\nname = \"x\"\ntype = \"string\"\npattern = \"(\" # HERE\n{STEP}", TOP),
                "param[2].pattern",
                "not a valid regular expression",
            ),
            (
                format!("{}\n[[param]]\nname = \"x\"\ntype = \"bool\"\nmin = 3 # HERE\n{STEP}", TOP),
                "param[2].min",
                "`min` does not apply to a bool parameter",
            ),
            (
                format!("{}\n[[param]]\nname = \"x\"\ntype = \"int\"\nmin = 30\ndefault = 5 # HERE\n{STEP}", TOP),
                "param[2].default",
                "`x` must be at least 30, got 5",
            ),
            (
                format!("{}\n[[param]]\nname = \"x\"\ntype = \"string\"\nrequired = false # HERE\n{STEP}", TOP),
                "param[2].required",
                "needs a default",
            ),
            (
                format!("{}\n[[param]]\nname = \"x\"\ntype = \"enum\" # HERE\n{STEP}", TOP),
                "param[2].values",
                "needs values = [",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/echo\", \"{{nope}}\"] # HERE\n"),
                "step[0].argv[1]",
                "`{{nope}}` is not a declared parameter: add a [[param]] named \"nope\"",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/echo\", \"{{service\"] # HERE\n"),
                "step[0].argv[1]",
                "`{{` is not closed",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/echo\", \"{{ service | upper }}\"] # HERE\n"),
                "step[0].argv[1]",
                "no expressions or filters",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"restart\"] # HERE\n"),
                "step[0].argv[0]",
                "must be an absolute path",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/usr/bin/{{service}}\"] # HERE\n"),
                "step[0].argv[0]",
                "no templates, no PATH lookup",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [] # HERE\n"),
                "step[0].argv",
                "argv is empty",
            ),
            (
                step("[[step]] # HERE\nkind = \"command\"\n"),
                "step[0].argv",
                "a command step needs `argv`",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/true\"]\nurl = \"http://x/\" # HERE\n"),
                "step[0].url",
                "`url` is not a key of a command step (it takes argv, env, set_env, cwd)",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/true\"]\nurll = \"http://x/\" # HERE\n"),
                "step[0].urll",
                "unknown key `urll`",
            ),
            (
                step("[[step]]\nkind = \"shell\" # HERE\n"),
                "step[0].kind",
                "use \"sql\", \"http\" or \"command\"",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/true\"]\ntimeout = \"2m\" # HERE\n"),
                "step[0].timeout",
                "longer than the run's (1m)",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/true\"]\nmax_output = \"2MiB\" # HERE\n"),
                "step[0].max_output",
                "must be from 1B to 1MiB",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = [\"/bin/true\"]\nenv = [\"A-B\"] # HERE\n"),
                "step[0].env[0]",
                "not an environment variable name",
            ),
            (
                step("[[step]]\nkind = \"sql\"\nresource = \"orders\"\naccess = \"read\"\nsql = \"SELECT '{{service}}'\" # HERE\n"),
                "step[0].sql",
                "write $1, $2, ... in the SQL and list the values in args",
            ),
            (
                step("[[step]]\nkind = \"sql\"\nresource = \"orders\"\naccess = \"read\"\nsql = \"\"\"\nSELECT 1\n WHERE x = '{{service}}' # HERE\n\"\"\"\n"),
                "step[0].sql",
                "SQL text cannot hold templates",
            ),
            (
                step("[[step]]\nkind = \"sql\"\nresource = \"orders\"\naccess = \"read\"\nsql = \"SELECT $1, $2\" # HERE\nargs = [\"{{service}}\"]\n"),
                "step[0].sql",
                "the SQL uses $2 but args has 1 value(s)",
            ),
            (
                step("[[step]]\nkind = \"sql\"\nresource = \"orders\"\naccess = \"read\"\nsql = \"SELECT $1, '$2'\"\nargs = [\n\"{{service}}\",\n\"{{n}}\" # HERE\n]\n"),
                "step[0].args[1]",
                "$2 is not used by the SQL",
            ),
            (
                step("[[step]]\nkind = \"sql\"\nresource = \"orders\"\naccess = \"admin\" # HERE\nsql = \"SELECT 1\"\n"),
                "step[0].access",
                "use \"read\" or \"write\"",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"FETCH\" # HERE\nurl = \"http://x/\"\n"),
                "step[0].method",
                "use one of GET, POST, PUT, PATCH, DELETE, HEAD",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"ftp://x/\" # HERE\n"),
                "step[0].url",
                "use http or https",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"/deploy\" # HERE\n"),
                "step[0].url",
                "absolute URL",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://{{service}}.internal/\" # HERE\n"),
                "step[0].url",
                "a parameter can never choose where a request goes",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://deploy:{{n}}/\" # HERE\n"),
                "step[0].url",
                "a parameter can never choose where a request goes",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://x/?{{service}}=1\" # HERE\n"),
                "step[0].url",
                "a query key cannot hold a parameter",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://x/#{{service}}\" # HERE\n"),
                "step[0].url",
                "remove the #fragment",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://me:pw@x/\" # HERE\n"),
                "step[0].url",
                "the URL holds credentials: send them in a header",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://x/\"\nheaders = { \"Bad Header\" = \"1\" } # HERE\n"),
                "step[0].headers.Bad Header",
                "not a valid header name",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://x/\"\nheaders = { Host = \"{{service}}\" } # HERE\n"),
                "step[0].headers.Host",
                "is set by the HTTP client",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://x/\"\nheaders = { Authorization = { var = \"T\" } } # HERE\n"),
                "step[0].headers.Authorization",
                "unknown key `var` in a secret header",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"https://x/\"\nbody = { a = 1 } # HERE\n"),
                "step[0].body",
                "a GET or HEAD request has no body",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"POST\"\nurl = \"https://x/\"\n[step.body]\nok = \"{{service}}\"\nbad = \"{{version}}\" # HERE\n"),
                "step[0].body.bad",
                "`{{version}}` is not a declared parameter",
            ),
            (
                step("[[step]]\nkind = \"http\"\nmethod = \"POST\"\nurl = \"https://x/\"\nexpect_status = [200, 999] # HERE\n"),
                "step[0].expect_status[1]",
                "from 100 to 599",
            ),
            (
                format!("name = \"t\" # HERE\n{STEP}"),
                "roles",
                "missing key `roles`",
            ),
            (TOP.to_owned(), "step", "add at least one [[step]]"),
            (
                step("[[step]] # HERE\nargv = [\"/bin/true\"]\n"),
                "step[0].kind",
                "missing key `kind` in `step[0]`",
            ),
            (
                step("[[step]]\nkind = \"command\"\nargv = \"/bin/true\" # HERE\n"),
                "step[0].argv",
                "invalid type",
            ),
        ];
        for (text, key, message) in cases {
            let found = parse(Path::new("rb/t.toml"), &text)
                .map(|_| ())
                .expect_err(&text);
            let line = if text.contains("# HERE") {
                marked_line(&text)
            } else {
                1
            };
            assert!(
                found
                    .iter()
                    .any(|d| d.line == line && d.key == key && d.message.contains(message)),
                "expected rb/t.toml:{line}: [{key}] ...{message}...\nin:\n{text}\ngot:\n{}",
                found
                    .iter()
                    .map(|d| format!("{d} [{}]", d.key))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            for d in &found {
                assert!(d
                    .to_string()
                    .starts_with(&format!("rb/t.toml:{}: ", d.line)));
            }
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = format!(
            "{TOP}\n[[step]]\nkind = \"command\"\nargv = [\"rel\"]\n\n[[step]]\nkind = \"http\"\nmethod = \"FETCH\"\nurl = \"http://x/{{{{zz}}}}\"\n"
        );
        let found = parse(Path::new("t.toml"), &text).map(|_| ()).unwrap_err();
        let keys: Vec<&str> = found.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["step[0].argv[0]", "step[1].method", "step[1].url"]);
    }

    #[test]
    fn defaults_and_digest() {
        let text = format!("{TOP}{STEP}");
        let rb = parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(rb.steps[0].name, "command 0");
        assert_eq!(rb.steps[0].max_output, DEFAULT_MAX_OUTPUT);
        assert_eq!(rb.approvals, 0);
        assert!(rb.param("service").unwrap().required);
        assert!(!rb.param("n").unwrap().required);
        assert_eq!(rb.param("n").unwrap().default, Some(ParamValue::Int(1)));
        assert_eq!(
            rb.digest,
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        );
    }

    #[test]
    fn duplicate_names_name_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{TOP}{STEP}");
        std::fs::write(dir.path().join("a.toml"), &text).unwrap();
        std::fs::write(dir.path().join("b.toml"), &text).unwrap();
        std::fs::write(dir.path().join("notes.md"), "not a runbook").unwrap();
        std::fs::create_dir(dir.path().join("sub.toml")).unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        let found = err.diagnostics();
        assert_eq!(found.len(), 1, "{err}");
        assert_eq!(found[0].file, dir.path().join("b.toml"));
        assert_eq!(found[0].line, 1);
        assert!(
            found[0].message.contains(&format!(
                "runbook \"t\" is already defined in {}",
                dir.path().join("a.toml").display()
            )),
            "{err}"
        );
        assert!(matches!(
            load_dir(&dir.path().join("missing")),
            Err(RunbookError::Io { .. })
        ));
    }

    #[test]
    fn references_to_airlock_toml_are_checked() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let config = airlock_config::Config::load(&examples.join("airlock.toml")).unwrap();
        load_dir(&examples.join("runbooks"))
            .unwrap()
            .check_config(&config)
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let text = r#"name = "x"
roles = ["oncall", "nobody"] # HERE roles[1]
approvals = 1
approvers = ["ghost"] # HERE approvers[0]

[[step]]
kind = "sql"
resource = "billing" # HERE step[0].resource
access = "read"
sql = "SELECT 1"
"#;
        std::fs::write(dir.path().join("x.toml"), text).unwrap();
        let runbooks = load_dir(dir.path()).unwrap();
        let found = runbooks.check_config(&config).unwrap_err();
        let got: Vec<(usize, &str)> = found.iter().map(|d| (d.line, d.key.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "roles[1]"),
                (4, "approvers[0]"),
                (8, "step[0].resource")
            ]
        );
        assert!(
            found[0]
                .message
                .contains("there is no [[role]] \"nobody\" in"),
            "{}",
            found[0]
        );

        // A resource without the credential for the step's access.
        let config = airlock_config::Config::from_str(
            r#"
[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "./data"

[[resource]]
name = "orders"
kind = "postgres"
host = "127.0.0.1"
database = "orders"
read = { user = "orders_ro" }

[[role]]
name = "oncall"

[[role]]
name = "sre-lead"
"#,
            Path::new("airlock.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let found = load_dir(&examples.join("runbooks"))
            .unwrap()
            .check_config(&config)
            .unwrap_err();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "step[0].access");
        assert_eq!(found[0].line, 24);
        assert!(found[0]
            .message
            .contains("resource \"orders\" has no write credential in airlock.toml"));
        assert!(found[0].file.ends_with("kill-long-queries.toml"));
    }

    /// A runbook step may not hand the gateway's own secrets (upstream
    /// passwords, webhook and ingest secrets, `AIRLOCK_*`) to a program or
    /// an HTTP server.
    #[test]
    fn steps_cannot_take_the_gateways_secrets() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let config = airlock_config::Config::load(&examples.join("airlock.toml")).unwrap();
        let secret = config.secret_env_names()[0].to_owned();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"name = "leak"
roles = ["oncall"]

[[step]]
kind = "command"
argv = ["/bin/true"]
env = ["PATH", "{secret}", "AIRLOCK_TOKEN"]

[[step]]
kind = "http"
method = "POST"
url = "https://deploy.internal/x"
headers = {{ Authorization = {{ env = "{secret}" }}, X-Token = {{ env = "DEPLOY_TOKEN" }} }}
"#
        );
        std::fs::write(dir.path().join("leak.toml"), text).unwrap();
        let found = load_dir(dir.path())
            .unwrap()
            .check_config(&config)
            .unwrap_err();
        let keys: Vec<&str> = found.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "step[0].env[1]",
                "step[0].env[2]",
                "step[1].headers.authorization"
            ],
            "{found:?}"
        );
        assert!(
            found[0]
                .message
                .contains("holds one of the gateway's secrets"),
            "{}",
            found[0]
        );
        assert!(
            found.iter().all(|d| d.line > 1),
            "each at its step's line: {found:?}"
        );
    }
}
