//! Access decisions: who may reach which resource at which level, under which
//! grant, until when; and the rules of requests, approvals and break-glass.
//!
//! This crate is a pure function of (policy, state, now, request) → decision
//! with its reasons. It does no IO and reads no clock: callers pass `now_ms`
//! (milliseconds since the Unix epoch, on the gateway's clock) and the state
//! they loaded from the store (time-boxed grants, requests with approvals).
//!
//! Grants come in three kinds: standing (a role's rule, as long as the policy
//! says so), requested (an approved request, until `expires_ms`) and
//! break-glass (taken in an emergency, short). A time-boxed grant is honoured
//! only while it is unrevoked, unexpired, and still allowed by the policy in
//! force: the user still holds the role, the role still has the rule, and the
//! grant has not outlived the rule's current `max`. So a policy change that
//! removes a rule ends the grants made under it.

use std::fmt;

pub mod clock;
pub mod explain;
pub mod requests;
pub mod state;

pub use clock::{Clock, ManualClock, SystemClock};
pub use explain::{explain, Explanation, Outcome};
pub use requests::{
    approvers_for, break_glass, can_approve, can_deny, can_revoke, can_run_runbook,
    can_run_statement, is_grant_approver, may_view_request, request_access, request_runbook,
    request_statement, BreakGlassPlan, RefusalKind, RequestPlan, RequestRefusal,
};
pub use state::{AccessRequest, Approval, GrantKind, GrantRecord, RequestKind, RequestState};

use airlock_config::{Access, BreakGlassRule, Config, RequestableRule, Role};

/// The grant that backs a session or a session credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Stable identifier; for a standing grant it names the rule:
    /// `standing:<role>:<resource>:<access>`; time-boxed grants have store ids (`grt_…`).
    pub id: String,
    pub user: String,
    pub resource: String,
    pub access: Access,
    pub kind: GrantKind,
    /// The role whose rule grants it.
    pub role: String,
    /// When the grant ends, already capped by the policy in force; `None` for standing grants,
    /// which last as long as the policy says so.
    pub expires_ms: Option<i64>,
}

impl Grant {
    pub fn is_standing(&self) -> bool {
        self.kind == GrantKind::Standing
    }
}

/// Why a grant that once existed no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantEnd {
    Expired {
        at_ms: i64,
    },
    Revoked {
        by: String,
        reason: String,
    },
    /// The policy in force no longer allows it (rule, role or user removed).
    NoLongerAllowed {
        why: String,
    },
}

