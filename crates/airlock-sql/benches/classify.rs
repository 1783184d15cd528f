//! Classification cost: a full parse and walk (cold) against the shape-cache
//! path the gateway takes for a repeated statement with other constants
//! (cached), and against the scanner alone (the floor of the cached path).
//!
//! `cargo bench -p airlock-sql --bench classify`; results in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use airlock_sql::{classify, Classifier, ClassifierOptions};

const STATEMENTS: &[(&str, &str)] = &[
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    ),
    (
        "join_cte",
        "WITH recent AS (SELECT customer_id, sum(total_cents) AS t FROM orders \
         WHERE created_at > now() - interval '7 days' GROUP BY customer_id) \
         SELECT c.name, c.email, r.t FROM customers c JOIN recent r ON r.customer_id = c.id \
         WHERE r.t > 10000 ORDER BY r.t DESC LIMIT 50",
    ),
    ("update", "UPDATE orders SET status = 'paid' WHERE id = 42"),
];

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let classifier = Classifier::new(ClassifierOptions::default());
    for (name, sql) in STATEMENTS {
        c.bench_function(&format!("cold/{name}"), |b| {
            b.iter(|| classify(black_box(sql)))
        });
        c.bench_function(&format!("scan_only/{name}"), |b| {
            b.iter(|| airlock_sql::classifier::shape_key(black_box(sql)))
        });
        // Warm the cache, then classify the same shape with other constants.
        rt.block_on(classifier.classify(sql));
        let other = sql.replace("48213", "7").replace("42", "7");
        c.bench_function(&format!("cached/{name}"), |b| {
            b.iter(|| rt.block_on(classifier.classify(black_box(&other))))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
