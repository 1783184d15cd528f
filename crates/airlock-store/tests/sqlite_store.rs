//! Behaviour of `SqliteStore` through the `Store` trait, on an in-memory and on
//! a file database.

use std::path::Path;
use std::sync::Arc;

use airlock_store::{ApiToken, SessionCredential, SqliteStore, Store, StoreError, SCHEMA_VERSION};
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
        token_id: None,
        verifier: format!("SCRAM-SHA-256$4096:c2FsdA==$stored{id}:server{id}"),
        created_ms,
        expires_ms,
        revoked_ms: None,
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

/// Revoking a token revokes the session credentials minted with it, in the
/// same transaction, and only those.
#[test]
fn revoking_a_token_revokes_its_credentials() {
    let store = SqliteStore::open_in_memory().unwrap();
    for id in ["tok_a", "tok_b"] {
        store
            .insert_token(&ApiToken {
                id: id.into(),
                user: "alice".into(),
                hash: [id.as_bytes()[4]; 32],
                label: None,
                created_ms: 1,
                expires_ms: None,
                revoked_ms: None,
            })
            .unwrap();
    }
    let with = |id: &str, token: Option<&str>| SessionCredential {
        token_id: token.map(str::to_owned),
        ..credential(id, "alice", "orders", 10, 10_000)
    };
    store
        .insert_credential(&with("cred_1", Some("tok_a")))
        .unwrap();
    store
        .insert_credential(&with("cred_2", Some("tok_b")))
        .unwrap();
    store.insert_credential(&with("cred_3", None)).unwrap();
    assert_eq!(store.credentials_of_token("tok_a").unwrap(), vec!["cred_1"]);
    assert!(store.revoke_token("tok_a", 100).unwrap());
    let live = store.credentials_for("alice", "orders", 0, 10).unwrap();
    let mut live = ids(&live, |c| &c.id);
    live.sort();
    assert_eq!(live, vec!["cred_2", "cred_3"]);
    // The link survives revocation, for ending live sessions.
    assert_eq!(store.credentials_of_token("tok_a").unwrap(), vec!["cred_1"]);
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
            runbook: None,
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
