//! Every kind of mistake in `airlock.toml` is reported with `file:line:`, the key and what is wrong.

use std::path::Path;

use airlock_config::{Config, ConfigError};

/// A small valid file; the cases below change one or two lines of it. Line numbers matter.
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

[[role]]
name = "oncall"
standing = [{ resource = "orders", access = "read" }]

[[user]]
name = "oncall1"
roles = ["oncall"]
"#;

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    BASE.replacen(from, to, 1)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("airlock.toml"))
}

#[test]
fn base_is_valid() {
    load(BASE).expect("BASE loads");
}

#[test]
fn single_problems_are_reported_with_line_and_key() {
    const SECOND_RESOURCE: &str = "[[resource]]\nname = \"orders\"\nkind = \"postgres\"\nhost = \"db2\"\ndatabase = \"x\"\nread = { user = \"ro\" }\n\n[[role]]";
    // (case, text, line, key, part of the message)
    let cases: Vec<(&str, String, usize, &str, &str)> = vec![
        (
            "unknown key at top level",
            format!("bogus = 1\n{BASE}"),
            1,
            "bogus",
            "unknown key `bogus` at the top level: expected one of `gateway`, `resource`, `role`, `user`",
        ),
        (
            "unknown key in [gateway]",
            with("data_dir = \"data\"", "data_dir = \"data\"\nlisten_pg = \"x\""),
            5,
            "gateway.listen_pg",
            "unknown key `listen_pg` in [gateway]: expected one of `listen_postgres`",
        ),
        (
            "unknown key in a resource",
            with("database = \"orders\"", "database = \"orders\"\npasswrd = \"x\""),
            11,
            "resource[0].passwrd",
            "unknown key `passwrd` in [[resource]] \"orders\": expected one of `name`, `kind`",
        ),
        (
            "unknown key in an inline table",
            with("password_env = \"RO_PW\"", "password_env = \"RO_PW\", pw = 1"),
            11,
            "resource[0].read.pw",
            "unknown key `pw` in `read` of [[resource]] \"orders\": expected `user` or `password_env`",
        ),
        (
            "unknown key in an entitlement",
            with("access = \"read\"", "access = \"read\", until = \"1h\""),
            15,
            "role[0].standing[0].until",
            "unknown key `until` in `standing[0]` of [[role]] \"oncall\"",
        ),
        (
            "read and write credentials are the same database user",
            with(
                "read = { user = \"ro\", password_env = \"RO_PW\" }",
                "read = { user = \"app\", password_env = \"RO_PW\" }\nwrite = { user = \"app\", password_env = \"RW_PW\" }",
            ),
            7,
            "resource[0].read",
            "the read credential is the same database user as the write credential (\"app\"), so read sessions could write",
        ),
        (
            "read_credential_can_write takes refuse or allow",
            with("database = \"orders\"", "database = \"orders\"\nread_credential_can_write = \"yes\""),
            11,
            "resource[0].read_credential_can_write",
            "`read_credential_can_write` in [[resource]] \"orders\": \"yes\" is not \"refuse\" (the default) or \"allow\"",
        ),
        (
            "inline password",
            with("password_env = \"RO_PW\"", "password = \"hunter2\""),
            11,
            "resource[0].read.password",
            "inline `password` in `read` of [[resource]] \"orders\": secrets are never inline: use password_env = \"VAR\"",
        ),
        (
            "missing key",
            with("host = \"db\"\n", ""),
            6,
            "resource[0].host",
            "missing key `host` in [[resource]] \"orders\"",
        ),
        (
            "misspelt [gateway]",
            BASE.replacen("[gateway]", "[gw]", 1),
            1,
            "gw",
            "unknown key `gw` at the top level",
        ),
        (
            "missing [gateway]",
            BASE.split_once("\n\n").unwrap().1.to_owned(),
            1,
            "gateway",
            "missing the [gateway] table",
        ),
        (
            "duplicate table",
            format!("{BASE}\n[gateway]\n"),
            21,
            "",
            "invalid TOML: duplicate key (at `gateway`)",
        ),
        (
            "wrong type",
            with("host = \"db\"", "host = \"db\"\nport = \"5432\""),
            10,
            "resource[0].port",
            "`port` in [[resource]] \"orders\": invalid type: string \"5432\"",
        ),
        (
            "single brackets for an array of tables",
            with("[[user]]", "[user]"),
            17,
            "user",
            "write [[user]] (double brackets)",
        ),
        (
            "syntax error",
            with("data_dir = \"data\"", "data_dir = \"data"),
            4,
            "",
            "invalid TOML: ",
        ),
        (
            "duplicate resource name",
            with("[[role]]", SECOND_RESOURCE),
            14,
            "resource[1].name",
            "duplicate resource name \"orders\" (first defined at line 7)",
        ),
        (
            "duplicate role name",
            with("[[user]]", "[[role]]\nname = \"oncall\"\n\n[[user]]"),
            18,
            "role[1].name",
            "duplicate role name \"oncall\" (first defined at line 14)",
        ),
        (
            "duplicate user name",
            format!("{BASE}\n[[user]]\nname = \"oncall1\"\n"),
            22,
            "user[1].name",
            "duplicate user name \"oncall1\" (first defined at line 18)",
        ),
        (
            "unknown role",
            with("roles = [\"oncall\"]", "roles = [\"oncal\"]"),
            19,
            "user[0].roles[0]",
            "`roles` of [[user]] \"oncall1\" names unknown role \"oncal\" (defined roles: \"oncall\")",
        ),
        (
            "role listed twice",
            with("roles = [\"oncall\"]", "roles = [\"oncall\", \"oncall\"]"),
            19,
            "user[0].roles[1]",
            "lists role \"oncall\" twice",
        ),
        (
            "unknown resource in an entitlement",
            with("resource = \"orders\"", "resource = \"order\""),
            15,
            "role[0].standing[0].resource",
            "`standing[0]` of [[role]] \"oncall\" names unknown resource \"order\" (defined resources: \"orders\")",
        ),
        (
            "write entitlement without write credential",
            with("access = \"read\"", "access = \"write\""),
            15,
            "role[0].standing[0].access",
            "grants write on resource \"orders\", which has no `write` credential: add write = { user = \"...\", password_env = \"...\" } to [[resource]] \"orders\" (line 7)",
        ),
        (
            "read entitlement without read credential",
            with("read = {", "write = {"),
            15,
            "role[0].standing[0].access",
            "grants read on resource \"orders\", which has no `read` credential",
        ),
        (
            "unknown access level",
            with("access = \"read\"", "access = \"admin\""),
            15,
            "role[0].standing[0].access",
            "unknown access \"admin\": expected \"read\" or \"write\"",
        ),
        (
            "repeated entitlement",
            with(
                "[{ resource = \"orders\", access = \"read\" }]",
                "[\n  { resource = \"orders\", access = \"read\" },\n  { resource = \"orders\", access = \"read\" },\n]",
            ),
            17,
            "role[0].standing[1]",
            "repeats read access to resource \"orders\"",
        ),
        (
            "bad kind",
            with("kind = \"postgres\"", "kind = \"mysql\""),
            8,
            "resource[0].kind",
            "`kind` in [[resource]] \"orders\": unsupported resource kind \"mysql\": supported kinds are \"postgres\"",
        ),
        (
            "bad tls mode",
            with("host = \"db\"", "host = \"db\"\ntls = \"verify\""),
            10,
            "resource[0].tls",
            "`tls` in [[resource]] \"orders\": unknown tls mode \"verify\": expected one of \"disable\", \"prefer\", \"require\", \"verify-full\"",
        ),
        (
            "ca_file without verify-full",
            with(
                "host = \"db\"",
                "host = \"db\"\ntls = \"require\"\nca_file = \"ca.pem\"",
            ),
            11,
            "resource[0].ca_file",
            "only used with tls = \"verify-full\"",
        ),
        (
            "resource without credentials",
            with("read = { user = \"ro\", password_env = \"RO_PW\" }\n", "")
                .replacen("standing = [{ resource = \"orders\", access = \"read\" }]", "", 1),
            7,
            "resource[0].read",
            "has neither a `read` nor a `write` credential",
        ),
        (
            "bad password_env name",
            with("\"RO_PW\"", "\"RO-PW\""),
            11,
            "resource[0].read.password_env",
            "\"RO-PW\" is not an environment variable name",
        ),
        (
            "port 0 upstream",
            with("host = \"db\"", "host = \"db\"\nport = 0"),
            10,
            "resource[0].port",
            "0 is not a port",
        ),
        (
            "bad resource name",
            with("name = \"orders\"", "name = \"Orders\"")
                .replacen("resource = \"orders\"", "resource = \"Orders\"", 1),
            7,
            "resource[0].name",
            "`name` in [[resource]]: invalid resource name \"Orders\"",
        ),
        (
            "bad user name",
            with("name = \"oncall1\"", "name = \"On Call\""),
            18,
            "user[0].name",
            "invalid user name \"On Call\"",
        ),
        (
            "bad role name",
            with("name = \"oncall\"", "name = \"On-call\"")
                .replacen("roles = [\"oncall\"]", "roles = [\"On-call\"]", 1),
            14,
            "role[0].name",
            "`name` in [[role]]: invalid role name \"On-call\"",
        ),
        (
            "bad duration",
            with("data_dir = \"data\"", "data_dir = \"data\"\ncredential_ttl = \"8 hours\""),
            5,
            "gateway.credential_ttl",
            "`credential_ttl` in [gateway]: invalid duration \"8 hours\"",
        ),
        (
            "duration without unit",
            with("data_dir = \"data\"", "data_dir = \"data\"\nconnect_timeout = 10"),
            5,
            "gateway.connect_timeout",
            "found the bare integer 10",
        ),
        (
            "connection limit out of range",
            with("data_dir = \"data\"", "data_dir = \"data\"\nmax_client_connections = 0"),
            5,
            "gateway.max_client_connections",
            "`max_client_connections` in [gateway] must be between 1 and 1000000, not 0",
        ),
        (
            "zero duration",
            with("data_dir = \"data\"", "data_dir = \"data\"\nconnect_timeout = \"0s\""),
            5,
            "gateway.connect_timeout",
            "must be longer than 0s",
        ),
        (
            "ttl above 8h",
            with("data_dir = \"data\"", "data_dir = \"data\"\ncredential_ttl = \"8h1m\""),
            5,
            "gateway.credential_ttl",
            "`credential_ttl` in [gateway]: 8h1m is above the ceiling of 8h",
        ),
        (
            "bad size",
            with("data_dir = \"data\"", "data_dir = \"data\"\nmax_message_size = \"16MB\""),
            5,
            "gateway.max_message_size",
            "`max_message_size` in [gateway]: invalid size \"16MB\": unknown unit \"MB\"",
        ),
        (
            "size below minimum",
            with("data_dir = \"data\"", "data_dir = \"data\"\nmax_message_size = 4096"),
            5,
            "gateway.max_message_size",
            "4KiB is below the minimum of 8KiB",
        ),
        (
            "size above maximum",
            with("data_dir = \"data\"", "data_dir = \"data\"\nmax_message_size = \"2GiB\""),
            5,
            "gateway.max_message_size",
            "2GiB is above the maximum of 1GiB",
        ),
        (
            "tls_cert without tls_key",
            with("data_dir = \"data\"", "data_dir = \"data\"\ntls_cert = \"gw.crt\""),
            5,
            "gateway.tls_cert",
            "`tls_cert` in [gateway] is set but `tls_key` is not",
        ),
        (
            "tls_key without tls_cert",
            with("data_dir = \"data\"", "data_dir = \"data\"\ntls_key = \"gw.key\""),
            5,
            "gateway.tls_key",
            "`tls_key` in [gateway] is set but `tls_cert` is not",
        ),
        (
            "listen address without port",
            with("\"127.0.0.1:7432\"", "\"127.0.0.1\""),
            2,
            "gateway.listen_postgres",
            "`listen_postgres` in [gateway]: \"127.0.0.1\" has no port",
        ),
        (
            "listen address with bad port",
            with("\"127.0.0.1:7480\"", "\"127.0.0.1:http\""),
            3,
            "gateway.listen_http",
            "\"http\" is not a port number",
        ),
        (
            "same listen address twice",
            with("\"127.0.0.1:7480\"", "\"127.0.0.1:7432\""),
            3,
            "gateway.listen_http",
            "is the same address as `listen_postgres`",
        ),
        (
            "bad public_host",
            with("data_dir = \"data\"", "data_dir = \"data\"\npublic_host = \"https://gw\""),
            5,
            "gateway.public_host",
            "\"https://gw\" is not a host name or IP address",
        ),
        (
            "empty data_dir",
            with("data_dir = \"data\"", "data_dir = \"\""),
            4,
            "gateway.data_dir",
            "`data_dir` in [gateway] is empty",
        ),
    ];

    for (case, text, line, key, message) in cases {
        let err = load(&text).expect_err(case);
        let diagnostics = err.diagnostics();
        assert_eq!(
            diagnostics.len(),
            1,
            "{case}: expected one problem, got:\n{err}"
        );
        let d = &diagnostics[0];
        let shown = d.to_string();
        let prefix = format!("airlock.toml:{line}: ");
        assert!(
            shown.starts_with(&prefix),
            "{case}: expected prefix {prefix:?} in:\n{shown}"
        );
        assert_eq!(d.key, key, "{case}: {shown}");
        assert!(
            shown.contains(message),
            "{case}: expected {message:?} in:\n{shown}"
        );
        assert_eq!(err.to_string(), shown, "{case}");
    }
}

