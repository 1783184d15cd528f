//! `[[resource.guardrails]]` and `[[resource.masking]]`: what they mean for a
//! session, and every mistake in them reported with its line and key.

use std::path::Path;
use std::time::Duration;

use airlock_config::{Config, ConfigError, RoleName};
use airlock_sql::mask::Detector;

const BASE: &str = r#"[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "data"

[[resource]]
name = "orders"
kind = "postgres"
host = "db"
database = "orders"
read = { user = "ro" }
write = { user = "rw" }

[[resource.guardrails]]
deny = ["drop", "truncate"]
max_rows = 1000

[[resource.guardrails]]
roles = ["contractor"]
deny = ["delete"]
require_where = true
max_rows = 10
statement_timeout = "5s"

[[resource.masking]]
columns = ["email", "*_ssn"]
detectors = ["credit_card"]
unmasked_roles = ["sre-lead"]

[[resource.masking]]
detectors = ["iban"]

[[role]]
name = "oncall"
standing = [{ resource = "orders", access = "read" }]

[[role]]
name = "contractor"

[[role]]
name = "sre-lead"

[[user]]
name = "oncall1"
roles = ["oncall"]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("airlock.toml"))
}

fn roles(names: &[&str]) -> Vec<RoleName> {
    names.iter().map(|n| RoleName::new(*n).unwrap()).collect()
}

#[test]
fn entries_apply_by_role_and_merge_strictest_first() {
    let config = load(BASE).expect("BASE loads");
    let orders = config.resource("orders").unwrap();

    let everyone = orders.guardrails_for(&roles(&["oncall"]));
    assert_eq!(everyone.deny, ["drop", "truncate"]);
    assert!(!everyone.require_where);
    assert_eq!(everyone.max_rows, Some(1000));
    assert_eq!(everyone.statement_timeout, None);

    let contractor = orders.guardrails_for(&roles(&["oncall", "contractor"]));
    assert_eq!(contractor.deny, ["drop", "truncate", "delete"]);
    assert!(contractor.require_where);
    assert_eq!(contractor.max_rows, Some(10));
    assert_eq!(contractor.statement_timeout, Some(Duration::from_secs(5)));

    let masked = orders.masking_for(&roles(&["oncall"])).unwrap();
    assert_eq!(masked.columns.len(), 2);
    assert!(masked.detectors.contains(Detector::CreditCard));
    assert!(masked.detectors.contains(Detector::Iban));
    // sre-lead is exempt from the first entry only.
    let lead = orders.masking_for(&roles(&["sre-lead"])).unwrap();
    assert!(lead.columns.is_empty());
    assert!(!lead.detectors.contains(Detector::CreditCard));
    assert!(lead.detectors.contains(Detector::Iban));
    // Strict by default; an entry without columns has nothing to be strict
    // about, so sre-lead's masking is not strict.
    assert!(masked.strict);
    assert!(!lead.strict);
    let lenient = load(&BASE.replacen(
        "unmasked_roles = [\"sre-lead\"]",
        "unmasked_roles = [\"sre-lead\"]\nmode = \"lenient\"",
        1,
    ))
    .unwrap();
    let masked = lenient
        .resource("orders")
        .unwrap()
        .masking_for(&roles(&["oncall"]))
        .unwrap();
    assert!(!masked.strict);
    assert_eq!(masked.columns.len(), 2, "lenient still masks results");
}

#[test]
fn a_resource_without_entries_restricts_nothing() {
    let text = BASE
        .split("[[resource.guardrails]]")
        .next()
        .unwrap()
        .to_owned()
        + "\n[[role]]\nname = \"oncall\"\n";
    let config = load(&text).expect("loads");
    let orders = config.resource("orders").unwrap();
    assert!(orders.guardrails_for(&[]).is_empty());
    assert!(orders.masking_for(&[]).is_none());
}

