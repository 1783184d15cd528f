//! Minting short-lived session credentials for `airlock connect`.
//!
//! A credential is a random secret, single-purpose (one user, one resource,
//! one access level), valid for at most the gateway's `credential_ttl` (8 h at
//! most) and never beyond the grant that backs it. Only its SCRAM verifier is
//! stored; the secret is returned once, in this response.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use airlock_access::{decide, Decision, Denial};
use airlock_config::{format_duration, parse_duration, Access};
use airlock_pgwire::scram::{self, Verifier};
use airlock_store::SessionCredential;

use crate::{ApiError, ApiState, Caller};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    pub resource: String,
    #[serde(default = "default_access")]
    pub access: Access,
    /// Requested lifetime, e.g. "30m"; capped by the gateway and the grant.
    pub ttl: Option<String>,
}

fn default_access() -> Access {
    Access::Read
}

/// The answer to a mint request; also what the CLI deserializes.
#[derive(Clone, Serialize, Deserialize)] // no Debug: it holds the password
pub struct MintedCredential {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub access: Access,
    pub grant_id: String,
    pub expires_at_ms: i64,
    /// The secret to use as the PostgreSQL password. Shown once.
    pub password: String,
    pub host: String,
    pub port: u16,
    /// The database name to connect to: the resource name.
    pub database: String,
    pub sslmode: String,
    /// The generated CA to verify the gateway with, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

pub async fn mint(
    State(s): State<ApiState>,
    caller: Caller,
    body: Result<Json<MintRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<MintedCredential>), ApiError> {
    s.require_audit()?;
    let Json(req) = body.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()).hint(
            "send JSON like {\"resource\": \"orders\", \"access\": \"read\", \"ttl\": \"1h\"}",
        )
    })?;
    let config = s.config.borrow().clone();
    let now = s.clock.now_ms();
    // The right grant: standing, or the live time-boxed grant lasting longest.
    let grants =
        crate::access::live_grants(&s.store, &caller.user, Some(&req.resource), now).await?;
    let grant = match decide(
        &config,
        &caller.user,
        &req.resource,
        req.access,
        now,
        &grants,
    ) {
        Decision::Allow(g) => g,
        Decision::Deny(d) => {
            let status = match d {
                Denial::UnknownResource { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::FORBIDDEN,
            };
            return Err(ApiError::new(status, "access_denied", d.to_string()));
        }
    };
    let ceiling = config.gateway.credential_ttl;
    let ttl = match &req.ttl {
        None => ceiling,
        Some(t) => {
            let d = parse_duration(t).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_ttl",
                    format!("ttl {t:?}: {e}"),
                )
                .hint("use a duration like 30m, 1h or 8h")
            })?;
            if d > ceiling {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ttl_too_long",
                    format!(
                        "a session credential lives at most {} on this gateway; {t} was asked",
                        format_duration(ceiling)
                    ),
                )
                .hint(format!(
                    "ask for --ttl {} or less",
                    format_duration(ceiling)
                )));
            }
            d
        }
    };
    let (credential, password) = issue(
        &s,
        &caller.user,
        &req.resource,
        req.access,
        &grant,
        ttl,
        Some(&caller.token_id),
    )
    .await?;
    let expires_ms = credential.expires_ms;
    let (host, port) = s.postgres_endpoint.clone();
    Ok((
        StatusCode::CREATED,
        Json(MintedCredential {
            id: credential.id,
            user: caller.user,
            resource: req.resource.clone(),
            access: req.access,
            grant_id: grant.id,
            expires_at_ms: expires_ms,
            password,
            host,
            port,
            database: req.resource,
            sslmode: "verify-full".to_owned(),
            ca_pem: s.ca_pem.as_deref().map(str::to_owned),
        }),
    ))
}

/// Mints a credential for `user` on (`resource`, `access`) backed by `grant`,
/// living `ttl` at most and never beyond the grant; stores its verifier and
/// records `credential.issued`. Returns the record and the secret (shown
/// once). Shared by `POST /api/v1/credentials` and the runbook runner.
/// `token`: the API token the caller proved, so revoking it revokes the
/// credential (and ends its sessions).
pub(crate) async fn issue(
    s: &ApiState,
    user: &str,
    resource: &str,
    access: Access,
    grant: &airlock_access::Grant,
    ttl: std::time::Duration,
    token: Option<&str>,
) -> Result<(SessionCredential, String), ApiError> {
    let now = s.clock.now_ms();
    let mut expires_ms = now + ttl.as_millis() as i64;
    if let Some(grant_end) = grant.expires_ms {
        expires_ms = expires_ms.min(grant_end);
    }

    let password = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let store = s.store.clone();
    let salt_user = user.to_owned();
    let record_password = password.clone();
    let credential = SessionCredential {
        id: airlock_store::new_id("cred"),
        user: user.to_owned(),
        resource: resource.to_owned(),
        access: access.as_str().to_owned(),
        grant_id: grant.id.clone(),
        token_id: token.map(str::to_owned),
        verifier: String::new(),
        created_ms: now,
        expires_ms,
        revoked_ms: None,
    };
    let stored = credential.clone();
    tokio::task::spawn_blocking(move || {
        // All of a user's credentials share one salt so the gateway can send
        // the SCRAM challenge before it knows which one the client holds.
        let salt = store.user_salt(&salt_user, &scram::random_salt())?;
        let verifier =
            Verifier::generate(&record_password, &salt, scram::DEFAULT_ITERATIONS).to_pg_string();
        store.insert_credential(&SessionCredential { verifier, ..stored })
    })
    .await
    .map_err(|e| ApiError::internal("minting a credential", e))?
    .map_err(|e| ApiError::internal("minting a credential", e))?;
    tracing::info!(
        user = %user, resource = %resource, access = %access,
        credential = %credential.id, grant = %grant.id, "session credential minted"
    );
    s.record(
        user,
        "credential.issued",
        &format!(
            "{} got session credential {} for {} access to {} (grant {}), until {}",
            user,
            credential.id,
            access,
            resource,
            grant.id,
            airlock_access::format_ms(expires_ms)
        ),
        &serde_json::json!({
            "credential": credential.id, "user": user, "resource": resource,
            "access": access.as_str(), "grant": grant.id, "expires_ms": expires_ms,
        }),
    );
    Ok((credential, password))
}
