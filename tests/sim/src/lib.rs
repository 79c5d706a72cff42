//! `toopher_sim`: a simulator of the Toopher REST API v1 (see
//! `doc/TOOPHER_API.md`) for tests and demos.
//!
//! - Serves the v1 endpoints under `/v1` over HTTPS (a CA and a server certificate it
//!   generates; the CA PEM is written to a file a client can trust) or plain HTTP.
//! - Verifies every OAuth 1.0a signature: a bad signature, an unknown consumer, a
//!   stale timestamp or a reused nonce is answered 401, as the real service did.
//! - Keeps users, pairings (each with its own TOTP secret), terminals and
//!   authentication requests in memory.
//! - A control interface: [`SimHandle`] in-process, and the same operations over
//!   unsigned JSON under `/_sim/` (see the README).

#![forbid(unsafe_code)]

mod server;
pub mod state;
pub mod util;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};

pub use state::{AutoAnswer, SimEvent, reason};
use state::{PairingKind, State};

/// How to start a simulator.
#[derive(Clone)]
pub struct SimOptions {
    /// Where to listen (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Serve HTTPS (default) or plain HTTP.
    pub tls: bool,
    /// Where to write the CA certificate (PEM); default a new temporary directory.
    pub ca_file: Option<PathBuf>,
    /// Extra names for the server certificate (it always has `localhost`, `127.0.0.1`
    /// and `::1`).
    pub hostnames: Vec<String>,
    /// Consumer key (default random).
    pub consumer_key: Option<String>,
    /// Consumer secret (default random).
    pub consumer_secret: Option<String>,
    /// How far `oauth_timestamp` may be from now (default 300 s).
    pub timestamp_window: Duration,
    /// Pending requests time out after this (default: never, they stay pending).
    pub request_ttl: Option<Duration>,
    /// Answer pushes automatically.
    pub auto_answer: Option<AutoAnswer>,
    /// Send `reason_code` as a string instead of an integer.
    pub string_reason_codes: bool,
}

impl fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("consumer_key", &self.consumer_key)
            .field(
                "consumer_secret",
                &self.consumer_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            ca_file: None,
            hostnames: Vec::new(),
            consumer_key: None,
            consumer_secret: None,
            timestamp_window: Duration::from_secs(300),
            request_ttl: None,
            auto_answer: None,
            string_reason_codes: false,
        }
    }
}

impl SimOptions {
    /// Plain HTTP on an ephemeral loopback port.
    pub fn http() -> Self {
        SimOptions {
            tls: false,
            ..Self::default()
        }
    }
}

/// A failure to inject into matching API calls (before OAuth verification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// Answer with this status and a JSON error body.
    Status {
        /// HTTP status.
        status: u16,
        /// `error_code` (default: the status).
        #[serde(default)]
        error_code: Option<i64>,
        /// `error_message` (default "Simulated failure").
        #[serde(default)]
        error_message: Option<String>,
    },
    /// 429 with `Retry-After: retry_after`.
    RateLimit {
        /// Seconds.
        retry_after: u64,
    },
    /// Wait this long, then answer normally (use more than the client's timeout).
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// A body that is not JSON, with this status (default 200).
    Malformed {
        /// HTTP status.
        #[serde(default = "default_200")]
        status: u16,
    },
    /// Close the connection without an answer.
    Drop,
    /// Answer with exactly this status and body (JSON content type), e.g. an object
    /// of the wrong shape or for another id.
    Respond {
        /// HTTP status.
        status: u16,
        /// The body, sent as is.
        body: String,
    },
}

fn default_200() -> u16 {
    200
}

/// Which calls a failure applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRule {
    /// A path below `/v1` (`/authentication_requests/initiate`); `*` matches one
    /// segment (`/authentication_requests/*`); `*` alone matches every call.
    pub endpoint: String,
    /// Only this method (`GET`/`POST`), default any.
    #[serde(default)]
    pub method: Option<String>,
    /// What to do.
    pub failure: Failure,
    /// How many calls to fail (default: until cleared).
    #[serde(default)]
    pub count: Option<u32>,
}

impl FailureRule {
    /// A rule for every method, until cleared.
    pub fn new(endpoint: impl Into<String>, failure: Failure) -> Self {
        FailureRule {
            endpoint: endpoint.into(),
            method: None,
            failure,
            count: None,
        }
    }

