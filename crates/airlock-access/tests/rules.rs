//! Table-driven tests of the access rules: standing, requestable, break-glass, overlapping roles,
//! expiry, revocation, self-approval and approval thresholds, on an injected clock.

#![allow(clippy::type_complexity)] // tables of tuples read best here

use std::path::Path;
use std::time::Duration;

use airlock_access::*;
use airlock_config::{Access, Config};

const POLICY: &str = r#"
[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "./data"

[[resource]]
name = "orders"
kind = "postgres"
host = "127.0.0.1"
database = "orders"
read  = { user = "orders_ro", password_env = "RO" }
write = { user = "orders_rw", password_env = "RW" }

[[resource]]
name = "billing"
kind = "postgres"
host = "127.0.0.1"
database = "billing"
read  = { user = "billing_ro" }
write = { user = "billing_rw" }

[[role]]
name = "oncall"
standing    = [{ resource = "orders", access = "read" }]
requestable = [{ resource = "orders", access = "write", max = "1h", approvals = 1, approvers = ["sre-lead"] }]
break_glass = [{ resource = "orders", access = "write", max = "30m" }]

[[role]]
name = "payments"
standing    = [{ resource = "billing", access = "read" }]
requestable = [
  { resource = "billing", access = "write", max = "2h", approvals = 2, approvers = ["sre-lead", "dba"] },
  { resource = "orders", access = "write", max = "4h", approvals = 2, approvers = ["dba"] },
]

[[role]]
name = "sre-lead"
standing = [{ resource = "orders", access = "read" }]

[[role]]
name = "dba"
standing = [{ resource = "billing", access = "read" }]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "both1"
roles = ["oncall", "payments"]

[[user]]
name = "lead1"
roles = ["sre-lead"]

[[user]]
name = "lead2"
roles = ["sre-lead", "oncall"]

[[user]]
name = "dba1"
roles = ["dba"]

[[user]]
name = "dba2"
roles = ["dba"]

[access]
request_ttl = "1h"
"#;

const MIN: i64 = 60_000;
const T0: i64 = 1_800_000_000_000;

fn config() -> Config {
    Config::from_str(POLICY, Path::new("/etc/airlock/airlock.toml")).expect("policy parses")
}

fn grant(
    id: &str,
    user: &str,
    resource: &str,
    kind: GrantKind,
    role: &str,
    created: i64,
    expires: i64,
) -> GrantRecord {
    GrantRecord {
        id: id.into(),
        user: user.into(),
        resource: resource.into(),
        access: Access::Write,
        kind,
        role: role.into(),
        request_id: None,
        reason: "incident 42".into(),
        created_ms: created,
        expires_ms: expires,
        revoked_ms: None,
        revoked_by: None,
        revoke_reason: None,
    }
}

#[test]
fn decisions_with_grants_on_a_clock() {
    use Access::{Read, Write};
    let c = config();
    let clock = ManualClock::new(T0);
    let live = grant(
        "grt_live",
        "oncall1",
        "orders",
        GrantKind::Requested,
        "oncall",
        T0,
        T0 + 30 * MIN,
    );
    let mut revoked = grant(
        "grt_rev",
        "oncall1",
        "orders",
        GrantKind::Requested,
        "oncall",
        T0,
        T0 + 30 * MIN,
    );
    revoked.revoked_ms = Some(T0 + MIN);
    revoked.revoked_by = Some("lead1".into());
    revoked.revoke_reason = Some("done".into());
    let bg = grant(
        "grt_bg",
        "oncall1",
        "orders",
        GrantKind::BreakGlass,
        "oncall",
        T0,
        T0 + 30 * MIN,
    );
    // A grant recorded longer than the rule's max is capped at created + max (1h).
    let long = grant(
        "grt_long",
        "oncall1",
        "orders",
        GrantKind::Requested,
        "oncall",
        T0,
        T0 + 5 * 60 * MIN,
    );
    // A grant under a role the user does not hold.
    let foreign = grant(
        "grt_foreign",
        "oncall1",
        "orders",
        GrantKind::Requested,
        "payments",
        T0,
        T0 + 30 * MIN,
    );
    // Someone else's grant never helps.
    let others = grant(
        "grt_other",
        "lead1",
        "orders",
        GrantKind::Requested,
        "oncall",
        T0,
        T0 + 30 * MIN,
    );

    // (case, user, resource, access, minutes after T0, grants, Ok(grant id, expiry) | Err(fragment))
    type Want = Result<(&'static str, Option<i64>), &'static str>;
    let table: Vec<(&str, &str, &str, Access, i64, Vec<GrantRecord>, Want)> = vec![
        ("standing read", "oncall1", "orders", Read, 0, vec![], Ok(("standing:oncall:orders:read", None))),
        ("write without grant names request and break-glass", "oncall1", "orders", Write, 0, vec![],
            Err("request it: airlock request orders --access write --for 1h --reason \"...\"; in an emergency: airlock break-glass orders")),
        ("live requested grant", "oncall1", "orders", Write, 10, vec![live.clone()], Ok(("grt_live", Some(T0 + 30 * MIN)))),
        ("expired grant", "oncall1", "orders", Write, 30, vec![live.clone()], Err("request it")),
        ("revoked grant", "oncall1", "orders", Write, 10, vec![revoked.clone()], Err("request it")),
        ("revoked and live: the live one", "oncall1", "orders", Write, 10, vec![revoked.clone(), live.clone()], Ok(("grt_live", Some(T0 + 30 * MIN)))),
        ("break-glass grant", "oncall1", "orders", Write, 29, vec![bg.clone()], Ok(("grt_bg", Some(T0 + 30 * MIN)))),
        ("capped by the rule's max", "oncall1", "orders", Write, 59, vec![long.clone()], Ok(("grt_long", Some(T0 + 60 * MIN)))),
        ("past the rule's max", "oncall1", "orders", Write, 61, vec![long.clone()], Err("request it")),
        ("grant from a role not held", "oncall1", "orders", Write, 1, vec![foreign], Err("request it")),
        ("someone else's grant", "oncall1", "orders", Write, 1, vec![others], Err("request it")),
        ("overlapping roles: standing from the second role", "both1", "billing", Read, 0, vec![], Ok(("standing:payments:billing:read", None))),
        ("overlapping roles: no standing write", "both1", "billing", Write, 0, vec![], Err("request it: airlock request billing --access write --for 1h")),
        ("no rule at all", "lead1", "billing", Write, 0, vec![], Err("ask the platform team")),
        ("unknown user", "ghost", "orders", Read, 0, vec![], Err("not known to Airlock")),
        ("unknown resource", "oncall1", "payments", Read, 0, vec![], Err("known resources: orders, billing")),
    ];
    for (case, user, resource, access, minutes, grants, want) in table {
        clock.set(T0 + minutes * MIN);
        let got = decide(&c, user, resource, access, clock.now_ms(), &grants);
        match (&want, &got) {
            (Ok((id, expires)), Decision::Allow(g)) => {
                assert_eq!((g.id.as_str(), g.expires_ms), (*id, *expires), "{case}");
                assert_eq!(
                    (g.user.as_str(), g.resource.as_str(), g.access),
                    (user, resource, access),
                    "{case}"
                );
            }
            (Err(fragment), Decision::Deny(d)) => {
                assert!(d.to_string().contains(fragment), "{case}: {d}");
            }
            _ => panic!("{case}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn grant_end_reasons_name_the_grant_and_why() {
    let c = config();
    let g = grant(
        "grt_1",
        "oncall1",
        "orders",
        GrantKind::Requested,
        "oncall",
        T0,
        T0 + 10 * MIN,
    );
    let e = check_grant(&c, &g, T0 + 10 * MIN).unwrap_err().to_string();
    assert!(
        e.contains("grant grt_1 (write on \"orders\") expired at 2027-01-15T08:10:00Z"),
        "{e}"
    );
    let mut r = g.clone();
    r.revoked_ms = Some(T0);
    r.revoked_by = Some("lead1".into());
    r.revoke_reason = Some("incident over".into());
    let e = check_grant(&c, &r, T0 + MIN).unwrap_err().to_string();
    assert!(e.contains("was revoked by lead1: incident over"), "{e}");
    // A policy without the rule ends the grant.
    let without = POLICY.replace(
        "requestable = [{ resource = \"orders\", access = \"write\", max = \"1h\", approvals = 1, approvers = [\"sre-lead\"] }]\n",
        "",
    );
    let c2 = Config::from_str(&without, Path::new("a.toml")).unwrap();
    let e = check_grant(&c2, &g, T0 + MIN).unwrap_err().to_string();
    assert!(e.contains("no longer allowed by the policy: role \"oncall\" has no requestable rule for write on \"orders\" any more"), "{e}");
    // recheck of a standing grant follows the policy too.
    let standing = match decide(&c, "oncall1", "orders", Access::Read, T0, &[]) {
        Decision::Allow(g) => g,
        d => panic!("{d:?}"),
    };
    assert!(recheck(&c, &standing, None, T0).is_ok());
    let no_read = POLICY.replacen(
        "standing    = [{ resource = \"orders\", access = \"read\" }]\n",
        "",
        1,
    );
    let c3 = Config::from_str(&no_read, Path::new("a.toml")).unwrap();
    let e = recheck(&c3, &standing, None, T0).unwrap_err().to_string();
    assert!(
        e.contains(
            "no role of user \"oncall1\" grants standing read access to \"orders\" any more"
        ),
        "{e}"
    );
    // A time-boxed grant missing from the store does not hold.
    let timeboxed = check_grant(&c, &g, T0).unwrap();
    assert!(recheck(&c, &timeboxed, None, T0).is_err());
}

fn pending(plan: &RequestPlan, user: &str, resource: &str, now: i64) -> AccessRequest {
    AccessRequest {
        id: "req_1".into(),
        kind: RequestKind::Access,
        user: user.into(),
        resource: resource.into(),
        access: Access::Write,
        duration_ms: plan.duration_ms,
        reason: "incident 42".into(),
        statement: None,
        role: plan.role.clone(),
        approvals_required: plan.approvals_required,
        approver_roles: plan.approver_roles.clone(),
        created_ms: now,
        expires_ms: plan.expires_ms,
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

#[test]
fn requests_are_checked() {
    let c = config();
    let w = Access::Write;
    let ok = request_access(
        &c,
        "oncall1",
        "orders",
        w,
        Some(Duration::from_secs(1800)),
        "incident 42",
        T0,
        &[],
    )
    .unwrap();
    assert_eq!(ok.role, "oncall");
    assert_eq!(ok.duration_ms, 30 * MIN);
    assert_eq!(ok.approvals_required, 1);
    assert_eq!(ok.approvers, ["lead1", "lead2"]);
    assert_eq!(ok.expires_ms, T0 + 60 * MIN);
    // Default duration: min(1h, max).
    let d = request_access(&c, "oncall1", "orders", w, None, "x", T0, &[]).unwrap();
    assert_eq!(d.duration_ms, 60 * MIN);
    // Overlapping roles: both1 may request orders write under oncall (1 approval) or payments (2):
    // the rule needing fewer approvals is chosen.
    let both = request_access(&c, "both1", "orders", w, None, "x", T0, &[]).unwrap();
    assert_eq!((both.role.as_str(), both.approvals_required), ("oncall", 1));
    // …and a longer duration than oncall's max is not silently moved to the other rule.
    let e = request_access(
        &c,
        "both1",
        "orders",
        w,
        Some(Duration::from_secs(7200)),
        "x",
        T0,
        &[],
    )
    .unwrap_err();
    assert_eq!(e.code, "duration_too_long");

    let live = grant(
        "grt_live",
        "oncall1",
        "orders",
        GrantKind::Requested,
        "oncall",
        T0,
        T0 + 30 * MIN,
    );
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Access,
        Option<u64>,
        &'a str,
        Vec<GrantRecord>,
        &'a str,
        RefusalKind,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "above max",
            "oncall1",
            "orders",
            w,
            Some(2 * 3600),
            "x",
            vec![],
            "duration_too_long",
            RefusalKind::BadInput,
        ),
        (
            "missing reason",
            "oncall1",
            "orders",
            w,
            None,
            "  ",
            vec![],
            "missing_reason",
            RefusalKind::BadInput,
        ),
        (
            "unknown resource",
            "oncall1",
            "nope",
            w,
            None,
            "x",
            vec![],
            "access_denied",
            RefusalKind::NotFound,
        ),
        (
            "no rule",
            "lead1",
            "orders",
            w,
            None,
            "x",
            vec![],
            "access_denied",
            RefusalKind::Forbidden,
        ),
        (
            "already standing",
            "oncall1",
            "orders",
            Access::Read,
            None,
            "x",
            vec![],
            "already_allowed",
            RefusalKind::Conflict,
        ),
        (
            "already granted",
            "oncall1",
            "orders",
            w,
            None,
            "x",
            vec![live],
            "already_granted",
            RefusalKind::Conflict,
        ),
        (
            "zero",
            "oncall1",
            "orders",
            w,
            Some(0),
            "x",
            vec![],
            "bad_duration",
            RefusalKind::BadInput,
        ),
    ];
    for (case, user, resource, access, secs, reason, grants, code, kind) in cases {
        let e = request_access(
            &c,
            user,
            resource,
            access,
            secs.map(Duration::from_secs),
            reason,
            T0,
            &grants,
        )
        .expect_err(case);
        assert_eq!((e.code, e.kind), (code, kind), "{case}: {e}");
    }
    let e = request_access(
        &c,
        "oncall1",
        "orders",
        w,
        Some(Duration::from_secs(7200)),
        "x",
        T0,
        &[],
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "2h is above the 1h that role \"oncall\" may request for write on \"orders\" (ask for --for 1h or less)");
}

#[test]
fn approvals_self_thresholds_and_expiry() {
    let c = config();
    let plan = request_access(&c, "oncall1", "orders", Access::Write, None, "x", T0, &[]).unwrap();
    let mut r = pending(&plan, "oncall1", "orders", T0);
    // (case, approver, minutes, Ok(required) | Err(code))
    let table: Vec<(&str, &str, i64, Result<u32, &str>)> = vec![
        ("approver role", "lead1", 1, Ok(1)),
        ("self-approval", "oncall1", 1, Err("self_approval")),
        ("not an approver", "dba1", 1, Err("not_an_approver")),
        ("unknown user", "ghost", 1, Err("not_an_approver")),
        ("request expired", "lead1", 60, Err("request_expired")),
    ];
    for (case, approver, minutes, want) in &table {
        let got = can_approve(&c, &r, approver, T0 + minutes * MIN);
        match (want, got) {
            (Ok(n), Ok(m)) => assert_eq!(*n, m, "{case}"),
            (Err(code), Err(e)) => assert_eq!(*code, e.code, "{case}: {e}"),
            (w, g) => panic!("{case}: want {w:?}, got {g:?}"),
        }
    }
    // A second approval by the same person is refused.
    r.approvals.push(Approval {
        approver: "lead1".into(),
        comment: None,
        at_ms: T0,
    });
    assert_eq!(
        can_approve(&c, &r, "lead1", T0 + MIN).unwrap_err().code,
        "already_approved_by_you"
    );
    r.state = RequestState::Approved;
    assert_eq!(
        can_approve(&c, &r, "lead2", T0 + MIN).unwrap_err().code,
        "already_approved"
    );

    // Two approvals from distinct dba or sre-lead users.
    let plan = request_access(&c, "both1", "billing", Access::Write, None, "x", T0, &[]).unwrap();
    assert_eq!(plan.approvals_required, 2);
    assert_eq!(plan.approvers, ["lead1", "lead2", "dba1", "dba2"]);
    let mut r = pending(&plan, "both1", "billing", T0);
    assert_eq!(can_approve(&c, &r, "dba1", T0).unwrap(), 2);
    r.approvals.push(Approval {
        approver: "dba1".into(),
        comment: None,
        at_ms: T0,
    });
    assert_eq!(can_approve(&c, &r, "lead1", T0).unwrap(), 2);
    assert_eq!(
        can_approve(&c, &r, "dba1", T0).unwrap_err().code,
        "already_approved_by_you"
    );

    // Denials: approvers only, with a reason, while pending.
    assert_eq!(
        can_deny(&c, &r, "both1", "no", T0).unwrap_err().code,
        "self_denial"
    );
    assert_eq!(
        can_deny(&c, &r, "oncall1", "no", T0).unwrap_err().code,
        "not_an_approver"
    );
    assert_eq!(
        can_deny(&c, &r, "dba2", "", T0).unwrap_err().code,
        "missing_reason"
    );
    assert!(can_deny(&c, &r, "dba2", "not now", T0).is_ok());
    assert_eq!(
        can_deny(&c, &r, "dba2", "late", T0 + 60 * MIN)
            .unwrap_err()
            .code,
        "request_expired"
    );

    // Visibility: requester and approvers.
    assert!(may_view_request(&c, &r, "both1"));
    assert!(may_view_request(&c, &r, "dba2"));
    assert!(!may_view_request(&c, &r, "oncall1"));
}

#[test]
fn break_glass_and_revocation() {
    let c = config();
    let p = break_glass(
        &c,
        "oncall1",
        "orders",
        Access::Write,
        None,
        "db on fire",
        T0,
    )
    .unwrap();
    assert_eq!((p.role.as_str(), p.expires_ms), ("oncall", T0 + 30 * MIN));
    let e = break_glass(
        &c,
        "oncall1",
        "orders",
        Access::Write,
        Some(Duration::from_secs(3600)),
        "x",
        T0,
    )
    .unwrap_err();
    assert_eq!(e.code, "duration_too_long");
    assert!(e.message.contains("lasts at most 30m"), "{e}");
    assert_eq!(
        break_glass(&c, "oncall1", "orders", Access::Write, None, "", T0)
            .unwrap_err()
            .code,
        "missing_reason"
    );
    assert_eq!(
        break_glass(&c, "lead1", "orders", Access::Write, None, "x", T0)
            .unwrap_err()
            .code,
        "no_break_glass"
    );

    let g = grant(
        "grt_bg",
        "oncall1",
        "orders",
        GrantKind::BreakGlass,
        "oncall",
        T0,
        p.expires_ms,
    );
    assert!(
        can_revoke(&c, &g, "oncall1", "done", T0).is_ok(),
        "the holder"
    );
    assert!(
        can_revoke(&c, &g, "lead1", "stop", T0).is_ok(),
        "an approver of orders write"
    );
    assert!(
        can_revoke(&c, &g, "dba1", "x", T0).is_ok(),
        "dba approves orders write under payments"
    );
    assert_eq!(
        can_revoke(&c, &g, "both1", "x", T0).unwrap_err().code,
        "not_allowed"
    );
    assert_eq!(
        can_revoke(&c, &g, "lead1", "", T0).unwrap_err().code,
        "missing_reason"
    );
    assert_eq!(
        can_revoke(&c, &g, "lead1", "x", T0 + 30 * MIN)
            .unwrap_err()
            .code,
        "already_expired"
    );
}

#[test]
fn reviewed_statements() {
    let c = config();
    let sql = "UPDATE orders SET status = 'x' WHERE id = 1";
    let plan = request_statement(&c, "oncall1", "orders", sql, "fix 42", T0).unwrap();
    assert_eq!(
        plan.duration_ms,
        60 * MIN,
        "runnable within the rule's max after approval"
    );
    let mut r = pending(&plan, "oncall1", "orders", T0);
    r.kind = RequestKind::Statement;
    r.statement = Some(sql.into());
    assert_eq!(
        can_run_statement(&c, &r, "oncall1", T0).unwrap_err().code,
        "not_approved"
    );
    r.state = RequestState::Approved;
    r.decided_ms = Some(T0 + MIN);
    assert!(can_run_statement(&c, &r, "oncall1", T0 + 2 * MIN).is_ok());
    assert_eq!(
        can_run_statement(&c, &r, "lead1", T0 + 2 * MIN)
            .unwrap_err()
            .code,
        "not_requester"
    );
    assert_eq!(
        can_run_statement(&c, &r, "oncall1", T0 + 61 * MIN)
            .unwrap_err()
            .code,
        "approval_expired"
    );
    r.state = RequestState::Executed;
    r.executed_ms = Some(T0 + 3 * MIN);
    assert_eq!(
        can_run_statement(&c, &r, "oncall1", T0 + 4 * MIN)
            .unwrap_err()
            .code,
        "already_executed"
    );
    assert_eq!(
        request_statement(&c, "oncall1", "orders", " ", "x", T0)
            .unwrap_err()
            .code,
        "missing_statement"
    );
    assert_eq!(
        request_statement(&c, "lead1", "orders", "DELETE FROM x", "x", T0)
            .unwrap_err()
            .code,
        "access_denied"
    );
}

/// Regression: a reviewed statement holding a carriage return and terminal
/// escapes showed in `airlock requests` as `DELETE FROM customers WHERE id =
/// 5`; approved as one row, it deleted five. Such text is refused at filing.
#[test]
fn unsafe_characters_are_refused_when_filed() {
    let c = config();
    let hidden = "DELETE FROM customers -- \r\x1b[2KDELETE FROM customers WHERE id = 5";
    let cases: &[(&str, &str, Option<&str>)] = &[
        // (statement, reason, the refusal's position text or None when filed)
        ("UPDATE t SET x = 1 WHERE id = 1", "INC-42", None),
        (
            "UPDATE t\n\tSET x = 1\nWHERE id = 1",
            "INC-42\nline two\tok",
            None,
        ),
        (
            "UPDATE t SET note = 'שלום 😀' WHERE id = 1",
            "INC-42 ✓",
            None,
        ),
        (
            hidden,
            "INC-42",
            Some(
                "statement contains a carriage return (U+000D, shown as \\r) at line 1, column 26",
            ),
        ),
        (
            "SELECT 1 -- \x1b[8m",
            "INC-42",
            Some("(U+001B, shown as \\x1b) at line 1, column 13"),
        ),
        (
            "SELECT 1\n-- \u{202e}5 = di",
            "INC-42",
            Some("right-to-left override (U+202E, shown as \\u{202e}) at line 2, column 4"),
        ),
        ("SELECT 1 \u{2066}", "INC-42", Some("left-to-right isolate")),
        ("SELECT\u{200b}1", "INC-42", Some("zero-width space")),
        ("\u{feff}SELECT 1", "INC-42", Some("byte order mark")),
        ("SELECT 1\u{85}", "INC-42", Some("(U+0085")),
        ("SELECT 1\x7f", "INC-42", Some("(U+007F")),
        ("SELECT 1\r\n", "INC-42", Some("carriage return")),
        (
            "SELECT 1",
            "INC-42\r fine",
            Some("reason contains a carriage return"),
        ),
        (
            "SELECT 1",
            "INC-42 \u{202e}",
            Some("reason contains a right-to-left override"),
        ),
        (
            "SELECT 1",
            "\x1b]0;title\x07",
            Some("reason contains an escape"),
        ),
    ];
    for (sql, reason, refused) in cases {
        let got = request_statement(&c, "oncall1", "orders", sql, reason, T0);
        match (refused, got) {
            (None, Ok(_)) => {}
            (Some(want), Err(e)) => {
                assert_eq!(
                    (e.code, e.kind),
                    ("unsafe_character", RefusalKind::BadInput),
                    "{sql:?}"
                );
                assert!(e.message.contains(want), "{sql:?}: {}", e.message);
                assert!(
                    e.hint.as_deref().is_some_and(|h| h.contains("remove it")),
                    "{e:?}"
                );
            }
            (want, got) => panic!("{sql:?} / {reason:?}: expected {want:?}, got {got:?}"),
        }
    }
    // Every reason goes through the same check.
    let e = request_access(
        &c,
        "oncall1",
        "orders",
        Access::Write,
        None,
        "a\u{9b}b",
        T0,
        &[],
    )
    .unwrap_err();
    assert_eq!(e.code, "unsafe_character");
    let e = break_glass(
        &c,
        "oncall1",
        "orders",
        Access::Write,
        None,
        "\u{2067}x",
        T0,
    )
    .unwrap_err();
    assert_eq!(e.code, "unsafe_character");
}

#[test]
fn explanations() {
    let c = config();
    let e = explain(&c, "oncall1", "orders", Access::Write, T0, &[]);
    assert_eq!(e.outcome, Outcome::Requestable);
    assert!(e.break_glass);
    let text = e.reasons.join("\n");
    assert!(
        text.contains("user \"oncall1\" holds role(s) \"oncall\""),
        "{text}"
    );
    assert!(
        text.contains("role \"oncall\": standing read on \"orders\" (not this level)"),
        "{text}"
    );
    assert!(text.contains("role \"oncall\": requestable write on \"orders\" for up to 1h, with 1 approval(s) from role sre-lead (approvers: lead1, lead2)"), "{text}");
    assert!(
        text.contains("role \"oncall\": break-glass write on \"orders\" for up to 30m"),
        "{text}"
    );
    assert!(e
        .next
        .unwrap()
        .contains("airlock request orders --access write"));

    let e = explain(&c, "oncall1", "orders", Access::Read, T0, &[]);
    assert_eq!(e.outcome, Outcome::Allow);
    assert_eq!(e.grant_id.as_deref(), Some("standing:oncall:orders:read"));

    let g = grant(
        "grt_1",
        "oncall1",
        "orders",
        GrantKind::Requested,
        "oncall",
        T0,
        T0 + 10 * MIN,
    );
    let e = explain(&c, "oncall1", "orders", Access::Write, T0, &[g]);
    assert_eq!(e.outcome, Outcome::Allow);
    assert!(
        e.reasons
            .iter()
            .any(|r| r.contains("grant grt_1 (requested) is live until")),
        "{:?}",
        e.reasons
    );

    assert_eq!(
        explain(&c, "lead1", "billing", Access::Write, T0, &[]).outcome,
        Outcome::Deny
    );
    assert_eq!(
        explain(&c, "ghost", "orders", Access::Read, T0, &[]).outcome,
        Outcome::Deny
    );
}

#[test]
fn entitlement_listing() {
    let c = config();
    let got: Vec<String> = entitlements(&c, "both1")
        .iter()
        .map(|e| format!("{}:{}:{}", e.resource, e.access, e.how))
        .collect();
    assert_eq!(
        got,
        [
            "orders:read:standing",
            "orders:write:requestable",
            "orders:write:break_glass",
            "billing:read:standing",
            "billing:write:requestable",
        ]
    );
}

#[test]
fn explanations_say_what_to_do_next() {
    use Access::{Read, Write};
    let c = config();
    let policy = "/etc/airlock/airlock.toml";
    let unknown_user =
        |u: &str| format!("check the name, or add a [[user]] entry for \"{u}\" to {policy}");
    let unknown_resource = |r: &str| {
        format!(
            "resource \"{r}\" does not exist: check the name ({policy} has \"orders\", \"billing\"), or add a [[resource]] entry for \"{r}\" to {policy}"
        )
    };
    // (user, resource, access, outcome, break-glass possible, next, first reason)
    let cases: Vec<(&str, &str, Access, Outcome, bool, Option<String>, &str)> = vec![
        (
            "oncall1",
            "orders",
            Read,
            Outcome::Allow,
            false,
            None,
            "user \"oncall1\" holds role(s) \"oncall\"",
        ),
        (
            "oncall1",
            "orders",
            Write,
            Outcome::Requestable,
            true,
            Some("airlock request orders --access write --reason \"...\"".into()),
            "user \"oncall1\" holds role(s) \"oncall\"",
        ),
        (
            "lead1",
            "billing",
            Write,
            Outcome::Deny,
            false,
            Some("ask the platform team for a role with a rule for it in airlock.toml".into()),
            "user \"lead1\" holds role(s) \"sre-lead\"",
        ),
        // A user the policy does not have: no roles to look at, and a way to add them.
        (
            "ghost",
            "orders",
            Read,
            Outcome::Deny,
            false,
            Some(unknown_user("ghost")),
            "user \"ghost\" is not known to Airlock",
        ),
        // The user is checked first, even when the resource is unknown too.
        (
            "ghost",
            "ordres",
            Write,
            Outcome::Deny,
            false,
            Some(unknown_user("ghost")),
            "user \"ghost\" is not known to Airlock",
        ),
        // A resource the policy does not have: not "ask for a role", but the names it has.
        (
            "oncall1",
            "ordres",
            Read,
            Outcome::Deny,
            false,
            Some(unknown_resource("ordres")),
            "user \"oncall1\" holds role(s) \"oncall\"",
        ),
        (
            "both1",
            "payments",
            Write,
            Outcome::Deny,
            false,
            Some(unknown_resource("payments")),
            "user \"both1\" holds role(s) \"oncall\", \"payments\"",
        ),
    ];
    for (user, resource, access, outcome, break_glass, next, first) in cases {
        let e = explain(&c, user, resource, access, T0, &[]);
        let case = format!("{user} {resource} {access}: {e:?}");
        assert_eq!(e.outcome, outcome, "{case}");
        assert_eq!(e.next, next, "{case}");
        assert!(e.reasons[0].starts_with(first), "{case}");
        assert_eq!(e.break_glass, break_glass, "{case}");
    }
    // An unknown user gets only the one reason: there are no roles to go through.
    let e = explain(&c, "ghost", "orders", Read, T0, &[]);
    assert_eq!(e.reasons.len(), 1, "{:?}", e.reasons);
    // An unknown resource still gets each role's say and the denial that names the known ones.
    let e = explain(&c, "oncall1", "ordres", Read, T0, &[]);
    assert_eq!(
        e.reasons[1..],
        [
            "role \"oncall\": no rule for \"ordres\"",
            "decision: deny (resource \"ordres\" does not exist; known resources: orders, billing)",
        ],
        "{:?}",
        e.reasons
    );
}

#[test]
fn an_unknown_resource_in_a_policy_without_resources() {
    // A policy being written: users and roles, no resources yet.
    let c = Config::from_str(
        r#"
[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "./data"

[[role]]
name = "oncall"

[[user]]
name = "oncall1"
roles = ["oncall"]
"#,
        Path::new("policy/airlock.toml"),
    )
    .expect("policy parses");
    let e = explain(&c, "oncall1", "orders", Access::Read, T0, &[]);
    assert_eq!(e.outcome, Outcome::Deny);
    assert_eq!(
        e.next.as_deref(),
        Some("resource \"orders\" does not exist: check the name (policy/airlock.toml has no resources), or add a [[resource]] entry for \"orders\" to policy/airlock.toml")
    );
}

#[test]
fn outcome_words_round_trip() {
    let all = [
        (Outcome::Allow, "allow"),
        (Outcome::Requestable, "requestable"),
        (Outcome::BreakGlass, "break_glass"),
        (Outcome::Deny, "deny"),
    ];
    for (outcome, word) in all {
        assert_eq!(outcome.as_str(), word);
        assert_eq!(Outcome::parse(word), Some(outcome));
    }
    for not in [
        "",
        "Allow",
        "ALLOW",
        " allow",
        "allow ",
        "break-glass",
        "breakglass",
        "denied",
    ] {
        assert_eq!(Outcome::parse(not), None, "{not:?}");
    }
}
