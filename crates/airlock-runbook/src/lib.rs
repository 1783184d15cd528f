//! Runbooks: reviewed, parameterised actions (verify, triage, rollback, redeploy) kept as TOML
//! files, with typed parameter validation and execution of sql, http and command steps.
//!
//! The life of a run, and the function for each part:
//!
//! 1. [`load_dir`] reads the directory named by `[runbooks] dir` in airlock.toml: every `*.toml`
//!    file is one [`Runbook`], checked as a whole and reported as `file:line: message`
//!    [`Diagnostic`]s.
//! 2. [`Runbook::validate`] turns the caller's text parameters into typed [`Params`], reporting
//!    every problem at once.
//! 3. [`Runbook::plan`] renders every step into a [`Plan`]: what will run, serializable for
//!    `--dry-run`, approval and the audit log.
//! 4. [`Runner::run`] executes the plan, streaming [`RunEvent`]s and returning a [`RunOutcome`].
//!
//! Parameters never pass through a shell and are never spliced into text that something parses
//! again: SQL arguments are bound as query parameters, URL values are percent-encoded components
//! of the path or query (never the host), JSON bodies are built by serde_json, and each argv
//! element is one argument. Validation is about what a value means, not about filtering
//! characters; the rendering is what keeps values data.

mod check;
mod command;
mod file;
mod model;
mod params;
mod plan;
mod run;
mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use airlock_config::Diagnostic;
use serde::Serialize;

pub use file::{
    load_dir, parse, DEFAULT_MAX_OUTPUT, DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT, MAX_OUTPUT_LIMIT,
    MAX_STEPS,
};
pub use model::{
    CommandStep, HeaderTemplate, HttpStep, Param, ParamKind, Pattern, Runbook, SqlStep, Step,
    StepAction, StepKind, UrlTemplate,
};
pub use params::{ParamError, ParamValue, Params};
pub use plan::{
    HeaderValue, Plan, PlanError, PlanProblem, PlannedAction, PlannedCommand, PlannedHeader,
    PlannedHttp, PlannedSql, PlannedStep,
};
pub use run::{
    BoxFuture, Environment, OutputStream, RunEvent, RunOutcome, RunStatus, RunSummary, Runner,
    RunnerError, SqlExecutor, SqlOutput, SqlRequest, StepOutcome, StepStatus,
};
pub use template::{MissingParam, Template, TemplateError};

/// The runbooks of one directory, by name.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Runbooks {
    by_name: BTreeMap<String, Runbook>,
}

impl Runbooks {
    /// The runbook called `name`.
    pub fn get(&self, name: &str) -> Option<&Runbook> {
        self.by_name.get(name)
    }

    /// All of them, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Runbook> {
        self.by_name.values()
    }

    /// Their names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Loading a runbook directory failed.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    /// The directory or a file in it could not be read.
    #[error("cannot read runbooks from {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Files that are not valid runbooks: every problem found, in every file.
    #[error("{}", Lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl RunbookError {
    /// The diagnostics this error carries (none for IO errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            RunbookError::Invalid(found) => found,
            RunbookError::Io { .. } => &[],
        }
    }
}

/// Prints diagnostics one per line.
struct Lines<'a>(&'a [Diagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
