//! The gateway's own login to the upstream: SCRAM, md5 and trust, over every
//! TLS mode, with the injected credential for the session's access level.

mod common;

use airlock_pgcluster::HbaMode;
use common::{stderr, stdout, Options, World};

/// (hba, upstream ssl, resource tls, expect upstream TLS in use)
const CASES: &[(HbaMode, bool, &str, bool)] = &[
    (HbaMode::Scram, false, "disable", false),
    (HbaMode::Scram, false, "prefer", false),
    (HbaMode::Scram, true, "prefer", true),
    (HbaMode::Md5, true, "require", true),
    (HbaMode::Trust, false, "disable", false),
    (HbaMode::Scram, true, "verify-full", true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_auth_methods_and_tls_modes() {
    for &(hba, ssl, tls, expect_tls) in CASES {
        let w = World::start_with(Options {
            hba,
            upstream_ssl: ssl,
            upstream_tls: tls,
            resource_extra: if tls == "verify-full" {
                "ca_file = \"upstream-tls/tls/ca.crt\"".into()
            } else {
                String::new()
            },
            ..Options::default()
        })
        .await;
        for (user, access, db_user) in [
            ("oncall1", "read", "orders_ro"),
            ("lead1", "write", "orders_rw"),
        ] {
            let conn = w.connect(user, access).await;
            let o = w.psql(
                &conn,
                &["-c", "select current_user, coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false)"],
            );
            assert!(o.status.success(), "{hba:?}/{tls}/{access}: {}", stderr(&o));
            assert_eq!(
                stdout(&o),
                format!("{db_user}|{}\n", if expect_tls { "t" } else { "f" }),
                "{hba:?}/{tls}"
            );
        }
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_explained() {
    // require against a server without TLS.
    let w = World::start_with(Options {
        upstream_tls: "require",
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("Airlock could not open a connection to resource \"orders\""),
        "{err}"
    );
    assert!(err.contains("refused TLS"), "{err}");
    w.stop().await;

    // verify-full against a certificate from a CA the gateway does not trust
    // (the system roots).
    let w = World::start_with(Options {
        upstream_ssl: true,
        upstream_tls: "verify-full",
        ..Options::default()
    })
    .await;
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("Airlock could not open a connection to resource \"orders\""),
        "{err}"
    );
    assert!(err.contains("TLS: invalid peer certificate"), "{err}");
    w.stop().await;

    // A wrong injected password: the database's refusal is reported, the
    // password is not.
    let w = World::start().await;
    w.cluster
        .psql(
            "postgres",
            "alter role orders_ro password 'rotated-elsewhere'",
        )
        .unwrap();
    let conn = w.connect("oncall1", "read").await;
    let o = w.psql(&conn, &["-c", "select 1"]);
    let err = stderr(&o);
    assert!(
        err.contains("the database refused the gateway's login"),
        "{err}"
    );
    assert!(err.contains("tell the platform team"), "{err}");
    assert!(
        !err.contains(&std::env::var(common::RO_ENV).unwrap()),
        "{err}"
    );
    w.stop().await;
}
