//! How a statement uses columns, for strict masking.
//!
//! Result masking replaces values in the rows a statement returns. A value
//! that flows through an expression first (`ssn || ''`, `ssn::int` failing
//! with the value in its message, `row_to_json(c)`, `WHERE ssn = '...'`
//! answering yes or no) reaches the client in a form the result filter does
//! not recognise as the column. Strict masking therefore lets a masked column
//! appear in one place only: as a bare output column of the outermost query
//! (`SELECT ssn FROM customers`, optionally renamed), where the gateway
//! knows it and masks it.
//!
//! [`ColumnUses`] is what the classifier extracts from the parse tree,
//! independent of any session (so it is cached with the verdict);
//! [`ColumnUses::strict_violation`] decides against one session's masking
//! patterns and the relations the session's catalog says carry masked
//! columns.
//!
//! Names are matched, not resolved: the gateway has no schema search path.
//! Every rule errs on the side of refusing:
//! - a name matching a pattern anywhere but as a bare outermost output
//!   column is a use, whatever table it belongs to (this also covers columns
//!   renamed on their way out of a subquery or CTE: the inner reference is
//!   not outermost);
//! - for a statement that names a relation carrying masked columns (by its
//!   name, any schema), the ways to reach those columns without naming them
//!   are refused: a whole-row reference (`c`, `row_to_json(c)`, `(c).*`), a
//!   `*` anywhere but the outermost output list (and an `EXISTS` subquery's,
//!   which returns no values), a column alias list on the relation
//!   (`customers AS c(a, b, x)`), a `NATURAL` join, ordering or grouping by
//!   output position over `*`, and `DISTINCT` over a masked output.

use serde_json::Value;

use crate::mask::ColumnPattern;

/// What one statement does with columns. Built by the classifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnUses {
    /// The outermost query's output list, in order; empty when the
    /// statement has none (a set operation, a non-SELECT).
    pub output: Vec<Output>,
    /// Column names used anywhere else: expressions, conditions, ordering,
    /// subqueries, CTEs, join `USING` lists, field selections.
    pub used: Vec<String>,
    /// Relations the statement names.
    pub relations: Vec<Relation>,
    /// A `*` outside the outermost output list and `EXISTS` subqueries.
    pub nested_star: bool,
    /// A `NATURAL` join.
    pub natural_join: bool,
    /// Output positions the outermost query orders, groups or
    /// `DISTINCT ON`s by (1-based).
    pub positions: Vec<i64>,
    /// The outermost query is `SELECT DISTINCT`.
    pub distinct: bool,
}

/// One entry of the outermost output list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A bare column reference (its last name), with its output alias.
    Column { name: String, alias: Option<String> },
    /// `*` or `rel.*`.
    Star,
    /// Any other expression (its column references are in `used`).
    Expression,
}

/// A relation named in a FROM list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    pub alias: Option<String>,
    /// It has a column alias list (`AS c(a, b)`), which renames its columns.
    pub renames_columns: bool,
}

/// Why strict masking refuses a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskedUse {
    /// A masked column used in an expression, condition, ordering,
    /// subquery or join.
    Column(String),
    /// A whole-row reference to a relation with masked columns.
    WholeRow(String),
    /// `*` inside a subquery, CTE or expression over a relation with
    /// masked columns.
    NestedStar(String),
    /// A column alias list on a relation with masked columns.
    Renamed(String),
    /// A NATURAL join involving a relation with masked columns.
    NaturalJoin(String),
    /// Ordering, grouping or DISTINCT ON by the position of a masked output
    /// column (or of `*` over a relation with masked columns).
    Position(String),
    /// SELECT DISTINCT over a masked output column.
    Distinct(String),
    /// A planner statistics view, which shows sample values of every
    /// column the reader may select (most common values, histograms).
    Statistics(String),
}

/// The catalog relations that show column values the planner sampled.
const STATISTICS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
];

