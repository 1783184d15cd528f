//! Behaviour of `SqliteStore` through the `Store` trait, on an in-memory and on
//! a file database.

use std::path::Path;
use std::sync::Arc;

use airlock_store::{
    ApiToken, SessionCredential, SessionFilter, SessionRecord, SqliteStore, StatementRecord, Store,
    StoreError, ORPHAN_END_REASON, SCHEMA_VERSION,
};
use tempfile::TempDir;

/// Runs `check` against a fresh in-memory store and a fresh file store, so
/// both open paths (pragmas, file creation) are exercised by every test.
fn on_both(check: impl Fn(&dyn Store)) {
    let memory = SqliteStore::open_in_memory().expect("open in memory");
    check(&memory);
    let dir = TempDir::new().expect("temp dir");
    let file = SqliteStore::open(&dir.path().join("control.db")).expect("open file");
    check(&file);
}

fn token(id: &str, user: &str, hash_byte: u8, created_ms: i64) -> ApiToken {
    ApiToken {
        id: id.into(),
        user: user.into(),
        hash: [hash_byte; 32],
        label: Some(format!("label of {id}")),
        created_ms,
        expires_ms: Some(created_ms + 1_000),
        revoked_ms: None,
    }
}

fn credential(
    id: &str,
    user: &str,
    resource: &str,
    created_ms: i64,
    expires_ms: i64,
) -> SessionCredential {
    SessionCredential {
        id: id.into(),
        user: user.into(),
        resource: resource.into(),
        access: "read".into(),
        grant_id: format!("grant_{id}"),
        verifier: format!("SCRAM-SHA-256$4096:c2FsdA==$stored{id}:server{id}"),
        created_ms,
        expires_ms,
        revoked_ms: None,
    }
}

fn session(id: &str, user: &str, resource: &str, started_ms: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user: user.into(),
        resource: resource.into(),
        access: "read".into(),
        credential_id: format!("cred_{id}"),
        client_addr: "127.0.0.1:5555".into(),
        tls: true,
        started_ms,
        ended_ms: None,
        statement_count: 0,
        end_reason: None,
        grant_id: format!("standing:oncall:{resource}:read"),
        break_glass: false,
    }
}

fn stmt(session_id: &str, seq: i64) -> StatementRecord {
    StatementRecord {
        session_id: session_id.into(),
        seq,
        at_ms: 10_000 + seq,
        text: format!("SELECT {seq}"),
    }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| id(i).to_owned()).collect()
}

// --- migrations ---------------------------------------------------------------

fn migration_rows(path: &Path) -> Vec<(i64, i64)> {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    let mut stmt = conn
        .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn opening_twice_applies_each_migration_once() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("control.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store
        .insert_token(&token("tok_1", "alice", 1, 100))
        .unwrap();
    drop(store);

    let first = migration_rows(&path);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    // Data survives the reopen, and nothing was re-applied.
    assert!(store.token_by_hash(&[1; 32]).unwrap().is_some());
    assert_eq!(migration_rows(&path), first);

    let versions: Vec<i64> = first.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // applied_at is unix milliseconds: after 2020-01-01.
    assert!(
        first.iter().all(|(_, at)| *at > 1_577_836_800_000),
        "{first:?}"
    );
}

#[test]
fn schema_newer_than_binary_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("control.db");
    drop(SqliteStore::open(&path).unwrap());
    let newer = SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
            [newer],
        )
        .unwrap();

    let err = SqliteStore::open(&path).expect_err("newer schema must be refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported } if found == newer && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "database schema version {newer} is newer than this airlock ({SCHEMA_VERSION}); upgrade airlock"
        )
    );
}

#[cfg(unix)]
#[test]
fn file_and_missing_parent_dirs_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let dir = TempDir::new().unwrap();
    let data_dir = dir.path().join("a/b");
    let path = data_dir.join("control.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .insert_token(&token("tok_1", "alice", 1, 100))
        .unwrap();

    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&data_dir), 0o700);
    // SQLite creates the WAL beside the file with the file's mode.
    let wal = data_dir.join("control.db-wal");
    assert!(wal.exists(), "journal_mode=WAL was not applied");
    assert_eq!(mode(&wal), 0o600);
}

#[cfg(unix)]
#[test]
fn existing_world_readable_file_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("control.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(SqliteStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn store_is_usable_as_shared_trait_object() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    assert!(store.list_tokens(None).unwrap().is_empty());
}

