//! Command steps: one process, started directly (never through a shell), with a cleared
//! environment, in a process group of its own that does not outlive the step.
//!
//! The process group is what makes time limits real: a script that forks (`sleep 600 &`, a pipeline)
//! leaves children that killing the script alone would orphan, still holding its pipes. The group
//! is killed with SIGKILL when the limit is hit, when the step's future is dropped (the gateway
//! cancelled the run), and also when the leader exits on its own, so a step leaves nothing running
//! behind it; long-lived processes belong to a supervisor, which a step can ask to start them.
//!
//! Killing a group needs `kill(2)` with a negative pid, which std and tokio do not offer and which
//! would take `unsafe` (`libc::kill`), forbidden across the workspace. So the group is killed by
//! running `kill(1)` (`/bin/kill -s KILL -- -PGID`) with an argument this module makes from a
//! number. That costs one short process per command step, which is nothing next to the step.
//! The group id is the leader's pid, which cannot be reused while the leader is unreaped or any
//! member of the group lives, and the group is killed before the leader is reaped on every path
//! but the normal exit, where it is killed right after: at worst `kill` finds no such group.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::plan::PlannedCommand;
use crate::run::{Environment, Output, OutputStream, StepResult};

/// Where `kill(1)` may be; the first that exists is used.
const KILL_PROGRAMS: &[&str] = &["/bin/kill", "/usr/bin/kill"];

/// Runs `c` within `limit`, its output into `output`.
pub(crate) async fn run(
    c: &PlannedCommand,
    limit: Duration,
    env: &Environment,
    output: &Output,
) -> StepResult {
    let Some((program, args)) = c.argv.split_first() else {
        return StepResult::failed("argv is empty");
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args).env_clear();
    for name in &c.env {
        if let Some(value) = env.get(name) {
            command.env(name, value);
        }
    }
    command
        .envs(&c.set_env)
        // `/` unless told otherwise: the gateway's own working directory is nobody's business.
        .current_dir(c.cwd.as_deref().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return StepResult::failed(format!("cannot start {program}: {e}")),
    };
    let (Some(pgid), Some(stdout), Some(stderr)) =
        (child.id(), child.stdout.take(), child.stderr.take())
    else {
        return StepResult::failed(format!("{program} started without pipes"));
    };
    let mut guard = GroupGuard(Some(pgid));

    let work = async {
        let wait = async {
            let status = child.wait().await;
            kill_group(pgid).await;
            status
        };
        // The pipes are read while the process runs: a child writing more than a pipe holds
        // (64 KiB on Linux) would otherwise block forever. Past the limit, reading goes on and
        // the bytes are dropped, for the same reason.
        let (status, (), ()) = tokio::join!(
            wait,
            drain(stdout, OutputStream::Stdout, output),
            drain(stderr, OutputStream::Stderr, output)
        );
        status
    };
    let finished = tokio::time::timeout(limit, work).await;
    let result = match finished {
        Ok(Ok(status)) => exit_result(status),
        Ok(Err(e)) => StepResult::failed(format!("waiting for {program} failed: {e}")),
        Err(_) => {
            // Group first, while the unreaped leader still holds the group id.
            kill_group(pgid).await;
            let _ = child.start_kill();
            let _ = child.wait().await;
            StepResult {
                timed_out: true,
                ..StepResult::default()
            }
        }
    };
    guard.0 = None;
    result
}

fn exit_result(status: ExitStatus) -> StepResult {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => StepResult {
            exit_code: Some(0),
            ..StepResult::default()
        },
        (Some(code), _) => StepResult {
            exit_code: Some(code),
            ..StepResult::failed(format!("exited with status {code}"))
        },
        (None, Some(signal)) => StepResult::failed(format!("killed by signal {signal}")),
        (None, None) => StepResult::failed(format!("ended without an exit status ({status})")),
    }
}

async fn drain(mut pipe: impl AsyncRead + Unpin, kind: OutputStream, output: &Output) {
    let mut stream = output.stream(kind);
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        output.push(&mut stream, &buf[..n]);
    }
    output.finish(&mut stream);
}

fn kill_program() -> Option<&'static str> {
    KILL_PROGRAMS
        .iter()
        .copied()
        .find(|p| Path::new(p).exists())
}

/// SIGKILL to every process in group `pgid`. Failure (no such group: everyone already exited) is
/// the common case after a normal exit and is ignored.
async fn kill_group(pgid: u32) {
    if let Some(kill) = kill_program() {
        let _ = tokio::process::Command::new(kill)
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// Kills the group if the step's future is dropped before it finished (the run was cancelled):
/// `kill_on_drop` covers the leader only. Blocking, but only for the few milliseconds `kill` takes,
/// and only on that path.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let (Some(pgid), Some(kill)) = (self.0, kill_program()) {
            let _ = std::process::Command::new(kill)
                .args(["-s", "KILL", "--", &format!("-{pgid}")])
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
