//! Classification of one statement text with PostgreSQL's own grammar.
//!
//! The text is parsed by libpg_query (PostgreSQL's parser compiled as a
//! library). Each statement's top-level type decides first; then the whole
//! tree is searched for what can write from inside a read: data-modifying
//! CTEs, locking clauses, and calls of built-in functions that write. The
//! search walks every field of every node (through the tree's serde form),
//! so a node type the code does not name is still searched: nothing is
//! skipped because a walker forgot a field.
//!
//! This runs wherever it is called; callers that face untrusted input run it
//! on a thread with a large stack (see [`crate::Classifier`]): the parser
//! bounds its own recursion, and decoding and walking a tree that deep needs
//! room too.

use pg_query::protobuf::{self, a_const, node::Node as N};
use serde::Serialize;
use serde_json::Value;

use crate::columns::{column_uses, ColumnUses};
use crate::functions::{FunctionCall, BUILTIN_SCHEMAS};
use crate::rule::{Class, Rule};
use crate::settings::{function_rule, setting_rule, SettingValue};

/// Deepest tree the walk follows; PostgreSQL's parser stops well before.
const MAX_WALK_DEPTH: usize = 20_000;

/// What a prepared-statement command does, for the session's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op", content = "name")]
pub enum Prepared {
    Define(String),
    Execute(String),
    /// `None`: DEALLOCATE ALL (or DISCARD ALL).
    Deallocate(Option<String>),
}

/// One statement's classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub rule: Rule,
    /// The command, for guardrails and messages: `select`, `update`,
    /// `drop_table`, `alter_table`, `grant`, `set`, ...
    pub kind: String,
    /// What triggered the rule when it is not the command itself: a function
    /// name, a setting name, a nested command.
    pub detail: Option<String>,
    /// Settings the statement changes (lower case), e.g. `statement_timeout`.
    pub settings: Vec<String>,
    /// An UPDATE or DELETE without WHERE anywhere in the statement: its kind.
    pub unqualified: Option<&'static str>,
    /// Every rule that fired anywhere in the statement, beyond `rule` (which
    /// is the first of the deciding class): for guardrails, which look at all.
    pub also: Vec<Rule>,
    /// Data-modifying commands nested in the statement (a DELETE in a CTE):
    /// `insert`, `update`, `delete`, `merge`.
    pub nested: Vec<&'static str>,
    pub prepared: Option<Prepared>,
    /// Every function the statement calls by name (once each), for the
    /// read allowlist and the catalog check ([`crate::functions`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionCall>,
    /// The statement can change a reported setting in a way the classifier
    /// cannot decide (`set_config` with arguments that are not constants):
    /// what PostgreSQL reports afterwards decides.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub changes_settings_opaquely: bool,
    /// The values the statement sets settings to (SET, `set_config` with a
    /// constant name), for ceilings that depend on the session.
    #[serde(skip)]
    pub values: Vec<(String, SettingValue)>,
    /// What the statement does with columns, for strict masking
    /// ([`crate::columns`]).
    #[serde(skip)]
    pub columns: ColumnUses,
    /// Operators the statement names (`+`, `~~` for LIKE, `OPERATOR(s.op)`
    /// by its last name), once each: a user-defined one runs user code.
    #[serde(skip)]
    pub operators: Vec<String>,
    /// Type names the statement casts to (`x::t`, `CAST(x AS t)`, `t 'lit'`),
    /// once each: a user-defined cast or a domain's check runs user code.
    #[serde(skip)]
    pub casts: Vec<String>,
}

impl Statement {
    fn new(rule: Rule, kind: impl Into<String>) -> Statement {
        Statement {
            rule,
            kind: kind.into(),
            detail: None,
            settings: Vec::new(),
            unqualified: None,
            also: Vec::new(),
            nested: Vec::new(),
            prepared: None,
            functions: Vec::new(),
            changes_settings_opaquely: false,
            values: Vec::new(),
            columns: ColumnUses::default(),
            operators: Vec::new(),
            casts: Vec::new(),
        }
    }

    fn detail(mut self, d: impl Into<String>) -> Statement {
        self.detail = Some(d.into());
        self
    }

    pub fn class(&self) -> Class {
        self.rule.class()
    }
}

/// The classification of a whole text (one or more statements).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// One entry per statement, in order; never empty (an empty text is one
    /// `empty` statement).
    pub statements: Vec<Statement>,
    /// The verdict read a constant's value (a SET value, set_config's
    /// arguments, an EXPLAIN option): texts that differ only in constants may
    /// be classified differently, so it must not be cached by shape.
    #[serde(skip)]
    pub literal_sensitive: bool,
}

impl Verdict {
    fn single(s: Statement) -> Verdict {
        Verdict {
            statements: vec![s],
            literal_sensitive: false,
        }
    }

    /// A verdict refusing the text for `rule`, with `detail`.
    pub fn refused(rule: Rule, detail: impl Into<String>) -> Verdict {
        Verdict::single(Statement::new(rule, "unknown").detail(detail))
    }

    /// The most restrictive class of its statements.
    pub fn class(&self) -> Class {
        self.statements
            .iter()
            .map(Statement::class)
            .max()
            .unwrap_or(Class::Read)
    }

