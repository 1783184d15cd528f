//! What the OTLP receivers share: ingest tokens, the conversion step, and
//! the answers (partial success, refusals) in OTLP's terms.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::convert::{Converted, Limits};
use crate::ingest::{Ingest, IngestError};

/// The ingest tokens, kept only as SHA-256 hashes.
#[derive(Clone, Default)]
pub struct IngestTokens {
    hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for IngestTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IngestTokens({} tokens)", self.hashes.len())
    }
}

impl IngestTokens {
    /// Reads the tokens from the environment variable `name`: one or more,
    /// separated by commas or white space. A missing or empty variable is an
    /// error: ingest was meant to be closed, so it must not start open.
    pub fn from_env(name: &str) -> Result<IngestTokens, String> {
        let value = std::env::var(name).map_err(|_| {
            format!("[telemetry] ingest_tokens_env names {name}, which is not set; set it to the ingest token(s), comma separated, or remove ingest_tokens_env to accept telemetry without a token")
        })?;
        let tokens = IngestTokens::from_list(&value);
        if tokens.hashes.is_empty() {
            return Err(format!(
                "[telemetry] ingest_tokens_env names {name}, which holds no token"
            ));
        }
        Ok(tokens)
    }

    pub fn from_list(list: &str) -> IngestTokens {
        IngestTokens {
            hashes: list
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into())
                .collect(),
        }
    }

    /// Whether `token` is one of them, in time independent of where it
    /// differs.
    pub fn accepts(&self, token: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.hashes
            .iter()
            .fold(0u8, |ok, h| ok | h.ct_eq(&hash).unwrap_u8())
            == 1
    }
}

/// Why a request was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No or a wrong ingest token.
    Unauthenticated(String),
    /// The body cannot be read as OTLP.
    Malformed(String),
    /// Over `max_request_size`.
    TooLarge(String),
    /// A content type or encoding not spoken here.
    Unsupported(String),
    /// The store is behind or stopping: retry.
    Busy(String),
    /// The store failed: nothing stored.
    Failed(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Unauthenticated(m)
            | Refusal::Malformed(m)
            | Refusal::TooLarge(m)
            | Refusal::Unsupported(m)
            | Refusal::Busy(m)
            | Refusal::Failed(m) => m,
        }
    }
}

impl From<IngestError> for Refusal {
    fn from(e: IngestError) -> Refusal {
        if e.retryable() {
            Refusal::Busy(e.to_string())
        } else {
            Refusal::Failed(e.to_string())
        }
    }
}

/// What both receivers need.
#[derive(Clone)]
pub struct Receiver {
    pub ingest: Ingest,
    /// `None`: no token needed.
    pub tokens: Option<Arc<IngestTokens>>,
    pub limits: Limits,
    /// Bytes, compressed or decompressed.
    pub max_request: usize,
}

/// The outcome of a stored request: how many records were rejected, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: u64,
    pub message: String,
}

impl Accepted {
    /// The OTLP answer to a trace export: partial success when some spans
    /// were rejected, empty otherwise.
    pub fn traces(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: self.rejected as i64,
                error_message: self.message,
            }),
        }
    }

    pub fn logs(self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: (self.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: self.rejected as i64,
                error_message: self.message,
            }),
        }
    }

    pub fn metrics(self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: (self.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: self.rejected as i64,
                error_message: self.message,
            }),
        }
    }
}

impl Receiver {
    /// Checks an `Authorization` header value.
    pub fn authorize(&self, header: Option<&str>) -> Result<(), Refusal> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let Some(header) = header else {
            return Err(Refusal::Unauthenticated(
                "this receiver needs an ingest token: send \"Authorization: Bearer <token>\" (the exporter's headers setting)".into(),
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("");
        if token.is_empty() || !tokens.accepts(token.trim()) {
            return Err(Refusal::Unauthenticated(
                "the ingest token is not valid here: check the exporter's Authorization header against [telemetry] ingest_tokens_env".into(),
            ));
        }
        Ok(())
    }

    /// Converts on a blocking thread (the runtime also serves the proxy),
    /// then stores and waits for the commit.
    pub async fn store<R: Send + 'static>(
        &self,
        request: R,
        convert: fn(R, &Limits) -> Converted,
    ) -> Result<Accepted, Refusal> {
        let limits = self.limits;
        let converted = tokio::task::spawn_blocking(move || convert(request, &limits))
            .await
            .map_err(|e| Refusal::Failed(format!("converting the request failed: {e}")))?;
        let Converted {
            batch,
            rejected,
            errors,
        } = converted;
        self.ingest.submit(batch, rejected).await?;
        Ok(Accepted {
            rejected,
            message: errors.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_accept_only_their_own() {
        let t = IngestTokens::from_list("alpha, beta\ngamma");
        assert!(t.accepts("alpha") && t.accepts("beta") && t.accepts("gamma"));
        assert!(!t.accepts("alph") && !t.accepts("") && !t.accepts("alpha,beta"));
        assert!(!IngestTokens::from_list(" , ").accepts(""));
        assert_eq!(format!("{t:?}"), "IngestTokens(3 tokens)");
    }
}
