//! Reaching the shared database: the `[store]` URL checked and turned into a connection
//! configuration (TLS with verify-full for every TCP host, loopback included; a unix
//! socket only in a directory no other user can write), and a
//! small pool of connections with bounded waits. A connection that failed, timed out or
//! was left in an unknown state is dropped, never reused; the next request connects
//! anew, so toopherd finds the database again by itself after a restart or failover.

use super::PgError;
use super::session::Session;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the database, from `[store]` and the credentials file.
#[derive(Clone)]
pub struct PgSettings {
    /// libpq's URI form: `postgresql://USER@HOST:PORT/DATABASE?sslmode=verify-full`.
    pub url: String,
    /// The CA that signed the server's certificate (PEM), for `sslmode=verify-full`.
    pub ca_file: Option<PathBuf>,
    pub password: Option<zeroize::Zeroizing<String>>,
    pub timeouts: Timeouts,
    /// Connections kept open at most.
    pub pool_size: usize,
    /// This host's name, recorded with each decision (and in `application_name`).
    pub host: String,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("pool_size", &self.pool_size)
            .field("host", &self.host)
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Waiting for a free connection, or connecting (TCP, TLS, authentication).
    pub connect: Duration,
    /// One operation (its whole transaction), also enforced by the server as
    /// `statement_timeout`, so a stuck query does not hold the user's lock.
    pub query: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            query: Duration::from_secs(5),
        }
    }
}

/// A connection idle in the pool for this long is checked (one empty round trip) before
/// it is used: the server may have dropped it meanwhile (a restart, a failover, an idle
/// timeout in between) without the client noticing, and a login must not fail for that.
const PROBE_AFTER_IDLE: Duration = Duration::from_secs(2);

/// What the URL asks of TLS, after toopherd's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Only for unix sockets, whose directory is checked before every connection
    /// ([`socket_dir_trusted`]). Never for TCP, not even to a loopback address: any local
    /// user can listen on a free loopback port while PostgreSQL is down or restarting,
    /// and would then answer for the database.
    Disable,
    /// TLS, the server's certificate signed by `ca_file` and valid for the host name.
    VerifyFull,
}

fn config_error(msg: impl Into<String>) -> PgError {
    PgError::Config(msg.into())
}

/// Parses the URL under toopherd's rules: no password in it (toopherd.toml is
/// world-readable); `sslmode` `verify-full` for TCP hosts (the default, and the only
/// mode: loopback too), none for unix sockets.
pub fn parse_url(url: &str) -> Result<(Config, Tls), PgError> {
    let url = url.trim();
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err(config_error(
            "[store] url must be a postgresql:// URI (libpq's URI form)",
        ));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut sslmode = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => sslmode = Some(v.to_owned()),
            "password" => {
                return Err(config_error(
                    "[store] url must not hold the password: put it in the credentials file",
                ));
            }
            // The address connected to would not be the host the locality check and
            // the certificate check look at: `localhost` could reach another machine.
            "hostaddr" => {
                return Err(config_error(
                    "[store] url parameter hostaddr is not supported: give the address as \
                     the host",
                ));
            }
            "sslrootcert" | "sslcert" | "sslkey" | "sslcrl" | "sslpassword" => {
                return Err(config_error(format!(
                    "[store] url parameter {k} is not supported: give the CA as [store] ca_file"
                )));
            }
            _ => kept.push(pair),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config = Config::from_str(&rebuilt)
        .map_err(|e| config_error(format!("[store] url is not valid: {e}")))?;
    if config.get_password().is_some() {
        return Err(config_error(
            "[store] url must not hold the password: put it in the credentials file",
        ));
    }
    if config.get_user().is_none() {
        return Err(config_error(
            "[store] url names no user: postgresql://USER@HOST/DATABASE",
        ));
    }
    if config.get_hosts().is_empty() {
        return Err(config_error(
            "[store] url names no host (a unix socket is given as \
             postgresql://USER@%2Frun%2Fpostgresql/DATABASE)",
        ));
    }
    let all_sockets = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, Host::Unix(_)));
    let any_socket = config
        .get_hosts()
        .iter()
        .any(|h| matches!(h, Host::Unix(_)));
    let tls = match (sslmode.as_deref(), all_sockets) {
        (None, true) | (Some("disable"), true) => Tls::Disable,
        (None, false) | (Some("verify-full"), _) => Tls::VerifyFull,
        (Some("disable"), false) => {
            return Err(config_error(
                "[store] url has sslmode=disable for a TCP host: on the network the \
                 database's password and every decision would cross it in clear, and on \
                 this machine any local user can listen on the port while PostgreSQL is \
                 down and answer for it; use sslmode=verify-full with ca_file, or this \
                 machine's unix socket (postgresql://USER@%2Frun%2Fpostgresql/DATABASE)",
            ));
        }
        (Some(other), _) => {
            return Err(config_error(format!(
                "[store] url has sslmode={other}: toopherd uses verify-full (the server's \
                 certificate checked against ca_file and the host name) for TCP, and \
                 nothing for a unix socket"
            )));
        }
    };
    if tls == Tls::VerifyFull && any_socket {
        return Err(config_error(
            "[store] url has a unix socket beside TCP hosts, or sslmode=verify-full with a \
             unix socket, which TLS does not apply to: give either unix sockets (no \
             sslmode) or TCP hosts (verify-full)",
        ));
    }
    Ok((config, tls))
}

