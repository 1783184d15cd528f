//! The classification corpus (`tests/corpus/sql-classification.toml` at the
//! repository root): every case's class and rule, and the properties of
//! `common/model.rs` (shared with the fuzz target) on every case.

#[path = "common/model.rs"]
mod model;

use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    sql: String,
    class: String,
    rule: String,
    #[serde(default)]
    note: Option<String>,
}

fn corpus() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpus/sql-classification.toml"
    );
    let text = std::fs::read_to_string(path).expect("reading the corpus");
    toml::from_str::<Corpus>(&text)
        .expect("parsing the corpus")
        .case
}

#[test]
fn every_case_gets_its_class_and_rule() {
    let cases = corpus();
    assert!(cases.len() >= 200, "the corpus has {} cases", cases.len());
    let mut wrong = Vec::new();
    for c in &cases {
        let v = airlock_sql::classify(&c.sql);
        let (class, rule) = (v.class().as_str(), v.rule().as_str());
        if class != c.class || rule != c.rule {
            wrong.push(format!(
                "{:?}\n    expected {} {}, got {class} {rule} ({:?}){}",
                c.sql,
                c.class,
                c.rule,
                v.deciding().detail,
                c.note
                    .as_deref()
                    .map(|n| format!("\n    note: {n}"))
                    .unwrap_or_default()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases misclassified:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn model_properties_hold_on_every_case() {
    for c in corpus() {
        model::check(&c.sql);
    }
}

/// Guardrail `deny` words are validated against `known_kinds()`: a kind the
/// classifier gives but the vocabulary lacks could not be denied by name.
#[test]
fn every_kind_in_the_corpus_is_in_the_deny_vocabulary() {
    let known = airlock_sql::guard::known_kinds();
    let mut missing = std::collections::BTreeSet::new();
    for c in corpus() {
        for s in airlock_sql::classify(&c.sql).statements {
            if s.class() != airlock_sql::Class::Refused && !known.contains(&s.kind) {
                missing.insert(format!("{} (from {:?})", s.kind, c.sql));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "kinds not in the vocabulary: {missing:#?}"
    );
}
