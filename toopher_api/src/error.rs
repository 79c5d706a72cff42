//! The one error type of this crate.

use std::fmt;
use std::time::Duration;

/// What kind of transport failure happened (no answer came from the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Could not connect (DNS, refused, unreachable network).
    Connect,
    /// The connect or the whole request took longer than the configured timeout.
    Timeout,
    /// The TLS handshake failed (certificate not trusted, wrong name, protocol error).
    Tls,
    /// The connection broke while sending the request or reading the answer.
    Io,
}

/// What the service's error answer means, from the HTTP status and the Toopher
/// `error_code` (see the spec's error tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 400: a parameter is missing or wrong.
    BadRequest,
    /// 401: the OAuth signature was refused (bad signature, unknown consumer, stale
    /// timestamp, reused nonce).
    Unauthorized,
    /// 403 / code 601: not allowed, for another reason than a deactivated pairing.
    NotAllowed,
    /// 707, or 601 whose message says the pairing is deactivated or not authorized.
    PairingDeactivated,
    /// 704: the user has disabled Toopher authentication.
    UserDisabled,
    /// 705: no matching user exists.
    UserUnknown,
    /// 706: no matching terminal exists.
    TerminalUnknown,
    /// 708: the user requires OTP authentication.
    RequiresOtp,
    /// 404: no such object.
    NotFound,
    /// 409: conflict with the user's state (without a more specific code).
    Conflict,
    /// 429: rate limited; see [`ApiError::retry_after`].
    RateLimited,
    /// 5xx: the service failed.
    ServerError,
    /// Any other status.
    Other,
}

/// An error answer from the service (HTTP status >= 400 with a JSON error body), or an
/// error postback from the iframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status; `None` for an iframe error postback.
    pub status: Option<u16>,
    /// The Toopher `error_code`, when the body had one.
    pub code: Option<i64>,
    /// The service's `error_message`, as sent (untrusted text: strip control characters
    /// before showing it on a terminal).
    pub message: String,
    /// What it means.
    pub kind: ApiErrorKind,
    /// The `Retry-After` delay of a 429 (or 503) answer, when given in seconds.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Classifies an error answer.
    pub fn new(
        status: Option<u16>,
        code: Option<i64>,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let message = message.into();
        let kind = classify(status, code, &message);
        ApiError {
            status,
            code,
            message,
            kind,
            retry_after,
        }
    }
}

fn classify(status: Option<u16>, code: Option<i64>, message: &str) -> ApiErrorKind {
    match code {
        Some(704) => return ApiErrorKind::UserDisabled,
        Some(705) => return ApiErrorKind::UserUnknown,
        Some(706) => return ApiErrorKind::TerminalUnknown,
        Some(707) => return ApiErrorKind::PairingDeactivated,
        Some(708) => return ApiErrorKind::RequiresOtp,
        Some(601) => {
            let m = message.to_ascii_lowercase();
            if m.contains("deactivated") || m.contains("not been authorized") {
                return ApiErrorKind::PairingDeactivated;
            }
            return ApiErrorKind::NotAllowed;
        }
        _ => {}
    }
    match status {
        Some(400) => ApiErrorKind::BadRequest,
        Some(401) => ApiErrorKind::Unauthorized,
        Some(403) => ApiErrorKind::NotAllowed,
        Some(404) => ApiErrorKind::NotFound,
        Some(409) => ApiErrorKind::Conflict,
        Some(429) => ApiErrorKind::RateLimited,
        Some(s) if s >= 500 => ApiErrorKind::ServerError,
        _ => ApiErrorKind::Other,
    }
}

/// Why an iframe postback was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostbackError {
    /// Required fields are missing (`toopher_sig`, `timestamp`, `session_token`).
    MissingKeys(Vec<String>),
    /// `session_token` is not the request token the caller expected.
    SessionTokenMismatch,
    /// The postback is older than the TTL.
    TtlExpired,
    /// `toopher_sig` does not match the computed signature.
    SignatureMismatch,
    /// `resource_type` is missing or unknown.
    InvalidResourceType(String),
    /// The form data is malformed (duplicate field, bad number, missing object field).
    Malformed(String),
}

impl fmt::Display for PostbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostbackError::MissingKeys(k) => write!(f, "missing required keys: {}", k.join(", ")),
            PostbackError::SessionTokenMismatch => {
                f.write_str("session token does not match expected value")
            }
            PostbackError::TtlExpired => f.write_str("TTL expired"),
            PostbackError::SignatureMismatch => {
                f.write_str("computed signature does not match submitted signature")
            }
            PostbackError::InvalidResourceType(t) => {
                write!(f, "the postback resource type is not valid: {t:?}")
            }
            PostbackError::Malformed(m) => write!(f, "malformed postback: {m}"),
        }
    }
}

