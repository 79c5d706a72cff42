//! The Toopher backend: push and OTP through the Toopher REST API v1 (`toopher_api`).
//! Every API answer is mapped to one [`Outcome`]; only an explicit grant is a grant.
//! Transport failures, 5xx and unparseable answers are [`Outcome::Unreachable`], which
//! the caller hands to `failmode`; everything else the API says is a policy decision.

use super::{
    Attempting, Backend, Begin, BoxFuture, CodesError, EnrolInLogin, Outcome, PhonePairing, Phones,
    PushTiming, ServiceError, Terminal,
};
use crate::config::ToopherConfig;
use crate::logging::field;
use crate::now;
use crate::store::{Attempt, Limits, LoginState, Shared, StoreError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toopher_api::{
    ApiErrorKind, AuthenticateOptions, AuthenticationRequest, Error, ErrorClass, ToopherApi,
};
use toopher_ipc::{DenyReason, LoginContext, Method};
use zeroize::Zeroizing;

/// How long an accepted OTP stays refused for a second use (longer than its ±1 step window).
const OTP_REPLAY_WINDOW: Duration = Duration::from_secs(150);

/// How long a code waits for its user's turn before the login is refused as busy.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

/// A refusal, with its log fields.
fn denied(reason: DenyReason, message: Option<String>, detail: &str) -> Outcome {
    Outcome::Denied {
        reason,
        message,
        log: format!("reason={} detail={}", reason.as_str(), field(Some(detail))),
        counted: None,
    }
}

/// Whether the account can use Toopher, as the API says before any push.
#[derive(Debug)]
enum Preauth {
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
    /// Results are recorded here under the same rate limit as the local backend's.
    store: Shared,
    limits: Limits,
    /// Per user, the turn to check a code with the API (see [`ToopherBackend::turn_of`]).
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn otp_hash(user: &str, code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(code.as_bytes());
    h.finalize().into()
}

impl ToopherBackend {
    pub fn new(
        cfg: &ToopherConfig,
        host: &str,
        store: Shared,
        limits: Limits,
    ) -> Result<ToopherBackend, String> {
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
            store,
            limits,
            turns: Mutex::default(),
        })
    }

    /// The Toopher user name of a Linux account.
    pub fn name_of(&self, user: &str) -> String {
        self.cfg.toopher_user_name(user)
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
    async fn preauth(&self, ctx: &LoginContext) -> Preauth {
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
    async fn send_push(&self, ctx: &LoginContext) -> Outcome {
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
    async fn poll_once(&self, ctx: &LoginContext, request_id: &str, deadline: Instant) -> Outcome {
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
    async fn otp(&self, ctx: &LoginContext, pending: Option<&str>, code: &str) -> Outcome {
        let name = self.user_name(ctx);
        let key = otp_hash(&name, code);
        if self.seen_recently(&name, &key) {
            return denied(DenyReason::WrongCode, None, "replayed_code");
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
                return denied(DenyReason::WrongCode, None, "otp_left_request_pending");
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
            return denied(DenyReason::Policy, None, "answer_for_another_user");
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
                automated: Some(r.automated),
                notice: None,
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
        let reason = if method == Method::Otp {
            DenyReason::WrongCode
        } else {
            DenyReason::PushDenied
        };
        let detail = match code {
            Some(c) => format!("denied reason_code={c}"),
            None => "denied".into(),
        };
        denied(
            reason,
            (!reason_text.trim().is_empty()).then_some(reason_text),
            &detail,
        )
    }

    fn map_error(&self, e: &Error) -> Outcome {
        let api_denied = |detail: &str, message: Option<&str>| {
            denied(DenyReason::Policy, message.map(str::to_owned), detail)
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

/// The login steps: the API decides, the store records the result and keeps the limit.
impl ToopherBackend {
    /// One code check at a time per user: the rate-limit check, the API call and the
    /// recording of its result are one step, so parallel connections can neither each
    /// guess inside one window nor each use one code (the local backend gets the same
    /// from its single SQLite transaction). `None` when the turn did not come within
    /// [`TURN_TIMEOUT`].
    async fn turn_of(&self, user: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
            // Forget the turns nobody holds or waits for.
            turns.retain(|_, t| Arc::strong_count(t) > 1);
            Arc::clone(turns.entry(user.to_owned()).or_default())
        };
        tokio::time::timeout(TURN_TIMEOUT, turn.lock_owned())
            .await
            .ok()
    }

    /// The user's failures refuse attempts right now, or the store failed.
    async fn refused_by_limit(&self, who: &Attempting) -> Option<Outcome> {
        let limits = self.limits;
        let user = who.ctx.user.clone();
        match self
            .store
            .call(move |s| s.rate_limited(&user, now(), limits))
            .await
        {
            Ok(None) => None,
            Ok(Some(until)) => Some(Outcome::RateLimited { until }),
            Err(e) => {
                self.store.log_error("rate limit", &e);
                Some(Outcome::Internal)
            }
        }
    }

    /// Records a grant, a wrong code or a denied push like the local backend does. A
    /// success the store could not record only loses the failure notice; a failure it
    /// could not record is not counted (and so ends the login).
    async fn recorded(&self, who: &Attempting, outcome: Outcome) -> Outcome {
        let success = match &outcome {
            Outcome::Granted { .. } => true,
            Outcome::Denied {
                reason: DenyReason::WrongCode | DenyReason::PushDenied,
                ..
            } => false,
            _ => return outcome,
        };
        let limits = self.limits;
        let (user, rhost, own, notify) = (
            who.ctx.user.clone(),
            who.ctx.rhost.clone(),
            who.own_failures.clone(),
            who.ctx.notify,
        );
        let recorded = self
            .store
            .call(move |s| {
                let attempt = Attempt {
                    rhost: rhost.as_deref(),
                    own: &own,
                    notify,
                };
                s.note_result(&user, success, now(), limits, &attempt)
            })
            .await
            .map_err(|e| self.store.failed("recording a second-factor result", &e))
            .ok();
        match outcome {
            Outcome::Granted {
                method, automated, ..
            } => Outcome::Granted {
                method,
                automated,
                notice: recorded.and_then(|r| r.notice),
            },
            Outcome::Denied {
                reason,
                message,
                log,
                ..
            } => Outcome::Denied {
                reason,
                message,
                log,
                counted: recorded.and_then(|r| r.failure),
            },
            other => other,
        }
    }

    async fn begin_login(&self, who: &Attempting) -> Begin {
        if let Some(refusal) = self.refused_by_limit(who).await {
            return Begin::Settled(refusal);
        }
        match self.preauth(&who.ctx).await {
            Preauth::Enrolled => Begin::Challenge {
                methods: vec![Method::Push, Method::Otp],
                note: None,
            },
            Preauth::Other(outcome) => Begin::Settled(self.recorded(who, outcome).await),
        }
    }

    async fn check_code(&self, who: &Attempting, code: &str, pending: Option<&str>) -> Outcome {
        let Some(_turn) = self.turn_of(&who.ctx.user).await else {
            return Outcome::Busy;
        };
        if let Some(refusal) = self.refused_by_limit(who).await {
            return refusal;
        }
        let outcome = self.otp(&who.ctx, pending, code.trim()).await;
        self.recorded(who, outcome).await
    }

    async fn push_now(&self, who: &Attempting) -> Outcome {
        if let Some(refusal) = self.refused_by_limit(who).await {
            return refusal;
        }
        let outcome = self.send_push(&who.ctx).await;
        self.recorded(who, outcome).await
    }

    async fn poll_push(&self, who: &Attempting, request_id: &str, deadline: Instant) -> Outcome {
        let outcome = self.poll_once(&who.ctx, request_id, deadline).await;
        self.recorded(who, outcome).await
    }
}

impl Backend for ToopherBackend {
    fn name(&self) -> &'static str {
        "toopher"
    }

    fn begin<'a>(&'a self, who: &'a Attempting, state: LoginState) -> BoxFuture<'a, Begin> {
        // The account's state here is the local one (enrolments of the local backend);
        // a suspension is all of it that applies to a Toopher account.
        if state == LoginState::Suspended {
            return Box::pin(async { Begin::Settled(Outcome::Suspended) });
        }
        Box::pin(self.begin_login(who))
    }

    fn verify<'a>(
        &'a self,
        who: &'a Attempting,
        code: &'a str,
        pending: Option<&'a str>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.check_code(who, code, pending))
    }

    fn push_timing(&self) -> Option<PushTiming> {
        Some(PushTiming {
            timeout: self.cfg.push_timeout.0,
            poll_interval: self.cfg.poll_interval.0,
        })
    }

    fn push<'a>(&'a self, who: &'a Attempting) -> BoxFuture<'a, Outcome> {
        Box::pin(self.push_now(who))
    }

    fn poll<'a>(
        &'a self,
        who: &'a Attempting,
        request_id: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.poll_push(who, request_id, deadline))
    }

    fn unsupported(&self, what: &str) -> String {
        format!("{what} is not offered by the toopher backend")
    }

    fn enrol_in_login<'a>(
        &'a self,
        _user: &'a str,
    ) -> BoxFuture<'a, Result<EnrolInLogin, StoreError>> {
        Box::pin(async { Ok(EnrolInLogin::PairPhrase) })
    }

    fn phones(&self) -> Option<&dyn Phones> {
        Some(self)
    }

    fn set_enabled<'a>(
        &'a self,
        user: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let name = self.name_of(user);
            let r = if enabled {
                self.api.enable_user(&name).await
            } else {
                self.api.disable_user(&name).await
            };
            r.map(|_| ()).map_err(|e| service_error(&e))
        })
    }

    fn reset<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            match self.api.reset_user(&self.name_of(user)).await {
                Ok(()) => Ok(()),
                // Unknown to Toopher: nothing to reset there.
                Err(e) if api_error(&e).0 == toopher_ipc::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(service_error(&e)),
            }
        })
    }

    fn regenerate_recovery_codes<'a>(
        &'a self,
        _user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Zeroizing<String>>, CodesError>> {
        Box::pin(async {
            Err(CodesError::Unsupported(
                "recovery codes belong to the local backend; with Toopher, use a reset link"
                    .to_owned(),
            ))
        })
    }
}

