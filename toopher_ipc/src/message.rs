//! The typed messages. Requests go from the module or toopherctl to toopherd;
//! each gets exactly one response. A login is carried by one connection: `Begin`
//! opens it, `Otp`/`Push`/`Wait`/`Cancel`/`RegistrationResponse` act on it, and
//! closing the connection ends it (and any push it left pending).

use crate::{FrameError, Secret};
#[cfg(feature = "serde")]
use serde::de::DeserializeOwned;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Where a login comes from, as PAM tells the module.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct LoginContext {
    pub user: String,
    pub service: String,
    #[cfg_attr(feature = "serde", serde(default))]
    pub rhost: Option<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub tty: Option<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub ruser: Option<String>,
    /// Send the push at once instead of waiting for the person to choose.
    #[cfg_attr(feature = "serde", serde(default))]
    pub autopush: bool,
    /// The module will show a [`FailureNotice`] to the person (not under `PAM_SILENT`).
    /// When false (or sent by an older module) toopherd keeps the failures untold for a
    /// later login that can show them.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify: bool,
}

/// Every request: a login's, or an administrative one. On the wire both families are
/// one flat JSON object tagged by `type`, as in the previous release (the family is not
/// written), so a module and a daemon of adjacent releases understand each other.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum Request {
    Login(LoginRequest),
    Admin(AdminRequest),
}

/// What the module sends: a login carried by one connection. Only `Begin` names a user;
/// the others act on the login it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "snake_case"))]
pub enum LoginRequest {
    /// Start a login; answered by `Allow`, `Denied`, `Challenge`, `Register` or `Unavailable`.
    Begin(LoginContext),
    /// A one-time password or recovery code typed for the login in progress. With a push
    /// pending it settles that push (Toopher `otp_auth`).
    Otp { code: Secret },
    /// Send a push for the login in progress; answered by `Pending` or a final answer.
    Push,
    /// Wait at most `timeout_ms` for the pending push; `Pending` when it is still open.
    Wait { timeout_ms: u32 },
    /// Abandon the pending push.
    Cancel,
    /// Two-way registration: the response code the person typed at the login prompt.
    RegistrationResponse { code: Secret },
    /// During a login, after two-way registration (toopher backend): the app's phrase.
    PairPhrase { phrase: String },
    /// After `Granted`: a one-time token with which the login's session hook binds the
    /// grant to the audit session it runs in (grace period). Answered by `GraceToken`,
    /// or `Error{NotFound}` when no grace period is configured or nothing was granted.
    GraceToken,
    /// The session hook (root only, after pam_loginuid): the grant of `token` now also
    /// counts in the peer's audit session. Answered by `Bound`.
    BindSession { user: String, token: Secret },
}

/// What toopherctl sends: account management. Each request names the account it acts
/// on ([`AdminRequest::target`]) and says whether it needs administrator rights
/// ([`AdminRequest::needs_admin`]); toopherd checks both before it looks at anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "snake_case"))]
pub enum AdminRequest {
    /// Two-way registration: approve a registration code shown at a login prompt of `user`.
    RegistrationApprove {
        user: String,
        code: Secret,
    },
    /// Create a (pending) local TOTP enrolment. `force` replaces an active one (admin only).
    Enroll {
        user: String,
        force: bool,
    },
    /// Activate a pending enrolment with its first code.
    Activate {
        user: String,
        code: Secret,
    },
    Status {
        user: String,
    },
    /// Remove the local enrolment (admin).
    Remove {
        user: String,
    },
    /// Start pairing a phone with the Toopher API (toopher backend).
    Pair {
        user: String,
        by: PairBy,
    },
    /// A pairing in the making; toopherd records it once the phone has confirmed it.
    PairStatus {
        user: String,
        pairing_id: String,
    },
    /// Every account toopherd knows (admin).
    List,
    /// A link to reset the pairing of `user`, shown or e-mailed (admin).
    ResetLink {
        user: String,
        email: Option<String>,
    },
    /// Suspend or resume the second factor of `user` (admin).
    SetEnabled {
        user: String,
        enabled: bool,
    },
    /// Remove the pairing at Toopher (`users/reset`) and locally (admin).
    Reset {
        user: String,
    },
    /// Create a named terminal for `user` (admin, toopher backend).
    TerminalCreate {
        user: String,
        name: String,
        requester_id: String,
    },
    /// Show a terminal by id (admin, toopher backend).
    TerminalShow {
        user: String,
        id: String,
    },
    /// New recovery codes; the old ones stop working at once (admin).
    RegenerateRecoveryCodes {
        user: String,
    },
    /// Lift the rate-limit lock of `user` and reset its escalation (admin).
    Unlock {
        user: String,
    },
    /// Which policy rule would decide a login of `user` now, and why (admin).
    PolicyExplain {
        user: String,
        service: String,
        #[cfg_attr(feature = "serde", serde(default))]
        rhost: Option<String>,
        /// An audit session id, for the grace period of logins without an rhost.
        #[cfg_attr(feature = "serde", serde(default))]
        session: Option<u32>,
    },
    /// End every grace period of `user` at once (admin).
    GraceClear {
        user: String,
    },
}

impl AdminRequest {
    /// The account the request acts on; `None` for requests about every account.
    pub fn target(&self) -> Option<&str> {
        match self {
            AdminRequest::List => None,
            AdminRequest::RegistrationApprove { user, .. }
            | AdminRequest::Enroll { user, .. }
            | AdminRequest::Activate { user, .. }
            | AdminRequest::Status { user }
            | AdminRequest::Remove { user }
            | AdminRequest::Pair { user, .. }
            | AdminRequest::PairStatus { user, .. }
            | AdminRequest::ResetLink { user, .. }
            | AdminRequest::SetEnabled { user, .. }
            | AdminRequest::Reset { user }
            | AdminRequest::TerminalCreate { user, .. }
            | AdminRequest::TerminalShow { user, .. }
            | AdminRequest::RegenerateRecoveryCodes { user }
            | AdminRequest::Unlock { user }
            | AdminRequest::PolicyExplain { user, .. }
            | AdminRequest::GraceClear { user } => Some(user),
        }
    }