    /// The statement that decides: the first one with the verdict's class.
    pub fn deciding(&self) -> &Statement {
        let class = self.class();
        self.statements
            .iter()
            .find(|s| s.class() == class)
            .unwrap_or(&self.statements[0])
    }

    /// The deciding statement's rule.
    pub fn rule(&self) -> Rule {
        self.deciding().rule
    }
}

/// Classifies `sql` on the calling thread, without a cache or size limit.
pub fn classify(sql: &str) -> Verdict {
    if sql.as_bytes().contains(&0) {
        return Verdict::refused(Rule::SyntaxError, "the statement contains a NUL byte");
    }
    let parsed = match pg_query::parse(sql, 0) {
        Ok(p) => p,
        Err(e) => return parse_error(e),
    };
    let mut cx = Cx::default();
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        cx.text = statement_text(sql, raw.stmt_location, raw.stmt_len);
        statements.push(cx.statement(node));
    }
    if statements.is_empty() {
        statements.push(Statement::new(Rule::Empty, "empty"));
    }
    if let Some(depth_error) = cx.too_deep {
        return Verdict::refused(Rule::TooDeep, depth_error);
    }
    Verdict {
        statements,
        literal_sensitive: cx.literal_sensitive,
    }
}

fn parse_error(e: pg_query::Error) -> Verdict {
    let message = match e {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) => m,
        other => other.to_string(),
    };
    // "memory exhausted" is the grammar's own stack (bison's) running out.
    if message.contains("stack depth limit exceeded") || message.contains("memory exhausted") {
        Verdict::refused(Rule::TooDeep, message)
    } else {
        Verdict::refused(Rule::SyntaxError, message)
    }
}

/// The text of one statement of a multi-statement string.
fn statement_text(sql: &str, location: i32, len: i32) -> String {
    let start = usize::try_from(location).unwrap_or(0).min(sql.len());
    let end = match usize::try_from(len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(n) => start.saturating_add(n).min(sql.len()),
    };
    sql.get(start..end).unwrap_or(sql).to_owned()
}

#[derive(Default)]
struct Cx {
    literal_sensitive: bool,
    too_deep: Option<String>,
    /// The text of the statement being classified (for what the tree does
    /// not keep: see [`copy_to_client`]).
    text: String,
}

/// Something found inside a statement's tree, with where it was found
/// (a byte offset, for reporting the first one in source order).
struct Finding {
    position: i64,
    rule: Rule,
    detail: String,
}

#[derive(Default)]
struct Walk {
    findings: Vec<Finding>,
    settings: Vec<String>,
    unqualified: Option<&'static str>,
    nested: Vec<&'static str>,
    max_location: i64,
    functions: Vec<FunctionCall>,
    changes_settings_opaquely: bool,
    values: Vec<(String, SettingValue)>,
    operators: Vec<String>,
    casts: Vec<String>,
}

