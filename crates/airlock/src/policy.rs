//! `airlock policy check | explain | test`: offline tooling for policy authors and their CI.
//!
//! Everything here works from files alone: it reads `airlock.toml` with the same loader the
//! gateway uses, asks `airlock-access` the same questions the gateway asks, and never talks to a
//! gateway or reads secrets (a policy repository's CI has no database passwords). So `explain`
//! and `test` see standing rules and what the rules make requestable or break-glass, but not the
//! grants that requests and break-glass have created on a running gateway.
//!
//! Exit codes: `check` exits 1 when the policy is invalid; `test` exits 1 when an expectation
//! fails and 2 when the test file or the policy does not load; `explain` exits 0 whatever the
//! decision, since it explains rather than tests.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use airlock_access::{Clock, Explanation, Outcome, SystemClock};
use airlock_config::{Access, Config, ConfigError};

/// `airlock policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and flag rules that are legal but look like mistakes.
    Check {
        /// The policy file.
        #[arg(env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Explain the decision for USER on RESOURCE at ACCESS, from the policy file alone.
    Explain {
        user: String,
        resource: String,
        /// `read` or `write`.
        access: Access,
        /// The policy file.
        #[arg(long, env = "AIRLOCK_CONFIG", default_value = "airlock.toml")]
        config: PathBuf,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a file of expected decisions (`[[expect]]`) against the policy it names.
    Test {
        /// The test file; its `policy` key names the policy, relative to the test file.
        file: PathBuf,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `airlock policy` command.
pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { file, json } => check(&file, json),
        PolicyCommand::Explain {
            user,
            resource,
            access,
            config,
            json,
        } => explain(&config, &user, &resource, access, json),
        PolicyCommand::Test { file, json } => test(&file, json),
    }
}

/// One problem or warning, as `check --json` and `test --json` report it.
#[derive(Debug, Clone, Serialize)]
struct Problem {
    /// The file, when it is not the one the report is about (a policy named by a test file).
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// 1-based; `None` when the problem is about the file as a whole (it cannot be read).
    line: Option<usize>,
    /// The key, as a path such as `role[0].requestable[1].approvers`; empty for the whole file.
    key: String,
    message: String,
}

impl Problem {
    /// `file:line: message`, or `file: message` without a line.
    fn render(&self, file: &Path) -> String {
        let file = self
            .file
            .clone()
            .unwrap_or_else(|| file.display().to_string());
        match self.line {
            Some(line) => format!("{file}:{line}: {}", self.message),
            None => format!("{file}: {}", self.message),
        }
    }

    /// Like [`Problem::render`], marked as a warning.
    fn render_warning(&self, file: &Path) -> String {
        Problem {
            message: format!("warning: {}", self.message),
            ..self.clone()
        }
        .render(file)
    }
}

/// The problems of a policy that does not load.
fn config_problems(err: &ConfigError) -> Vec<Problem> {
    if let ConfigError::Io { source, .. } = err {
        // Rendered after the file's name, so the message does not repeat it.
        return vec![Problem {
            file: None,
            line: None,
            key: String::new(),
            message: format!("cannot read the file: {source}"),
        }];
    }
    err.diagnostics()
        .iter()
        .map(|d| Problem {
            file: None,
            line: Some(d.line),
            key: d.key.clone(),
            message: d.message.clone(),
        })
        .collect()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// check

#[derive(Serialize)]
struct CheckReport<'a> {
    ok: bool,
    file: String,
    problems: &'a [Problem],
    warnings: &'a [Problem],
    #[serde(skip_serializing_if = "Option::is_none")]
    counts: Option<Counts>,
}

#[derive(Serialize)]
struct Counts {
    resources: usize,
    roles: usize,
    users: usize,
    webhooks: usize,
}

fn check(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (problems, warnings, counts) = match Config::load(file) {
        Ok(config) => {
            let counts = Counts {
                resources: config.resources.len(),
                roles: config.roles.len(),
                users: config.users.len(),
                webhooks: config.webhooks.len(),
            };
            (Vec::new(), warnings(&config), Some(counts))
        }
        Err(err) => (config_problems(&err), Vec::new(), None),
    };
    let ok = problems.is_empty();
    if json {
        print_json(&CheckReport {
            ok,
            file: file.display().to_string(),
            problems: &problems,
            warnings: &warnings,
            counts,
        })?;
    } else if let Some(c) = counts {
        for w in &warnings {
            eprintln!("{}", w.render_warning(file));
        }
        let mut line = format!(
            "{}: OK ({}, {}, {}, {})",
            file.display(),
            plural(c.resources, "resource", "resources"),
            plural(c.roles, "role", "roles"),
            plural(c.users, "user", "users"),
            plural(c.webhooks, "webhook", "webhooks"),
        );
        if !warnings.is_empty() {
            line.push_str(&format!(
                ", {}",
                plural(warnings.len(), "warning", "warnings")
            ));
        }
        println!("{line}");
    } else {
        for p in &problems {
            eprintln!("{}", p.render(file));
        }
        if problems.iter().all(|p| p.line.is_none()) {
            eprintln!("give the policy file as FILE or in AIRLOCK_CONFIG");
        } else {
            eprintln!(
                "{} is not a valid policy ({}); fix {} and run the check again",
                file.display(),
                plural(problems.len(), "problem", "problems"),
                if problems.len() == 1 { "it" } else { "them" },
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Where the entries of a valid policy start in its source, for warnings' line numbers. The
/// model keeps no spans; entries are in file order, so index `i` here is entry `i` there.
#[derive(Deserialize, Default)]
struct Layout {
    #[serde(default)]
    resource: Vec<Spanned<IgnoredAny>>,
    #[serde(default)]
    role: Vec<Spanned<RoleLayout>>,
    #[serde(default)]
    user: Vec<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
struct RoleLayout {
    #[serde(default)]
    requestable: Vec<Spanned<IgnoredAny>>,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// What is legal but almost certainly a mistake in a valid policy. Deliberately short: each
/// warning is something nobody would leave in on purpose. (A role without rules is not one: it
/// may exist only to name approvers.)
fn warnings(config: &Config) -> Vec<Problem> {
    let source = config.source();
    // The source has already parsed as a full policy, so this parse cannot fail; if it somehow
    // did, warnings would only lose their line numbers.
    let layout: Layout = toml::from_str(source).unwrap_or_default();
    let line = |span: Option<Range<usize>>| span.map(|s| line_of(source, s.start));
    let mut out = Vec::new();
    let mut warn = |span: Option<Range<usize>>, key: String, message: String| {
        out.push(Problem {
            file: None,
            line: line(span),
            key,
            message,
        })
    };

    for (i, user) in config.users.iter().enumerate() {
        if user.roles.is_empty() {
            warn(
                layout.user.get(i).map(Spanned::span),
                format!("user[{i}].roles"),
                format!(
                    "user \"{}\" holds no roles, so it can reach nothing; give it a role in `roles` or remove it",
                    user.name
                ),
            );
        }
    }
    for (i, role) in config.roles.iter().enumerate() {
        let held = config.users.iter().any(|u| u.roles.contains(&role.name));
        if !held {
            warn(
                layout.role.get(i).map(Spanned::span),
                format!("role[{i}]"),
                format!(
                    "role \"{}\" is held by no user, so it does nothing; add it to a user's `roles` or remove it",
                    role.name
                ),
            );
        }
        for (j, rule) in role.requestable.iter().enumerate() {
            // Validation already refuses a rule that a holder of the role could never get
            // approved; what is left is a rule of an unheld role whose approvers are missing too,
            // which becomes an error the moment someone is given the role.
            let approvers = config
                .users
                .iter()
                .filter(|u| u.roles.iter().any(|r| rule.approvers.contains(r)))
                .count();
            if approvers < rule.approvals as usize {
                let roles = rule
                    .approvers
                    .iter()
                    .map(|r| format!("\"{r}\""))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let holders = match approvers {
                    0 => "no user holds them".to_owned(),
                    n => format!("only {} hold them", plural(n, "user", "users")),
                };
                warn(
                    layout
                        .role
                        .get(i)
                        .and_then(|r| r.get_ref().requestable.get(j))
                        .map(Spanned::span),
                    format!("role[{i}].requestable[{j}].approvers"),
                    format!(
                        "`requestable[{j}]` of role \"{}\" needs {} approval(s) from users holding {roles}, but {holders}: requests under it could never be approved",
                        role.name, rule.approvals
                    ),
                );
            }
        }
    }
    for (i, resource) in config.resources.iter().enumerate() {
        let named = config.roles.iter().any(|role| {
            role.standing.iter().any(|e| e.resource == resource.name)
                || role.requestable.iter().any(|r| r.resource == resource.name)
                || role.break_glass.iter().any(|r| r.resource == resource.name)
        });
        if !named {
            warn(
                layout.resource.get(i).map(Spanned::span),
                format!("resource[{i}]"),
                format!(
                    "resource \"{}\" is named by no role's rules, so nobody can reach it; add a rule for it or remove it",
                    resource.name
                ),
            );
        }
    }
    out.sort_by_key(|w| w.line);
    out
}

// ---------------------------------------------------------------------------------------------
// explain

/// Loads a policy for `explain`, turning an invalid one into an error that lists its problems.
fn load_policy(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|err| {
        if let ConfigError::Io { source, .. } = &err {
            return anyhow::anyhow!(
                "cannot read the policy {}: {source}; give it with --config or in AIRLOCK_CONFIG",
                path.display()
            );
        }
        let lines: Vec<String> = config_problems(&err)
            .iter()
            .map(|p| p.render(path))
            .collect();
        anyhow::anyhow!(
            "{} does not load, so nothing can be explained from it:\n{}\nfix it (airlock policy check {} lists every problem) and try again",
            path.display(),
            lines.join("\n"),
            path.display()
        )
    })
}

#[derive(Serialize)]
struct ExplainReport<'a> {
    policy: String,
    /// Always true for now: grants made on a gateway are not considered.
    offline: bool,
    #[serde(flatten)]
    explanation: &'a Explanation,
}

fn explain(
    config_path: &Path,
    user: &str,
    resource: &str,
    access: Access,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_policy(config_path)?;
    let e = airlock_access::explain(&config, user, resource, access, SystemClock.now_ms(), &[]);
    let unknown = unknown_name(&config, config_path, user, resource);
    if json {
        print_json(&ExplainReport {
            policy: config_path.display().to_string(),
            offline: true,
            explanation: &e,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    match &unknown {
        Some(u) => println!("{}: {}", e.outcome.as_str(), u.what),
        None => println!("{}", headline(&e)),
    }
    for reason in &e.reasons {
        println!("  {reason}");
    }
    if let Some(next) = &e.next {
        println!("next: {next}");
    }
    println!(
        "note: decided offline from {}; grants made on the gateway (approved requests, break-glass) are not considered",
        config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A user or resource the policy does not have: what is wrong (what to do is the explanation's
/// `next`).
struct Unknown {
    what: String,
}

fn unknown_name(config: &Config, path: &Path, user: &str, resource: &str) -> Option<Unknown> {
    let path = path.display();
    if config.user(user).is_none() {
        return Some(Unknown {
            what: format!("unknown user \"{user}\": {path} has no [[user]] with that name"),
        });
    }
    if config.resource(resource).is_none() {
        let known: Vec<String> = config
            .resources
            .iter()
            .map(|r| format!("\"{}\"", r.name))
            .collect();
        let known = if known.is_empty() {
            "no resources".to_owned()
        } else {
            format!("only {}", known.join(", "))
        };
        return Some(Unknown {
            what: format!("unknown resource \"{resource}\": {path} has {known}"),
        });
    }
    None
}

/// The outcome in one line: the word `policy test` uses, then what it means for this user.
fn headline(e: &Explanation) -> String {
    let (user, resource, access) = (&e.user, &e.resource, e.access);
    let what = match e.outcome {
        Outcome::Allow => format!("user \"{user}\" has {access} access to \"{resource}\""),
        Outcome::Requestable => format!(
            "user \"{user}\" may request {access} access to \"{resource}\", which needs approval"
        ),
        Outcome::BreakGlass => format!(
            "user \"{user}\" has no {access} access to \"{resource}\" but may take it through break-glass in an emergency"
        ),
        Outcome::Deny => {
            format!("user \"{user}\" has no way to get {access} access to \"{resource}\"")
        }
    };
    format!("{}: {what}", e.outcome.as_str())
}

/// The one reason that best says why the outcome is what it is: the rule that allows, makes
/// requestable or offers break-glass, or else the denial itself.
fn decisive_reason(e: &Explanation) -> String {
    let find = |needle: &str| e.reasons.iter().find(|r| r.contains(needle)).cloned();
    let found = match e.outcome {
        Outcome::Allow => find("(grants this)"),
        Outcome::Requestable => find("\": requestable "),
        Outcome::BreakGlass => find("\": break-glass "),
        Outcome::Deny => None,
    };
    found.unwrap_or_else(|| {
        let last = e
            .reasons
            .last()
            .map(String::as_str)
            .unwrap_or("no reason given");
        // `decision: deny (<denial>)`: the denial alone reads better after "got deny: ".
        last.strip_prefix("decision: deny (")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or(last)
            .to_owned()
    })
}

// ---------------------------------------------------------------------------------------------
// test

/// A test file: the policy it tests and the expected decisions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The policy file, relative to the test file's directory.
    policy: String,
    #[serde(default)]
    expect: Vec<Spanned<Expect>>,
}

/// One `[[expect]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    user: String,
    resource: String,
    access: Access,
    outcome: Spanned<String>,
    /// Also assert whether break-glass is possible.
    break_glass: Option<bool>,
    /// Shown in the output instead of `user resource access`.
    name: Option<String>,
}

#[derive(Serialize)]
struct CaseResult {
    name: String,
    line: usize,
    user: String,
    resource: String,
    access: Access,
    expected: &'static str,
    got: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_break_glass: Option<bool>,
    break_glass: bool,
    ok: bool,
    /// Why the case failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    reasons: Vec<String>,
}

#[derive(Serialize)]
struct TestReport<'a> {
    ok: bool,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    passed: usize,
    failed: usize,
    cases: &'a [CaseResult],
    problems: &'a [Problem],
}

/// A test file and its policy, both loaded, or what stopped them from loading.
struct Loaded {
    policy_path: PathBuf,
    config: Config,
    cases: Vec<Spanned<Expect>>,
    outcomes: Vec<Outcome>,
    text: String,
}

fn test(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = match load_test(file) {
        Ok(loaded) => loaded,
        Err((policy, problems)) => {
            if json {
                print_json(&TestReport {
                    ok: false,
                    file: file.display().to_string(),
                    policy: policy.map(|p| p.display().to_string()),
                    passed: 0,
                    failed: 0,
                    cases: &[],
                    problems: &problems,
                })?;
            } else {
                for p in &problems {
                    eprintln!("{}", p.render(file));
                }
                eprintln!(
                    "no expectations were run; fix the problems above and run the tests again"
                );
            }
            return Ok(ExitCode::from(2));
        }
    };

    let now = SystemClock.now_ms();
    let results: Vec<CaseResult> = loaded
        .cases
        .iter()
        .zip(&loaded.outcomes)
        .map(|(case, &expected)| run_case(&loaded, case, expected, now))
        .collect();
    let failed = results.iter().filter(|r| !r.ok).count();
    let passed = results.len() - failed;

    if json {
        print_json(&TestReport {
            ok: failed == 0,
            file: file.display().to_string(),
            policy: Some(loaded.policy_path.display().to_string()),
            passed,
            failed,
            cases: &results,
            problems: &[],
        })?;
    } else {
        for r in &results {
            match &r.failure {
                None => println!("ok   {}", r.name),
                Some(why) => println!("FAIL {} ({}:{}): {why}", r.name, file.display(), r.line),
            }
        }
        println!("{passed} passed, {failed} failed");
        if failed > 0 {
            println!(
                "airlock policy explain USER RESOURCE ACCESS --config {} shows the full reasoning for a case",
                loaded.policy_path.display()
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads the test file and the policy it names. On failure returns the policy path, when known,
/// and every problem found.
fn load_test(file: &Path) -> Result<Loaded, (Option<PathBuf>, Vec<Problem>)> {
    let problem = |line: Option<usize>, key: &str, message: String| Problem {
        file: None,
        line,
        key: key.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|err| {
        (
            None,
            vec![problem(
                None,
                "",
                format!("cannot read the test file: {err}"),
            )],
        )
    })?;
    let parsed: TestFile = toml::from_str(&text).map_err(|err| {
        let line = err.span().map(|s| line_of(&text, s.start));
        let message = err
            .message()
            .trim()
            .replace("unknown field", "unknown key")
            .replace("missing field", "missing key");
        let message = if message == "missing key `policy`" {
            format!("{message}: name the policy to test, e.g. policy = \"../airlock.toml\" (relative to this file)")
        } else {
            message
        };
        (None, vec![problem(line, "", message)])
    })?;

    let mut problems = Vec::new();
    if parsed.expect.is_empty() {
        problems.push(problem(
            None,
            "expect",
            "the test file has no [[expect]] entries, so it would test nothing; add at least one"
                .to_owned(),
        ));
    }
    let mut outcomes = Vec::new();
    for (i, case) in parsed.expect.iter().enumerate() {
        let outcome = &case.get_ref().outcome;
        match Outcome::parse(outcome.get_ref()) {
            Some(o) => outcomes.push(o),
            None => problems.push(problem(
                Some(line_of(&text, outcome.span().start)),
                &format!("expect[{i}].outcome"),
                format!(
                    "unknown outcome {:?}: expected \"allow\", \"requestable\", \"break_glass\" or \"deny\"",
                    outcome.get_ref()
                ),
            )),
        }
    }
    if !problems.is_empty() {
        return Err((None, problems));
    }

    let base = file.parent().unwrap_or(Path::new(""));
    let policy_path = base.join(&parsed.policy);
    let config = Config::load(&policy_path).map_err(|err| {
        let policy_line = text
            .lines()
            .position(|l| l.trim_start().starts_with("policy"))
            .map(|i| i + 1);
        if let ConfigError::Io { source, .. } = &err {
            let message = format!(
                "cannot read the policy {}: {source}; `policy` is relative to the test file's directory",
                policy_path.display()
            );
            return (
                Some(policy_path.clone()),
                vec![problem(policy_line, "policy", message)],
            );
        }
        let mut problems = vec![problem(
            policy_line,
            "policy",
            format!(
                "the policy {} does not load; fix it (airlock policy check {} lists every problem)",
                policy_path.display(),
                policy_path.display()
            ),
        )];
        problems.extend(config_problems(&err).into_iter().map(|mut p| {
            p.file = Some(policy_path.display().to_string());
            p
        }));
        (Some(policy_path.clone()), problems)
    })?;
    Ok(Loaded {
        policy_path,
        config,
        cases: parsed.expect,
        outcomes,
        text,
    })
}

fn run_case(loaded: &Loaded, case: &Spanned<Expect>, expected: Outcome, now: i64) -> CaseResult {
    let line = line_of(&loaded.text, case.span().start);
    let c = case.get_ref();
    let config = &loaded.config;
    let e = airlock_access::explain(config, &c.user, &c.resource, c.access, now, &[]);

    let mut failures = Vec::new();
    // A name the policy does not know fails the case whatever it expects: the policy would deny
    // it, but a test that passes because of a typo tests nothing.
    if let Some(u) = unknown_name(config, &loaded.policy_path, &c.user, &c.resource) {
        failures.push(u.what);
    } else {
        if e.outcome != expected {
            failures.push(format!(
                "expected {}, got {}: {}",
                expected.as_str(),
                e.outcome.as_str(),
                decisive_reason(&e)
            ));
        }
        match c.break_glass {
            Some(true) if !e.break_glass => failures.push(
                "expected break-glass to be possible, but no role of the user has a break_glass rule for it"
                    .to_owned(),
            ),
            Some(false) if e.break_glass => {
                let rule = e
                    .reasons
                    .iter()
                    .find(|r| r.contains("\": break-glass "))
                    .map_or(String::new(), |r| format!(": {r}"));
                failures.push(format!("expected no break-glass, but it is possible{rule}"));
            }
            _ => {}
        }
    }

    CaseResult {
        name: c
            .name
            .clone()
            .unwrap_or_else(|| format!("{} {} {}", c.user, c.resource, c.access)),
        line,
        user: c.user.clone(),
        resource: c.resource.clone(),
        access: c.access,
        expected: expected.as_str(),
        got: e.outcome.as_str(),
        expected_break_glass: c.break_glass,
        break_glass: e.break_glass,
        ok: failures.is_empty(),
        failure: (!failures.is_empty()).then(|| failures.join("; ")),
        reasons: e.reasons,
    }
}
