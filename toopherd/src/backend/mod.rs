//! Second-factor backends: what a login needs from one, as a trait. The server opens and
//! ends logins, counts attempts and turns an [`Outcome`] into the answer and its log line;
//! a backend decides (and records in the store what it decided). Adding a backend is one
//! file implementing [`Backend`].
//!
//! - [`local`]: RFC 6238 TOTP and recovery codes kept in the store; no push.
//! - [`toopher`]: the Toopher API (push, OTP, phone pairing).

pub mod local;
pub mod poll_schedule;
pub mod toopher;

use crate::store::{LoginState, NewEnrollment, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use toopher_ipc::{DenyReason, ErrorKind, FailureNotice, LoginContext, Method};
use zeroize::Zeroizing;

/// A boxed future, so that [`Backend`] can be used as `dyn Backend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The login a backend acts for: where it comes from, and the failures it recorded
/// already (the person saw them, so no failure notice repeats them).
#[derive(Debug, Clone)]
pub struct Attempting {
    pub ctx: LoginContext,
    pub own_failures: Vec<i64>,
}

/// What a backend decided about a login or one of its attempts.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Passed. `automated` is the Toopher app's own answer (logged when known).
    Granted {
        method: Method,
        automated: Option<bool>,
        notice: Option<FailureNotice>,
    },
    /// Refused.
    Denied {
        reason: DenyReason,
        /// Text for the person.
        message: Option<String>,
        /// For the log line: `reason=... [detail=...]`.
        log: String,
        /// The failure's id when it was counted against the rate limit. A failure that
        /// was not counted ends the login: no more guesses on it.
        counted: Option<i64>,
    },
    /// The rate limit refuses attempts until then.
    RateLimited { until: u64 },
    /// The account's second factor is suspended by an administrator.
    Suspended,
    /// A push is out and waiting for the person.
    Pending { request_id: String },
    /// The account has no second factor (two-way registration or `availability` decide).
    NotEnrolled,
    /// The service requires a typed code for this account (Toopher 708).
    OtpRequired,
    /// The service could not be reached or answered nonsense: `failmode` decides.
    Unreachable(String),
    /// Too many checks of this user at once.
    Busy,
    /// The store failed (logged by the backend).
    Internal,
}

/// How a login begins.
#[derive(Debug)]
pub enum Begin {
    /// Ask for one of `methods`; `note` is logged as a challenge when set.
    Challenge {
        methods: Vec<Method>,
        note: Option<String>,
    },
    /// Decided at once.
    Settled(Outcome),
}

/// The push a backend offers: how long a push waits for the person, and how often its
/// state is asked for (`poll_interval` sets the pace of [`poll_schedule`]).
#[derive(Debug, Clone, Copy)]
pub struct PushTiming {
    pub timeout: Duration,
    pub poll_interval: Duration,
}

/// How an account without a factor is enrolled at its login, after two-way registration.
pub enum EnrolInLogin {
    /// A new pending TOTP enrolment, activated by its first code.
    Totp(NewEnrollment),
    /// Ask for the app's pairing phrase and pair the phone.
    PairPhrase,
}

/// A phone pairing at the second-factor service.
#[derive(Debug, Clone)]
pub struct PhonePairing {
    pub id: String,
    pub enabled: bool,
    pub pending: bool,
    /// Whether the service says the pairing belongs to the user asked about.
    pub of_user: bool,
}

impl PhonePairing {
    pub fn confirmed(&self) -> bool {
        self.enabled && !self.pending
    }
}

/// A terminal (a named place logins come from) at the second-factor service.
#[derive(Debug, Clone)]
pub struct Terminal {
    pub id: String,
    pub name: String,
    pub requester_specified_id: String,
    /// Whether it belongs to the user asked about.
    pub of_user: bool,
}

/// An administrative call to the service that failed: the answer's kind and sentence.
#[derive(Debug, Clone)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
    /// For the log: the failure as the client describes it.
    pub detail: String,
    /// The service could not be reached (or answered nonsense).
    pub unreachable: bool,
    /// The service asked to slow down.
    pub rate_limited: bool,
}

/// Why no new recovery codes were made.
#[derive(Debug)]
pub enum CodesError {
    /// The backend has no recovery codes; the sentence says what to use instead.
    Unsupported(String),
    Store(StoreError),
}