impl Cx {
    fn statement(&mut self, node: &N) -> Statement {
        let kind = kind_of(node);
        match node {
            N::SelectStmt(s) => {
                let base = if s.into_clause.is_some() {
                    Statement::new(Rule::SelectInto, "select_into")
                } else {
                    Statement::new(Rule::Query, kind)
                };
                self.with_walk(base, node)
            }
            N::InsertStmt(_) => self.with_walk(Statement::new(Rule::Insert, kind), node),
            N::UpdateStmt(u) => {
                let mut s = self.with_walk(Statement::new(Rule::Update, kind), node);
                if u.where_clause.is_none() {
                    s.unqualified = Some("update");
                }
                s
            }
            N::DeleteStmt(d) => {
                let mut s = self.with_walk(Statement::new(Rule::Delete, kind), node);
                if d.where_clause.is_none() {
                    s.unqualified = Some("delete");
                }
                s
            }
            N::MergeStmt(_) => self.with_walk(Statement::new(Rule::Merge, kind), node),
            N::ExplainStmt(e) => {
                if !self.explain_analyzes(&e.options) {
                    // Not executed, but planning can evaluate functions
                    // (constant folding, selectivity estimates): the
                    // statement's calls face the read allowlist all the same.
                    let mut s = Statement::new(Rule::Explain, kind);
                    if let Some(inner) = e.query.as_ref().and_then(|q| q.node.as_ref()) {
                        let inner = self.statement(inner);
                        s.functions = inner.functions;
                        s.changes_settings_opaquely = inner.changes_settings_opaquely;
                        s.columns = inner.columns;
                        s.operators = inner.operators;
                        s.casts = inner.casts;
                    }
                    return s;
                }
                match e.query.as_ref().and_then(|q| q.node.as_ref()) {
                    Some(inner) => {
                        let inner = self.statement(inner);
                        if inner.class() == Class::Read {
                            Statement {
                                rule: Rule::Explain,
                                kind,
                                ..inner
                            }
                        } else {
                            inner
                        }
                    }
                    None => Statement::new(Rule::Explain, kind),
                }
            }
            N::VariableShowStmt(_) => Statement::new(Rule::Show, kind),
            N::TransactionStmt(t) => self.transaction(t, kind),
            N::VariableSetStmt(v) => self.set(v, kind),
            N::ConstraintsSetStmt(_) => Statement::new(Rule::Transaction, kind),
            N::DeclareCursorStmt(d) => self.wrapped(d.query.as_deref(), Rule::Cursor, kind),
            N::FetchStmt(_) | N::ClosePortalStmt(_) => Statement::new(Rule::Cursor, kind),
            N::PrepareStmt(p) => {
                let mut s = self.wrapped(p.query.as_deref(), Rule::PreparedStatement, kind);
                s.prepared = Some(Prepared::Define(p.name.clone()));
                s
            }
            N::ExecuteStmt(e) => {
                let mut s = self.with_walk(Statement::new(Rule::PreparedStatement, kind), node);
                s.prepared = Some(Prepared::Execute(e.name.clone()));
                s
            }
            N::DeallocateStmt(d) => {
                let mut s = Statement::new(Rule::PreparedStatement, kind);
                s.prepared = Some(Prepared::Deallocate(
                    (!d.isall && !d.name.is_empty()).then(|| d.name.clone()),
                ));
                s
            }
            N::DiscardStmt(d) => {
                let mut s = Statement::new(Rule::Discard, kind);
                // DISCARD ALL deallocates every prepared statement.
                if d.target == protobuf::DiscardMode::DiscardAll as i32 {
                    s.prepared = Some(Prepared::Deallocate(None));
                }
                s
            }
            N::UnlistenStmt(_) => Statement::new(Rule::Unlisten, kind),
            N::CopyStmt(c) => {
                if c.is_program {
                    Statement::new(Rule::CopyProgram, kind)
                } else if c.is_from {
                    Statement::new(Rule::CopyFrom, kind)
                } else if !c.filename.is_empty() || !copy_to_client(&self.text) {
                    // The tree cannot tell `TO STDOUT` from `TO ''` (both
                    // leave the file name empty), and the shape cache maps
                    // `TO ''` and `TO '/a/file'` to one key: decide from the
                    // tokens, which the key keeps.
                    Statement::new(Rule::CopyToFile, kind)
                } else {
                    self.wrapped(c.query.as_deref(), Rule::CopyToClient, kind)
                }
            }
            N::DoStmt(_) => Statement::new(Rule::Do, kind),
            N::CallStmt(_) => Statement::new(Rule::Call, kind),
            N::TruncateStmt(_) => Statement::new(Rule::Truncate, kind),
            N::GrantStmt(_) | N::GrantRoleStmt(_) => Statement::new(Rule::Grant, kind),
            N::VacuumStmt(_) | N::ClusterStmt(_) | N::ReindexStmt(_) | N::CheckPointStmt(_) => {
                Statement::new(Rule::Maintenance, kind)
            }
            N::ListenStmt(_) | N::NotifyStmt(_) => Statement::new(Rule::ListenNotify, kind),
            N::LockStmt(_) => Statement::new(Rule::LockTable, kind),
            N::LoadStmt(_) | N::AlterSystemStmt(_) => Statement::new(Rule::Admin, kind),
            N::CreateTableAsStmt(c) if c.is_select_into => {
                Statement::new(Rule::SelectInto, "select_into")
            }
            // Everything else changes the schema, roles or the server. A
            // statement type this code does not know lands here too: needing
            // write access is the safe default.
            _ => Statement::new(Rule::Ddl, kind),
        }
    }

    /// A statement that wraps another (DECLARE, PREPARE, COPY (query)): a
    /// read inside keeps `rule`, anything else takes the inner statement's.
    fn wrapped(&mut self, inner: Option<&protobuf::Node>, rule: Rule, kind: String) -> Statement {
        match inner.and_then(|n| n.node.as_ref()) {
            Some(inner) => {
                let inner = self.statement(inner);
                if inner.class() == Class::Read {
                    Statement {
                        rule,
                        kind,
                        detail: None,
                        prepared: None,
                        ..inner
                    }
                } else {
                    inner
                }
            }
            None => Statement::new(rule, kind),
        }
    }

    /// Searches the whole tree of `node` and, when its own rule is a read,
    /// lets the first thing found inside decide.
    fn with_walk(&mut self, mut s: Statement, node: &N) -> Statement {
        let value = match serde_json::to_value(node) {
            Ok(v) => v,
            Err(e) => {
                self.too_deep = Some(format!("the statement could not be inspected: {e}"));
                return s;
            }
        };
        let mut walk = Walk::default();
        // The node's own variant is the top object's single key; search what
        // is inside it, so a top-level INSERT is not its own nested write.
        let inner = match &value {
            Value::Object(m) if m.len() == 1 => m.values().next().unwrap_or(&value),
            _ => &value,
        };
        if !self.walk(inner, 0, 0, &mut walk) {
            self.too_deep = Some(format!(
                "the statement is nested deeper than {MAX_WALK_DEPTH} levels"
            ));
        }
        walk.findings.sort_by_key(|f| f.position);
        if s.class() == Class::Read {
            if let Some(f) = walk.findings.first() {
                s.rule = f.rule;
                s.detail = Some(f.detail.clone());
            }
        }
        s.settings = walk.settings;
        for f in &walk.findings {
            if f.rule != s.rule && !s.also.contains(&f.rule) {
                s.also.push(f.rule);
            }
        }
        s.nested = walk.nested;
        s.functions = walk.functions;
        s.changes_settings_opaquely = walk.changes_settings_opaquely;
        s.values = walk.values;
        s.operators = walk.operators;
        s.casts = walk.casts;
        match column_uses(inner, matches!(node, N::SelectStmt(_))) {
            Some(columns) => {
                // `ORDER BY 2` and `ORDER BY 3` differ only in a constant.
                if !columns.positions.is_empty() {
                    self.literal_sensitive = true;
                }
                s.columns = columns;
            }
            None => {
                self.too_deep = Some(format!(
                    "the statement is nested deeper than {MAX_WALK_DEPTH} levels"
                ))
            }
        }
        if s.unqualified.is_none() {
            s.unqualified = walk.unqualified;
        }
        s
    }

