//! The objects of the API, as pure data: parsing and validation, nothing that reaches
//! the server (their calls are in `model_calls`). Fields the protocol names are typed; any
//! other field the server sends is kept in `extra`, not rejected.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A string, or an integer turned into its decimal form (ids and reason codes are
/// strings in some servers and integers in others).
fn string_or_int<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or an integer, found {}",
            kind_of(&other)
        ))),
    }
}

fn opt_string_or_int<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, an integer or null, found {}",
            kind_of(&other)
        ))),
    }
}

fn string_or_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn parse<T: for<'de> Deserialize<'de> + Validate>(what: &str, v: Value) -> Result<T> {
    let t: T = serde_json::from_value(v).map_err(|e| {
        Error::InvalidResponse(format!("could not parse {what} from response: {e}"))
    })?;
    t.validate()?;
    Ok(t)
}

pub(crate) trait Validate {
    fn validate(&self) -> Result<()>;
}

fn nonempty(what: &str, field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidResponse(format!(
            "{what} has an empty {field}"
        )));
    }
    Ok(())
}

/// A person known to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Server id.
    #[serde(deserialize_with = "string_or_int")]
    pub id: String,
    /// User name (unique per requester).
    pub name: String,
    /// False when Toopher authentication is disabled for this user.
    pub toopher_authentication_enabled: bool,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Validate for User {
    fn validate(&self) -> Result<()> {
        nonempty("user", "id", &self.id)
    }
}

/// A pairing between a user and a phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pairing {
    /// Server id (a UUID).
    #[serde(deserialize_with = "string_or_int")]
    pub id: String,
    /// True once the phone has completed the pairing and it may authenticate.
    pub enabled: bool,
    /// True while the phone has not completed the pairing.
    pub pending: bool,
    /// The paired user.
    pub user: User,
    /// Sent by some servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated: Option<bool>,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Validate for Pairing {
    fn validate(&self) -> Result<()> {
        nonempty("pairing", "id", &self.id)?;
        self.user.validate()
    }
}

/// A place a login comes from, as named by the requester.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserTerminal {
    /// Server id.
    #[serde(deserialize_with = "string_or_int")]
    pub id: String,
    /// Human name of the terminal.
    pub name: String,
    /// The requester's stable id of the terminal.
    #[serde(deserialize_with = "string_or_null")]
    pub requester_specified_id: String,
    /// The user the terminal belongs to.
    pub user: User,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Validate for UserTerminal {
    fn validate(&self) -> Result<()> {
        nonempty("terminal", "id", &self.id)?;
        self.user.validate()
    }
}

/// What the person is asked to approve ("Log In", "sudo").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Server id.
    #[serde(deserialize_with = "string_or_int")]
    pub id: String,
    /// Action name.
    pub name: String,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Validate for Action {
    fn validate(&self) -> Result<()> {
        nonempty("action", "id", &self.id)
    }
}

/// One authentication (a push, or an OTP check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthenticationRequest {
    /// Server id (a UUID).
    #[serde(deserialize_with = "string_or_int")]
    pub id: String,
    /// True until the person answered (or the request was settled by an OTP).
    pub pending: bool,
    /// True when granted. Meaningful only when `pending` is false: use
    /// [`AuthenticationRequest::is_granted`].
    pub granted: bool,
    /// True when the app answered by itself.
    pub automated: bool,
    /// Human text explaining the answer (untrusted: strip control characters before
    /// display).
    #[serde(deserialize_with = "string_or_null")]
    pub reason: String,
    /// Machine reason code (integer or string on the wire; kept as a string).
    #[serde(default, deserialize_with = "opt_string_or_int")]
    pub reason_code: Option<String>,
    /// Where the request came from.
    pub terminal: UserTerminal,
    /// Who is asked.
    pub user: User,
    /// What is asked.
    pub action: Action,
    /// Other fields, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Validate for AuthenticationRequest {
    fn validate(&self) -> Result<()> {
        nonempty("authentication request", "id", &self.id)?;
        self.terminal.validate()?;
        self.user.validate()?;
        self.action.validate()
    }
}

impl AuthenticationRequest {
    /// True only for a settled, granted request.
    pub fn is_granted(&self) -> bool {
        !self.pending && self.granted
    }

    /// True for a settled request that was not granted.
    pub fn is_denied(&self) -> bool {
        !self.pending && !self.granted
    }

    /// The reason code as a number, when it is one.
    pub fn reason_code_number(&self) -> Option<i64> {
        self.reason_code.as_deref().and_then(|c| c.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({"id": "u1", "name": "jdoe", "toopher_authentication_enabled": true})
    }

    fn auth_request(reason_code: Value) -> Value {
        json!({
            "id": "a1", "pending": false, "granted": true, "automated": false,
            "reason": "it is a test", "reason_code": reason_code,
            "terminal": {"id": "t1", "name": "term", "requester_specified_id": "rs", "user": user()},
            "user": user(), "action": {"id": "x1", "name": "Log In"},
            "something_new": {"nested": 1}
        })
    }

    #[test]
    fn reason_code_accepts_string_and_integer() {
        let a: AuthenticationRequest = parse("r", auth_request(json!(100))).unwrap();
        assert_eq!(a.reason_code.as_deref(), Some("100"));
        assert_eq!(a.reason_code_number(), Some(100));
        let a: AuthenticationRequest = parse("r", auth_request(json!("100"))).unwrap();
        assert_eq!(a.reason_code.as_deref(), Some("100"));
        let a: AuthenticationRequest = parse("r", auth_request(Value::Null)).unwrap();
        assert_eq!(a.reason_code, None);
        assert!(parse::<AuthenticationRequest>("r", auth_request(json!(1.5))).is_err());
    }

    #[test]
    fn unknown_fields_are_kept() {
        let a: AuthenticationRequest = parse("r", auth_request(json!(1))).unwrap();
        assert_eq!(a.extra.get("something_new"), Some(&json!({"nested": 1})));
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back["something_new"]["nested"], 1);
        assert!(a.is_granted());
    }

    #[test]
    fn wrong_types_are_errors_never_grants() {
        let mut v = auth_request(json!(1));
        v["granted"] = json!("true");
        let e = parse::<AuthenticationRequest>("r", v).unwrap_err();
        assert!(matches!(e, Error::InvalidResponse(_)), "{e}");
        let mut v = auth_request(json!(1));
        v.as_object_mut().unwrap().remove("pending");
        assert!(parse::<AuthenticationRequest>("r", v).is_err());
        let mut v = auth_request(json!(1));
        v["id"] = json!("");
        assert!(parse::<AuthenticationRequest>("r", v).is_err());
        assert!(parse::<AuthenticationRequest>("r", json!([])).is_err());
    }

    #[test]
    fn pending_is_neither_granted_nor_denied() {
        let mut v = auth_request(json!(1));
        v["pending"] = json!(true);
        let a: AuthenticationRequest = parse("r", v).unwrap();
        assert!(!a.is_granted() && !a.is_denied());
    }

    #[test]
    fn pairing_with_deactivated_and_integer_ids() {
        let p: Pairing = parse(
            "pairing",
            json!({"id": 5, "enabled": false, "pending": true, "deactivated": true,
                   "user": {"id": 7, "name": "x", "toopher_authentication_enabled": false}}),
        )
        .unwrap();
        assert_eq!(p.id, "5");
        assert_eq!(p.user.id, "7");
        assert_eq!(p.deactivated, Some(true));
    }
}
