//! Runs against real parts: a local HTTP server that records exactly what arrived, real processes,
//! real process groups. Only the SQL executor is a fake, because the gateway implements it and
//! tests it against a real PostgreSQL; here it records what the runner hands over.
//!
//! The injection tests are the heart of it: each hostile value must arrive as exactly one piece of
//! data in the place the runbook declared, and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_runbook::{
    parse, BoxFuture, Environment, Plan, PlanProblem, RunEvent, RunOutcome, RunStatus, Runbook,
    Runner, SqlExecutor, SqlOutput, SqlRequest, StepStatus,
};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::sync::mpsc;

fn runbook(text: &str) -> Runbook {
    parse(Path::new("test.toml"), text).unwrap_or_else(|found| {
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    })
}

fn runner(env: &[(&str, &str)]) -> Runner {
    // reqwest is built without a default crypto provider; the gateway installs ring's at start.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Runner::new()
        .unwrap()
        .with_env(Environment::Fixed(Arc::new(env)))
}

fn plan(rb: &Runbook, given: &[(&str, &str)]) -> Plan {
    let given = given
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let params = rb.validate(&given).unwrap();
    rb.plan(&params).unwrap()
}

/// Runs `plan`, reading events concurrently as a gateway would.
async fn run(runner: &Runner, plan: &Plan) -> (RunOutcome, Vec<RunEvent>) {
    let (tx, mut rx) = mpsc::channel(64);
    let collect = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let outcome = runner.run(plan, &tx).await;
    drop(tx);
    (outcome, collect.await.unwrap())
}

/// Values that would change a command line, a URL, a JSON document or a shell script if they were
/// spliced into one. `mark` is a file that must never be created.
fn hostile_values(mark: &Path) -> Vec<String> {
    let m = mark.display();
    vec![
        "plain".into(),
        "it's \"quoted\"".into(),
        "a; DROP TABLE x; --".into(),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("x; touch {m}; x"),
        "line1\nline2\r\nX-Injected: 1".into(),
        "../../etc/passwd".into(),
        "%2e%2e".into(),
        "..%2f..".into(),
        "...".into(),
        "&x=y".into(),
        "#frag".into(),
        "?a=b/c".into(),
        "with  spaces ".into(),
        "ünï 😀".into(),
        "\u{202E}rtl\u{200F}mark".into(),
        "{{value}}".into(),
        "%".into(),
        "-n".into(),
    ]
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// One request as it arrived, before any decoding.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Records every request; `/fail` answers 500, `/redirect` 302 to `/elsewhere`, `/big` 10 MB.
async fn server() -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                    query: uri.query().map(str::to_owned),
                    headers: headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                        .collect(),
                    body: body.to_vec(),
                });
                match uri.path() {
                    "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                    "/redirect" => {
                        (StatusCode::FOUND, [("location", "/elsewhere")], "").into_response()
                    }
                    "/big" => "x".repeat(10 << 20).into_response(),
                    _ => (StatusCode::OK, "ok").into_response(),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, seen }
}

const HTTP_RUNBOOK: &str = r#"
name = "inj-http"
roles = ["oncall"]

[[param]]
name = "value"
type = "string"
max_len = 1000

[[step]]
kind = "http"
method = "POST"
url = "http://ADDR/deploy/{{value}}/x?v={{value}}&fixed=1"
headers = { X-Fixed = "yes" }
body = { value = "{{value}}", text = "v={{ value }}", n = 1 }
"#;

