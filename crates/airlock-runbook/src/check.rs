//! The checking pass over a parsed runbook file: every rule a runbook must follow, every problem
//! reported at once with its line, key path and what to do.
//!
//! The safety rules live here, so that nothing later has to re-check them: a template may only
//! refer to declared parameters; a URL's scheme, host and port are literal and parameters fill only
//! path segments and query values; SQL text holds no template and uses exactly its `$n` arguments;
//! argv[0] is a literal absolute path; secrets come only from the environment.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_config::{parse_duration, Access, ByteSize, Diagnostic, ResourceName, RoleName};
use serde_spanned::Spanned;
use sha2::Digest;

use crate::file::{
    diagnostic, line_of, RawParam, RawRunbook, RawStep, DEFAULT_MAX_OUTPUT, DEFAULT_MAX_ROWS,
    DEFAULT_TIMEOUT, MAX_OUTPUT_LIMIT, MAX_STEPS,
};
use crate::model::{
    CommandStep, HeaderTemplate, HttpStep, Param, ParamKind, Pattern, Runbook, SqlStep, Step,
    StepAction, UrlTemplate,
};
use crate::params::{check, ParamValue, Params};
use crate::template::{is_param_name, Template};

const MAX_MAX_ROWS: i64 = 100_000;
const DEFAULT_MAX_LEN: usize = 256;
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
/// Set by the HTTP client from the URL and body; a runbook setting them could send the request
/// somewhere else (Host) or desynchronise the framing.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

/// The checking pass: collects every problem, returns `None` for what could not be built.
pub(crate) struct Cx<'a> {
    pub(crate) file: &'a Path,
    pub(crate) text: &'a str,
    pub(crate) found: Vec<Diagnostic>,
    /// Lines of keys that name things in airlock.toml.
    pub(crate) lines: BTreeMap<String, usize>,
}