impl std::fmt::Display for MaskedUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaskedUse::Column(c) => write!(
                f,
                "masked column \"{c}\" is used in an expression, condition, ordering, subquery or join"
            ),
            MaskedUse::WholeRow(r) => write!(
                f,
                "\"{r}\" is used as a whole row, which carries its masked columns unmasked"
            ),
            MaskedUse::NestedStar(r) => write!(
                f,
                "`*` over \"{r}\", which has masked columns, is used inside a subquery, CTE or expression"
            ),
            MaskedUse::Renamed(r) => write!(
                f,
                "the columns of \"{r}\", which has masked columns, are renamed by a column alias list"
            ),
            MaskedUse::NaturalJoin(r) => write!(
                f,
                "a NATURAL join with \"{r}\", which has masked columns, may join on a masked column"
            ),
            MaskedUse::Position(c) => write!(
                f,
                "the statement orders or groups by the position of masked output \"{c}\""
            ),
            MaskedUse::Distinct(c) => write!(
                f,
                "SELECT DISTINCT compares masked output \"{c}\""
            ),
            MaskedUse::Statistics(r) => write!(
                f,
                "\"{r}\" shows sample values of columns, masked ones included"
            ),
        }
    }
}

impl ColumnUses {
    /// The first use strict masking refuses, given the session's masked
    /// column patterns and `masked_relation(name)`, which tells whether a
    /// relation of that name (any schema, compared case-insensitively) has a
    /// masked column.
    pub fn strict_violation(
        &self,
        patterns: &[ColumnPattern],
        masked_relation: impl Fn(&str) -> bool,
    ) -> Option<MaskedUse> {
        let masked = |name: &str| patterns.iter().any(|p| p.matches(name));
        if let Some(r) = self
            .relations
            .iter()
            .find(|r| STATISTICS.iter().any(|s| r.name.eq_ignore_ascii_case(s)))
        {
            return Some(MaskedUse::Statistics(r.name.clone()));
        }
        if let Some(c) = self.used.iter().find(|c| masked(c)) {
            return Some(MaskedUse::Column(c.clone()));
        }
        // An output alias of a masked column used elsewhere (ORDER BY x).
        for o in &self.output {
            if let Output::Column {
                name,
                alias: Some(alias),
            } = o
            {
                if masked(name) && self.used.iter().any(|u| u.eq_ignore_ascii_case(alias)) {
                    return Some(MaskedUse::Column(name.clone()));
                }
            }
        }
        let masked_output = self.output.iter().find_map(|o| match o {
            Output::Column { name, .. } if masked(name) => Some(name.clone()),
            _ => None,
        });
        for p in &self.positions {
            let at = usize::try_from(*p)
                .ok()
                .and_then(|p| p.checked_sub(1))
                .and_then(|i| self.output.get(i));
            if let Some(Output::Column { name, .. }) = at {
                if masked(name) {
                    return Some(MaskedUse::Position(name.clone()));
                }
            }
        }
        if self.distinct {
            if let Some(name) = &masked_output {
                return Some(MaskedUse::Distinct(name.clone()));
            }
        }
        let first = self.relations.iter().find(|r| masked_relation(&r.name))?;
        for r in self.relations.iter().filter(|r| masked_relation(&r.name)) {
            let names_it = |n: &str| {
                n.eq_ignore_ascii_case(&r.name)
                    || r.alias
                        .as_deref()
                        .is_some_and(|a| n.eq_ignore_ascii_case(a))
            };
            let output_names = self.output.iter().filter_map(|o| match o {
                Output::Column { name, .. } => Some(name),
                _ => None,
            });
            if self.used.iter().chain(output_names).any(|n| names_it(n)) {
                return Some(MaskedUse::WholeRow(
                    r.alias.clone().unwrap_or(r.name.clone()),
                ));
            }
            if r.renames_columns {
                return Some(MaskedUse::Renamed(r.name.clone()));
            }
        }
        if self.nested_star {
            return Some(MaskedUse::NestedStar(first.name.clone()));
        }
        if self.natural_join {
            return Some(MaskedUse::NaturalJoin(first.name.clone()));
        }
        let star = self.output.contains(&Output::Star);
        if star && !self.positions.is_empty() {
            return Some(MaskedUse::Position(format!("{}.*", first.name)));
        }
        if star && self.distinct {
            return Some(MaskedUse::Distinct(format!("{}.*", first.name)));
        }
        None
    }
}

/// Deepest tree the walk follows (the classifier's own walk has the same
/// bound and reports a deeper tree).
const MAX_DEPTH: usize = 20_000;