#[tokio::test]
async fn http_values_stay_one_path_segment_one_query_value_one_json_string() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("pwned");
    let srv = server().await;
    let rb = runbook(&HTTP_RUNBOOK.replace("ADDR", &srv.addr.to_string()));
    let runner = runner(&[]);
    let values = hostile_values(&mark);
    for value in &values {
        let (outcome, _) = run(&runner, &plan(&rb, &[("value", value)])).await;
        assert_eq!(outcome.status, RunStatus::Ok, "{value:?}: {outcome:?}");
    }
    let seen = srv.seen();
    assert_eq!(seen.len(), values.len());
    let baseline: BTreeSet<&str> = seen[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    for (value, req) in values.iter().zip(&seen) {
        assert_eq!(req.method, "POST");
        // The declared path, with the value as one segment that decodes back to exactly it.
        let segment = req
            .path
            .strip_prefix("/deploy/")
            .and_then(|p| p.strip_suffix("/x"))
            .unwrap_or_else(|| panic!("{value:?} went to {}", req.path));
        assert!(!segment.contains('/'), "{value:?}: {segment}");
        assert_eq!(percent_decode(segment), *value);
        // Exactly the declared query keys.
        let query = req.query.as_deref().unwrap();
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .map(|p| p.split_once('=').unwrap())
            .collect();
        assert_eq!(pairs.len(), 2, "{value:?}: {query}");
        assert_eq!((pairs[0].0, pairs[1]), ("v", ("fixed", "1")));
        assert_eq!(percent_decode(pairs[0].1), *value);
        // The JSON fields are exactly the value.
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"value": value, "text": format!("v={value}"), "n": 1})
        );
        // No header came or went.
        let names: BTreeSet<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, baseline, "{value:?}");
        assert_eq!(req.header("x-fixed"), Some(&b"yes"[..]));
    }
    assert!(!mark.exists());
}

#[tokio::test]
async fn dot_and_empty_path_segments_are_refused_before_sending() {
    let srv = server().await;
    let rb = runbook(&HTTP_RUNBOOK.replace("ADDR", &srv.addr.to_string()));
    let cases: &[(&str, PlanProblem)] = &[
        (
            "..",
            PlanProblem::DotSegment {
                segment: "%2E%2E".into(),
                decoded: "..".into(),
            },
        ),
        (
            ".",
            PlanProblem::DotSegment {
                segment: "%2E".into(),
                decoded: ".".into(),
            },
        ),
        ("", PlanProblem::EmptySegment),
    ];
    for (value, expected) in cases {
        let given = BTreeMap::from([("value".to_owned(), value.to_string())]);
        let params = rb.validate(&given).unwrap();
        let err = rb.plan(&params).unwrap_err();
        assert_eq!(err.index, 0);
        assert_eq!(err.problem, *expected, "{value:?}");
        assert!(err.to_string().starts_with("step 0 (http 0): "), "{err}");
    }
    assert!(srv.seen().is_empty());
}

#[tokio::test]
async fn body_values_keep_their_declared_type() {
    let srv = server().await;
    let rb = runbook(
        &r#"
name = "typed"
roles = ["oncall"]
[[param]]
name = "n"
type = "int"
[[param]]
name = "b"
type = "bool"
[[param]]
name = "s"
type = "string"
[[step]]
kind = "http"
method = "PUT"
url = "http://ADDR/typed"
body = { n = "{{n}}", b = "{{b}}", s = "{{s}}", mixed = "n={{n}}", list = ["{{n}}", 2.5, true] }
"#
        .replace("ADDR", &srv.addr.to_string()),
    );
    let (outcome, _) = run(
        &runner(&[]),
        &plan(&rb, &[("n", "-7"), ("b", "false"), ("s", "5")]),
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Ok);
    let seen = srv.seen();
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"n": -7, "b": false, "s": "5", "mixed": "n=-7", "list": [-7, 2.5, true]})
    );
    assert_eq!(
        seen[0].header("content-type"),
        Some(&b"application/json"[..])
    );
}

#[tokio::test]
async fn header_values_with_line_breaks_are_refused() {
    let rb = runbook(
        r#"
name = "hdr"
roles = ["oncall"]
[[param]]
name = "value"
type = "string"
[[step]]
kind = "http"
method = "GET"
url = "http://127.0.0.1:9/x"
headers = { X-Value = "v={{value}}" }
"#,
    );
    for value in ["a\r\nX-Injected: 1", "a\nb", "tab\tok"] {
        let given = BTreeMap::from([("value".to_owned(), value.to_owned())]);
        let result = rb.plan(&rb.validate(&given).unwrap());
        if value.contains('\n') {
            assert_eq!(
                result.unwrap_err().problem,
                PlanProblem::HeaderValue("x-value".into())
            );
        } else {
            assert!(result.is_ok());
        }
    }
}