impl Cx<'_> {
    fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// A problem with `key`, at the line where `span` starts.
    fn err<T>(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> Option<T> {
        let line = self.line(span.start);
        self.found.push(diagnostic(
            self.file,
            line,
            key,
            format!("`{key}`: {message}"),
        ));
        None
    }

    /// Like [`Cx::err`], at the line of the first `needle` from the start of `span`: a template
    /// problem inside a multi-line string or a body table is reported where it is.
    fn err_near<T>(
        &mut self,
        span: Range<usize>,
        needle: &str,
        key: &str,
        message: impl std::fmt::Display,
    ) -> Option<T> {
        let at = self.text[span.start.min(self.text.len())..]
            .find(needle)
            .map_or(span.start, |i| span.start + i);
        self.err(at..at, key, message)
    }

    pub(crate) fn runbook(&mut self, raw: RawRunbook) -> Option<(Runbook, usize)> {
        let name_line = self.line(raw.name.span().start);
        let name = raw.name.get_ref();
        if !is_runbook_name(name) {
            self.err::<()>(
                raw.name.span(),
                "name",
                format!("{name:?} is not a valid runbook name: use a lowercase letter or digit first, then up to 62 of a-z, 0-9 or '-'"),
            );
        }
        if raw.roles.get_ref().is_empty() {
            self.err::<()>(
                raw.roles.span(),
                "roles",
                "no role may run this runbook: list at least one, e.g. roles = [\"oncall\"]",
            );
        }
        let roles = self.roles(raw.roles.get_ref(), "roles");
        let approvers = self.roles(&raw.approvers, "approvers");
        let approvals = match &raw.approvals {
            None => 0,
            Some(a) => match u32::try_from(*a.get_ref()) {
                Ok(n) if n <= 10 => n,
                _ => self
                    .err(a.span(), "approvals", "must be a whole number from 0 to 10")
                    .unwrap_or(0),
            },
        };
        if approvals > 0 && approvers.is_empty() {
            let span = raw.approvals.as_ref().map_or(0..0, |a| a.span());
            self.err::<()>(
                span,
                "approvals",
                "runs need approval but nobody can give it: add approvers = [\"role\"] (roles whose members may approve)",
            );
        }
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => self.duration(t, "timeout").unwrap_or(DEFAULT_TIMEOUT),
        };

        let params = self.params(&raw.param);
        let declared: BTreeSet<&str> = params.iter().map(|p| p.name.as_str()).collect();
        if raw.step.is_empty() {
            self.err::<()>(
                0..0,
                "step",
                "the runbook has no steps: add at least one [[step]]",
            );
        }
        if raw.step.len() > MAX_STEPS {
            self.err::<()>(
                raw.step[MAX_STEPS].span(),
                "step",
                format!("a runbook has at most {MAX_STEPS} steps: split it"),
            );
        }
        let steps: Vec<Step> = raw
            .step
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.step(i, s, &declared, timeout))
            .collect();
        let runbook = Runbook {
            name: name.clone(),
            description: raw.description.unwrap_or_default(),
            roles,
            approvals,
            approvers,
            timeout,
            params,
            steps,
            file: self.file.to_path_buf(),
            digest: hex::encode(sha2::Sha256::digest(self.text.as_bytes())),
            lines: std::mem::take(&mut self.lines),
        };
        Some((runbook, name_line))
    }

    fn roles(&mut self, list: &[Spanned<String>], key: &str) -> Vec<RoleName> {
        let mut roles = Vec::new();
        for (i, role) in list.iter().enumerate() {
            let line = self.line(role.span().start);
            self.lines.insert(format!("{key}[{i}]"), line);
            match RoleName::new(role.get_ref().clone()) {
                Ok(r) => roles.push(r),
                Err(e) => {
                    self.err::<()>(role.span(), &format!("{key}[{i}]"), e);
                }
            }
        }
        roles
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Ok(d) if d.is_zero() => self.err(value.span(), key, "must be more than 0s"),
            Ok(d) => Some(d),
            Err(e) => self.err(value.span(), key, e),
        }
    }

    fn params(&mut self, raw: &[Spanned<RawParam>]) -> Vec<Param> {
        let mut params: Vec<Param> = Vec::new();
        for (i, p) in raw.iter().enumerate() {
            let key = format!("param[{i}]");
            let name = p.get_ref().name.get_ref();
            if !is_param_name(name) {
                self.err::<()>(
                    p.get_ref().name.span(),
                    &format!("{key}.name"),
                    format!("{name:?} is not a valid parameter name: use a-z, 0-9 and '_', starting with a letter or '_'"),
                );
            } else if params.iter().any(|q| &q.name == name) {
                self.err::<()>(
                    p.get_ref().name.span(),
                    &format!("{key}.name"),
                    format!("parameter `{name}` is declared twice"),
                );
            } else if let Some(param) = self.param(&key, p.get_ref()) {
                params.push(param);
            }
        }
        params
    }

    fn param(&mut self, key: &str, p: &RawParam) -> Option<Param> {
        let kind_name = p.kind.get_ref().as_str();
        // Which constraint keys each type takes; any other is a mistake worth saying.
        let allowed: &[&str] = match kind_name {
            "string" => &["pattern", "max_len"],
            "int" => &["min", "max"],
            "bool" => &[],
            "enum" => &["values"],
            other => {
                return self.err(
                    p.kind.span(),
                    &format!("{key}.type"),
                    format!("unknown parameter type {other:?}: use \"string\", \"int\", \"bool\" or \"enum\""),
                )
            }
        };
        let given = [
            ("pattern", p.pattern.as_ref().map(|v| v.span())),
            ("max_len", p.max_len.as_ref().map(|v| v.span())),
            ("min", p.min.as_ref().map(|v| v.span())),
            ("max", p.max.as_ref().map(|v| v.span())),
            ("values", p.values.as_ref().map(|v| v.span())),
        ];
        let mut ok = true;
        for (constraint, span) in given {
            if let Some(span) = span {
                if !allowed.contains(&constraint) {
                    ok = false;
                    self.err::<()>(
                        span,
                        &format!("{key}.{constraint}"),
                        format!("`{constraint}` does not apply to a {kind_name} parameter"),
                    );
                }
            }
        }
        let kind = match kind_name {
            "string" => {
                let pattern = match &p.pattern {
                    None => None,
                    Some(pat) => match Pattern::new(pat.get_ref()) {
                        Ok(pattern) => Some(pattern),
                        Err(e) => {
                            let e = e
                                .to_string()
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ");
                            return self.err(
                                pat.span(),
                                &format!("{key}.pattern"),
                                format!("not a valid regular expression: {e}"),
                            );
                        }
                    },
                };
                let max_len = match &p.max_len {
                    None => DEFAULT_MAX_LEN,
                    Some(m) => match usize::try_from(*m.get_ref()) {
                        Ok(n) if (1..=65_536).contains(&n) => n,
                        _ => {
                            return self.err(
                                m.span(),
                                &format!("{key}.max_len"),
                                "must be from 1 to 65536 (characters)",
                            )
                        }
                    },
                };
                ParamKind::String { pattern, max_len }
            }
            "int" => {
                let (min, max) = (
                    p.min.as_ref().map(|m| *m.get_ref()),
                    p.max.as_ref().map(|m| *m.get_ref()),
                );
                if let (Some(lo), Some(hi), Some(span)) =
                    (min, max, p.min.as_ref().map(|m| m.span()))
                {
                    if lo > hi {
                        return self.err(
                            span,
                            &format!("{key}.min"),
                            format!("min ({lo}) is greater than max ({hi})"),
                        );
                    }
                }
                ParamKind::Int { min, max }
            }
            "bool" => ParamKind::Bool,
            _ => {
                let Some(values) = &p.values else {
                    return self.err(
                        p.kind.span(),
                        &format!("{key}.values"),
                        "an enum parameter needs values = [\"a\", \"b\"]",
                    );
                };
                if values.get_ref().is_empty() {
                    return self.err(
                        values.span(),
                        &format!("{key}.values"),
                        "list at least one value",
                    );
                }
                let mut list: Vec<String> = Vec::new();
                for (i, v) in values.get_ref().iter().enumerate() {
                    let text = v.get_ref();
                    if text.contains('\0') {
                        self.err::<()>(
                            v.span(),
                            &format!("{key}.values[{i}]"),
                            "a value cannot contain NUL",
                        );
                    } else if list.contains(text) {
                        self.err::<()>(
                            v.span(),
                            &format!("{key}.values[{i}]"),
                            format!("{text:?} is listed twice"),
                        );
                    } else {
                        list.push(text.clone());
                    }
                }
                ParamKind::Enum { values: list }
            }
        };
        if !ok {
            return None;
        }
        let mut param = Param {
            name: p.name.get_ref().clone(),
            description: p.description.clone().unwrap_or_default(),
            kind,
            default: None,
            required: true,
            allow_leading_dash: p.allow_leading_dash,
        };
        if let Some(default) = &p.default {
            let dkey = format!("{key}.default");
            let text = match (&param.kind, default.get_ref()) {
                (ParamKind::String { .. } | ParamKind::Enum { .. }, toml::Value::String(s)) => {
                    s.clone()
                }
                (ParamKind::Int { .. }, toml::Value::Integer(n)) => n.to_string(),
                (ParamKind::Bool, toml::Value::Boolean(b)) => b.to_string(),
                _ => {
                    return self.err(
                        default.span(),
                        &dkey,
                        format!(
                            "the default of a {kind_name} parameter must be a {}",
                            match kind_name {
                                "int" => "whole number",
                                "bool" => "boolean (true or false)",
                                _ => "string",
                            }
                        ),
                    )
                }
            };
            match check(&param, &text) {
                Ok(value) => param.default = Some(value),
                Err(e) => {
                    return self.err(
                        default.span(),
                        &dkey,
                        format!("the default is not a valid value: {e}"),
                    )
                }
            }
        }
        param.required = param.default.is_none();
        if let Some(required) = &p.required {
            let rkey = format!("{key}.required");
            match (*required.get_ref(), param.default.is_some()) {
                (true, true) => return self.err(required.span(), &rkey, "a parameter with a default is optional: remove `required` or the default"),
                (false, false) => return self.err(required.span(), &rkey, "an optional parameter needs a default (e.g. default = \"\"), so every template has a value"),
                _ => {}
            }
        }
        Some(param)
    }

    /// Parses a template and checks that every reference is a declared parameter.
    fn template(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        declared: &BTreeSet<&str>,
    ) -> Option<Template> {
        self.template_text(value.get_ref(), value.span(), key, declared)
    }

    fn template_text(
        &mut self,
        text: &str,
        span: Range<usize>,
        key: &str,
        declared: &BTreeSet<&str>,
    ) -> Option<Template> {
        let template = match Template::parse(text) {
            Ok(t) => t,
            Err(e) => return self.err_near(span, "{{", key, e),
        };
        let mut ok = true;
        for name in template.params() {
            if !declared.contains(name) {
                ok = false;
                let known = if declared.is_empty() {
                    "none are declared".to_owned()
                } else {
                    format!(
                        "declared: {}",
                        declared.iter().copied().collect::<Vec<_>>().join(", ")
                    )
                };
                self.err_near::<()>(span.clone(), name, key, format!("`{{{{{name}}}}}` is not a declared parameter: add a [[param]] named {name:?} or fix the name ({known})"));
            }
        }
        ok.then_some(template)
    }

    fn step(
        &mut self,
        i: usize,
        raw: &Spanned<RawStep>,
        declared: &BTreeSet<&str>,
        run_timeout: Duration,
    ) -> Option<Step> {
        let s = raw.get_ref();
        let key = format!("step[{i}]");
        let line = self.line(raw.span().start);
        self.lines.insert(key.clone(), line);
        let kind = s.kind.get_ref().as_str();
        let own: &[&str] = match kind {
            "sql" => &["resource", "access", "sql", "args", "max_rows"],
            "http" => &["method", "url", "headers", "body", "expect_status"],
            "command" => &["argv", "env", "set_env", "cwd"],
            other => {
                return self.err(
                    s.kind.span(),
                    &format!("{key}.kind"),
                    format!("unknown step kind {other:?}: use \"sql\", \"http\" or \"command\""),
                )
            }
        };
        let present = [
            ("resource", s.resource.as_ref().map(|v| v.span())),
            ("access", s.access.as_ref().map(|v| v.span())),
            ("sql", s.sql.as_ref().map(|v| v.span())),
            ("args", s.args.as_ref().map(|v| v.span())),
            ("max_rows", s.max_rows.as_ref().map(|v| v.span())),
            ("method", s.method.as_ref().map(|v| v.span())),
            ("url", s.url.as_ref().map(|v| v.span())),
            ("headers", s.headers.as_ref().map(|v| v.span())),
            ("body", s.body.as_ref().map(|v| v.span())),
            ("expect_status", s.expect_status.as_ref().map(|v| v.span())),
            ("argv", s.argv.as_ref().map(|v| v.span())),
            ("env", s.env.as_ref().map(|v| v.span())),
            ("set_env", s.set_env.as_ref().map(|v| v.span())),
            ("cwd", s.cwd.as_ref().map(|v| v.span())),
        ];
        let mut ok = true;
        for (k, span) in present {
            if let Some(span) = span {
                if !own.contains(&k) {
                    ok = false;
                    self.err::<()>(
                        span,
                        &format!("{key}.{k}"),
                        format!(
                            "`{k}` is not a key of a {kind} step (it takes {})",
                            own.join(", ")
                        ),
                    );
                }
            }
        }
        let timeout = match &s.timeout {
            None => None,
            Some(t) => match self.duration(t, &format!("{key}.timeout")) {
                Some(d) if d > run_timeout => {
                    return self.err(t.span(), &format!("{key}.timeout"), format!("the step's timeout is longer than the run's ({}): raise the runbook's timeout or lower this one", airlock_config::format_duration(run_timeout)));
                }
                d => Some(d?),
            },
        };
        let max_output = match &s.max_output {
            None => DEFAULT_MAX_OUTPUT,
            Some(v) => {
                let size = match v.get_ref() {
                    toml::Value::String(text) => ByteSize::parse(text),
                    toml::Value::Integer(n) => u64::try_from(*n)
                        .map(ByteSize)
                        .map_err(|_| "a size cannot be negative".to_owned()),
                    _ => Err("write a size such as \"64KiB\"".to_owned()),
                };
                match size {
                    Ok(size) if size.bytes() >= 1 && size <= MAX_OUTPUT_LIMIT => size,
                    Ok(_) => {
                        return self.err(
                            v.span(),
                            &format!("{key}.max_output"),
                            format!("must be from 1B to {MAX_OUTPUT_LIMIT}"),
                        )
                    }
                    Err(e) => return self.err(v.span(), &format!("{key}.max_output"), e),
                }
            }
        };
        let action = match kind {
            "sql" => self.sql(&key, raw, declared).map(StepAction::Sql),
            "http" => self.http(&key, raw, declared).map(StepAction::Http),
            _ => self.command(&key, raw, declared).map(StepAction::Command),
        }?;
        let name = match &s.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return self.err(
                    n.span(),
                    &format!("{key}.name"),
                    "an empty name: remove it or say what the step does",
                )
            }
            Some(n) => n.get_ref().clone(),
            None => format!("{kind} {i}"),
        };
        ok.then_some(Step {
            index: i,
            name,
            timeout,
            max_output,
            action,
        })
    }

    /// A key the step's kind requires.
    fn needs<'r, T>(
        &mut self,
        value: &'r Option<Spanned<T>>,
        step: &Spanned<RawStep>,
        key: &str,
        field: &str,
        example: &str,
    ) -> Option<&'r Spanned<T>> {
        match value {
            Some(v) => Some(v),
            None => {
                let kind = step.get_ref().kind.get_ref();
                self.err(
                    step.span(),
                    &format!("{key}.{field}"),
                    format!("a {kind} step needs `{field}`, e.g. {example}"),
                )
            }
        }
    }

    fn sql(
        &mut self,
        key: &str,
        step: &Spanned<RawStep>,
        declared: &BTreeSet<&str>,
    ) -> Option<SqlStep> {
        let s = step.get_ref();
        let resource = self.needs(&s.resource, step, key, "resource", "resource = \"orders\"");
        let access = self.needs(&s.access, step, key, "access", "access = \"read\"");
        let sql = self.needs(&s.sql, step, key, "sql", "sql = \"SELECT ...\"");
        let (resource, access, sql) = (resource?, access?, sql?);
        for (field, span) in [("resource", resource.span()), ("access", access.span())] {
            let line = self.line(span.start);
            self.lines.insert(format!("{key}.{field}"), line);
        }
        let resource = match ResourceName::new(resource.get_ref().clone()) {
            Ok(r) => Some(r),
            Err(e) => self.err(resource.span(), &format!("{key}.resource"), e),
        };
        let access = match access.get_ref().parse::<Access>() {
            Ok(a) => Some(a),
            Err(_) => self.err(
                access.span(),
                &format!("{key}.access"),
                format!(
                    "{:?} is not an access level: use \"read\" or \"write\"",
                    access.get_ref()
                ),
            ),
        };
        let skey = format!("{key}.sql");
        let text = sql.get_ref();
        if text.contains("{{") {
            return self.err_near(sql.span(), "{{", &skey, "SQL text cannot hold templates: parameters are bound as query parameters: write $1, $2, ... in the SQL and list the values in args = [\"{{name}}\", ...]");
        }
        if text.trim().is_empty() {
            return self.err(sql.span(), &skey, "the statement is empty");
        }
        let args_raw = s
            .args
            .as_ref()
            .map(|a| a.get_ref().as_slice())
            .unwrap_or(&[]);
        let mut args = Vec::new();
        for (i, a) in args_raw.iter().enumerate() {
            args.push(self.template(a, &format!("{key}.args[{i}]"), declared));
        }
        let used = placeholders(text);
        let mut ok = true;
        if let Some(&n) = used.iter().next_back().filter(|&&n| n > args_raw.len()) {
            ok = false;
            self.err::<()>(sql.span(), &skey, format!("the SQL uses ${n} but args has {} value(s): list one value per placeholder, args[0] is $1", args_raw.len()));
        }
        for (i, a) in args_raw.iter().enumerate() {
            if !used.contains(&(i + 1)) {
                ok = false;
                self.err::<()>(a.span(), &format!("{key}.args[{i}]"), format!("${} is not used by the SQL: PostgreSQL refuses a parameter it cannot place; remove it or use ${} in the statement", i + 1, i + 1));
            }
        }
        let max_rows = match &s.max_rows {
            None => DEFAULT_MAX_ROWS,
            Some(m) if (1..=MAX_MAX_ROWS).contains(m.get_ref()) => *m.get_ref() as usize,
            Some(m) => {
                return self.err(
                    m.span(),
                    &format!("{key}.max_rows"),
                    format!("must be from 1 to {MAX_MAX_ROWS}"),
                )
            }
        };
        let args: Option<Vec<Template>> = args.into_iter().collect();
        if !ok {
            return None;
        }
        Some(SqlStep {
            resource: resource?,
            access: access?,
            sql: text.clone(),
            args: args?,
            max_rows,
        })
    }

    fn http(
        &mut self,
        key: &str,
        step: &Spanned<RawStep>,
        declared: &BTreeSet<&str>,
    ) -> Option<HttpStep> {
        let s = step.get_ref();
        let method = self.needs(&s.method, step, key, "method", "method = \"POST\"");
        let url = self.needs(
            &s.url,
            step,
            key,
            "url",
            "url = \"https://deploy.internal/rollback\"",
        );
        let (method, url) = (method?, url?);
        let upper = method.get_ref().to_ascii_uppercase();
        let method = if METHODS.contains(&upper.as_str()) {
            Some(upper)
        } else {
            self.err(
                method.span(),
                &format!("{key}.method"),
                format!(
                    "{:?} is not a supported method: use one of {}",
                    method.get_ref(),
                    METHODS.join(", ")
                ),
            )
        };
        let url = self.url(url, &format!("{key}.url"), declared);
        let mut headers = Vec::new();
        let mut ok = true;
        if let Some(h) = &s.headers {
            for (name, value) in h.get_ref() {
                match self.header(key, name, value, declared) {
                    Some(header) if headers.iter().any(|(n, _)| n == &header.0) => {
                        ok = false;
                        self.err::<()>(
                            value.span(),
                            &format!("{key}.headers.{name}"),
                            "the header is given twice (names are case-insensitive)",
                        );
                    }
                    Some(header) => headers.push(header),
                    None => ok = false,
                }
            }
        }
        let body = match &s.body {
            None => None,
            Some(b) if matches!(method.as_deref(), Some("GET" | "HEAD")) => {
                return self.err(
                    b.span(),
                    &format!("{key}.body"),
                    "a GET or HEAD request has no body: remove it or use POST",
                );
            }
            Some(b) => Some(self.body(b.get_ref(), b.span(), &format!("{key}.body"), declared)?),
        };
        let mut expect_status = Vec::new();
        if let Some(list) = &s.expect_status {
            if list.get_ref().is_empty() {
                ok = false;
                self.err::<()>(
                    list.span(),
                    &format!("{key}.expect_status"),
                    "an empty list: remove it to accept any 2xx",
                );
            }
            for (i, st) in list.get_ref().iter().enumerate() {
                match u16::try_from(*st.get_ref()) {
                    Ok(n) if (100..=599).contains(&n) => expect_status.push(n),
                    _ => {
                        ok = false;
                        self.err::<()>(
                            st.span(),
                            &format!("{key}.expect_status[{i}]"),
                            "an HTTP status is from 100 to 599",
                        );
                    }
                }
            }
        }
        if !ok {
            return None;
        }
        Some(HttpStep {
            method: method?,
            url: url?,
            headers,
            body,
            expect_status,
        })
    }

    fn url(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        declared: &BTreeSet<&str>,
    ) -> Option<UrlTemplate> {
        let text = value.get_ref();
        let span = value.span();
        self.template(value, key, declared)?;
        let Some(scheme_end) = text.find("://") else {
            return self.err(
                span,
                key,
                "write an absolute URL starting with http:// or https://",
            );
        };
        let after = &text[scheme_end + 3..];
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let origin = &text[..scheme_end + 3 + authority_end];
        if origin.contains("{{") {
            return self.err_near(span, "{{", key, "the scheme, host and port must be written out: a parameter can never choose where a request goes (parameters may fill path segments and query values)");
        }
        let rest = &after[authority_end..];
        if rest.contains('#') {
            return self.err(
                span,
                key,
                "remove the #fragment: it is never sent to the server",
            );
        }
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        // Splitting before parsing cannot cut a reference in two: a name holds no '/', '?' or '&'.
        let path = if path.is_empty() {
            Vec::new()
        } else {
            path[1..]
                .split('/')
                .map(|seg| Template::parse(seg).ok())
                .collect::<Option<Vec<_>>>()?
        };
        let query = match query {
            None => None,
            Some(query) => {
                let mut pairs = Vec::new();
                for pair in query.split('&') {
                    let (k, v) = match pair.split_once('=') {
                        Some((k, v)) => (k, Some(Template::parse(v).ok()?)),
                        None => (pair, None),
                    };
                    if k.contains("{{") {
                        return self.err_near(span, "{{", key, "a query key cannot hold a parameter: write the key and put the parameter in its value (?name={{name}})");
                    }
                    pairs.push((k.to_owned(), v));
                }
                Some(pairs)
            }
        };
        let url = UrlTemplate {
            source: text.clone(),
            origin: origin.to_owned(),
            path,
            query,
        };
        // Render with harmless sample values to check what the URL parser makes of the rest.
        let sample: Params = declared
            .iter()
            .map(|n| (n.to_string(), ParamValue::String("x".into())))
            .collect();
        let parsed = match url.render(&sample).map(|s| reqwest::Url::parse(&s)) {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(e)) => return self.err(span, key, format!("not a valid URL: {e}")),
            Err(e) => return self.err(span, key, e),
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return self.err(
                span,
                key,
                format!("the scheme is {:?}: use http or https", parsed.scheme()),
            );
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return self.err(span, key, "the URL has no host");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return self.err(span, key, "the URL holds credentials: send them in a header read from the environment, e.g. headers = { Authorization = { env = \"DEPLOY_TOKEN\", prefix = \"Bearer \" } }");
        }
        Some(url)
    }

    fn header(
        &mut self,
        key: &str,
        name: &str,
        value: &Spanned<toml::Value>,
        declared: &BTreeSet<&str>,
    ) -> Option<(String, HeaderTemplate)> {
        let hkey = format!("{key}.headers.{name}");
        let span = value.span();
        let Ok(header) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) else {
            return self.err(span, &hkey, format!("{name:?} is not a valid header name"));
        };
        let lower = header.as_str().to_owned();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return self.err(
                span,
                &hkey,
                format!("`{name}` is set by the HTTP client from the URL and body; remove it"),
            );
        }
        let template = match value.get_ref() {
            toml::Value::String(text) => {
                let template = self.template_text(text, span.clone(), &hkey, declared)?;
                if !template.has_params() && (text.contains(['\r', '\n', '\0']) || reqwest::header::HeaderValue::from_str(text).is_err()) {
                    return self.err(span, &hkey, "not a valid header value: use printable ASCII without line breaks");
                }
                HeaderTemplate::Text(template)
            }
            toml::Value::Table(table) => {
                let hint = "write { env = \"VAR\" } or { env = \"VAR\", prefix = \"Bearer \" }";
                if let Some(other) = table.keys().find(|k| !matches!(k.as_str(), "env" | "prefix")) {
                    return self.err(span, &hkey, format!("unknown key `{other}` in a secret header: {hint}"));
                }
                let env = match table.get("env") {
                    Some(toml::Value::String(env)) if is_env_name(env) => env.clone(),
                    Some(toml::Value::String(env)) => return self.err(span, &hkey, format!("{env:?} is not an environment variable name")),
                    _ => return self.err(span, &hkey, format!("a secret header names its variable: {hint}")),
                };
                let prefix = match table.get("prefix") {
                    None => String::new(),
                    Some(toml::Value::String(p)) if !p.contains("{{") && !p.contains(['\r', '\n', '\0']) => p.clone(),
                    Some(_) => return self.err(span, &hkey, "`prefix` is literal text on one line, without templates"),
                };
                HeaderTemplate::Env { env, prefix }
            }
            _ => return self.err(span, &hkey, "a header value is a string or a secret from the environment: { env = \"VAR\", prefix = \"Bearer \" }"),
        };
        Some((lower, template))
    }

    /// The TOML `body` as JSON, with every template string checked.
    fn body(
        &mut self,
        value: &toml::Value,
        span: Range<usize>,
        key: &str,
        declared: &BTreeSet<&str>,
    ) -> Option<serde_json::Value> {
        Some(match value {
            toml::Value::String(text) => {
                self.template_text(text, span, key, declared)?;
                text.clone().into()
            }
            toml::Value::Integer(n) => (*n).into(),
            toml::Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => n.into(),
                None => return self.err(span, key, "JSON has no NaN or infinity"),
            },
            toml::Value::Boolean(b) => (*b).into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.body(item, span.clone(), &format!("{key}[{i}]"), declared));
                }
                serde_json::Value::Array(out.into_iter().collect::<Option<_>>()?)
            }
            toml::Value::Table(table) => {
                let mut out = serde_json::Map::new();
                let mut ok = true;
                for (k, v) in table {
                    if k.contains("{{") {
                        ok = false;
                        self.err_near::<()>(span.clone(), k, key, "a body key cannot hold a template: keys are literal, values may be \"{{name}}\"");
                    }
                    match self.body(v, span.clone(), &format!("{key}.{k}"), declared) {
                        Some(v) => {
                            out.insert(k.clone(), v);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                serde_json::Value::Object(out)
            }
        })
    }

    fn command(
        &mut self,
        key: &str,
        step: &Spanned<RawStep>,
        declared: &BTreeSet<&str>,
    ) -> Option<CommandStep> {
        let s = step.get_ref();
        let argv = self.needs(
            &s.argv,
            step,
            key,
            "argv",
            "argv = [\"/usr/local/bin/restart-instance\", \"{{instance}}\"]",
        )?;
        let Some(first) = argv.get_ref().first() else {
            return self.err(
                argv.span(),
                &format!("{key}.argv"),
                "argv is empty: give the program's absolute path first",
            );
        };
        let program = first.get_ref();
        if program.contains("{{") || !program.starts_with('/') {
            return self.err(first.span(), &format!("{key}.argv[0]"), format!("{program:?}: the program must be an absolute path written out (no templates, no PATH lookup), e.g. \"/usr/local/bin/restart-instance\""));
        }
        let mut ok = true;
        let mut elements = Vec::new();
        for (i, element) in argv.get_ref().iter().enumerate() {
            if element.get_ref().contains('\0') {
                ok = false;
                self.err::<()>(
                    element.span(),
                    &format!("{key}.argv[{i}]"),
                    "an argument cannot contain NUL",
                );
            }
            elements.push(self.template(element, &format!("{key}.argv[{i}]"), declared));
        }
        let mut env = Vec::new();
        for (i, name) in s.env.iter().flat_map(|e| e.get_ref()).enumerate() {
            let line = self.line(name.span().start);
            self.lines.insert(format!("{key}.env[{i}]"), line);
            if is_env_name(name.get_ref()) {
                env.push(name.get_ref().clone());
            } else {
                ok = false;
                self.err::<()>(
                    name.span(),
                    &format!("{key}.env[{i}]"),
                    format!("{:?} is not an environment variable name", name.get_ref()),
                );
            }
        }
        let mut set_env = BTreeMap::new();
        for (name, value) in s.set_env.iter().flat_map(|e| e.get_ref()) {
            let vkey = format!("{key}.set_env.{name}");
            if !is_env_name(name) {
                ok = false;
                self.err::<()>(
                    value.span(),
                    &vkey,
                    format!("{name:?} is not an environment variable name"),
                );
            } else if let Some(t) = self.template(value, &vkey, declared) {
                set_env.insert(name.clone(), t);
            } else {
                ok = false;
            }
        }
        let cwd =
            match &s.cwd {
                None => None,
                Some(c) if c.get_ref().starts_with('/') && !c.get_ref().contains("{{") => {
                    Some(PathBuf::from(c.get_ref()))
                }
                Some(c) => return self.err(
                    c.span(),
                    &format!("{key}.cwd"),
                    "the working directory must be an absolute path written out, without templates",
                ),
            };
        let argv: Option<Vec<Template>> = elements.into_iter().collect();
        if !ok {
            return None;
        }
        Some(CommandStep {
            argv: argv?,
            env,
            set_env,
            cwd,
        })
    }
}

