//! What a run will do: every step rendered with validated parameters, before anything runs.
//!
//! [`Runbook::plan`] is the last place a rendered value is checked (a URL path segment that
//! decodes to `..`, a header value with a line break); the [`Plan`] it returns is exactly what the
//! runner executes, and it serializes for `--dry-run` and the audit log. Secret headers stay
//! references to environment variables until the runner sends the request, so a plan never holds a
//! secret and can be shown, stored and compared freely.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use airlock_config::{Access, ResourceName};
use serde::{Serialize, Serializer};

use crate::model::{duration, HeaderTemplate, Runbook, StepAction, StepKind, UrlTemplate};
use crate::params::Params;
use crate::template::{percent_decode, MissingParam, Template};

/// A runbook rendered with one set of parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The runbook's name.
    pub runbook: String,
    /// The runbook file's digest: which version this plan came from.
    pub digest: String,
    /// The parameters it was rendered with.
    pub params: Params,
    /// The whole run's limit.
    #[serde(serialize_with = "duration")]
    pub timeout: Duration,
    /// In order.
    pub steps: Vec<PlannedStep>,
}

/// One rendered step.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// 0-based position.
    pub index: usize,
    /// The step's name.
    pub name: String,
    /// The step's own limit, if any (the run's limit bounds it anyway).
    #[serde(serialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Output kept per stream, in bytes.
    pub max_output: usize,
    /// What it does.
    #[serde(flatten)]
    pub action: PlannedAction,
}

/// A rendered step by kind.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlannedAction {
    /// See [`PlannedSql`].
    Sql(PlannedSql),
    /// See [`PlannedHttp`].
    Http(PlannedHttp),
    /// See [`PlannedCommand`].
    Command(PlannedCommand),
}

/// A statement and its bound arguments.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedSql {
    /// The resource it runs on.
    pub resource: ResourceName,
    /// Which credential.
    pub access: Access,
    /// The statement exactly as in the file.
    pub sql: String,
    /// `$1`, `$2`, ...: each parameter's text.
    pub args: Vec<String>,
    /// Rows the executor returns at most.
    pub max_rows: usize,
}

/// A request, secrets still unresolved.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedHttp {
    /// The method.
    pub method: String,
    /// The final URL, parameters percent-encoded.
    pub url: String,
    /// In file order.
    pub headers: Vec<PlannedHeader>,
    /// The JSON body.
    pub body: Option<serde_json::Value>,
    /// Statuses that count as success; empty means any 2xx.
    pub expect_status: Vec<u16>,
}

/// One header of a planned request.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedHeader {
    /// Lowercase name.
    pub name: String,
    /// The value, or where the runner will read it.
    pub value: HeaderValue,
}

/// A header value in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Rendered text.
    Text(String),
    /// `prefix` + the value of `env`, read when the request is sent.
    Secret {
        /// The variable.
        env: String,
        /// Text before the value.
        prefix: String,
    },
}

impl fmt::Display for HeaderValue {
    /// The text, or `Bearer <secret from env DEPLOY_TOKEN>`: never a secret's value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderValue::Text(text) => f.write_str(text),
            HeaderValue::Secret { env, prefix } => write!(f, "{prefix}<secret from env {env}>"),
        }
    }
}

impl Serialize for HeaderValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A process to start.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedCommand {
    /// argv[0] is the program; one element per template.
    pub argv: Vec<String>,
    /// Variables passed through from the gateway's environment.
    pub env: Vec<String>,
    /// Variables set to rendered values.
    pub set_env: BTreeMap<String, String>,
    /// Working directory (`/` when not given).
    pub cwd: Option<PathBuf>,
}

impl PlannedStep {
    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        match self.action {
            PlannedAction::Sql(_) => StepKind::Sql,
            PlannedAction::Http(_) => StepKind::Http,
            PlannedAction::Command(_) => StepKind::Command,
        }
    }

    /// One line saying what the step does, for a terminal or a log (no secrets; long text cut).
    pub fn summary(&self) -> String {
        let line = match &self.action {
            PlannedAction::Sql(s) => format!(
                "sql on {} ({}): {}",
                s.resource,
                s.access,
                s.sql.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            PlannedAction::Http(h) => format!("{} {}", h.method, h.url),
            PlannedAction::Command(c) => c
                .argv
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(" "),
        };
        if line.chars().count() > 200 {
            line.chars().take(200).chain("...".chars()).collect()
        } else {
            line
        }
    }
}

/// A step could not be rendered with these parameters; nothing has run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {index} ({name}): {problem}")]
pub struct PlanError {
    /// The step.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub problem: PlanProblem,
}

