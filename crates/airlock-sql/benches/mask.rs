//! Masking cost per value: `Detectors::redact` with all four detectors over
//! the values a masked result typically carries (most of them have no PII,
//! so the prefilters decide the cost), and column-pattern matching.
//!
//! `cargo bench -p airlock-sql --bench mask`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use airlock_sql::mask::{ColumnPattern, Detector, Detectors};

fn values() -> Vec<(&'static str, Vec<u8>)> {
    let sentence = b"The quarterly report was filed on time and reviewed by the board.";
    let with_email = b"Please forward the signed copy to alice.example@mail.example.org.";
    let paragraph: &[u8] = b"Shipment 17 left the warehouse at 09:40 and reached the depot \
        after a short delay; version 2.4.1 of the router handled 3 retries. ";
    let text: Vec<u8> = paragraph.iter().copied().cycle().take(4096).collect();
    vec![
        ("int_42", b"42".to_vec()),
        ("short_name", b"Alice Example".to_vec()),
        ("sentence_64", sentence[..64].to_vec()),
        ("email_64", with_email[..64].to_vec()),
        ("text_4k", text),
    ]
}

fn bench(c: &mut Criterion) {
    let detectors = Detectors::new(Detector::ALL);
    for (name, value) in values() {
        c.bench_function(&format!("redact/{name}"), |b| {
            b.iter(|| detectors.redact(black_box(&value)))
        });
    }
    let pattern = ColumnPattern::new("*_ssn").expect("pattern");
    for column in ["customer_ssn", "customer_email_address"] {
        c.bench_function(&format!("column_matches/{column}"), |b| {
            b.iter(|| pattern.matches(black_box(column)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