    /// Whether only root or `admin_group` may make the request; otherwise the target's
    /// own uid may too. (Pairing over an existing pairing also needs an administrator;
    /// that depends on the account's state, so toopherd checks it when it handles `Pair`.)
    pub fn needs_admin(&self) -> bool {
        match self {
            AdminRequest::Enroll { force, .. } => *force,
            AdminRequest::RegistrationApprove { .. }
            | AdminRequest::Activate { .. }
            | AdminRequest::Status { .. }
            | AdminRequest::Pair { .. }
            | AdminRequest::PairStatus { .. } => false,
            AdminRequest::Remove { .. }
            | AdminRequest::List
            | AdminRequest::ResetLink { .. }
            | AdminRequest::SetEnabled { .. }
            | AdminRequest::Reset { .. }
            | AdminRequest::TerminalCreate { .. }
            | AdminRequest::TerminalShow { .. }
            | AdminRequest::RegenerateRecoveryCodes { .. }
            | AdminRequest::Unlock { .. }
            | AdminRequest::PolicyExplain { .. }
            | AdminRequest::GraceClear { .. } => true,
        }
    }

    /// The request as toopherctl's user knows it, for refusals and log lines.
    pub fn name(&self) -> &'static str {
        match self {
            AdminRequest::RegistrationApprove { .. } => "registration approve",
            AdminRequest::Enroll { .. } => "enroll",
            AdminRequest::Activate { .. } => "activate",
            AdminRequest::Status { .. } => "status",
            AdminRequest::Remove { .. } => "remove",
            AdminRequest::Pair { .. } | AdminRequest::PairStatus { .. } => "pair",
            AdminRequest::List => "list",
            AdminRequest::ResetLink { .. } => "reset-link",
            AdminRequest::SetEnabled { enabled: true, .. } => "enable",
            AdminRequest::SetEnabled { enabled: false, .. } => "disable",
            AdminRequest::Reset { .. } => "reset",
            AdminRequest::TerminalCreate { .. } | AdminRequest::TerminalShow { .. } => "terminals",
            AdminRequest::RegenerateRecoveryCodes { .. } => "recovery-codes",
            AdminRequest::Unlock { .. } => "unlock",
            AdminRequest::PolicyExplain { .. } => "policy explain",
            AdminRequest::GraceClear { .. } => "grace clear",
        }
    }
}

impl From<LoginRequest> for Request {
    fn from(r: LoginRequest) -> Self {
        Request::Login(r)
    }
}

impl From<AdminRequest> for Request {
    fn from(r: AdminRequest) -> Self {
        Request::Admin(r)
    }
}

/// The messages a client may send: [`Request`] or one of its families, which are
/// written to the wire exactly as the [`Request`] holding them, and what answers each:
/// the module reads only [`LoginResponse`]s, toopherctl only [`AdminResponse`]s.
///
/// A login's family is written and read by the lean codec ([`crate::lean`]) whether or
/// not the `serde` feature is on, so the module never links serde even where cargo
/// unifies features (a build of toopherd and the module together); the others need serde.
pub trait Outgoing: private::Sealed {
    type Answer;
    /// The whole frame (header and body) carrying the request.
    fn frame(&self) -> Result<Zeroizing<Vec<u8>>, FrameError>;
    /// The answer in a frame body.
    fn answer(body: &[u8]) -> Result<Self::Answer, FrameError>;
}
#[cfg(feature = "serde")]
impl Outgoing for Request {
    type Answer = Response;
    fn frame(&self) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        crate::encode(self)
    }
    fn answer(body: &[u8]) -> Result<Response, FrameError> {
        crate::decode(body)
    }
}
impl Outgoing for LoginRequest {
    type Answer = LoginResponse;
    fn frame(&self) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        crate::lean::encode_request(self)
    }
    fn answer(body: &[u8]) -> Result<LoginResponse, FrameError> {
        crate::lean::decode_response(body)
    }
}
#[cfg(feature = "serde")]
impl Outgoing for AdminRequest {
    type Answer = AdminResponse;
    fn frame(&self) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        crate::encode(self)
    }
    fn answer(body: &[u8]) -> Result<AdminResponse, FrameError> {
        crate::decode(body)
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::Request {}
    impl Sealed for super::LoginRequest {}
    impl Sealed for super::AdminRequest {}
}

/// How a phone is paired.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "by", rename_all = "snake_case"))]
pub enum PairBy {
    /// The phrase the Toopher app shows.
    Phrase { phrase: String },
    /// A text message to this number.
    Sms {
        phone: String,
        #[cfg_attr(feature = "serde", serde(default))]
        country: Option<String>,
    },
    /// A QR code to scan with the app.
    Qr,
}

/// A way to pass the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Method {
    Otp,
    RecoveryCode,
    Push,
    /// A method this build does not know; never acted upon.
    #[cfg_attr(feature = "serde", serde(other))]
    Unknown,
}

/// Why no second factor was needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum AllowReason {
    /// Not enrolled, and policy (`availability = "available"`) lets such accounts through.
    NotEnrolled,
    /// Excluded from 2FA by policy (group, network).
    Exempt,
    /// The second-factor service could not be reached and `failmode = "safe"`.
    Failmode,
}

