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
    /// What a login of an account without a second factor does when `availability` requires
    /// one: `"none"` denies, `"two-way"` starts two-way registration then enrolment.
    #[serde(default)]
    pub enroll: EnrollMode,
    /// Seconds a two-way registration code stays valid.
    #[serde(default = "default_registration_ttl")]
    pub registration_ttl: Ranged<10, 86_400>,
    /// Members of this group may make administrative requests (root always may).
    #[serde(default)]
    pub admin_group: Option<Label>,
    /// The Toopher API backend (`backend = "toopher"`).
    #[serde(default)]
    pub toopher: ToopherConfig,
    /// `[policy]`: groups, trusted networks, grace period, per-service rules
    /// (`crate::policy`). Its `availability` overrides the top-level key above.
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    /// Where enrolments and the replay and rate-limit state live: this host's SQLite
    /// database in `state_dir` (the default) or the fleet's shared PostgreSQL.
    #[serde(default)]
    pub store: crate::fleet::settings::StoreConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToopherConfig {
    /// The API's base URL.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// TOML file with `consumer_key` and `consumer_secret`; must not be readable by group or
    /// others. Default: `$CREDENTIALS_DIRECTORY/toopher` (systemd `LoadCredential=toopher:...`)
    /// when set, else `/etc/toopher/credentials.toml`.
    #[serde(default)]
    pub credentials_file: Option<AbsPath>,
    /// Extra CA certificates (PEM) to trust, for self-hosted or test servers.
    #[serde(default)]
    pub ca_file: Option<AbsPath>,
    /// Bound on each HTTP request (and on waiting out a 429 within one), in seconds. At most
    /// 20: the module waits 45 s for any one answer of toopherd.
    #[serde(default = "default_api_timeout")]
    pub timeout: Seconds<100, 20_000>,
    /// The pace of a pending push's polls, in seconds: every min(0.2 s, this) for the
    /// first 10 s after the push went out, every `poll_interval` until 30 s, then every
    /// twice it (backend::poll_schedule); the pace of a pairing's polls.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Seconds<50, 30_000>,
    /// How long a push may wait for the person, in seconds.
    #[serde(default = "default_push_timeout")]
    pub push_timeout: Seconds<1_000, 600_000>,
    /// Whether the app may answer by itself (remembered terminal or location).
    #[serde(default = "default_true")]
    pub automation_allowed: bool,
    /// Permit a plain-http base URL (test servers only).
    #[serde(default)]
    pub allow_http: bool,
    /// The Toopher user name of a Linux account; `{user}` is replaced by the login name.
    #[serde(default = "default_user_name_format")]
    pub user_name_format: Template,
    /// Per PAM service: `automation_allowed` and the `action` shown on the phone.
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, ServicePolicy>,
}