// --- API tokens -----------------------------------------------------------------

#[test]
fn tokens_round_trip() {
    on_both(|store| {
        let a1 = token("tok_a1", "alice", 1, 100);
        let a2 = ApiToken {
            label: None,
            expires_ms: None,
            ..token("tok_a2", "alice", 2, 200)
        };
        let b1 = token("tok_b1", "bob", 3, 150);
        for t in [&a1, &a2, &b1] {
            store.insert_token(t).unwrap();
        }

        assert_eq!(store.token_by_hash(&[2; 32]).unwrap(), Some(a2.clone()));
        assert_eq!(store.token_by_hash(&[9; 32]).unwrap(), None);

        let dup_id = ApiToken {
            hash: [7; 32],
            ..a1.clone()
        };
        let dup_hash = ApiToken {
            id: "tok_other".into(),
            ..a1.clone()
        };
        for dup in [dup_id, dup_hash] {
            let err = store.insert_token(&dup).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::AlreadyExists {
                        what: "api token",
                        ..
                    }
                ),
                "{err:?}"
            );
        }

        let cases: &[(Option<&str>, &[&str])] = &[
            (None, &["tok_a2", "tok_b1", "tok_a1"]),
            (Some("alice"), &["tok_a2", "tok_a1"]),
            (Some("bob"), &["tok_b1"]),
            (Some("nobody"), &[]),
        ];
        for (user, want) in cases {
            let got = store.list_tokens(*user).unwrap();
            assert_eq!(ids(&got, |t| &t.id), *want, "user {user:?}");
        }

        assert!(store.revoke_token("tok_a1", 500).unwrap());
        assert!(!store.revoke_token("tok_a1", 600).unwrap(), "second revoke");
        assert!(!store.revoke_token("tok_missing", 600).unwrap());
        // Revoked tokens are still found by hash; the first revocation time is kept.
        let revoked = store.token_by_hash(&[1; 32]).unwrap().unwrap();
        assert_eq!(revoked.revoked_ms, Some(500));
    });
}

#[test]
fn user_salt_keeps_the_first_salt() {
    on_both(|store| {
        assert_eq!(store.user_salt("alice", &[1; 16]).unwrap(), vec![1; 16]);
        assert_eq!(store.user_salt("alice", &[2; 16]).unwrap(), vec![1; 16]);
        assert_eq!(store.user_salt("bob", &[3; 16]).unwrap(), vec![3; 16]);
        let err = store.user_salt("carol", &[]).unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { what: "salt", .. }),
            "{err:?}"
        );
    });
}

// --- session credentials ------------------------------------------------------------

#[test]
fn credentials_for_filters_and_orders() {
    on_both(|store| {
        for c in [
            credential("c_expired", "alice", "orders", 50, 500),
            credential("c_old", "alice", "orders", 100, 1_000),
            credential("c_new", "alice", "orders", 200, 2_000),
            credential("c_revoked", "alice", "orders", 250, 3_000),
            credential("c_bob", "bob", "orders", 300, 3_000),
            credential("c_billing", "alice", "billing", 300, 3_000),
        ] {
            store.insert_credential(&c).unwrap();
        }
        assert!(store.revoke_credential("c_revoked", 260).unwrap());
        assert!(!store.revoke_credential("c_revoked", 270).unwrap());
        assert!(!store.revoke_credential("c_missing", 270).unwrap());

        let cases: &[(&str, &str, i64, usize, &[&str])] = &[
            ("alice", "orders", 0, 10, &["c_new", "c_old", "c_expired"]),
            // expires_ms must be strictly greater than since_ms.
            ("alice", "orders", 500, 10, &["c_new", "c_old"]),
            ("alice", "orders", 1_000, 10, &["c_new"]),
            ("alice", "orders", 2_000, 10, &[]),
            ("alice", "orders", 0, 2, &["c_new", "c_old"]),
            ("alice", "orders", 0, 0, &[]),
            ("bob", "orders", 0, 10, &["c_bob"]),
            ("alice", "billing", 0, 10, &["c_billing"]),
            ("carol", "orders", 0, 10, &[]),
        ];
        for (user, resource, since, limit, want) in cases {
            let got = store
                .credentials_for(user, resource, *since, *limit)
                .unwrap();
            assert_eq!(
                ids(&got, |c| &c.id),
                *want,
                "{user}/{resource} since {since} limit {limit}"
            );
        }

        let got = store.credentials_for("alice", "billing", 0, 1).unwrap();
        assert_eq!(
            got,
            vec![credential("c_billing", "alice", "billing", 300, 3_000)]
        );

        let err = store
            .insert_credential(&credential("c_old", "x", "y", 1, 2))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AlreadyExists {
                    what: "session credential",
                    ..
                }
            ),
            "{err:?}"
        );
    });
}

