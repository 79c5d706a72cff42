//! Reaching the shared database: the `[store]` URL checked and turned into a connection
//! configuration (TLS with verify-full for every host that is not this machine), and a
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
    /// Only for this machine: unix sockets and loopback addresses.
    Disable,
    /// TLS, the server's certificate signed by `ca_file` and valid for the host name.
    VerifyFull,
}

fn config_error(msg: impl Into<String>) -> PgError {
    PgError::Config(msg.into())
}

/// Whether every host of the URL is this machine.
fn all_local(config: &Config) -> bool {
    config.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    })
}

/// Parses the URL under toopherd's rules: no password in it (toopherd.toml is
/// world-readable), `sslmode` `verify-full` (the default for other machines) or `disable`
/// (the default, and only allowed, for this machine).
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
    let local = all_local(&config);
    let any_socket = config
        .get_hosts()
        .iter()
        .any(|h| matches!(h, Host::Unix(_)));
    let tls = match (sslmode.as_deref(), local) {
        (None, true) | (Some("disable"), true) => Tls::Disable,
        (None, false) | (Some("verify-full"), _) => Tls::VerifyFull,
        (Some("disable"), false) => {
            return Err(config_error(
                "[store] url has sslmode=disable for a host on the network: the database's \
                 password and every decision would cross it in clear; use sslmode=verify-full \
                 with ca_file",
            ));
        }
        (Some(other), _) => {
            return Err(config_error(format!(
                "[store] url has sslmode={other}: toopherd uses verify-full (the server's \
                 certificate checked against ca_file and the host name), or disable for \
                 this machine only"
            )));
        }
    };
    if tls == Tls::VerifyFull && any_socket {
        return Err(config_error(
            "[store] url has sslmode=verify-full with a unix socket, which TLS does not \
             apply to: drop sslmode for a socket",
        ));
    }
    Ok((config, tls))
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
                "[store] url uses TLS (sslmode=verify-full, the default for a host on the \
                 network): set [store] ca_file to the CA that signed the server's certificate",
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
        let options = format!(
            "{} -c statement_timeout={ms} -c lock_timeout={ms} \
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
    fn local_hosts_default_to_plain_and_others_to_verify_full() {
        for (url, tls) in [
            ("postgresql://t@127.0.0.1:5432/db", Tls::Disable),
            ("postgresql://t@localhost/db", Tls::Disable),
            ("postgresql://t@[::1]:5433/db", Tls::Disable),
            ("postgresql://t@%2Frun%2Fpostgresql/db", Tls::Disable),
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
