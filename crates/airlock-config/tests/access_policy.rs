//! The access part of the policy: requestable and break-glass rules, `[access]`, `[[webhook]]`.
//! Every mistake names its line, its key and what is wrong.

use std::path::Path;
use std::time::Duration;

use airlock_config::{Access, Config, ConfigError};

/// Line numbers matter: the cases below refer to them.
const BASE: &str = r#"[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "data"

[[resource]]
name = "orders"
kind = "postgres"
host = "db"
database = "orders"
read = { user = "ro", password_env = "RO_PW" }
write = { user = "rw", password_env = "RW_PW" }

[[role]]
name = "oncall"
standing = [{ resource = "orders", access = "read" }]
requestable = [{ resource = "orders", access = "write", max = "1h", approvals = 1, approvers = ["sre-lead"] }]
break_glass = [{ resource = "orders", access = "write", max = "30m" }]

[[role]]
name = "sre-lead"
standing = [{ resource = "orders", access = "read" }]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "lead1"
roles = ["sre-lead"]

[access]
request_ttl = "2h"

[[webhook]]
url = "https://hooks.example.com/services/T000/B000/XXXXSECRET"
events = ["request.created", "break_glass.used"]
secret_env = "AIRLOCK_WEBHOOK_SECRET"
"#;

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    BASE.replacen(from, to, 1)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("airlock.toml"))
}

#[test]
fn base_is_read_into_the_model() {
    let c = load(BASE).expect("BASE loads");
    let oncall = c.role("oncall").unwrap();
    assert_eq!(oncall.requestable.len(), 1);
    let r = &oncall.requestable[0];
    assert_eq!(
        (r.resource.as_str(), r.access, r.max, r.approvals),
        ("orders", Access::Write, Duration::from_secs(3600), 1)
    );
    assert_eq!(r.approvers[0].as_str(), "sre-lead");
    let b = &oncall.break_glass[0];
    assert_eq!(
        (b.access, b.max),
        (Access::Write, Duration::from_secs(1800))
    );
    assert_eq!(c.access.request_ttl, Duration::from_secs(7200));
    assert_eq!(c.access.max_grant, Duration::from_secs(8 * 3600));
    assert_eq!(c.webhooks.len(), 1);
    assert_eq!(
        c.webhooks[0].events,
        ["request.created", "break_glass.used"]
    );
    assert_eq!(
        c.webhooks[0].redacted_url(),
        "https://hooks.example.com/…",
        "the path of a chat webhook URL is its secret"
    );
    assert!(!format!("{:?}", c.webhooks[0]).contains("AIRLOCK_WEBHOOK_SECRET="));
    assert_eq!(c.source_sha256().len(), 64);
}

#[test]
fn defaults_without_access_table() {
    let text = BASE.replace("[access]\nrequest_ttl = \"2h\"\n", "");
    let c = load(&text).unwrap();
    assert_eq!(c.access.request_ttl, Duration::from_secs(3600));
    // approvals defaults to 1
    let c = load(&with("approvals = 1, ", "")).unwrap();
    assert_eq!(c.role("oncall").unwrap().requestable[0].approvals, 1);
}