/// The unix socket directory `dir` (PostgreSQL's socket for `port` inside it) can be
/// trusted to lead to the real server: no other user can put a socket there. The
/// directory may be written only by its owner (root or whoever owns the server's socket)
/// and its group (Debian's /run/postgresql is postgres:postgres 2775); every directory
/// above it belongs to root or that owner and is not writable by others, unless sticky
/// (as /tmp, where others cannot rename what is not theirs). Checked before every
/// connection: the server may be down and its socket absent, then anyone's to take.
pub fn socket_dir_trusted(dir: &Path, port: u16) -> Result<(), PgError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let refuse = |why: String| {
        Err(config_error(format!(
            "[store] the socket directory {} {why}: another user could stand in for \
             PostgreSQL there; use a directory only PostgreSQL's owner and root can write, \
             such as /run/postgresql",
            dir.display()
        )))
    };
    let real = match std::fs::canonicalize(dir) {
        Ok(p) => p,
        // Not there (yet): nothing to connect to, which the connection reports.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return refuse(format!("cannot be checked ({e})")),
    };
    let meta = match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return refuse("is not a directory".into()),
        Err(e) => return refuse(format!("cannot be checked ({e})")),
    };
    let owner = meta.uid();
    if meta.mode() & 0o002 != 0 {
        return refuse(format!(
            "is writable by every user (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    let socket = real.join(format!(".s.PGSQL.{port}"));
    match std::fs::symlink_metadata(&socket) {
        Ok(m) if !m.file_type().is_socket() => {
            return refuse(format!("holds {} that is not a socket", socket.display()));
        }
        Ok(m) if m.uid() != owner && m.uid() != 0 => {
            return refuse(format!(
                "holds the socket {} of uid {}, not of the directory's owner (uid {owner})",
                socket.display(),
                m.uid()
            ));
        }
        _ => {}
    }
    let mut above = real.parent();
    while let Some(p) = above {
        let m = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => {
                return refuse(format!(
                    "has {} above it that cannot be checked ({e})",
                    p.display()
                ));
            }
        };
        if m.uid() != 0 && m.uid() != owner {
            return refuse(format!(
                "lies in {}, which belongs to uid {}",
                p.display(),
                m.uid()
            ));
        }
        let sticky = m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky {
            return refuse(format!(
                "lies in {}, which others can write (mode {:o})",
                p.display(),
                m.mode() & 0o7777
            ));
        }
        above = p.parent();
    }
    Ok(())
}

/// The rustls client configuration trusting only `ca_file`.
fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, PgError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| config_error(format!("[store] ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(config_error(format!(
                "[store] ca_file {} holds no certificate",
                ca.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| config_error(format!("[store] ca_file {}: {e}", ca.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Makes connections: the checked configuration and TLS, within the connect timeout.
pub(super) struct Connector {
    config: Config,
    tls: MakeRustlsConnect,
    timeout: Duration,
}

impl Connector {
    pub(super) async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let ports = self.config.get_ports();
        for (i, host) in self.config.get_hosts().iter().enumerate() {
            if let Host::Unix(dir) = host {
                // libpq's rule: one port for all hosts, or one per host; 5432 by default.
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                socket_dir_trusted(dir, port)?;
            }
        }
        let (client, connection) =
            tokio::time::timeout(self.timeout, self.config.connect(self.tls.clone()))
                .await
                .map_err(|_| PgError::Timeout {
                    what: "connecting to the database",
                })?
                .map_err(PgError::from_connect)?;
        // The connection's I/O runs beside the client; it ends when the client is dropped
        // or the server goes away (then the client reports closed and is not reused).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// How long a statement waits for a lock: half the query timeout, at most a second.
pub(super) fn lock_timeout(query: Duration) -> Duration {
    (query / 2).min(Duration::from_secs(1))
}

pub(super) struct Pool {
    connector: Arc<Connector>,
    idle: Mutex<Vec<Session>>,
    permits: Semaphore,
    pub(super) timeouts: Timeouts,
}

impl Pool {
    pub(super) fn new(settings: &PgSettings) -> Result<Pool, PgError> {
        let (mut config, tls) = parse_url(&settings.url)?;
        if tls == Tls::VerifyFull && settings.ca_file.is_none() {
            return Err(config_error(
                "[store] url names a TCP host, reached with TLS (sslmode=verify-full): set \
                 [store] ca_file to the CA that signed the server's certificate, or use this \
                 machine's unix socket",
            ));
        }
        let ca = match tls {
            Tls::VerifyFull => settings.ca_file.as_deref(),
            Tls::Disable => None,
        };
        let tls_config = client_tls(ca)?;
        config.ssl_mode(match tls {
            Tls::VerifyFull => SslMode::Require,
            Tls::Disable => SslMode::Disable,
        });
        if let Some(p) = &settings.password {
            config.password(p.as_bytes());
        }
        let ms = settings.timeouts.query.as_millis();
        // The server gives up too: a query that outlives its client holds no lock for long.
        // A lock wait gives up well before the client does, so a user's lock held by
        // someone else (anyone who can connect can take it) is answered with 55P03, which
        // denies, instead of the client's timeout.
        let lock_ms = lock_timeout(settings.timeouts.query).as_millis().max(1);
        // The tables are found in `public` only: a schema someone else created earlier in
        // the path cannot shadow them.
        let options = format!(
            "{} -c search_path=public -c statement_timeout={ms} -c lock_timeout={lock_ms} \
             -c idle_in_transaction_session_timeout={}",
            config.get_options().unwrap_or(""),
            ms.saturating_mul(2)
        );
        config
            .connect_timeout(settings.timeouts.connect)
            .tcp_user_timeout(settings.timeouts.connect + settings.timeouts.query)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .options(options.trim())
            .application_name(format!("toopherd@{}", settings.host));
        Ok(Pool {
            connector: Arc::new(Connector {
                config,
                tls: MakeRustlsConnect::new(tls_config),
                timeout: settings.timeouts.connect,
            }),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(settings.pool_size.max(1)),
            timeouts: settings.timeouts,
        })
    }

    /// A connection: an idle one, or a new one. Waits at most the connect timeout.
    pub(super) async fn get(&self) -> Result<Conn<'_>, PgError> {
        let bound = self.timeouts.connect;
        let permit = tokio::time::timeout(bound, self.permits.acquire())
            .await
            // Every connection busy for that long: toopherd is overloaded, which is not the
            // database being unreachable (failmode must not let a flood of logins through).
            .map_err(|_| PgError::Busy)?
            .map_err(|_| PgError::Unreachable("the connection pool is closed".into()))?;
        let mut idle = self.take_idle();
        while let Some(s) = idle.take() {
            if s.idle_for() < PROBE_AFTER_IDLE {
                idle = Some(s);
                break;
            }
            match tokio::time::timeout(self.timeouts.connect, s.alive()).await {
                Ok(true) => {
                    idle = Some(s);
                    break;
                }
                // Dropped by the server: so, most likely, are the others; a new one.
                _ => {
                    if let Ok(mut v) = self.idle.lock() {
                        v.clear();
                    }
                }
            }
        }
        let session = match idle {
            Some(mut s) => {
                s.mark_reused();
                s
            }
            None => Session::new(self.connector.connect().await?, Arc::clone(&self.connector)),
        };
        Ok(Conn {
            session: Some(session),
            pool: self,
            reusable: false,
            _permit: permit,
        })
    }

    /// The most recently parked open connection, if any.
    fn take_idle(&self) -> Option<Session> {
        self.idle.lock().ok().and_then(|mut v| {
            while let Some(c) = v.pop() {
                if !c.is_closed() {
                    return Some(c);
                }
            }
            None
        })
    }
}

/// A pooled connection. It goes back to the pool only when [`Conn::reusable`] was
/// called after a whole operation ended cleanly.
pub(super) struct Conn<'a> {
    session: Option<Session>,
    pool: &'a Pool,
    reusable: bool,
    _permit: SemaphorePermit<'a>,
}

impl Conn<'_> {
    pub(super) fn session(&mut self) -> &mut Session {
        // Some until drop.
        self.session
            .as_mut()
            .expect("a pooled connection has its session until dropped")
    }

    /// Marks the connection fit for the next operation: its last one ran to the end,
    /// committed or rolled back. A timed-out or failed connection stays unmarked.
    pub(super) fn reusable(&mut self) {
        self.reusable = true;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.session.take()
            && self.reusable
            && !c.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            c.park();
            idle.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        match parse_url(url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} was accepted"),
        }
    }

    #[test]
    fn sockets_are_plain_and_every_tcp_host_is_verify_full() {
        for (url, tls) in [
            ("postgresql://t@127.0.0.1:5432/db", Tls::VerifyFull),
            ("postgresql://t@localhost/db", Tls::VerifyFull),
            ("postgresql://t@[::1]:5433/db", Tls::VerifyFull),
            ("postgresql://t@%2Frun%2Fpostgresql/db", Tls::Disable),
            (
                "postgresql://t@%2Frun%2Fpostgresql/db?sslmode=disable",
                Tls::Disable,
            ),
            ("postgres://t@db.example.org/db", Tls::VerifyFull),
            ("postgresql://t@10.0.0.5:5432/db", Tls::VerifyFull),
            (
                "postgresql://t@localhost/db?sslmode=verify-full",
                Tls::VerifyFull,
            ),
            (
                "postgresql://t@db1,db2/db?target_session_attrs=read-write&sslmode=verify-full",
                Tls::VerifyFull,
            ),
        ] {
            assert_eq!(parse_url(url).unwrap().1, tls, "{url}");
        }
        let (config, _) =
            parse_url("postgresql://t@db1:5432,db2:5433/toopher?connect_timeout=2").unwrap();
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_ports(), &[5432, 5433]);
        assert_eq!(config.get_dbname(), Some("toopher"));
    }

    #[test]
    fn unsafe_or_unsupported_urls_are_refused_in_plain_words() {
        assert!(err("postgresql://t:pw@localhost/db").contains("credentials file"));
        assert!(err("postgresql://t@localhost/db?password=pw").contains("credentials file"));
        assert!(err("postgresql://t@db.example.org/db?sslmode=disable").contains("in clear"));
        // Loopback too: a local user could listen on the port while the server is down.
        for url in [
            "postgresql://t@127.0.0.1/db?sslmode=disable",
            "postgresql://t@localhost:5433/db?sslmode=disable",
            "postgresql://t@[::1]/db?sslmode=disable",
        ] {
            assert!(err(url).contains("unix socket"), "{url}");
        }
        assert!(
            err("postgresql://t@%2Frun%2Fpostgresql,db.example.org/db").contains("unix socket")
        );
        assert!(err("postgresql://t@localhost/db?hostaddr=192.0.2.1").contains("hostaddr"));
        assert!(err("postgresql://t@db.example.org/db?sslmode=require").contains("verify-full"));
        assert!(err("postgresql://t@db.example.org/db?sslmode=prefer").contains("verify-full"));
        assert!(err("postgresql://t@db.example.org/db?sslrootcert=/x").contains("ca_file"));
        assert!(err("host=localhost user=t").contains("postgresql://"));
        assert!(err("postgresql://localhost/db").contains("no user"));
        assert!(
            err("postgresql://t@%2Frun%2Fpostgresql/db?sslmode=verify-full").contains("socket")
        );
        // The password never shows in an error, even in a URL that is refused for it.
        assert!(!err("postgresql://t:hunter2@localhost/db").contains("hunter2"));
    }

    #[test]
    fn a_socket_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o755);
        let dir = top.path().join("sock");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o2775);
        // Unit tests may run unprivileged: the owner rule then holds for our own uid.
        socket_dir_trusted(&dir, 5432).unwrap();
        chmod(&dir, 0o1777);
        let e = socket_dir_trusted(&dir, 5432).unwrap_err().to_string();
        assert!(e.contains("writable by every user"), "{e}");
        chmod(&dir, 0o755);
        // A directory above it that others can write (and not sticky): they could rename
        // the socket directory away and put their own in its place.
        chmod(top.path(), 0o777);
        let e = socket_dir_trusted(&dir, 5432).unwrap_err().to_string();
        assert!(e.contains("which others can write"), "{e}");
        chmod(top.path(), 0o1777);
        socket_dir_trusted(&dir, 5432).unwrap();
        chmod(top.path(), 0o755);
        // Something at the socket's name that is not a socket.
        std::fs::write(dir.join(".s.PGSQL.5433"), b"").unwrap();
        let e = socket_dir_trusted(&dir, 5433).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        // A directory that is not there: the connection says the server is unreachable.
        socket_dir_trusted(&top.path().join("absent"), 5432).unwrap();
    }

    #[test]
    fn verify_full_needs_a_ca_and_the_password_is_not_printed() {
        let settings = PgSettings {
            url: "postgresql://t@db.example.org/db".into(),
            ca_file: None,
            password: Some(zeroize::Zeroizing::new("hunter2".into())),
            timeouts: Timeouts::default(),
            pool_size: 2,
            host: "a".into(),
        };
        match Pool::new(&settings) {
            Err(e) => assert!(e.to_string().contains("ca_file"), "{e}"),
            Ok(_) => panic!("verify-full without a CA was accepted"),
        }
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
