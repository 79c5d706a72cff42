//! `/etc/toopher/toopherd.toml`. Every key is checked while parsing, so an error names the
//! key and its line (the `toml` crate reports both); unknown keys are errors, not ignored.

use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/toopher/toopherd.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The unix socket the module and toopherctl connect to.
    #[serde(default = "default_socket")]
    pub socket: AbsPath,
    /// Where the SQLite database lives (created 0700; the database 0600).
    #[serde(default = "default_state_dir")]
    pub state_dir: AbsPath,
    #[serde(default)]
    pub backend: Backend,
    /// What toopherd answers when its backend service cannot be reached.
    #[serde(default)]
    pub failmode: Failmode,
    /// What happens to a login of an account with no second factor.
    #[serde(default)]
    pub availability: Availability,
    /// The issuer shown in authenticator apps; the host name when unset.
    #[serde(default)]
    pub issuer: Option<Label>,
    /// Seconds a new enrolment may stay unactivated.
    #[serde(default = "default_enrollment_ttl")]
    pub enrollment_ttl: Ranged<60, 86_400>,
    #[serde(default)]
    pub rate_limit: RateLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// RFC 6238 TOTP verified by toopherd itself; secrets in its database.
    #[default]
    Local,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failmode {
    /// Deny when the service cannot be reached.
    #[default]
    Secure,
    /// Allow (and log a warning) when the service cannot be reached.
    Safe,
}

impl Failmode {
    pub fn as_str(self) -> &'static str {
        match self {
            Failmode::Secure => "secure",
            Failmode::Safe => "safe",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Accounts without a second factor are denied.
    #[default]
    Required,
    /// Accounts without a second factor log in with the password alone.
    Available,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Required => "required",
            Availability::Available => "available",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Failed second factors allowed within `window` before attempts are refused.
    #[serde(default = "default_max_failures")]
    pub max_failures: Ranged<1, 1000>,
    /// Seconds.
    #[serde(default = "default_window")]
    pub window: Ranged<10, 86_400>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max_failures: default_max_failures(),
            window: default_window(),
        }
    }
}

/// An absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsPath(pub PathBuf);

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let p = PathBuf::from(&s);
        if !p.is_absolute() {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is not an absolute path"
            )));
        }
        Ok(AbsPath(p))
    }
}

impl AbsPath {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// An integer within `LO..=HI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranged<const LO: u64, const HI: u64>(pub u64);

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Ranged<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        match u64::try_from(v) {
            Ok(v) if (LO..=HI).contains(&v) => Ok(Ranged(v)),
            _ => Err(serde::de::Error::custom(format!(
                "{v} is out of range ({LO} to {HI})"
            ))),
        }
    }
}

/// Short printable text (no control characters, no `:` which separates otpauth labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(pub String);

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control() || c == ':') {
            return Err(serde::de::Error::custom(
                "must be 1 to 64 printable characters without `:`",
            ));
        }
        Ok(Label(s))
    }
}

fn default_socket() -> AbsPath {
    AbsPath(PathBuf::from(toopher_ipc::DEFAULT_SOCKET))
}
fn default_state_dir() -> AbsPath {
    AbsPath(PathBuf::from("/var/lib/toopherd"))
}
fn default_enrollment_ttl() -> Ranged<60, 86_400> {
    Ranged(600)
}
fn default_max_failures() -> Ranged<1, 1000> {
    Ranged(5)
}
fn default_window() -> Ranged<10, 86_400> {
    Ranged(300)
}

#[derive(Debug)]
pub enum ConfigError {
    Read(PathBuf, std::io::Error),
    /// The `toml` crate's message: it names the line, shows it (with the key) and says why.
    Parse(PathBuf, String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "{}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "{}: {}", p.display(), e.trim_end()),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        Config::parse(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn database_path(&self) -> PathBuf {
        self.state_dir.0.join("toopherd.sqlite3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secure() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.failmode, Failmode::Secure);
        assert_eq!(c.availability, Availability::Required);
        assert_eq!(c.backend, Backend::Local);
        assert_eq!(c.rate_limit.max_failures.0, 5);
        assert_eq!(c.rate_limit.window.0, 300);
        assert_eq!(c.enrollment_ttl.0, 600);
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = Config::parse("socket = \"/tmp/s\"\nfailmode = \"open\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("failmode"), "{e}");
        assert!(e.contains("secure"), "{e}");

        let e = Config::parse("\n\nstate_dir = \"relative\"\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("state_dir"), "{e}");

        let e = Config::parse("failmod = \"safe\"\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("failmod"), "{e}");

        let e = Config::parse("[rate_limit]\nmax_failures = 0\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("max_failures"), "{e}");

        let e = Config::parse("backend = \"cloud\"\n").unwrap_err();
        assert!(e.contains("backend") && e.contains("local"), "{e}");
    }
}
