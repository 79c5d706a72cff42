//! The Toopher backend: push and OTP through the Toopher REST API v1 (`toopher_api`).
//! Every API answer is mapped to one [`Outcome`]; only an explicit grant is a grant.
//! Transport failures, 5xx and unparseable answers are [`Outcome::Unreachable`], which
//! the caller hands to `failmode`; everything else the API says is a policy decision.

use crate::config::ToopherConfig;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use toopher_api::{
    ApiErrorKind, AuthenticateOptions, AuthenticationRequest, Error, ErrorClass, ToopherApi,
};
use toopher_ipc::{DenyReason, LoginContext, Method};
use zeroize::Zeroizing;

/// How long an accepted OTP stays refused for a second use (longer than its ±1 step window).
const OTP_REPLAY_WINDOW: Duration = Duration::from_secs(150);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Granted {
        method: Method,
        automated: bool,
    },
    Denied {
        reason: DenyReason,
        /// Text for the person (the API's `reason`, or ours).
        message: Option<String>,
        /// For the log: which answer this was.
        detail: String,
    },
    /// A push is out and waiting for the person.
    Pending {
        request_id: String,
    },
    /// The API does not know the user (705, or no user of that name).
    NotEnrolled,
    /// The API requires an OTP for this user (708).
    OtpRequired,
    /// The API could not be reached or answered nonsense: `failmode` decides.
    Unreachable(String),
}

/// Whether the account can use Toopher, as the API says before any push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preauth {
    Enrolled,
    Other(Outcome),
}

pub struct Credentials {
    pub consumer_key: String,
    pub consumer_secret: Zeroizing<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    consumer_key: String,
    consumer_secret: String,
}

/// Reads the API credentials; refused when others than the owner may read the file.
pub fn load_credentials(path: &Path) -> Result<Credentials, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("credentials file {shown}: {e}"))?;
    // systemd's credentials directory is private to the service already, and may grant
    // the service user access through an ACL (which shows as group bits): only files
    // elsewhere are judged by their mode and owner.
    let from_systemd = std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|dir| !dir.is_empty() && path.starts_with(&dir));
    if !from_systemd {
        check_private(&meta, path)?;
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("credentials file {shown}: {e}"))?,
    );
    // The parser's message would quote the offending line, which may hold the secret.
    let parsed: CredentialsFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0);
        format!("credentials file {shown}: invalid at line {line}; expected consumer_key = \"...\" and consumer_secret = \"...\"")
    })?;
    if parsed.consumer_key.is_empty() || parsed.consumer_secret.is_empty() {
        return Err(format!(
            "credentials file {shown}: consumer_key and consumer_secret must not be empty"
        ));
    }
    Ok(Credentials {
        consumer_key: parsed.consumer_key,
        consumer_secret: Zeroizing::new(parsed.consumer_secret),
    })
}

/// Accepted OTPs per user: (hash of user and code, accepted at).
type RecentOtps = HashMap<String, Vec<([u8; 32], Instant)>>;

/// A credentials file outside systemd's credentials directory: owner-only, and owned by
/// root or by toopherd's user.
fn check_private(meta: &std::fs::Metadata, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "credentials file {shown} has mode {mode:04o}; it must not be readable by group or others (chmod 600 {shown})"
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(format!(
            "credentials file {shown} must be owned by root or by toopherd's user"
        ));
    }
    Ok(())
}

pub struct ToopherBackend {
    api: ToopherApi,
    cfg: ToopherConfig,
    host: String,
    /// Refused if typed again within [`OTP_REPLAY_WINDOW`].
    recent_otps: Mutex<RecentOtps>,
}

fn otp_hash(user: &str, code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(code.as_bytes());
    h.finalize().into()
}

impl ToopherBackend {
    pub fn new(cfg: &ToopherConfig, host: &str) -> Result<ToopherBackend, String> {
        let creds = load_credentials(&cfg.credentials_path())?;
        let mut b = ToopherApi::builder(creds.consumer_key.clone(), creds.consumer_secret.as_str())
            .base_url(cfg.base_url.0.clone())
            .timeout(cfg.timeout.0)
            .connect_timeout(cfg.timeout.0.min(Duration::from_secs(5)))
            .user_agent(concat!("toopherd/", env!("CARGO_PKG_VERSION"), " (rust)"))
            .allow_http(cfg.allow_http);
        if let Some(ca) = &cfg.ca_file {
            b = b.ca_file(ca.0.clone());
        }
        let api = b.build().map_err(|e| format!("toopher backend: {e}"))?;
        Ok(ToopherBackend {
            api,
            cfg: cfg.clone(),
            host: host.to_owned(),
            recent_otps: Mutex::new(HashMap::new()),
        })
    }