#[test]
fn mistakes_name_line_key_and_problem() {
    let cases: Vec<(&str, String, usize, &str, &str)> = vec![
        (
            "unknown approver role",
            with("approvers = [\"sre-lead\"]", "approvers = [\"sre-leed\"]"),
            17,
            "role[0].requestable[0].approvers[0]",
            "names unknown role \"sre-leed\" (defined roles: \"oncall\", \"sre-lead\")",
        ),
        (
            "unknown resource in requestable",
            with("requestable = [{ resource = \"orders\"", "requestable = [{ resource = \"ordres\""),
            17,
            "role[0].requestable[0].resource",
            "names unknown resource \"ordres\"",
        ),
        (
            "max above the gateway's ceiling",
            with("max = \"1h\"", "max = \"9h\""),
            17,
            "role[0].requestable[0].max",
            "9h is above the gateway's ceiling (`max_grant` in [access]) of 8h",
        ),
        (
            "max above a lowered max_grant",
            with("request_ttl = \"2h\"", "request_ttl = \"2h\"\nmax_grant = \"45m\""),
            17,
            "role[0].requestable[0].max",
            "1h is above the gateway's ceiling (`max_grant` in [access]) of 45m",
        ),
        (
            "break-glass above its own ceiling",
            with("max = \"30m\"", "max = \"5h\""),
            18,
            "role[0].break_glass[0].max",
            "5h is above the break-glass ceiling of 4h",
        ),
        (
            "a rule nobody else can approve",
            with("approvers = [\"sre-lead\"]", "approvers = [\"oncall\"]"),
            17,
            "role[0].requestable[0].approvers",
            "a request by user \"oncall1\" could never be approved: it needs 1 approval(s) from users holding \"oncall\", only \"oncall1\" hold them, and nobody approves their own request",
        ),
        (
            "more approvals than approvers",
            with("approvals = 1", "approvals = 2"),
            17,
            "role[0].requestable[0].approvers",
            "needs 2 approval(s) from users holding \"sre-lead\", only \"lead1\" hold them",
        ),
        (
            "zero approvals",
            with("approvals = 1", "approvals = 0"),
            17,
            "role[0].requestable[0].approvals",
            "must be between 1 and 10, not 0; access that needs no approval is `standing` or `break_glass`",
        ),
        (
            "no approvers",
            with("approvers = [\"sre-lead\"]", "approvers = []"),
            17,
            "role[0].requestable[0].approvers",
            "`approvers` of `requestable[0]` of [[role]] \"oncall\" is empty",
        ),
        (
            "requesting what is already standing",
            with("access = \"write\", max = \"1h\"", "access = \"read\", max = \"1h\""),
            17,
            "role[0].requestable[0]",
            "read access to \"orders\" is already standing for this role",
        ),
        (
            "max as a bare number",
            with("max = \"1h\"", "max = 3600"),
            17,
            "role[0].requestable[0].max",
            "found the bare integer 3600",
        ),
        (
            "missing approvers key",
            with(", approvals = 1, approvers = [\"sre-lead\"]", ""),
            17,
            "role[0].requestable[0].approvers",
            "missing key `approvers` in `requestable[0]` of [[role]] \"oncall\"",
        ),
        (
            "request_ttl above a day",
            with("request_ttl = \"2h\"", "request_ttl = \"2d\""),
            33,
            "access.request_ttl",
            "2d is above the ceiling of 1d",
        ),
        (
            "unknown key in [access]",
            with("request_ttl = \"2h\"", "request_tl = \"2h\""),
            33,
            "access.request_tl",
            "unknown key `request_tl` in [access]",
        ),
        (
            "unknown webhook event",
            with("\"break_glass.used\"]", "\"break_glass.use\"]"),
            37,
            "webhook[0].events[1]",
            "unknown event \"break_glass.use\"; known events: \"request.created\"",
        ),
        (
            "webhook url without scheme",
            with("url = \"https://hooks", "url = \"hooks"),
            36,
            "webhook[0].url",
            "is not an http:// or https:// URL with a host",
        ),
        (
            "webhook secret_env not a variable name",
            with("secret_env = \"AIRLOCK_WEBHOOK_SECRET\"", "secret_env = \"the secret\""),
            38,
            "webhook[0].secret_env",
            "is not an environment variable name",
        ),
        (
            "webhook without secret_env",
            with("secret_env = \"AIRLOCK_WEBHOOK_SECRET\"\n", ""),
            35,
            "webhook[0].secret_env",
            "missing key `secret_env` in [[webhook]] #1",
        ),
    ];
    for (case, text, line, key, message) in cases {
        let err = load(&text).expect_err(case);
        let shown = err.to_string();
        let diagnostics = err.diagnostics();
        assert_eq!(
            diagnostics.len(),
            1,
            "{case}: expected one problem:\n{shown}"
        );
        let d = &diagnostics[0];
        assert!(
            shown.starts_with(&format!("airlock.toml:{line}: ")),
            "{case}: wrong line in:\n{shown}"
        );
        assert_eq!(d.key, key, "{case}: {shown}");
        assert!(
            shown.contains(message),
            "{case}: expected {message:?} in:\n{shown}"
        );
    }
}

#[test]
fn webhook_url_secret_never_in_errors() {
    let text = with(
        "events = [\"request.created\", \"break_glass.used\"]",
        "events = []",
    );
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("`events` in [[webhook]] is empty"), "{err}");
    assert!(!err.contains("XXXXSECRET"), "{err}");
    let text = with("url = \"https://hooks", "url = \"ftp://hooks");
    let err = load(&text).unwrap_err().to_string();
    assert!(!err.contains("XXXXSECRET"), "{err}");
}

#[test]
fn webhook_secret_is_read_from_the_environment() {
    let text = with(
        "AIRLOCK_WEBHOOK_SECRET",
        "AIRLOCK_TEST_WEBHOOK_SECRET_UNSET_1",
    );
    let c = load(&text).unwrap();
    let problems = c.check_webhook_secrets().unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("AIRLOCK_TEST_WEBHOOK_SECRET_UNSET_1 named by secret_env of the webhook to https://hooks.example.com/… is not set"),
        "{}",
        problems[0]
    );
    assert!(!problems[0].contains("XXXXSECRET"));
}