    /// Only the next `n` matching calls.
    pub fn times(mut self, n: u32) -> Self {
        self.count = Some(n);
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        if self.endpoint == "*" {
            return true;
        }
        let pat: Vec<&str> = self.endpoint.trim_matches('/').split('/').collect();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        pat.len() == segs.len() && pat.iter().zip(&segs).all(|(p, s)| *p == "*" || p == s)
    }
}

/// One API call as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Sequence number from 1.
    pub seq: u64,
    /// `GET` or `POST`.
    pub method: String,
    /// The path below `/v1`.
    pub path: String,
    /// Query and form parameters (not the `oauth_*` ones); `otp` shown as `<redacted>`.
    pub params: Vec<(String, String)>,
    /// The status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
    /// Whether the OAuth signature was accepted (false also when a failure was
    /// injected before the check).
    pub oauth_ok: bool,
    /// The injected failure, if any.
    pub injected: Option<String>,
}

impl LogEntry {
    /// The value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A user created through the control interface.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimUser {
    /// User id.
    pub user_id: String,
    /// User name.
    pub name: String,
    /// The pairing, when one was made.
    pub pairing_id: Option<String>,
    /// The pairing's TOTP secret, base32 (what the phone app holds).
    pub totp_secret: Option<String>,
}

impl fmt::Debug for SimUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUser")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("pairing_id", &self.pairing_id)
            .field(
                "totp_secret",
                &self.totp_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How to create a user through the control interface.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewUser {
    /// User name.
    pub name: String,
    /// Make a pairing (default true).
    #[serde(default = "default_true")]
    pub paired: bool,
    /// Leave the pairing pending (the phone has not completed it yet).
    #[serde(default)]
    pub pending: bool,
    /// The TOTP secret, base32 (default random).
    #[serde(default)]
    pub totp_secret: Option<String>,
    /// Toopher authentication enabled (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Answer 708 to an initiate without `otp`.
    #[serde(default)]
    pub requires_otp: bool,
    /// Create even if a user of that name exists (to test "multiple users").
    #[serde(default)]
    pub duplicate: bool,
}

fn default_true() -> bool {
    true
}

impl NewUser {
    /// A paired, enabled user with a random TOTP secret.
    pub fn paired(name: impl Into<String>) -> Self {
        NewUser {
            name: name.into(),
            paired: true,
            enabled: true,
            ..Default::default()
        }
    }
}

/// A request as the control interface shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimRequest {
    /// Request id.
    pub id: String,
    /// Still waiting.
    pub pending: bool,
    /// Granted.
    pub granted: bool,
    /// Answered by the app itself.
    pub automated: bool,
    /// Reason text.
    pub reason: String,
    /// User name.
    pub user_name: String,
    /// Pairing id.
    pub pairing_id: String,
    /// Terminal name.
    pub terminal_name: String,
    /// Terminal requester-specified id.
    pub terminal_requester_specified_id: String,
    /// Action name.
    pub action_name: String,
    /// `automation_allowed` as sent (default true).
    pub automation_allowed: bool,
    /// `challenge_required` as sent (default false).
    pub challenge_required: bool,
}

/// Errors of the control interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No such object.
    NotFound(String),
    /// Bad input.
    Invalid(String),
    /// A user of that name exists.
    Exists(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotFound(m) => write!(f, "not found: {m}"),
            ControlError::Invalid(m) => write!(f, "invalid: {m}"),
            ControlError::Exists(m) => write!(f, "exists: {m}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// The mutable part of a running simulator.
pub(crate) struct Core {
    pub state: State,
    pub nonces: std::collections::HashMap<String, u64>,
    pub failures: Vec<FailureRule>,
    pub log: Vec<LogEntry>,
    pub seq: u64,
}

pub(crate) struct Shared {
    pub core: Mutex<Core>,
    pub consumer_key: String,
    pub consumer_secret: String,
    pub timestamp_window: u64,
    pub events: broadcast::Sender<SimEvent>,
    pub notify: Notify,
    pub base_url: String,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends out the events the state produced, and schedules auto answers.
    pub fn flush_events(self: &Arc<Self>, core: &mut Core) {
        let events: Vec<SimEvent> = std::mem::take(&mut core.state.events);
        if events.is_empty() {
            return;
        }
        for ev in events {
            if let SimEvent::NewRequest { id, .. } = &ev
                && let Some(auto) = core.state.auto_answer.clone()
            {
                let allowed = core
                    .state
                    .requests
                    .get(id)
                    .is_some_and(|r| r.automation_allowed);
                if !auto.automated || allowed {
                    let shared = Arc::clone(self);
                    let id = id.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(auto.after_ms)).await;
                        let mut core = shared.lock();
                        let (reason, code) = match (auto.grant, auto.automated) {
                            (true, true) => ("Automatically granted", reason::AUTOMATED),
                            (true, false) => ("Granted by the simulator", reason::GRANTED),
                            (false, _) => ("Denied by the simulator", reason::DENIED),
                        };
                        let reason = auto.reason.clone().unwrap_or_else(|| reason.to_owned());
                        core.state
                            .settle(&id, auto.grant, auto.automated, &reason, code);
                        shared.flush_events(&mut core);
                    });
                }
            }
            let _ = self.events.send(ev);
        }
        self.notify.notify_waiters();
    }
}