    /// Pre-order walk; `position` is the nearest enclosing location. Returns
    /// false when the tree is too deep.
    fn walk(&mut self, v: &Value, depth: usize, position: i64, w: &mut Walk) -> bool {
        if depth > MAX_WALK_DEPTH {
            return false;
        }
        match v {
            Value::Array(items) => items
                .iter()
                .all(|item| self.walk(item, depth + 1, position, w)),
            Value::Object(map) => {
                let position = match map.get("location").and_then(Value::as_i64) {
                    Some(l) if l >= 0 => {
                        w.max_location = w.max_location.max(l);
                        l
                    }
                    _ => position,
                };
                for (key, child) in map {
                    match key.as_str() {
                        "FuncCall" => self.func_call(child, position, w),
                        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                            let command = match key.as_str() {
                                "InsertStmt" => "insert",
                                "UpdateStmt" => "update",
                                "DeleteStmt" => "delete",
                                _ => "merge",
                            };
                            if matches!(command, "update" | "delete")
                                && child.get("where_clause").is_none_or(Value::is_null)
                                && w.unqualified.is_none()
                            {
                                w.unqualified = Some(if command == "update" {
                                    "update"
                                } else {
                                    "delete"
                                });
                            }
                            if !w.nested.contains(&command) {
                                w.nested.push(command);
                            }
                            w.findings.push(Finding {
                                position,
                                rule: Rule::DataModifyingCte,
                                detail: command.to_owned(),
                            });
                        }
                        "AExpr" => push_last_name(child.get("name"), &mut w.operators),
                        "SortBy" => push_last_name(child.get("use_op"), &mut w.operators),
                        "TypeCast" => push_last_name(
                            child.get("type_name").and_then(|t| t.get("names")),
                            &mut w.casts,
                        ),
                        "LockingClause" => w.findings.push(Finding {
                            position: w.max_location,
                            rule: Rule::LockingClause,
                            detail: locking_strength(child),
                        }),
                        _ => {}
                    }
                    if !self.walk(child, depth + 1, position, w) {
                        return false;
                    }
                }
                true
            }
            _ => true,
        }
    }

    fn func_call(&mut self, call: &Value, position: i64, w: &mut Walk) {
        let parts = call.get("funcname").and_then(Value::as_array);
        let name = parts
            .and_then(|parts| parts.last())
            .and_then(string_node)
            .unwrap_or_default();
        let schema = parts
            .filter(|p| p.len() >= 2)
            .and_then(|p| p.get(p.len() - 2))
            .and_then(string_node);
        let mut record = FunctionCall::new(schema.clone(), name.clone());
        if name == "set_config" {
            // Decided by its arguments below, not by the allowlist.
            record.allowed = schema
                .as_deref()
                .is_none_or(|s| BUILTIN_SCHEMAS.contains(&s));
        }
        if !w.functions.contains(&record) {
            w.functions.push(record);
        }
        if name == "set_config" {
            let args = call.get("args").and_then(Value::as_array);
            let arg = |i: usize| args.and_then(|a| a.get(i));
            self.literal_sensitive = true;
            let setting = arg(0).and_then(const_node);
            let value = arg(1)
                .and_then(const_node)
                .map_or(SettingValue::Unknown, SettingValue::Const);
            if setting.is_none() || value == SettingValue::Unknown {
                w.changes_settings_opaquely = true;
            }
            let rule = match &setting {
                Some(setting) => {
                    w.settings.push(setting.to_ascii_lowercase());
                    w.values.push((setting.to_ascii_lowercase(), value.clone()));
                    setting_rule(setting, &value)
                }
                // The setting's name is not a constant: it could be any.
                None => {
                    w.settings.push(ANY_SETTING.to_owned());
                    Some(Rule::Setting)
                }
            };
            if let Some(rule) = rule {
                w.findings.push(Finding {
                    position,
                    rule,
                    detail: format!(
                        "set_config({})",
                        setting.as_deref().unwrap_or("<not a constant>")
                    ),
                });
            }
            return;
        }
        if let Some(rule) = function_rule(&name) {
            w.findings.push(Finding {
                position,
                rule,
                detail: format!("{name}()"),
            });
        }
    }

    fn transaction(&mut self, t: &protobuf::TransactionStmt, kind: String) -> Statement {
        use protobuf::TransactionStmtKind as K;
        let k = K::try_from(t.kind).unwrap_or(K::Undefined);
        match k {
            K::TransStmtPrepare | K::TransStmtCommitPrepared | K::TransStmtRollbackPrepared => {
                Statement::new(Rule::TwoPhase, kind)
            }
            K::TransStmtBegin | K::TransStmtStart => {
                if self.modes_lift_read_only(&t.options) {
                    Statement::new(Rule::ReadOnlySetting, kind).detail("READ WRITE")
                } else {
                    Statement::new(Rule::Transaction, kind)
                }
            }
            _ => Statement::new(Rule::Transaction, kind),
        }
    }

    /// Whether transaction modes (BEGIN/SET TRANSACTION options) ask for
    /// READ WRITE.
    fn modes_lift_read_only(&mut self, options: &[protobuf::Node]) -> bool {
        options.iter().any(|o| match &o.node {
            Some(N::DefElem(d)) if d.defname == "transaction_read_only" => {
                self.literal_sensitive = true;
                let value = d
                    .arg
                    .as_deref()
                    .and_then(a_const_text)
                    .map_or(SettingValue::Unknown, SettingValue::Const);
                !crate::settings::is_on(&value)
            }
            _ => false,
        })
    }

    fn set(&mut self, v: &protobuf::VariableSetStmt, kind: String) -> Statement {
        use protobuf::VariableSetKind as K;
        self.literal_sensitive = true;
        let k = K::try_from(v.kind).unwrap_or(K::Undefined);
        let name = v.name.to_ascii_lowercase();
        let value = match k {
            K::VarSetValue => {
                let parts: Option<Vec<String>> = v.args.iter().map(a_const_text).collect();
                match parts {
                    Some(p) if !p.is_empty() => SettingValue::Const(p.join(", ")),
                    _ => SettingValue::Unknown,
                }
            }
            K::VarSetDefault | K::VarReset => SettingValue::Default,
            K::VarResetAll => {
                // RESET ALL returns settings to their session defaults, which
                // include what the gateway put in the startup packet
                // (default_transaction_read_only); `role` and
                // `transaction_read_only` are not reset by it.
                return Statement::new(Rule::Set, kind);
            }
            K::VarSetMulti => {
                return match name.as_str() {
                    "transaction" | "session characteristics" => {
                        if self.modes_lift_read_only(&v.args) {
                            Statement::new(Rule::ReadOnlySetting, kind).detail("READ WRITE")
                        } else if name == "transaction" {
                            Statement::new(Rule::Transaction, kind)
                        } else {
                            Statement::new(Rule::Set, kind)
                        }
                    }
                    "transaction snapshot" => Statement::new(Rule::Transaction, kind),
                    _ => Statement::new(Rule::Setting, kind).detail(name),
                };
            }
            _ => SettingValue::Unknown,
        };
        let mut s = match setting_rule(&name, &value) {
            Some(rule) => Statement::new(rule, kind).detail(name.clone()),
            None => Statement::new(Rule::Set, kind),
        };
        s.values.push((name.clone(), value));
        s.settings.push(name);
        s
    }

    /// EXPLAIN executes its statement only with ANALYZE (unless ANALYZE is
    /// explicitly false).
    fn explain_analyzes(&mut self, options: &[protobuf::Node]) -> bool {
        options.iter().any(|o| match &o.node {
            Some(N::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze") => {
                match d.arg.as_deref() {
                    None => true,
                    Some(arg) => {
                        self.literal_sensitive = true;
                        let v = a_const_text(arg).unwrap_or_default().to_ascii_lowercase();
                        !matches!(v.as_str(), "false" | "off" | "no" | "0" | "f" | "n")
                    }
                }
            }
            _ => false,
        })
    }
}

