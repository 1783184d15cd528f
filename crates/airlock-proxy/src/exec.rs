//! Runs one reviewed statement upstream, for `airlock exec --run`: with the
//! resource's write credential, inside a transaction, exactly the approved
//! text, through the extended protocol so that it is one statement (PostgreSQL
//! refuses several commands in one Parse).

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use airlock_config::{Access, Resource};
use airlock_pgwire::messages::tag::backend as btag;
use airlock_pgwire::messages::{
    Bind, Describe, Execute, FrontendMessage, Parse, Query, TransactionStatus,
};
use airlock_pgwire::{BackendMessage, Frame};

use crate::backend::{self, UpstreamTlsConfigs};
use crate::io::read_frame;

/// Rows kept for the answer; the rest are counted, not returned.
pub const MAX_ROWS: usize = 1000;

/// What the statement did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatementResult {
    pub columns: Vec<String>,
    /// Text-format values; `None` is NULL. At most [`MAX_ROWS`].
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows returned in all (more than `rows.len()` when truncated).
    pub row_count: u64,
    /// PostgreSQL's command tag, e.g. `UPDATE 3`.
    pub command_tag: String,
    pub committed: bool,
    pub duration_ms: i64,
}

/// Why the statement did not run to a commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StatementError {
    /// SQLSTATE from PostgreSQL, or `08001` when the upstream could not be reached.
    pub sqlstate: String,
    pub message: String,
}

fn failed(sqlstate: &str, message: impl Into<String>) -> StatementError {
    StatementError {
        sqlstate: sqlstate.to_owned(),
        message: message.into(),
    }
}

/// Connects with the write credential and runs `sql` in `BEGIN … COMMIT`.
/// Any error rolls back. Statements that end the transaction themselves
/// (COMMIT, ROLLBACK) are refused after the fact by checking the status.
pub async fn run_statement(
    resource: &Resource,
    sql: &str,
    tls: &UpstreamTlsConfigs,
    connect_timeout: Duration,
    statement_timeout: Duration,
) -> Result<StatementResult, StatementError> {
    let started = Instant::now();
    let params = vec![("application_name".to_owned(), "airlock exec".to_owned())];
    let mut up = backend::connect(resource, Access::Write, &params, &[], tls, connect_timeout)
        .await
        .map_err(|e| failed("08001", e.to_user_facing(resource.name.as_str()).message))?;
    let mut buf = std::mem::take(&mut up.read_buf);
    let stream = &mut up.stream;
    let run = async {
        let mut out = BytesMut::new();
        FrontendMessage::Query(Query::new("BEGIN")).encode(&mut out);
        encode_one(&mut out, sql, &[]);
        stream.write_all(&out).await.map_err(io)?;
        stream.flush().await.map_err(io)?;

        // BEGIN's answer, then the statement's.
        let begin = read_until_ready(stream, &mut buf, None).await?;
        if let Some(e) = begin.error {
            return Err(e);
        }
        let mut result = StatementResult {
            columns: vec![],
            rows: vec![],
            row_count: 0,
            command_tag: String::new(),
            committed: false,
            duration_ms: 0,
        };
        let r = read_until_ready(stream, &mut buf, Some(&mut result)).await?;
        if let Some(e) = r.error {
            rollback(stream, &mut buf).await;
            return Err(e);
        }
        if r.status != TransactionStatus::InTransaction {
            rollback(stream, &mut buf).await;
            return Err(failed(
                "25000",
                "the statement ended the transaction itself; it was not committed by Airlock",
            ));
        }
        let mut out = BytesMut::new();
        FrontendMessage::Query(Query::new("COMMIT")).encode(&mut out);
        stream.write_all(&out).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let c = read_until_ready(stream, &mut buf, None).await?;
        if let Some(e) = c.error {
            return Err(e);
        }
        result.committed = true;
        Ok(result)
    };
    let mut result = tokio::time::timeout(statement_timeout, run)
        .await
        .map_err(|_| {
            failed(
                "57014",
                format!(
                    "the statement did not finish within {}; it was not committed",
                    airlock_config::format_duration(statement_timeout)
                ),
            )
        })??;
    let mut x = BytesMut::new();
    FrontendMessage::Terminate.encode(&mut x);
    let _ = up.stream.write_all(&x).await;
    result.duration_ms = started.elapsed().as_millis() as i64;
    Ok(result)
}

