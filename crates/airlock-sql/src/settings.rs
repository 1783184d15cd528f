//! Which session settings a read session may change, and which function
//! names write.
//!
//! Settings are an allowlist: a setting not named here needs write access,
//! because settings are how a session lifts PostgreSQL's own read-only
//! protection (`transaction_read_only`), changes who it is (`role`), or
//! changes what a name means (`search_path`). The function names here get
//! their own rule (and message); which built-ins a read session may call at
//! all is the allowlist in [`crate::functions`].

use crate::rule::Rule;

/// Settings a read session may change freely.
const READ_SETTINGS: &[&str] = &[
    "application_name",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "transaction_timeout",
    "default_transaction_isolation",
    "default_transaction_deferrable",
    "work_mem",
    "maintenance_work_mem",
    "temp_buffers",
    "hash_mem_multiplier",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "client_min_messages",
    "bytea_output",
    "xmlbinary",
    "xmloption",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "random_page_cost",
    "seq_page_cost",
    "cpu_tuple_cost",
    "cpu_index_tuple_cost",
    "cpu_operator_cost",
    "effective_cache_size",
    "effective_io_concurrency",
    "parallel_setup_cost",
    "parallel_tuple_cost",
    "max_parallel_workers_per_gather",
    "jit",
    "jit_above_cost",
    "jit_inline_above_cost",
    "jit_optimize_above_cost",
    "from_collapse_limit",
    "join_collapse_limit",
    "cursor_tuple_fraction",
    "default_statistics_target",
    "plan_cache_mode",
    "row_security",
    "constraint_exclusion",
    "force_parallel_mode",
    "debug_parallel_query",
];

/// Setting-name prefixes a read session may change freely (planner knobs).
const READ_SETTING_PREFIXES: &[&str] = &["enable_", "geqo"];

/// Client encodings whose multi-byte characters can have a second byte in
/// the ASCII range, so a quote or backslash the gateway's parser sees can be
/// part of a character to the server (PostgreSQL's client-only encodings).
/// Names are in PostgreSQL's cleaned form: lower case, letters and digits.
const UNSAFE_ENCODINGS: &[&str] = &[
    "sjis",
    "shiftjis",
    "mskanji",
    "win932",
    "windows932",
    "shiftjis2004",
    "big5",
    "win950",
    "windows950",
    "gbk",
    "win936",
    "windows936",
    "cp936",
    "uhc",
    "win949",
    "windows949",
    "cp949",
    "gb18030",
    "johab",
];

/// How a statement sets a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    /// A constant value (several values joined with ", ").
    Const(String),
    /// Back to the default (`RESET x`, `SET x TO DEFAULT`).
    Default,
    /// Not a constant: a parameter, an expression, `FROM CURRENT`.
    Unknown,
}

/// Whether a value turns a boolean setting on, as PostgreSQL reads it.
pub fn is_on(v: &SettingValue) -> bool {
    match v {
        SettingValue::Const(s) => {
            let s = s.trim().to_ascii_lowercase();
            matches!(s.as_str(), "on" | "true" | "yes" | "1" | "t" | "y")
        }
        _ => false,
    }
}

/// PostgreSQL's cleaned encoding name: lower case, letters and digits only.
pub fn clean_encoding_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `name` is a client encoding the gateway refuses.
pub fn is_unsafe_encoding(name: &str) -> bool {
    UNSAFE_ENCODINGS.contains(&clean_encoding_name(name).as_str())
}

/// The rule for changing setting `name` to `value`; `None` when a read
/// session may do it.
pub fn setting_rule(name: &str, value: &SettingValue) -> Option<Rule> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "transaction_read_only" | "default_transaction_read_only" => {
            (!is_on(value)).then_some(Rule::ReadOnlySetting)
        }
        "role" | "session_authorization" => Some(Rule::IdentitySetting),
        "search_path" => Some(Rule::SearchPath),
        "standard_conforming_strings" => (!is_on(value)).then_some(Rule::StandardConformingStrings),
        // A value that is not a constant (a bound parameter) is decided by
        // what PostgreSQL reports once it is set: the proxy watches every
        // ParameterStatus and ends a session whose encoding became unsafe.
        "client_encoding" => match value {
            SettingValue::Const(v) if is_unsafe_encoding(v) => Some(Rule::ClientEncoding),
            _ => None,
        },
        n if READ_SETTINGS.contains(&n)
            || READ_SETTING_PREFIXES.iter().any(|p| n.starts_with(p)) =>
        {
            None
        }
        _ => Some(Rule::Setting),
    }
}

