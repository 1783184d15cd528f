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

/// The `access` event name of a token's revocation.
pub const TOKEN_REVOKED: &str = "token.revoked";

/// A token as the API shows it: never its secret or hash.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub created_ms: i64,
    /// `None`: the token was issued with `--ttl never`.
    pub expires_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
    /// `active`, `expired` or `revoked`, on the gateway's clock.
    pub state: String,
    /// Whether this is the token the request was made with.
    #[serde(default)]
    pub current: bool,
}

impl TokenView {
    fn of(t: &ApiToken, now_ms: i64, caller: &crate::Caller) -> TokenView {
        let state = if t.revoked_ms.is_some() {
            "revoked"
        } else if t.expires_ms.is_some_and(|e| e <= now_ms) {
            "expired"
        } else {
            "active"
        };
        TokenView {
            id: t.id.clone(),
            user: t.user.clone(),
            label: t.label.clone(),
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            revoked_ms: t.revoked_ms,
            state: state.to_owned(),
            current: t.id == caller.token_id,
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ListQuery {
    /// Someone else's tokens: admins only.
    user: Option<String>,
    /// Everyone's tokens: admins only.
    #[serde(default)]
    all: bool,
}

async fn stored_tokens(
    s: &crate::ApiState,
    user: Option<String>,
) -> Result<Vec<ApiToken>, crate::ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || store.list_tokens(user.as_deref()))
        .await
        .map_err(|e| crate::ApiError::internal("listing tokens", e))?
        .map_err(|e| crate::ApiError::internal("listing tokens", e))
}

/// `GET /api/v1/tokens`: the caller's tokens, newest first; admins may ask
/// for another user's (`?user=`) or everyone's (`?all=true`).
pub(crate) async fn list(
    axum::extract::State(s): axum::extract::State<crate::ApiState>,
    caller: crate::Caller,
    q: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<TokenView>>, crate::ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| {
        crate::ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_query",
            e.body_text(),
        )
        .hint("parameters: user (a user name), all (true or false)")
    })?;
    let user = match (q.all, q.user) {
        (false, None) => Some(caller.user.clone()),
        (false, Some(u)) if u == caller.user => Some(u),
        (all, user) => {
            s.require(&caller, crate::Duty::Admin)
                .map_err(|e| e.hint("list your own tokens: leave out `user` and `all`"))?;
            if all {
                None
            } else {
                user
            }
        }
    };
    let now = s.clock.now_ms();
    let tokens = stored_tokens(&s, user).await?;
    Ok(axum::Json(
        tokens
            .iter()
            .map(|t| TokenView::of(t, now, &caller))
            .collect(),
    ))
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token of the caller's, or any
/// token for an admin. Someone else's token is answered like a missing one.
/// The session credentials minted with the token are revoked with it and
/// their live sessions end now.
pub(crate) async fn revoke(
    axum::extract::State(s): axum::extract::State<crate::ApiState>,
    caller: crate::Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<TokenView>, crate::ApiError> {
    s.require_audit()?;
    let admin = s.is_admin(&caller.user);
    let scope = (!admin).then(|| caller.user.clone());
    let token = stored_tokens(&s, scope)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| {
            crate::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("no token {id:?} of yours"),
            )
            .hint("list your tokens with `airlock token list`")
        })?;
    let now = s.clock.now_ms();
    if token.revoked_ms.is_some() {
        return Ok(axum::Json(TokenView::of(&token, now, &caller)));
    }
    // Issued offline and maybe never used: its issuance goes first.
    if let Err(e) = s.tokens.ensure(&token, &s.audit) {
        return Err(crate::ApiError::internal(
            "recording the token's issuance",
            e,
        ));
    }
    let store = s.store.clone();
    let token_id = token.id.clone();
    let (changed, credentials) = tokio::task::spawn_blocking(move || {
        let changed = store.revoke_token(&token_id, now)?;
        let credentials = store.credentials_of_token(&token_id)?;
        Ok::<_, StoreError>((changed, credentials))
    })
    .await
    .map_err(|e| crate::ApiError::internal("revoking a token", e))?
    .map_err(|e| crate::ApiError::internal("revoking a token", e))?;
    let ended = s.sessions.stop_credentials(
        &credentials,
        &format!(
            "API token {} was revoked by {}, and with it the session credentials it minted",
            token.id, caller.user
        ),
    );
    if changed {
        s.record(
            &caller.user,
            TOKEN_REVOKED,
            &format!(
                "{} revoked API token {} of {}; {} live session(s) ended",
                caller.user, token.id, token.user, ended
            ),
            &serde_json::json!({
                "token": { "id": token.id, "user": token.user, "label": token.label },
                "by": caller.user,
                "credentials": credentials,
                "sessions_ended": ended,
            }),
        );
    }
    let revoked = ApiToken {
        revoked_ms: Some(now),
        ..token
    };
    Ok(axum::Json(TokenView::of(&revoked, now, &caller)))
}
