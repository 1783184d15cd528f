//! `airlock policy check | explain | test`, run as the real binary against policy files in a temp
//! directory. Offline by design: no gateway, no PostgreSQL, no secrets in the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Two resources, a role with every kind of rule and an approver role.
const POLICY: &str = r#"[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "data"

[[resource]]
name = "orders"
kind = "postgres"
host = "db"
database = "orders"
read = { user = "orders_ro", password_env = "ORDERS_RO_PASSWORD" }
write = { user = "orders_rw", password_env = "ORDERS_RW_PASSWORD" }

[[resource]]
name = "billing"
kind = "postgres"
host = "db"
database = "billing"
read = { user = "billing_ro" }

[[role]]
name = "oncall"
standing = [{ resource = "orders", access = "read" }]
requestable = [{ resource = "orders", access = "write", max = "1h", approvals = 1, approvers = ["sre-lead"] }]
break_glass = [{ resource = "orders", access = "write", max = "30m" }]

[[role]]
name = "sre-lead"
standing = [{ resource = "orders", access = "read" }, { resource = "billing", access = "read" }]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "lead1"
roles = ["sre-lead"]
"#;

/// Expectations that all hold for [`POLICY`].
const PASSING: &str = r#"policy = "airlock.toml"

[[expect]]
name = "on-call reads orders"
user = "oncall1"
resource = "orders"
access = "read"
outcome = "allow"

[[expect]]
user = "oncall1"
resource = "orders"
access = "write"
outcome = "requestable"
break_glass = true

[[expect]]
name = "the lead cannot write orders"
user = "lead1"
resource = "orders"
access = "write"
outcome = "deny"
break_glass = false

[[expect]]
name = "on-call has nothing on billing"
user = "oncall1"
resource = "billing"
access = "read"
outcome = "deny"
"#;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `airlock <args>` in `dir`, with no policy named in the environment.
fn airlock(dir: &Path, args: &[&str]) -> Run {
    airlock_env(dir, args, None)
}