/// Extracts the column uses of one statement from its serde form (the
/// statement node's inner object). `outermost`: the node is a SELECT whose
/// output list is what the client receives. Returns `None` when the tree is
/// too deep.
pub(crate) fn column_uses(stmt: &Value, outermost: bool) -> Option<ColumnUses> {
    let mut uses = ColumnUses::default();
    let simple_select = outermost
        && stmt.get("op").and_then(Value::as_i64)
            == Some(pg_query::protobuf::SetOperation::SetopNone as i64);
    let Value::Object(map) = stmt else {
        return Some(uses);
    };
    if !simple_select {
        return walk(stmt, 0, &mut uses).then_some(uses);
    }
    for (key, child) in map {
        let ok = match key.as_str() {
            "target_list" => output_list(child, &mut uses),
            "sort_clause" => each(
                child,
                |item, uses| {
                    let inner = item.get("node").and_then(|n| n.get("SortBy"));
                    match inner.and_then(|s| s.get("node")).and_then(position) {
                        Some(p) => {
                            uses.positions.push(p);
                            true
                        }
                        None => walk(item, 1, uses),
                    }
                },
                &mut uses,
            ),
            "group_clause" => each(
                child,
                |item, uses| match position(item) {
                    Some(p) => {
                        uses.positions.push(p);
                        true
                    }
                    None => walk(item, 1, uses),
                },
                &mut uses,
            ),
            "distinct_clause" => each(
                child,
                |item, uses| {
                    match item.get("node") {
                        // Plain DISTINCT is a list of one empty node.
                        None | Some(Value::Null) => {
                            uses.distinct = true;
                            true
                        }
                        Some(_) => match position(item) {
                            Some(p) => {
                                uses.positions.push(p);
                                true
                            }
                            None => walk(item, 1, uses),
                        },
                    }
                },
                &mut uses,
            ),
            _ => walk(child, 1, &mut uses),
        };
        if !ok {
            return None;
        }
    }
    Some(uses)
}

fn each(
    list: &Value,
    mut f: impl FnMut(&Value, &mut ColumnUses) -> bool,
    uses: &mut ColumnUses,
) -> bool {
    match list {
        Value::Array(items) => items.iter().all(|item| f(item, uses)),
        other => walk(other, 1, uses),
    }
}

/// `{"node": {"AConst": {"val": {"Ival": {"ival": N}}}}}` → N.
fn position(v: &Value) -> Option<i64> {
    let c = v.get("node")?.get("AConst")?;
    c.get("val")?
        .get("Ival")?
        .get("ival")
        .and_then(Value::as_i64)
        .or_else(|| {
            // ival 0 is omitted by some serialisers.
            c.get("val")?.get("Ival").map(|_| 0)
        })
}

/// The outermost output list: bare column references are outputs, the rest
/// is walked.
fn output_list(list: &Value, uses: &mut ColumnUses) -> bool {
    let Value::Array(items) = list else {
        return walk(list, 1, uses);
    };
    for item in items {
        let Some(target) = item.get("node").and_then(|n| n.get("ResTarget")) else {
            if !walk(item, 1, uses) {
                return false;
            }
            continue;
        };
        let alias = target
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let val = target.get("val").and_then(|v| v.get("node"));
        match val.and_then(|v| v.get("ColumnRef")).map(column_ref) {
            Some(Some(Field::Star)) => uses.output.push(Output::Star),
            Some(Some(Field::Name(name))) => uses.output.push(Output::Column { name, alias }),
            _ => {
                uses.output.push(Output::Expression);
                if !walk(target, 1, uses) {
                    return false;
                }
            }
        }
    }
    true
}

enum Field {
    Name(String),
    Star,
}

/// A ColumnRef's last field.
fn column_ref(r: &Value) -> Option<Field> {
    let last = r.get("fields")?.as_array()?.last()?.get("node")?;
    if last.get("AStar").is_some() {
        return Some(Field::Star);
    }
    last.get("String")?
        .get("sval")?
        .as_str()
        .map(|s| Field::Name(s.to_owned()))
}

