//! Building the chain, and every kind of tampering named by `verify`.

use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;

use common::{lines, write_lines, Fixture};

use airlock_audit::event::Event;
use airlock_audit::read::Entry;
use airlock_audit::record;
use airlock_audit::verify::anchor_from_line;
use airlock_audit::{segment, verify_dir, verify_file, Expect, FsyncMode, ProblemKind, PublicKey};

fn fixture() -> Fixture {
    Fixture::new(statement)
}

/// Classified `select`; the text has quotes and non-ASCII letters.
fn statement(i: u64) -> Event {
    common::statement(i, &format!("SELECT {i} -- \"quoted\" ünï"), "read")
}

/// The index in `lines` of the record with this seq.
fn at(lines: &[Vec<u8>], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| record::parse_head(l).unwrap().seq == seq)
        .unwrap()
}

fn problem(f: &Fixture) -> (ProblemKind, Option<u64>, String) {
    f.problem(&f.expect())
}

#[test]
fn a_clean_log_verifies() {
    let f = fixture();
    f.write(25);
    let report = verify_dir(&f.dir, &f.expect()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    // 25 statements, a checkpoint after every 10 records, one at close.
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.records, 28);
    assert_eq!(report.unsealed, 0);
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(28));
    assert_eq!(report.last_checkpoint.as_ref().unwrap().seq, 28);

    // Every record decodes back to what was written, raw text included.
    let ls = lines(&f.only_segment());
    let e = Entry::parse(&ls[0]).unwrap();
    assert_eq!(e.seq, 1);
    assert_eq!(e.prev, "0".repeat(64));
    match e.event {
        Event::Statement(s) => assert_eq!(s.text.as_deref(), Some("SELECT 0 -- \"quoted\" ünï")),
        other => panic!("{other:?}"),
    }
    // Reopening continues the chain where it stopped.
    let log = f.open(f.options());
    log.append(&[statement(99)]).unwrap();
    log.close().unwrap();
    let report = verify_dir(&f.dir, &f.expect()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.last_seq, Some(30));
}

#[test]
fn non_utf8_text_is_kept_byte_for_byte() {
    let mut s = match statement(0) {
        Event::Statement(s) => s,
        _ => unreachable!(),
    };
    s.text = None;
    s.set_text(b"SELECT '\xe9t\xe9'");
    assert!(s.text.is_none());
    assert_eq!(s.display_text(), "SELECT '\u{fffd}t\u{fffd}'");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(s.text_base64.unwrap())
            .unwrap(),
        b"SELECT '\xe9t\xe9'"
    );
}

#[test]
fn a_flipped_byte_is_a_modified_record() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let mut ls = lines(&path);
    let i = at(&ls, 5);
    let pos = ls[i].windows(8).position(|w| w == b"SELECT 4").unwrap();
    ls[i][pos + 7] = b'7';
    write_lines(&path, &ls);
    let (kind, seq, text) = problem(&f);
    assert_eq!((kind, seq), (ProblemKind::Modified, Some(5)), "{text}");
    assert!(text.contains("no longer hash"), "{text}");
}

#[test]
fn a_changed_link_is_a_modified_record() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let mut ls = lines(&path);
    let i = at(&ls, 5);
    // The first hex digit of `prev`, to another valid digit.
    let pos = b"{\"seq\":5,\"prev\":\"".len();
    ls[i][pos] = if ls[i][pos] == b'a' { b'b' } else { b'a' };
    write_lines(&path, &ls);
    let (kind, seq, text) = problem(&f);
    assert_eq!((kind, seq), (ProblemKind::Modified, Some(5)), "{text}");
    assert!(text.contains("link"), "{text}");
}

#[test]
fn a_broken_head_is_a_modified_record() {
    let f = fixture();
    f.write(5);
    let path = f.only_segment();
    let mut ls = lines(&path);
    ls[2][3] = b'X';
    write_lines(&path, &ls);
    let (kind, seq, _) = problem(&f);
    assert_eq!((kind, seq), (ProblemKind::Modified, Some(3)));
}

