//! What the gateway reads from an upstream's own catalog before a session
//! starts: whether the read credential can write and the functions it has
//! (for read sessions: shared by every read session of the resource and
//! re-read after [`FUNCTION_CATALOG_TTL`]), and the columns masking must
//! follow (per session).
//!
//! **The read credential must not be able to write** (the database layer of
//! read-only): it must not be or become a superuser, create roles, own
//! objects or the database, hold INSERT/UPDATE/DELETE/TRUNCATE (or UPDATE
//! and USAGE on a sequence) anywhere, directly or through a role it is a
//! member of, or be a member of the roles that write server files, run
//! server programs, signal backends or write all data. The gateway checks at
//! start ([`check_read_credential`]) and before read sessions, and refuses a
//! credential that can, unless the resource sets
//! `read_credential_can_write = "allow"` (loudly logged).
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

/// Why a read session cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ReadSetupError {
    /// The read credential can write: what the check found.
    #[error("the read credential can write: {}", .0.join("; "))]
    CanWrite(Vec<String>),
    #[error("{0}")]
    Query(String),
}

/// Function catalogs by resource, shared by every session of the gateway.
#[derive(Default)]
pub struct Catalogs {
    functions: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    at: Instant,
    /// Where and as whom it was read: a reload that changes any of it
    /// reads again.
    source: String,
    catalog: Arc<FunctionCatalog>,
}

/// Where and as whom a resource's read credential logs in (with whether it
/// may write): what, when it changes, must be checked again.
pub fn source(resource: &airlock_config::Resource) -> String {
    format!(
        "{}:{}/{}/{}/{}",
        resource.host,
        resource.port,
        resource.database,
        resource.read.as_ref().map_or("", |c| c.user.as_str()),
        resource.read_credential_can_write
    )
}

impl Catalogs {
    /// What a read session of `resource` needs, on its `upstream`
    /// connection: the read credential checked (unless the resource allows
    /// one that can write) and the function catalog; both cached while
    /// fresh.
    pub async fn read_session(
        &self,
        resource: &airlock_config::Resource,
        upstream: &mut Upstream,
    ) -> Result<Arc<FunctionCatalog>, ReadSetupError> {
        let name = resource.name.as_str();
        let from = source(resource);
        if let Some(c) = self.lock().get(name) {
            if c.at.elapsed() < FUNCTION_CATALOG_TTL && c.source == from {
                return Ok(c.catalog.clone());
            }
        }
        if !resource.read_credential_can_write {
            let problems = write_capabilities(upstream)
                .await
                .map_err(ReadSetupError::Query)?;
            if !problems.is_empty() {
                return Err(ReadSetupError::CanWrite(problems));
            }
        }
        let catalog = self
            .functions(upstream)
            .await
            .map_err(ReadSetupError::Query)?;
        self.lock().insert(
            name.to_owned(),
            Cached {
                at: Instant::now(),
                source: from,
                catalog: catalog.clone(),
            },
        );
        Ok(catalog)
    }

    async fn functions(&self, upstream: &mut Upstream) -> Result<Arc<FunctionCatalog>, String> {
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
        let mut user_code = Vec::new();
        query_each(upstream, airlock_sql::functions::USER_CODE_QUERY, |row| {
            let [Some(kind), Some(name)] = row else {
                return Err("unexpected row from the user-code query".into());
            };
            user_code.push((
                String::from_utf8_lossy(kind).into_owned(),
                String::from_utf8_lossy(name).into_owned(),
            ));
            Ok(())
        })
        .await?;
        Ok(Arc::new(
            FunctionCatalog::from_rows(rows).with_user_code(user_code),
        ))
    }

    /// Forgets every cached catalog (a policy reload may point a resource
    /// elsewhere).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.functions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the logged-in credential (the session's user) can do that writes,
/// one text per finding (at most a few of each kind); empty when nothing.
const WRITE_CAPABILITIES: &str = "\
WITH mine AS (SELECT r.oid, r.rolname, r.rolsuper, r.rolcreaterole FROM pg_catalog.pg_roles r \
              WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')), \
     user_rel AS (SELECT c.oid, c.relkind FROM pg_catalog.pg_class c \
              WHERE c.relnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace) \
                AND c.relkind IN ('r', 'p', 'v', 'f', 'm', 'S')) \
(SELECT 'is or can become the superuser ' || rolname FROM mine WHERE rolsuper LIMIT 3) \
UNION ALL (SELECT 'can create roles (as ' || rolname || ')' FROM mine WHERE rolcreaterole LIMIT 3) \
UNION ALL (SELECT 'is a member of ' || rolname FROM mine WHERE rolname IN \
           ('pg_write_server_files', 'pg_execute_server_program', 'pg_signal_backend', 'pg_write_all_data')) \
UNION ALL (SELECT 'owns the database' FROM pg_catalog.pg_database \
           WHERE datname = pg_catalog.current_database() AND datdba IN (SELECT oid FROM mine)) \
UNION ALL (SELECT 'owns schema ' || pg_catalog.quote_ident(nspname) FROM pg_catalog.pg_namespace \
           WHERE nspowner IN (SELECT oid FROM mine WHERE rolname <> 'pg_database_owner') \
             AND nspname !~ '^pg_' AND nspname <> 'information_schema' LIMIT 3) \
UNION ALL (SELECT 'owns ' || c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c \
           WHERE c.oid IN (SELECT oid FROM user_rel) AND c.relowner IN (SELECT oid FROM mine) LIMIT 3) \
UNION ALL (SELECT 'may write ' || u.oid::pg_catalog.regclass::text || ' (as ' || m.rolname || ')' \
           FROM user_rel u, mine m WHERE u.relkind <> 'S' AND \
             (pg_catalog.has_table_privilege(m.oid, u.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') \
              OR pg_catalog.has_any_column_privilege(m.oid, u.oid, 'INSERT, UPDATE')) LIMIT 3) \
UNION ALL (SELECT 'may advance sequence ' || u.oid::pg_catalog.regclass::text || ' (as ' || m.rolname || ')' \
           FROM user_rel u, mine m WHERE u.relkind = 'S' \
             AND pg_catalog.has_sequence_privilege(m.oid, u.oid, 'USAGE, UPDATE') LIMIT 3)";

/// Runs the write-capability check on `upstream` (logged in with the read
/// credential).
pub async fn write_capabilities(upstream: &mut Upstream) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    query_each(upstream, WRITE_CAPABILITIES, |[what]| {
        found.push(String::from_utf8_lossy(what.unwrap_or(b"?")).into_owned());
        Ok(())
    })
    .await?;
    Ok(found)
}

/// Logs in to `resource` with its read credential and checks it
/// ([`write_capabilities`]). `Ok(problems)`: empty when it cannot write.
pub async fn check_read_credential(
    resource: &airlock_config::Resource,
    tls: &crate::backend::UpstreamTlsConfigs,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let mut upstream = crate::backend::connect(
        resource,
        airlock_config::Access::Read,
        &[],
        &[],
        tls,
        timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    let found = tokio::time::timeout(timeout, write_capabilities(&mut upstream))
        .await
        .map_err(|_| format!("the check did not finish within {timeout:?}"))??;
    Ok(found)
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