#[test]
fn purge_deletes_only_credentials_expired_before() {
    on_both(|store| {
        for c in [
            credential("c_500", "alice", "orders", 0, 500),
            credential("c_999", "alice", "orders", 0, 999),
            credential("c_1000", "alice", "orders", 0, 1_000),
            credential("c_revoked", "alice", "orders", 0, 5_000),
        ] {
            store.insert_credential(&c).unwrap();
        }
        store.revoke_credential("c_revoked", 10).unwrap();

        assert_eq!(store.purge_expired_credentials(1_000).unwrap(), 2);
        assert_eq!(store.purge_expired_credentials(1_000).unwrap(), 0);
        let left = store.credentials_for("alice", "orders", 0, 10).unwrap();
        assert_eq!(ids(&left, |c| &c.id), ["c_1000"]);
        // The revoked, unexpired credential is kept until it expires.
        assert_eq!(store.purge_expired_credentials(5_001).unwrap(), 2);
    });
}

// --- sessions and statements ---------------------------------------------------------------

#[test]
fn sessions_and_statements_round_trip() {
    on_both(|store| {
        let s1 = session("sess_1", "alice", "orders", 1_000);
        store.session_started(&s1).unwrap();
        store
            .session_started(&session("sess_2", "bob", "orders", 2_000))
            .unwrap();
        let err = store.session_started(&s1).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AlreadyExists {
                    what: "session",
                    ..
                }
            ),
            "{err:?}"
        );

        store.statements(&[]).unwrap();
        store
            .statements(&[stmt("sess_1", 1), stmt("sess_2", 1), stmt("sess_1", 2)])
            .unwrap();
        store.statements(&[stmt("sess_1", 3)]).unwrap();

        let count = |id: &str| {
            let all = store.sessions(&SessionFilter::default()).unwrap();
            all.into_iter()
                .find(|s| s.id == id)
                .unwrap()
                .statement_count
        };
        assert_eq!((count("sess_1"), count("sess_2")), (3, 1));

        // A batch is all or nothing: an unknown session or a repeated seq
        // rolls back the statements before it.
        let err = store
            .statements(&[stmt("sess_1", 4), stmt("sess_missing", 1)])
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound {
                    what: "session",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = store
            .statements(&[stmt("sess_1", 5), stmt("sess_1", 1)])
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AlreadyExists {
                    what: "statement",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(count("sess_1"), 3);

        let got = store.session_statements("sess_1", 10).unwrap();
        assert_eq!(
            got,
            vec![stmt("sess_1", 1), stmt("sess_1", 2), stmt("sess_1", 3)]
        );
        let got = store.session_statements("sess_1", 2).unwrap();
        assert_eq!(ids(&got, |s| &s.text), ["SELECT 1", "SELECT 2"]);
        assert!(store
            .session_statements("sess_missing", 10)
            .unwrap()
            .is_empty());

        store
            .session_ended("sess_1", 5_000, "client disconnected")
            .unwrap();
        store
            .session_ended("sess_1", 6_000, "late duplicate")
            .unwrap();
        let err = store.session_ended("sess_missing", 5_000, "x").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound {
                    what: "session",
                    ..
                }
            ),
            "{err:?}"
        );

        let ended = store
            .sessions(&SessionFilter {
                user: Some("alice".into()),
                ..SessionFilter::default()
            })
            .unwrap();
        assert_eq!(
            ended,
            vec![SessionRecord {
                ended_ms: Some(5_000),
                end_reason: Some("client disconnected".into()),
                statement_count: 3,
                ..s1
            }]
        );
    });
}