/// Runs one statement on an open connection through the extended protocol,
/// with `args` bound as text parameters of unspecified type (PostgreSQL
/// infers each from its use, as for a literal), and results in text. No
/// transaction is opened: the statement commits on its own, as in psql.
/// Keeps at most `max_rows` rows; the rest are counted. The runbook runner
/// uses it against the gateway's own listener, so the statement passes the
/// same gate, guardrails, masking and audit as anyone's.
pub async fn run_query(
    up: &mut backend::Upstream,
    sql: &str,
    args: &[String],
    max_rows: usize,
    timeout: Duration,
) -> Result<StatementResult, StatementError> {
    let started = Instant::now();
    let mut buf = std::mem::take(&mut up.read_buf);
    let stream = &mut up.stream;
    let run = async {
        let mut out = BytesMut::new();
        encode_one(&mut out, sql, args);
        stream.write_all(&out).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut result = StatementResult {
            columns: vec![],
            rows: vec![],
            row_count: 0,
            command_tag: String::new(),
            committed: false,
            duration_ms: 0,
        };
        let r = read_until_ready_keeping(stream, &mut buf, Some(&mut result), max_rows).await?;
        if let Some(e) = r.error {
            return Err(e);
        }
        result.committed = r.status == TransactionStatus::Idle;
        Ok(result)
    };
    let mut result = tokio::time::timeout(timeout, run).await.map_err(|_| {
        failed(
            "57014",
            format!(
                "the statement did not finish within {}",
                airlock_config::format_duration(timeout)
            ),
        )
    })??;
    up.read_buf = buf;
    result.duration_ms = started.elapsed().as_millis() as i64;
    Ok(result)
}

/// One statement through the unnamed statement and portal: Parse (parameter
/// types left to PostgreSQL), Bind with `args` as text, Describe, Execute all
/// rows, Sync. One statement only: PostgreSQL refuses several in one Parse.
fn encode_one(out: &mut BytesMut, sql: &str, args: &[String]) {
    FrontendMessage::Parse(Parse {
        name: Bytes::new(),
        query: Bytes::copy_from_slice(sql.as_bytes()),
        param_types: vec![],
    })
    .encode(out);
    FrontendMessage::Bind(Bind {
        portal: Bytes::new(),
        statement: Bytes::new(),
        param_formats: vec![],
        params: args
            .iter()
            .map(|a| Some(Bytes::copy_from_slice(a.as_bytes())))
            .collect(),
        result_formats: vec![],
    })
    .encode(out);
    FrontendMessage::Describe(Describe {
        kind: b'P',
        name: Bytes::new(),
    })
    .encode(out);
    FrontendMessage::Execute(Execute {
        portal: Bytes::new(),
        max_rows: 0,
    })
    .encode(out);
    FrontendMessage::Sync.encode(out);
}

fn io(e: std::io::Error) -> StatementError {
    failed("08006", format!("connection to the database failed: {e}"))
}

struct Ready {
    status: TransactionStatus,
    error: Option<StatementError>,
}

async fn rollback<S>(stream: &mut S, buf: &mut BytesMut)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    FrontendMessage::Query(Query::new("ROLLBACK")).encode(&mut out);
    if stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok() {
        let _ = read_until_ready(stream, buf, None).await;
    }
}

async fn read_until_ready<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    result: Option<&mut StatementResult>,
) -> Result<Ready, StatementError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    read_until_ready_keeping(stream, buf, result, MAX_ROWS).await
}

async fn read_until_ready_keeping<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    mut result: Option<&mut StatementResult>,
    max_rows: usize,
) -> Result<Ready, StatementError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut error = None;
    loop {
        let frame: Frame = read_frame(stream, buf, 64 * 1024 * 1024)
            .await
            .map_err(|e| failed("08006", format!("reading from the database failed: {e}")))?;
        match frame.tag {
            btag::ROW_DESCRIPTION => {
                if let Some(r) = result.as_deref_mut() {
                    r.columns = row_description(frame.body.clone());
                }
            }
            btag::DATA_ROW => {
                if let Some(r) = result.as_deref_mut() {
                    r.row_count += 1;
                    if r.rows.len() < max_rows {
                        r.rows.push(data_row(frame.body.clone()));
                    }
                }
            }
            _ => match BackendMessage::decode(&frame)
                .map_err(|e| failed("08P01", format!("the database sent a bad message: {e}")))?
            {
                BackendMessage::ErrorResponse(e) if error.is_none() => {
                    error = Some(failed(
                        e.code().unwrap_or("XX000"),
                        e.message().unwrap_or("error").to_owned(),
                    ));
                }
                BackendMessage::CommandComplete(c) => {
                    if let Some(r) = result.as_deref_mut() {
                        r.command_tag = c.tag;
                    }
                }
                BackendMessage::ReadyForQuery(r) => {
                    return Ok(Ready {
                        status: r.status,
                        error,
                    })
                }
                _ => {}
            },
        }
    }
}

fn row_description(mut b: Bytes) -> Vec<String> {
    let mut out = Vec::new();
    if b.remaining() < 2 {
        return out;
    }
    let n = b.get_i16();
    for _ in 0..n.max(0) {
        let Some(end) = b.iter().position(|&c| c == 0) else {
            break;
        };
        out.push(String::from_utf8_lossy(&b[..end]).into_owned());
        b.advance(end + 1);
        if b.remaining() < 18 {
            break;
        }
        b.advance(18);
    }
    out
}

fn data_row(mut b: Bytes) -> Vec<Option<String>> {
    let mut out = Vec::new();
    if b.remaining() < 2 {
        return out;
    }
    let n = b.get_i16();
    for _ in 0..n.max(0) {
        if b.remaining() < 4 {
            break;
        }
        let len = b.get_i32();
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = (len as usize).min(b.remaining());
        out.push(Some(String::from_utf8_lossy(&b[..len]).into_owned()));
        b.advance(len);
    }
    out
}