const COMMAND_RUNBOOK: &str = r#"
name = "inj-cmd"
roles = ["oncall"]

[[param]]
name = "value"
type = "string"
max_len = 1000
# "-n" among the hostile values must still arrive as one argument; without
# this, a value starting with '-' as a whole argument is refused (plan.rs).
allow_leading_dash = true

[[step]]
name = "args"
kind = "command"
argv = ["/bin/sh", "SCRIPT", "{{value}}", "fixed"]
env = ["PATH", "ALLOWED", "ALLOWED_BUT_UNSET"]
set_env = { VALUE = "{{value}}" }

[[step]]
name = "env"
kind = "command"
argv = ["/usr/bin/env", "-0"]
env = ["PATH", "ALLOWED", "ALLOWED_BUT_UNSET"]
set_env = { VALUE = "{{value}}" }
"#;

#[tokio::test]
async fn command_values_are_one_argument_each_and_the_environment_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("pwned");
    // A shell script is the harshest receiver: it passes "$@" on, properly quoted, and must not
    // evaluate anything. It is read by /bin/sh rather than executed, so there is no race with a
    // parallel test's fork holding the new file open for writing (ETXTBSY).
    let script = dir.path().join("args.sh");
    std::fs::write(&script, "printf '%s\\0' \"$@\"\n").unwrap();
    let rb = runbook(&COMMAND_RUNBOOK.replace("SCRIPT", script.to_str().unwrap()));
    let runner = runner(&[
        ("PATH", "/usr/bin:/bin"),
        ("ALLOWED", "yes"),
        ("NOT_ALLOWED", "leak"),
    ]);
    // Without the runbook's consent, "-n" is not even planned.
    let strict = runbook(
        &COMMAND_RUNBOOK
            .replace("SCRIPT", script.to_str().unwrap())
            .replace("allow_leading_dash = true", ""),
    );
    let given = BTreeMap::from([("value".to_owned(), "-n".to_owned())]);
    assert!(strict.plan(&strict.validate(&given).unwrap()).is_err());
    for value in hostile_values(&mark) {
        let (outcome, _) = run(&runner, &plan(&rb, &[("value", &value)])).await;
        assert_eq!(outcome.status, RunStatus::Ok, "{value:?}: {outcome:?}");
        assert_eq!(outcome.steps[0].output, format!("{value}\0fixed\0"));
        let env: BTreeMap<&str, &str> = outcome.steps[1]
            .output
            .split('\0')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        assert_eq!(
            env,
            BTreeMap::from([
                ("ALLOWED", "yes"),
                ("PATH", "/usr/bin:/bin"),
                ("VALUE", value.as_str())
            ]),
            "{value:?}"
        );
    }
    assert!(!mark.exists());
}

#[tokio::test]
async fn only_allowlisted_variables_of_the_gateway_process_pass() {
    // Cargo sets both in the test process; only the listed one may reach the child.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    let rb = runbook(
        r#"
name = "env"
roles = ["oncall"]
[[step]]
kind = "command"
argv = ["/usr/bin/env"]
env = ["CARGO_MANIFEST_DIR"]
"#,
    );
    let runner = Runner::new().unwrap();
    let (outcome, _) = run(&runner, &plan(&rb, &[])).await;
    assert_eq!(
        outcome.steps[0].output,
        format!("CARGO_MANIFEST_DIR={}\n", env!("CARGO_MANIFEST_DIR"))
    );
}

/// Records requests; `SELECT pg_sleep(...)` never returns.
#[derive(Default)]
struct FakeSql {
    seen: Mutex<Vec<SqlRequest>>,
}

