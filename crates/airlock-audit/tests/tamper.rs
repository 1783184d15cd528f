//! Every way to shorten or rewrite the log without the signing key, each
//! against a real log written by the real writer with a real key: the
//! verifier must name each one. (Issue 18: a log whose checkpoints and the
//! records of an attack were removed and the chain re-hashed printed OK.)

use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;

use common::{lines, write_lines, Fixture, T0};

use airlock_audit::event::{Event, RemovedSegment};
use airlock_audit::key::Terms;
use airlock_audit::record::{self, Hash, GENESIS};
use airlock_audit::{
    segment, verify_dir, verify_live_dir, Anchor, AuditLog, Expect, ProblemKind, PublicKey,
};

fn fixture() -> Fixture {
    Fixture::new(statement)
}

/// The records of an attack: deletions.
fn statement(i: u64) -> Event {
    common::statement(i, &format!("DELETE FROM evidence WHERE id = {i}"), "delete")
}

fn kind(line: &[u8]) -> String {
    record::parse_head(line).unwrap().kind.to_owned()
}

fn seq(line: &[u8]) -> u64 {
    record::parse_head(line).unwrap().seq
}

/// What an attacker without the key does after removing or adding lines:
/// renumber from `first` and recompute every link from `prev`, so the hash
/// chain holds again.
fn rehash(lines: &[Vec<u8>], first: u64, mut prev: Hash) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let text = std::str::from_utf8(l).unwrap();
        // `{"seq":N,"prev":"<64 hex>",` then the rest.
        let rest = &text[text.find(",\"ts\":").unwrap()..];
        let line = format!(
            "{{\"seq\":{},\"prev\":\"{}\"{rest}",
            first + i as u64,
            record::hex(&prev)
        );
        prev = record::hash(line.as_bytes());
        out.push(line.into_bytes());
    }
    out
}

/// A record line made without the key (any event, chained by hand).
fn forged(seq: u64, prev: &Hash, ts: i64, event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode(&mut out, seq, prev, ts, event);
    out.pop();
    out
}

#[test]
fn all_checkpoints_removed_and_the_chain_rehashed_has_no_checkpoint() {
    // The report: the attack's records and every checkpoint gone,
    // the chain re-hashed. Every link holds; nothing is signed.
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let kept: Vec<Vec<u8>> = lines(&path)
        .into_iter()
        .filter(|l| kind(l) != "checkpoint")
        .filter(|l| !String::from_utf8_lossy(l).contains("id = 7"))
        .collect();
    write_lines(&path, &rehash(&kept, 1, GENESIS));
    let (kind, _, text) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::NoCheckpoint, "{text}");
    assert!(text.contains("nothing in it is signed"), "{text}");
}

#[test]
fn a_long_log_with_all_checkpoints_removed_fails_the_same_way() {
    let f = fixture();
    f.write(300);
    let path = f.only_segment();
    let kept: Vec<Vec<u8>> = lines(&path)
        .into_iter()
        .filter(|l| kind(l) != "checkpoint")
        .collect();
    write_lines(&path, &rehash(&kept, 1, GENESIS));
    let (kind, ..) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::NoCheckpoint);
}

#[test]
fn a_middle_stretch_removed_and_rehashed_breaks_the_next_signature() {
    let f = fixture();
    f.write(100);
    let path = f.only_segment();
    let ls = lines(&path);
    // Records 40 to 45 gone, everything after re-hashed.
    let cut_from = ls.iter().position(|l| seq(l) == 40).unwrap();
    let cut_to = ls.iter().position(|l| seq(l) == 45).unwrap();
    let prev = record::hash(&ls[cut_from - 1]);
    let mut out = ls[..cut_from].to_vec();
    out.extend(rehash(&ls[cut_to + 1..], 40, prev));
    write_lines(&path, &out);
    let (kind, seq, text) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::ForgedCheckpoint, "{text}");
    assert!(seq.unwrap() >= 40, "{text}");
}