#[test]
fn a_removed_record_is_deleted() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let mut ls = lines(&path);
    ls.remove(at(&ls, 5));
    write_lines(&path, &ls);
    let (kind, seq, text) = problem(&f);
    assert_eq!((kind, seq), (ProblemKind::Deleted, Some(5)), "{text}");
    assert!(text.contains("record 5 is missing"), "{text}");
}

#[test]
fn two_swapped_records_are_reordered() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let mut ls = lines(&path);
    let (a, b) = (at(&ls, 5), at(&ls, 6));
    ls.swap(a, b);
    write_lines(&path, &ls);
    let (kind, seq, text) = problem(&f);
    assert_eq!((kind, seq), (ProblemKind::Reordered, Some(5)), "{text}");
}

#[test]
fn a_log_cut_mid_record_is_truncated() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
    let (kind, _, text) = problem(&f);
    assert_eq!(kind, ProblemKind::Truncated, "{text}");
    // Verifying a log being written: the unfinished end is a write in
    // progress, and everything before it checks.
    let live = airlock_audit::verify_live_dir(&f.dir, &f.expect()).unwrap();
    assert!(live.ok(), "{:?}", live.problem);
    assert!(live.in_progress > 0 && live.in_progress < 500, "{live:?}");
}

#[test]
fn a_log_cut_before_an_anchored_checkpoint_is_truncated() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let ls = lines(&path);
    // The auditor kept the last checkpoint's line (from an export or SIEM).
    let anchor = anchor_from_line(std::str::from_utf8(ls.last().unwrap()).unwrap()).unwrap();
    // Someone cuts the log back to the second checkpoint, on a record
    // boundary: the rest still verifies on its own...
    let keep = at(&ls, 22) + 1;
    write_lines(&path, &ls[..keep]);
    assert!(verify_dir(&f.dir, &f.expect()).unwrap().ok());
    // ...but not against the anchor.
    let expect = Expect {
        anchor: Some(anchor),
        ..f.expect()
    };
    let p = verify_dir(&f.dir, &expect).unwrap().problem.unwrap();
    assert_eq!(p.kind, ProblemKind::Truncated, "{p}");
}