/// How to react to an error: the question a caller asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No answer from the service (connect, timeout, TLS, broken connection).
    Unreachable,
    /// The service answered with a 5xx: it is up but cannot serve.
    ServerError,
    /// 429: the service asks to slow down.
    RateLimited,
    /// The service (or a postback) said no: a 4xx answer, an error postback, or no
    /// such user.
    Rejected,
    /// An answer came but cannot be trusted: not JSON, wrong shape, unexpected status,
    /// or a postback that fails validation. Never a grant.
    InvalidResponse,
    /// A local problem: configuration or an invalid argument.
    Local,
}

/// The error type of every fallible operation in this crate.
///
/// It never contains the consumer secret, an OTP or a request body.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// No answer from the service.
    Transport {
        /// Which failure.
        kind: TransportKind,
        /// A description (without the URL).
        message: String,
    },
    /// The service answered with an error status and a JSON error body.
    Api(ApiError),
    /// The response body could not be decoded as JSON.
    NotJson {
        /// HTTP status of the answer.
        status: u16,
        /// `Retry-After`, when the answer carried one.
        retry_after: Option<Duration>,
    },
    /// The answer was JSON (or bytes) but not what the protocol says.
    InvalidResponse(String),
    /// `get_user_by_name` found no user with that name.
    NoSuchUser(String),
    /// `get_user_by_name` found more than one user with that name.
    MultipleUsers(String),
    /// An iframe postback failed validation.
    Postback(PostbackError),
    /// Bad configuration (base URL, CA file, HTTP not allowed, TLS setup).
    Config(String),
    /// A bad argument (empty name, and so on).
    InvalidArgument(String),
}