impl Default for ToopherConfig {
    fn default() -> Self {
        ToopherConfig {
            base_url: default_base_url(),
            credentials_file: None,
            ca_file: None,
            timeout: default_api_timeout(),
            poll_interval: default_poll_interval(),
            push_timeout: default_push_timeout(),
            automation_allowed: true,
            allow_http: false,
            user_name_format: default_user_name_format(),
            services: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePolicy {
    #[serde(default)]
    pub automation_allowed: Option<bool>,
    #[serde(default)]
    pub action: Option<Label>,
}

impl ToopherConfig {
    /// Automation is off for sudo unless configured otherwise: a remembered terminal
    /// must not silently grant root.
    pub fn automation_allowed_for(&self, service: &str) -> bool {
        match self
            .services
            .get(service)
            .and_then(|p| p.automation_allowed)
        {
            Some(v) => v,
            None if service == "sudo" => false,
            None => self.automation_allowed,
        }
    }

    /// The action shown on the phone: `sudo` for sudo, `Log In` otherwise.
    pub fn action_for(&self, service: &str) -> String {
        match self.services.get(service).and_then(|p| p.action.as_ref()) {
            Some(a) => a.0.clone(),
            None if service == "sudo" => "sudo".into(),
            None => "Log In".into(),
        }
    }

    pub fn toopher_user_name(&self, user: &str) -> String {
        self.user_name_format.0.replace("{user}", user)
    }

    pub fn credentials_path(&self) -> PathBuf {
        if let Some(p) = &self.credentials_file {
            return p.0.clone();
        }
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => PathBuf::from(dir).join("toopher"),
            None => PathBuf::from("/etc/toopher/credentials.toml"),
        }
    }
}

/// A duration given in seconds (fractions allowed), within `MIN_MS..=MAX_MS`
/// milliseconds: `Seconds<100, 20_000>` is 0.1 to 20 seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds<const MIN_MS: u64, const MAX_MS: u64>(pub std::time::Duration);

impl<'de, const MIN_MS: u64, const MAX_MS: u64> Deserialize<'de> for Seconds<MIN_MS, MAX_MS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const LO: u64, const HI: u64>;
        impl<const LO: u64, const HI: u64> serde::de::Visitor<'_> for V<LO, HI> {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(
                    f,
                    "a number of seconds from {} to {}",
                    LO as f64 / 1000.0,
                    HI as f64 / 1000.0
                )
            }
            fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
        }
        let secs = d.deserialize_any(V::<MIN_MS, MAX_MS>)?;
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms < MIN_MS as f64 || ms > MAX_MS as f64 {
            return Err(serde::de::Error::custom(format!(
                "{secs} is out of range ({} to {} seconds)",
                MIN_MS as f64 / 1000.0,
                MAX_MS as f64 / 1000.0
            )));
        }
        Ok(Seconds(std::time::Duration::from_millis(ms as u64)))
    }
}

/// An http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url(pub String);

impl<'de> Deserialize<'de> for Url {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| serde::de::Error::custom("must start with https://"))?;
        if rest.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(serde::de::Error::custom("is not a URL"));
        }
        Ok(Url(s))
    }
}

/// Text with a `{user}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub String);

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !s.contains("{user}") || s.len() > 128 || s.chars().any(char::is_control) {
            return Err(serde::de::Error::custom(
                "must contain {user} (e.g. \"{user}@example.com\")",
            ));
        }
        Ok(Template(s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// RFC 6238 TOTP verified by toopherd itself; secrets in its database.
    #[default]
    Local,
    /// Push and OTP through the Toopher REST API v1 (`[toopher]`).
    Toopher,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Toopher => "toopher",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnrollMode {
    #[default]
    None,
    /// Two-way registration at the login prompt, then enrolment in the same login.
    TwoWay,
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
        struct V<const LO: u64, const HI: u64>;
        impl<const LO: u64, const HI: u64> serde::de::Visitor<'_> for V<LO, HI> {
            type Value = i64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a whole number from {LO} to {HI}")
            }
            fn visit_i64<E>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is out of range ({LO} to {HI})")))
            }
        }
        let v = d.deserialize_any(V::<LO, HI>)?;
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

