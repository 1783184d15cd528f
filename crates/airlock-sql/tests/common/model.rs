//! Properties every classification must have, for any text. Shared by the
//! fuzz target (`fuzz/fuzz_targets/classify.rs`) and the stable tests.

use airlock_sql::classifier::{scan_tokens, shape_key};
use airlock_sql::{classify, Class};
use pg_query::protobuf::Token;

/// Classifies `sql` and checks:
/// - no panic, at least one statement, the class is the most restrictive;
/// - the shape cache is sound: a text with the same shape (other constants)
///   gets the same rule whenever the first verdict may be cached.
pub fn check(sql: &str) {
    let v = classify(sql);
    assert!(!v.statements.is_empty());
    assert_eq!(
        v.class(),
        v.statements.iter().map(|s| s.class()).max().unwrap()
    );
    assert_eq!(v.deciding().class(), v.class());
    if v.literal_sensitive || v.class() == Class::Refused {
        return;
    }
    for empty in [false, true] {
        let Some(other) = other_constants(sql, empty) else {
            return;
        };
        if shape_key(sql) != shape_key(&other) || shape_key(sql).is_none() {
            continue;
        }
        // The whole verdict, not only the rule: a cached verdict is used
        // whole (functions, settings, opacity).
        let w = classify(&other);
        assert!(
            w == v || w.class() == Class::Refused,
            "same shape, different verdicts: {sql:?} is {:?} but {other:?} is {:?}",
            v.statements,
            w.statements
        );
    }
}

/// `sql` with every constant replaced by another of the same token type
/// (strings by `'zz'`, or by the empty string when `empty`: the tree
/// cannot tell an empty string from an absent one, as in `COPY t TO ''`).
pub fn other_constants(sql: &str, empty: bool) -> Option<String> {
    let tokens = scan_tokens(sql)?;
    let mut out = String::with_capacity(sql.len());
    let mut at = 0usize;
    for t in &tokens {
        let (start, end) = (t.start as usize, t.end as usize);
        let slice = sql.get(start..end)?;
        let replacement = match Token::try_from(t.token).ok()? {
            Token::Iconst => "42",
            Token::Fconst => "4.5",
            Token::Sconst if slice.starts_with('\'') && empty => "''",
            Token::Sconst if slice.starts_with('\'') => "'zz'",
            Token::Bconst => "B'1'",
            Token::Xconst => "X'1'",
            _ => continue,
        };
        out.push_str(sql.get(at..start)?);
        out.push(' ');
        out.push_str(replacement);
        out.push(' ');
        at = end;
    }
    out.push_str(sql.get(at..)?);
    Some(out)
}