impl Phones for ToopherBackend {
    fn pair<'a>(
        &'a self,
        user: &'a str,
        phrase_or_phone: Option<&'a str>,
        country: Option<&'a str>,
        qr: bool,
    ) -> BoxFuture<'a, Result<(PhonePairing, Option<String>), ServiceError>> {
        Box::pin(async move {
            let name = self.name_of(user);
            let extras: Vec<(&str, &str)> =
                country.map(|c| ("phone_country", c)).into_iter().collect();
            let p = self
                .api
                .pair(&name, phrase_or_phone, &extras)
                .await
                .map_err(|e| service_error(&e))?;
            let image = if qr {
                let png = self
                    .api
                    .get_pairing_qr_code_image(&p.id)
                    .await
                    .map_err(|e| service_error(&e))?;
                Some(crate::qr::recompress_png(&png).map_err(|e| ServiceError {
                    kind: toopher_ipc::ErrorKind::Internal,
                    message: "the QR code from the Toopher API could not be read".into(),
                    detail: e.to_string(),
                    unreachable: false,
                    rate_limited: false,
                })?)
            } else {
                None
            };
            let pairing = PhonePairing {
                of_user: p.user.name == name,
                id: p.id,
                enabled: p.enabled,
                pending: p.pending,
            };
            Ok((pairing, image))
        })
    }

    fn pairing<'a>(
        &'a self,
        user: &'a str,
        pairing_id: &'a str,
    ) -> BoxFuture<'a, Result<PhonePairing, ServiceError>> {
        Box::pin(async move {
            let p = self
                .api
                .get_pairing_by_id(pairing_id)
                .await
                .map_err(|e| service_error(&e))?;
            Ok(PhonePairing {
                of_user: p.user.name == self.name_of(user),
                id: p.id,
                enabled: p.enabled,
                pending: p.pending,
            })
        })
    }

    fn reset_link<'a>(
        &'a self,
        pairing_id: &'a str,
        email: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, ServiceError>> {
        Box::pin(async move {
            let r = match email {
                Some(address) => self
                    .api
                    .email_pairing_reset_link_to_user(pairing_id, address, &[])
                    .await
                    .map(|()| None),
                None => self
                    .api
                    .get_pairing_reset_link(pairing_id, None, None, &[])
                    .await
                    .map(Some),
            };
            r.map_err(|e| service_error(&e))
        })
    }

    fn create_terminal<'a>(
        &'a self,
        user: &'a str,
        name: &'a str,
        requester_id: &'a str,
    ) -> BoxFuture<'a, Result<Terminal, ServiceError>> {
        Box::pin(async move {
            let t = self
                .api
                .create_user_terminal(&self.name_of(user), name, requester_id, &[])
                .await
                .map_err(|e| service_error(&e))?;
            Ok(Terminal {
                id: t.id,
                name: t.name,
                requester_specified_id: t.requester_specified_id,
                of_user: true,
            })
        })
    }

    fn terminal<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Terminal, ServiceError>> {
        Box::pin(async move {
            let t = self
                .api
                .get_user_terminal_by_id(id)
                .await
                .map_err(|e| service_error(&e))?;
            Ok(Terminal {
                of_user: t.user.name == self.name_of(user),
                id: t.id,
                name: t.name,
                requester_specified_id: t.requester_specified_id,
            })
        })
    }

    fn poll_interval(&self) -> Duration {
        self.cfg.poll_interval.0
    }
}

/// An API failure as a [`ServiceError`].
fn service_error(e: &Error) -> ServiceError {
    let (kind, message) = api_error(e);
    ServiceError {
        kind,
        message,
        detail: e.to_string(),
        unreachable: e.is_unreachable(),
        rate_limited: e.class() == ErrorClass::RateLimited,
    }
}

/// An API failure as toopherctl's error answer: which kind, and a sentence (no secrets:
/// the client's messages carry none).
fn api_error(e: &Error) -> (toopher_ipc::ErrorKind, String) {
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
    denied(
        DenyReason::UserDisabled,
        Some("Toopher is disabled for this account.".into()),
        "toopher_704_user_disabled",
    )
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
        let store = crate::store::Store::open(&dir.path().join("db")).unwrap();
        let log = std::sync::Arc::new(crate::logging::Log::stderr());
        let limits = Limits {
            max_failures: 5,
            window: 900,
        };
        ToopherBackend::new(&cfg, "web1", Shared::new(Box::new(store), log), limits).unwrap()
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
                automated: Some(false),
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