/// `[a-z0-9][a-z0-9-]{0,62}`.
fn is_runbook_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The `$n` placeholders used by `sql`, skipping string literals, quoted identifiers, dollar-quoted
/// strings and comments, where `$1` is just text.
pub(crate) fn placeholders(sql: &str) -> BTreeSet<usize> {
    let b = sql.as_bytes();
    let mut used = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, end: &[u8]| {
        b[from..]
            .windows(end.len())
            .position(|w| w == end)
            .map_or(b.len(), |p| from + p + end.len())
    };
    while i < b.len() {
        match b[i] {
            // '' inside a literal is an escaped quote: skipping to the next quote and going on
            // reads it as two adjacent literals, which is just as good for finding placeholders.
            b'\'' => i = skip_to(i + 1, b"'"),
            b'"' => i = skip_to(i + 1, b"\""),
            b'-' if b.get(i + 1) == Some(&b'-') => i = skip_to(i, b"\n"),
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_to(i + 2, b"*/"),
            b'$' => {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                let prev_ident = i > 0
                    && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] >= 0x80);
                if digits > 0 && !prev_ident {
                    if let Ok(n) = sql[i + 1..i + 1 + digits].parse() {
                        used.insert(n);
                    }
                    i += 1 + digits;
                } else if !prev_ident {
                    // $tag$ ... $tag$ (tag may be empty).
                    let tag_len = b[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c >= 0x80)
                        .count();
                    if b.get(i + 1 + tag_len) == Some(&b'$') {
                        let tag = &b[i..i + 2 + tag_len];
                        i = skip_to(i + tag.len(), tag);
                    } else {
                        i += 1;
                    }
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_skip_literals_and_comments() {
        let cases: &[(&str, &[usize])] = &[
            ("SELECT $1, $2", &[1, 2]),
            ("SELECT $10", &[10]),
            ("SELECT '$1', \"$2\", $3", &[3]),
            ("SELECT 'it''s $1', $2", &[2]),
            ("SELECT $$ $1 $$, $tag$ $2 $tag$, $3", &[3]),
            ("SELECT 1 -- $1\n, $2 /* $3 */", &[2]),
            ("SELECT a$1 FROM t", &[]),
        ];
        for &(sql, expected) in cases {
            assert_eq!(
                placeholders(sql).into_iter().collect::<Vec<_>>(),
                expected,
                "{sql}"
            );
        }
    }
}