/// The text of a constant node (A_Const, or a bare String as in SET lists).
fn a_const_text(n: &protobuf::Node) -> Option<String> {
    match n.node.as_ref()? {
        N::AConst(c) => match c.val.as_ref()? {
            a_const::Val::Ival(i) => Some(i.ival.to_string()),
            a_const::Val::Fval(f) => Some(f.fval.clone()),
            a_const::Val::Boolval(b) => Some(if b.boolval { "true" } else { "false" }.into()),
            a_const::Val::Sval(s) => Some(s.sval.clone()),
            a_const::Val::Bsval(b) => Some(b.bsval.clone()),
        },
        N::String(s) => Some(s.sval.clone()),
        N::Integer(i) => Some(i.ival.to_string()),
        N::Boolean(b) => Some(if b.boolval { "true" } else { "false" }.into()),
        _ => None,
    }
}

/// The last string of a name list (`[schema, name]`) into `into`, once.
fn push_last_name(list: Option<&Value>, into: &mut Vec<String>) {
    let Some(name) = list
        .and_then(Value::as_array)
        .and_then(|l| l.last())
        .and_then(string_node)
    else {
        return;
    };
    if !into.contains(&name) {
        into.push(name);
    }
}

/// `{"node": {"String": {"sval": ..}}}` → the string.
fn string_node(v: &Value) -> Option<String> {
    v.get("node")?
        .get("String")?
        .get("sval")?
        .as_str()
        .map(str::to_owned)
}

