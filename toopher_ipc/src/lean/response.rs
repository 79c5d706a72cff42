//! A [`LoginResponse`] from a buffered message, read as serde's derived code reads it:
//! the tag `type` anywhere in the object (or first in an array), a struct's fields by
//! name (a known one twice is an error, unknown ones are ignored) or in order, a unit
//! enum as its name (or a one-entry object naming it), `#[serde(other)]` and
//! `#[serde(default)]` where the types have them. Kept in step with message.rs by the
//! tests in `lean::tests` and the `lean_vs_serde` fuzz target.

use super::read::{Text, Value};
use crate::{
    AllowReason, DenyReason, ErrorKind, ErrorReply, FailureNotice, LoginResponse, Method,
    RegistrationNext, RegistrationStatus, Secret,
};

/// Not a login's answer (where does not matter: the caller names the message).
pub(super) struct Invalid;

type Read<T> = Result<T, Invalid>;

pub(super) fn login_response(msg: Value) -> Read<LoginResponse> {
    let (tag, body) = split_tag(msg)?;
    Ok(match tag.as_str() {
        "allow" => {
            let [reason] = fields(body, ["reason"])?;
            LoginResponse::Allow {
                reason: unit_enum(required(reason)?, ALLOW_REASONS, None)?,
            }
        }
        "challenge" => {
            let [methods, push_pending] = fields(body, ["methods", "push_pending"])?;
            LoginResponse::Challenge {
                methods: list(required(methods)?, method)?,
                push_pending: boolean(required(push_pending)?)?,
            }
        }
        "register" => {
            let [code, expires] = fields(body, ["registration_code", "expires_in_secs"])?;
            LoginResponse::Register {
                registration_code: string(required(code)?)?,
                expires_in_secs: u32_of(required(expires)?)?,
            }
        }
        "granted" => {
            let [method_v, notice] = fields(body, ["method", "notice"])?;
            LoginResponse::Granted {
                method: method(required(method_v)?)?,
                notice: match notice {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(failure_notice(v)?),
                },
            }
        }
        "denied" => {
            let [reason, message] = fields(body, ["reason", "message"])?;
            LoginResponse::Denied {
                reason: unit_enum(required(reason)?, DENY_REASONS, Some(DenyReason::Other))?,
                message: optional_string(message)?,
            }
        }
        // A unit variant takes any object, or an array with nothing after the tag.
        "pending" => match body {
            Value::Object(_) => LoginResponse::Pending,
            Value::Array(rest) if rest.is_empty() => LoginResponse::Pending,
            _ => return Err(Invalid),
        },
        "unavailable" => {
            let [detail] = fields(body, ["detail"])?;
            LoginResponse::Unavailable {
                detail: string(required(detail)?)?,
            }
        }
        "registration" => registration(body)?,
        "grace_token" => {
            let [token] = fields(body, ["token"])?;
            LoginResponse::GraceToken {
                token: Secret::new(string(required(token)?)?),
            }
        }
        "bound" => {
            let [session] = fields(body, ["session"])?;
            LoginResponse::Bound {
                session: u32_of(required(session)?)?,
            }
        }
        "error" => {
            let [kind, message] = fields(body, ["kind", "message"])?;
            LoginResponse::Error(ErrorReply {
                kind: unit_enum(required(kind)?, ERROR_KINDS, Some(ErrorKind::Other))?,
                message: string(required(message)?)?,
            })
        }
        _ => return Err(Invalid),
    })
}

/// The tag of an internally tagged enum and the rest of its body: in an object the
/// entry `type` (exactly once, a string), in an array the first element.
fn split_tag(msg: Value) -> Read<(Text, Value)> {
    match msg {
        Value::Object(entries) => {
            let mut tag = None;
            let mut rest = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                if key.as_str() == "type" {
                    if tag.is_some() {
                        return Err(Invalid);
                    }
                    tag = Some(value);
                } else {
                    rest.push((key, value));
                }
            }
            match tag {
                Some(Value::Str(t)) => Ok((t, Value::Object(rest))),
                _ => Err(Invalid),
            }
        }
        Value::Array(items) => {
            let mut items = items.into_iter();
            match items.next() {
                Some(Value::Str(t)) => Ok((t, Value::Array(items.collect()))),
                _ => Err(Invalid),
            }
        }
        _ => Err(Invalid),
    }
}