    /// The client, for toopherctl's account operations.
    pub fn api(&self) -> &ToopherApi {
        &self.api
    }

    /// The Toopher user name of a Linux account.
    pub fn name_of(&self, user: &str) -> String {
        self.cfg.toopher_user_name(user)
    }

    pub fn push_timeout(&self) -> Duration {
        self.cfg.push_timeout.0
    }

    pub fn poll_interval(&self) -> Duration {
        self.cfg.poll_interval.0
    }

    /// The terminal a person recognises: host, service and where the login comes from;
    /// its id is stable for that triple so the app can remember it.
    pub fn terminal(&self, ctx: &LoginContext) -> (String, String) {
        let from = match (&ctx.rhost, &ctx.tty) {
            (Some(r), _) => format!(" from {r}"),
            (None, Some(t)) => format!(" on {t}"),
            (None, None) => String::new(),
        };
        let name: String = format!("{} {}{from}", self.host, ctx.service)
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        let mut h = Sha256::new();
        for part in [
            self.host.as_str(),
            ctx.service.as_str(),
            ctx.rhost.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let id: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (name, id)
    }

    fn options(&self, ctx: &LoginContext) -> AuthenticateOptions {
        let (name, id) = self.terminal(ctx);
        AuthenticateOptions::new()
            .terminal_name(name)
            .requester_specified_terminal_id(id)
            .action_name(self.cfg.action_for(&ctx.service))
            .automation_allowed(self.cfg.automation_allowed_for(&ctx.service))
    }

    fn user_name(&self, ctx: &LoginContext) -> String {
        self.cfg.toopher_user_name(&ctx.user)
    }

    /// Runs `call` and, while the API answers 429, waits as told (within `deadline`).
    async fn with_backoff<T, F, Fut>(&self, deadline: Instant, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        loop {
            match call().await {
                Err(e) if e.class() == ErrorClass::RateLimited => {
                    let wait = e
                        .retry_after()
                        .unwrap_or(Duration::from_secs(1))
                        .max(Duration::from_millis(100));
                    if Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Does the API know the user, and may they use Toopher?
    pub async fn preauth(&self, ctx: &LoginContext) -> Preauth {
        let name = self.user_name(ctx);
        let deadline = Instant::now() + self.cfg.timeout.0;
        match self
            .with_backoff(deadline, || self.api.get_user_by_name(&name))
            .await
        {
            Ok(u) if u.toopher_authentication_enabled => Preauth::Enrolled,
            Ok(_) => Preauth::Other(user_disabled()),
            Err(e) => Preauth::Other(self.map_error(&e)),
        }
    }

    /// Sends a push.
    pub async fn push(&self, ctx: &LoginContext) -> Outcome {
        let name = self.user_name(ctx);
        let opts = self.options(ctx);
        // Back-off stays within one request's time, so the module's wait covers it.
        let deadline = Instant::now() + self.cfg.timeout.0;
        match self
            .with_backoff(deadline, || {
                self.api.authenticate_by_user_name(&name, &opts)
            })
            .await
        {
            Ok(r) => self.answer(&name, &r, Method::Push),
            Err(e) => self.map_error(&e),
        }
    }

    /// Polls a pending push once. A 429 is waited out as told within `deadline`; past it,
    /// the push simply stays pending (the API asked us to slow down, not to give up).
    pub async fn poll(&self, ctx: &LoginContext, request_id: &str, deadline: Instant) -> Outcome {
        let name = self.user_name(ctx);
        match self
            .with_backoff(deadline, || {
                self.api.get_authentication_request_by_id(request_id)
            })
            .await
        {
            Ok(r) => self.answer(&name, &r, Method::Push),
            Err(e) if e.class() == ErrorClass::RateLimited => Outcome::Pending {
                request_id: request_id.to_owned(),
            },
            Err(e) => self.map_error(&e),
        }
    }

    /// Verifies a typed OTP: it settles the pending push (`otp_auth`) when there is one,
    /// else goes as `otp` on a new request. A code accepted once is refused again.
    pub async fn otp(&self, ctx: &LoginContext, pending: Option<&str>, code: &str) -> Outcome {
        let name = self.user_name(ctx);
        let key = otp_hash(&name, code);
        if self.seen_recently(&name, &key) {
            return Outcome::Denied {
                reason: DenyReason::WrongCode,
                message: None,
                detail: "replayed_code".into(),
            };
        }
        let deadline = Instant::now() + self.cfg.timeout.0;
        let result = match pending {
            Some(id) => {
                self.with_backoff(deadline, || self.api.authenticate_with_otp(id, code, &[]))
                    .await
            }
            None => {
                let opts = self.options(ctx).otp(code);
                self.with_backoff(deadline, || {
                    self.api.authenticate_by_user_name(&name, &opts)
                })
                .await
            }
        };
        let outcome = match result {
            Ok(r) => self.answer(&name, &r, Method::Otp),
            Err(e) => self.map_error(&e),
        };
        match &outcome {
            Outcome::Granted { .. } => self.remember(&name, key),
            // A settled request that is still pending would be a server bug: not a grant.
            Outcome::Pending { .. } => {
                return Outcome::Denied {
                    reason: DenyReason::WrongCode,
                    message: None,
                    detail: "otp_left_request_pending".into(),
                };
            }
            _ => {}
        }
        outcome
    }

    fn seen_recently(&self, user: &str, key: &[u8; 32]) -> bool {
        let Ok(mut map) = self.recent_otps.lock() else {
            return true; // fail closed
        };
        let now = Instant::now();
        map.retain(|_, v| {
            v.retain(|(_, at)| now.duration_since(*at) < OTP_REPLAY_WINDOW);
            !v.is_empty()
        });
        map.get(user).is_some_and(|v| {
            v.iter()
                .any(|(h, _)| subtle::ConstantTimeEq::ct_eq(&h[..], &key[..]).into())
        })
    }

    fn remember(&self, user: &str, key: [u8; 32]) {
        if let Ok(mut map) = self.recent_otps.lock() {
            map.entry(user.to_owned())
                .or_default()
                .push((key, Instant::now()));
        }
    }

    /// An authentication request's state. Only `pending == false && granted == true` for
    /// the user we asked about is a grant.
    fn answer(&self, user: &str, r: &AuthenticationRequest, method: Method) -> Outcome {
        if !r.user.name.is_empty() && r.user.name != user {
            return Outcome::Denied {
                reason: DenyReason::Policy,
                message: None,
                detail: "answer_for_another_user".into(),
            };
        }
        if r.pending {
            return if r.id.is_empty() {
                Outcome::Unreachable("pending request without an id".into())
            } else {
                Outcome::Pending {
                    request_id: r.id.clone(),
                }
            };
        }
        if r.granted {
            return Outcome::Granted {
                method,
                automated: r.automated,
            };
        }
        let reason_text: String = r
            .reason
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let code = r.reason_code_number();
        if code == Some(708) {
            return Outcome::OtpRequired;
        }
        Outcome::Denied {
            reason: if method == Method::Otp {
                DenyReason::WrongCode
            } else {
                DenyReason::PushDenied
            },
            message: (!reason_text.trim().is_empty()).then_some(reason_text),
            detail: match code {
                Some(c) => format!("denied reason_code={c}"),
                None => "denied".into(),
            },
        }
    }

    fn map_error(&self, e: &Error) -> Outcome {
        let api_denied = |detail: &str, message: Option<&str>| Outcome::Denied {
            reason: DenyReason::Policy,
            message: message.map(str::to_owned),
            detail: detail.into(),
        };
        match e.class() {
            ErrorClass::Unreachable | ErrorClass::ServerError | ErrorClass::InvalidResponse => {
                return Outcome::Unreachable(e.to_string());
            }
            ErrorClass::RateLimited => {
                return api_denied(
                    "toopher_429_rate_limited",
                    Some("The second-factor service is busy; try again shortly."),
                );
            }
            ErrorClass::Local => return api_denied(&format!("toopher_client_error {e}"), None),
            ErrorClass::Rejected => {}
        }
        if matches!(e, Error::NoSuchUser(_)) {
            return Outcome::NotEnrolled;
        }
        match e.api_kind() {
            Some(ApiErrorKind::UserDisabled) => user_disabled(),
            Some(ApiErrorKind::UserUnknown) => Outcome::NotEnrolled,
            Some(ApiErrorKind::RequiresOtp) => Outcome::OtpRequired,
            Some(ApiErrorKind::TerminalUnknown) => api_denied("toopher_706_terminal_unknown", None),
            Some(ApiErrorKind::PairingDeactivated) => api_denied(
                "toopher_707_pairing_deactivated",
                Some("Your phone is no longer paired; ask an administrator to pair it again."),
            ),
            Some(ApiErrorKind::NotAllowed) => api_denied("toopher_601_not_allowed", None),
            Some(ApiErrorKind::Unauthorized) => {
                api_denied("toopher_401_credentials_rejected", None)
            }
            _ => api_denied(
                &format!(
                    "toopher_error status={} code={}",
                    e.status().map_or("-".into(), |s| s.to_string()),
                    e.error_code().map_or("-".into(), |c| c.to_string())
                ),
                None,
            ),
        }
    }
}

/// An API failure as toopherctl's error answer: which kind, and a sentence (no secrets:
/// the client's messages carry none).
pub fn api_error(e: &Error) -> (toopher_ipc::ErrorKind, String) {
    use toopher_ipc::ErrorKind as K;
    let kind = match e.class() {
        ErrorClass::Unreachable | ErrorClass::ServerError | ErrorClass::InvalidResponse => {
            K::Internal
        }
        ErrorClass::RateLimited => K::Busy,
        ErrorClass::Local => K::BadRequest,
        ErrorClass::Rejected => match e.api_kind() {
            Some(ApiErrorKind::NotFound | ApiErrorKind::UserUnknown) => K::NotFound,
            _ if matches!(e, Error::NoSuchUser(_)) => K::NotFound,
            Some(
                ApiErrorKind::Conflict
                | ApiErrorKind::UserDisabled
                | ApiErrorKind::PairingDeactivated,
            ) => K::Conflict,
            _ => K::BadRequest,
        },
    };
    (kind, format!("the Toopher API said: {e}"))
}

fn user_disabled() -> Outcome {
    Outcome::Denied {
        reason: DenyReason::UserDisabled,
        message: Some("Toopher is disabled for this account.".into()),
        detail: "toopher_704_user_disabled".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> ToopherBackend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "consumer_key = \"k\"\nconsumer_secret = \"s\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = ToopherConfig {
            credentials_file: Some(crate::config::AbsPath(path)),
            ..Default::default()
        };
        ToopherBackend::new(&cfg, "web1").unwrap()
    }

    fn ctx(service: &str, rhost: Option<&str>) -> LoginContext {
        LoginContext {
            user: "alice".into(),
            service: service.into(),
            rhost: rhost.map(str::to_owned),
            tty: None,
            ruser: None,
            autopush: false,
            notify: false,
        }
    }

    #[test]
    fn terminals_are_named_and_stable() {
        let b = backend();
        let (name, id) = b.terminal(&ctx("sshd", Some("192.0.2.7")));
        assert_eq!(name, "web1 sshd from 192.0.2.7");
        assert_eq!(id.len(), 32);
        assert_eq!(b.terminal(&ctx("sshd", Some("192.0.2.7"))).1, id);
        assert_ne!(b.terminal(&ctx("sshd", Some("192.0.2.8"))).1, id);
        assert_ne!(b.terminal(&ctx("sudo", Some("192.0.2.7"))).1, id);
        let (evil, _) = b.terminal(&ctx("sshd", Some("x\x1b[2J\ny")));
        assert!(!evil.chars().any(char::is_control));
    }

    #[test]
    fn loose_credentials_are_refused_without_showing_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "consumer_key = \"k\"\nconsumer_secret = \"hunter2\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_credentials(&path).err().unwrap();
        assert!(e.contains("0640") && e.contains("chmod 600"), "{e}");
        std::fs::write(&path, "consumer_key = \"k\"\nconsumer_secret = hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_credentials(&path).err().unwrap();
        assert!(!e.contains("hunter2") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn only_a_settled_grant_for_our_user_is_a_grant() {
        let b = backend();
        let req =
            |v: serde_json::Value| -> AuthenticationRequest { serde_json::from_value(v).unwrap() };
        let base = serde_json::json!({"id":"r1","pending":false,"granted":true,"automated":false,"reason":"",
            "terminal":{"id":"t","name":"n","requester_specified_id":"x","user":{"id":"u","name":"alice","toopher_authentication_enabled":true}},
            "user":{"id":"u","name":"alice","toopher_authentication_enabled":true},"action":{"id":"a","name":"Log In"}});
        assert!(matches!(
            b.answer("alice", &req(base.clone()), Method::Push),
            Outcome::Granted {
                automated: false,
                ..
            }
        ));
        assert!(matches!(
            b.answer("mallory", &req(base.clone()), Method::Push),
            Outcome::Denied { .. }
        ));
        let mut pending = base.clone();
        pending["pending"] = true.into();
        assert_eq!(
            b.answer("alice", &req(pending), Method::Push),
            Outcome::Pending {
                request_id: "r1".into()
            }
        );
        let mut denied = base;
        denied["granted"] = false.into();
        denied["reason"] = "Not me\x1b[31m".into();
        match b.answer("alice", &req(denied), Method::Push) {
            Outcome::Denied {
                reason: DenyReason::PushDenied,
                message: Some(m),
                ..
            } => assert_eq!(m, "Not me[31m"),
            other => panic!("{other:?}"),
        }
    }
}