#[test]
fn sessions_filter() {
    on_both(|store| {
        for s in [
            session("s_a_orders_1", "alice", "orders", 1_000),
            session("s_b_orders", "bob", "orders", 2_000),
            session("s_a_billing", "alice", "billing", 3_000),
            session("s_a_orders_2", "alice", "orders", 4_000),
        ] {
            store.session_started(&s).unwrap();
        }
        store.session_ended("s_a_orders_2", 4_500, "done").unwrap();

        let filter =
            |user: Option<&str>, resource: Option<&str>, active_only, limit| SessionFilter {
                user: user.map(Into::into),
                resource: resource.map(Into::into),
                active_only,
                limit,
            };
        let cases: &[(SessionFilter, &[&str])] = &[
            (
                SessionFilter::default(),
                &["s_a_orders_2", "s_a_billing", "s_b_orders", "s_a_orders_1"],
            ),
            (
                filter(None, None, false, 2),
                &["s_a_orders_2", "s_a_billing"],
            ),
            (filter(None, None, false, 0), &[]),
            (
                filter(Some("alice"), None, false, 10),
                &["s_a_orders_2", "s_a_billing", "s_a_orders_1"],
            ),
            (
                filter(None, Some("orders"), false, 10),
                &["s_a_orders_2", "s_b_orders", "s_a_orders_1"],
            ),
            (
                filter(Some("alice"), Some("orders"), true, 10),
                &["s_a_orders_1"],
            ),
            (
                filter(None, None, true, 10),
                &["s_a_billing", "s_b_orders", "s_a_orders_1"],
            ),
            (filter(Some("carol"), None, false, 10), &[]),
        ];
        for (f, want) in cases {
            let got = store.sessions(f).unwrap();
            assert_eq!(ids(&got, |s| &s.id), *want, "{f:?}");
        }
    });
}

#[test]
fn close_orphan_sessions_closes_only_open_ones() {
    on_both(|store| {
        for s in [
            session("s_open_1", "alice", "orders", 1_000),
            session("s_open_2", "bob", "orders", 2_000),
            session("s_closed", "alice", "orders", 3_000),
        ] {
            store.session_started(&s).unwrap();
        }
        store
            .session_ended("s_closed", 3_500, "client disconnected")
            .unwrap();

        assert_eq!(store.close_orphan_sessions(9_000).unwrap(), 2);
        assert_eq!(store.close_orphan_sessions(9_500).unwrap(), 0);

        let all = store.sessions(&SessionFilter::default()).unwrap();
        let ends: Vec<(&str, Option<i64>, Option<&str>)> = all
            .iter()
            .map(|s| (s.id.as_str(), s.ended_ms, s.end_reason.as_deref()))
            .collect();
        assert_eq!(
            ends,
            [
                ("s_closed", Some(3_500), Some("client disconnected")),
                ("s_open_2", Some(9_000), Some(ORPHAN_END_REASON)),
                ("s_open_1", Some(9_000), Some(ORPHAN_END_REASON)),
            ]
        );
        assert!(store
            .sessions(&SessionFilter {
                active_only: true,
                ..SessionFilter::default()
            })
            .unwrap()
            .is_empty());
    });
}

// --- concurrency ------------------------------------------------------------------------

#[test]
fn eight_threads_insert_statements_concurrently() {
    const THREADS: i64 = 8;
    const BATCHES: i64 = 25;
    const BATCH: i64 = 4;

    let dir = TempDir::new().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("control.db")).unwrap());
    store
        .session_started(&session("sess_shared", "alice", "orders", 1))
        .unwrap();

    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                store
                    .session_started(&session(&format!("sess_{t}"), "bob", "orders", 2 + t))
                    .unwrap();
                for b in 0..BATCHES {
                    let batch: Vec<StatementRecord> = (0..BATCH)
                        .flat_map(|i| {
                            let seq = t * 10_000 + b * BATCH + i;
                            [
                                stmt("sess_shared", seq),
                                stmt(&format!("sess_{t}"), b * BATCH + i),
                            ]
                        })
                        .collect();
                    store.statements(&batch).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread panicked");
    }

    let per_thread = BATCHES * BATCH;
    let sessions = store.sessions(&SessionFilter::default()).unwrap();
    assert_eq!(sessions.len() as i64, THREADS + 1);
    for s in &sessions {
        let want = if s.id == "sess_shared" {
            THREADS * per_thread
        } else {
            per_thread
        };
        assert_eq!(s.statement_count, want, "{}", s.id);
        let stored = store.session_statements(&s.id, usize::MAX).unwrap();
        assert_eq!(stored.len() as i64, want, "{}", s.id);
    }
}