#[test]
fn a_rewritten_chain_fails_at_its_checkpoint() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let ls = lines(&path);
    // Change record 3 and recompute every hash after it, keeping the old
    // signatures: every link holds, but the checkpoint no longer verifies.
    let mut out = Vec::new();
    let mut prev = record::GENESIS;
    for l in &ls {
        let text = String::from_utf8(l.clone()).unwrap();
        let head = record::parse_head(l).unwrap();
        let mut text = text.replacen(
            &format!("\"prev\":\"{}\"", record::hex(&head.prev)),
            &format!("\"prev\":\"{}\"", record::hex(&prev)),
            1,
        );
        if head.seq == 3 {
            text = text.replace("SELECT 2", "SELECT 9");
        }
        prev = record::hash(text.as_bytes());
        out.push(text.into_bytes());
    }
    write_lines(&path, &out);
    let (kind, seq, text) = problem(&f);
    assert_eq!(
        (kind, seq),
        (ProblemKind::ForgedCheckpoint, Some(11)),
        "{text}"
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_forged() {
    let f = fixture();
    f.write(25);
    let other = fixture();
    let report = verify_dir(
        &f.dir,
        &Expect {
            key: Some(other.public()),
            ..Expect::default()
        },
    )
    .unwrap();
    let p = report.problem.unwrap();
    assert_eq!(p.kind, ProblemKind::ForgedCheckpoint);
    assert!(p.detail.contains("not the trusted key"), "{p}");
}

#[test]
fn a_removed_segment_is_deleted() {
    let f = fixture();
    let mut opts = f.options();
    opts.segment_bytes = 2000;
    let log = f.open(opts);
    for i in 0..60 {
        log.append(&[statement(i)]).unwrap();
    }
    log.close().unwrap();
    let segs = segment::list(&f.dir).unwrap();
    assert!(segs.len() >= 4, "{}", segs.len());
    assert!(verify_dir(&f.dir, &f.expect()).unwrap().ok());

    // A middle segment gone.
    let middle = std::fs::read(&segs[1].path).unwrap();
    std::fs::remove_file(&segs[1].path).unwrap();
    let (kind, seq, text) = problem(&f);
    assert_eq!(kind, ProblemKind::Deleted, "{text}");
    assert_eq!(seq, Some(segs[1].first_seq));
    std::fs::write(&segs[1].path, middle).unwrap();

    // The first segment gone, with no retention record to say why.
    std::fs::remove_file(&segs[0].path).unwrap();
    let (kind, seq, text) = problem(&f);
    assert_eq!((kind, seq), (ProblemKind::Deleted, Some(1)), "{text}");
}

#[test]
fn retention_removes_old_segments_and_the_rest_verifies() {
    let f = fixture();
    let mut opts = f.options();
    opts.segment_bytes = 2000;
    let log = f.open(opts.clone());
    for i in 0..40 {
        log.append(&[statement(i)]).unwrap();
    }
    // A day later, more records.
    f.clock.fetch_add(86_400_000, Ordering::Relaxed);
    for i in 40..60 {
        log.append(&[statement(i)]).unwrap();
    }
    let before = segment::list(&f.dir).unwrap().len();
    let removed = log
        .apply_retention(Duration::from_secs(3600), "1h")
        .unwrap();
    assert!(!removed.is_empty());
    assert!(removed
        .iter()
        .all(|r| r.last_ts < f.clock.load(Ordering::Relaxed) - 3_600_000));
    log.append(&[statement(60)]).unwrap();
    log.close().unwrap();
    let after = segment::list(&f.dir).unwrap();
    assert!(after.len() < before);
    for r in &removed {
        assert!(!f.dir.join(&r.segment).exists(), "{} removed", r.segment);
    }
    let report = verify_dir(&f.dir, &f.expect()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.retained_from, Some(removed.last().unwrap().last_seq));
    assert_eq!(report.first_seq, Some(removed.last().unwrap().last_seq + 1));

    // Retention once more with nothing old enough removes nothing.
    let log = f.open(opts);
    assert!(log
        .apply_retention(Duration::from_secs(3600), "1h")
        .unwrap()
        .is_empty());
    log.close().unwrap();
}

#[test]
fn a_torn_write_is_recovered_on_open() {
    let f = fixture();
    f.write(5);
    let path = f.only_segment();
    // A crash in the middle of a write.
    let mut bytes = std::fs::read(&path).unwrap();
    let torn = b"{\"seq\":7,\"prev\":\"ab";
    bytes.extend_from_slice(torn);
    std::fs::write(&path, &bytes).unwrap();
    let (kind, ..) = problem(&f);
    assert_eq!(kind, ProblemKind::Truncated);

    let log = f.open(f.options());
    log.append(&[statement(6)]).unwrap();
    log.close().unwrap();
    let report = verify_dir(&f.dir, &f.expect()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    let segs = segment::list(&f.dir).unwrap();
    assert_eq!(segs.len(), 2);
    let first = &lines(&segs[1].path)[0];
    match Entry::parse(first).unwrap().event {
        Event::Recovered { torn_bytes, .. } => assert_eq!(torn_bytes, torn.len() as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_export_verifies_on_its_own_with_the_public_key() {
    let f = fixture();
    f.write(25);
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export.jsonl");
    std::fs::copy(f.only_segment(), &export).unwrap();
    let pem = tmp.path().join("key.pem");
    std::fs::write(&pem, f.public().to_pem()).unwrap();
    let key = PublicKey::read(&pem).unwrap();
    let report = verify_file(
        &export,
        &Expect {
            key: Some(key),
            ..Expect::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.records, 28);
    // A part of the chain (export --since) verifies as partial.
    let ls = lines(&export);
    write_lines(&export, &ls[12..]);
    let partial = Expect {
        key: Some(key),
        partial: true,
        ..Expect::default()
    };
    assert!(verify_file(&export, &partial).unwrap().ok());
    assert_eq!(
        verify_file(
            &export,
            &Expect {
                key: Some(key),
                ..Expect::default()
            }
        )
        .unwrap()
        .problem
        .unwrap()
        .kind,
        ProblemKind::Deleted
    );
}

#[tokio::test]
async fn always_waits_for_the_disk_and_time_seals_a_quiet_log() {
    let f = fixture();
    let mut opts = f.options();
    opts.fsync = FsyncMode::Always;
    opts.checkpoint_interval = Duration::from_millis(200);
    opts.checkpoint_every = 1000;
    let log = f.open(opts);
    let seq = log.append(&[statement(0), statement(1)]).unwrap();
    assert_eq!(seq, 2);
    tokio::time::timeout(Duration::from_secs(5), log.durable(seq))
        .await
        .expect("group commit within the timeout")
        .unwrap();
    // No more appends: the syncer seals the chain within the interval.
    let mut sealed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = verify_dir(&f.dir, &f.expect()).unwrap();
        if r.ok() && r.unsealed == 0 && r.checkpoints == 1 {
            sealed = true;
            break;
        }
    }
    assert!(sealed, "a quiet log is sealed by time");
    log.close().unwrap();
    assert!(log.append(&[statement(2)]).is_err(), "closed");
}

#[test]
fn the_index_is_built_in_batches_follows_the_log_and_rebuilds() {
    use airlock_audit::index::{Index, RecordQuery, SessionQuery};
    let f = fixture();
    let log = f.open(f.options());
    let start = Event::SessionStart(airlock_audit::SessionStart {
        session: "s1".into(),
        user: "oncall1".into(),
        resource: "orders".into(),
        access: "read".into(),
        grant: "standing".into(),
        break_glass: false,
        credential: "cred_1".into(),
        client_addr: "127.0.0.1:5".into(),
        tls: true,
        roles: vec!["oncall".into()],
        until_ms: None,
    });
    log.append(&[start]).unwrap();
    let batch: Vec<Event> = (0..25_000).map(statement).collect();
    log.append(&batch).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("index.sqlite");
    let mut index = Index::open(&path, &f.dir).unwrap();
    let mut tailer = index.tailer().unwrap();
    // 25,001 records and checkpoints: three batches of at most 10,000.
    let first = index.catch_up(&mut tailer).unwrap();
    assert!(first > 25_000, "{first}");
    let sessions = index
        .sessions(&SessionQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].statement_count, 25_000);
    // What is written later is picked up from where it stopped.
    log.append(&[statement(25_000)]).unwrap();
    log.close().unwrap();
    assert_eq!(
        index.catch_up(&mut tailer).unwrap(),
        2,
        "a statement and the closing checkpoint"
    );
    let found = index
        .records(&RecordQuery {
            grep: Some("select 24999 --".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(found.len(), 1);
    // Statements are read from the segments their spans name: by session,
    // by the session's user, by kind, the newest `limit`, oldest first.
    let q = |user: Option<&str>, session: Option<&str>, kinds: &[&str], limit| RecordQuery {
        user: user.map(str::to_owned),
        session: session.map(str::to_owned),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        limit,
        ..Default::default()
    };
    let newest = index
        .records(&q(None, Some("s1"), &["statement"], 3))
        .unwrap();
    let ns: Vec<u64> = newest
        .iter()
        .map(|e| match &e.event {
            Event::Statement(s) => s.n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ns, vec![24_999, 25_000, 25_001]);
    assert_eq!(
        index
            .records(&q(Some("oncall1"), None, &[], 100_000))
            .unwrap()
            .len(),
        25_002,
        "the session start and every statement"
    );
    assert!(index
        .records(&q(Some("someone-else"), None, &["statement"], 10))
        .unwrap()
        .is_empty());
    assert!(index
        .records(&q(None, Some("s2"), &[], 10))
        .unwrap()
        .is_empty());
    // Indexing again changes nothing; a rebuild gives the same answers.
    let mut again = index.tailer().unwrap();
    again.reset(0);
    index.catch_up(&mut again).unwrap();
    assert_eq!(
        index
            .sessions(&SessionQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap()[0]
            .statement_count,
        25_001
    );
    index.clear().unwrap();
    let mut fresh = index.tailer().unwrap();
    index.catch_up(&mut fresh).unwrap();
    assert_eq!(
        index
            .sessions(&SessionQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap()[0]
            .statement_count,
        25_001
    );
}
