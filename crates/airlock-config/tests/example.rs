//! The shipped `examples/airlock.toml` loads and means what its comments say.

use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_config::{
    Access, ByteSize, Config, ConfigError, Entitlement, ResourceKind, ResourceName, RoleName,
    UpstreamCredential, UpstreamTls,
};

const EXAMPLE: &str = include_str!("../../../examples/airlock.toml");

fn example() -> Config {
    Config::from_str(EXAMPLE, Path::new("/etc/airlock/airlock.toml")).expect("example loads")
}

#[test]
fn example_has_the_expected_values() {
    let config = example();
    let gw = &config.gateway;
    assert_eq!(gw.listen_postgres, "127.0.0.1:7432");
    assert_eq!(gw.listen_http, "127.0.0.1:7480");
    assert_eq!(gw.data_dir, PathBuf::from("/etc/airlock/airlock-data"));
    assert_eq!(gw.public_host, "127.0.0.1");
    assert_eq!(gw.tls_files(), None);
    assert!(!gw.allow_plaintext);
    assert_eq!(gw.max_message_size, ByteSize::GIB);
    assert_eq!(gw.credential_ttl, Duration::from_secs(8 * 3600));
    assert_eq!(gw.connect_timeout, Duration::from_secs(10));

    assert_eq!(config.resources.len(), 1);
    let orders = config.resource("orders").expect("orders");
    assert_eq!(orders.kind, ResourceKind::Postgres);
    assert_eq!((orders.host.as_str(), orders.port), ("127.0.0.1", 5432));
    assert_eq!(orders.database, "orders");
    assert_eq!(orders.tls, UpstreamTls::Require);
    assert_eq!(orders.ca_file, None);
    let ro = UpstreamCredential {
        user: "orders_ro".into(),
        password_env: Some("ORDERS_RO_PASSWORD".into()),
    };
    assert_eq!(orders.credential(Access::Read), Some(&ro));
    assert_eq!(
        orders.credential(Access::Write).map(|c| c.user.as_str()),
        Some("orders_rw")
    );

    let oncall = config.role("oncall").expect("oncall");
    assert_eq!(
        oncall.standing,
        vec![Entitlement {
            resource: ResourceName::new("orders").unwrap(),
            access: Access::Read,
        }]
    );
    let user = config.user("oncall1").expect("oncall1");
    assert_eq!(user.roles, vec![RoleName::new("oncall").unwrap()]);

    // The guardrails apply to everyone; masking to all but the sre-lead role.
    let rails = orders.guardrails_for(&[RoleName::new("oncall").unwrap()]);
    assert_eq!(rails.deny, ["drop", "truncate", "alter_table", "grant"]);
    assert!(rails.require_where);
    assert_eq!(rails.max_rows, Some(10_000));
    assert_eq!(rails.statement_timeout, Some(Duration::from_secs(30)));
    let mask = orders
        .masking_for(&[RoleName::new("oncall").unwrap()])
        .expect("oncall is masked");
    assert_eq!(mask.columns.len(), 4);
    assert!(mask.columns.iter().any(|p| p.matches("customer_ssn")));
    assert!(orders
        .masking_for(&[RoleName::new("sre-lead").unwrap()])
        .is_none());

    assert!(config.resource("nope").is_none());
    assert!(config.user("oncall").is_none());
    assert!(config.role("oncall1").is_none());
}

#[test]
fn load_reads_the_file_and_resolves_against_its_directory() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/airlock.toml"
    ));
    let config = Config::load(path).expect("example loads from disk");
    assert_eq!(config.path, path);
    assert_eq!(
        config.gateway.data_dir,
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/airlock-data"
        ))
    );
    assert_eq!(config.source(), EXAMPLE);
    assert_eq!(config, example_at(path));
}

fn example_at(path: &Path) -> Config {
    Config::from_str(EXAMPLE, path).expect("example loads")
}

#[test]
fn relative_config_path_gives_relative_data_dir() {
    let cases = [
        ("airlock.toml", "airlock-data"),
        ("conf/airlock.toml", "conf/airlock-data"),
        ("./airlock.toml", "airlock-data"),
    ];
    for (file, data_dir) in cases {
        let config = Config::from_str(EXAMPLE, Path::new(file)).unwrap();
        assert_eq!(config.gateway.data_dir, Path::new(data_dir), "{file}");
    }
}

#[test]
fn load_of_a_missing_file_names_it() {
    let err = Config::load(Path::new("/nonexistent/airlock.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot read config file /nonexistent/airlock.toml: "),
        "{err}"
    );
}

#[test]
fn debug_does_not_dump_the_source() {
    let text = format!("{:?}", example());
    assert!(text.contains("orders_ro"), "{text}");
    assert!(!text.contains("# airlock.toml"), "{text}");
}
