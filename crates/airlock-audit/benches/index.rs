//! What the audit log costs per statement outside `verify`: appending one
//! record at a time (as the proxy does), and indexing records into the
//! SQLite query index (the gateway's indexer thread does this for every
//! record), against the floor of reading and decoding the same records.
//!
//! cargo bench -p airlock-audit --bench index [-- STATEMENTS]

use std::time::Instant;

use airlock_audit::event::{Event, SessionStart, StatementDone};
use airlock_audit::index::Index;
use airlock_audit::read::{scan, Entry};
use airlock_audit::{AuditLog, FsyncMode, Options, SigningKey};

fn main() {
    let statements: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let key = SigningKey::load_or_create(&tmp.path().join("k.pem")).unwrap();
    let log = AuditLog::open(
        &dir,
        key,
        Options {
            fsync: FsyncMode::Off,
            ..Options::default()
        },
    )
    .unwrap();
    // Ten sessions, interleaved, as pgbench -S -c 10 makes them.
    let sessions: Vec<String> = (0..10).map(|i| format!("ses_{i:016x}")).collect();
    for s in &sessions {
        log.append(&[Event::SessionStart(SessionStart {
            session: s.clone(),
            user: "bench1".into(),
            resource: "bench".into(),
            access: "read".into(),
            grant: String::new(),
            break_glass: false,
            credential: "crd_0123456789".into(),
            client_addr: "127.0.0.1:50000".into(),
            tls: false,
            roles: vec!["bencher".into()],
            until_ms: None,
        })])
        .unwrap();
    }
    let started = Instant::now();
    for i in 0..statements {
        let session = sessions[(i % 10) as usize].clone();
        let n = i / 10 + 1;
        let mut s = airlock_audit::Statement {
            session: session.clone(),
            n,
            protocol: "simple".into(),
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
        s.set_text(format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i};").as_bytes());
        log.append(&[Event::Statement(s)]).unwrap();
        log.append(&[Event::StatementDone(StatementDone {
            session,
            n,
            duration_us: 93,
            rows: 1,
            tags: vec!["SELECT 1".into()],
            columns: vec!["abalance".into()],
            first_rows: vec![vec![Some("0".into())]],
            ..StatementDone::default()
        })])
        .unwrap();
    }
    log.close().unwrap();
    let records = statements * 2;
    let wrote = started.elapsed();
    println!(
        "append: {records} records one per call (fsync off): {:.2} us per record, {:.0} records/s",
        wrote.as_secs_f64() * 1e6 / records as f64,
        records as f64 / wrote.as_secs_f64()
    );

    // Floor: read and decode every record.
    let t = Instant::now();
    let mut decoded = 0u64;
    scan(&dir, 0, |raw| {
        decoded += u64::from(Entry::parse(raw.line).is_some());
        Ok(true)
    })
    .unwrap();
    let floor = t.elapsed();
    let floor_rate = decoded as f64 / floor.as_secs_f64();

    let mut index = Index::open(&tmp.path().join("index.sqlite"), &dir).unwrap();
    let mut tailer = index.tailer().unwrap();
    let t = Instant::now();
    let n = index.catch_up(&mut tailer).unwrap();
    let took = t.elapsed();
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "index: {n} records in {:.2}s: {rate:.0} records/s ({:.1} us each); read+decode floor {floor_rate:.0} records/s; ratio {:.2}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64,
        rate / floor_rate
    );
}