/// A constant argument's text: a string or number literal.
fn const_node(v: &Value) -> Option<String> {
    let c = v.get("node")?.get("AConst")?;
    if c.get("isnull").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let val = c.get("val")?;
    if let Some(s) = val.get("Sval") {
        return s.get("sval")?.as_str().map(str::to_owned);
    }
    if let Some(i) = val.get("Ival") {
        return Some(
            i.get("ival")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
        );
    }
    if let Some(f) = val.get("Fval") {
        return f.get("fval")?.as_str().map(str::to_owned);
    }
    if let Some(b) = val.get("Boolval") {
        return Some(
            b.get("boolval")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
        );
    }
    None
}

/// Whether a COPY statement's target is the client: the token after the
/// COPY's own `TO` (outside any parentheses) is `STDOUT`. A string constant
/// there is a server file, even an empty one.
fn copy_to_client(text: &str) -> bool {
    use pg_query::protobuf::Token as T;
    let Some(tokens) = crate::classifier::scan_tokens(text) else {
        return false;
    };
    let mut depth = 0i32;
    let mut after_to = false;
    for t in &tokens {
        let token = T::try_from(t.token).unwrap_or(T::Nul);
        if after_to {
            return token == T::Stdout;
        }
        match token {
            T::Ascii40 => depth += 1,
            T::Ascii41 => depth -= 1,
            T::To if depth == 0 => after_to = true,
            _ => {}
        }
    }
    false
}

fn locking_strength(clause: &Value) -> String {
    let strength = clause.get("strength").and_then(Value::as_i64).unwrap_or(0);
    protobuf::LockClauseStrength::try_from(strength as i32)
        .map(|s| match s {
            protobuf::LockClauseStrength::LcsForkeyshare => "FOR KEY SHARE",
            protobuf::LockClauseStrength::LcsForshare => "FOR SHARE",
            protobuf::LockClauseStrength::LcsFornokeyupdate => "FOR NO KEY UPDATE",
            _ => "FOR UPDATE",
        })
        .unwrap_or("FOR UPDATE")
        .to_owned()
}

/// Every kind [`kind_of`] gives without an object type (the `drop_*`,
/// `alter_*` and `create_*` kinds of each object type come from
/// [`object_kinds`]). A test checks that every corpus statement's kind is
/// in this vocabulary, which guardrail `deny` words are validated against.
pub(crate) const NODE_KINDS: &[&str] = &[
    "alter_collation",
    "alter_database",
    "alter_database_refresh_coll",
    "alter_database_set",
    "alter_default_privileges",
    "alter_domain",
    "alter_enum",
    "alter_event_trig",
    "alter_extension",
    "alter_extension_contents",
    "alter_fdw",
    "alter_foreign_server",
    "alter_function",
    "alter_object_depends",
    "alter_object_schema",
    "alter_op_family",
    "alter_operator",
    "alter_owner",
    "alter_policy",
    "alter_publication",
    "alter_role",
    "alter_role_set",
    "alter_seq",
    "alter_sequence",
    "alter_stats",
    "alter_subscription",
    "alter_system",
    "alter_table",
    "alter_table_move_all",
    "alter_table_space_options",
    "alter_tablespace",
    "alter_tsconfiguration",
    "alter_tsdictionary",
    "alter_type",
    "alter_user_mapping",
    "analyze",
    "call",
    "check_point",
    "close_cursor",
    "close_portal",
    "cluster",
    "comment",
    "composite_type",
    "constraints_set",
    "copy",
    "create",
    "create_am",
    "create_cast",
    "create_conversion",
    "create_database",
    "create_domain",
    "create_enum",
    "create_event_trig",
    "create_extension",
    "create_fdw",
    "create_foreign_server",
    "create_foreign_table",
    "create_function",
    "create_index",
    "create_op_class",
    "create_op_family",
    "create_plang",
    "create_policy",
    "create_procedure",
    "create_publication",
    "create_range",
    "create_role",
    "create_schema",
    "create_seq",
    "create_sequence",
    "create_stats",
    "create_subscription",
    "create_table",
    "create_table_as",
    "create_table_space",
    "create_tablespace",
    "create_transform",
    "create_trig",
    "create_trigger",
    "create_user_mapping",
    "create_view",
    "createdb",
    "deallocate",
    "declare_cursor",
    "define",
    "delete",
    "discard",
    "do",
    "drop",
    "drop_database",
    "drop_owned",
    "drop_role",
    "drop_subscription",
    "drop_table_space",
    "drop_tablespace",
    "drop_user_mapping",
    "dropdb",
    "empty",
    "execute",
    "explain",
    "fetch",
    "grant",
    "grant_role",
    "import_foreign_schema",
    "index",
    "insert",
    "listen",
    "load",
    "lock",
    "merge",
    "notify",
    "prepare",
    "reassign_owned",
    "refresh_mat_view",
    "refresh_materialized_view",
    "reindex",
    "rename",
    "replica_identity",
    "reset",
    "revoke",
    "rule",
    "sec_label",
    "select",
    "select_into",
    "set",
    "show",
    "transaction",
    "truncate",
    "unlisten",
    "update",
    "vacuum",
    "variable_set",
    "variable_show",
    "view",
];