fn default_registration_ttl() -> Ranged<10, 86_400> {
    Ranged(600)
}
fn default_true() -> bool {
    true
}
fn default_base_url() -> Url {
    Url("https://api.toopher.com/v1".into())
}
fn default_api_timeout() -> Seconds<100, 20_000> {
    Seconds(std::time::Duration::from_secs(10))
}
fn default_poll_interval() -> Seconds<50, 30_000> {
    Seconds(std::time::Duration::from_secs(1))
}
fn default_push_timeout() -> Seconds<1_000, 600_000> {
    Seconds(std::time::Duration::from_secs(60))
}
fn default_user_name_format() -> Template {
    Template("{user}".into())
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

/// serde's words for types, said as a person editing the file would: "expected i64"
/// means "a whole number" (the toml crate keeps the line and the caret).
fn plain_words(msg: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("invalid type: string ", "found the text "),
        ("invalid type: integer ", "found the whole number "),
        ("invalid type: floating point ", "found the number "),
        ("invalid type: boolean ", "found "),
        ("invalid type: sequence", "found a list"),
        ("invalid type: map", "found a table"),
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected text in double quotes"),
        ("expected a map", "expected a table ([section])"),
        (
            "wanted string or table",
            "expected one word in double quotes",
        ),
    ];
    let mut out = msg.to_string();
    for (from, to) in WORDS {
        out = out.replace(from, to);
    }
    const STRUCT: &str = "expected struct ";
    if let Some(start) = out.find(STRUCT) {
        let name = start + STRUCT.len();
        let end = out[name..]
            .find(char::is_whitespace)
            .map_or(out.len(), |n| name + n);
        out.replace_range(start..end, "expected a table ([section])");
    }
    out
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        Config::parse(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| plain_words(&e.to_string()))?;
        // Keys of [store] that only make sense together.
        config.store.validate().map_err(|e| e.to_string())?;
        Ok(config)
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
        assert_eq!(c.enroll, EnrollMode::None);
        assert!(c.admin_group.is_none());
        let c = Config::parse("enroll = \"two-way\"\nadmin_group = \"wheel\"\n").unwrap();
        assert_eq!(c.enroll, EnrollMode::TwoWay);
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

        let e = Config::parse("[toopher]\npush_timeout = 0\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("push_timeout"), "{e}");
        let e = Config::parse("[toopher]\nbase_url = \"ftp://x\"\n").unwrap_err();
        assert!(e.contains("base_url"), "{e}");
        let e = Config::parse("[toopher]\nuser_name_format = \"x\"\n").unwrap_err();
        assert!(e.contains("user_name_format"), "{e}");
    }

    #[test]
    fn type_errors_are_in_plain_words() {
        for (text, words) in [
            (
                "[rate_limit]\nmax_failures = \"5\"\n",
                "found the text \"5\", expected a whole number from 1 to 1000",
            ),
            (
                "[rate_limit]\nmax_failures = 2.5\n",
                "expected a whole number from 1 to 1000",
            ),
            (
                "[toopher]\ntimeout = \"10\"\n",
                "expected a number of seconds from 0.1 to 20",
            ),
            (
                "[toopher]\nautomation_allowed = 1\n",
                "found the whole number `1`, expected true or false",
            ),
            ("socket = 5\n", "expected text in double quotes"),
            ("failmode = 1\n", "expected one word in double quotes"),
            ("rate_limit = 5\n", "expected a table ([section])"),
            ("enrollment_ttl = -5\n", "-5 is out of range (60 to 86400)"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(words), "{text:?}: {e}");
            for rust in ["i64", "u64", "f64", "struct", "untagged", "variant"] {
                assert!(!e.contains(rust), "{text:?}: {e}");
            }
        }
        // Right values still parse, integers and fractions alike.
        let c = Config::parse("[toopher]\ntimeout = 5\npoll_interval = 0.5\n").unwrap();
        assert_eq!(c.toopher.timeout.0, std::time::Duration::from_secs(5));
    }

    #[test]
    fn toopher_service_policy() {
        let c = Config::parse(
            "backend = \"toopher\"\n[toopher]\npoll_interval = 0.2\nuser_name_format = \"{user}@example.com\"\n\
             [toopher.services.sshd]\naction = \"SSH login\"\n",
        )
        .unwrap();
        let t = &c.toopher;
        assert_eq!(t.poll_interval.0, std::time::Duration::from_millis(200));
        assert!(t.automation_allowed_for("sshd"));
        assert!(
            !t.automation_allowed_for("sudo"),
            "automation is off for sudo by default"
        );
        assert_eq!(t.action_for("sudo"), "sudo");
        assert_eq!(t.action_for("login"), "Log In");
        assert_eq!(t.action_for("sshd"), "SSH login");
        assert_eq!(t.toopher_user_name("alice"), "alice@example.com");
    }
}
