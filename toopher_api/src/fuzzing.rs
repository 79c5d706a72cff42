//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by default): the
//! functions the client runs on an HTTP answer, reachable without a server. Not an API.

use std::time::Duration;

use serde_json::Value;

use crate::client::{json_from_response, parse_retry_after};
use crate::error::Result;
use crate::models::{AuthenticationRequest, Pairing, User, UserTerminal, parse};

/// What the client makes of an answer's status and body (an error for any status >= 400).
pub fn answer(status: u16, body: &[u8], retry_after: Option<Duration>) -> Result<Value> {
    json_from_response(status, body, retry_after)
}

/// The `Retry-After` delay the client reads from a header value.
pub fn retry_after(value: &[u8]) -> Option<Duration> {
    let value = reqwest::header::HeaderValue::from_bytes(value).ok()?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::RETRY_AFTER, value);
    parse_retry_after(&headers)
}

/// The typed objects, parsed and validated as the client does.
pub fn pairing(v: Value) -> Result<Pairing> {
    parse("pairing", v)
}

pub fn authentication_request(v: Value) -> Result<AuthenticationRequest> {
    parse("authentication request", v)
}

pub fn user(v: Value) -> Result<User> {
    parse("user", v)
}

pub fn user_terminal(v: Value) -> Result<UserTerminal> {
    parse("user terminal", v)
}
