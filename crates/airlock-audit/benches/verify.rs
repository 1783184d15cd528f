//! `airlock audit verify` throughput on one core, against the raw cost of
//! hashing the same bytes (the floor no verifier can beat).
//!
//! cargo bench -p airlock-audit --bench verify [-- RECORDS]

use std::time::{Duration, Instant};

use airlock_audit::event::Event;
use airlock_audit::{segment, verify_dir, AuditLog, Expect, FsyncMode, Options, SigningKey};

fn main() {
    let records: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let key = SigningKey::load_or_create(&tmp.path().join("k.pem")).unwrap();
    let public = key.public();
    let log = AuditLog::open(
        &dir,
        key,
        Options {
            fsync: FsyncMode::Off,
            ..Options::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(100);
    for i in 0..records {
        let mut s = airlock_audit::Statement {
            session: "ses_0123456789abcdef".into(),
            n: i + 1,
            protocol: "extended".into(),
            text: None,
            text_base64: None,
            text_len: None,
            text_sha256: None,
            classified: vec![airlock_audit::Classified {
                kind: "select".into(),
                rule: "read".into(),
            }],
            decision: "allowed".into(),
            rule: "read".into(),
            sqlstate: None,
            param_types: Vec::new(),
        };
        s.set_text(format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i}").as_bytes());
        batch.push(Event::Statement(s));
        if batch.len() == 100 {
            log.append(&batch).unwrap();
            batch.clear();
        }
    }
    log.append(&batch).unwrap();
    log.close().unwrap();
    let wrote = started.elapsed();
    let bytes: u64 = segment::list(&dir)
        .unwrap()
        .iter()
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .sum();
    println!(
        "wrote {records} records ({:.1} MB) in {:.2}s: {:.0} records/s appended in batches of 100",
        bytes as f64 / 1e6,
        wrote.as_secs_f64(),
        records as f64 / wrote.as_secs_f64()
    );

    let expect = Expect {
        key: Some(public),
        ..Expect::default()
    };
    let mut best_verify = Duration::MAX;
    let mut total = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let report = verify_dir(&dir, &expect).unwrap();
        best_verify = best_verify.min(t.elapsed());
        assert!(report.ok(), "{:?}", report.problem);
        total = report.records;
    }
    // Baseline: read the same files and SHA-256 each line, nothing else.
    let mut best_hash = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0u64;
        for seg in segment::list(&dir).unwrap() {
            let bytes = std::fs::read(&seg.path).unwrap();
            segment::for_each_line(&bytes, |_, line| {
                std::hint::black_box(airlock_audit::record::hash(line));
                n += 1;
            });
        }
        assert_eq!(n, total);
        best_hash = best_hash.min(t.elapsed());
    }
    let verify_rate = total as f64 / best_verify.as_secs_f64();
    let hash_rate = total as f64 / best_hash.as_secs_f64();
    println!(
        "verify: {total} records in {:.3}s = {:.2} M records/s ({:.0} MB/s), one core",
        best_verify.as_secs_f64(),
        verify_rate / 1e6,
        bytes as f64 / 1e6 / best_verify.as_secs_f64()
    );
    println!(
        "baseline (read + SHA-256 per line): {:.2} M records/s; verify/baseline = {:.2}",
        hash_rate / 1e6,
        verify_rate / hash_rate
    );
}