#[test]
fn mistakes_are_reported_with_line_key_and_way_out() {
    // (what, from, to, line, key, part of the message)
    let cases: &[(&str, &str, &str, usize, &str, &str)] = &[
        (
            "deny typo",
            "deny = [\"drop\", \"truncate\"]",
            "deny = [\"drop\", \"truncte\"]",
            15,
            "resource[0].guardrails[0].deny[1]",
            "\"truncte\" is neither a statement rule nor a command kind (did you mean truncate?)",
        ),
        (
            "deny twice",
            "deny = [\"drop\", \"truncate\"]",
            "deny = [\"drop\", \"drop\"]",
            15,
            "resource[0].guardrails[0].deny[1]",
            "lists \"drop\" twice",
        ),
        (
            "max_rows 0",
            "max_rows = 1000",
            "max_rows = 0",
            16,
            "resource[0].guardrails[0].max_rows",
            "must be at least 1",
        ),
        (
            "timeout without unit",
            "statement_timeout = \"5s\"",
            "statement_timeout = 5",
            23,
            "resource[0].guardrails[1].statement_timeout",
            "found the bare integer 5",
        ),
        (
            "unknown role",
            "roles = [\"contractor\"]",
            "roles = [\"contracter\"]",
            19,
            "resource[0].guardrails[1].roles[0]",
            "names unknown role \"contracter\"",
        ),
        (
            "empty roles",
            "roles = [\"contractor\"]",
            "roles = []",
            19,
            "resource[0].guardrails[1].roles",
            "remove `roles` to apply it to every session",
        ),
        (
            "unknown detector",
            "detectors = [\"iban\"]",
            "detectors = [\"ssn\"]",
            31,
            "resource[0].masking[1].detectors[0]",
            "unknown detector \"ssn\": expected one of \"email\", \"credit_card\", \"phone\", \"iban\"",
        ),
        (
            "mask everything",
            "columns = [\"email\", \"*_ssn\"]",
            "columns = [\"email\", \"**\"]",
            26,
            "resource[0].masking[0].columns[1]",
            "\"**\"",
        ),
        (
            "unknown unmasked role",
            "unmasked_roles = [\"sre-lead\"]",
            "unmasked_roles = [\"sre_lead\"]",
            28,
            "resource[0].masking[0].unmasked_roles[0]",
            "names unknown role \"sre_lead\"",
        ),
        (
            "unknown masking mode",
            "unmasked_roles = [\"sre-lead\"]",
            "unmasked_roles = [\"sre-lead\"]\nmode = \"strikt\"",
            29,
            "resource[0].masking[0].mode",
            "unknown mode \"strikt\": expected \"strict\"",
        ),
        (
            "unknown key",
            "require_where = true",
            "require_were = true",
            21,
            "resource[0].guardrails[1].require_were",
            "unknown",
        ),
    ];
    for (what, from, to, line, key, part) in cases {
        assert!(BASE.contains(from), "{what}: BASE has no {from:?}");
        let text = BASE.replacen(from, to, 1);
        let err = load(&text).expect_err(what);
        let shown = err.to_string();
        let diags = match &err {
            ConfigError::Invalid(d) => d.clone(),
            ConfigError::Parse(d) => vec![d.clone()],
            other => panic!("{what}: unexpected {other:?}"),
        };
        assert!(
            diags
                .iter()
                .any(|d| d.line == *line && d.key == *key && d.message.contains(part)),
            "{what}: expected line {line}, key {key}, message with {part:?}; got:\n{shown}"
        );
    }
}

#[test]
fn empty_entries_are_refused() {
    let text = BASE.replacen(
        "[[resource.masking]]\ndetectors = [\"iban\"]",
        "[[resource.masking]]\nunmasked_roles = [\"oncall\"]",
        1,
    );
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("masks nothing"), "{err}");
    let text = BASE.replacen(
        "deny = [\"drop\", \"truncate\"]\nmax_rows = 1000",
        "require_where = false",
        1,
    );
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("sets nothing"), "{err}");
}