#[test]
fn a_middle_stretch_removed_with_every_later_checkpoint_leaves_an_unsealed_tail() {
    // Dropping the checkpoints the re-hash broke leaves everything after
    // the cut unsigned: far more than a crash leaves.
    let f = fixture();
    f.write(100);
    let path = f.only_segment();
    let ls = lines(&path);
    let cut_from = ls.iter().position(|l| seq(l) == 40).unwrap();
    let cut_to = ls.iter().position(|l| seq(l) == 45).unwrap();
    let prev = record::hash(&ls[cut_from - 1]);
    let rest: Vec<Vec<u8>> = ls[cut_to + 1..]
        .iter()
        .filter(|l| kind(l) != "checkpoint")
        .cloned()
        .collect();
    let mut out = ls[..cut_from].to_vec();
    out.extend(rehash(&rest, 40, prev));
    write_lines(&path, &out);
    let (kind, _, text) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::UnsealedTail, "{text}");
    assert!(text.contains("checkpoint_every = 10"), "{text}");
}

#[test]
fn a_tail_cut_and_replaced_by_many_forged_records_is_an_unsealed_tail() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let mut ls = lines(&path);
    // Back to the checkpoint after record 10, then 40 records of one's own.
    let keep = ls.iter().position(|l| seq(l) == 11).unwrap() + 1;
    ls.truncate(keep);
    let mut prev = record::hash(ls.last().unwrap());
    for i in 0..40 {
        let l = forged(12 + i, &prev, T0 + 100, &statement(1000 + i));
        prev = record::hash(&l);
        ls.push(l);
    }
    write_lines(&path, &ls);
    let (kind, seq, text) = f.problem(&f.expect());
    assert_eq!((kind, seq), (ProblemKind::UnsealedTail, Some(12)), "{text}");
}

#[test]
fn a_few_forged_records_spread_over_hours_are_an_unsealed_tail() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let mut ls = lines(&path);
    let keep = ls.iter().position(|l| seq(l) == 11).unwrap() + 1;
    ls.truncate(keep);
    let mut prev = record::hash(ls.last().unwrap());
    for i in 0..3u64 {
        // Hours apart: the writer would have sealed each within its interval.
        let ts = T0 + (i as i64 + 1) * 3 * 3_600_000;
        let l = forged(12 + i, &prev, ts, &statement(1000 + i));
        prev = record::hash(&l);
        ls.push(l);
    }
    write_lines(&path, &ls);
    let (kind, _, text) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::UnsealedTail, "{text}");
    assert!(text.contains("checkpoint_interval = 1h"), "{text}");
}

#[test]
fn a_log_cut_back_to_its_first_records_fails_against_its_anchors_and_its_live_writer() {
    let f = fixture();
    let anchors = f.write(50);
    assert!(anchors.len() >= 5, "{anchors:?}");
    let path = f.only_segment();
    let ls = lines(&path);
    // Every published anchor is the checkpoint line in the log.
    for a in &anchors {
        let l = ls.iter().find(|l| seq(l) == a.seq).unwrap();
        assert_eq!(kind(l), "checkpoint");
        assert_eq!(record::hash(l), a.hash);
    }
    let with_anchors = Expect {
        anchors: anchors.clone(),
        ..f.expect()
    };
    assert!(verify_dir(&f.dir, &with_anchors).unwrap().ok());
    // Everything after the second checkpoint deleted, on a record
    // boundary: what is left verifies on its own...
    let keep = ls.iter().position(|l| seq(l) == 22).unwrap() + 1;
    write_lines(&path, &ls[..keep]);
    assert!(verify_dir(&f.dir, &f.expect()).unwrap().ok());
    // ...but not against the anchors sent off the host,
    let (kind, seq, text) = f.problem(&with_anchors);
    assert_eq!((kind, seq), (ProblemKind::Truncated, Some(33)), "{text}");
    // nor against the writer's own count of what it wrote.
    let live = Expect {
        written_seq: Some(55),
        ..f.expect()
    };
    let p = verify_live_dir(&f.dir, &live).unwrap().problem.unwrap();
    assert_eq!(p.kind, ProblemKind::Truncated, "{p}");
    assert!(p.detail.contains("written through record 55"), "{p}");
}