impl SqlExecutor for FakeSql {
    fn execute(&self, request: SqlRequest) -> BoxFuture<Result<SqlOutput, String>> {
        self.seen.lock().unwrap().push(request.clone());
        Box::pin(async move {
            if request.sql.contains("pg_sleep") {
                std::future::pending::<()>().await;
            }
            if request.sql.contains("fail") {
                return Err("permission denied for table secrets".to_owned());
            }
            Ok(SqlOutput {
                columns: vec!["v".into(), "n".into()],
                rows: vec![request.args.iter().cloned().map(Some).collect()],
                row_count: 1,
                command_tag: "SELECT 1".into(),
            })
        })
    }
}

const SQL_TEXT: &str = "SELECT $1::text AS v, $2::int AS n -- '{not a template}'";

#[tokio::test]
async fn sql_text_is_never_rendered_and_values_are_bound_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let rb = runbook(&format!(
        r#"
name = "inj-sql"
roles = ["oncall"]
[[param]]
name = "value"
type = "string"
max_len = 1000
[[param]]
name = "n"
type = "int"
[[step]]
kind = "sql"
resource = "orders"
access = "write"
sql = "{SQL_TEXT}"
args = ["{{{{value}}}}", "{{{{n}}}}"]
max_rows = 10
"#
    ));
    let fake = Arc::new(FakeSql::default());
    let runner = runner(&[]).with_sql(fake.clone());
    let values = hostile_values(&dir.path().join("pwned"));
    for value in &values {
        let (outcome, _) = run(&runner, &plan(&rb, &[("value", value), ("n", "5")])).await;
        assert_eq!(outcome.status, RunStatus::Ok);
        assert_eq!(outcome.steps[0].rows, Some(1));
    }
    let seen = fake.seen.lock().unwrap();
    for (value, request) in values.iter().zip(seen.iter()) {
        assert_eq!(request.sql, SQL_TEXT);
        assert_eq!(request.args, [value.as_str(), "5"]);
        assert_eq!(request.resource.as_str(), "orders");
        assert_eq!(request.access, airlock_config::Access::Write);
        assert_eq!(request.max_rows, 10);
    }
}

#[tokio::test]
async fn sql_errors_and_hangs_fail_the_step() {
    let fake = Arc::new(FakeSql::default());
    let runner = runner(&[]).with_sql(fake);
    let cases = [
        (
            "SELECT fail",
            StepStatus::Failed,
            "permission denied for table secrets",
        ),
        (
            "SELECT pg_sleep(60)",
            StepStatus::TimedOut,
            "stopped at the step's limit of 200ms",
        ),
    ];
    for (sql, status, error) in cases {
        let rb = runbook(&format!(
            "name = \"s\"\nroles = [\"oncall\"]\n[[step]]\nkind = \"sql\"\nresource = \"orders\"\naccess = \"read\"\nsql = \"{sql}\"\ntimeout = \"200ms\"\n"
        ));
        let (outcome, _) = run(&runner, &plan(&rb, &[])).await;
        assert_eq!(outcome.steps[0].status, status, "{sql}");
        assert!(
            outcome.steps[0].error.as_deref().unwrap().contains(error),
            "{outcome:?}"
        );
    }
    // Without an executor, sql steps fail rather than go around the gateway.
    let rb = runbook("name = \"s\"\nroles = [\"oncall\"]\n[[step]]\nkind = \"sql\"\nresource = \"orders\"\naccess = \"read\"\nsql = \"SELECT 1\"\n");
    let (outcome, _) = run(&runner_without_sql(), &plan(&rb, &[])).await;
    assert!(outcome.steps[0]
        .error
        .as_deref()
        .unwrap()
        .contains("no SQL executor"));
}

fn runner_without_sql() -> Runner {
    runner(&[])
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}

async fn assert_dies(pid: u32) {
    for _ in 0..100 {
        if is_dead(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} is still running");
}

async fn read_pid(file: &PathBuf) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {}", file.display());
}

