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
