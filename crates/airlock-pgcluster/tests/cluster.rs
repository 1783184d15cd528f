//! Starts real PostgreSQL clusters: these tests need the server binaries
//! (`apt-get install postgresql`) and take a few seconds each.

use airlock_pgcluster::{pid_alive, seed_orders, ClusterError, ClusterOptions, HbaMode, PgCluster};

fn start() -> PgCluster {
    PgCluster::start(ClusterOptions::default()).expect("start a throwaway cluster")
}

#[test]
fn psql_runs_select_1() {
    let cluster = start();
    assert_eq!(cluster.host(), "127.0.0.1");
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert_eq!(cluster.psql("postgres", "select 1").unwrap(), "1\n");
    let url = cluster.superuser_url("orders");
    assert!(url.starts_with("postgres://postgres:"), "{url}");
    assert!(
        url.ends_with(&format!("@127.0.0.1:{}/orders", cluster.port())),
        "{url}"
    );
}

#[test]
fn wrong_password_and_failing_sql_are_errors() {
    let cluster = start();
    let err = cluster
        .psql_as("postgres", "not-the-password", "postgres", "select 1")
        .unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    let err = cluster
        .psql("postgres", "select * from no_such_table")
        .unwrap_err();
    assert!(matches!(err, ClusterError::Psql { .. }), "{err}");
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[test]
fn seeded_roles_have_read_and_write_access() {
    let cluster = start();
    seed_orders(&cluster, "ro_pw", "rw_pw").unwrap();

    let count = |user: &str, pw: &str, table: &str| {
        cluster
            .psql_as(user, pw, "orders", &format!("select count(*) from {table}"))
            .unwrap()
    };
    assert_eq!(count("orders_ro", "ro_pw", "customers"), "200\n");
    assert_eq!(count("orders_ro", "ro_pw", "orders"), "600\n");

    let insert =
        "insert into customers (name, email) values ('New', 'new@example.com') returning id";
    let err = cluster
        .psql_as("orders_ro", "ro_pw", "orders", insert)
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    // The sequence was moved past the explicit ids, so a plain insert works.
    assert_eq!(
        cluster
            .psql_as("orders_rw", "rw_pw", "orders", insert)
            .unwrap(),
        "201\n"
    );
    cluster
        .psql_as(
            "orders_rw",
            "rw_pw",
            "orders",
            "delete from orders where id = 1",
        )
        .unwrap();

    // Default privileges: a table created later by postgres is readable by orders_ro.
    cluster
        .psql(
            "orders",
            "create table later (x int); insert into later values (7);",
        )
        .unwrap();
    assert_eq!(
        cluster
            .psql_as("orders_ro", "ro_pw", "orders", "select x from later")
            .unwrap(),
        "7\n"
    );

    // Seeding again is harmless and keeps the rows.
    seed_orders(&cluster, "ro_pw", "rw_pw").unwrap();
    assert_eq!(count("orders_ro", "ro_pw", "customers"), "201\n");
}

#[test]
fn md5_mode_stores_md5_passwords() {
    let cluster = PgCluster::start(ClusterOptions {
        hba: HbaMode::Md5,
        ..ClusterOptions::default()
    })
    .unwrap();
    seed_orders(&cluster, "ro_pw", "rw_pw").unwrap();
    let sql = "select rolname || ' ' || left(rolpassword, 3) from pg_authid \
               where rolname in ('postgres', 'orders_ro') order by 1";
    assert_eq!(
        cluster.psql("postgres", sql).unwrap(),
        "orders_ro md5\npostgres md5\n"
    );
    assert_eq!(
        cluster
            .psql_as("orders_ro", "ro_pw", "orders", "select 1")
            .unwrap(),
        "1\n"
    );
}

#[test]
fn two_clusters_in_parallel_get_different_ports() {
    let handles: Vec<_> = (0..2).map(|_| std::thread::spawn(start)).collect();
    let clusters: Vec<PgCluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(clusters[0].port(), clusters[1].port());
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    for cluster in &clusters {
        assert_eq!(cluster.psql("postgres", "select 1").unwrap(), "1\n");
    }
}

#[test]
fn drop_stops_the_server_and_removes_the_temp_dir() {
    let cluster = start();
    let data_dir = cluster.data_dir().to_path_buf();
    let pid = cluster
        .postmaster_pid()
        .expect("running cluster has a postmaster pid");
    assert!(pid_alive(pid));
    drop(cluster);
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
    assert!(!pid_alive(pid), "postmaster {pid} still running");
}

#[test]
fn stop_is_idempotent_and_a_given_data_dir_is_kept_and_reused() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("pgdata");
    let opts = ClusterOptions {
        data_dir: Some(data_dir.clone()),
        ..ClusterOptions::default()
    };

    let mut cluster = PgCluster::start(opts.clone()).unwrap();
    cluster
        .psql("postgres", "create table kept (x int)")
        .unwrap();
    let pid = cluster.postmaster_pid().unwrap();
    cluster.stop().unwrap();
    cluster.stop().unwrap();
    assert!(!pid_alive(pid));
    assert_eq!(cluster.postmaster_pid(), None);
    drop(cluster);
    assert!(data_dir.join("PG_VERSION").is_file());

    let cluster = PgCluster::start(opts).unwrap();
    assert_eq!(
        cluster
            .psql("postgres", "select count(*) from kept")
            .unwrap(),
        "0\n"
    );
}

#[test]
fn drop_during_a_panic_still_stops_the_server() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let cluster = start();
        tx.send((
            cluster.postmaster_pid().unwrap(),
            cluster.data_dir().to_path_buf(),
        ))
        .unwrap();
        panic!("test body failed while the cluster was up");
    })
    .join();
    assert!(result.is_err());
    let (pid, data_dir) = rx.recv().unwrap();
    assert!(!pid_alive(pid), "postmaster {pid} survived the panic");
    assert!(!data_dir.exists());
}