/// The rule for calling the built-in function `name` (the last part of a
/// possibly schema-qualified name, as the parser folded it); `None` when it
/// is not on the lists. `set_config` is decided by its arguments elsewhere.
pub fn function_rule(name: &str) -> Option<Rule> {
    const SEQUENCE: &[&str] = &["nextval", "setval"];
    const ADVISORY: &[&str] = &[
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
    ];
    const LARGE_OBJECT: &[&str] = &[
        "lo_create",
        "lo_creat",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "lo_open",
        "lo_close",
        "lo_put",
        "lo_get",
        "lo_from_bytea",
        "lo_truncate",
        "lo_truncate64",
        "lo_lseek",
        "lo_lseek64",
        "lo_tell",
        "lo_tell64",
        "loread",
        "lowrite",
    ];
    const ADMIN: &[&str] = &[
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_promote",
        "pg_create_restore_point",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_wal_replay_pause",
        "pg_wal_replay_resume",
        "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot",
        "pg_drop_replication_slot",
        "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot",
        "pg_replication_slot_advance",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_get_binary_changes",
        "pg_logical_emit_message",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_import_system_collations",
        "pg_log_backend_memory_contexts",
        "pg_sync_replication_slots",
        "pg_read_file_old",
        "pg_rotate_logfile_old",
        "pg_export_snapshot",
        "pg_extension_config_dump",
        "pg_nextoid",
        "pg_stop_making_pinned_objects",
        "pg_stat_force_next_flush",
        "brin_summarize_range",
        "brin_summarize_new_values",
        "brin_desummarize_range",
        "gin_clean_pending_list",
    ];
    const ADMIN_PREFIXES: &[&str] = &[
        "pg_replication_origin_",
        "pg_stat_reset",
        "pg_ls_",
        "binary_upgrade_",
        "dblink",
    ];
    const EXECUTES_SQL: &[&str] = &[
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "ts_rewrite",
    ];
    if SEQUENCE.contains(&name) {
        Some(Rule::SequenceFunction)
    } else if ADVISORY.contains(&name) {
        Some(Rule::AdvisoryLock)
    } else if LARGE_OBJECT.contains(&name) {
        Some(Rule::LargeObject)
    } else if EXECUTES_SQL.contains(&name) {
        Some(Rule::ExecutesSql)
    } else if name == "pg_notify" {
        Some(Rule::ListenNotify)
    } else if ADMIN.contains(&name) || ADMIN_PREFIXES.iter().any(|p| name.starts_with(p)) {
        Some(Rule::AdminFunction)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> SettingValue {
        SettingValue::Const(s.into())
    }

    #[test]
    fn read_only_can_be_turned_on_not_off() {
        assert_eq!(setting_rule("transaction_read_only", &c("on")), None);
        assert_eq!(setting_rule("Transaction_Read_Only", &c("TRUE")), None);
        for v in [
            c("off"),
            c("false"),
            c("0"),
            SettingValue::Default,
            SettingValue::Unknown,
        ] {
            assert_eq!(
                setting_rule("default_transaction_read_only", &v),
                Some(Rule::ReadOnlySetting),
                "{v:?}"
            );
        }
    }

    #[test]
    fn encodings() {
        assert!(is_unsafe_encoding("Shift_JIS_2004"));
        assert!(is_unsafe_encoding("SJIS"));
        assert!(is_unsafe_encoding("big5"));
        assert!(!is_unsafe_encoding("UTF8"));
        assert!(!is_unsafe_encoding("EUC_JP"));
        assert_eq!(setting_rule("client_encoding", &c("utf-8")), None);
        assert_eq!(
            setting_rule("client_encoding", &SettingValue::Default),
            None
        );
        assert_eq!(
            setting_rule("client_encoding", &c("gbk")),
            Some(Rule::ClientEncoding)
        );
        // A bound value is decided by what PostgreSQL reports.
        assert_eq!(
            setting_rule("client_encoding", &SettingValue::Unknown),
            None
        );
    }

    #[test]
    fn allowlist_and_the_rest() {
        assert_eq!(setting_rule("enable_seqscan", &c("off")), None);
        assert_eq!(setting_rule("geqo_effort", &c("3")), None);
        assert_eq!(setting_rule("search_path", &c("x")), Some(Rule::SearchPath));
        assert_eq!(
            setting_rule("session_replication_role", &c("replica")),
            Some(Rule::Setting)
        );
        assert_eq!(
            function_rule("pg_stat_reset_shared"),
            Some(Rule::AdminFunction)
        );
        assert_eq!(function_rule("dblink_exec"), Some(Rule::AdminFunction));
        assert_eq!(function_rule("currval"), None);
    }
}