/// A struct's fields: by name from an object (a known name twice is an error, unknown
/// names are ignored), or in order from an array (none left over; missing ones are
/// missing, for the caller's default).
fn fields<const N: usize>(body: Value, names: [&str; N]) -> Read<[Option<Value>; N]> {
    let mut slots: [Option<Value>; N] = std::array::from_fn(|_| None);
    match body {
        Value::Object(entries) => {
            for (key, value) in entries {
                if let Some(i) = names.iter().position(|n| *n == key.as_str()) {
                    match slots.get_mut(i) {
                        Some(slot @ None) => *slot = Some(value),
                        _ => return Err(Invalid),
                    }
                }
            }
        }
        Value::Array(items) if items.len() <= N => {
            for (slot, value) in slots.iter_mut().zip(items) {
                *slot = Some(value);
            }
        }
        _ => return Err(Invalid),
    }
    Ok(slots)
}

fn registration(body: Value) -> Read<LoginResponse> {
    // `next` is flattened: serde reads it from the entries the struct does not know,
    // and only from an object.
    let Value::Object(entries) = body else {
        return Err(Invalid);
    };
    let (mut status, mut message, mut tag) = (None, None, None);
    let mut rest = Vec::new();
    for (key, value) in entries {
        let slot = match key.as_str() {
            "status" => &mut status,
            "message" => &mut message,
            "next" => &mut tag,
            _ => {
                rest.push((key, value));
                continue;
            }
        };
        if slot.is_some() {
            return Err(Invalid);
        }
        *slot = Some(value);
    }
    let status = unit_enum(required(status)?, REGISTRATION_STATUSES, None)?;
    let message = string(required(message)?)?;
    // A flattened tag is read from buffered content, where serde also takes a variant's
    // index for its name.
    let next = match required(tag)? {
        Value::Str(name) => NEXT_NAMES.iter().position(|n| *n == name.as_str()),
        Value::Uint(i) => usize::try_from(i).ok().filter(|i| *i < NEXT_NAMES.len()),
        _ => None,
    };
    let body = Value::Object(rest);
    let next = match next.ok_or(Invalid)? {
        0 => RegistrationNext::Retry,
        1 => {
            let [code, expires] = fields(body, ["registration_code", "expires_in_secs"])?;
            RegistrationNext::StartOver {
                registration_code: string(required(code)?)?,
                expires_in_secs: u32_of(required(expires)?)?,
            }
        }
        2 => {
            let [qr, secret, uri, codes] =
                fields(body, ["qr_text", "secret", "otpauth_uri", "recovery_codes"])?;
            RegistrationNext::EnrollTotp {
                qr_text: Secret::new(string(required(qr)?)?),
                secret: Secret::new(string(required(secret)?)?),
                otpauth_uri: Secret::new(string(required(uri)?)?),
                recovery_codes: list(required(codes)?, |v| string(v).map(Secret::new))?,
            }
        }
        _ => RegistrationNext::PairPhrase,
    };
    Ok(LoginResponse::Registration {
        status,
        message,
        next,
    })
}

const NEXT_NAMES: [&str; 4] = ["retry", "start_over", "enroll_totp", "pair_phrase"];

fn failure_notice(v: Value) -> Read<FailureNotice> {
    let [failures, rhosts, more, last_at] =
        fields(v, ["failures", "rhosts", "more_rhosts", "last_at"])?;
    Ok(FailureNotice {
        failures: u32_of(required(failures)?)?,
        rhosts: match rhosts {
            None => Vec::new(),
            Some(v) => list(v, string)?,
        },
        more_rhosts: match more {
            None => false,
            Some(v) => boolean(v)?,
        },
        last_at: match last_at {
            None | Some(Value::Null) => None,
            Some(Value::Uint(n)) => Some(n),
            Some(_) => return Err(Invalid),
        },
    })
}