/// Why access is refused. Every variant renders as a sentence that says what
/// happened and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    UnknownUser {
        user: String,
    },
    UnknownResource {
        resource: String,
        known: Vec<String>,
    },
    /// The resource has no upstream credential for this access level.
    LevelNotConfigured {
        resource: String,
        access: Access,
    },
    /// No rule of the user's roles grants this access now.
    NotEntitled {
        user: String,
        resource: String,
        access: Access,
        /// What the user's roles do grant standing on this resource, if anything.
        has: Option<Access>,
        /// The longest grant the user could request, if a rule allows requesting it.
        requestable: Option<std::time::Duration>,
        /// The longest break-glass grant the user could take, if a rule allows it.
        break_glass: Option<std::time::Duration>,
    },
    /// The grant behind a credential or session has ended.
    GrantEnded {
        grant_id: String,
        resource: String,
        access: Access,
        end: GrantEnd,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::UnknownUser { user } => write!(
                f,
                "user \"{user}\" is not known to Airlock; ask the platform team to add a [[user]] entry for it to airlock.toml"
            ),
            Denial::UnknownResource { resource, known } => {
                write!(f, "resource \"{resource}\" does not exist")?;
                if known.is_empty() {
                    write!(f, "; no resources are configured")
                } else {
                    write!(f, "; known resources: {}", known.join(", "))
                }
            }
            Denial::LevelNotConfigured { resource, access } => write!(
                f,
                "resource \"{resource}\" has no {access} credential configured, so {access} access to it is not possible"
            ),
            Denial::NotEntitled {
                user,
                resource,
                access,
                has,
                requestable,
                break_glass,
            } => {
                write!(
                    f,
                    "user \"{user}\" has no {access} access to \"{resource}\""
                )?;
                if let Some(level) = has {
                    write!(f, " (standing access is {level})")?;
                }
                match (requestable, break_glass) {
                    (Some(max), _) => write!(
                        f,
                        "; request it: airlock request {resource} --access {access} --for {} --reason \"...\"",
                        airlock_config::format_duration((*max).min(DEFAULT_REQUEST_FOR))
                    )?,
                    (None, Some(_)) => write!(
                        f,
                        "; in an emergency: airlock break-glass {resource} --access {access} --reason \"...\" (loud: it is announced and marked)"
                    )?,
                    (None, None) => match has {
                        Some(level) => write!(f, "; connect with --access {level}")?,
                        None => write!(
                            f,
                            "; ask the platform team for a role that grants it in airlock.toml"
                        )?,
                    },
                }
                if requestable.is_some() && break_glass.is_some() {
                    write!(
                        f,
                        "; in an emergency: airlock break-glass {resource} --access {access} --reason \"...\""
                    )?;
                }
                Ok(())
            }
            Denial::GrantEnded {
                grant_id,
                resource,
                access,
                end,
            } => {
                write!(f, "grant {grant_id} ({access} on \"{resource}\") ")?;
                match end {
                    GrantEnd::Expired { at_ms } => write!(
                        f,
                        "expired at {}",
                        format_ms(*at_ms)
                    )?,
                    GrantEnd::Revoked { by, reason } => {
                        write!(f, "was revoked by {by}: {reason}")?
                    }
                    GrantEnd::NoLongerAllowed { why } => {
                        write!(f, "is no longer allowed by the policy: {why}")?
                    }
                }
                write!(
                    f,
                    "; to go on, get access again (airlock connect {resource} --access {access} says how)"
                )
            }
        }
    }
}

/// The duration a request asks for when `--for` is not given, capped by the rule's `max`.
pub const DEFAULT_REQUEST_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// `2026-11-21T14:02:03Z`, for messages.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Grant),
    Deny(Denial),
}

