//! psql through the gateway: verify-full TLS, queries, errors, COPY both
//! ways, and every login refusal with its SQLSTATE.

mod common;

use common::{stderr, stdout, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_verify_full_reads_and_copies() {
    let w = World::start().await;
    let read = w.connect("oncall1", "read").await;
    assert_eq!(read.credential.sslmode, "verify-full");

    let o = w.psql(
        &read,
        &[
            "-c",
            "select count(*) from orders",
            "-c",
            "show default_transaction_read_only",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "600\non\n");

    // TLS with verify-full really happened, and the session is recorded as such.
    let o = w.psql(&read, &["-c", "select 1; select 2"]);
    assert_eq!(stdout(&o), "1\n2\n", "{}", stderr(&o));

    // An error does not end the session: psql without ON_ERROR_STOP goes on.
    let o = std::process::Command::new("psql")
        .args(["-X", "-At", "-c", "select 1/0", "-c", "select 'still here'"])
        .envs(read.env())
        .output()
        .unwrap();
    assert!(stderr(&o).contains("division by zero"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "still here\n");

    // Read access cannot write: the gateway refuses before forwarding
    // (tests/read_only.rs covers this, and the database's own layer).
    let o = w.psql(&read, &["-c", "insert into customers(name) values ('x')"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot run this statement"),
        "{}",
        stderr(&o)
    );

    // \copy out (COPY TO STDOUT) through a read session.
    let out = w.dir.path().join("orders.csv");
    let o = w.psql(
        &read,
        &[
            "-c",
            &format!(
                "\\copy (select id, status from orders order by id) to '{}' csv",
                out.display()
            ),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 600);

    // \copy in (COPY FROM STDIN) through a write session.
    let write = w.connect("lead1", "write").await;
    let input = w.dir.path().join("in.csv");
    let rows: String = (0..1000)
        .map(|i| format!("bulk{i},bulk{i}@example.com\n"))
        .collect();
    std::fs::write(&input, rows).unwrap();
    let o = w.psql(
        &write,
        &[
            "-c",
            &format!(
                "\\copy customers(name, email) from '{}' csv",
                input.display()
            ),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = w.psql(
        &read,
        &[
            "-c",
            "select count(*) from customers where name like 'bulk%'",
        ],
    );
    assert_eq!(stdout(&o), "1000\n");

    // A failing COPY FROM (bad data) reports the upstream error and the session survives.
    std::fs::write(&input, "not,a,valid,row\n").unwrap();
    let o = std::process::Command::new("psql")
        .args([
            "-X",
            "-At",
            "-c",
            &format!(
                "\\copy customers(name, email) from '{}' csv",
                input.display()
            ),
            "-c",
            "select 'after copy'",
        ])
        .envs(write.env())
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("extra data after last expected column"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "after copy\n");

    // Sessions and their statements are in the audit log and its index.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut index = airlock_audit::index::Index::open(
        &airlock_audit::index_path(&w.data_dir()),
        &airlock_audit::audit_dir(&w.data_dir()),
    )
    .unwrap();
    let mut tailer = index.tailer().unwrap();
    index.catch_up(&mut tailer).unwrap();
    let sessions = index
        .sessions(&airlock_audit::index::SessionQuery {
            user: Some("oncall1".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(sessions.len() >= 5, "{sessions:?}");
    assert!(sessions
        .iter()
        .all(|s| s.tls && s.access == "read" && s.ended_ms.is_some()));
    let all: Vec<String> = sessions
        .iter()
        .flat_map(|s| {
            index
                .records(&airlock_audit::index::RecordQuery {
                    session: Some(s.id.clone()),
                    kinds: vec!["statement".into()],
                    limit: 100,
                    ..Default::default()
                })
                .unwrap()
        })
        .filter_map(|e| match e.event {
            airlock_audit::Event::Statement(st) => Some(st.display_text()),
            _ => None,
        })
        .collect();
    assert!(
        all.iter().any(|t| t == "select count(*) from orders"),
        "{all:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals_have_the_right_sqlstate_and_advice() {
    let w = World::start().await;
    let good = w.connect("oncall1", "read").await;

    let try_login = |user: &str, db: &str, password: &str| {
        let mut env = good.env();
        for (k, v) in env.iter_mut() {
            match *k {
                "PGUSER" => *v = user.to_owned(),
                "PGDATABASE" => *v = db.to_owned(),
                "PGPASSWORD" => *v = password.to_owned(),
                _ => {}
            }
        }
        // VERBOSITY verbose prints the SQLSTATE.
        std::process::Command::new("psql")
            .args(["-X", "-At", "-c", "select 1"])
            .env("PGOPTIONS", "")
            .envs(env)
            .env("PGAPPNAME", "refusal-test")
            .output()
            .unwrap()
    };
    let pw = good.credential.password.clone();

    // (user, database, password, expected fragments)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "oncall1",
            "orders",
            "wrong-password",
            &[
                "password authentication failed for user \"oncall1\"",
                "airlock connect orders",
            ],
        ),
        // Unknown names fail like a wrong password (issue 18, section 6;
        // tests/login_privacy.rs): no resource list, nothing to enumerate.
        (
            "ghost",
            "orders",
            &pw,
            &[
                "password authentication failed for user \"ghost\"",
                "airlock connect orders",
            ],
        ),
        (
            "oncall1",
            "payments",
            &pw,
            &[
                "password authentication failed for user \"oncall1\"",
                "airlock connect payments",
            ],
        ),
        // A credential is single-purpose: oncall1's is no good for lead1.
        (
            "lead1",
            "orders",
            &pw,
            &["password authentication failed for user \"lead1\""],
        ),
    ];
    for (user, db, password, fragments) in cases {
        let o = try_login(user, db, password);
        assert!(!o.status.success(), "{user}/{db} logged in");
        let err = stderr(&o);
        for f in *fragments {
            assert!(err.contains(f), "{user}/{db}: {err}");
        }
    }

    // SQLSTATEs, checked with tokio-postgres which exposes them.
    let cfg = |user: &str, db: &str, password: &str| {
        let mut c = w.tokio_pg_config(&good);
        c.user(user).dbname(db).password(password);
        c
    };
    let code = |r: Result<_, tokio_postgres::Error>| -> String {
        match r {
            Ok(_) => "connected".into(),
            Err(e) => e
                .code()
                .map(|c| c.code().to_owned())
                .unwrap_or_else(|| e.to_string()),
        }
    };
    let tls = w.tls(&good);
    assert_eq!(
        code(
            cfg("oncall1", "orders", "nope")
                .connect(tls.clone())
                .await
                .map(|_| ())
        ),
        "28P01"
    );
    assert_eq!(
        code(
            cfg("ghost", "orders", &pw)
                .connect(tls.clone())
                .await
                .map(|_| ())
        ),
        "28P01"
    );
    assert_eq!(
        code(
            cfg("oncall1", "payments", &pw)
                .connect(tls.clone())
                .await
                .map(|_| ())
        ),
        "28P01"
    );

    // An expired credential is told apart from a wrong one.
    let short = w.connect_ttl("oncall1", "read", Some("1s")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let o = w.psql(&short, &["-c", "select 1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("airlock connect orders"),
        "{}",
        stderr(&o)
    );

    // Plaintext is refused unless the gateway allows it.
    let mut env = good.env();
    for (k, v) in env.iter_mut() {
        if *k == "PGSSLMODE" {
            *v = "disable".into();
        }
    }
    let o = std::process::Command::new("psql")
        .args(["-X", "-c", "select 1"])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("Airlock accepts only TLS connections"),
        "{}",
        stderr(&o)
    );

    // The good credential still works after all that.
    let o = w.psql(&good, &["-c", "select 42"]);
    assert_eq!(stdout(&o), "42\n", "{}", stderr(&o));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_when_its_credential_expires() {
    let w = World::start().await;
    // Long enough that a loaded machine still logs in and runs `select 1`.
    let conn = w.connect_ttl("oncall1", "read", Some("3s")).await;
    let client = w.tokio_pg(&conn).await;
    assert_eq!(
        client
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    let started = std::time::Instant::now();
    // A statement still running at expiry is cut off with a FATAL.
    let err = client.query("select pg_sleep(10)", &[]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "ended after {elapsed:?}"
    );
    let db = err
        .as_db_error()
        .map(|e| (e.code().code().to_owned(), e.message().to_owned()));
    assert_eq!(
        db,
        Some((
            "57P01".into(),
            "terminating connection because the session credential expired".into()
        )),
        "{err}"
    );
    w.stop().await;
}
