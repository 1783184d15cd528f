//! A throwaway local PostgreSQL cluster for `airlock quickstart` and the
//! integration tests: `initdb` into a temporary directory, a free port on
//! 127.0.0.1, password authentication (SCRAM by default), and the `orders`
//! sample database with a read-only and a read-write role.
//!
//! `initdb` and `postgres` refuse to run as root. This machine (and CI) runs
//! everything as root, so when the effective uid is 0 the server binaries run
//! as the `postgres` system user and every directory they write is chowned to
//! it. The cluster is stopped when [`PgCluster`] is dropped, including while a
//! test panics, so a test run leaves nothing running.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::Rng as _;

/// The address the server listens on; IPv4 loopback only, so nothing outside
/// the machine can reach a cluster whose superuser password sits in test code.
const HOST: &str = "127.0.0.1";
/// The superuser that `initdb -U` creates.
const SUPERUSER: &str = "postgres";
/// How many lines of the server log go into a start error.
const LOG_TAIL_LINES: usize = 40;
/// Where Debian and Ubuntu install versioned server binaries.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// How often a start is retried when the chosen free port was taken by
/// someone else between [`free_port`] and the server's bind.
const PORT_RETRIES: usize = 3;

/// Everything that can go wrong while finding, starting, using or stopping a
/// cluster. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH nor under \
         {DEBIAN_PG_ROOT}/*/bin: install PostgreSQL's server package (apt-get install postgresql)"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but there is no `postgres` system user to run the server as \
         (initdb and postgres refuse to run as root): install PostgreSQL's server package \
         (apt-get install postgresql), which creates it, or run as a non-root user"
    )]
    NoServerUser,
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("PostgreSQL did not start on port {port}; last lines of {}:\n{log_tail}", log.display())]
    StartFailed {
        port: u16,
        log: PathBuf,
        log_tail: String,
    },
    #[error("could not find a free TCP port on {HOST}: {0}")]
    NoFreePort(#[source] io::Error),
    #[error("psql as {user} on database {database} failed ({status}): {stderr}")]
    Psql {
        user: String,
        database: String,
        status: String,
        stderr: String,
    },
    #[error("{what} contains a NUL byte, which PostgreSQL cannot store")]
    NulByte { what: &'static str },
}

/// Where the server binaries live and which major version they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
    /// As printed by `initdb --version`, e.g. `15.8`.
    pub version: String,
}

impl PgBinaries {
    fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Finds `initdb`, `pg_ctl` and `postgres`: first on `PATH` (following
/// symlinks, so `/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb`
/// yields the real directory, which also holds `psql`), else the highest
/// version under `/usr/lib/postgresql/*/bin`.
pub fn find_binaries() -> Result<PgBinaries, ClusterError> {
    let bin_dir = find_on_path()
        .or_else(find_in_debian_root)
        .ok_or(ClusterError::BinariesNotFound)?;
    let version = binary_version(&bin_dir.join("initdb"))?;
    Ok(PgBinaries { bin_dir, version })
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

fn find_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let initdb = dir.join("initdb");
        if !initdb.is_file() {
            return None;
        }
        // Prefer the directory the symlink points into: it is the complete
        // installation (psql, pg_ctl, postgres side by side).
        let real_dir = fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        match real_dir {
            Some(real) if has_server_binaries(&real) => Some(real),
            _ if has_server_binaries(&dir) => Some(dir),
            _ => None,
        }
    })
}

fn find_in_debian_root() -> Option<PathBuf> {
    let entries = fs::read_dir(DEBIAN_PG_ROOT).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = parse_version(e.file_name().to_str()?)?;
            let bin = e.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; anything else is not a version dir.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

fn binary_version(initdb: &Path) -> Result<String, ClusterError> {
    let out = run(Command::new(initdb).arg("--version"))?;
    // "initdb (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" → "15.8"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or(text.trim())
        .to_string();
    Ok(version)
}

/// The authentication method written to `pg_hba.conf` for every line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HbaMode {
    /// `scram-sha-256`, passwords stored as SCRAM verifiers.
    #[default]
    Scram,
    /// `md5`, passwords stored as MD5 hashes (to test upstreams that still
    /// use it).
    Md5,
    /// `trust`: no password at all. Only for tests that need it.
    Trust,
}

impl HbaMode {
    fn method(self) -> &'static str {
        match self {
            HbaMode::Scram => "scram-sha-256",
            HbaMode::Md5 => "md5",
            HbaMode::Trust => "trust",
        }
    }

    fn password_encryption(self) -> &'static str {
        match self {
            HbaMode::Md5 => "md5",
            HbaMode::Scram | HbaMode::Trust => "scram-sha-256",
        }
    }
}

/// How to start a cluster. `Default` picks a random superuser password, a
/// free port, a temporary data dir and SCRAM.
#[derive(Clone)]
pub struct ClusterOptions {
    pub superuser_password: String,
    /// `None`: a free port chosen with [`free_port`].
    pub port: Option<u16>,
    /// `None`: a new temporary directory removed on drop. `Some`: kept after
    /// stop; an existing cluster in it (it has `PG_VERSION`) is reused, and
    /// then `superuser_password` must be the one it was created with. When
    /// running as root, the `postgres` user must be able to traverse its
    /// parent directories.
    pub data_dir: Option<PathBuf>,
    pub hba: HbaMode,
    /// PEM certificate and private key to serve TLS with (`ssl = on`). They
    /// are copied into the data dir so the server user owns the key, as
    /// PostgreSQL insists.
    pub ssl_cert_and_key: Option<(PathBuf, PathBuf)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        let superuser_password = rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        ClusterOptions {
            superuser_password,
            port: None,
            data_dir: None,
            hba: HbaMode::default(),
            ssl_cert_and_key: None,
        }
    }
}

impl fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("superuser_password", &"<redacted>")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("hba", &self.hba)
            .field("ssl_cert_and_key", &self.ssl_cert_and_key)
            .finish()
    }
}

/// The uid/gid the server binaries run as when we are root.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

/// A running PostgreSQL server. Dropping it stops the server and removes a
/// temporary data dir.
pub struct PgCluster {
    bins: PgBinaries,
    port: u16,
    password: String,
    hba: HbaMode,
    data_dir: PathBuf,
    log_file: PathBuf,
    /// Holds the Unix socket (a short path: socket paths are limited to 107
    /// bytes) and, when no data dir was given, the data dir. Removed on drop,
    /// after the server has stopped (fields drop after `Drop::drop` runs).
    run_dir: tempfile::TempDir,
    server_user: Option<ServerUser>,
    postmaster_pid: Option<u32>,
    running: bool,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("version", &self.bins.version)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("hba", &self.hba)
            .field("postmaster_pid", &self.postmaster_pid)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl PgCluster {
    /// Creates (or reuses) the data dir, configures it and starts the server;
    /// returns once it accepts connections. On failure the error carries the
    /// tail of the server log, and nothing is left running.
    pub fn start(opts: ClusterOptions) -> Result<PgCluster, ClusterError> {
        if opts.superuser_password.contains('\0') {
            return Err(ClusterError::NulByte {
                what: "the superuser password",
            });
        }
        let bins = find_binaries()?;
        let server_user = server_user()?;

        let run_dir = tempfile::Builder::new()
            .prefix("airlock-pg-")
            .tempdir()
            .map_err(|e| {
                io_err(
                    "could not create a temporary directory in",
                    std::env::temp_dir(),
                    e,
                )
            })?;
        prepare_dir(run_dir.path(), server_user)?;

        let data_dir = match &opts.data_dir {
            Some(dir) => dir.clone(),
            None => run_dir.path().join("data"),
        };
        let port = match opts.port {
            Some(port) => port,
            None => free_port()?,
        };

        let mut cluster = PgCluster {
            log_file: data_dir.join("server.log"),
            bins,
            port,
            password: opts.superuser_password.clone(),
            hba: opts.hba,
            data_dir,
            run_dir,
            server_user,
            postmaster_pid: None,
            running: false,
        };

        if !cluster.data_dir.join("PG_VERSION").is_file() {
            cluster.initdb()?;
        }
        if let Some((cert, key)) = &opts.ssl_cert_and_key {
            cluster.install_tls(cert, key)?;
        }
        cluster.write_hba()?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.write_conf(opts.ssl_cert_and_key.is_some())?;
            match cluster.pg_ctl_start() {
                Ok(()) => break,
                // Another process may have bound the port between free_port()
                // and the server's bind; only then is picking another one right.
                Err(ClusterError::StartFailed { log_tail, .. })
                    if opts.port.is_none()
                        && attempt < PORT_RETRIES
                        && log_tail.contains("Address already in use") =>
                {
                    tracing::debug!(port = cluster.port, "port taken, retrying with another");
                    cluster.port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
        cluster.running = true;
        cluster.postmaster_pid = read_postmaster_pid(&cluster.data_dir);

        if cluster.hba == HbaMode::Md5 {
            // initdb hashes the bootstrap password with the compiled-in default
            // (SCRAM); setting it again now stores it as MD5 like every other
            // role in this mode.
            let sql = format!(
                "ALTER ROLE {SUPERUSER} PASSWORD {};",
                quote_literal(&cluster.password)
            );
            cluster.psql("postgres", &sql)?;
        }
        tracing::debug!(port = cluster.port, data_dir = %cluster.data_dir.display(), "PostgreSQL started");
        Ok(cluster)
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        prepare_dir(&self.data_dir, self.server_user)?;
        // The password goes through a file, not argv, so `ps` cannot see it.
        let pwfile = self.run_dir.path().join("pwfile");
        write_private(
            &pwfile,
            format!("{}\n", self.password).as_bytes(),
            self.server_user,
        )?;
        let result = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--auth={}", self.hba.method()))
            .arg(format!("--pwfile={}", pwfile.display()))
            .output_checked("initdb");
        let _ = fs::remove_file(&pwfile);
        result.map(drop)?;
        // Our settings live in their own file so that a reused data dir can be
        // re-pointed (new port, socket dir) without editing postgresql.conf again.
        let conf = self.data_dir.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| io_err("could not open", &conf, e))?;
        file.write_all(b"\ninclude_if_exists = 'airlock.conf'\n")
            .map_err(|e| io_err("could not write", &conf, e))?;
        Ok(())
    }

    fn install_tls(&self, cert: &Path, key: &Path) -> Result<(), ClusterError> {
        let cert_pem =
            fs::read(cert).map_err(|e| io_err("could not read TLS certificate", cert, e))?;
        let key_pem = fs::read(key).map_err(|e| io_err("could not read TLS key", key, e))?;
        write_private(
            &self.data_dir.join("airlock-server.crt"),
            &cert_pem,
            self.server_user,
        )?;
        write_private(
            &self.data_dir.join("airlock-server.key"),
            &key_pem,
            self.server_user,
        )?;
        Ok(())
    }

    fn write_hba(&self) -> Result<(), ClusterError> {
        let method = self.hba.method();
        // No `local ... trust`: every path in, socket included, uses the same
        // method, so tests exercise real authentication.
        let hba = format!(
            "# Written by airlock-pgcluster.\n\
             local all all {method}\n\
             host  all all 127.0.0.1/32 {method}\n\
             host  all all ::1/128 {method}\n"
        );
        write_private(
            &self.data_dir.join("pg_hba.conf"),
            hba.as_bytes(),
            self.server_user,
        )
    }

    fn write_conf(&self, ssl: bool) -> Result<(), ClusterError> {
        let mut conf = format!(
            "# Written by airlock-pgcluster on every start.\n\
             listen_addresses = '{HOST}'\n\
             port = {port}\n\
             unix_socket_directories = {socket_dir}\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 300\n\
             shared_buffers = 32MB\n\
             password_encryption = '{encryption}'\n\
             logging_collector = off\n\
             log_destination = 'stderr'\n",
            port = self.port,
            socket_dir = quote_literal(&self.run_dir.path().to_string_lossy()),
            encryption = self.hba.password_encryption(),
        );
        if ssl {
            conf.push_str("ssl = on\n");
            conf.push_str("ssl_cert_file = 'airlock-server.crt'\n");
            conf.push_str("ssl_key_file = 'airlock-server.key'\n");
        } else {
            conf.push_str("ssl = off\n");
        }
        write_private(
            &self.data_dir.join("airlock.conf"),
            conf.as_bytes(),
            self.server_user,
        )
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        // Truncate the log so that the tail we report is from this attempt.
        write_private(&self.log_file, b"", self.server_user)?;
        let result = self
            .server_command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-w", "-t", "60", "-l"])
            .arg(&self.log_file)
            .output_checked("pg_ctl start");
        if let Err(e) = result {
            // pg_ctl gives up after the timeout without stopping a postmaster
            // that is still starting: make sure none is left behind.
            if let Some(pid) = read_postmaster_pid(&self.data_dir) {
                kill_postmaster(pid);
            }
            return Err(ClusterError::StartFailed {
                port: self.port,
                log: self.log_file.clone(),
                log_tail: format!("{}\n({e})", log_tail(&self.log_file, LOG_TAIL_LINES)),
            });
        }
        Ok(())
    }

    /// A command for a server binary, run as the server user when we are root,
    /// with a working directory that user can enter and no inherited `PG*`
    /// variables that could point it at another cluster.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bins.tool(program));
        cmd.current_dir(self.run_dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        clear_pg_env(&mut cmd);
        if let Some(user) = self.server_user {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bins.bin_dir
    }

    /// The server's major.minor version, e.g. `15.8`.
    pub fn version(&self) -> &str {
        &self.bins.version
    }

    /// The server log file (inside the data dir).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The postmaster's pid while it runs (from `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster_pid.filter(|_| self.running)
    }

    /// Runs `sql` as the superuser in `database` and returns psql's stdout.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ClusterError> {
        self.psql_as(SUPERUSER, &self.password, database, sql)
    }

    /// Runs `sql` as `user` (with `password`) in `database` over TCP with
    /// `psql -X -q -v ON_ERROR_STOP=1`, unaligned and tuples-only so the
    /// output is just the values (`select 1` → `"1\n"`). The SQL goes in on
    /// stdin, so psql runs each statement on its own and `\gexec` works; the
    /// password goes in the child's environment only.
    pub fn psql_as(
        &self,
        user: &str,
        password: &str,
        database: &str,
        sql: &str,
    ) -> Result<String, ClusterError> {
        let psql = self.bins.tool("psql");
        let psql = if psql.is_file() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let mut cmd = Command::new(&psql);
        clear_pg_env(&mut cmd);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", HOST])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(user)
            .arg("-d")
            .arg(database)
            .args(["-f", "-"])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ClusterError::Spawn {
            program: psql.display().to_string(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means psql exited early; its stderr says why.
            let _ = stdin.write_all(sql.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|source| ClusterError::Spawn {
                program: psql.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(ClusterError::Psql {
                user: user.to_string(),
                database: database.to_string(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/<database>`, with the
    /// password percent-encoded.
    pub fn superuser_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@{HOST}:{}/{}",
            percent_encode(&self.password),
            self.port,
            percent_encode(database)
        )
    }

    /// `pg_ctl stop -m fast` and wait; if that fails, kill the postmaster
    /// (SIGQUIT, then SIGKILL). Idempotent. Returns once the postmaster is gone.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        let pid = read_postmaster_pid(&self.data_dir).or(self.postmaster_pid);
        let result = self
            .server_command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "30"])
            .output_checked("pg_ctl stop");
        if let Err(e) = &result {
            tracing::warn!(error = %e, "pg_ctl stop failed, killing the postmaster");
        }
        if let Some(pid) = pid {
            // pg_ctl returns when postmaster.pid is gone, a moment before the
            // process itself has exited.
            if !wait_gone(pid, Duration::from_secs(5)) {
                kill_postmaster(pid);
            }
        }
        self.running = false;
        result.map(drop)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Runs during unwinding too. Errors have nowhere to go but the log;
        // the temporary directory is removed after this, when `run_dir` drops.
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping PostgreSQL on drop failed");
        }
    }
}

/// Seeds the sample used by quickstart and the tests: roles `orders_ro`
/// (SELECT only, also on future tables) and `orders_rw` (SELECT, INSERT,
/// UPDATE, DELETE and sequences), and the database `orders` (owned by
/// `postgres`) with `customers` (200 rows) and `orders` (600 rows), all
/// deterministic. Running it again only resets the role passwords.
pub fn seed_orders(
    cluster: &PgCluster,
    ro_password: &str,
    rw_password: &str,
) -> Result<(), ClusterError> {
    if ro_password.contains('\0') || rw_password.contains('\0') {
        return Err(ClusterError::NulByte {
            what: "a role password",
        });
    }
    let roles = format!(
        "DO $$ BEGIN\n\
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_ro') THEN CREATE ROLE orders_ro; END IF;\n\
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_rw') THEN CREATE ROLE orders_rw; END IF;\n\
         END $$;\n\
         ALTER ROLE orders_ro LOGIN PASSWORD {ro};\n\
         ALTER ROLE orders_rw LOGIN PASSWORD {rw};\n\
         SELECT 'CREATE DATABASE orders OWNER {SUPERUSER}'\n\
           WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'orders') \\gexec\n",
        ro = quote_literal(ro_password),
        rw = quote_literal(rw_password),
    );
    cluster.psql("postgres", &roles)?;
    cluster.psql("orders", SEED_ORDERS_SQL)?;
    Ok(())
}

/// Schema, privileges and rows of the `orders` database; idempotent.
const SEED_ORDERS_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS customers (
    id serial PRIMARY KEY,
    name text,
    email text,
    phone text,
    created_at timestamptz DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders (
    id serial PRIMARY KEY,
    customer_id int REFERENCES customers,
    status text,
    total_cents int,
    created_at timestamptz DEFAULT now()
);

GRANT CONNECT, TEMPORARY ON DATABASE orders TO orders_ro, orders_rw;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orders_ro, orders_rw;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO orders_ro;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO orders_rw;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO orders_rw;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO orders_ro;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orders_rw;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO orders_rw;

-- Explicit ids keep the rows identical on every machine; the sequences are
-- moved past them so that inserts without an id keep working.
INSERT INTO customers (id, name, email, phone, created_at)
SELECT g,
       'Customer ' || lpad(g::text, 3, '0'),
       'customer' || lpad(g::text, 3, '0') || '@example.com',
       '+1-555-' || lpad((g * 37 % 10000)::text, 4, '0'),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '7 hours'
FROM generate_series(1, 200) AS g
WHERE NOT EXISTS (SELECT FROM customers);

INSERT INTO orders (id, customer_id, status, total_cents, created_at)
SELECT g,
       1 + (g * 7) % 200,
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5],
       500 + (g * 3779) % 20000,
       timestamptz '2024-02-01 00:00:00+00' + g * interval '3 hours'
FROM generate_series(1, 600) AS g
WHERE NOT EXISTS (SELECT FROM orders);

SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers));
SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT max(id) FROM orders));
"#;

/// A TCP port on 127.0.0.1 that was free a moment ago: bind port 0, read the
/// port the kernel chose, release it.
pub fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind((HOST, 0)).map_err(ClusterError::NoFreePort)?;
    let port = listener
        .local_addr()
        .map_err(ClusterError::NoFreePort)?
        .port();
    Ok(port)
}

/// `None` when we are not root; the `postgres` user when we are.
fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    // /proc/self is owned by the process's effective uid: no unsafe geteuid().
    let euid = fs::metadata("/proc/self")
        .map_err(|e| io_err("could not read", "/proc/self", e))?
        .uid();
    if euid != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")
        .map_err(|e| io_err("could not read", "/etc/passwd", e))?;
    lookup_user(&passwd, "postgres")
        .map(Some)
        .ok_or(ClusterError::NoServerUser)
}

/// Finds `name` in `/etc/passwd` text (`name:x:uid:gid:gecos:home:shell`).
fn lookup_user(passwd: &str, name: &str) -> Option<ServerUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(ServerUser { uid, gid })
    })
}

/// Creates `dir` if needed, mode 0700, owned by the server user when root.
fn prepare_dir(dir: &Path, user: Option<ServerUser>) -> Result<(), ClusterError> {
    fs::create_dir_all(dir).map_err(|e| io_err("could not create directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err("could not chmod 0700", dir, e))?;
    chown_to(dir, user)
}

/// Writes a file with mode 0600, owned by the server user when root.
fn write_private(
    path: &Path,
    contents: &[u8],
    user: Option<ServerUser>,
) -> Result<(), ClusterError> {
    fs::write(path, contents).map_err(|e| io_err("could not write", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("could not chmod 0600", path, e))?;
    chown_to(path, user)
}

fn chown_to(path: &Path, user: Option<ServerUser>) -> Result<(), ClusterError> {
    match user {
        Some(u) => std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
            .map_err(|e| io_err("could not chown to the postgres user", path, e)),
        None => Ok(()),
    }
}

fn io_err(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> ClusterError {
    ClusterError::Io {
        what,
        path: path.into(),
        source,
    }
}

/// Libpq variables that would silently redirect our tools to another server.
fn clear_pg_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGDATA",
        "PGSSLMODE",
    ] {
        cmd.env_remove(var);
    }
}

fn run(cmd: &mut Command) -> Result<Output, ClusterError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output_checked(&program)
}

trait OutputChecked {
    /// Runs to completion; a non-zero exit becomes [`ClusterError::Command`]
    /// with stderr (or stdout, where pg_ctl writes some errors).
    fn output_checked(&mut self, program: &str) -> Result<Output, ClusterError>;
}

impl OutputChecked for Command {
    fn output_checked(&mut self, program: &str) -> Result<Output, ClusterError> {
        let out = self.output().map_err(|source| ClusterError::Spawn {
            program: program.to_string(),
            source,
        })?;
        if out.status.success() {
            return Ok(out);
        }
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(ClusterError::Command {
            program: program.to_string(),
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// The first line of `postmaster.pid` is the postmaster's pid.
fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` is a live process. A zombie counts as gone: the postmaster
/// is reparented to pid 1 after `pg_ctl start`, and pid 1 here may never reap it.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": comm may contain spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// SIGQUIT (PostgreSQL's immediate shutdown), then SIGKILL. Uses kill(1)
/// because sending a signal from Rust needs unsafe libc.
fn kill_postmaster(pid: u32) {
    for signal in ["-QUIT", "-KILL"] {
        if !pid_alive(pid) {
            return;
        }
        let _ = Command::new("kill")
            .args([signal, &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if wait_gone(pid, Duration::from_secs(5)) {
            return;
        }
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read the log: {e})"),
    }
}

/// A SQL string literal (standard_conforming_strings is on, so only quotes
/// need doubling). Also valid in postgresql.conf, which uses the same rule.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_version_accepts_numeric_dirs_only() {
        let cases: &[(&str, Option<Vec<u32>>)] = &[
            ("15", Some(vec![15])),
            ("9.6", Some(vec![9, 6])),
            ("17", Some(vec![17])),
            ("bin", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_version(input), want, "{input:?}");
        }
        assert!(parse_version("10") > parse_version("9.6"));
    }

    #[test]
    fn lookup_user_parses_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("postgres", Some((101, 104))),
            ("root", Some((0, 0))),
            ("post", None),
            ("nobody", None),
        ];
        for (name, want) in cases {
            let got = lookup_user(passwd, name).map(|u| (u.uid, u.gid));
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn quoting_and_encoding() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain", "'plain'", "plain"),
            ("it's", "'it''s'", "it%27s"),
            ("a b/c@d:e", "'a b/c@d:e'", "a%20b%2Fc%40d%3Ae"),
            ("back\\slash", "'back\\slash'", "back%5Cslash"),
        ];
        for (input, literal, encoded) in cases {
            assert_eq!(quote_literal(input), *literal, "{input}");
            assert_eq!(percent_encode(input), *encoded, "{input}");
        }
    }

    #[test]
    fn options_debug_hides_the_password() {
        let opts = ClusterOptions {
            superuser_password: "s3cret-pw".into(),
            ..ClusterOptions::default()
        };
        let debug = format!("{opts:?}");
        assert!(!debug.contains("s3cret-pw"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn own_pid_is_alive_and_unused_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