/// The simulator.
pub struct Simulator;

impl Simulator {
    /// Starts a simulator on the current tokio runtime.
    pub async fn start(opts: SimOptions) -> std::io::Result<SimHandle> {
        server::start(opts).await
    }
}

/// A running simulator: its address and credentials, and the control operations.
/// Dropping it stops the server.
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) addr: SocketAddr,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) ca_dir_created: Option<PathBuf>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tls: bool,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("base_url", &self.shared.base_url)
            .field("consumer_key", &self.shared.consumer_key)
            .field("consumer_secret", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(dir) = &self.ca_dir_created {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn to_request(state: &State, r: &state::RequestRec) -> SimRequest {
    let t = state.terminals.get(&r.terminal_id);
    SimRequest {
        id: r.id.clone(),
        pending: r.pending,
        granted: r.granted,
        automated: r.automated,
        reason: r.reason.clone(),
        user_name: state
            .users
            .get(&r.user_id)
            .map(|u| u.name.clone())
            .unwrap_or_default(),
        pairing_id: r.pairing_id.clone(),
        terminal_name: t.map(|t| t.name.clone()).unwrap_or_default(),
        terminal_requester_specified_id: t
            .map(|t| t.requester_specified_id.clone())
            .unwrap_or_default(),
        action_name: r.action_name.clone(),
        automation_allowed: r.automation_allowed,
        challenge_required: r.challenge_required,
    }
}

impl SimHandle {
    /// The API base URL, e.g. `https://127.0.0.1:43211/v1`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The control URL, e.g. `https://127.0.0.1:43211/_sim`.
    pub fn control_url(&self) -> String {
        format!("{}/_sim", self.shared.base_url.trim_end_matches("/v1"))
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The consumer key.
    pub fn consumer_key(&self) -> &str {
        &self.shared.consumer_key
    }

    /// The consumer secret.
    pub fn consumer_secret(&self) -> &str {
        &self.shared.consumer_secret
    }

    /// The CA certificate file to trust (HTTPS only).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }

    /// The machine-readable start line (JSON): `url`, `control_url`, `consumer_key`,
    /// `consumer_secret`, `ca_file`, `port`, `pid`.
    pub fn info_json(&self) -> Value {
        json!({
            "url": self.base_url(),
            "control_url": self.control_url(),
            "consumer_key": self.consumer_key(),
            "consumer_secret": self.consumer_secret(),
            "ca_file": self.ca_file.as_ref().map(|p| p.display().to_string()),
            "port": self.addr.port(),
            "pid": std::process::id(),
        })
    }

    /// Subscribes to events (new pushes, answers).
    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.shared.events.subscribe()
    }

    /// Creates a user, paired or not.
    pub fn create_user(&self, spec: &NewUser) -> Result<SimUser, ControlError> {
        control_create_user(&self.shared, spec)
    }

    /// Creates a paired, enabled user with a random TOTP secret.
    pub fn create_paired_user(&self, name: &str) -> Result<SimUser, ControlError> {
        self.create_user(&NewUser::paired(name))
    }

    /// Sets a user's `toopher_authentication_enabled` and `requires_otp`.
    pub fn update_user(
        &self,
        name: &str,
        enabled: Option<bool>,
        requires_otp: Option<bool>,
    ) -> Result<(), ControlError> {
        let mut core = self.shared.lock();
        let id = core
            .state
            .user_by_name(name)
            .map(|u| u.id.clone())
            .ok_or_else(|| ControlError::NotFound(format!("user {name}")))?;
        if let Some(u) = core.state.users.get_mut(&id) {
            if let Some(e) = enabled {
                u.enabled = e;
            }
            if let Some(r) = requires_otp {
                u.requires_otp = r;
            }
        }
        Ok(())
    }

    /// Completes a pending pairing (QR scanned, SMS link followed).
    pub fn complete_pairing(&self, pairing_id: &str) -> Result<(), ControlError> {
        let mut core = self.shared.lock();
        if core.state.complete_pairing(pairing_id) {
            Ok(())
        } else {
            Err(ControlError::NotFound(format!(
                "pending pairing {pairing_id}"
            )))
        }
    }

    /// Completes the pending pairing started with this phrase (as if the person typed
    /// it in the app). Returns the pairing id.
    pub fn enter_pairing_phrase(&self, phrase: &str) -> Result<String, ControlError> {
        control_enter_phrase(&self.shared, phrase)
    }

    /// Deactivates a pairing.
    pub fn deactivate_pairing(&self, pairing_id: &str) -> Result<(), ControlError> {
        let mut core = self.shared.lock();
        match core.state.pairings.get_mut(pairing_id) {
            Some(p) => {
                p.deactivated = true;
                p.enabled = false;
                Ok(())
            }
            None => Err(ControlError::NotFound(format!("pairing {pairing_id}"))),
        }
    }

    /// The id of the user's active (not deactivated) pairing.
    pub fn active_pairing_id(&self, user_name: &str) -> Option<String> {
        let core = self.shared.lock();
        let uid = core.state.user_by_name(user_name)?.id.clone();
        core.state.active_pairing(&uid).map(|p| p.id.clone())
    }

    /// The pairing's TOTP secret, base32.
    pub fn totp_secret(&self, pairing_id: &str) -> Result<String, ControlError> {
        let core = self.shared.lock();
        core.state
            .pairings
            .get(pairing_id)
            .map(|p| util::base32_encode(&p.totp_secret))
            .ok_or_else(|| ControlError::NotFound(format!("pairing {pairing_id}")))
    }

    /// The pairing's current TOTP code (what the app shows now).
    pub fn current_otp(&self, pairing_id: &str) -> Result<String, ControlError> {
        let core = self.shared.lock();
        core.state
            .pairings
            .get(pairing_id)
            .map(|p| util::totp(&p.totp_secret, util::now_unix()))
            .ok_or_else(|| ControlError::NotFound(format!("pairing {pairing_id}")))
    }

    /// All authentication requests, oldest first.
    pub fn requests(&self) -> Vec<SimRequest> {
        control_requests(&self.shared)
    }

    /// The pending authentication requests, oldest first.
    pub fn pending_requests(&self) -> Vec<SimRequest> {
        self.requests().into_iter().filter(|r| r.pending).collect()
    }

    /// Grants a pending request (`"latest"` is the newest pending one).
    pub fn grant(&self, id: &str) -> Result<(), ControlError> {
        control_answer(&self.shared, id, Answer::Grant, None)
    }

    /// Denies a pending request with a reason.
    pub fn deny(&self, id: &str, reason: &str) -> Result<(), ControlError> {
        control_answer(&self.shared, id, Answer::Deny, Some(reason))
    }

    /// Times out a pending request (pending=false, granted=false, "timed out").
    pub fn time_out(&self, id: &str) -> Result<(), ControlError> {
        control_answer(&self.shared, id, Answer::Timeout, None)
    }

    /// Answers every later push automatically (`None` turns it off).
    pub fn set_auto_answer(&self, auto: Option<AutoAnswer>) {
        self.shared.lock().state.auto_answer = auto;
    }

    /// Pending requests time out after `ttl` (`None`: never).
    pub fn set_request_ttl(&self, ttl: Option<Duration>) {
        self.shared.lock().state.request_ttl = ttl;
    }

    /// Injects a failure.
    pub fn inject_failure(&self, rule: FailureRule) {
        self.shared.lock().failures.push(rule);
    }

    /// Removes every injected failure.
    pub fn clear_failures(&self) {
        self.shared.lock().failures.clear();
    }

    /// The request log.
    pub fn request_log(&self) -> Vec<LogEntry> {
        self.shared.lock().log.clone()
    }

    /// Empties the request log.
    pub fn clear_log(&self) {
        self.shared.lock().log.clear();
    }

    /// The `(pairing_id, email)` of every reset link sent by e-mail.
    pub fn reset_emails(&self) -> Vec<(String, String)> {
        self.shared.lock().state.reset_emails.clone()
    }

    /// Waits until a request is pending; its id (the newest), or `None` on timeout.
    pub async fn wait_for_pending(&self, timeout: Duration) -> Option<String> {
        wait_pending(&self.shared, timeout).await
    }

    /// Stops the server.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

pub(crate) async fn wait_pending(shared: &Arc<Shared>, timeout: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = shared.notify.notified();
        {
            let mut core = shared.lock();
            core.state.expire_stale();
            shared.flush_events(&mut core);
            if let Some(id) = core.state.pending_ids().last() {
                return Some(id.clone());
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return None;
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Answer {
    Grant,
    Deny,
    Timeout,
}

pub(crate) fn control_answer(
    shared: &Arc<Shared>,
    id: &str,
    answer: Answer,
    reason: Option<&str>,
) -> Result<(), ControlError> {
    let mut core = shared.lock();
    core.state.expire_stale();
    let id = if id == "latest" {
        core.state
            .pending_ids()
            .last()
            .cloned()
            .ok_or_else(|| ControlError::NotFound("no pending request".into()))?
    } else {
        id.to_owned()
    };
    let (granted, default_reason, code) = match answer {
        Answer::Grant => (true, "Granted by the simulator", reason::GRANTED),
        Answer::Deny => (false, "Denied by the simulator", reason::DENIED),
        Answer::Timeout => (false, "The request has timed out.", reason::TIMED_OUT),
    };
    let reason = reason.unwrap_or(default_reason);
    let ok = core.state.settle(&id, granted, false, reason, code);
    shared.flush_events(&mut core);
    if ok {
        Ok(())
    } else {
        Err(ControlError::NotFound(format!("pending request {id}")))
    }
}

pub(crate) fn control_requests(shared: &Arc<Shared>) -> Vec<SimRequest> {
    let mut core = shared.lock();
    core.state.expire_stale();
    shared.flush_events(&mut core);
    core.state
        .request_order
        .iter()
        .filter_map(|id| core.state.requests.get(id))
        .map(|r| to_request(&core.state, r))
        .collect()
}

pub(crate) fn control_create_user(
    shared: &Arc<Shared>,
    spec: &NewUser,
) -> Result<SimUser, ControlError> {
    if spec.name.is_empty() {
        return Err(ControlError::Invalid("empty name".into()));
    }
    let secret = match &spec.totp_secret {
        Some(s) => Some(
            util::base32_decode(s)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ControlError::Invalid("totp_secret is not base32".into()))?,
        ),
        None => None,
    };
    let mut core = shared.lock();
    if !spec.duplicate && core.state.user_by_name(&spec.name).is_some() {
        return Err(ControlError::Exists(format!("user {}", spec.name)));
    }
    let uid = core.state.insert_user(&spec.name);
    if let Some(u) = core.state.users.get_mut(&uid) {
        u.enabled = spec.enabled;
        u.requires_otp = spec.requires_otp;
    }
    let (pairing_id, totp_secret) = if spec.paired {
        let pid = core
            .state
            .insert_pairing(&uid, PairingKind::Control, secret, spec.pending);
        let s = core
            .state
            .pairings
            .get(&pid)
            .map(|p| util::base32_encode(&p.totp_secret));
        (Some(pid), s)
    } else {
        (None, None)
    };
    Ok(SimUser {
        user_id: uid,
        name: spec.name.clone(),
        pairing_id,
        totp_secret,
    })
}

pub(crate) fn control_enter_phrase(
    shared: &Arc<Shared>,
    phrase: &str,
) -> Result<String, ControlError> {
    let mut core = shared.lock();
    let id = core
        .state
        .pairings
        .values()
        .find(|p| p.pending && !p.deactivated && p.phrase.as_deref() == Some(phrase))
        .map(|p| p.id.clone())
        .ok_or_else(|| ControlError::NotFound("no pending pairing with that phrase".into()))?;
    core.state.complete_pairing(&id);
    Ok(id)
}