impl Error {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Transport { .. } => ErrorClass::Unreachable,
            Error::Api(e) => match e.status {
                Some(429) => ErrorClass::RateLimited,
                Some(s) if s >= 500 => ErrorClass::ServerError,
                _ => ErrorClass::Rejected,
            },
            Error::NotJson { status, .. } => match *status {
                429 => ErrorClass::RateLimited,
                s if s >= 500 => ErrorClass::ServerError,
                _ => ErrorClass::InvalidResponse,
            },
            Error::InvalidResponse(_) | Error::Postback(_) => ErrorClass::InvalidResponse,
            Error::NoSuchUser(_) | Error::MultipleUsers(_) => ErrorClass::Rejected,
            Error::Config(_) | Error::InvalidArgument(_) => ErrorClass::Local,
        }
    }

    /// "Was the service unreachable?": no answer at all, or a 5xx (the service could
    /// not serve). This is the case a failmode policy applies to. A rejection, a rate
    /// limit or an answer that does not parse is not.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Unreachable | ErrorClass::ServerError
        )
    }

    /// A transport failure only (no HTTP answer at all).
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Transport { .. })
    }

    /// "Did it say no?": a 4xx answer (other than 429), an error postback, or no such
    /// user.
    pub fn is_rejection(&self) -> bool {
        self.class() == ErrorClass::Rejected
    }

    /// The transport failure kind, if this is one.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            Error::Transport { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The API error, if the service answered with one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The API error kind, if the service answered with an error.
    pub fn api_kind(&self) -> Option<ApiErrorKind> {
        self.api_error().map(|e| e.kind)
    }

    /// The Toopher error code, if the service answered with one.
    pub fn error_code(&self) -> Option<i64> {
        self.api_error().and_then(|e| e.code)
    }

    /// The HTTP status, if an answer came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => e.status,
            Error::NotJson { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `Retry-After` delay, if the answer carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            Error::NotJson { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport { kind, message } => {
                let what = match kind {
                    TransportKind::Connect => "could not connect to the Toopher API",
                    TransportKind::Timeout => "the Toopher API did not answer in time",
                    TransportKind::Tls => "TLS failure talking to the Toopher API",
                    TransportKind::Io => "connection to the Toopher API failed",
                };
                write!(f, "{what}: {message}")
            }
            Error::Api(e) => {
                match e.status {
                    Some(s) => write!(f, "Toopher API error (HTTP {s}")?,
                    None => write!(f, "Toopher error postback (")?,
                }
                if let Some(c) = e.code {
                    write!(f, ", code {c}")?;
                }
                write!(f, "): {}", e.message)?;
                if let Some(r) = e.retry_after {
                    write!(f, " (retry after {} s)", r.as_secs())?;
                }
                Ok(())
            }
            Error::NotJson { status, .. } => write!(
                f,
                "response from server could not be decoded as JSON (HTTP {status})"
            ),
            Error::InvalidResponse(m) => write!(f, "invalid response from the Toopher API: {m}"),
            Error::NoSuchUser(n) => write!(f, "no users with name = {n}"),
            Error::MultipleUsers(n) => write!(f, "multiple users with name = {n}"),
            Error::Postback(p) => write!(f, "invalid postback: {p}"),
            Error::Config(m) => write!(f, "configuration error: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<PostbackError> for Error {
    fn from(p: PostbackError) -> Self {
        Error::Postback(p)
    }
}

/// `Result` with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<i64>, msg: &str) -> Error {
        Error::Api(ApiError::new(Some(status), code, msg, None))
    }

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            (
                409,
                Some(704),
                "The specified user has disabled Toopher authentication.",
                ApiErrorKind::UserDisabled,
            ),
            (
                409,
                Some(705),
                "No matching user exists.",
                ApiErrorKind::UserUnknown,
            ),
            (
                409,
                Some(706),
                "No matching terminal exists.",
                ApiErrorKind::TerminalUnknown,
            ),
            (
                409,
                Some(707),
                "Pairing has been deactivated.",
                ApiErrorKind::PairingDeactivated,
            ),
            (
                409,
                Some(708),
                "User requires OTP authentication",
                ApiErrorKind::RequiresOtp,
            ),
            (
                403,
                Some(601),
                "This pairing has been deactivated.",
                ApiErrorKind::PairingDeactivated,
            ),
            (
                403,
                Some(601),
                "This pairing has not been authorized to authenticate.",
                ApiErrorKind::PairingDeactivated,
            ),
            (
                403,
                Some(601),
                "Something else is not allowed.",
                ApiErrorKind::NotAllowed,
            ),
            (
                400,
                Some(400),
                "missing parameter",
                ApiErrorKind::BadRequest,
            ),
            (
                401,
                Some(401),
                "Not a valid OAuth signed request",
                ApiErrorKind::Unauthorized,
            ),
            (403, None, "", ApiErrorKind::NotAllowed),
            (404, Some(404), "not found", ApiErrorKind::NotFound),
            (409, None, "conflict", ApiErrorKind::Conflict),
            (429, Some(429), "slow down", ApiErrorKind::RateLimited),
            (500, None, "boom", ApiErrorKind::ServerError),
            (503, None, "down", ApiErrorKind::ServerError),
            (418, None, "teapot", ApiErrorKind::Other),
        ];
        for (status, code, msg, kind) in cases {
            let e = api(status, code, msg);
            assert_eq!(e.api_kind(), Some(kind), "{status} {code:?} {msg}");
            assert_eq!(e.status(), Some(status));
        }
    }

    #[test]
    fn classes_separate_unreachable_from_rejection() {
        let t = Error::Transport {
            kind: TransportKind::Timeout,
            message: "x".into(),
        };
        assert!(t.is_unreachable() && t.is_transport() && !t.is_rejection());
        assert_eq!(t.transport_kind(), Some(TransportKind::Timeout));

        let s = api(503, None, "down");
        assert!(s.is_unreachable() && !s.is_transport() && !s.is_rejection());

        for e in [
            api(409, Some(704), "d"),
            api(401, Some(401), "x"),
            api(403, Some(601), "x"),
        ] {
            assert!(e.is_rejection() && !e.is_unreachable());
        }

        let r = Error::Api(ApiError::new(
            Some(429),
            None,
            "",
            Some(Duration::from_secs(7)),
        ));
        assert_eq!(r.class(), ErrorClass::RateLimited);
        assert_eq!(r.retry_after(), Some(Duration::from_secs(7)));
        assert!(!r.is_unreachable() && !r.is_rejection());
        assert!(r.to_string().contains("retry after 7 s"));

        let nj = Error::NotJson {
            status: 200,
            retry_after: None,
        };
        assert_eq!(nj.class(), ErrorClass::InvalidResponse);
        assert!(nj.to_string().contains("could not be decoded as JSON"));
        assert_eq!(
            Error::NotJson {
                status: 502,
                retry_after: None
            }
            .class(),
            ErrorClass::ServerError
        );
        assert_eq!(
            Error::InvalidResponse("x".into()).class(),
            ErrorClass::InvalidResponse
        );
        assert_eq!(
            Error::Postback(PostbackError::TtlExpired).class(),
            ErrorClass::InvalidResponse
        );
        assert_eq!(Error::NoSuchUser("a".into()).class(), ErrorClass::Rejected);
        assert_eq!(Error::Config("x".into()).class(), ErrorClass::Local);
    }

    #[test]
    fn display_shows_code_and_message() {
        let e = api(
            409,
            Some(704),
            "The specified user has disabled Toopher authentication.",
        );
        assert_eq!(
            e.to_string(),
            "Toopher API error (HTTP 409, code 704): The specified user has disabled Toopher authentication."
        );
    }
}