fn required(v: Option<Value>) -> Read<Value> {
    v.ok_or(Invalid)
}

fn string(v: Value) -> Read<String> {
    match v {
        // The text moves out; the emptied wrapper has nothing left to wipe.
        Value::Str(mut t) => Ok(std::mem::take(&mut *t)),
        _ => Err(Invalid),
    }
}

/// An `Option<String>` with `#[serde(default)]`: missing or null is `None`.
fn optional_string(v: Option<Value>) -> Read<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v).map(Some),
    }
}

fn boolean(v: Value) -> Read<bool> {
    match v {
        Value::Bool(b) => Ok(b),
        _ => Err(Invalid),
    }
}

fn u32_of(v: Value) -> Read<u32> {
    match v {
        Value::Uint(n) => u32::try_from(n).map_err(|_| Invalid),
        _ => Err(Invalid),
    }
}

fn list<T>(v: Value, each: impl Fn(Value) -> Read<T>) -> Read<Vec<T>> {
    match v {
        Value::Array(items) => items.into_iter().map(each).collect(),
        _ => Err(Invalid),
    }
}

fn method(v: Value) -> Read<Method> {
    unit_enum(v, METHODS, Some(Method::Unknown))
}

/// A unit enum: its variant's name, or an object of one entry whose key names it and
/// whose value is null or `{}`; an unknown name is `other` when the enum has one.
fn unit_enum<T: Copy>(v: Value, names: &[(&str, T)], other: Option<T>) -> Read<T> {
    let (name, payload) = match v {
        Value::Str(name) => (name, None),
        Value::Object(mut entries) if entries.len() == 1 => match entries.pop() {
            Some((name, payload)) => (name, Some(payload)),
            None => return Err(Invalid),
        },
        _ => return Err(Invalid),
    };
    let found = names
        .iter()
        .find(|(n, _)| *n == name.as_str())
        .map(|(_, t)| *t)
        .or(other)
        .ok_or(Invalid)?;
    match payload {
        None | Some(Value::Null) => Ok(found),
        Some(Value::Object(e)) if e.is_empty() => Ok(found),
        Some(_) => Err(Invalid),
    }
}

const METHODS: &[(&str, Method)] = &[
    ("otp", Method::Otp),
    ("recovery_code", Method::RecoveryCode),
    ("push", Method::Push),
    ("unknown", Method::Unknown),
];

const ALLOW_REASONS: &[(&str, AllowReason)] = &[
    ("not_enrolled", AllowReason::NotEnrolled),
    ("exempt", AllowReason::Exempt),
    ("failmode", AllowReason::Failmode),
];

const DENY_REASONS: &[(&str, DenyReason)] = &[
    ("wrong_code", DenyReason::WrongCode),
    ("rate_limited", DenyReason::RateLimited),
    ("not_enrolled", DenyReason::NotEnrolled),
    ("push_denied", DenyReason::PushDenied),
    ("push_timeout", DenyReason::PushTimeout),
    ("user_disabled", DenyReason::UserDisabled),
    ("policy", DenyReason::Policy),
    ("other", DenyReason::Other),
];

const ERROR_KINDS: &[(&str, ErrorKind)] = &[
    ("bad_request", ErrorKind::BadRequest),
    ("forbidden", ErrorKind::Forbidden),
    ("not_found", ErrorKind::NotFound),
    ("conflict", ErrorKind::Conflict),
    ("unsupported", ErrorKind::Unsupported),
    ("version", ErrorKind::Version),
    ("too_large", ErrorKind::TooLarge),
    ("busy", ErrorKind::Busy),
    ("internal", ErrorKind::Internal),
    ("other", ErrorKind::Other),
];

const REGISTRATION_STATUSES: &[(&str, RegistrationStatus)] = &[
    ("Registered", RegistrationStatus::Registered),
    ("WrongResponse", RegistrationStatus::WrongResponse),
    ("NotApproved", RegistrationStatus::NotApproved),
    ("Failed", RegistrationStatus::Failed),
];