#[test]
fn a_rolled_back_copy_fails_against_newer_anchors() {
    // Replaying an older, validly signed state of the whole log.
    let f = fixture();
    f.write(20);
    let old = std::fs::read(f.only_segment()).unwrap();
    let log = f.open(f.options());
    for i in 20..40 {
        log.append(&[statement(i)]).unwrap();
    }
    log.close().unwrap();
    let newest = log.anchors().borrow().clone().unwrap();
    std::fs::write(f.only_segment(), old).unwrap();
    assert!(verify_dir(&f.dir, &f.expect()).unwrap().ok());
    let (kind, seq, _) = f.problem(&Expect {
        anchors: vec![newest.clone()],
        ..f.expect()
    });
    assert_eq!((kind, seq), (ProblemKind::Truncated, Some(newest.seq)));
}

#[test]
fn an_older_checkpoint_replayed_in_a_later_place_is_forged() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let ls = lines(&path);
    // Records 12 to 22 rewritten; the validly signed checkpoint 11 copied
    // (numbered and linked to fit) in place of checkpoint 22.
    let at11 = ls.iter().position(|l| seq(l) == 11).unwrap();
    let at22 = ls.iter().position(|l| seq(l) == 22).unwrap();
    let mut middle: Vec<Vec<u8>> = ls[at11 + 1..at22]
        .iter()
        .map(|l| {
            String::from_utf8(l.clone())
                .unwrap()
                .replace("DELETE", "SELECT")
                .into_bytes()
        })
        .collect();
    middle.push(ls[at11].clone());
    let mut out = ls[..=at11].to_vec();
    out.extend(rehash(&middle, 12, record::hash(&ls[at11])));
    write_lines(&path, &out);
    let (kind, seq, text) = f.problem(&f.expect());
    assert_eq!(
        (kind, seq),
        (ProblemKind::ForgedCheckpoint, Some(22)),
        "{text}"
    );
}

#[test]
fn a_checkpoint_with_looser_or_stripped_rules_is_forged() {
    let f = fixture();
    f.write(25);
    let path = f.only_segment();
    let original = lines(&path);
    let at = original.iter().position(|l| seq(l) == 11).unwrap();
    let text = String::from_utf8(original[at].clone()).unwrap();
    assert!(text.contains("\"every\":10,"), "{text}");
    for changed in [
        // Looser rules, so a long unsigned tail would pass.
        text.replace("\"every\":10,", "\"every\":100000,"),
        text.replace("\"interval_ms\":3600000,", "\"interval_ms\":999999999,"),
        // Claimed late, so a long time would pass.
        text.replace(
            "\"interval_ms\":3600000,",
            "\"interval_ms\":3600000,\"late\":true,",
        ),
        // Stripped, to pass for a checkpoint of the older format.
        text.replace("\"every\":10,", "")
            .replace("\"interval_ms\":3600000,", ""),
    ] {
        assert_ne!(changed, text);
        let mut ls = original[..at].to_vec();
        ls.push(changed.into_bytes());
        let rest = rehash(&original[at + 1..], 12, record::hash(ls.last().unwrap()));
        ls.extend(rest);
        write_lines(&path, &ls);
        let (kind, seq, msg) = f.problem(&f.expect());
        assert_eq!(
            (kind, seq),
            (ProblemKind::ForgedCheckpoint, Some(11)),
            "{msg}"
        );
    }
}

