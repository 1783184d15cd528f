//! The README's main command end to end: `airlock quickstart`, then the
//! commands it prints (`login`, `connect ... -- psql`), then Ctrl-C leaves
//! nothing running.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn quickstart_then_login_connect_and_ctrl_c() {
    let bin = env!("CARGO_BIN_EXE_airlock");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut child = Command::new(bin)
        .args(["quickstart", "--pg-port", "0", "--http-port", "0", "--dir"])
        .arg(dir.path().join("qs"))
        .env("AIRLOCK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let started = Instant::now();
    for line in stdout.lines() {
        let line = line.unwrap();
        let done = line.contains("Press Ctrl-C");
        lines.push(line);
        if done || started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(text.contains("Airlock is ready."), "{text}");
    // `echo TOKEN | airlock login ...`: the token goes in on stdin, not argv.
    let login = lines
        .iter()
        .find(|l| l.contains("| airlock login"))
        .expect("a login command is printed");
    let (echo, login) = login.split_once(" | ").unwrap();
    let token = echo.split_whitespace().nth(1).unwrap().to_owned();
    assert!(!login.contains("--token"), "{login}");
    let args: Vec<&str> = login.split_whitespace().skip(1).collect();
    let pg_line = lines
        .iter()
        .find(|l| l.contains("PostgreSQL clients:"))
        .unwrap();
    let gateway_pg = pg_line.split_whitespace().last().unwrap().to_owned();

    let run = |args: &[&str]| {
        let o = Command::new(bin)
            .args(args)
            .env("AIRLOCK_HOME", &home)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "airlock {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut login = Command::new(bin)
        .args(&args)
        .env("AIRLOCK_HOME", &home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = login.stdin.take().unwrap();
        writeln!(stdin, "{token}").unwrap();
    }
    let o = login.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("as oncall1"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.join("credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the stored token is private");
    assert!(run(&["resources"]).contains("orders"));
    let out = run(&[
        "connect",
        "orders",
        "--",
        "psql",
        "-X",
        "-At",
        "-c",
        "select count(*) from orders",
    ]);
    assert_eq!(out.trim(), "600");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["connect", "orders", "--json"])).unwrap();
    assert!(json["uri"]
        .as_str()
        .unwrap()
        .contains("sslmode=verify-full"));
    // psql with the printed URI, verify-full against the saved CA.
    let o = Command::new("psql")
        .args([
            json["uri"].as_str().unwrap(),
            "-X",
            "-At",
            "-c",
            "select current_user, (select ssl from pg_stat_ssl where pid = pg_backend_pid())",
        ])
        .output()
        .unwrap();
    // The gateway reaches the throwaway cluster over TLS it verified
    // (tls = "verify-full" against the cluster's CA): the safe form.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "orders_ro|t",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The example runbooks are loaded, and each of the tour's runs for real:
    // sql through the gateway, http to the stand-in pipeline, a process.
    let list = run(&["runbooks"]);
    for name in [
        "verify-replica-lag",
        "rollback-service",
        "restart-instance",
        "kill-long-queries",
    ] {
        assert!(list.contains(name), "{list}");
    }
    let out = run(&["run", "verify-replica-lag"]);
    assert!(out.contains("run verify-replica-lag: ok"), "{out}");
    let out = run(&[
        "run",
        "rollback-service",
        "-p",
        "service=checkout",
        "-p",
        "version=v1.4.1",
        "--reason",
        "INC-1 tour",
    ]);
    assert!(
        out.contains("(HTTP 202)") && out.contains("queued"),
        "{out}"
    );
    let out = run(&["run", "restart-instance", "-p", "instance=orders-7"]);
    assert!(out.contains("restarting orders-7"), "{out}");
    let out = run(&[
        "run",
        "kill-long-queries",
        "-p",
        "min_seconds=60",
        "--reason",
        "INC-1 tour",
    ]);
    assert!(out.contains("needs approval: request req_"), "{out}");

    // The sessions just run are listed, in a table and as JSON.
    std::thread::sleep(Duration::from_millis(300));
    let table = run(&["sessions"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("orders") && l.contains("read")),
        "{table}"
    );
    let sessions: Vec<serde_json::Value> =
        serde_json::from_str(&run(&["sessions", "--json"])).unwrap();
    assert!(sessions.len() >= 2, "{sessions:?}");
    assert!(sessions
        .iter()
        .all(|s| s["user"] == "oncall1" && s["tls"] == true));

    // Ctrl-C stops the gateway and PostgreSQL.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "quickstart exited with {status}");
    assert!(
        std::net::TcpStream::connect(&gateway_pg).is_err(),
        "gateway still listening"
    );
    let config = std::fs::read_to_string(dir.path().join("qs/airlock.toml")).unwrap();
    let port: u16 = config
        .lines()
        .find_map(|l| l.strip_prefix("port = "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still running on {port}"
    );
}