/// The object-type names used in `drop_*`, `alter_*` and `create_*` kinds.
pub(crate) fn object_kinds() -> Vec<String> {
    (0..200)
        .filter_map(|t| protobuf::ObjectType::try_from(t).ok())
        .filter(|o| *o != protobuf::ObjectType::Undefined)
        .map(|o| object_name(o as i32))
        .collect()
}

/// In [`Statement::settings`]: a setting whose name is not a constant
/// (`set_config(expr, ...)`), so it could be any.
pub const ANY_SETTING: &str = "*";

fn object_name(t: i32) -> String {
    protobuf::ObjectType::try_from(t)
        .map(|o| {
            o.as_str_name()
                .trim_start_matches("OBJECT_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "object".into())
        .replace("matview", "materialized_view")
}

/// The command kind: a stable snake_case name for guardrails and messages.
fn kind_of(node: &N) -> String {
    let object = object_name;
    match node {
        N::SelectStmt(_) => "select".into(),
        N::InsertStmt(_) => "insert".into(),
        N::UpdateStmt(_) => "update".into(),
        N::DeleteStmt(_) => "delete".into(),
        N::MergeStmt(_) => "merge".into(),
        N::DropStmt(d) => format!("drop_{}", object(d.remove_type)),
        N::AlterTableStmt(a) => format!("alter_{}", object(a.objtype)),
        N::RenameStmt(r) => format!("alter_{}", object(r.rename_type)),
        N::AlterOwnerStmt(a) => format!("alter_{}", object(a.object_type)),
        N::AlterObjectSchemaStmt(a) => format!("alter_{}", object(a.object_type)),
        N::DefineStmt(d) => format!("create_{}", object(d.kind)),
        N::CreateStmt(_) => "create_table".into(),
        N::IndexStmt(_) => "create_index".into(),
        N::ViewStmt(_) => "create_view".into(),
        N::CreateSeqStmt(_) => "create_sequence".into(),
        N::AlterSeqStmt(_) => "alter_sequence".into(),
        N::CreateTableAsStmt(c) => format!("create_{}", object(c.objtype)),
        N::CreateFunctionStmt(f) if f.is_procedure => "create_procedure".into(),
        N::CreateFunctionStmt(_) => "create_function".into(),
        N::CreatedbStmt(_) => "create_database".into(),
        N::DropdbStmt(_) => "drop_database".into(),
        N::CreateTableSpaceStmt(_) => "create_tablespace".into(),
        N::DropTableSpaceStmt(_) => "drop_tablespace".into(),
        N::AlterTableSpaceOptionsStmt(_) => "alter_tablespace".into(),
        N::CreateTrigStmt(_) => "create_trigger".into(),
        N::RefreshMatViewStmt(_) => "refresh_materialized_view".into(),
        N::GrantStmt(g) => if g.is_grant { "grant" } else { "revoke" }.into(),
        N::GrantRoleStmt(g) => if g.is_grant { "grant" } else { "revoke" }.into(),
        N::VacuumStmt(v) => if v.is_vacuumcmd { "vacuum" } else { "analyze" }.into(),
        N::VariableSetStmt(v)
            if v.kind == protobuf::VariableSetKind::VarReset as i32
                || v.kind == protobuf::VariableSetKind::VarResetAll as i32 =>
        {
            "reset".into()
        }
        N::VariableSetStmt(_) => "set".into(),
        N::VariableShowStmt(_) => "show".into(),
        N::TransactionStmt(_) => "transaction".into(),
        N::DeclareCursorStmt(_) => "declare_cursor".into(),
        N::FetchStmt(_) => "fetch".into(),
        N::ClosePortalStmt(_) => "close_cursor".into(),
        N::PrepareStmt(_) => "prepare".into(),
        N::ExecuteStmt(_) => "execute".into(),
        N::DeallocateStmt(_) => "deallocate".into(),
        other => {
            // The node's type name, e.g. CreateExtensionStmt → create_extension.
            let name = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_object().and_then(|m| m.keys().next().cloned()))
                .unwrap_or_else(|| "unknown".into());
            snake(name.trim_end_matches("Stmt"))
        }
    }
}

fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(sql: &str) -> &'static str {
        classify(sql).rule().as_str()
    }

    #[test]
    fn basics() {
        assert_eq!(rule("SELECT 1"), "query");
        assert_eq!(rule(""), "empty");
        assert_eq!(rule("-- nothing"), "empty");
        assert_eq!(rule("SELEC 1"), "syntax_error");
        assert_eq!(rule("select nextval('s')"), "sequence_function");
        assert_eq!(rule("select \"NextVal\"('s')"), "query");
        assert_eq!(
            rule("select pg_catalog.setval('s', 1)"),
            "sequence_function"
        );
        assert_eq!(
            rule("with d as (delete from t) select 1"),
            "data_modifying_cte"
        );
        assert_eq!(rule("select * from t for key share"), "locking_clause");
        assert_eq!(rule("select 1; delete from t"), "delete");
        assert_eq!(rule("select * into x from t"), "select_into");
        assert_eq!(rule("drop table t"), "ddl");
        assert_eq!(classify("drop table t").deciding().kind, "drop_table");
        assert_eq!(
            classify("alter table t add c int").deciding().kind,
            "alter_table"
        );
        assert_eq!(
            classify("create extension x").deciding().kind,
            "create_extension"
        );
    }

    #[test]
    fn settings_and_transactions() {
        assert_eq!(rule("set transaction_read_only = off"), "read_only_setting");
        assert_eq!(rule("set transaction_read_only = on"), "set");
        assert_eq!(
            rule("select set_config('default_transaction_read_only','off',false)"),
            "read_only_setting"
        );
        assert_eq!(
            rule("select set_config('application_name','x',false)"),
            "query"
        );
        assert_eq!(rule("begin read write"), "read_only_setting");
        assert_eq!(rule("begin read only"), "transaction");
        assert_eq!(
            rule("start transaction isolation level serializable"),
            "transaction"
        );
        assert_eq!(
            rule("set session characteristics as transaction read write"),
            "read_only_setting"
        );
        assert_eq!(
            rule("set session characteristics as transaction read only"),
            "set"
        );
        assert_eq!(rule("set role admin"), "identity_setting");
        assert_eq!(rule("set names 'SJIS'"), "client_encoding");
        assert_eq!(
            rule("set standard_conforming_strings = off"),
            "standard_conforming_strings"
        );
        assert_eq!(rule("reset all"), "set");
        let v = classify("set statement_timeout = 0");
        assert_eq!(v.deciding().settings, vec!["statement_timeout".to_string()]);
        assert!(v.literal_sensitive);
        assert!(!classify("select 1").literal_sensitive);
    }

    #[test]
    fn wrappers() {
        assert_eq!(rule("explain delete from t"), "explain");
        assert_eq!(rule("explain analyze delete from t"), "delete");
        assert_eq!(rule("explain (analyze false) delete from t"), "explain");
        assert_eq!(rule("explain analyze select 1"), "explain");
        assert_eq!(rule("declare c cursor for select * from t"), "cursor");
        assert_eq!(
            rule("declare c cursor for select * from t for update"),
            "locking_clause"
        );
        assert_eq!(rule("prepare p as select 1"), "prepared_statement");
        assert_eq!(rule("prepare p as delete from t"), "delete");
        assert_eq!(rule("execute p(nextval('s'))"), "sequence_function");
        assert_eq!(rule("copy t to stdout"), "copy_to_client");
        assert_eq!(rule("COPY t TO STDOUT (FORMAT csv)"), "copy_to_client");
        assert_eq!(rule("copy (select 'to') to stdout"), "copy_to_client");
        // Regression: `TO ''` parses like `TO STDOUT` (an empty file name),
        // and was cached for `TO '/path/file'`, which has the same shape.
        assert_eq!(rule("copy t to ''"), "copy_to_file");
        assert_eq!(rule("copy (select 1) to ''"), "copy_to_file");
        assert_eq!(rule("copy (delete from t returning *) to stdout"), "delete");
        assert_eq!(rule("copy t to '/tmp/x'"), "copy_to_file");
        assert_eq!(rule("copy t from stdin"), "copy_from");
        assert_eq!(rule("copy t from program 'x'"), "copy_program");
    }

    #[test]
    fn function_calls_are_collected_for_the_allowlist() {
        let names = |sql: &str| -> Vec<(Option<String>, String, bool)> {
            classify(sql)
                .deciding()
                .functions
                .iter()
                .map(|f| (f.schema.clone(), f.name.clone(), f.allowed))
                .collect()
        };
        assert_eq!(
            names("select lower(x), lower(y), pg_catalog.upper(x), app.f(1) from t"),
            vec![
                (None, "lower".into(), true),
                (Some("pg_catalog".into()), "upper".into(), true),
                (Some("app".into()), "f".into(), false),
            ]
        );
        assert_eq!(
            names("select * from query_to_xml('select 1', true, true, '')"),
            vec![(None, "query_to_xml".into(), false)]
        );
        assert_eq!(
            rule("select * from query_to_xml('select 1', true, true, '')"),
            "executes_sql"
        );
        assert_eq!(rule("select ts_stat('select v from t')"), "executes_sql");
        // EXPLAIN does not run the statement, but planning may call its
        // functions: they are collected all the same.
        assert_eq!(
            names("explain select txid_current()"),
            vec![(None, "txid_current".into(), false)]
        );
        assert_eq!(
            names("declare c cursor for select my_func()"),
            vec![(None, "my_func".into(), false)]
        );
        let v = classify("select set_config('client_encoding', $1, false)");
        assert_eq!(v.rule(), Rule::Query);
        assert!(v.deciding().changes_settings_opaquely);
        assert!(
            !classify("select set_config('application_name', 'x', false)")
                .deciding()
                .changes_settings_opaquely
        );
    }

    #[test]
    fn unqualified_writes_are_found_anywhere() {
        assert_eq!(
            classify("delete from t").deciding().unqualified,
            Some("delete")
        );
        assert_eq!(
            classify("delete from t where id = 1")
                .deciding()
                .unqualified,
            None
        );
        assert_eq!(
            classify("with x as (update t set a = 1 returning *) select * from x")
                .deciding()
                .unqualified,
            Some("update")
        );
    }
}