#[test]
fn a_log_rewritten_under_another_key_fails_against_the_pinned_key_and_the_anchors() {
    let f = fixture();
    let anchors = f.write(25);
    // Same events, written again by a writer holding a new key, which also
    // replaces the public key next to the log.
    std::fs::remove_dir_all(&f.dir).unwrap();
    let other = fixture();
    let log = AuditLog::open(&f.dir, other.key(), f.options()).unwrap();
    for i in 0..25 {
        log.append(&[statement(i)]).unwrap();
    }
    log.close().unwrap();
    let (kind, _, text) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::ForgedCheckpoint, "{text}");
    assert!(text.contains("not the trusted key"), "{text}");
    // Trusting the key in the directory (the attacker's), the anchors
    // still catch it.
    let local = PublicKey::read(&f.dir.join(airlock_audit::PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(local, other.public());
    assert!(verify_dir(
        &f.dir,
        &Expect {
            key: Some(local),
            ..Expect::default()
        }
    )
    .unwrap()
    .ok());
    let (kind, _, text) = f.problem(&Expect {
        key: Some(local),
        anchors,
        ..Expect::default()
    });
    assert_eq!(kind, ProblemKind::Modified, "{text}");
    assert!(text.contains("sent off the host"), "{text}");
}

/// A log in small segments, a day old, then retention: the first segments
/// are removed and a signed retention record says so.
fn retained(f: &Fixture) -> Vec<RemovedSegment> {
    let mut opts = f.options();
    opts.segment_bytes = 2000;
    let log = f.open(opts);
    for i in 0..40 {
        log.append(&[statement(i)]).unwrap();
    }
    f.clock.fetch_add(86_400_000, Ordering::Relaxed);
    for i in 40..60 {
        log.append(&[statement(i)]).unwrap();
    }
    let removed = log
        .apply_retention(Duration::from_secs(3600), "1h")
        .unwrap();
    assert!(!removed.is_empty());
    log.close().unwrap();
    removed
}

#[test]
fn a_first_segment_dropped_with_a_forged_retention_record_is_forged_retention() {
    let f = fixture();
    let mut opts = f.options();
    opts.segment_bytes = 2000;
    let log = f.open(opts);
    for i in 0..60 {
        log.append(&[statement(i)]).unwrap();
    }
    log.close().unwrap();
    let segs = segment::list(&f.dir).unwrap();
    assert!(segs.len() >= 3);
    // Drop the first segment, and say at the end that retention did it.
    let dropped = lines(&segs[0].path);
    let last_dropped = dropped.last().unwrap();
    std::fs::remove_file(&segs[0].path).unwrap();
    let last_seg = &segs.last().unwrap().path;
    let mut ls = lines(last_seg);
    let tail = ls.last().unwrap().clone();
    let event = Event::Retention {
        retain: "1d".into(),
        removed: vec![RemovedSegment {
            segment: segs[0].name.clone(),
            first_seq: 1,
            last_seq: seq(last_dropped),
            last_ts: T0,
        }],
        through_seq: seq(last_dropped),
        through_hash: record::hex(&record::hash(last_dropped)),
    };
    ls.push(forged(seq(&tail) + 1, &record::hash(&tail), T0, &event));
    write_lines(last_seg, &ls);
    let (kind, seq_, text) = f.problem(&f.expect());
    assert_eq!(
        (kind, seq_),
        (ProblemKind::ForgedRetention, Some(seq(&tail) + 1)),
        "{text}"
    );
    // Followed by a record of one's own, it is no better.
    let before = ls.last().unwrap().clone();
    ls.push(forged(
        seq(&before) + 1,
        &record::hash(&before),
        T0,
        &statement(99),
    ));
    write_lines(last_seg, &ls);
    let (kind, ..) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::ForgedRetention);
}