#[test]
fn session_by_id() {
    on_both(|s| {
        s.session_started(&session("sess_a", "oncall1", "orders", 10))
            .unwrap();
        s.statements(&[stmt("sess_a", 1), stmt("sess_a", 2)])
            .unwrap();
        let got = s.session("sess_a").unwrap().expect("found");
        assert_eq!((got.user.as_str(), got.statement_count), ("oncall1", 2));
        assert!(s.session("sess_missing").unwrap().is_none());
    });
}

mod access {
    use super::*;
    use airlock_access::{
        AccessRequest, Approval, GrantKind, GrantRecord, RequestKind, RequestState,
    };
    use airlock_config::Access;
    use airlock_store::{ApproveOutcome, GrantFilter, RequestFilter};

    fn request(id: &str, user: &str, created: i64, required: u32) -> AccessRequest {
        AccessRequest {
            id: id.into(),
            kind: RequestKind::Access,
            user: user.into(),
            resource: "orders".into(),
            access: Access::Write,
            duration_ms: 1_800_000,
            reason: "incident 42".into(),
            statement: None,
            role: "oncall".into(),
            approvals_required: required,
            approver_roles: vec!["sre-lead".into(), "dba".into()],
            created_ms: created,
            expires_ms: created + 3_600_000,
            state: RequestState::Pending,
            decided_ms: None,
            decided_by: None,
            decision_comment: None,
            grant_id: None,
            executed_ms: None,
            approvals: vec![],
        }
    }

    fn grant(id: &str, user: &str, created: i64, expires: i64) -> GrantRecord {
        GrantRecord {
            id: id.into(),
            user: user.into(),
            resource: "orders".into(),
            access: Access::Write,
            kind: GrantKind::Requested,
            role: "oncall".into(),
            request_id: None,
            reason: "incident 42".into(),
            created_ms: created,
            expires_ms: expires,
            revoked_ms: None,
            revoked_by: None,
            revoke_reason: None,
        }
    }

    fn approval(who: &str, at: i64) -> Approval {
        Approval {
            approver: who.into(),
            comment: Some(format!("ok from {who}")),
            at_ms: at,
        }
    }

