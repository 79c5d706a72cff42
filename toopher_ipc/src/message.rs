//! The typed messages. Requests go from the module or toopherctl to toopherd;
//! each gets exactly one response. A login is carried by one connection: `Begin`
//! opens it, `Otp`/`Push`/`Wait`/`Cancel`/`RegistrationResponse` act on it, and
//! closing the connection ends it (and any push it left pending).

use crate::Secret;
use serde::{Deserialize, Serialize};

/// Where a login comes from, as PAM tells the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginContext {
    pub user: String,
    pub service: String,
    #[serde(default)]
    pub rhost: Option<String>,
    #[serde(default)]
    pub tty: Option<String>,
    #[serde(default)]
    pub ruser: Option<String>,
    /// Send the push at once instead of waiting for the person to choose.
    #[serde(default)]
    pub autopush: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Start a login; answered by `Allow`, `Denied`, `Challenge`, `Register` or `Unavailable`.
    Begin(LoginContext),
    /// A one-time password or recovery code typed for the login in progress. With a push
    /// pending it settles that push (Toopher `otp_auth`).
    Otp {
        code: Secret,
    },
    /// Send a push for the login in progress; answered by `Pending` or a final answer.
    Push,
    /// Wait at most `timeout_ms` for the pending push; `Pending` when it is still open.
    Wait {
        timeout_ms: u32,
    },
    /// Abandon the pending push.
    Cancel,
    /// Two-way registration: the response code the person typed at the login prompt.
    RegistrationResponse {
        code: Secret,
    },
    /// Two-way registration: approve a registration code shown at a login prompt of `user`.
    RegistrationApprove {
        user: String,
        code: Secret,
    },
    /// Create a (pending) local TOTP enrolment. `force` replaces an active one (root only).
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
    Remove {
        user: String,
    },
}

impl Request {
    /// The message name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Begin(_) => "begin",
            Request::Otp { .. } => "otp",
            Request::Push => "push",
            Request::Wait { .. } => "wait",
            Request::Cancel => "cancel",
            Request::RegistrationResponse { .. } => "registration_response",
            Request::RegistrationApprove { .. } => "registration_approve",
            Request::Enroll { .. } => "enroll",
            Request::Activate { .. } => "activate",
            Request::Status { .. } => "status",
            Request::Remove { .. } => "remove",
        }
    }
}

/// A way to pass the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Otp,
    RecoveryCode,
    Push,
    /// A method this build does not know; never acted upon.
    #[serde(other)]
    Unknown,
}

/// Why no second factor was needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowReason {
    /// Not enrolled, and policy (`availability = "available"`) lets such accounts through.
    NotEnrolled,
    /// Excluded from 2FA by policy (group, network).
    Exempt,
    /// The second-factor service could not be reached and `failmode = "safe"`.
    Failmode,
}

/// Why a login or an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    #[serde(other)]
    Other,
}

impl DenyReason {
    /// Whether the module may ask again within its `prompts` budget.
    pub fn allows_retry(self) -> bool {
        matches!(self, DenyReason::WrongCode | DenyReason::PushTimeout)
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub user: String,
    /// Base32 TOTP secret.
    pub secret: Secret,
    pub otpauth_uri: Secret,
    pub recovery_codes: Vec<Secret>,
    /// Unix time after which an enrolment that was not activated is void.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentState {
    None,
    Pending,
    Active,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
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
    },
    /// Refused. `message` is text for the person (already stripped of control characters).
    Denied {
        reason: DenyReason,
        #[serde(default)]
        message: Option<String>,
    },
    /// The push is still waiting for an answer.
    Pending,
    /// The second-factor service could not be reached.
    Unavailable {
        detail: String,
    },
    Enrollment(Enrollment),
    Activated {
        user: String,
    },
    Status(AccountStatus),
    Removed {
        user: String,
        existed: bool,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::Error {
            kind,
            message: message.into(),
        }
    }

    pub fn denied(reason: DenyReason) -> Self {
        Response::Denied {
            reason,
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_messages_hides_codes() {
        let r = Request::Otp {
            code: Secret::new("987654"),
        };
        assert!(!format!("{r:?}").contains("987654"));
        let e = Response::Enrollment(Enrollment {
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
        let r: Response =
            serde_json::from_str(r#"{"type":"denied","reason":"something_new"}"#).unwrap();
        assert_eq!(r, Response::denied(DenyReason::Other));
        let m: Vec<Method> = serde_json::from_str(r#"["otp","telepathy"]"#).unwrap();
        assert_eq!(m, vec![Method::Otp, Method::Unknown]);
    }

    #[test]
    fn begin_round_trips_with_optional_fields_missing() {
        let r: Request =
            serde_json::from_str(r#"{"type":"begin","user":"alice","service":"sshd"}"#).unwrap();
        match r {
            Request::Begin(ctx) => {
                assert_eq!(ctx.user, "alice");
                assert_eq!(ctx.rhost, None);
                assert!(!ctx.autopush);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