fn walk(v: &Value, depth: usize, uses: &mut ColumnUses) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match v {
        Value::Array(items) => items.iter().all(|item| walk(item, depth + 1, uses)),
        Value::Object(map) => {
            for (key, child) in map {
                match key.as_str() {
                    "ColumnRef" => match column_ref(child) {
                        Some(Field::Star) => uses.nested_star = true,
                        Some(Field::Name(name)) => uses.used.push(name),
                        None => {}
                    },
                    "AIndirection" => {
                        for i in child
                            .get("indirection")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let node = i.get("node");
                            if let Some(s) = node
                                .and_then(|n| n.get("String"))
                                .and_then(|s| s.get("sval"))
                                .and_then(Value::as_str)
                            {
                                uses.used.push(s.to_owned());
                            }
                            if node.and_then(|n| n.get("AStar")).is_some() {
                                uses.nested_star = true;
                            }
                        }
                    }
                    "RangeVar" => {
                        let alias = child.get("alias").filter(|a| !a.is_null());
                        uses.relations.push(Relation {
                            name: child
                                .get("relname")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            alias: alias
                                .and_then(|a| a.get("aliasname"))
                                .and_then(Value::as_str)
                                .map(str::to_owned),
                            renames_columns: alias
                                .and_then(|a| a.get("colnames"))
                                .and_then(Value::as_array)
                                .is_some_and(|c| !c.is_empty()),
                        });
                    }
                    "JoinExpr" => {
                        if child.get("is_natural").and_then(Value::as_bool) == Some(true) {
                            uses.natural_join = true;
                        }
                        for u in child
                            .get("using_clause")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(s) = u
                                .get("node")
                                .and_then(|n| n.get("String"))
                                .and_then(|s| s.get("sval"))
                                .and_then(Value::as_str)
                            {
                                uses.used.push(s.to_owned());
                            }
                        }
                    }
                    "SubLink"
                        if child.get("sub_link_type").and_then(Value::as_i64)
                            == Some(pg_query::protobuf::SubLinkType::ExistsSublink as i64) =>
                    {
                        if !exists(child, depth + 1, uses) {
                            return false;
                        }
                        continue;
                    }
                    _ => {}
                }
                if !walk(child, depth + 1, uses) {
                    return false;
                }
            }
            true
        }
        _ => true,
    }
}