/// Why a login or an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum DenyReason {
    /// The code was wrong, expired or already used (the log tells which).
    WrongCode,
    /// Too many failed attempts; refused until the window passes.
    RateLimited,
    /// Policy requires a second factor and the account has none.
    NotEnrolled,
    /// The person denied the push.
    PushDenied,
    /// The push was not answered in time.
    PushTimeout,
    /// Second factor disabled for this account by an administrator.
    UserDisabled,
    /// Refused by policy.
    Policy,
    /// A reason this build does not know: still a denial.
    #[cfg_attr(feature = "serde", serde(other))]
    Other,
}

impl DenyReason {
    /// The one retry rule: whether the module may ask again within its `prompts`
    /// budget (a mistyped code, a push denied on the phone, a push not answered in
    /// time). Every other denial ends the login.
    pub fn allows_retry(self) -> bool {
        matches!(
            self,
            DenyReason::WrongCode | DenyReason::PushDenied | DenyReason::PushTimeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::WrongCode => "wrong_code",
            DenyReason::RateLimited => "rate_limited",
            DenyReason::NotEnrolled => "not_enrolled",
            DenyReason::PushDenied => "push_denied",
            DenyReason::PushTimeout => "push_timeout",
            DenyReason::UserDisabled => "user_disabled",
            DenyReason::Policy => "policy",
            DenyReason::Other => "other",
        }
    }
}

/// What toopherctl shows once, when an enrolment is created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Enrollment {
    pub user: String,
    /// Base32 TOTP secret.
    pub secret: Secret,
    pub otpauth_uri: Secret,
    pub recovery_codes: Vec<Secret>,
    /// Unix time after which an enrolment that was not activated is void.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum EnrollmentState {
    None,
    Pending,
    Active,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct AccountStatus {
    pub user: String,
    pub backend: String,
    pub state: EnrollmentState,
    pub created_at: Option<u64>,
    pub activated_at: Option<u64>,
    /// For a pending enrolment: when it expires.
    pub expires_at: Option<u64>,
    pub last_success_at: Option<u64>,
    pub last_failure_at: Option<u64>,
    pub recovery_codes_left: u32,
    /// Set while the rate limit refuses attempts.
    pub locked_until: Option<u64>,
    /// Locks imposed since the last recovery code or administrator's unlock; the next
    /// lock lasts `window` x 2^lock_level (capped).
    #[cfg_attr(feature = "serde", serde(default))]
    pub lock_level: u32,
    /// The recorded Toopher pairing (toopher backend).
    #[cfg_attr(feature = "serde", serde(default))]
    pub pairing_id: Option<String>,
    /// False while an administrator has suspended the second factor (logins are denied).
    #[cfg_attr(feature = "serde", serde(default = "yes"))]
    pub enabled: bool,
    /// Which host's toopherd made the last success and the last failure (a fleet on a
    /// shared store; `None` for a host's own store). Boxed: most answers carry none.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub hosts: Option<Box<DecisionHosts>>,
}

impl AccountStatus {
    /// Whether toopherd holds anything for the account: a status of all defaults is what
    /// it answers for a name it has never seen.
    pub fn has_record(&self) -> bool {
        self.state != EnrollmentState::None
            || self.pairing_id.is_some()
            || self.created_at.is_some()
            || self.last_success_at.is_some()
            || self.last_failure_at.is_some()
            || self.locked_until.is_some()
            || self.lock_level > 0
            || self.recovery_codes_left > 0
            || !self.enabled
    }
}

/// The hosts of an account's last decisions, in a fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DecisionHosts {
    #[cfg_attr(feature = "serde", serde(default))]
    pub last_success: Option<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub last_failure: Option<String>,
}

#[cfg(feature = "serde")]
fn yes() -> bool {
    true
}

/// Most remote hosts a [`FailureNotice`] names.
pub const NOTICE_MAX_RHOSTS: usize = 5;
/// How a [`FailureNotice`] names a login without a remote host (console, sudo).
pub const NOTICE_LOCAL: &str = "(local)";

/// Second-factor failures the person has not been told about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct FailureNotice {
    pub failures: u32,
    /// Distinct remote hosts, most recent first, at most [`NOTICE_MAX_RHOSTS`];
    /// [`NOTICE_LOCAL`] for logins without one.
    #[cfg_attr(feature = "serde", serde(default))]
    pub rhosts: Vec<String>,
    /// More hosts than `rhosts` lists.
    #[cfg_attr(feature = "serde", serde(default))]
    pub more_rhosts: bool,
    /// Unix time of the last failure.
    #[cfg_attr(feature = "serde", serde(default))]
    pub last_at: Option<u64>,
}

/// A Toopher pairing as toopherctl sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct PairingInfo {
    pub user: String,
    pub pairing_id: String,
    pub enabled: bool,
    pub pending: bool,
    /// For QR pairing: the code to scan, PNG, base64.
    #[cfg_attr(feature = "serde", serde(default))]
    pub qr_png_base64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct TerminalInfo {
    pub id: String,
    pub name: String,
    pub requester_specified_id: String,
    pub user: String,
}

/// Two-way registration outcomes, with the seed's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum RegistrationStatus {
    /// 2000: registered; enrolment follows in the same login.
    Registered,
    /// 4001: the registration code was approved, but the response code is wrong (a typo).
    WrongResponse,
    /// 4002: the registration code was never approved where the person is known.
    NotApproved,
    /// 5000: anything else (expired, too many tries, revoked): start over.
    Failed,
}

impl RegistrationStatus {
    pub fn code(self) -> u16 {
        match self {
            RegistrationStatus::Registered => 2000,
            RegistrationStatus::WrongResponse => 4001,
            RegistrationStatus::NotApproved => 4002,
            RegistrationStatus::Failed => 5000,
        }
    }
}

