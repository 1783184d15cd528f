//! The vocabulary of classification: the class a statement needs and the
//! rule that put it there.

use serde::Serialize;

/// What access a statement needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Runs under read access.
    Read,
    /// Needs write access.
    Write,
    /// Refused at every access level: the gateway cannot, or must not, let it
    /// through (it does not parse, or it would blind the classifier).
    Refused,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Refused => "refused",
        }
    }
}

macro_rules! rules {
    ($( $variant:ident => $name:literal, $class:ident, $what:literal; )*) => {
        /// Why a statement got its class. The names are stable: they appear in
        /// refusals, in the audit log, in guardrail `deny` lists and in the
        /// classification corpus.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rule {
            $( $variant, )*
        }

        impl Rule {
            /// Every rule, in declaration order.
            pub const ALL: &'static [Rule] = &[$( Rule::$variant, )*];

            /// The rule's stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Rule::$variant => $name, )*
                }
            }

            /// The class the rule puts a statement in.
            pub fn class(self) -> Class {
                match self {
                    $( Rule::$variant => Class::$class, )*
                }
            }

            /// What the rule is about, as a phrase for messages.
            pub fn describe(self) -> &'static str {
                match self {
                    $( Rule::$variant => $what, )*
                }
            }

            /// The rule with this name.
            pub fn parse(name: &str) -> Option<Rule> {
                Rule::ALL.iter().copied().find(|r| r.as_str() == name)
            }
        }
    };
}

rules! {
    // Read.
    Query => "query", Read, "a query";
    Explain => "explain", Read, "EXPLAIN without executing a write";
    Show => "show", Read, "SHOW";
    Transaction => "transaction", Read, "transaction control";
    Cursor => "cursor", Read, "a cursor over a read";
    Set => "set", Read, "a harmless session setting";
    PreparedStatement => "prepared_statement", Read, "a prepared read";
    Discard => "discard", Read, "DISCARD";
    Unlisten => "unlisten", Read, "UNLISTEN";
    Empty => "empty", Read, "an empty statement";
    CopyToClient => "copy_to_client", Read, "COPY to the client";
    // Write.
    Insert => "insert", Write, "INSERT writes rows";
    Update => "update", Write, "UPDATE writes rows";
    Delete => "delete", Write, "DELETE removes rows";
    Merge => "merge", Write, "MERGE writes rows";
    DataModifyingCte => "data_modifying_cte", Write, "a WITH clause that modifies data";
    SelectInto => "select_into", Write, "SELECT INTO creates a table";
    LockingClause => "locking_clause", Write, "FOR UPDATE/SHARE locks rows";
    SequenceFunction => "sequence_function", Write, "nextval()/setval() change a sequence";
    AdvisoryLock => "advisory_lock", Write, "advisory locks";
    CopyFrom => "copy_from", Write, "COPY FROM writes rows";
    CopyToFile => "copy_to_file", Write, "COPY TO a server file writes a file";
    CopyProgram => "copy_program", Write, "COPY PROGRAM runs a program on the server";
    Do => "do", Write, "DO runs procedural code";
    Call => "call", Write, "CALL runs a procedure";
    Ddl => "ddl", Write, "schema changes (DDL)";
    Truncate => "truncate", Write, "TRUNCATE empties tables";
    Grant => "grant", Write, "GRANT/REVOKE change privileges";
    Maintenance => "maintenance", Write, "maintenance commands (VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT)";
    ListenNotify => "listen_notify", Write, "LISTEN/NOTIFY";
    LargeObject => "large_object", Write, "large-object functions";
    AdminFunction => "admin_function", Write, "server administration functions";
    ReadOnlySetting => "read_only_setting", Write, "lifting read-only mode";
    IdentitySetting => "identity_setting", Write, "changing the session's role";
    SearchPath => "search_path", Write, "changing search_path";
    Setting => "setting", Write, "changing a setting that is not on the read allowlist";
    LockTable => "lock_table", Write, "LOCK TABLE";
    TwoPhase => "two_phase", Write, "two-phase commit";
    Admin => "admin", Write, "server administration (LOAD, ALTER SYSTEM)";
    ExecutesSql => "executes_sql", Write, "a function that runs SQL given as text or reads whole tables (query_to_xml, ts_stat, table_to_xml, ...)";
    FunctionNotAllowed => "function_not_allowed", Write, "a built-in or extension function that is not on Airlock's read allowlist";
    UnknownFunction => "unknown_function", Write, "a function that is not in the database's catalog as Airlock last read it";
    // Refused at every access level.
    SyntaxError => "syntax_error", Refused, "a statement PostgreSQL's grammar rejects";
    TooLong => "too_long", Refused, "a statement longer than the gateway's limit";
    TooDeep => "too_deep", Refused, "a statement nested deeper than the parser's limit";
    StandardConformingStrings => "standard_conforming_strings", Refused, "turning standard_conforming_strings off";
    ClientEncoding => "client_encoding", Refused, "a client encoding that can hide quotes and backslashes";
    FastPath => "fast_path", Refused, "the fast-path function call message";
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {}", r.as_str());
            assert_eq!(Rule::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Rule::parse("nope"), None);
    }
}
