//! OTLP/gRPC: the collector's `TraceService`, `LogsService` and
//! `MetricsService` on `listen_otlp_grpc`, gzip accepted.
//!
//! Refusals use the codes the OTLP spec gives clients to act on:
//! `UNAVAILABLE` (retryable) when the store is behind, `INVALID_ARGUMENT`
//! for bad data, `UNAUTHENTICATED` without a valid ingest token,
//! `RESOURCE_EXHAUSTED` over the size limit (tonic's own answer), and
//! `INTERNAL` when the store failed.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::receiver::{Receiver, Refusal};

/// The three services as an axum router, served over HTTP/2 by the caller
/// (with or without TLS).
pub fn router(receiver: Receiver) -> axum::Router {
    let max = receiver.max_request;
    let traces = TraceServiceServer::new(Grpc(receiver.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    let logs = LogsServiceServer::new(Grpc(receiver.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    let metrics = MetricsServiceServer::new(Grpc(receiver))
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    tonic::service::Routes::new(traces)
        .add_service(logs)
        .add_service(metrics)
        .into_axum_router()
}

struct Grpc(Receiver);

impl Grpc {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.0.authorize(header).map_err(|r| status(&r))
    }
}

fn status(refusal: &Refusal) -> Status {
    let m = refusal.message().to_owned();
    match refusal {
        Refusal::Unauthenticated(_) => Status::unauthenticated(m),
        Refusal::Malformed(_) | Refusal::Unsupported(_) => Status::invalid_argument(m),
        Refusal::TooLarge(_) => Status::resource_exhausted(m),
        Refusal::Busy(_) => Status::unavailable(m),
        Refusal::Failed(_) => Status::internal(m),
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.authorize(&request)?;
        let accepted = self
            .0
            .store(request.into_inner(), convert::traces)
            .await
            .map_err(|r| status(&r))?;
        Ok(Response::new(accepted.traces()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.authorize(&request)?;
        let accepted = self
            .0
            .store(request.into_inner(), convert::logs)
            .await
            .map_err(|r| status(&r))?;
        Ok(Response::new(accepted.logs()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.authorize(&request)?;
        let accepted = self
            .0
            .store(request.into_inner(), convert::metrics)
            .await
            .map_err(|r| status(&r))?;
        Ok(Response::new(accepted.metrics()))
    }
}
