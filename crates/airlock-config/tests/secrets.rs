//! Secrets come from the environment, are checked at start, and never print.
//!
//! Tests run in parallel in one process, so none of them sets a variable: the "missing" cases use
//! names nobody sets, and the "present" cases use `PATH`, which is always set.

use std::path::Path;

use airlock_config::{Access, Config, ConfigError, SecretProblem, UpstreamCredential};

fn config(read_env: &str, write_env: &str) -> Config {
    let text = format!(
        r#"
[gateway]
listen_postgres = "127.0.0.1:0"
listen_http = "127.0.0.1:0"
data_dir = "data"

[[resource]]
name = "orders"
kind = "postgres"
host = "db"
database = "orders"
read = {{ user = "orders_ro", password_env = "{read_env}" }}
write = {{ user = "orders_rw", password_env = "{write_env}" }}

[[resource]]
name = "trusting"
kind = "postgres"
host = "db"
database = "t"
read = {{ user = "t_ro" }}
"#
    );
    Config::from_str(&text, Path::new("airlock.toml")).expect("valid")
}

#[test]
fn check_secrets_passes_when_every_variable_is_set() {
    config("PATH", "PATH").check_secrets().expect("PATH is set");
}

#[test]
fn check_secrets_reports_every_missing_variable_by_name() {
    let config = config(
        "AIRLOCK_CONFIG_TEST_UNSET_RO_7F3A",
        "AIRLOCK_CONFIG_TEST_UNSET_RW_7F3A",
    );
    let err = config.check_secrets().unwrap_err();
    let ConfigError::MissingSecret(missing) = &err else {
        panic!("expected MissingSecret, got {err:?}");
    };
    let found: Vec<(&str, Option<Access>, &str, SecretProblem)> = missing
        .iter()
        .map(|m| {
            (
                m.resource.as_ref().map_or("", |r| r.as_str()),
                m.access,
                m.var.as_str(),
                m.problem,
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "orders",
                Some(Access::Read),
                "AIRLOCK_CONFIG_TEST_UNSET_RO_7F3A",
                SecretProblem::Unset
            ),
            (
                "orders",
                Some(Access::Write),
                "AIRLOCK_CONFIG_TEST_UNSET_RW_7F3A",
                SecretProblem::Unset
            ),
        ]
    );
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(
        shown.starts_with("resource \"orders\" (read credential, upstream user \"orders_ro\"): environment variable AIRLOCK_CONFIG_TEST_UNSET_RO_7F3A named by password_env is not set"),
        "{shown}"
    );
}

#[test]
fn password_reads_the_variable_and_redacts_it() {
    let config = config("PATH", "AIRLOCK_CONFIG_TEST_UNSET_RW_91C2");
    let orders = config.resource("orders").unwrap();

    let secret = orders.password(Access::Read).unwrap().expect("a password");
    assert_eq!(secret.expose(), std::env::var("PATH").unwrap());
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert_eq!(format!("{secret}"), "***");

    let err = orders.password(Access::Write).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("resource \"orders\" (write credential"),
        "{err}"
    );

    // Without resource context, the credential alone still names the user and variable.
    let err = orders.write.as_ref().unwrap().password().unwrap_err();
    assert!(
        err.to_string().starts_with(
            "upstream user \"orders_rw\": environment variable AIRLOCK_CONFIG_TEST_UNSET_RW_91C2"
        ),
        "{err}"
    );
}

#[test]
fn no_password_env_means_no_password() {
    let config = config("PATH", "PATH");
    let trusting = config.resource("trusting").unwrap();
    assert!(trusting.password(Access::Read).unwrap().is_none());
    assert!(trusting.password(Access::Write).unwrap().is_none());
    let bare = UpstreamCredential {
        user: "u".into(),
        password_env: None,
    };
    assert!(bare.password().unwrap().is_none());
}

#[test]
fn config_debug_holds_variable_names_only() {
    let config = config("PATH", "PATH");
    let shown = format!("{config:?}");
    assert!(shown.contains("password_env: Some(\"PATH\")"), "{shown}");
    let path_value = std::env::var("PATH").unwrap();
    assert!(!shown.contains(&path_value), "{shown}");
}