/// A script that forks a grandchild (its pid into $PIDFILE), then does `then`.
fn forking_runbook(pidfile: &Path, then: &str, timeout: &str) -> Runbook {
    runbook(&format!(
        r#"
name = "fork"
roles = ["oncall"]
[[step]]
kind = "command"
argv = ["/bin/sh", "-c", "/bin/sleep 30 & echo $! > \"$PIDFILE\"; {then}"]
set_env = {{ PIDFILE = "{}" }}
timeout = "{timeout}"
"#,
        pidfile.display()
    ))
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let rb = forking_runbook(&pidfile, "/bin/sleep 30", "300ms");
    let (outcome, _) = run(&runner(&[]), &plan(&rb, &[])).await;
    let step = &outcome.steps[0];
    assert_eq!(step.status, StepStatus::TimedOut);
    assert_eq!(outcome.status, RunStatus::TimedOut);
    assert!(
        (300..2000).contains(&step.duration_ms),
        "{}",
        step.duration_ms
    );
    assert_eq!(
        step.error.as_deref(),
        Some("timed out: stopped at the step's limit of 300ms")
    );
    assert_dies(read_pid(&pidfile).await).await;
}

#[tokio::test]
async fn a_step_leaves_no_process_behind_when_it_exits() {
    // The grandchild holds stdout open; without the group kill the step would wait 30 s for EOF.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let rb = forking_runbook(&pidfile, "echo started", "20s");
    let (outcome, _) = run(&runner(&[]), &plan(&rb, &[])).await;
    let step = &outcome.steps[0];
    assert_eq!(step.status, StepStatus::Ok, "{step:?}");
    assert_eq!(step.output, "started\n");
    assert!(step.duration_ms < 5000, "{}", step.duration_ms);
    assert_dies(read_pid(&pidfile).await).await;
}

#[tokio::test]
async fn a_cancelled_run_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let rb = forking_runbook(&pidfile, "/bin/sleep 30", "20s");
    let plan = plan(&rb, &[]);
    let runner = runner(&[]);
    let (tx, _rx) = mpsc::channel(64);
    let run = runner.run(&plan, &tx);
    assert!(tokio::time::timeout(Duration::from_millis(500), run)
        .await
        .is_err());
    assert_dies(read_pid(&pidfile).await).await;
}

#[tokio::test]
async fn the_run_timeout_bounds_a_request_that_never_gets_an_answer() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let rb = runbook(&format!(
        r#"
name = "never"
roles = ["oncall"]
timeout = "500ms"
[[step]]
kind = "http"
method = "GET"
url = "http://{addr}/never"
[[step]]
kind = "command"
argv = ["/bin/true"]
"#
    ));
    let (outcome, _) = run(&runner(&[]), &plan(&rb, &[])).await;
    assert_eq!(outcome.status, RunStatus::TimedOut);
    let step = &outcome.steps[0];
    assert_eq!(step.status, StepStatus::TimedOut);
    assert!(
        (450..3000).contains(&step.duration_ms),
        "{}",
        step.duration_ms
    );
    assert_eq!(
        step.error.as_deref(),
        Some("timed out: stopped at the run's limit of 500ms")
    );
    assert_eq!(outcome.steps[1].status, StepStatus::Skipped);
}

#[tokio::test]
async fn output_is_cut_at_the_limit_and_the_child_never_blocks() {
    let cases = [
        // 10 MB on stdout: the child must finish, the output stops at 1 KiB.
        (
            "head -c 10000000 /dev/zero | tr '\\\\0' a; echo done >&2",
            1024,
            true,
        ),
        // Exactly the limit is not truncated.
        (
            "head -c 1024 /dev/zero | tr '\\\\0' a; echo done >&2",
            1024,
            false,
        ),
        ("echo done >&2", 0, false),
    ];
    for (script, a_count, truncated) in cases {
        let rb = runbook(&format!(
            r#"
name = "big"
roles = ["oncall"]
[[step]]
kind = "command"
argv = ["/bin/sh", "-c", "{script}"]
env = ["PATH"]
max_output = "1KiB"
timeout = "30s"
"#
        ));
        let (outcome, _) = run(&runner(&[("PATH", "/usr/bin:/bin")]), &plan(&rb, &[])).await;
        let step = &outcome.steps[0];
        assert_eq!(step.status, StepStatus::Ok, "{script}: {:?}", step.error);
        assert_eq!(step.output.matches('a').count(), a_count, "{script}");
        assert!(step.output.contains("done\n"), "{script}");
        assert_eq!(step.output_truncated, truncated, "{script}");
    }
}