/// The user's roles that exist in the policy, in the order the user lists them.
pub(crate) fn roles_of<'c>(config: &'c Config, user: &str) -> Vec<&'c Role> {
    config
        .user(user)
        .map(|u| {
            u.roles
                .iter()
                .filter_map(|r| config.role(r.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// The requestable rules of the user's roles for (resource, access), with their role.
pub(crate) fn requestable_rules<'c>(
    config: &'c Config,
    user: &str,
    resource: &str,
    access: Access,
) -> Vec<(&'c Role, &'c RequestableRule)> {
    roles_of(config, user)
        .into_iter()
        .flat_map(|role| role.requestable.iter().map(move |r| (role, r)))
        .filter(|(_, r)| r.resource.as_str() == resource && r.access == access)
        .collect()
}

/// The break-glass rules of the user's roles for (resource, access), with their role.
pub(crate) fn break_glass_rules<'c>(
    config: &'c Config,
    user: &str,
    resource: &str,
    access: Access,
) -> Vec<(&'c Role, &'c BreakGlassRule)> {
    roles_of(config, user)
        .into_iter()
        .flat_map(|role| role.break_glass.iter().map(move |r| (role, r)))
        .filter(|(_, r)| r.resource.as_str() == resource && r.access == access)
        .collect()
}

/// The user, resource and level checks every decision starts with.
fn precheck(config: &Config, user: &str, resource: &str, access: Access) -> Result<(), Denial> {
    if config.user(user).is_none() {
        return Err(Denial::UnknownUser {
            user: user.to_owned(),
        });
    }
    let Some(r) = config.resource(resource) else {
        return Err(Denial::UnknownResource {
            resource: resource.to_owned(),
            known: config
                .resources
                .iter()
                .map(|r| r.name.to_string())
                .collect(),
        });
    };
    if r.credential(access).is_none() {
        return Err(Denial::LevelNotConfigured {
            resource: resource.to_owned(),
            access,
        });
    }
    Ok(())
}

/// The standing grant for (user, resource, access), if a role grants it.
fn standing_grant(config: &Config, user: &str, resource: &str, access: Access) -> Option<Grant> {
    roles_of(config, user).into_iter().find_map(|role| {
        role.standing
            .iter()
            .any(|e| e.resource.as_str() == resource && e.access == access)
            .then(|| Grant {
                id: format!("standing:{}:{}:{}", role.name, resource, access),
                user: user.to_owned(),
                resource: resource.to_owned(),
                access,
                kind: GrantKind::Standing,
                role: role.name.to_string(),
                expires_ms: None,
            })
    })
}

/// Decides whether `user` may reach `resource` at `access` at time `now_ms`, given the user's
/// time-boxed grants (`grants`; others' grants and other resources are ignored).
///
/// Default deny: access exists only where a standing rule of one of the user's roles grants
/// exactly that resource and level, or a live time-boxed grant does (the one lasting longest is
/// chosen). Write access does not imply read: each level maps to its own upstream credential.
pub fn decide(
    config: &Config,
    user: &str,
    resource: &str,
    access: Access,
    now_ms: i64,
    grants: &[GrantRecord],
) -> Decision {
    if let Err(d) = precheck(config, user, resource, access) {
        return Decision::Deny(d);
    }
    if let Some(g) = standing_grant(config, user, resource, access) {
        return Decision::Allow(g);
    }
    let best = grants
        .iter()
        .filter(|g| g.user == user && g.resource == resource && g.access == access)
        // A runbook grant serves its run's steps only.
        .filter(|g| g.kind != GrantKind::Runbook)
        .filter_map(|g| check_grant(config, g, now_ms).ok())
        .max_by_key(|g| g.expires_ms);
    if let Some(g) = best {
        return Decision::Allow(g);
    }
    Decision::Deny(not_entitled(config, user, resource, access))
}

fn not_entitled(config: &Config, user: &str, resource: &str, access: Access) -> Denial {
    let has = roles_of(config, user).iter().find_map(|role| {
        role.standing
            .iter()
            .find(|e| e.resource.as_str() == resource)
            .map(|e| e.access)
    });
    Denial::NotEntitled {
        user: user.to_owned(),
        resource: resource.to_owned(),
        access,
        has,
        requestable: requestable_rules(config, user, resource, access)
            .iter()
            .map(|(_, r)| r.max)
            .max(),
        break_glass: break_glass_rules(config, user, resource, access)
            .iter()
            .map(|(_, r)| r.max)
            .max(),
    }
}

/// Whether a time-boxed grant holds at `now_ms` under the policy in force. On success returns the
/// grant with its effective end: `expires_ms`, capped at `created_ms` plus the rule's current
/// `max` (a policy that shortens `max` shortens live grants too).
pub fn check_grant(config: &Config, g: &GrantRecord, now_ms: i64) -> Result<Grant, Denial> {
    let ended = |end: GrantEnd| Denial::GrantEnded {
        grant_id: g.id.clone(),
        resource: g.resource.clone(),
        access: g.access,
        end,
    };
    if let Some(_at) = g.revoked_ms {
        return Err(ended(GrantEnd::Revoked {
            by: g.revoked_by.clone().unwrap_or_else(|| "someone".into()),
            reason: g.revoke_reason.clone().unwrap_or_default(),
        }));
    }
    let Some(user) = config.user(&g.user) else {
        return Err(ended(GrantEnd::NoLongerAllowed {
            why: format!("user \"{}\" was removed", g.user),
        }));
    };
    if !user.roles.iter().any(|r| r.as_str() == g.role) {
        return Err(ended(GrantEnd::NoLongerAllowed {
            why: format!("user \"{}\" no longer holds role \"{}\"", g.user, g.role),
        }));
    }
    if precheck(config, &g.user, &g.resource, g.access).is_err() {
        return Err(ended(GrantEnd::NoLongerAllowed {
            why: format!(
                "resource \"{}\" or its {} credential was removed",
                g.resource, g.access
            ),
        }));
    }
    let role = config.role(&g.role);
    let max = match g.kind {
        GrantKind::Requested => role.and_then(|role| {
            role.requestable
                .iter()
                .find(|r| r.resource.as_str() == g.resource && r.access == g.access)
                .map(|r| r.max)
        }),
        GrantKind::BreakGlass => role.and_then(|role| {
            role.break_glass
                .iter()
                .find(|r| r.resource.as_str() == g.resource && r.access == g.access)
                .map(|r| r.max)
        }),
        // Bounded by the run's timeout when it was created; the runbook's
        // roles were checked then, and the role is re-checked above.
        GrantKind::Runbook => Some(std::time::Duration::from_millis(
            (g.expires_ms - g.created_ms).max(0) as u64,
        )),
        GrantKind::Standing => None,
    };
    let Some(max) = max else {
        let rule = match g.kind {
            GrantKind::BreakGlass => "break_glass",
            _ => "requestable",
        };
        return Err(ended(GrantEnd::NoLongerAllowed {
            why: format!(
                "role \"{}\" has no {rule} rule for {} on \"{}\" any more",
                g.role, g.access, g.resource
            ),
        }));
    };
    let expires_ms = g.expires_ms.min(g.created_ms + max.as_millis() as i64);
    if now_ms >= expires_ms {
        return Err(ended(GrantEnd::Expired { at_ms: expires_ms }));
    }
    Ok(Grant {
        id: g.id.clone(),
        user: g.user.clone(),
        resource: g.resource.clone(),
        access: g.access,
        kind: g.kind,
        role: g.role.clone(),
        expires_ms: Some(expires_ms),
    })
}

/// Re-checks the grant behind a session or credential: a standing grant holds while a role of the
/// user still grants that access standing; a time-boxed one per [`check_grant`] on its `record`
/// (freshly loaded; `None` when the store no longer has it).
pub fn recheck(
    config: &Config,
    grant: &Grant,
    record: Option<&GrantRecord>,
    now_ms: i64,
) -> Result<Grant, Denial> {
    if grant.is_standing() {
        precheck(config, &grant.user, &grant.resource, grant.access)?;
        return standing_grant(config, &grant.user, &grant.resource, grant.access).ok_or_else(
            || Denial::GrantEnded {
                grant_id: grant.id.clone(),
                resource: grant.resource.clone(),
                access: grant.access,
                end: GrantEnd::NoLongerAllowed {
                    why: format!(
                        "no role of user \"{}\" grants standing {} access to \"{}\" any more",
                        grant.user, grant.access, grant.resource
                    ),
                },
            },
        );
    }
    match record {
        Some(r) => check_grant(config, r, now_ms),
        None => Err(Denial::GrantEnded {
            grant_id: grant.id.clone(),
            resource: grant.resource.clone(),
            access: grant.access,
            end: GrantEnd::NoLongerAllowed {
                why: "the grant is no longer on record".into(),
            },
        }),
    }
}

/// One line of what a user may reach and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entitlement {
    pub resource: String,
    pub access: Access,
    /// `standing`, `requestable` or `break_glass`.
    pub how: &'static str,
    pub role: String,
    /// For requestable and break-glass: the longest grant, in milliseconds.
    pub max_ms: Option<i64>,
    /// For requestable: approvals needed and the approver roles.
    pub approvals: Option<u32>,
    pub approvers: Vec<String>,
}

/// Everything `user` may reach by any rule of their roles, for listings; each (resource, access,
/// how) once, from the first role that has it.
pub fn entitlements(config: &Config, user: &str) -> Vec<Entitlement> {
    let mut out: Vec<Entitlement> = Vec::new();
    let mut push = |e: Entitlement| {
        if !out
            .iter()
            .any(|x| x.resource == e.resource && x.access == e.access && x.how == e.how)
        {
            out.push(e);
        }
    };
    for role in roles_of(config, user) {
        for e in &role.standing {
            push(Entitlement {
                resource: e.resource.to_string(),
                access: e.access,
                how: "standing",
                role: role.name.to_string(),
                max_ms: None,
                approvals: None,
                approvers: Vec::new(),
            });
        }
        for r in &role.requestable {
            push(Entitlement {
                resource: r.resource.to_string(),
                access: r.access,
                how: "requestable",
                role: role.name.to_string(),
                max_ms: Some(r.max.as_millis() as i64),
                approvals: Some(r.approvals),
                approvers: r.approvers.iter().map(|a| a.to_string()).collect(),
            });
        }
        for r in &role.break_glass {
            push(Entitlement {
                resource: r.resource.to_string(),
                access: r.access,
                how: "break_glass",
                role: role.name.to_string(),
                max_ms: Some(r.max.as_millis() as i64),
                approvals: None,
                approvers: Vec::new(),
            });
        }
    }
    out
}

/// Everything `user` may reach through standing grants, for listings.
pub fn standing_entitlements(config: &Config, user: &str) -> Vec<(String, Access, String)> {
    entitlements(config, user)
        .into_iter()
        .filter(|e| e.how == "standing")
        .map(|e| (e.resource, e.access, e.role))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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

[[role]]
name = "oncall"
standing = [{ resource = "orders", access = "read" }]

[[role]]
name = "dba"
standing = [{ resource = "orders", access = "write" }, { resource = "billing", access = "read" }]

[[user]]
name = "oncall1"
roles = ["oncall"]

[[user]]
name = "dba1"
roles = ["oncall", "dba"]

[[user]]
name = "nobody"
roles = []
"#;

    fn config() -> Config {
        Config::from_str(POLICY, Path::new("/etc/airlock/airlock.toml")).expect("policy parses")
    }

    #[test]
    fn decisions() {
        use Access::{Read, Write};
        let c = config();
        // (user, resource, access, expected grant id or denial text fragment)
        let table: &[(&str, &str, Access, Result<&str, &str>)] = &[
            ("oncall1", "orders", Read, Ok("standing:oncall:orders:read")),
            (
                "oncall1",
                "orders",
                Write,
                Err("standing access is read); connect with --access read"),
            ),
            (
                "oncall1",
                "billing",
                Read,
                Err("no read access to \"billing\"; ask the platform team"),
            ),
            ("dba1", "orders", Write, Ok("standing:dba:orders:write")),
            ("dba1", "orders", Read, Ok("standing:oncall:orders:read")),
            ("dba1", "billing", Read, Ok("standing:dba:billing:read")),
            (
                "dba1",
                "billing",
                Write,
                Err("no write credential configured"),
            ),
            ("nobody", "orders", Read, Err("no read access")),
            (
                "ghost",
                "orders",
                Read,
                Err("user \"ghost\" is not known to Airlock"),
            ),
            (
                "oncall1",
                "payments",
                Read,
                Err("known resources: orders, billing"),
            ),
        ];
        for (user, resource, access, want) in table {
            let got = decide(&c, user, resource, *access, 0, &[]);
            match (want, &got) {
                (Ok(id), Decision::Allow(g)) => {
                    assert_eq!(g.id, *id, "{user} {resource} {access}");
                    assert_eq!(g.expires_ms, None);
                    assert_eq!(
                        (g.user.as_str(), g.resource.as_str(), g.access),
                        (*user, *resource, *access)
                    );
                }
                (Err(fragment), Decision::Deny(d)) => {
                    let text = d.to_string();
                    assert!(
                        text.contains(fragment),
                        "{user} {resource} {access}: {text}"
                    );
                }
                _ => panic!("{user} {resource} {access}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn entitlements_listing() {
        let c = config();
        let got = standing_entitlements(&c, "dba1");
        let names: Vec<_> = got.iter().map(|(r, a, _)| format!("{r}:{a}")).collect();
        assert_eq!(names, ["orders:read", "orders:write", "billing:read"]);
        assert!(standing_entitlements(&c, "ghost").is_empty());
    }
}
