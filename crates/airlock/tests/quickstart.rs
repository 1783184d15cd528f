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

/// Starts `airlock quickstart` with `stdout` as its standard output and
/// waits (on its stderr) until the gateway listens. Returns the child, the
/// throwaway PostgreSQL's port and the rest of stderr (drained meanwhile).
fn start_with_stdout(
    dir: &std::path::Path,
    stdout: Stdio,
) -> (std::process::Child, u16, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["quickstart", "--pg-port", "0", "--http-port", "0", "--dir"])
        .arg(dir.join("qs"))
        .env("AIRLOCK_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut pg_port = None;
    let started = Instant::now();
    loop {
        let Some(Ok(line)) = stderr.next() else {
            panic!("quickstart ended before it was ready:\n{}", seen.join("\n"));
        };
        if let Some(rest) = line.split(" on 127.0.0.1:").nth(1) {
            if line.starts_with("PostgreSQL") {
                pg_port = rest.split_whitespace().next().and_then(|p| p.parse().ok());
            }
        }
        let ready = line.contains("airlock gateway listening");
        seen.push(line);
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not ready in 120 s:\n{}",
            seen.join("\n")
        );
    }
    let rest = std::thread::spawn(move || {
        let mut all = seen;
        all.extend(stderr.map_while(Result::ok));
        all.join("\n")
    });
    (child, pg_port.expect("the cluster's port is printed"), rest)
}

/// Waits up to `limit` for the child to exit.
fn exits_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("quickstart did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigint(child: &std::process::Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
}

/// Regression: `airlock quickstart | tee log`, then Ctrl-C (which ends tee
/// too): writing to the closed stdout panicked, or hung the stop, and
/// PostgreSQL was left running. Every write to stdout now ignores errors.
#[test]
fn ctrl_c_with_a_closed_stdout_stops_the_gateway_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    // The reader is gone before anything is written.
    drop(reader);
    let (mut child, pg_port, stderr) = start_with_stdout(dir.path(), writer.into());
    std::thread::sleep(Duration::from_millis(500));
    sigint(&child);
    let status = exits_within(&mut child, Duration::from_secs(20));
    let log = stderr.join().unwrap();
    assert!(status.success(), "quickstart exited with {status}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "PostgreSQL still running on {pg_port}"
    );
}

/// A stop stuck on a stdout nobody reads (the pipe is full) must not make
/// the process unkillable: a second Ctrl-C exits at once, and the
/// throwaway PostgreSQL is still stopped.
#[test]
fn a_second_ctrl_c_forces_the_exit_and_still_stops_postgresql() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    // Fill the pipe: every write the gateway makes to stdout blocks.
    writer.write_all(&vec![b'.'; 65536]).unwrap();
    let (mut child, pg_port, stderr) = start_with_stdout(dir.path(), writer.into());
    std::thread::sleep(Duration::from_millis(500));
    sigint(&child);
    std::thread::sleep(Duration::from_millis(100));
    sigint(&child);
    let status = exits_within(&mut child, Duration::from_secs(15));
    let log = stderr.join().unwrap();
    assert!(
        status.success() || status.code() == Some(130),
        "quickstart exited with {status}:\n{log}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "PostgreSQL still running on {pg_port}:\n{log}"
    );
    drop(reader);
}