#[tokio::test]
async fn an_http_body_is_cut_at_the_limit() {
    let srv = server().await;
    let rb = runbook(&format!(
        "name = \"big\"\nroles = [\"oncall\"]\n[[step]]\nkind = \"http\"\nmethod = \"GET\"\nurl = \"http://{}/big\"\nmax_output = \"1KiB\"\n",
        srv.addr
    ));
    let (outcome, events) = run(&runner(&[]), &plan(&rb, &[])).await;
    let step = &outcome.steps[0];
    assert_eq!(step.status, StepStatus::Ok);
    assert_eq!(step.http_status, Some(200));
    assert_eq!(step.output, "x".repeat(1024));
    assert!(step.output_truncated);
    let streamed: usize = events
        .iter()
        .map(|e| match e {
            RunEvent::Output { text, .. } => text.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(streamed, 1024);
}

#[tokio::test]
async fn unexpected_statuses_and_redirects_fail_the_step() {
    let srv = server().await;
    let cases = [
        (
            "/fail",
            "",
            "the server answered HTTP 500; expected any 2xx",
        ),
        (
            "/ok",
            "expect_status = [202, 204]",
            "the server answered HTTP 200; expected 202 or 204",
        ),
        // Not followed: a redirect could carry the Authorization header to another host.
        (
            "/redirect",
            "",
            "the server answered HTTP 302; expected any 2xx",
        ),
    ];
    for (path, extra, error) in cases {
        let rb = runbook(&format!(
            "name = \"st\"\nroles = [\"oncall\"]\n[[step]]\nkind = \"http\"\nmethod = \"POST\"\nurl = \"http://{}{path}\"\n{extra}\n",
            srv.addr
        ));
        let (outcome, _) = run(&runner(&[]), &plan(&rb, &[])).await;
        assert_eq!(outcome.steps[0].status, StepStatus::Failed, "{path}");
        assert_eq!(outcome.steps[0].error.as_deref(), Some(error));
    }
    let paths: Vec<String> = srv.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/fail", "/ok", "/redirect"]);
}

const SECRET: &str = "s3cr3t-VALUE-never-shown";

#[tokio::test]
async fn secret_headers_are_sent_but_never_shown() {
    let srv = server().await;
    let rb = runbook(
        &r#"
name = "secret"
roles = ["oncall"]
[[step]]
kind = "http"
method = "POST"
url = "http://ADDR/deploy"
headers = { Authorization = { env = "DEPLOY_TOKEN", prefix = "Bearer " }, X-Reason = "rollback" }
body = { action = "rollback" }
"#
        .replace("ADDR", &srv.addr.to_string()),
    );
    let plan = plan(&rb, &[]);
    let plan_json = serde_json::to_string(&plan).unwrap();
    assert!(
        plan_json.contains(
            r#"{"name":"authorization","value":"Bearer <secret from env DEPLOY_TOKEN>"}"#
        ),
        "{plan_json}"
    );

    let (outcome, events) = run(&runner(&[("DEPLOY_TOKEN", SECRET)]), &plan).await;
    assert_eq!(outcome.status, RunStatus::Ok);
    assert_eq!(
        srv.seen()[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_bytes())
    );
    for shown in [
        plan_json,
        format!("{plan:?}"),
        serde_json::to_string(&outcome).unwrap(),
        format!("{outcome:?}"),
        serde_json::to_string(&events).unwrap(),
        format!("{events:?}"),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
    }

    // Unset, empty, or unfit for a header: the step fails before anything is sent, naming the
    // variable but not the value.
    let bad = format!("{SECRET}\r\nX-Injected: 1");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "environment variable DEPLOY_TOKEN, which is unset, empty or not UTF-8"),
        (&[("DEPLOY_TOKEN", "")], "environment variable DEPLOY_TOKEN, which is unset, empty or not UTF-8"),
        (&[("DEPLOY_TOKEN", &bad)], "the value of header `authorization` (Bearer <secret from env DEPLOY_TOKEN>) holds a line break"),
    ];
    for (env, error) in cases {
        let (outcome, events) = run(&runner(env), &plan).await;
        let message = outcome.steps[0].error.as_deref().unwrap();
        assert!(message.contains(error), "{message}");
        assert!(message.contains("nothing was sent"), "{message}");
        let shown = serde_json::to_string(&(&outcome, &events)).unwrap();
        assert!(!shown.contains(SECRET), "{shown}");
    }
    assert_eq!(srv.seen().len(), 1);
}

