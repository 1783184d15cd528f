//! The hash-chained, append-only audit log: records, checkpoints, verify,
//! export, and the query index derived from it.
//!
//! The log is the truth (see `../shared/DESIGN.md`): segments of JSON lines
//! in `data_dir/audit/`, each record holding the SHA-256 of the one before
//! it, sealed by Ed25519-signed checkpoints. Everything else (the SQLite
//! index behind `airlock audit`, `sessions` and `replay`) is rebuilt from it.
//! This crate never depends on the proxy: the proxy hands it [`Event`]s.

use std::path::{Path, PathBuf};

pub mod anchor;
pub mod event;
pub mod index;
pub mod key;
pub mod log;
pub mod read;
pub mod record;
pub mod segment;
pub mod verify;

pub use anchor::Anchor;
pub use event::{Bind, BoundParam, Classified, Event, SessionStart, Statement, StatementDone};
pub use key::{PublicKey, SigningKey, Terms};
pub use log::{AuditLog, Failing, FsyncMode, Options};
pub use verify::{verify_dir, verify_file, verify_live_dir, Expect, Problem, ProblemKind, Report};

/// The public key's file name in the audit directory.
pub const PUBLIC_KEY_FILE: &str = "signing-key.pub.pem";

/// Where the log lives under a data directory.
pub fn audit_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

/// Where the query index lives under a data directory (outside the audit
/// directory: it is derived, not evidence).
pub fn index_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-index.sqlite")
}

/// Where the checkpoint signing key lives under a data directory: outside
/// the audit directory, so copying the log never copies the secret.
pub fn signing_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("audit-signing.pem")
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit log could not be synced to disk: {0}")]
    Sync(String),
    #[error("audit signing key: {0}")]
    Key(String),
    #[error("the audit log is damaged: {0}")]
    Damaged(String),
    #[error("the audit index: {0}")]
    Index(String),
    #[error("the audit log is closed")]
    Closed,
}

impl AuditError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> AuditError {
        AuditError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the disk is full (PostgreSQL's `53100 disk_full` fits).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, AuditError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}