    #[test]
    fn requests_round_trip_and_filter() {
        on_both(|s| {
            let r = request("req_1", "oncall1", 1_000, 1);
            s.insert_request(&r).unwrap();
            assert!(matches!(
                s.insert_request(&r),
                Err(StoreError::AlreadyExists { .. })
            ));
            assert_eq!(s.request("req_1").unwrap().unwrap(), r);
            s.insert_request(&request("req_2", "other", 2_000, 1))
                .unwrap();
            let all = s.requests(&RequestFilter::default()).unwrap();
            assert_eq!(
                all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                ["req_2", "req_1"]
            );
            let mine = s
                .requests(&RequestFilter {
                    user: Some("oncall1".into()),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(mine.len(), 1);
            // Pending at a time after req_1 expired: only req_2.
            let pending = s
                .requests(&RequestFilter {
                    pending_at: Some(3_601_500),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].id, "req_2");
        });
    }

    #[test]
    fn approvals_reach_the_threshold_once() {
        on_both(|s| {
            s.insert_request(&request("req_1", "oncall1", 1_000, 2))
                .unwrap();
            let g = grant("grt_1", "oncall1", 5_000, 5_000 + 1_800_000);
            assert_eq!(
                s.approve_request("req_1", &approval("lead1", 2_000), 2, Some(&g))
                    .unwrap(),
                ApproveOutcome::Recorded {
                    count: 1,
                    required: 2
                }
            );
            assert_eq!(
                s.approve_request("req_1", &approval("lead1", 3_000), 2, Some(&g))
                    .unwrap(),
                ApproveOutcome::AlreadyApproved
            );
            assert!(
                s.grant("grt_1").unwrap().is_none(),
                "no grant before the threshold"
            );
            let out = s
                .approve_request("req_1", &approval("dba1", 5_000), 2, Some(&g))
                .unwrap();
            assert_eq!(
                out,
                ApproveOutcome::Approved {
                    grant: Some(Box::new(g.clone()))
                }
            );
            let r = s.request("req_1").unwrap().unwrap();
            assert_eq!(r.state, RequestState::Approved);
            assert_eq!(r.grant_id.as_deref(), Some("grt_1"));
            assert_eq!(r.decided_by.as_deref(), Some("dba1"));
            assert_eq!(r.approvals.len(), 2);
            assert_eq!(s.grant("grt_1").unwrap().unwrap(), g);
            assert_eq!(
                s.approve_request("req_1", &approval("dba2", 6_000), 2, Some(&g))
                    .unwrap(),
                ApproveOutcome::NotPending(RequestState::Approved)
            );
            assert!(matches!(
                s.approve_request("nope", &approval("dba2", 6_000), 1, None),
                Err(StoreError::NotFound { .. })
            ));
        });
    }

    #[test]
    fn expiry_and_denial_are_exclusive_with_approval() {
        on_both(|s| {
            s.insert_request(&request("req_1", "oncall1", 1_000, 1))
                .unwrap();
            s.insert_request(&request("req_2", "oncall1", 1_000, 1))
                .unwrap();
            // Past expiry, an approval finds it expired even before the sweep.
            assert_eq!(
                s.approve_request("req_1", &approval("lead1", 3_601_000), 1, None)
                    .unwrap(),
                ApproveOutcome::NotPending(RequestState::Expired)
            );
            assert_eq!(
                s.deny_request("req_2", "lead1", "no", 2_000).unwrap(),
                Ok(())
            );
            assert_eq!(
                s.deny_request("req_2", "lead1", "again", 2_500).unwrap(),
                Err(RequestState::Denied)
            );
            let expired = s.expire_requests(3_601_000).unwrap();
            assert_eq!(expired.len(), 1);
            assert_eq!(expired[0].id, "req_1");
            assert_eq!(expired[0].state, RequestState::Expired);
            assert!(
                s.expire_requests(3_700_000).unwrap().is_empty(),
                "announced once"
            );
        });
    }

    #[test]
    fn grants_revocation_and_expiry_announcements() {
        on_both(|s| {
            s.insert_grant(&grant("grt_1", "oncall1", 1_000, 10_000))
                .unwrap();
            s.insert_grant(&grant("grt_2", "oncall1", 2_000, 20_000))
                .unwrap();
            let mut c = credential("c1", "oncall1", "orders", 1_000, 10_000);
            c.grant_id = "grt_1".into();
            s.insert_credential(&c).unwrap();
            let live = s
                .grants(&GrantFilter {
                    live_at: Some(15_000),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(live.len(), 1);
            assert_eq!(live[0].id, "grt_2");
            assert!(s.revoke_grant("grt_1", "lead1", "done", 5_000).unwrap());
            assert!(!s.revoke_grant("grt_1", "lead1", "again", 6_000).unwrap());
            let g = s.grant("grt_1").unwrap().unwrap();
            assert_eq!(
                (
                    g.revoked_ms,
                    g.revoked_by.as_deref(),
                    g.revoke_reason.as_deref()
                ),
                (Some(5_000), Some("lead1"), Some("done"))
            );
            let creds = s.credentials_for("oncall1", "orders", 0, 10).unwrap();
            assert!(
                creds.is_empty(),
                "credentials of a revoked grant stop working"
            );
            // A revoked grant's expiry is not announced; an expired one once.
            let expired = s.take_expired_grants(30_000).unwrap();
            assert_eq!(
                expired.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
                ["grt_2"]
            );
            assert!(s.take_expired_grants(40_000).unwrap().is_empty());
            let mut standing = grant("standing:x", "u", 0, 1);
            standing.kind = GrantKind::Standing;
            assert!(matches!(
                s.insert_grant(&standing),
                Err(StoreError::Invalid { .. })
            ));
        });
    }

    #[test]
    fn statement_requests_execute_once() {
        on_both(|s| {
            let mut r = request("req_s", "oncall1", 1_000, 1);
            r.kind = RequestKind::Statement;
            r.statement = Some("UPDATE t SET x = 1".into());
            s.insert_request(&r).unwrap();
            assert!(
                !s.mark_executed("req_s", 2_000).unwrap(),
                "not approved yet"
            );
            s.approve_request("req_s", &approval("lead1", 1_500), 1, None)
                .unwrap();
            assert!(s.mark_executed("req_s", 2_000).unwrap());
            assert!(!s.mark_executed("req_s", 2_001).unwrap(), "runs once");
            let r = s.request("req_s").unwrap().unwrap();
            assert_eq!(
                (r.state, r.executed_ms),
                (RequestState::Executed, Some(2_000))
            );
            assert_eq!(r.statement.as_deref(), Some("UPDATE t SET x = 1"));
        });
    }
}
