//! The PostgreSQL side of the gateway: the frontend (client connections, TLS,
//! SCRAM authentication against session credentials), the backend (upstream
//! connections with injected credentials), the session relay between them and
//! the cancel-key map.
//!
//! Access decisions are asked of `airlock-access`; this crate only enforces them.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use airlock_access::Clock;
use airlock_config::Config;
use airlock_store::Store;

pub mod audit;
pub mod backend;
pub mod cancel;
pub mod cancel_request;
pub mod catalog;
pub mod completion;
pub mod enforcer;
pub mod error;
pub mod exec;
pub mod frontend;
pub mod gate;
pub mod io;
pub mod metrics;
pub mod parameters;
pub mod refusals;

pub mod relay;
pub mod results;
pub mod scanner;
pub mod server;
pub mod session;
pub mod startup;
pub mod stream;
pub mod tls;

pub use error::UserFacingError;

/// Everything a connection needs, shared by all of them.
pub struct ProxyContext {
    /// The policy in force; a reload publishes a new one.
    pub config: watch::Receiver<Arc<Config>>,
    pub store: Arc<dyn Store>,
    /// `None` only when no TLS material could be set up (then clients must be
    /// allowed plaintext).
    pub tls: Option<Arc<tls::GatewayTls>>,
    pub cancel: cancel::CancelMap,
    pub upstream_tls: backend::UpstreamTlsConfigs,
    /// The audit log: every statement is written to it before it is forwarded.
    pub audit: airlock_audit::AuditLog,
    pub metrics: Arc<metrics::ProxyMetrics>,
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the gateway stops: sessions get a FATAL and end.
    pub shutdown: CancellationToken,
    /// Live sessions and their grants, for the enforcer.
    pub sessions: Arc<enforcer::SessionRegistry>,
    /// Classifies every statement before it is forwarded.
    pub classifier: airlock_sql::Classifier,
    /// What the gateway read from each upstream's catalog.
    pub catalogs: Arc<catalog::Catalogs>,
    /// Refused logins not recorded yet, by source address.
    pub refusals: refusals::Refusals,
}
