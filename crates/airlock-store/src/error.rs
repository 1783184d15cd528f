//! The one error type of the store.
//!
//! Backend-specific failures are wrapped, but the cases a caller can act on
//! (duplicate id, unknown id, schema from a newer binary) are dialect-neutral
//! variants, so callers never match on SQLite error codes.

use std::path::PathBuf;

/// Everything that can go wrong in a [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite engine reported an error we do not classify further.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The database was migrated by a newer airlock; running an older binary on
    /// it could corrupt data it does not understand.
    #[error(
        "database schema version {found} is newer than this airlock ({supported}); upgrade airlock"
    )]
    SchemaTooNew { found: i64, supported: i64 },

    /// Creating the data directory or the database file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An insert collided with an existing record (same id, or for API tokens
    /// the same hash).
    #[error("{what} {id:?} already exists")]
    AlreadyExists { what: &'static str, id: String },

    /// The record a call refers to does not exist.
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },

    /// A caller passed a value the store refuses to persist.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// A stored row does not have the shape this binary writes; someone edited
    /// the database by hand or it is damaged.
    #[error("corrupt {what} {id:?} in the store: {reason}")]
    Corrupt {
        what: &'static str,
        id: String,
        reason: String,
    },

    /// SQLite refused to switch the file to write-ahead logging (for example on
    /// a network file system), which the store relies on for readers not to
    /// block the writer.
    #[error("cannot enable write-ahead logging on {}: journal_mode is {mode:?}; put data_dir on a local file system", path.display())]
    JournalMode { path: PathBuf, mode: String },
}