#[test]
fn signed_retention_accounts_for_removed_records_and_their_anchors() {
    let f = fixture();
    let removed = retained(&f);
    let through = removed.last().unwrap().last_seq;
    // An anchor from before retention names a record that is gone: fine.
    let gone = Anchor {
        seq: 5,
        hash: [1; 32],
        ts: T0,
        key: f.public().id(),
        sig: String::new(),
    };
    assert!(gone.seq <= through);
    let report = verify_dir(
        &f.dir,
        &Expect {
            anchors: vec![gone],
            ..f.expect()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.retained_from, Some(through));
    assert_eq!(report.anchors_retired, 1);
}

#[test]
fn the_signed_rules_bound_every_stretch_even_one_the_key_signed() {
    // A writer that does not keep its own rules (only the key holder could
    // write this): 30 records before a checkpoint that says every = 10.
    let f = fixture();
    let key = f.key();
    std::fs::create_dir_all(&f.dir).unwrap();
    let terms = Terms {
        every: 10,
        interval_ms: 1000,
        late: false,
    };
    let build = |n: u64, span_ms: i64, terms: Terms| {
        let mut out = Vec::new();
        let mut prev = GENESIS;
        for i in 0..n {
            let ts = T0 + span_ms * i as i64 / n.max(1) as i64;
            prev = record::encode(&mut out, i + 1, &prev, ts, &statement(i));
        }
        let ts = T0 + span_ms;
        let seq = n + 1;
        let e = Event::Checkpoint {
            sealed: n,
            key: key.public().id(),
            every: Some(terms.every),
            interval_ms: Some(terms.interval_ms),
            late: terms.late,
            sig: key.sign_checkpoint_v2(seq, ts, &prev, &terms),
        };
        record::encode(&mut out, seq, &prev, ts, &e);
        std::fs::write(f.dir.join(segment::name_for(1)), out).unwrap();
    };
    build(8, 500, terms);
    assert!(verify_dir(&f.dir, &f.expect()).unwrap().ok());
    build(31, 500, terms);
    let (kind, seq, text) = f.problem(&f.expect());
    assert_eq!(
        (kind, seq),
        (ProblemKind::CheckpointGap, Some(32)),
        "{text}"
    );
    assert!(text.contains("from the start of the log"), "{text}");
    // Too long in time, unless the checkpoint signs that it was late.
    build(5, 3 * 60_000, terms);
    let (kind, _, text) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::CheckpointGap, "{text}");
    build(
        5,
        3 * 60_000,
        Terms {
            late: true,
            ..terms
        },
    );
    let report = verify_dir(&f.dir, &f.expect()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.late_checkpoints, 1);
}

#[test]
fn the_writer_keeps_its_rules_in_large_batches_and_after_a_crash() {
    let f = fixture();
    let log = f.open(f.options());
    // One batch of 95: sealed every 10 records inside it.
    let batch: Vec<Event> = (0..95).map(statement).collect();
    log.append(&batch).unwrap();
    // A crash: the last 5 records stay unsealed (no close).
    drop(log);
    let report = verify_dir(&f.dir, &f.expect()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.checkpoints, 9);
    assert_eq!(report.unsealed, 5);
    assert_eq!(report.terms.map(|t| t.every), Some(10));
    // A day later the gateway starts again: the tail is sealed at once,
    // marked late, and the log verifies.
    f.clock.fetch_add(86_400_000, Ordering::Relaxed);
    let log = f.open(f.options());
    let report = verify_dir(&f.dir, &f.expect()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.unsealed, 0);
    assert_eq!(report.late_checkpoints, 1);
    log.close().unwrap();
}

#[test]
fn a_live_log_may_end_unsealed_but_not_behind_its_writer() {
    let f = fixture();
    let log = f.open(f.options());
    log.append(&[statement(0), statement(1), statement(2)])
        .unwrap();
    // Not sealed yet: at rest that is a log nobody signed, live it is the
    // writer's unsealed tail.
    let (kind, ..) = f.problem(&f.expect());
    assert_eq!(kind, ProblemKind::NoCheckpoint);
    let live = Expect {
        written_seq: Some(log.written_seq()),
        terms: Some(log.terms()),
        ..f.expect()
    };
    let report = verify_live_dir(&f.dir, &live).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.unsealed, 3);
    // The last record cut from the file while the writer runs.
    let path = f.only_segment();
    let ls = lines(&path);
    write_lines(&path, &ls[..2]);
    let p = verify_live_dir(&f.dir, &live).unwrap().problem.unwrap();
    assert_eq!((p.kind, p.seq), (ProblemKind::Truncated, Some(3)), "{p}");
    log.close().unwrap();
}