/// An EXISTS subquery: its output list returns no values, so a bare `*`
/// there is not a use; everything else is walked as usual.
fn exists(sublink: &Value, depth: usize, uses: &mut ColumnUses) -> bool {
    let Value::Object(map) = sublink else {
        return true;
    };
    for (key, child) in map {
        let select = child.get("node").and_then(|n| n.get("SelectStmt"));
        match (key.as_str(), select) {
            ("subselect", Some(Value::Object(select))) => {
                for (k, c) in select {
                    let ok = if k == "target_list" {
                        each(
                            c,
                            |item, uses| {
                                let bare_star = item
                                    .get("node")
                                    .and_then(|n| n.get("ResTarget"))
                                    .and_then(|t| t.get("val"))
                                    .and_then(|v| v.get("node"))
                                    .and_then(|v| v.get("ColumnRef"))
                                    .and_then(column_ref)
                                    .is_some_and(|f| matches!(f, Field::Star));
                                bare_star || walk(item, depth + 1, uses)
                            },
                            uses,
                        )
                    } else {
                        walk(c, depth + 1, uses)
                    };
                    if !ok {
                        return false;
                    }
                }
            }
            _ => {
                if !walk(child, depth + 1, uses) {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Option<MaskedUse> {
        let patterns = [
            ColumnPattern::new("ssn").unwrap(),
            ColumnPattern::new("*_email").unwrap(),
        ];
        let verdict = crate::classify(sql);
        verdict.statements.iter().find_map(|s| {
            s.columns
                .strict_violation(&patterns, |r| r.eq_ignore_ascii_case("customers"))
        })
    }

    #[test]
    fn bare_output_columns_and_ordinary_queries_pass() {
        for sql in [
            "select ssn from customers",
            "select ssn as x, name, c.work_email from customers c where c.id = 1",
            "select * from customers",
            "select c.* from customers c where c.id > 10 order by c.id",
            "SELECT SSN FROM Customers",
            "select * from orders o where exists (select * from customers c where c.id = o.cid)",
            "select name from customers order by name limit 5",
            "select * from (select * from orders) s",
            "select o from orders o",
            "select count(*) from customers",
            "select name from customers group by 1",
            "explain select ssn from customers",
            "declare k cursor for select ssn from customers",
            "prepare p as select ssn from customers where id = $1",
            "show work_mem",
            "select 1",
        ] {
            assert_eq!(check(sql), None, "{sql}");
        }
    }

    #[test]
    fn every_other_use_of_a_masked_column_is_refused() {
        use MaskedUse as M;
        let col = |c: &str| Some(M::Column(c.into()));
        for (sql, want) in [
            // The examples.
            ("select ssn || '' from customers", col("ssn")),
            (
                "select row_to_json(c) from customers c",
                Some(M::WholeRow("c".into())),
            ),
            ("select ssn::int from customers", col("ssn")),
            // Expressions, conditions, ordering, aggregates, joins.
            ("select upper(home_email) from customers", col("home_email")),
            (
                "select id from customers where ssn = '078-05-1120'",
                col("ssn"),
            ),
            ("select id from customers where ssn like '078%'", col("ssn")),
            ("select name from customers order by ssn", col("ssn")),
            ("select ssn as x from customers order by x", col("ssn")),
            (
                "select ssn from customers order by 1",
                Some(M::Position("ssn".into())),
            ),
            (
                "select name, ssn from customers group by 2, 1",
                Some(M::Position("ssn".into())),
            ),
            (
                "select distinct ssn from customers",
                Some(M::Distinct("ssn".into())),
            ),
            ("select distinct on (ssn) id from customers", col("ssn")),
            ("select count(distinct ssn) from customers", col("ssn")),
            ("select string_agg(ssn, ',') from customers", col("ssn")),
            (
                "select id, rank() over (order by ssn) from customers",
                col("ssn"),
            ),
            ("select * from customers join other using (ssn)", col("ssn")),
            ("select ssn collate \"C\" from customers", col("ssn")),
            // Subqueries, CTEs, set operations: the reference is not outermost.
            ("select (select ssn from customers limit 1)", col("ssn")),
            (
                "with c as (select ssn from customers) select * from c",
                col("ssn"),
            ),
            (
                "select x from (select ssn as x from customers) s",
                col("ssn"),
            ),
            (
                "select name from t union all select ssn from customers",
                col("ssn"),
            ),
            ("explain analyze select ssn::int from customers", col("ssn")),
            (
                "declare k cursor for select ssn || '' from customers",
                col("ssn"),
            ),
            // Reaching the columns without naming them.
            ("select c from customers c", Some(M::WholeRow("c".into()))),
            (
                "select to_jsonb(customers) from customers",
                Some(M::WholeRow("customers".into())),
            ),
            ("select (c).ssn from customers c", col("ssn")),
            (
                "select (c).* from customers c",
                Some(M::WholeRow("c".into())),
            ),
            (
                "select (c.*)::text from customers c",
                Some(M::NestedStar("customers".into())),
            ),
            (
                "select row(c.*) from customers c",
                Some(M::NestedStar("customers".into())),
            ),
            (
                "select * from (select * from customers) s",
                Some(M::NestedStar("customers".into())),
            ),
            (
                "select x || '' from customers as c(a, x)",
                Some(M::Renamed("customers".into())),
            ),
            (
                "select * from customers natural join other",
                Some(M::NaturalJoin("customers".into())),
            ),
            (
                "select * from customers order by 3",
                Some(M::Position("customers.*".into())),
            ),
            (
                "select distinct * from customers",
                Some(M::Distinct("customers.*".into())),
            ),
            (
                "select * from public.customers c where exists (select 1 from t where t.x = c)",
                Some(M::WholeRow("c".into())),
            ),
            // Planner statistics hold sample values of every column.
            (
                "select most_common_vals from pg_catalog.pg_stats where attname = 'x'",
                Some(M::Statistics("pg_stats".into())),
            ),
        ] {
            assert_eq!(check(sql), want, "{sql}");
        }
    }

    #[test]
    fn positions_make_the_verdict_literal_sensitive() {
        // `ORDER BY 1` and `ORDER BY 2` share a shape; the cache must not
        // give one the other's verdict.
        assert!(crate::classify("select ssn, id from customers order by 2").literal_sensitive);
        assert!(!crate::classify("select ssn, id from customers order by id").literal_sensitive);
    }
}
