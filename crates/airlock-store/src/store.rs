//! The [`Store`] trait: the control plane's persistence boundary.

use crate::error::StoreError;
use airlock_access::{AccessRequest, Approval, GrantRecord};

use crate::records::{ApiToken, ApproveOutcome, GrantFilter, RequestFilter, SessionCredential};

/// Control-plane persistence. Implementations must be safe to share as
/// `Arc<dyn Store>` across threads; every method is synchronous and may block
/// on IO, so async callers wrap calls in `spawn_blocking`.
///
/// The store stores and filters; it never decides. Whether a token or
/// credential is still valid at "now" is the caller's decision, made on the
/// gateway's clock.
pub trait Store: Send + Sync + 'static {
    // --- API tokens -------------------------------------------------------

    /// Stores a token. Fails with [`StoreError::AlreadyExists`] if the id or
    /// the hash is taken.
    fn insert_token(&self, t: &ApiToken) -> Result<(), StoreError>;

    /// The token with this SHA-256 hash, including revoked and expired ones
    /// (the caller tells the user which it is).
    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError>;

    /// Marks the token revoked at `now_ms` and, in the same transaction, every
    /// unrevoked session credential minted with it. Returns `false` if there
    /// is no such token or it was already revoked (the first revocation time
    /// is kept).
    fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// The ids of the session credentials minted with token `token_id`
    /// (revoked or not, until they are purged).
    fn credentials_of_token(&self, token_id: &str) -> Result<Vec<String>, StoreError>;

    /// All tokens, or those of one user; newest first.
    fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, StoreError>;

    // --- SCRAM salts --------------------------------------------------------

    /// The SCRAM salt shared by all of `user`'s session credentials. On first
    /// use `new_salt` (random bytes chosen by the caller) is stored; afterwards
    /// the stored salt is returned and `new_salt` ignored, even when two
    /// gateways race on the first use.
    fn user_salt(&self, user: &str, new_salt: &[u8]) -> Result<Vec<u8>, StoreError>;

    // --- Session credentials -------------------------------------------------

    /// Stores a credential. Fails with [`StoreError::AlreadyExists`] if the id
    /// is taken.
    fn insert_credential(&self, c: &SessionCredential) -> Result<(), StoreError>;

    /// Unrevoked credentials for (user, resource) with expires_ms > since_ms
    /// (callers pass now minus a grace window so they can tell "expired" from
    /// "wrong"), newest first, at most `limit`.
    fn credentials_for(
        &self,
        user: &str,
        resource: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<SessionCredential>, StoreError>;

    /// Marks the credential revoked at `now_ms`. Returns `false` if there is no
    /// such credential or it was already revoked.
    fn revoke_credential(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Deletes credentials that expired before `before_ms`; returns how many.
    fn purge_expired_credentials(&self, before_ms: i64) -> Result<usize, StoreError>;

    // --- Requests, approvals, grants ---------------------------------------------
    // The store keeps them; whether an action is allowed is decided by
    // `airlock-access` before these are called. Calls that change state check
    // the state they expect inside one transaction, so two approvers racing, or
    // an approval racing the expiry sweep, cannot both win.

    /// Stores a new request (with no approvals). Fails with
    /// [`StoreError::AlreadyExists`] if the id is taken.
    fn insert_request(&self, r: &AccessRequest) -> Result<(), StoreError>;

    /// One request with its approvals.
    fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError>;

    /// Requests matching `filter`, newest first, with their approvals.
    fn requests(&self, filter: &RequestFilter) -> Result<Vec<AccessRequest>, StoreError>;

    /// Records `approval` on request `id` if it is still pending at
    /// `approval.at_ms`. When the distinct approvals reach `required`, the
    /// request becomes approved and, for an access request, `grant` (built by
    /// the caller with `created_ms = approval.at_ms`) is stored in the same
    /// transaction and its id written on the request.
    fn approve_request(
        &self,
        id: &str,
        approval: &Approval,
        required: u32,
        grant: Option<&GrantRecord>,
    ) -> Result<ApproveOutcome, StoreError>;

    /// Denies request `id` if it is still pending at `now_ms`. Returns the
    /// state it was in when it was not pending.
    fn deny_request(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Result<(), airlock_access::RequestState>, StoreError>;

    /// Marks pending requests whose `expires_ms <= now_ms` expired and returns
    /// them (each once, for announcing).
    fn expire_requests(&self, now_ms: i64) -> Result<Vec<AccessRequest>, StoreError>;

    /// Marks an approved statement request executed, once. `false` if it was
    /// not in the approved state (already executed, or never approved).
    fn mark_executed(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Stores a grant (break-glass; requested grants come from
    /// [`approve_request`](Store::approve_request)).
    fn insert_grant(&self, g: &GrantRecord) -> Result<(), StoreError>;

    /// One grant by id.
    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError>;

    /// Grants matching `filter`, newest first.
    fn grants(&self, filter: &GrantFilter) -> Result<Vec<GrantRecord>, StoreError>;

    /// Revokes grant `id` at `now_ms` and, in the same transaction, every
    /// session credential minted under it. `false` if there is no such grant
    /// or it was already revoked.
    fn revoke_grant(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Unrevoked grants whose `expires_ms <= now_ms` and whose expiry was not
    /// announced yet; marks them announced and returns them (each once).
    fn take_expired_grants(&self, now_ms: i64) -> Result<Vec<GrantRecord>, StoreError>;
}