#[test]
fn inline_password_value_is_not_echoed() {
    let text = with("password_env = \"RO_PW\"", "password = \"hunter2\"");
    let err = load(&text).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[test]
fn several_problems_are_reported_together_in_file_order() {
    let text = with("roles = [\"oncall\"]", "roles = [\"oncal\"]")
        .replacen("kind = \"postgres\"", "kind = \"mysql\"", 1)
        .replacen(
            "data_dir = \"data\"",
            "data_dir = \"data\"\ncredential_ttl = \"9h\"",
            1,
        )
        .replacen("access = \"read\"", "access = \"write\"", 1);
    let err = load(&text).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid(_)), "{err:?}");
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    let expected = [
        ("airlock.toml:5: ", "gateway.credential_ttl"),
        ("airlock.toml:9: ", "resource[0].kind"),
        ("airlock.toml:16: ", "role[0].standing[0].access"),
        ("airlock.toml:20: ", "user[0].roles[0]"),
    ];
    assert_eq!(lines.len(), expected.len(), "{shown}");
    for ((line, (prefix, key)), d) in lines.iter().zip(expected).zip(err.diagnostics()) {
        assert!(line.starts_with(prefix), "{line}");
        assert_eq!(d.key, key);
    }
}

#[test]
fn file_path_is_the_one_given() {
    let err = Config::from_str("bogus = 1", Path::new("/etc/airlock/airlock.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/etc/airlock/airlock.toml:1: unknown key `bogus`"),
        "{err}"
    );
}

