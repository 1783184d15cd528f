//! API tokens: random bearer secrets of which only a SHA-256 hash is stored.
//!
//! A token is `alk_` followed by 43 base64url characters (32 random bytes).
//! The prefix lets secret scanners recognise a leaked token. Because tokens
//! are high-entropy, a fast hash is enough: there is nothing to brute-force.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use airlock_store::{ApiToken, Store, StoreError};

pub const TOKEN_PREFIX: &str = "alk_";

/// A token's secret text, shown once. Debug does not print it.
pub struct IssuedToken {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedToken {{ id: {}, secret: *** }}", self.id)
    }
}

/// Token issuance in the audit log. Tokens are issued offline on the
/// gateway host (`airlock token issue` writes the store), while the running
/// gateway is the audit log's only writer; so the gateway records every
/// token it has not recorded yet: all of them at start, new ones within a
/// second (the expiry sweep), and in any case before a token is first
/// accepted. A token whose issuance cannot be recorded is not accepted.
pub struct TokenLedger {
    recorded: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The `access` event name of a token's issuance.
pub const TOKEN_ISSUED: &str = "token.issued";

impl TokenLedger {
    /// `recorded`: the ids of tokens whose issuance the log already holds.
    pub fn new(recorded: std::collections::HashSet<String>) -> TokenLedger {
        TokenLedger {
            recorded: std::sync::Mutex::new(recorded),
        }
    }

    /// The token ids in `token.issued` records.
    pub fn recorded_in(
        entries: &[airlock_audit::read::Entry],
    ) -> std::collections::HashSet<String> {
        entries
            .iter()
            .filter_map(|e| match &e.event {
                airlock_audit::Event::Access { event, data, .. } if event == TOKEN_ISSUED => {
                    data["token"]["id"].as_str().map(str::to_owned)
                }
                _ => None,
            })
            .collect()
    }

    /// Records `t` unless it was. `Err` when the record could not be written.
    pub fn ensure(
        &self,
        t: &ApiToken,
        audit: &airlock_audit::AuditLog,
    ) -> Result<(), airlock_audit::AuditError> {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if recorded.contains(&t.id) {
            return Ok(());
        }
        audit.append(&[issued_event(t)])?;
        recorded.insert(t.id.clone());
        Ok(())
    }

    /// Records every token in the store not recorded yet; returns how many.
    pub fn record_new(
        &self,
        store: &dyn Store,
        audit: &airlock_audit::AuditLog,
    ) -> anyhow::Result<usize> {
        let mut n = 0;
        let mut tokens = store.list_tokens(None)?;
        tokens.sort_by_key(|t| t.created_ms);
        for t in &tokens {
            let new = !self
                .recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&t.id);
            if new {
                self.ensure(t, audit)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The record of a token's issuance: who it is for, its label and expiry;
/// never its secret or hash.
fn issued_event(t: &ApiToken) -> airlock_audit::Event {
    let label = t
        .label
        .as_deref()
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    let expiry = match t.expires_ms {
        Some(_) => ", expiring",
        None => ", not expiring",
    };
    airlock_audit::Event::Access {
        event: TOKEN_ISSUED.to_owned(),
        actor: "airlock token issue".to_owned(),
        text: format!(
            "API token {} was issued for {}{label}{expiry}",
            t.id, t.user
        ),
        data: serde_json::json!({ "token": {
            "id": t.id,
            "user": t.user,
            "label": t.label,
            "created_ms": t.created_ms,
            "expires_ms": t.expires_ms,
        }}),
    }
}

pub fn hash_token(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Creates a token for `user` and stores its hash.
pub fn issue(
    store: &dyn Store,
    user: &str,
    label: Option<&str>,
    now_ms: i64,
    expires_ms: Option<i64>,
) -> Result<IssuedToken, StoreError> {
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let id = airlock_store::new_id("tok");
    store.insert_token(&ApiToken {
        id: id.clone(),
        user: user.to_owned(),
        hash: hash_token(&secret),
        label: label.map(str::to_owned),
        created_ms: now_ms,
        expires_ms,
        revoked_ms: None,
    })?;
    Ok(IssuedToken { id, secret })
}