/// Phone pairing and the account operations of a service that has phones (Toopher).
/// A backend without phones answers `None` from [`Backend::phones`].
pub trait Phones: Send + Sync {
    /// Starts pairing: a phrase from the app, a phone number for a text message, or
    /// neither (a QR code, returned as PNG in base64).
    fn pair<'a>(
        &'a self,
        user: &'a str,
        phrase_or_phone: Option<&'a str>,
        country: Option<&'a str>,
        qr: bool,
    ) -> BoxFuture<'a, Result<(PhonePairing, Option<String>), ServiceError>>;
    fn pairing<'a>(
        &'a self,
        user: &'a str,
        pairing_id: &'a str,
    ) -> BoxFuture<'a, Result<PhonePairing, ServiceError>>;
    /// A link to reset the pairing: e-mailed to `email` (then `None`) or returned.
    fn reset_link<'a>(
        &'a self,
        pairing_id: &'a str,
        email: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, ServiceError>>;
    fn create_terminal<'a>(
        &'a self,
        user: &'a str,
        name: &'a str,
        requester_id: &'a str,
    ) -> BoxFuture<'a, Result<Terminal, ServiceError>>;
    fn terminal<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Terminal, ServiceError>>;
    /// How often a pairing in the making is asked about.
    fn poll_interval(&self) -> Duration;
}

/// A second-factor backend. Methods that a backend does not offer have defaults that
/// say so; the server never asks which backend it has.
pub trait Backend: Send + Sync {
    /// Its name in `toopherctl status` and the configuration.
    fn name(&self) -> &'static str;

    /// What the account may use, at the start of a login. `state` is what the store
    /// says of the account: the read that gave the policy its suspension (read again
    /// when the policy waited on NSS), so a login goes to the store once before its code.
    fn begin<'a>(&'a self, who: &'a Attempting, state: LoginState) -> BoxFuture<'a, Begin>;

    /// Checks a typed code; `pending` is the push it settles, when one is out.
    fn verify<'a>(
        &'a self,
        who: &'a Attempting,
        code: &'a str,
        pending: Option<&'a str>,
    ) -> BoxFuture<'a, Outcome>;

    /// The push this backend offers; `None`: push, wait and cancel are unsupported.
    fn push_timing(&self) -> Option<PushTiming> {
        None
    }

    /// Sends a push (only asked when [`Backend::push_timing`] is `Some`).
    fn push<'a>(&'a self, who: &'a Attempting) -> BoxFuture<'a, Outcome> {
        let _ = who;
        Box::pin(async { no_push() })
    }

    /// Asks once for the state of a push; waits out a request to slow down until
    /// `deadline` at most.
    fn poll<'a>(
        &'a self,
        who: &'a Attempting,
        request_id: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Outcome> {
        let _ = (who, request_id, deadline);
        Box::pin(async { no_push() })
    }

    /// Why this backend does not offer `what` (push, pairing, terminals), for the answer.
    fn unsupported(&self, what: &str) -> String;

    /// The enrolment that follows a two-way registration in the same login.
    fn enrol_in_login<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<EnrolInLogin, StoreError>>;

    /// Phone pairing, when the backend has phones.
    fn phones(&self) -> Option<&dyn Phones> {
        None
    }

    /// Suspends or resumes the account at the service (the store is the server's).
    fn set_enabled<'a>(
        &'a self,
        user: &'a str,
        enabled: bool,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        let _ = (user, enabled);
        Box::pin(async { Ok(()) })
    }

    /// Removes the account's pairing at the service (the store is the server's).
    fn reset<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), ServiceError>> {
        let _ = user;
        Box::pin(async { Ok(()) })
    }

    /// New recovery codes.
    fn regenerate_recovery_codes<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Zeroizing<String>>, CodesError>>;
}

/// What a backend without push answers if asked for one anyway: a refusal, never
/// "unreachable" (which `failmode = "safe"` would let through).
fn no_push() -> Outcome {
    Outcome::Denied {
        reason: DenyReason::Policy,
        message: None,
        log: "reason=policy detail=no_push_in_this_backend".into(),
        counted: None,
    }
}