/// What the login does after a registration response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "next", rename_all = "snake_case"))]
pub enum RegistrationNext {
    /// Ask for the response code again.
    Retry,
    /// A new registration code replaces the old one.
    StartOver {
        registration_code: String,
        expires_in_secs: u32,
    },
    /// Local backend: show this TOTP enrolment, then ask for its first code (`Otp`).
    EnrollTotp {
        /// The QR code drawn with block characters (no escape sequences). It encodes the
        /// otpauth URI, so it is as secret as the key.
        qr_text: Secret,
        secret: Secret,
        otpauth_uri: Secret,
        recovery_codes: Vec<Secret>,
    },
    /// Toopher backend: ask for the app's pairing phrase (`PairPhrase`), then `Wait`.
    PairPhrase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ErrorKind {
    /// The request could not be parsed or is not valid here.
    BadRequest,
    /// The peer may not make this request.
    Forbidden,
    NotFound,
    /// The request conflicts with the account's state.
    Conflict,
    /// This backend does not offer the request.
    Unsupported,
    /// The peer speaks another protocol version.
    Version,
    /// The frame was over the size limit.
    TooLarge,
    /// toopherd is at its connection limit.
    Busy,
    /// Something failed inside toopherd; details are in its log.
    Internal,
    #[cfg_attr(feature = "serde", serde(other))]
    Other,
}

/// toopherd's refusal of a request, or its failure: the one error both families answer
/// with (`{"type": "error", "kind": ..., "message": ...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ErrorReply {
    pub kind: ErrorKind,
    /// A plain sentence for the peer's log or its user; never a secret.
    pub message: String,
}

impl ErrorReply {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorReply {
            kind,
            message: message.into(),
        }
    }
}

/// Every answer: a login's or an administrative one, each written as the flat JSON
/// object tagged by `type` of the previous release (the family is not written). Each
/// peer reads the family of the requests it sends ([`Outgoing::Answer`]); read as a
/// `Response`, an answer both families have (`denied`, `error`) is the login family's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum Response {
    Login(LoginResponse),
    Admin(AdminResponse),
}

impl Response {
    /// An error answered before the request's family is known (a bad frame, another
    /// protocol version, a busy toopherd). Both families read it alike.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::Login(LoginResponse::error(kind, message))
    }
}

impl From<LoginResponse> for Response {
    fn from(r: LoginResponse) -> Self {
        Response::Login(r)
    }
}

impl From<AdminResponse> for Response {
    fn from(r: AdminResponse) -> Self {
        Response::Admin(r)
    }
}

/// What answers a [`LoginRequest`]: all the module can be told. An administrative
/// answer is not one of these, so the module cannot mistake one for a login's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "snake_case"))]
pub enum LoginResponse {
    /// No second factor needed for this login.
    Allow {
        reason: AllowReason,
    },
    /// Ask for a second factor by one of `methods`; `push_pending` when a push went out.
    Challenge {
        methods: Vec<Method>,
        push_pending: bool,
    },
    /// The account needs a factor first: two-way registration, show this code.
    Register {
        registration_code: String,
        expires_in_secs: u32,
    },
    Granted {
        method: Method,
        /// Failed second factors since the person's last successful one (not counting
        /// this login's own), to be told: someone else has the password.
        #[cfg_attr(
            feature = "serde",
            serde(default, skip_serializing_if = "Option::is_none")
        )]
        notice: Option<FailureNotice>,
    },
    /// Refused. `message` is text for the person (already stripped of control characters).
    Denied {
        reason: DenyReason,
        #[cfg_attr(feature = "serde", serde(default))]
        message: Option<String>,
    },
    /// The push is still waiting for an answer.
    Pending,
    /// The second-factor service could not be reached.
    Unavailable {
        detail: String,
    },
    /// Two-way registration: the outcome of a response code typed at the login prompt.
    Registration {
        status: RegistrationStatus,
        /// A plain sentence for the person.
        message: String,
        #[cfg_attr(feature = "serde", serde(flatten))]
        next: RegistrationNext,
    },
    /// The token of `LoginRequest::GraceToken`.
    GraceToken {
        token: Secret,
    },
    /// `LoginRequest::BindSession` done: the grant counts in this audit session.
    Bound {
        session: u32,
    },
    Error(ErrorReply),
}

