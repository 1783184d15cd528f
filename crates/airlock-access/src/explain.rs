//! `airlock policy explain`: the decision for (user, resource, access) with the chain of reasons
//! behind it, and what would be needed otherwise.

use serde::Serialize;

use airlock_config::{format_duration, Access, Config};

use crate::requests::approvers_for;
use crate::state::GrantRecord;
use crate::{check_grant, decide, format_ms, roles_of, Decision, Grant};

/// The answer in one word; also the vocabulary of `airlock policy test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed now (standing, or a live grant).
    Allow,
    /// Not allowed now; a request can be filed and approved.
    Requestable,
    /// Not allowed now; no request rule, but break-glass is possible.
    BreakGlass,
    /// Not allowed, and no rule offers a way.
    Deny,
}

impl Outcome {
    /// The outcome's word: `allow`, `requestable`, `break_glass` or `deny`. The same word as in
    /// JSON, in `airlock policy explain`'s first line and in the `outcome` of a policy test file.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Requestable => "requestable",
            Outcome::BreakGlass => "break_glass",
            Outcome::Deny => "deny",
        }
    }

    /// The outcome named by `s`, exactly as [`Outcome::as_str`] spells it (lower case, no
    /// surrounding spaces); `None` for any other text, so a caller can list the four words.
    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Allow,
            Outcome::Requestable,
            Outcome::BreakGlass,
            Outcome::Deny,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub user: String,
    pub resource: String,
    pub access: Access,
    pub outcome: Outcome,
    /// The grant that allows it, when allowed.
    pub grant_id: Option<String>,
    pub expires_ms: Option<i64>,
    /// Whether break-glass is also possible (whatever the outcome).
    pub break_glass: bool,
    /// The reasons, in order: who the user is, what each role says, what decides.
    pub reasons: Vec<String>,
    /// What to do next, when not allowed.
    pub next: Option<String>,
}

/// Explains the decision at `now_ms` given the user's time-boxed `grants`.
pub fn explain(
    config: &Config,
    user: &str,
    resource: &str,
    access: Access,
    now_ms: i64,
    grants: &[GrantRecord],
) -> Explanation {
    let mut reasons = Vec::new();
    let decision = decide(config, user, resource, access, now_ms, grants);
    let mut out = Explanation {
        user: user.to_owned(),
        resource: resource.to_owned(),
        access,
        outcome: Outcome::Deny,
        grant_id: None,
        expires_ms: None,
        break_glass: false,
        reasons: Vec::new(),
        next: None,
    };
    let Some(u) = config.user(user) else {
        if let Decision::Deny(d) = decision {
            out.reasons.push(d.to_string());
        }
        out.next = Some(format!(
            "check the name, or add a [[user]] entry for \"{user}\" to {}",
            config.path.display()
        ));
        return out;
    };
    if u.roles.is_empty() {
        reasons.push(format!("user \"{user}\" holds no roles"));
    } else {
        reasons.push(format!(
            "user \"{user}\" holds role(s) {}",
            u.roles
                .iter()
                .map(|r| format!("\"{r}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut requestable = false;
    for role in roles_of(config, user) {
        let mut said = false;
        for e in role
            .standing
            .iter()
            .filter(|e| e.resource.as_str() == resource)
        {
            said = true;
            let verdict = if e.access == access {
                "grants this"
            } else {
                "not this level"
            };
            reasons.push(format!(
                "role \"{}\": standing {} on \"{resource}\" ({verdict})",
                role.name, e.access
            ));
        }
        for r in role
            .requestable
            .iter()
            .filter(|r| r.resource.as_str() == resource && r.access == access)
        {
            said = true;
            requestable = true;
            let roles: Vec<String> = r.approvers.iter().map(|a| a.to_string()).collect();
            let people = approvers_for(config, &roles, user);
            reasons.push(format!(
                "role \"{}\": requestable {access} on \"{resource}\" for up to {}, with {} approval(s) from role {} (approvers: {})",
                role.name,
                format_duration(r.max),
                r.approvals,
                roles.join(" or "),
                if people.is_empty() { "none".to_owned() } else { people.join(", ") }
            ));
        }
        for r in role
            .break_glass
            .iter()
            .filter(|r| r.resource.as_str() == resource && r.access == access)
        {
            said = true;
            out.break_glass = true;
            reasons.push(format!(
                "role \"{}\": break-glass {access} on \"{resource}\" for up to {}",
                role.name,
                format_duration(r.max)
            ));
        }
        if !said {
            reasons.push(format!(
                "role \"{}\": no rule for \"{resource}\"",
                role.name
            ));
        }
    }
    for g in grants
        .iter()
        .filter(|g| g.user == user && g.resource == resource && g.access == access)
    {
        match check_grant(config, g, now_ms) {
            Ok(live) => reasons.push(format!(
                "grant {} ({}) is live until {}",
                g.id,
                g.kind,
                format_ms(live.expires_ms.unwrap_or(g.expires_ms))
            )),
            Err(d) => reasons.push(d.to_string()),
        }
    }
    match decision {
        Decision::Allow(Grant { id, expires_ms, .. }) => {
            reasons.push(format!("decision: allow, by {id}"));
            out.outcome = crate::Outcome::Allow;
            out.grant_id = Some(id);
            out.expires_ms = expires_ms;
        }
        Decision::Deny(d) => {
            reasons.push(format!("decision: deny ({d})"));
            out.outcome = if requestable {
                Outcome::Requestable
            } else if out.break_glass {
                Outcome::BreakGlass
            } else {
                Outcome::Deny
            };
            out.next = match out.outcome {
                Outcome::Requestable => Some(format!(
                    "airlock request {resource} --access {access} --reason \"...\""
                )),
                Outcome::BreakGlass => Some(format!(
                    "in an emergency only: airlock break-glass {resource} --access {access} --reason \"...\""
                )),
                _ if config.resource(resource).is_none() => {
                    Some(unknown_resource_next(config, resource))
                }
                _ => Some(
                    "ask the platform team for a role with a rule for it in airlock.toml".into(),
                ),
            };
        }
    }
    out.reasons = reasons;
    out
}

/// What to do about a resource the policy does not have: it may be a typo of a known one, or a
/// resource still to be added.
fn unknown_resource_next(config: &Config, resource: &str) -> String {
    let policy = config.path.display();
    let known: Vec<String> = config
        .resources
        .iter()
        .map(|r| format!("\"{}\"", r.name))
        .collect();
    let known = if known.is_empty() {
        format!("{policy} has no resources")
    } else {
        format!("{policy} has {}", known.join(", "))
    };
    format!(
        "resource \"{resource}\" does not exist: check the name ({known}), or add a [[resource]] entry for \"{resource}\" to {policy}"
    )
}