fn airlock_env(dir: &Path, args: &[&str], config_env: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("AIRLOCK_LOG", "off");
    if let Some(path) = config_env {
        cmd.env("AIRLOCK_CONFIG", path);
    }
    let out = cmd.output().expect("run the airlock binary");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A temp directory holding `files` (name, contents).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// `text` with the first `from` replaced; fails if `from` is not there.
fn with(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "no {from:?} in the text");
    text.replacen(from, to, 1)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    1 + text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the text"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

// ---------------------------------------------------------------------------------------------
// check

#[test]
fn check_a_valid_policy_prints_ok_with_counts() {
    let dir = dir_with(&[("airlock.toml", POLICY)]);
    let run = airlock(dir.path(), &["policy", "check", "airlock.toml"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(
        run.stdout,
        "airlock.toml: OK (2 resources, 2 roles, 2 users, 0 webhooks)\n"
    );
    assert_eq!(run.stderr, "", "no warnings for a clean policy");

    // FILE defaults to $AIRLOCK_CONFIG.
    let path = dir.path().join("airlock.toml");
    let run = airlock_env(dir.path(), &["policy", "check"], Some(&path));
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(run.stdout.contains(": OK (2 resources"), "{}", run.stdout);
}

#[test]
fn check_needs_no_secrets() {
    // POLICY names ORDERS_*_PASSWORD, which the runs here never set: a policy repository's CI
    // has no database passwords, and the check must not ask for them.
    let dir = dir_with(&[("airlock.toml", POLICY)]);
    let run = airlock(dir.path(), &["policy", "check", "airlock.toml"]);
    assert_eq!(run.code, 0, "{}", run.both());
}

#[test]
fn check_warns_about_legal_but_suspicious_rules() {
    let policy = format!(
        "{POLICY}{}",
        r#"
[[resource]]
name = "archive"
kind = "postgres"
host = "db"
database = "archive"
read = { user = "archive_ro" }

[[role]]
name = "auditor"
requestable = [{ resource = "orders", access = "write", max = "1h", approvals = 1, approvers = ["dba"] }]

[[role]]
name = "dba"

[[user]]
name = "intern1"
roles = []
"#
    );
    let dir = dir_with(&[("airlock.toml", &policy)]);
    let run = airlock(dir.path(), &["policy", "check", "airlock.toml"]);
    assert_eq!(
        run.code,
        0,
        "warnings do not fail the check: {}",
        run.both()
    );
    assert_eq!(
        run.stdout,
        "airlock.toml: OK (3 resources, 4 roles, 3 users, 0 webhooks), 5 warnings\n"
    );
    let expected = [
        (
            line_of(&policy, "name = \"archive\"") - 1,
            "resource \"archive\" is named by no role's rules, so nobody can reach it",
        ),
        (
            line_of(&policy, "name = \"auditor\"") - 1,
            "role \"auditor\" is held by no user",
        ),
        (
            line_of(&policy, "approvers = [\"dba\"]"),
            "`requestable[0]` of role \"auditor\" needs 1 approval(s) from users holding \"dba\", but no user holds them",
        ),
        (
            line_of(&policy, "name = \"dba\"") - 1,
            "role \"dba\" is held by no user",
        ),
        (
            line_of(&policy, "name = \"intern1\"") - 1,
            "user \"intern1\" holds no roles",
        ),
    ];
    for (line, message) in expected {
        let want = format!("airlock.toml:{line}: warning: {message}");
        assert!(
            run.stderr.contains(&want),
            "want {want:?} in:\n{}",
            run.stderr
        );
    }
}

#[test]
fn check_reports_every_problem_with_its_line() {
    let policy = with(
        POLICY,
        "approvers = [\"sre-lead\"]",
        "approvers = [\"sre-leed\"]",
    );
    let policy = with(&policy, "max = \"30m\"", "max = \"5h\"");
    let dir = dir_with(&[("airlock.toml", &policy)]);
    let run = airlock(dir.path(), &["policy", "check", "airlock.toml"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(run.stdout, "");
    let approvers = line_of(&policy, "sre-leed");
    let max = line_of(&policy, "max = \"5h\"");
    assert_ne!(approvers, max);
    for want in [
        format!("airlock.toml:{approvers}: `approvers` of `requestable[0]` of [[role]] \"oncall\" names unknown role \"sre-leed\""),
        format!("airlock.toml:{max}: `max` of `break_glass[0]` of [[role]] \"oncall\": 5h is above the break-glass ceiling of 4h"),
        "airlock.toml is not a valid policy (2 problems)".to_owned(),
    ] {
        assert!(run.stderr.contains(&want), "want {want:?} in:\n{}", run.stderr);
    }
}

#[test]
fn check_a_missing_file_says_how_to_name_one() {
    let dir = dir_with(&[]);
    let run = airlock(dir.path(), &["policy", "check"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stderr
            .starts_with("airlock.toml: cannot read the file: No such file"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("AIRLOCK_CONFIG"), "{}", run.stderr);
}

#[test]
fn check_json_reports_problems_and_warnings() {
    let dir = dir_with(&[("airlock.toml", POLICY)]);
    let run = airlock(dir.path(), &["policy", "check", "airlock.toml", "--json"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let v = json(&run.stdout);
    assert_eq!(v["ok"], true);
    assert_eq!(v["file"], "airlock.toml");
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["warnings"], serde_json::json!([]));

    let policy = with(POLICY, "max = \"30m\"", "max = \"5h\"");
    std::fs::write(dir.path().join("bad.toml"), &policy).unwrap();
    let run = airlock(dir.path(), &["policy", "check", "bad.toml", "--json"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(run.stderr, "", "JSON mode prints only JSON");
    let v = json(&run.stdout);
    assert_eq!(v["ok"], false);
    assert_eq!(v["file"], "bad.toml");
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["line"], line_of(&policy, "max = \"5h\""));
    assert_eq!(problems[0]["key"], "role[0].break_glass[0].max");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("5h is above the break-glass ceiling of 4h"),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// explain

/// One `explain` case: its arguments and the output expected, line by line.
struct ExplainCase {
    args: [&'static str; 3],
    first: &'static str,
    /// The start of each reason, in order.
    reasons: &'static [&'static str],
    next: Option<&'static str>,
}

#[test]
fn explain_gives_the_outcome_reasons_and_next_step() {
    let dir = dir_with(&[("airlock.toml", POLICY)]);
    let cases = [
        ExplainCase {
            args: ["oncall1", "orders", "read"],
            first: "allow: user \"oncall1\" has read access to \"orders\"",
            reasons: &[
                "user \"oncall1\" holds role(s) \"oncall\"",
                "role \"oncall\": standing read on \"orders\" (grants this)",
                "decision: allow, by standing:oncall:orders:read",
            ],
            next: None,
        },
        ExplainCase {
            args: ["oncall1", "orders", "write"],
            first: "requestable: user \"oncall1\" may request write access to \"orders\", which needs approval",
            reasons: &[
                "user \"oncall1\" holds role(s) \"oncall\"",
                "role \"oncall\": standing read on \"orders\" (not this level)",
                "role \"oncall\": requestable write on \"orders\" for up to 1h, with 1 approval(s) from role sre-lead (approvers: lead1)",
                "role \"oncall\": break-glass write on \"orders\" for up to 30m",
                "decision: deny (user \"oncall1\" has no write access to \"orders\"",
            ],
            next: Some("airlock request orders --access write --reason \"...\""),
        },
        ExplainCase {
            args: ["lead1", "orders", "write"],
            first: "deny: user \"lead1\" has no way to get write access to \"orders\"",
            reasons: &[
                "user \"lead1\" holds role(s) \"sre-lead\"",
                "role \"sre-lead\": standing read on \"orders\" (not this level)",
                "decision: deny (user \"lead1\" has no write access to \"orders\" (standing access is read)",
            ],
            next: Some("ask the platform team for a role with a rule for it in airlock.toml"),
        },
        ExplainCase {
            args: ["nobody", "orders", "read"],
            first: "deny: unknown user \"nobody\": airlock.toml has no [[user]] with that name",
            reasons: &["user \"nobody\" is not known to Airlock"],
            next: Some("check the name, or add a [[user]] entry for \"nobody\" to airlock.toml"),
        },
    ];
    for case in &cases {
        let args = case.args;
        let mut argv = vec!["policy", "explain"];
        argv.extend_from_slice(&args);
        argv.extend_from_slice(&["--config", "airlock.toml"]);
        let run = airlock(dir.path(), &argv);
        assert_eq!(
            run.code,
            0,
            "explain exits 0 whatever the outcome: {args:?}: {}",
            run.both()
        );
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines[0], case.first, "{args:?}:\n{}", run.stdout);
        assert_eq!(
            lines.len(),
            1 + case.reasons.len() + usize::from(case.next.is_some()) + 1,
            "{args:?}:\n{}",
            run.stdout
        );
        for (line, reason) in lines[1..].iter().zip(case.reasons) {
            assert!(
                line.starts_with(&format!("  {reason}")),
                "{args:?}: want {reason:?}, got {line:?}"
            );
        }
        if let Some(next) = case.next {
            assert_eq!(lines[lines.len() - 2], format!("next: {next}"), "{args:?}");
        }
        assert!(
            lines[lines.len() - 1]
                .starts_with("note: decided offline from airlock.toml; grants made on the gateway"),
            "{args:?}: {}",
            run.stdout
        );
    }
}

#[test]
fn explain_json_is_the_explanation() {
    let dir = dir_with(&[("airlock.toml", POLICY)]);
    let path = dir.path().join("airlock.toml");
    let run = airlock_env(
        dir.path(),
        &["policy", "explain", "oncall1", "orders", "write", "--json"],
        Some(&path),
    );
    assert_eq!(run.code, 0, "{}", run.both());
    let v = json(&run.stdout);
    assert_eq!(v["outcome"], "requestable");
    assert_eq!(v["break_glass"], true);
    assert_eq!(v["offline"], true);
    assert_eq!(v["access"], "write");
    assert!(v["reasons"].as_array().unwrap().len() >= 4, "{v}");
}

#[test]
fn explain_refuses_an_unknown_access_level() {
    let dir = dir_with(&[("airlock.toml", POLICY)]);
    let run = airlock(
        dir.path(),
        &[
            "policy",
            "explain",
            "oncall1",
            "orders",
            "wrte",
            "--config",
            "airlock.toml",
        ],
    );
    assert_eq!(run.code, 2, "a usage error: {}", run.both());
    assert!(
        run.stderr
            .contains("unknown access \"wrte\": expected \"read\" or \"write\""),
        "{}",
        run.stderr
    );
}

#[test]
fn explain_on_a_broken_policy_lists_its_problems() {
    let policy = with(POLICY, "max = \"30m\"", "max = \"5h\"");
    let dir = dir_with(&[("airlock.toml", &policy)]);
    let run = airlock(
        dir.path(),
        &[
            "policy",
            "explain",
            "oncall1",
            "orders",
            "read",
            "--config",
            "airlock.toml",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    let want = format!("airlock.toml:{}: ", line_of(&policy, "max = \"5h\""));
    assert!(run.stderr.contains(&want), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// test

/// Runs `airlock policy test <file>` in a directory with [`POLICY`] and the test file.
fn policy_test(test_file: &str, extra: &[&str]) -> Run {
    let dir = dir_with(&[("airlock.toml", POLICY), ("policy.test.toml", test_file)]);
    let mut args = vec!["policy", "test", "policy.test.toml"];
    args.extend_from_slice(extra);
    airlock(dir.path(), &args)
}

#[test]
fn test_passing_expectations_exit_0() {
    let run = policy_test(PASSING, &[]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(
        run.stdout,
        "ok   on-call reads orders\n\
         ok   oncall1 orders write\n\
         ok   the lead cannot write orders\n\
         ok   on-call has nothing on billing\n\
         4 passed, 0 failed\n"
    );
}

#[test]
fn test_policy_path_is_relative_to_the_test_file() {
    let dir = dir_with(&[("airlock.toml", POLICY)]);
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let text = with(
        PASSING,
        "policy = \"airlock.toml\"",
        "policy = \"../airlock.toml\"",
    );
    std::fs::write(dir.path().join("tests/policy.test.toml"), text).unwrap();
    let run = airlock(dir.path(), &["policy", "test", "tests/policy.test.toml"]);
    assert_eq!(run.code, 0, "{}", run.both());
}

#[test]
fn test_a_mismatch_fails_naming_the_case() {
    let text = with(
        PASSING,
        "name = \"the lead cannot write orders\"\nuser = \"lead1\"\nresource = \"orders\"\naccess = \"write\"\noutcome = \"deny\"",
        "name = \"the lead can request writes\"\nuser = \"lead1\"\nresource = \"orders\"\naccess = \"write\"\noutcome = \"requestable\"",
    );
    let run = policy_test(&text, &[]);
    assert_eq!(run.code, 1, "{}", run.both());
    let line = line_of(&text, "name = \"the lead can request writes\"") - 1;
    let want = format!(
        "FAIL the lead can request writes (policy.test.toml:{line}): expected requestable, got deny: user \"lead1\" has no write access to \"orders\""
    );
    assert!(
        run.stdout.contains(&want),
        "want {want:?} in:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("\n3 passed, 1 failed\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn test_a_wrong_break_glass_expectation_fails() {
    let text = with(PASSING, "break_glass = true", "break_glass = false");
    let run = policy_test(&text, &[]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout.contains(
            "FAIL oncall1 orders write (policy.test.toml:10): expected no break-glass, but it is possible: role \"oncall\": break-glass write on \"orders\" for up to 30m"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn test_an_unknown_user_or_resource_fails_the_case() {
    // Even though the policy does deny them: a typo must not make a test pass.
    let text = format!(
        "{PASSING}{}",
        r#"
[[expect]]
name = "typo in user"
user = "oncal1"
resource = "orders"
access = "read"
outcome = "deny"

[[expect]]
name = "typo in resource"
user = "oncall1"
resource = "ordres"
access = "read"
outcome = "deny"
"#
    );
    let run = policy_test(&text, &[]);
    assert_eq!(run.code, 1, "{}", run.both());
    for want in [
        "FAIL typo in user (policy.test.toml:",
        "): unknown user \"oncal1\": airlock.toml has no [[user]] with that name",
        "FAIL typo in resource (policy.test.toml:",
        "): unknown resource \"ordres\": airlock.toml has only \"orders\", \"billing\"",
        "4 passed, 2 failed",
    ] {
        assert!(
            run.stdout.contains(want),
            "want {want:?} in:\n{}",
            run.stdout
        );
    }
}

#[test]
fn test_a_broken_policy_exits_2_with_its_problems() {
    let policy = with(POLICY, "max = \"30m\"", "max = \"5h\"");
    let dir = dir_with(&[("airlock.toml", &policy), ("policy.test.toml", PASSING)]);
    let run = airlock(dir.path(), &["policy", "test", "policy.test.toml"]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert_eq!(run.stdout, "", "no case ran");
    let line = line_of(&policy, "max = \"5h\"");
    for want in [
        "policy.test.toml:1: the policy airlock.toml does not load".to_owned(),
        format!("airlock.toml:{line}: `max` of `break_glass[0]` of [[role]] \"oncall\": 5h is above the break-glass ceiling of 4h"),
    ] {
        assert!(run.stderr.contains(&want), "want {want:?} in:\n{}", run.stderr);
    }

    // A policy that is not there at all.
    let text = with(
        PASSING,
        "policy = \"airlock.toml\"",
        "policy = \"nope.toml\"",
    );
    let run = policy_test(&text, &[]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stderr
            .contains("policy.test.toml:1: cannot read the policy nope.toml"),
        "{}",
        run.stderr
    );
}

#[test]
fn test_file_mistakes_exit_2_with_line_and_key() {
    let cases = [
        (
            "unknown key",
            with(PASSING, "outcome = \"requestable\"", "outcom = \"requestable\""),
            "outcom = ",
            "unknown key `outcom`, expected one of",
        ),
        (
            "unknown top-level key",
            with(PASSING, "policy = \"airlock.toml\"", "policy = \"airlock.toml\"\npolicies = 1"),
            "policies",
            "unknown key `policies`",
        ),
        (
            "unknown outcome",
            with(PASSING, "outcome = \"requestable\"", "outcome = \"requested\""),
            "\"requested\"",
            "unknown outcome \"requested\": expected \"allow\", \"requestable\", \"break_glass\" or \"deny\"",
        ),
        (
            "unknown access",
            with(PASSING, "access = \"write\"", "access = \"wrte\""),
            "\"wrte\"",
            "wrte",
        ),
    ];
    for (what, text, at, message) in cases {
        let run = policy_test(&text, &[]);
        assert_eq!(run.code, 2, "{what}: {}", run.both());
        assert_eq!(run.stdout, "", "{what}: no case ran");
        let want = format!("policy.test.toml:{}: ", line_of(&text, at));
        let first = run.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&want),
            "{what}: want {want:?}, got {first:?}"
        );
        assert!(
            first.contains(message),
            "{what}: want {message:?} in {first:?}"
        );
    }

    let run = policy_test("policy = \"airlock.toml\"\n", &[]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stderr.contains("no [[expect]] entries"),
        "{}",
        run.stderr
    );
}

#[test]
fn test_json_reports_each_case() {
    let text = with(PASSING, "outcome = \"allow\"", "outcome = \"deny\"");
    let run = policy_test(&text, &["--json"]);
    assert_eq!(run.code, 1, "{}", run.both());
    let v = json(&run.stdout);
    assert_eq!(v["ok"], false);
    assert_eq!(
        (v["passed"].as_u64(), v["failed"].as_u64()),
        (Some(3), Some(1))
    );
    let case = &v["cases"][0];
    assert_eq!(case["name"], "on-call reads orders");
    assert_eq!(case["line"], 3);
    assert_eq!(
        (case["expected"].as_str(), case["got"].as_str()),
        (Some("deny"), Some("allow"))
    );
    assert_eq!(case["ok"], false);
    assert!(
        case["failure"]
            .as_str()
            .unwrap()
            .starts_with("expected deny, got allow: role \"oncall\": standing read"),
        "{case}"
    );
}

#[test]
fn shipped_example_tests_pass() {
    let root: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", ".."].iter().collect();
    let run = airlock(
        &root,
        &["policy", "test", "examples/policy-tests/airlock.test.toml"],
    );
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(run.stdout.contains(" passed, 0 failed"), "{}", run.stdout);
    // And the example policy itself checks clean.
    let run = airlock(&root, &["policy", "check", "examples/airlock.toml"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(run.stderr, "", "the example policy has no warnings");
}