impl LoginResponse {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        LoginResponse::Error(ErrorReply::new(kind, message))
    }

    pub fn denied(reason: DenyReason) -> Self {
        LoginResponse::Denied {
            reason,
            message: None,
        }
    }

    pub fn granted(method: Method) -> Self {
        LoginResponse::Granted {
            method,
            notice: None,
        }
    }

    /// The error, when the answer is one.
    pub fn as_error(&self) -> Option<&ErrorReply> {
        match self {
            LoginResponse::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ErrorReply> for LoginResponse {
    fn from(e: ErrorReply) -> Self {
        LoginResponse::Error(e)
    }
}

/// What answers an [`AdminRequest`]: what toopherctl is told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "snake_case"))]
pub enum AdminResponse {
    Enrollment(Enrollment),
    Activated {
        user: String,
    },
    /// `Activate` with a wrong code, or while the account is locked.
    Denied {
        reason: DenyReason,
        #[cfg_attr(feature = "serde", serde(default))]
        message: Option<String>,
    },
    Status(AccountStatus),
    Removed {
        user: String,
        existed: bool,
    },
    Pairing(PairingInfo),
    Accounts {
        accounts: Vec<AccountStatus>,
    },
    ResetLink {
        user: String,
        url: Option<String>,
        emailed_to: Option<String>,
    },
    Terminal(TerminalInfo),
    RecoveryCodes {
        user: String,
        codes: Vec<Secret>,
    },
    /// Two-way registration: the response code to type at the login prompt.
    RegistrationApproved {
        user: String,
        response_code: Secret,
    },
    /// `AdminRequest::PolicyExplain`: the decision line(s) toopherd would log
    /// (`outcome=... rule=...`; one per enrolment state when only the backend knows it)
    /// and the reasoning, step by step.
    Explanation {
        user: String,
        decision: Vec<String>,
        steps: Vec<String>,
    },
    /// `AdminRequest::GraceClear`: how many grants were forgotten.
    GraceCleared {
        user: String,
        cleared: u32,
    },
    Error(ErrorReply),
}

impl AdminResponse {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        AdminResponse::Error(ErrorReply::new(kind, message))
    }

    pub fn denied(reason: DenyReason) -> Self {
        AdminResponse::Denied {
            reason,
            message: None,
        }
    }

    /// The error, when the answer is one.
    pub fn as_error(&self) -> Option<&ErrorReply> {
        match self {
            AdminResponse::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ErrorReply> for AdminResponse {
    fn from(e: ErrorReply) -> Self {
        AdminResponse::Error(e)
    }
}

/// Reads one of two families from the same flat object, each exactly as it reads on its
/// own. serde's `untagged` would buffer the body and then accept a variant's *index* as its
/// tag (`{"type": 5}`) or a field given twice, which neither family accepts; parsing the
/// raw text again with each family's own reader keeps the combined type to exactly what one
/// of the families reads.
#[cfg(feature = "serde")]
fn either<'de, D, L, A, T>(d: D, login: fn(L) -> T, admin: fn(A) -> T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    L: DeserializeOwned,
    A: DeserializeOwned,
{
    use serde::de::Error;
    let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
    if let Ok(l) = serde_json::from_str::<L>(raw.get()) {
        return Ok(login(l));
    }
    serde_json::from_str::<A>(raw.get())
        .map(admin)
        .map_err(D::Error::custom)
}

#[cfg(feature = "serde")]
impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        either(d, Request::Login, Request::Admin)
    }
}

#[cfg(feature = "serde")]
impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        either(d, Response::Login, Response::Admin)
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn debug_of_messages_hides_codes() {
        let r = Request::from(LoginRequest::Otp {
            code: Secret::new("987654"),
        });
        assert!(!format!("{r:?}").contains("987654"));
        let e = AdminResponse::Enrollment(Enrollment {
            user: "a".into(),
            secret: Secret::new("JBSWY3DPEHPK3PXP"),
            otpauth_uri: Secret::new("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP"),
            recovery_codes: vec![Secret::new("abcd-efgh-ijkl")],
            expires_at: 1,
        });
        let shown = format!("{e:?}");
        assert!(!shown.contains("JBSWY3DPEHPK3PXP"));
        assert!(!shown.contains("abcd-efgh-ijkl"));
    }

    #[test]
    fn unknown_reasons_and_methods_stay_denials() {
        let r: LoginResponse =
            serde_json::from_str(r#"{"type":"denied","reason":"something_new"}"#).unwrap();
        assert_eq!(r, LoginResponse::denied(DenyReason::Other));
        let m: Vec<Method> = serde_json::from_str(r#"["otp","telepathy"]"#).unwrap();
        assert_eq!(m, vec![Method::Otp, Method::Unknown]);
    }

    #[test]
    fn begin_round_trips_with_optional_fields_missing() {
        let r: Request =
            serde_json::from_str(r#"{"type":"begin","user":"alice","service":"sshd"}"#).unwrap();
        match r {
            Request::Login(LoginRequest::Begin(ctx)) => {
                assert_eq!(ctx.user, "alice");
                assert_eq!(ctx.rhost, None);
                assert!(!ctx.autopush);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_grant_without_a_notice_is_what_older_peers_send_and_expect() {
        // An older toopherd's grant parses, with no notice.
        let old: LoginResponse =
            serde_json::from_str(r#"{"type":"granted","method":"otp"}"#).unwrap();
        assert_eq!(old, LoginResponse::granted(Method::Otp));
        // A grant without a notice is sent exactly as before.
        assert_eq!(
            serde_json::to_string(&LoginResponse::granted(Method::Otp)).unwrap(),
            r#"{"type":"granted","method":"otp"}"#
        );
    }

    #[test]
    fn a_grant_with_a_notice_round_trips_and_older_peers_ignore_it() {
        let g = LoginResponse::Granted {
            method: Method::RecoveryCode,
            notice: Some(FailureNotice {
                failures: 7,
                rhosts: vec!["192.0.2.7".into(), NOTICE_LOCAL.into()],
                more_rhosts: true,
                last_at: Some(1_700_000_000),
            }),
        };
        let frame = crate::encode(&g).unwrap();
        let back: LoginResponse = crate::decode(&frame[4..]).unwrap();
        assert_eq!(back, g);
        // What an older module knows of a grant: the method. Unknown fields are ignored.
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum OldResponse {
            Granted { method: Method },
        }
        let json = serde_json::to_string(&g).unwrap();
        let old: OldResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(
            old,
            OldResponse::Granted {
                method: Method::RecoveryCode
            }
        );
        // A notice with only its count still parses.
        let sparse: LoginResponse =
            serde_json::from_str(r#"{"type":"granted","method":"otp","notice":{"failures":2}}"#)
                .unwrap();
        assert!(matches!(
            sparse,
            LoginResponse::Granted { notice: Some(FailureNotice { failures: 2, ref rhosts, last_at: None, .. }), .. } if rhosts.is_empty()
        ));
    }

    #[test]
    fn a_login_context_from_an_older_module_asks_for_no_notice() {
        let r: Request =
            serde_json::from_str(r#"{"type":"begin","user":"alice","service":"sshd"}"#).unwrap();
        assert!(matches!(r, Request::Login(LoginRequest::Begin(ctx)) if !ctx.notify));
    }

    #[test]
    fn every_new_answer_round_trips() {
        let answers: Vec<Response> = vec![
            AdminResponse::Pairing(PairingInfo {
                user: "bob".into(),
                pairing_id: "p".into(),
                enabled: true,
                pending: false,
                qr_png_base64: None,
            })
            .into(),
            LoginResponse::Registration {
                status: RegistrationStatus::Failed,
                message: "m".into(),
                next: RegistrationNext::StartOver {
                    registration_code: "123456".into(),
                    expires_in_secs: 600,
                },
            }
            .into(),
            AdminResponse::Accounts { accounts: vec![] }.into(),
        ];
        for a in answers {
            let frame = crate::encode(&a).unwrap();
            let back: Response = crate::decode(&frame[4..]).unwrap();
            assert_eq!(back, a);
        }
    }

    fn status() -> AccountStatus {
        AccountStatus {
            user: "bob".into(),
            backend: "local".into(),
            state: EnrollmentState::Active,
            created_at: Some(1),
            activated_at: Some(2),
            expires_at: None,
            last_success_at: Some(3),
            last_failure_at: None,
            recovery_codes_left: 9,
            locked_until: None,
            lock_level: 0,
            pairing_id: None,
            enabled: true,
            hosts: None,
        }
    }

    /// Every answer of the previous release, where `Response` was one flat enum, with
    /// the exact JSON that release wrote for it: each family writes and reads it
    /// unchanged, so a module or toopherctl and a toopherd of adjacent builds agree.
    fn answers_of_the_previous_release() -> Vec<(Response, &'static str)> {
        let status_json = r#"{"type":"status","user":"bob","backend":"local","state":"active","created_at":1,"activated_at":2,"expires_at":null,"last_success_at":3,"last_failure_at":null,"recovery_codes_left":9,"locked_until":null,"lock_level":0,"pairing_id":null,"enabled":true}"#;
        vec![
            (
                LoginResponse::Allow {
                    reason: AllowReason::Failmode,
                }
                .into(),
                r#"{"type":"allow","reason":"failmode"}"#,
            ),
            (
                LoginResponse::Challenge {
                    methods: vec![Method::Otp, Method::RecoveryCode, Method::Push],
                    push_pending: true,
                }
                .into(),
                r#"{"type":"challenge","methods":["otp","recovery_code","push"],"push_pending":true}"#,
            ),
            (
                LoginResponse::Register {
                    registration_code: "123456".into(),
                    expires_in_secs: 600,
                }
                .into(),
                r#"{"type":"register","registration_code":"123456","expires_in_secs":600}"#,
            ),
            (
                LoginResponse::granted(Method::Otp).into(),
                r#"{"type":"granted","method":"otp"}"#,
            ),
            (
                LoginResponse::Granted {
                    method: Method::Push,
                    notice: Some(FailureNotice {
                        failures: 2,
                        rhosts: vec!["192.0.2.7".into()],
                        more_rhosts: false,
                        last_at: Some(5),
                    }),
                }
                .into(),
                r#"{"type":"granted","method":"push","notice":{"failures":2,"rhosts":["192.0.2.7"],"more_rhosts":false,"last_at":5}}"#,
            ),
            (
                LoginResponse::Denied {
                    reason: DenyReason::PushDenied,
                    message: Some("no".into()),
                }
                .into(),
                r#"{"type":"denied","reason":"push_denied","message":"no"}"#,
            ),
            (
                LoginResponse::denied(DenyReason::WrongCode).into(),
                r#"{"type":"denied","reason":"wrong_code","message":null}"#,
            ),
            (LoginResponse::Pending.into(), r#"{"type":"pending"}"#),
            (
                LoginResponse::Unavailable {
                    detail: "down".into(),
                }
                .into(),
                r#"{"type":"unavailable","detail":"down"}"#,
            ),
            (
                LoginResponse::Registration {
                    status: RegistrationStatus::WrongResponse,
                    message: "m".into(),
                    next: RegistrationNext::Retry,
                }
                .into(),
                r#"{"type":"registration","status":"WrongResponse","message":"m","next":"retry"}"#,
            ),
            (
                LoginResponse::Registration {
                    status: RegistrationStatus::Failed,
                    message: "m".into(),
                    next: RegistrationNext::StartOver {
                        registration_code: "654321".into(),
                        expires_in_secs: 600,
                    },
                }
                .into(),
                r#"{"type":"registration","status":"Failed","message":"m","next":"start_over","registration_code":"654321","expires_in_secs":600}"#,
            ),
            (
                LoginResponse::Registration {
                    status: RegistrationStatus::Registered,
                    message: "m".into(),
                    next: RegistrationNext::EnrollTotp {
                        qr_text: Secret::new("q"),
                        secret: Secret::new("S"),
                        otpauth_uri: Secret::new("U"),
                        recovery_codes: vec![Secret::new("r")],
                    },
                }
                .into(),
                r#"{"type":"registration","status":"Registered","message":"m","next":"enroll_totp","qr_text":"q","secret":"S","otpauth_uri":"U","recovery_codes":["r"]}"#,
            ),
            (
                LoginResponse::Registration {
                    status: RegistrationStatus::Registered,
                    message: "m".into(),
                    next: RegistrationNext::PairPhrase,
                }
                .into(),
                r#"{"type":"registration","status":"Registered","message":"m","next":"pair_phrase"}"#,
            ),
            (
                LoginResponse::error(ErrorKind::Forbidden, "no").into(),
                r#"{"type":"error","kind":"forbidden","message":"no"}"#,
            ),
            (
                AdminResponse::Enrollment(Enrollment {
                    user: "bob".into(),
                    secret: Secret::new("S"),
                    otpauth_uri: Secret::new("U"),
                    recovery_codes: vec![Secret::new("r")],
                    expires_at: 7,
                })
                .into(),
                r#"{"type":"enrollment","user":"bob","secret":"S","otpauth_uri":"U","recovery_codes":["r"],"expires_at":7}"#,
            ),
            (
                AdminResponse::Activated { user: "bob".into() }.into(),
                r#"{"type":"activated","user":"bob"}"#,
            ),
            (AdminResponse::Status(status()).into(), status_json),
            (
                AdminResponse::Removed {
                    user: "bob".into(),
                    existed: true,
                }
                .into(),
                r#"{"type":"removed","user":"bob","existed":true}"#,
            ),
            (
                AdminResponse::Pairing(PairingInfo {
                    user: "bob".into(),
                    pairing_id: "p".into(),
                    enabled: true,
                    pending: false,
                    qr_png_base64: Some("iVBO".into()),
                })
                .into(),
                r#"{"type":"pairing","user":"bob","pairing_id":"p","enabled":true,"pending":false,"qr_png_base64":"iVBO"}"#,
            ),
            (
                AdminResponse::Accounts {
                    accounts: vec![status()],
                }
                .into(),
                // The previous release's `accounts` holds each account as `status` does.
                r#"{"type":"accounts","accounts":[{"user":"bob","backend":"local","state":"active","created_at":1,"activated_at":2,"expires_at":null,"last_success_at":3,"last_failure_at":null,"recovery_codes_left":9,"locked_until":null,"lock_level":0,"pairing_id":null,"enabled":true}]}"#,
            ),
            (
                AdminResponse::ResetLink {
                    user: "bob".into(),
                    url: Some("https://x/r".into()),
                    emailed_to: None,
                }
                .into(),
                r#"{"type":"reset_link","user":"bob","url":"https://x/r","emailed_to":null}"#,
            ),
            (
                AdminResponse::Terminal(TerminalInfo {
                    id: "t".into(),
                    name: "n".into(),
                    requester_specified_id: "r".into(),
                    user: "bob".into(),
                })
                .into(),
                r#"{"type":"terminal","id":"t","name":"n","requester_specified_id":"r","user":"bob"}"#,
            ),
            (
                AdminResponse::RecoveryCodes {
                    user: "bob".into(),
                    codes: vec![Secret::new("a"), Secret::new("b")],
                }
                .into(),
                r#"{"type":"recovery_codes","user":"bob","codes":["a","b"]}"#,
            ),
            (
                AdminResponse::RegistrationApproved {
                    user: "bob".into(),
                    response_code: Secret::new("4321"),
                }
                .into(),
                r#"{"type":"registration_approved","user":"bob","response_code":"4321"}"#,
            ),
            // Added by the policy work (issue 12) while `Response` was still flat,
            // written as that flat enum wrote them.
            (
                LoginResponse::GraceToken {
                    token: Secret::new("t"),
                }
                .into(),
                r#"{"type":"grace_token","token":"t"}"#,
            ),
            (
                LoginResponse::Bound { session: 7 }.into(),
                r#"{"type":"bound","session":7}"#,
            ),
            (
                AdminResponse::Explanation {
                    user: "bob".into(),
                    decision: vec!["d".into()],
                    steps: vec!["s".into()],
                }
                .into(),
                r#"{"type":"explanation","user":"bob","decision":["d"],"steps":["s"]}"#,
            ),
            (
                AdminResponse::GraceCleared {
                    user: "bob".into(),
                    cleared: 2,
                }
                .into(),
                r#"{"type":"grace_cleared","user":"bob","cleared":2}"#,
            ),
        ]
    }

    #[test]
    fn responses_keep_the_flat_wire_format_of_the_previous_release() {
        for (answer, json) in answers_of_the_previous_release() {
            assert_eq!(serde_json::to_string(&answer).unwrap(), json);
            match &answer {
                Response::Login(r) => {
                    assert_eq!(serde_json::to_string(r).unwrap(), json);
                    let back: LoginResponse = serde_json::from_str(json).unwrap();
                    assert_eq!(&back, r, "{json}");
                }
                Response::Admin(r) => {
                    assert_eq!(serde_json::to_string(r).unwrap(), json);
                    let back: AdminResponse = serde_json::from_str(json).unwrap();
                    assert_eq!(&back, r, "{json}");
                }
            }
            let back: Response = serde_json::from_str(json).unwrap();
            assert_eq!(back, answer, "{json}");
        }
        // The answers both families have are written alike in each.
        assert_eq!(
            serde_json::to_string(&AdminResponse::error(ErrorKind::Forbidden, "no")).unwrap(),
            serde_json::to_string(&LoginResponse::error(ErrorKind::Forbidden, "no")).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&AdminResponse::denied(DenyReason::WrongCode)).unwrap(),
            serde_json::to_string(&LoginResponse::denied(DenyReason::WrongCode)).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&Response::error(ErrorKind::Busy, "busy")).unwrap(),
            r#"{"type":"error","kind":"busy","message":"busy"}"#
        );
    }

    /// The module reads only a login's answers: an administrative answer (which toopherd
    /// never sends it) does not decode, so it can only end the login as an error.
    #[test]
    fn each_family_reads_only_its_own_answers() {
        for (answer, json) in answers_of_the_previous_release() {
            let as_login = serde_json::from_str::<LoginResponse>(json);
            let as_admin = serde_json::from_str::<AdminResponse>(json);
            let shared =
                json.starts_with(r#"{"type":"error""#) || json.starts_with(r#"{"type":"denied""#);
            match answer {
                Response::Login(_) => assert_eq!(as_admin.is_ok(), shared, "{json}"),
                Response::Admin(_) => assert_eq!(as_login.is_ok(), shared, "{json}"),
            }
        }
        let frame = crate::encode(&AdminResponse::Status(status())).unwrap();
        assert!(matches!(
            crate::decode::<LoginResponse>(&frame[4..]),
            Err(crate::FrameError::Malformed { .. })
        ));
    }

    /// The wire format of the previous release, where `Request` was one flat enum: every
    /// message is written and read exactly as before, in its family.
    #[test]
    fn requests_keep_the_flat_wire_format_of_the_previous_release() {
        let cases: Vec<(Request, &str)> = vec![
            (LoginRequest::Push.into(), r#"{"type":"push"}"#),
            (
                LoginRequest::Wait { timeout_ms: 5 }.into(),
                r#"{"type":"wait","timeout_ms":5}"#,
            ),
            (
                LoginRequest::Otp {
                    code: Secret::new("123456"),
                }
                .into(),
                r#"{"type":"otp","code":"123456"}"#,
            ),
            (
                AdminRequest::Status { user: "bob".into() }.into(),
                r#"{"type":"status","user":"bob"}"#,
            ),
            (AdminRequest::List.into(), r#"{"type":"list"}"#),
            (
                AdminRequest::Enroll {
                    user: "bob".into(),
                    force: true,
                }
                .into(),
                r#"{"type":"enroll","user":"bob","force":true}"#,
            ),
            (
                AdminRequest::Pair {
                    user: "bob".into(),
                    by: PairBy::Qr,
                }
                .into(),
                r#"{"type":"pair","user":"bob","by":{"by":"qr"}}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(serde_json::to_string(&req).unwrap(), json);
            let back: Request = serde_json::from_str(json).unwrap();
            assert_eq!(back, req);
        }
        let begin = r#"{"type":"begin","user":"alice","service":"sshd","rhost":null,"tty":null,"ruser":null,"autopush":false,"notify":true}"#;
        let r: Request = serde_json::from_str(begin).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), begin);
        // A family's own encoding is the request's.
        assert_eq!(
            serde_json::to_string(&LoginRequest::Cancel).unwrap(),
            serde_json::to_string(&Request::from(LoginRequest::Cancel)).unwrap()
        );
        assert!(serde_json::from_str::<Request>(r#"{"type":"telepathy"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"type":"status"}"#).is_err());
    }

    #[test]
    fn every_admin_request_names_its_account_and_its_rights() {
        let u = || "bob".to_string();
        let code = || Secret::new("1");
        let all = [
            (
                AdminRequest::RegistrationApprove {
                    user: u(),
                    code: code(),
                },
                false,
            ),
            (
                AdminRequest::Enroll {
                    user: u(),
                    force: false,
                },
                false,
            ),
            (
                AdminRequest::Enroll {
                    user: u(),
                    force: true,
                },
                true,
            ),
            (
                AdminRequest::Activate {
                    user: u(),
                    code: code(),
                },
                false,
            ),
            (AdminRequest::Status { user: u() }, false),
            (AdminRequest::Remove { user: u() }, true),
            (
                AdminRequest::Pair {
                    user: u(),
                    by: PairBy::Qr,
                },
                false,
            ),
            (
                AdminRequest::PairStatus {
                    user: u(),
                    pairing_id: "p".into(),
                },
                false,
            ),
            (
                AdminRequest::ResetLink {
                    user: u(),
                    email: None,
                },
                true,
            ),
            (
                AdminRequest::SetEnabled {
                    user: u(),
                    enabled: true,
                },
                true,
            ),
            (AdminRequest::Reset { user: u() }, true),
            (
                AdminRequest::TerminalCreate {
                    user: u(),
                    name: "n".into(),
                    requester_id: "r".into(),
                },
                true,
            ),
            (
                AdminRequest::TerminalShow {
                    user: u(),
                    id: "t".into(),
                },
                true,
            ),
            (AdminRequest::RegenerateRecoveryCodes { user: u() }, true),
            (AdminRequest::Unlock { user: u() }, true),
            (
                AdminRequest::PolicyExplain {
                    user: u(),
                    service: "sshd".into(),
                    rhost: None,
                    session: None,
                },
                true,
            ),
            (AdminRequest::GraceClear { user: u() }, true),
        ];
        for (req, admin) in all {
            assert_eq!(req.target(), Some("bob"), "{req:?}");
            assert_eq!(req.needs_admin(), admin, "{req:?}");
            assert!(!req.name().is_empty());
        }
        assert_eq!(AdminRequest::List.target(), None);
        assert!(AdminRequest::List.needs_admin());
    }

    #[test]
    fn the_retry_rule() {
        let retry = [
            DenyReason::WrongCode,
            DenyReason::PushDenied,
            DenyReason::PushTimeout,
        ];
        for r in [
            DenyReason::WrongCode,
            DenyReason::RateLimited,
            DenyReason::NotEnrolled,
            DenyReason::PushDenied,
            DenyReason::PushTimeout,
            DenyReason::UserDisabled,
            DenyReason::Policy,
            DenyReason::Other,
        ] {
            assert_eq!(r.allows_retry(), retry.contains(&r), "{r:?}");
        }
    }

    #[test]
    fn a_variant_index_is_never_a_tag() {
        // Found by the ipc_response fuzz target: `untagged` read `{"type": 5}` as the
        // sixth login answer although neither family reads it.
        // And a field given twice, which the families refuse.
        let twice = br#"{"type":"removed","user":"a","existed":true,"user":"b"}"#;
        assert!(serde_json::from_slice::<AdminResponse>(twice).is_err());
        assert!(serde_json::from_slice::<Response>(twice).is_err());
        for body in [br#"{"type":5}"#.as_slice(), br#"{"type":0}"#.as_slice()] {
            assert!(serde_json::from_slice::<Response>(body).is_err());
            assert!(serde_json::from_slice::<Request>(body).is_err());
            assert!(serde_json::from_slice::<LoginResponse>(body).is_err());
            assert!(serde_json::from_slice::<LoginRequest>(body).is_err());
        }
    }
}
