//! Access decisions: who may reach which resource at which level, under which
//! grant, until when.
//!
//! This crate is a pure function of (policy, state, now, request) → decision
//! with its reasons. It does no IO and reads no clock: callers pass `now_ms`
//! (milliseconds since the Unix epoch, on the gateway's clock). In the gateway
//! core the only grants are the policy's standing grants; requests, approvals
//! and break-glass extend this module later.

use std::fmt;

pub mod clock;
pub use clock::{Clock, ManualClock, SystemClock};

use airlock_config::{Access, Config};

/// The grant that backs a session or a session credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Stable identifier; for a standing grant it names the rule:
    /// `standing:<role>:<resource>:<access>`.
    pub id: String,
    pub user: String,
    pub resource: String,
    pub access: Access,
    pub kind: GrantKind,
    /// The role whose rule grants it.
    pub role: String,
    /// When the grant ends; `None` for standing grants, which last as long as
    /// the policy says so.
    pub expires_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    Standing,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Standing => "standing",
        }
    }
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
    /// No rule of the user's roles grants this access.
    NotEntitled {
        user: String,
        resource: String,
        access: Access,
        /// What the user's roles do grant on this resource, if anything.
        has: Option<Access>,
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
            } => {
                write!(
                    f,
                    "user \"{user}\" has no {access} access to \"{resource}\""
                )?;
                match has {
                    Some(level) => write!(
                        f,
                        " (standing access is {level}); connect with --access {level}"
                    ),
                    None => write!(
                        f,
                        "; ask the platform team for a role that grants it in airlock.toml"
                    ),
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Grant),
    Deny(Denial),
}

/// Decides whether `user` may reach `resource` at `access` at time `now_ms`.
///
/// Default deny: access exists only where a rule of one of the user's roles
/// grants exactly that resource and level. Write access does not imply read:
/// each level maps to its own upstream credential.
pub fn decide(
    config: &Config,
    user: &str,
    resource: &str,
    access: Access,
    now_ms: i64,
) -> Decision {
    let _ = now_ms; // standing grants do not expire; time-boxed grants will use it
    let Some(u) = config.user(user) else {
        return Decision::Deny(Denial::UnknownUser {
            user: user.to_owned(),
        });
    };
    let Some(r) = config.resource(resource) else {
        return Decision::Deny(Denial::UnknownResource {
            resource: resource.to_owned(),
            known: config
                .resources
                .iter()
                .map(|r| r.name.to_string())
                .collect(),
        });
    };
    if r.credential(access).is_none() {
        return Decision::Deny(Denial::LevelNotConfigured {
            resource: resource.to_owned(),
            access,
        });
    }
    let mut has = None;
    for role_name in &u.roles {
        let Some(role) = config.role(role_name.as_str()) else {
            continue; // validation rejects unknown roles; never grant through one
        };
        for e in &role.standing {
            if e.resource.as_str() != resource {
                continue;
            }
            if e.access == access {
                return Decision::Allow(Grant {
                    id: format!("standing:{}:{}:{}", role.name, resource, access),
                    user: user.to_owned(),
                    resource: resource.to_owned(),
                    access,
                    kind: GrantKind::Standing,
                    role: role.name.to_string(),
                    expires_ms: None,
                });
            }
            has = Some(e.access);
        }
    }
    Decision::Deny(Denial::NotEntitled {
        user: user.to_owned(),
        resource: resource.to_owned(),
        access,
        has,
    })
}

/// Everything `user` may reach through standing grants, for listings.
pub fn standing_entitlements(config: &Config, user: &str) -> Vec<(String, Access, String)> {
    let mut out = Vec::new();
    if let Some(u) = config.user(user) {
        for role_name in &u.roles {
            if let Some(role) = config.role(role_name.as_str()) {
                for e in &role.standing {
                    let item = (e.resource.to_string(), e.access, role.name.to_string());
                    if !out.iter().any(|(r, a, _)| *r == item.0 && *a == item.1) {
                        out.push(item);
                    }
                }
            }
        }
    }
    out
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
            let got = decide(&c, user, resource, *access, 0);
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
