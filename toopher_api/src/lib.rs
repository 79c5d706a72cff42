//! Client of the Toopher REST API v1 as `doc/TOOPHER_API.md` describes it (the simulator in
//! `tests/sim` serves the same API, and both crates' tests pin the wire format).
//!
//! - [`ToopherApi`]: the signed REST client (pairings, authentication requests,
//!   users, terminals, reset links, QR codes, and generic signed `get`/`post`).
//! - [`ToopherIframe`]: signed iframe URLs and postback validation.
//! - [`oauth`]: OAuth 1.0a HMAC-SHA1 signing (RFC 5849).
//! - [`Error`]: one error type; ask [`Error::is_unreachable`] ("was the service
//!   unreachable?") separately from [`Error::is_rejection`] ("did it say no?").
//!
//! No secret (consumer secret, OTP) appears in a `Debug`/`Display` output or an error.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
/// The client's answer parsing, for the fuzz targets in `fuzz/`. Not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod fuzzing;
mod iframe;
mod model_calls;
mod models;
pub mod oauth;

pub use client::{
    AuthenticateOptions, DEFAULT_BASE_URL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT, MAX_RESPONSE_BYTES, ToopherApi, ToopherApiBuilder, looks_like_uuid,
};
pub use error::{ApiError, ApiErrorKind, Error, ErrorClass, PostbackError, Result, TransportKind};
pub use iframe::{
    DEFAULT_IFRAME_TTL, IFRAME_VERSION, PostbackResource, ToopherIframe, postback_signature,
};
pub use models::{Action, AuthenticationRequest, Pairing, User, UserTerminal};
pub use oauth::{Clock, FixedClock, FixedNonce, NonceSource, RandomNonce, Secret, SystemClock};