#[test]
fn public_host_defaults_from_listen_postgres() {
    let cases = [
        ("127.0.0.1:7432", None, "127.0.0.1"),
        ("0.0.0.0:7432", None, "localhost"),
        ("[::]:7432", None, "localhost"),
        ("[::1]:7432", None, "::1"),
        ("gw.internal:7432", None, "gw.internal"),
        (
            "0.0.0.0:7432",
            Some("airlock.example.com"),
            "airlock.example.com",
        ),
        ("0.0.0.0:7432", Some("[::1]"), "::1"),
    ];
    for (listen, public, expected) in cases {
        let mut text = with("\"127.0.0.1:7432\"", &format!("{listen:?}"));
        if let Some(public) = public {
            text = text.replacen(
                "data_dir = \"data\"",
                &format!("data_dir = \"data\"\npublic_host = {public:?}"),
                1,
            );
        }
        let config = load(&text).unwrap_or_else(|e| panic!("{listen}: {e}"));
        assert_eq!(config.gateway.public_host, expected, "{listen} {public:?}");
    }
}

#[test]
fn optional_gateway_keys_are_read_and_paths_resolved() {
    let text = with(
        "data_dir = \"data\"",
        "data_dir = \"/var/lib/airlock\"\ntls_cert = \"tls/gw.crt\"\ntls_key = \"/secure/gw.key\"\nallow_plaintext = true\nmax_message_size = \"64KiB\"\ncredential_ttl = \"1h30m\"\nconnect_timeout = \"500ms\"",
    )
    .replacen(
        "host = \"db\"",
        "host = \"db\"\nport = 6432\ntls = \"verify-full\"\nca_file = \"./ca.pem\"",
        1,
    );
    let config = Config::from_str(&text, Path::new("/etc/airlock/airlock.toml")).unwrap();
    let gw = &config.gateway;
    assert_eq!(gw.data_dir, Path::new("/var/lib/airlock"));
    assert_eq!(
        gw.tls_files(),
        Some((
            Path::new("/etc/airlock/tls/gw.crt"),
            Path::new("/secure/gw.key")
        ))
    );
    assert!(gw.allow_plaintext);
    assert_eq!(gw.max_message_size.bytes(), 64 * 1024);
    assert_eq!(gw.credential_ttl, std::time::Duration::from_secs(5400));
    assert_eq!(gw.connect_timeout, std::time::Duration::from_millis(500));
    let orders = config.resource("orders").unwrap();
    assert_eq!(orders.port, 6432);
    assert_eq!(orders.tls, airlock_config::UpstreamTls::VerifyFull);
    assert_eq!(
        orders.ca_file.as_deref(),
        Some(Path::new("/etc/airlock/ca.pem"))
    );
}