/// What made a step impossible to render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    /// The parameters lack a value a template needs.
    #[error(transparent)]
    MissingParam(#[from] MissingParam),
    /// A parameter made a URL path segment that URL parsers treat as `.` or `..`
    /// (`%2E%2E` counts, per the WHATWG URL standard).
    #[error("a parameter makes the URL path segment {segment:?}, which URL parsers read as {decoded:?} and would step out of the declared path: refused")]
    DotSegment {
        /// The segment as rendered.
        segment: String,
        /// `.` or `..`.
        decoded: String,
    },
    /// A parameter made a URL path segment empty (`/deploy/` instead of `/deploy/x`).
    #[error("a parameter makes a URL path segment empty, which changes the path: give a value")]
    EmptySegment,
    /// The rendered URL did not parse or does not go to the declared origin.
    #[error("the rendered URL {0}")]
    Url(String),
    /// A rendered header value holds CR, LF, NUL or another character a header cannot carry.
    #[error("the value of header `{0}` would contain a line break, NUL or another control character: refused")]
    HeaderValue(String),
    /// A parameter that is a whole argument starts with `-`.
    #[error("parameter `{0}` is a whole argument of the command and its value starts with '-', which the program could read as an option: refused (if the runbook means it, its parameter sets allow_leading_dash = true)")]
    LeadingDash(String),
}

impl Runbook {
    /// Renders every step with `params` (from [`Runbook::validate`]).
    pub fn plan(&self, params: &Params) -> Result<Plan, PlanError> {
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let fail = |problem: PlanProblem| PlanError {
                index: step.index,
                name: step.name.clone(),
                problem,
            };
            let action = match &step.action {
                StepAction::Sql(s) => PlannedAction::Sql(PlannedSql {
                    resource: s.resource.clone(),
                    access: s.access,
                    sql: s.sql.clone(),
                    args: render_all(&s.args, params).map_err(|e| fail(e.into()))?,
                    max_rows: s.max_rows,
                }),
                StepAction::Http(h) => {
                    let url = h.url.render(params).map_err(fail)?;
                    let mut headers = Vec::new();
                    for (name, value) in &h.headers {
                        let value = match value {
                            HeaderTemplate::Text(t) => {
                                let text = t.render_text(params).map_err(|e| fail(e.into()))?;
                                // HeaderValue refuses CR, LF and NUL too; checking them here
                                // first keeps the rule visible and the message ours.
                                if text.contains(|c: char| c.is_control() && c != '\t')
                                    || reqwest::header::HeaderValue::from_bytes(text.as_bytes())
                                        .is_err()
                                {
                                    return Err(fail(PlanProblem::HeaderValue(name.clone())));
                                }
                                HeaderValue::Text(text)
                            }
                            HeaderTemplate::Env { env, prefix } => HeaderValue::Secret {
                                env: env.clone(),
                                prefix: prefix.clone(),
                            },
                        };
                        headers.push(PlannedHeader {
                            name: name.clone(),
                            value,
                        });
                    }
                    let body = match &h.body {
                        Some(b) => Some(render_json(b, params).map_err(|e| fail(e.into()))?),
                        None => None,
                    };
                    PlannedAction::Http(PlannedHttp {
                        method: h.method.clone(),
                        url,
                        headers,
                        body,
                        expect_status: h.expect_status.clone(),
                    })
                }
                StepAction::Command(c) => PlannedAction::Command(PlannedCommand {
                    argv: {
                        let argv = render_all(&c.argv, params).map_err(|e| fail(e.into()))?;
                        for (template, value) in c.argv.iter().zip(&argv).skip(1) {
                            let Some(name) = template.sole_param() else {
                                continue;
                            };
                            let allowed = self
                                .params
                                .iter()
                                .any(|p| p.name == name && p.allow_leading_dash);
                            if value.starts_with('-') && !allowed {
                                return Err(fail(PlanProblem::LeadingDash(name.to_owned())));
                            }
                        }
                        argv
                    },
                    env: c.env.clone(),
                    set_env: c
                        .set_env
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), t.render_text(params)?)))
                        .collect::<Result<_, MissingParam>>()
                        .map_err(|e| fail(e.into()))?,
                    cwd: c.cwd.clone(),
                }),
            };
            steps.push(PlannedStep {
                index: step.index,
                name: step.name.clone(),
                timeout: step.timeout,
                max_output: step.max_output.as_usize(),
                action,
            });
        }
        Ok(Plan {
            runbook: self.name.clone(),
            digest: self.digest.clone(),
            params: params.clone(),
            timeout: self.timeout,
            steps,
        })
    }
}

fn render_all(templates: &[Template], params: &Params) -> Result<Vec<String>, MissingParam> {
    templates.iter().map(|t| t.render_text(params)).collect()
}

