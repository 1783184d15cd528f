//! What the gateway reads from an upstream's own catalog before a session
//! starts: the functions it has (for the read allowlist, shared by every
//! read session of the resource and re-read after [`FUNCTION_CATALOG_TTL`]),
//! and the columns masking must follow (per session).
//!
//! The queries run on the session's own upstream connection, after login
//! and before the client is given the connection, as the simple protocol.
//! If one fails the session is refused: without the catalog the gateway
//! could not decide what it must decide (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use airlock_pgwire::messages::tag::backend as btag;
use airlock_sql::FunctionCatalog;

use crate::backend::Upstream;

/// How long a resource's function catalog is reused. A function created
/// since is unknown to read sessions (refused, `unknown_function`) until
/// the next read after this.
pub const FUNCTION_CATALOG_TTL: Duration = Duration::from_secs(60);

/// Rows kept from one catalog query, at most: a bound on what one resource
/// costs the gateway.
const MAX_ROWS: usize = 1_000_000;

/// Function catalogs by resource, shared by every session of the gateway.
#[derive(Default)]
pub struct Catalogs {
    functions: Mutex<HashMap<String, (Instant, Arc<FunctionCatalog>)>>,
}

impl Catalogs {
    /// The function catalog of `resource`: the cached one while fresh, else
    /// read now on `upstream`.
    pub async fn functions(
        &self,
        resource: &str,
        upstream: &mut Upstream,
    ) -> Result<Arc<FunctionCatalog>, String> {
        if let Some((at, c)) = self.lock().get(resource) {
            if at.elapsed() < FUNCTION_CATALOG_TTL {
                return Ok(c.clone());
            }
        }
        let mut rows = Vec::new();
        query_each(upstream, airlock_sql::functions::CATALOG_QUERY, |row| {
            let [Some(schema), Some(name), Some(builtin)] = row else {
                return Err("unexpected row from pg_proc".into());
            };
            rows.push((
                String::from_utf8_lossy(schema).into_owned(),
                String::from_utf8_lossy(name).into_owned(),
                builtin == b"t",
            ));
            Ok(())
        })
        .await?;
        let catalog = Arc::new(FunctionCatalog::from_rows(rows));
        self.lock()
            .insert(resource.to_owned(), (Instant::now(), catalog.clone()));
        Ok(catalog)
    }

    /// Forgets every cached catalog (a policy reload may point a resource
    /// elsewhere).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<FunctionCatalog>)>> {
        self.functions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `sql` (one statement, the simple protocol) on `upstream` and hands
/// each row's values to `row`. An ErrorResponse, a malformed row, more than
/// [`MAX_ROWS`] rows or an error from `row` fails the whole query; the
/// connection is left at ReadyForQuery either way (or broken).
pub async fn query_each<const N: usize>(
    upstream: &mut Upstream,
    sql: &str,
    mut row: impl FnMut([Option<&[u8]>; N]) -> Result<(), String>,
) -> Result<(), String> {
    let mut out = BytesMut::new();
    airlock_pgwire::messages::FrontendMessage::Query(airlock_pgwire::messages::Query::new(sql))
        .encode(&mut out);
    {
        use tokio::io::AsyncWriteExt;
        upstream
            .stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        upstream.stream.flush().await.map_err(|e| e.to_string())?;
    }
    let mut failure: Option<String> = None;
    let mut rows = 0usize;
    loop {
        let frame = crate::io::read_frame(&mut upstream.stream, &mut upstream.read_buf, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        match frame.tag {
            btag::DATA_ROW if failure.is_none() => {
                rows += 1;
                if rows > MAX_ROWS {
                    failure = Some(format!(
                        "the catalog query returned more than {MAX_ROWS} rows"
                    ));
                    continue;
                }
                let (_, values) = airlock_pgwire::messages::data_row_values(&frame.body)
                    .map_err(|e| e.to_string())?;
                let mut fields = [None; N];
                for (i, v) in values.enumerate() {
                    let v = v.map_err(|e| e.to_string())?;
                    match fields.get_mut(i) {
                        Some(f) => *f = v,
                        None => {
                            failure = Some("unexpected row from the catalog query".into());
                            break;
                        }
                    }
                }
                if failure.is_none() {
                    if let Err(e) = row(fields) {
                        failure = Some(e);
                    }
                }
            }
            btag::ERROR_RESPONSE => {
                let e = airlock_pgwire::messages::ErrorResponse::decode(frame.body.clone())
                    .map_err(|e| e.to_string())?;
                failure = Some(e.to_string());
            }
            btag::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