#[test]
fn max_statement_size_is_read_and_bounded() {
    let config = load(&with(
        "data_dir = \"data\"",
        "data_dir = \"data\"\nmax_statement_size = \"4MiB\"",
    ))
    .unwrap();
    assert_eq!(config.gateway.max_statement_size.as_usize(), 4 << 20);
    assert_eq!(
        load(BASE).unwrap().gateway.max_statement_size.as_usize(),
        1 << 20
    );
    let err = load(&with(
        "data_dir = \"data\"",
        "data_dir = \"data\"\nmax_statement_size = \"1GiB\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("airlock.toml:5: `max_statement_size` in [gateway]")
            && err.contains("above the maximum of 64MiB"),
        "{err}"
    );
}

/// Issue 18: with `tls = "prefer"` as the default, an impostor on the
/// database's address was handed the injected password in cleartext. An
/// omitted `tls` now never allows plaintext: `verify-full` when a CA is
/// given, `require` otherwise; the unsafe modes stay available when written.
#[test]
fn omitted_upstream_tls_defaults_to_a_mode_without_plaintext() {
    use airlock_config::UpstreamTls;
    let cases: &[(&str, UpstreamTls)] = &[
        ("host = \"db\"", UpstreamTls::Require),
        (
            "host = \"db\"\nca_file = \"ca.pem\"",
            UpstreamTls::VerifyFull,
        ),
        ("host = \"db\"\ntls = \"prefer\"", UpstreamTls::Prefer),
        ("host = \"db\"\ntls = \"disable\"", UpstreamTls::Disable),
        ("host = \"db\"\ntls = \"require\"", UpstreamTls::Require),
    ];
    for (lines, want) in cases {
        let config = load(&with("host = \"db\"", lines)).unwrap();
        let orders = config.resource("orders").unwrap();
        assert_eq!(orders.tls, *want, "{lines}");
        assert_eq!(
            orders.tls.allows_plaintext(),
            matches!(want, UpstreamTls::Prefer | UpstreamTls::Disable)
        );
    }
}
