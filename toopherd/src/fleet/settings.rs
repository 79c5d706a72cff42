//! The `[store]` section of toopherd.toml: the embedded SQLite store (the default, in
//! `state_dir` as before) or the fleet's shared PostgreSQL. The database password and
//! the fleet key are never here (toopherd.toml is world-readable): they are in the
//! credentials file ([`super::credentials`]).
//!
//! ```toml
//! [store]
//! kind = "postgres"
//! url = "postgresql://toopherd@db.example.org:5432/toopher?sslmode=verify-full"
//! ca_file = "/etc/toopher/db-ca.pem"
//! credentials_file = "/etc/toopher/fleet.toml"   # or the systemd credential toopherd-fleet
//! connect_timeout = 3                            # seconds
//! query_timeout = 5
//! pool_size = 4
//! ```

use super::credentials::{self, Credentials, CredentialsError};
use super::pg::{self, PgSettings, Timeouts};
use crate::config::{AbsPath, Ranged, Seconds};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// This host's own SQLite database in `state_dir`.
    #[default]
    Sqlite,
    /// The fleet's shared PostgreSQL database.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// libpq's URI form, without a password.
    #[serde(default)]
    pub url: Option<String>,
    /// The CA that signed the database server's certificate (PEM).
    #[serde(default)]
    pub ca_file: Option<AbsPath>,
    /// The fleet credentials: an absolute path, or a bare name under systemd's
    /// `$CREDENTIALS_DIRECTORY`; default the systemd credential `toopherd-fleet`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Bound on getting a connection (TCP, TLS, authentication), in seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Seconds<100, 20_000>,
    /// Bound on one operation's transaction, in seconds.
    #[serde(default = "default_query_timeout")]
    pub query_timeout: Seconds<100, 20_000>,
    /// Connections kept open at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: Ranged<1, 64>,
}

fn default_connect_timeout() -> Seconds<100, 20_000> {
    Seconds(std::time::Duration::from_secs(3))
}
fn default_query_timeout() -> Seconds<100, 20_000> {
    Seconds(std::time::Duration::from_secs(5))
}
fn default_pool_size() -> Ranged<1, 64> {
    Ranged(4)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            url: None,
            ca_file: None,
            credentials_file: None,
            connect_timeout: default_connect_timeout(),
            query_timeout: default_query_timeout(),
            pool_size: default_pool_size(),
        }
    }
}

#[derive(Debug)]
pub enum SettingsError {
    /// A `[store]` key that belongs to the other kind, or one that is missing.
    Invalid(String),
    Credentials(CredentialsError),
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsError::Invalid(e) => f.write_str(e),
            SettingsError::Credentials(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SettingsError {}

impl StoreConfig {
    /// Checks the keys that only make sense together (serde checked each on its own).
    pub fn validate(&self) -> Result<(), SettingsError> {
        match self.kind {
            StoreKind::Sqlite => {
                let stray = [
                    ("url", self.url.is_some()),
                    ("ca_file", self.ca_file.is_some()),
                    ("credentials_file", self.credentials_file.is_some()),
                ];
                if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                    return Err(SettingsError::Invalid(format!(
                        "[store] {key} is for kind = \"postgres\"; this store is kind = \"sqlite\""
                    )));
                }
                Ok(())
            }
            StoreKind::Postgres => {
                let url = self.url.as_deref().ok_or_else(|| {
                    SettingsError::Invalid(
                        "[store] kind = \"postgres\" needs url = \
                         \"postgresql://USER@HOST:PORT/DATABASE\""
                            .into(),
                    )
                })?;
                pg::parse_url(url).map_err(|e| SettingsError::Invalid(e.to_string()))?;
                if let Some(p) = &self.credentials_file
                    && !p.is_absolute()
                    && p.components().count() != 1
                {
                    return Err(SettingsError::Invalid(format!(
                        "[store] credentials_file {} must be an absolute path (or a bare \
                         systemd credential name)",
                        p.display()
                    )));
                }
                Ok(())
            }
        }
    }

    /// Where the credentials file is, for this process's environment.
    pub fn credentials_path(&self) -> Result<PathBuf, SettingsError> {
        credentials::resolve_from_env(self.credentials_file.as_deref())
            .map_err(SettingsError::Credentials)
    }

    /// Reads the credentials file (checking its mode and owner).
    pub fn load_credentials(&self) -> Result<Credentials, SettingsError> {
        credentials::load(&self.credentials_path()?).map_err(SettingsError::Credentials)
    }

    /// The connection settings of a `postgres` store, for `host`.
    pub fn pg_settings(
        &self,
        credentials: &Credentials,
        host: &str,
    ) -> Result<PgSettings, SettingsError> {
        self.validate()?;
        let url = self
            .url
            .clone()
            .ok_or_else(|| SettingsError::Invalid("[store] has no url".into()))?;
        Ok(PgSettings {
            url,
            ca_file: self.ca_file.as_ref().map(|p| p.path().to_path_buf()),
            password: credentials
                .password()
                .map(|p| zeroize::Zeroizing::new(p.to_owned())),
            timeouts: Timeouts {
                connect: self.connect_timeout.0,
                query: self.query_timeout.0,
            },
            pool_size: usize::try_from(self.pool_size.0).unwrap_or(4),
            host: host.to_owned(),
        })
    }
}

/// This machine's name, as decisions record it.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        #[serde(default)]
        store: StoreConfig,
    }

    fn parse(text: &str) -> Result<StoreConfig, String> {
        let w: Wrapper = toml::from_str(text).map_err(|e| e.to_string())?;
        w.store.validate().map_err(|e| e.to_string())?;
        Ok(w.store)
    }

    #[test]
    fn the_default_is_sqlite() {
        let s = parse("").unwrap();
        assert_eq!(s.kind, StoreKind::Sqlite);
        assert_eq!(
            parse("[store]\nkind = \"sqlite\"\n").unwrap().kind,
            StoreKind::Sqlite
        );
    }

    #[test]
    fn a_postgres_store() {
        let s = parse(
            "[store]\nkind = \"postgres\"\n\
             url = \"postgresql://toopherd@db.example.org/toopher\"\n\
             ca_file = \"/etc/toopher/db-ca.pem\"\ncredentials_file = \"/etc/toopher/fleet.toml\"\n\
             connect_timeout = 1.5\nquery_timeout = 4\npool_size = 8\n",
        )
        .unwrap();
        assert_eq!(s.kind, StoreKind::Postgres);
        assert_eq!(s.connect_timeout.0, std::time::Duration::from_millis(1500));
        assert_eq!(s.pool_size.0, 8);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("[store]\nkind = \"postgres\"\n", "needs url"),
            ("[store]\nkind = \"mysql\"\n", "unknown variant"),
            (
                "[store]\nurl = \"postgresql://t@localhost/db\"\n",
                "is for kind = \"postgres\"",
            ),
            (
                "[store]\nkind = \"postgres\"\nurl = \"postgresql://t:pw@localhost/db\"\n",
                "credentials file",
            ),
            (
                "[store]\nkind = \"postgres\"\nurl = \"postgresql://t@localhost/db\"\n\
                 query_timeout = 60\n",
                "out of range",
            ),
            (
                "[store]\nkind = \"postgres\"\nurl = \"postgresql://t@localhost/db\"\n\
                 credentials_file = \"a/b\"\n",
                "absolute",
            ),
            (
                "[store]\nkind = \"postgres\"\npassword = \"x\"\n",
                "unknown field",
            ),
        ] {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