/// A string that is exactly `"{{name}}"` becomes the parameter's typed JSON value; any other string
/// is rendered as text and becomes a JSON string, escaped by serde_json when the body is written.
fn render_json(
    value: &serde_json::Value,
    params: &Params,
) -> Result<serde_json::Value, MissingParam> {
    use serde_json::Value;
    Ok(match value {
        Value::String(text) => {
            // Checked when the runbook was loaded; a string that no longer parses is kept as is.
            let Ok(template) = Template::parse(text) else {
                return Ok(value.clone());
            };
            match template.sole_param() {
                Some(name) => params
                    .get(name)
                    .ok_or_else(|| MissingParam(name.to_owned()))?
                    .to_json(),
                None => Value::String(template.render_text(params)?),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, params))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, params)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

impl UrlTemplate {
    /// The URL with each value percent-encoded; refuses values that would change the path's
    /// structure even encoded (`.`/`..` segments, empty segments) or its origin.
    pub(crate) fn render(&self, params: &Params) -> Result<String, PlanProblem> {
        let mut url = self.origin.clone();
        for segment in &self.path {
            let rendered = segment.render_url_component(params)?;
            if segment.has_params() {
                let decoded = percent_decode(&rendered);
                if decoded == b"." || decoded == b".." {
                    return Err(PlanProblem::DotSegment {
                        decoded: String::from_utf8_lossy(&decoded).into_owned(),
                        segment: rendered,
                    });
                }
                if decoded.is_empty() {
                    return Err(PlanProblem::EmptySegment);
                }
            }
            url.push('/');
            url.push_str(&rendered);
        }
        if let Some(query) = &self.query {
            for (i, (key, value)) in query.iter().enumerate() {
                url.push(if i == 0 { '?' } else { '&' });
                url.push_str(key);
                if let Some(value) = value {
                    url.push('=');
                    url.push_str(&value.render_url_component(params)?);
                }
            }
        }
        // Belt and braces: encoded values cannot reach the authority, and this says so.
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| PlanProblem::Url(format!("does not parse: {e}")))?;
        let declared = reqwest::Url::parse(&self.origin)
            .map_err(|e| PlanProblem::Url(format!("does not parse: {e}")))?;
        if parsed.origin() != declared.origin() {
            return Err(PlanProblem::Url("does not go to the declared host".into()));
        }
        Ok(url)
    }
}

fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    fn example(name: &str) -> crate::Runbook {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/runbooks");
        crate::load_dir(&dir).unwrap().get(name).unwrap().clone()
    }

    /// A value starting with `-` as a whole argument could be read as an
    /// option (`--config=/etc/evil`): refused unless the parameter opts in.
    #[test]
    fn a_whole_argument_cannot_start_with_a_dash_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"name = "restart"
roles = ["oncall"]

[[param]]
name = "instance"
type = "string"

[[param]]
name = "delta"
type = "string"
allow_leading_dash = true

[[step]]
kind = "command"
argv = ["/bin/echo", "{{instance}}", "--delta={{instance}}", "{{delta}}"]
"#;
        std::fs::write(dir.path().join("restart.toml"), text).unwrap();
        let rb = crate::load_dir(dir.path())
            .unwrap()
            .get("restart")
            .unwrap()
            .clone();
        let given = |instance: &str, delta: &str| {
            BTreeMap::from([
                ("instance".to_owned(), instance.to_owned()),
                ("delta".to_owned(), delta.to_owned()),
            ])
        };
        let e = rb
            .plan(&rb.validate(&given("--help", "1")).unwrap())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("parameter `instance` is a whole argument"),
            "{e}"
        );
        // Inside a longer argument, or where the runbook allows it: fine.
        rb.plan(&rb.validate(&given("i-1", "-5")).unwrap()).unwrap();
    }

    /// The shape `--dry-run` shows and the audit log records.
    #[test]
    fn plans_serialize_for_dry_run_and_audit() {
        let rb = example("rollback-service");
        let given = BTreeMap::from([
            ("service".to_owned(), "orders".to_owned()),
            ("version".to_owned(), "v1.2.3".to_owned()),
        ]);
        let plan = rb.plan(&rb.validate(&given).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&plan).unwrap(),
            serde_json::json!({
                "runbook": "rollback-service",
                "digest": rb.digest,
                "params": {"service": "orders", "version": "v1.2.3"},
                "timeout": "5m",
                "steps": [{
                    "index": 0,
                    "name": "ask the pipeline",
                    "timeout": "30s",
                    "max_output": 65536,
                    "kind": "http",
                    "method": "POST",
                    "url": "http://127.0.0.1:8088/deploy",
                    "headers": [
                        {"name": "authorization", "value": "Bearer <secret from env DEPLOY_TOKEN>"},
                        {"name": "x-reason", "value": "rollback"}
                    ],
                    "body": {"service": "orders", "version": "v1.2.3", "action": "rollback"},
                    "expect_status": [200, 202]
                }]
            })
        );
        assert_eq!(plan.steps[0].summary(), "POST http://127.0.0.1:8088/deploy");

        let rb = example("kill-long-queries");
        let given = BTreeMap::from([("min_seconds".to_owned(), "300".to_owned())]);
        let plan = rb.plan(&rb.validate(&given).unwrap()).unwrap();
        let step = serde_json::to_value(&plan.steps[0]).unwrap();
        assert_eq!(step["kind"], "sql");
        assert_eq!(step["resource"], "orders");
        assert_eq!(step["access"], "write");
        assert_eq!(step["args"], serde_json::json!(["300"]));
        assert!(plan.steps[0]
            .summary()
            .starts_with("sql on orders (write): SELECT pid, usename,"));
    }
}
