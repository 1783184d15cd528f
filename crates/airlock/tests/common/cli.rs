//! The `airlock` binary as people run it: each user with their own
//! AIRLOCK_HOME, logged in with a token (used by the CLI tests).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::World;

/// What one run of the binary did.
pub struct Run {
    pub args: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn show(&self) -> String {
        format!(
            "`airlock {}` exited {}\n--- stdout\n{}--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts success; returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{}", self.show());
        &self.stdout
    }

    /// Asserts a failure (exit 1, nothing on stdout); returns stderr.
    pub fn fails(&self) -> &str {
        assert_eq!(self.code, 1, "{}", self.show());
        assert_eq!(self.stdout, "", "{}", self.show());
        assert!(
            self.stderr.starts_with("error: "),
            "a failure starts with `error: `: {}",
            self.show()
        );
        &self.stderr
    }

    /// Asserts a usage error from argument parsing (exit 2); returns stderr.
    pub fn usage_error(&self) -> &str {
        assert_eq!(self.code, 2, "{}", self.show());
        assert!(self.stderr.contains("Usage: airlock"), "{}", self.show());
        &self.stderr
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.show()))
    }
}

/// Asserts that `text` contains every one of `wants`.
#[track_caller]
pub fn has(text: &str, wants: &[&str]) {
    for want in wants {
        assert!(text.contains(want), "want {want:?} in:\n{text}");
    }
}

/// Runs the binary with `home` as AIRLOCK_HOME and nothing else of the
/// caller's airlock environment.
pub async fn airlock_in(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .env("AIRLOCK_HOME", home)
        .env("AIRLOCK_LOG", "off")
        .env_remove("AIRLOCK_TOKEN")
        .env_remove("AIRLOCK_CONFIG")
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`airlock {}` hung", args.join(" ")))
        .expect("the airlock binary runs");
    Run {
        args: args.join(" "),
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A person at a terminal: a user name and their own AIRLOCK_HOME.
pub struct User {
    pub name: &'static str,
    pub home: tempfile::TempDir,
}

impl User {
    pub fn new(name: &'static str) -> User {
        User {
            name,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// A user logged in with `airlock login --token`.
    pub async fn logged_in(w: &World, name: &'static str) -> User {
        let u = User::new(name);
        let (server, ca) = (w.http(), w.ca_file());
        let token = w.token(name);
        let run = u
            .run(&[
                "login",
                "--server",
                &server,
                "--ca-file",
                ca.to_str().unwrap(),
                "--token",
                &token,
            ])
            .await;
        assert_eq!(run.ok(), format!("logged in to {server} as {name}\n"));
        u
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        let mut run = airlock_in(self.home.path(), args, &[]).await;
        run.args = format!("{}` as `{}", run.args, self.name);
        run
    }
}

/// The first whitespace-separated word after `prefix` in `text`.
#[track_caller]
pub fn word_after<'t>(text: &'t str, prefix: &str) -> &'t str {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    text[at + prefix.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("nothing after {prefix:?} in:\n{text}"))
        .trim_end_matches([',', ':'])
}

/// The line of a table that starts with `id`.
#[track_caller]
pub fn row<'t>(table: &'t str, id: &str) -> &'t str {
    table
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no row {id} in:\n{table}"))
}
