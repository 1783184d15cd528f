//! Prometheus metrics of the PostgreSQL side of the gateway.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    pub resource: String,
    pub access: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub resource: String,
    pub rule: &'static str,
}

#[derive(Default)]
pub struct ProxyMetrics {
    /// Accepted TCP connections by how their handshake ended.
    pub connections: Family<OutcomeLabels, Counter>,
    pub sessions_active: Family<SessionLabels, Gauge>,
    pub sessions: Family<SessionLabels, Counter>,
    pub statements: Family<SessionLabels, Counter>,
    pub bytes_from_clients: Counter,
    pub bytes_to_clients: Counter,
    pub cancel_requests: Family<OutcomeLabels, Counter>,
    /// Statements the gate refused, by the rule that refused them.
    pub refused: Family<RefusalLabels, Counter>,
    /// Audit log appends made before forwarding what a client sent: at most
    /// one per client read.
    pub audit_writes: Counter,
}

impl ProxyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("airlock_postgres");
        r.register(
            "connections",
            "Client connections by handshake outcome",
            self.connections.clone(),
        );
        r.register(
            "sessions_active",
            "Proxied sessions open now",
            self.sessions_active.clone(),
        );
        r.register(
            "sessions",
            "Proxied sessions started",
            self.sessions.clone(),
        );
        r.register(
            "statements",
            "Query and Parse messages forwarded upstream",
            self.statements.clone(),
        );
        r.register(
            "client_received_bytes",
            "Bytes received from clients after login",
            self.bytes_from_clients.clone(),
        );
        r.register(
            "client_sent_bytes",
            "Bytes sent to clients after login",
            self.bytes_to_clients.clone(),
        );
        r.register(
            "cancel_requests",
            "CancelRequests by outcome",
            self.cancel_requests.clone(),
        );
        r.register(
            "statements_refused",
            "Statements refused by the gateway, by classification rule",
            self.refused.clone(),
        );
        r.register(
            "audit_writes",
            "Audit log writes made before forwarding client messages (one per client read that carried statements or Bind values)",
            self.audit_writes.clone(),
        );
    }
}
