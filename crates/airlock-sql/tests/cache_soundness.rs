//! The shape cache is sound: a verdict from the cache is always the verdict
//! the classifier would give the text itself.
//!
//! Regression: `COPY t TO ''` was classified as a copy to the client (the
//! parse tree cannot tell `TO ''` from `TO STDOUT`) and cached; `COPY t TO
//! '/path/file'` has the same shape, so it was then allowed from the cache
//! for every read session of every resource. This test evaluates random
//! mutations of every corpus statement (each constant replaced by one of many
//! values of its token type, empty strings and setting values included)
//! through one shared cache, in random order, and requires each cached
//! verdict to equal the uncached one.

use airlock_sql::classifier::scan_tokens;
use airlock_sql::{classify, Classifier, ClassifierOptions};
use pg_query::protobuf::Token;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    sql: String,
}

fn corpus() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpus/sql-classification.toml"
    );
    let text = std::fs::read_to_string(path).expect("reading the corpus");
    let mut sqls: Vec<String> = toml::from_str::<Corpus>(&text)
        .expect("parsing the corpus")
        .case
        .into_iter()
        .map(|c| c.sql)
        .collect();
    // Statements whose verdict hinges on a constant's value.
    sqls.extend(
        [
            "COPY t TO STDOUT",
            "COPY t TO ''",
            "COPY t TO '/tmp/airlock-out'",
            "COPY (SELECT 'x') TO ''",
            "COPY t FROM ''",
            "SELECT set_config('application_name', 'x', false)",
            "SET application_name = 'x'",
            "EXPLAIN (ANALYZE false) DELETE FROM t",
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY",
            "SELECT * FROM t WHERE a = 'on' AND b = E'\\x6f\\x66\\x66'",
            "SELECT query_to_xml('select 1', true, true, '')",
        ]
        .map(str::to_owned),
    );
    sqls
}

/// Values a constant of each token type may take instead.
fn alternatives(token: Token) -> &'static [&'static str] {
    match token {
        Token::Sconst => &[
            "''",
            "'x'",
            "'/tmp/airlock-file'",
            "'off'",
            "'on'",
            "'false'",
            "'stdout'",
            "'SJIS'",
            "'role'",
            "'0'",
            "E''",
            "E'o\\x66f'",
            "$$off$$",
            "$q$/tmp/y$q$",
        ],
        Token::Iconst => &["0", "1", "42", "2147483648"],
        Token::Fconst => &["0.0", "4.5", "1e10"],
        Token::Bconst => &["B''", "B'1'"],
        Token::Xconst => &["X''", "X'1f'"],
        _ => &[],
    }
}

/// `sql` with each constant replaced by a random alternative (or kept).
fn mutate(sql: &str, rng: &mut StdRng) -> Option<String> {
    let tokens = scan_tokens(sql)?;
    let mut out = String::with_capacity(sql.len() + 16);
    let mut at = 0usize;
    for t in &tokens {
        let token = Token::try_from(t.token).ok()?;
        let options = alternatives(token);
        if options.is_empty() || rng.random_bool(0.2) {
            continue;
        }
        let (start, end) = (t.start as usize, t.end as usize);
        out.push_str(sql.get(at..start)?);
        out.push(' ');
        out.push_str(options[rng.random_range(0..options.len())]);
        out.push(' ');
        at = end;
    }
    out.push_str(sql.get(at..)?);
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_verdicts_equal_uncached_ones_for_random_mutations() {
    let mut rng = StdRng::seed_from_u64(0x5eed_a1c0);
    let mut texts = Vec::new();
    for sql in corpus() {
        texts.push(sql.clone());
        for _ in 0..12 {
            if let Some(m) = mutate(&sql, &mut rng) {
                texts.push(m);
            }
        }
    }
    texts.shuffle(&mut rng);
    let classifier = Classifier::new(ClassifierOptions::default());
    let mut mismatches = Vec::new();
    // Twice: the second pass is served mostly from the cache.
    for _ in 0..2 {
        for text in &texts {
            let cached = classifier.classify(text).await;
            let fresh = classify(text);
            if *cached != fresh {
                mismatches.push(format!(
                    "{text:?}\n    cached: {} {:?}\n    fresh:  {} {:?}",
                    cached.rule().as_str(),
                    cached.deciding(),
                    fresh.rule().as_str(),
                    fresh.deciding()
                ));
            }
        }
    }
    let hits = classifier
        .stats()
        .hits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        hits > texts.len() as u64 / 2,
        "the cache served only {hits} of {} texts: the test would prove little",
        texts.len() * 2
    );
    assert!(
        mismatches.is_empty(),
        "{} cached verdicts differ from the classifier's own:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