#[tokio::test]
async fn a_failed_step_stops_the_run() {
    let rb = runbook(
        r#"
name = "stop"
roles = ["oncall"]
[[step]]
name = "first"
kind = "command"
argv = ["/bin/sh", "-c", "echo before; exit 3"]
[[step]]
name = "second"
kind = "command"
argv = ["/bin/echo", "never"]
"#,
    );
    let (outcome, events) = run(&runner(&[]), &plan(&rb, &[])).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.error.as_deref(), Some("exited with status 3"));
    let statuses: Vec<StepStatus> = outcome.steps.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [StepStatus::Failed, StepStatus::Skipped]);
    assert_eq!(outcome.steps[0].exit_code, Some(3));
    assert_eq!(outcome.steps[0].output, "before\n");

    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            RunEvent::StepStarted { index, summary, .. } => format!("started {index}: {summary}"),
            RunEvent::Output {
                index,
                stream,
                text,
            } => format!("output {index} {stream:?} {text:?}"),
            RunEvent::StepFinished(s) => format!("finished {} {:?}", s.index, s.status),
            RunEvent::Finished(s) => format!("run {:?} failed_step={:?}", s.status, s.failed_step),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            r#"started 0: "/bin/sh" "-c" "echo before; exit 3""#,
            r#"output 0 Stdout "before\n""#,
            "finished 0 Failed",
            "finished 1 Skipped",
            "run Failed failed_step=Some(0)",
        ]
    );
}

#[tokio::test]
async fn exit_statuses_are_recorded() {
    let cases: &[(&str, StepStatus, Option<i32>, Option<&str>)] = &[
        ("exit 0", StepStatus::Ok, Some(0), None),
        (
            "exit 42",
            StepStatus::Failed,
            Some(42),
            Some("exited with status 42"),
        ),
        (
            "kill -TERM $$",
            StepStatus::Failed,
            None,
            Some("killed by signal 15"),
        ),
    ];
    for &(script, status, code, error) in cases {
        let rb = runbook(&format!(
            "name = \"x\"\nroles = [\"oncall\"]\n[[step]]\nkind = \"command\"\nargv = [\"/bin/sh\", \"-c\", \"{script}\"]\n"
        ));
        let (outcome, _) = run(&runner(&[]), &plan(&rb, &[])).await;
        let step = &outcome.steps[0];
        assert_eq!((step.status, step.exit_code), (status, code), "{script}");
        assert_eq!(step.error.as_deref(), error, "{script}");
    }
    let rb = runbook("name = \"x\"\nroles = [\"oncall\"]\n[[step]]\nkind = \"command\"\nargv = [\"/nonexistent/tool\"]\n");
    let (outcome, _) = run(&runner(&[]), &plan(&rb, &[])).await;
    let error = outcome.steps[0].error.as_deref().unwrap();
    assert!(
        error.starts_with("cannot start /nonexistent/tool: "),
        "{error}"
    );
}

#[test]
fn a_run_can_be_spawned() {
    // The gateway runs plans on their own tasks: the future must be Send.
    fn send<T: Send>(_: T) {}
    let rb = runbook("name = \"s\"\nroles = [\"oncall\"]\n[[step]]\nkind = \"command\"\nargv = [\"/bin/true\"]\n");
    let plan = plan(&rb, &[]);
    let runner = runner(&[]);
    let (tx, _rx) = mpsc::channel(1);
    send(runner.run(&plan, &tx));
}
