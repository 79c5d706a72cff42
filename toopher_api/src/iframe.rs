//! `ToopherIframe`: signed URLs of the web flow and validation of its postbacks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Map;
use subtle::ConstantTimeEq;

use crate::client::{DEFAULT_BASE_URL, normalize_base_url};
use crate::error::{ApiError, Error, PostbackError, Result};
use crate::models::{Action, AuthenticationRequest, Pairing, User, UserTerminal};
use crate::oauth::{
    Clock, NonceSource, Secret, Signer, encode_pairs, hmac_sha1_base64, signatures_equal,
};

/// Default lifetime of an iframe URL and of a postback, in seconds.
pub const DEFAULT_IFRAME_TTL: u64 = 300;
/// The iframe protocol version sent as `v`.
pub const IFRAME_VERSION: &str = "2";

/// What a valid postback carries.
#[derive(Debug, Clone, PartialEq)]
pub enum PostbackResource {
    /// `resource_type=authentication_request`
    AuthenticationRequest(Box<AuthenticationRequest>),
    /// `resource_type=pairing`
    Pairing(Pairing),
    /// `resource_type=requester_user`
    User(User),
}

/// Signed URLs for the Toopher iframe, and postback validation.
#[derive(Clone)]
pub struct ToopherIframe {
    signer: Signer,
    base: String,
    ttl: u64,
}

impl fmt::Debug for ToopherIframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToopherIframe")
            .field("base_url", &self.base)
            .field("consumer_key", &self.signer.consumer_key())
            .field("consumer_secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Python 2 `urllib.quote_plus`: letters, digits and `_ . -` stay, a space becomes `+`,
/// every other byte `%XX`.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The postback signature: base64(HMAC-SHA1(key = consumer secret, message = the
/// fields sorted by name, form-urlencoded with spaces as `+`)). `fields` must not
/// contain `toopher_sig`.
pub fn postback_signature(consumer_secret: &str, fields: &BTreeMap<String, String>) -> String {
    let message = fields
        .iter()
        .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
        .collect::<Vec<_>>()
        .join("&");
    hmac_sha1_base64(consumer_secret.as_bytes(), message.as_bytes())
}

fn field<'a>(m: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str> {
    m.get(name)
        .map(String::as_str)
        .ok_or_else(|| PostbackError::Malformed(format!("missing field {name}")).into())
}

fn flag(m: &BTreeMap<String, String>, name: &str) -> Result<bool> {
    Ok(field(m, name)? == "true")
}

impl ToopherIframe {
    /// An iframe helper for the default base URL.
    pub fn new(consumer_key: impl Into<String>, consumer_secret: impl Into<Secret>) -> Self {
        ToopherIframe {
            signer: Signer::new(consumer_key, consumer_secret),
            base: DEFAULT_BASE_URL.to_owned(),
            ttl: DEFAULT_IFRAME_TTL,
        }
    }

    /// Uses another base URL (`https`, or `http` for a local test server).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self> {
        self.base = normalize_base_url(base_url, true)?;
        Ok(self)
    }

    /// Sets the default TTL (seconds) of URLs and postbacks.
    pub fn with_ttl(mut self, ttl_secs: u64) -> Self {
        self.ttl = ttl_secs;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.signer = self.signer.with_clock(clock);
        self
    }

    /// Replaces the nonce source (tests).
    pub fn with_nonce_source(mut self, nonce: Arc<dyn NonceSource>) -> Self {
        self.signer = self.signer.with_nonce_source(nonce);
        self
    }

    /// The combined pairing and authentication URL:
    /// `{base}/web/authenticate?username&reset_email&action_name&session_token&requester_metadata&extras&expires&v`
    /// plus the OAuth parameters. `action_name` defaults to "Log In",
    /// `requester_metadata` to "". An extra named `ttl` sets this URL's lifetime.
    pub fn get_auth_url(
        &self,
        username: &str,
        reset_email: &str,
        request_token: &str,
        action_name: Option<&str>,
        requester_metadata: Option<&str>,
        extras: &[(&str, &str)],
    ) -> Result<String> {
        let params = vec![
            ("username".to_owned(), username.to_owned()),
            ("reset_email".to_owned(), reset_email.to_owned()),
            (
                "action_name".to_owned(),
                action_name.unwrap_or("Log In").to_owned(),
            ),
            ("session_token".to_owned(), request_token.to_owned()),
            (
                "requester_metadata".to_owned(),
                requester_metadata.unwrap_or("").to_owned(),
            ),
        ];
        self.signed_url("/web/authenticate", params, extras)
    }

    /// The user management URL: `{base}/web/manage_user?username&reset_email&extras&expires&v`
    /// plus the OAuth parameters.
    pub fn get_user_management_url(
        &self,
        username: &str,
        reset_email: &str,
        extras: &[(&str, &str)],
    ) -> Result<String> {
        let params = vec![
            ("username".to_owned(), username.to_owned()),
            ("reset_email".to_owned(), reset_email.to_owned()),
        ];
        self.signed_url("/web/manage_user", params, extras)
    }

    fn signed_url(
        &self,
        path: &str,
        mut params: Vec<(String, String)>,
        extras: &[(&str, &str)],
    ) -> Result<String> {
        let mut ttl = self.ttl;
        for (k, v) in extras {
            if *k == "ttl" {
                ttl = v
                    .parse()
                    .map_err(|_| Error::InvalidArgument("ttl is not a number of seconds".into()))?;
            } else if let Some(slot) = params.iter_mut().find(|(pk, _)| pk == k) {
                slot.1 = (*v).to_owned();
            } else {
                params.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        let oauth = self
            .signer
            .fresh_params()
            .map_err(|e| Error::Config(format!("no randomness for the OAuth nonce: {e}")))?;
        params.push((
            "expires".into(),
            (oauth.timestamp.saturating_add(ttl)).to_string(),
        ));
        params.push(("v".into(), IFRAME_VERSION.into()));
        let base = format!("{}{path}", self.base);
        let url = url::Url::parse(&base)
            .map_err(|e| Error::Config(format!("invalid iframe URL: {e}")))?;
        let signed = self.signer.sign_with("GET", &url, &params, &oauth);
        params.extend(signed.oauth);
        Ok(format!("{base}?{}", encode_pairs(&params)))
    }

    /// Validates a postback given as its `toopher_iframe_data` form string
    /// (`application/x-www-form-urlencoded`).
    pub fn validate_postback_urlencoded(
        &self,
        toopher_iframe_data: &str,
        request_token: Option<&str>,
    ) -> Result<PostbackResource> {
        let pairs: Vec<(String, String)> = form_decode(toopher_iframe_data);
        self.validate_postback(&pairs, request_token)
    }

    /// Validates a postback, as the spec says: an error postback is an error (never a
    /// grant); `toopher_sig`, `timestamp` and `session_token` are required; the
    /// session token must match `request_token` when one is given; a postback as old
    /// as the TTL is refused; the signature is compared in constant time; then the
    /// resource is built from `resource_type`.
    pub fn validate_postback<K: AsRef<str>, V: AsRef<str>>(
        &self,
        form_data: &[(K, V)],
        request_token: Option<&str>,
    ) -> Result<PostbackResource> {
        let mut data = BTreeMap::new();
        for (k, v) in form_data {
            if data
                .insert(k.as_ref().to_owned(), v.as_ref().to_owned())
                .is_some()
            {
                return Err(
                    PostbackError::Malformed(format!("duplicate field {}", k.as_ref())).into(),
                );
            }
        }

        // 1. An error postback is never a grant.
        if let Some(code) = data.get("error_code") {
            let code = code.trim().parse::<i64>().ok();
            let message = data.get("error_message").cloned().unwrap_or_default();
            return Err(Error::Api(ApiError::new(None, code, message, None)));
        }

        // 2. Required keys.
        let missing: Vec<String> = ["toopher_sig", "timestamp", "session_token"]
            .iter()
            .filter(|k| !data.contains_key(**k))
            .map(|k| (*k).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(PostbackError::MissingKeys(missing).into());
        }

        // 3. Session token.
        if let Some(token) = request_token.filter(|t| !t.is_empty()) {
            let session = data.get("session_token").map(String::as_str).unwrap_or("");
            if !bool::from(token.as_bytes().ct_eq(session.as_bytes())) {
                return Err(PostbackError::SessionTokenMismatch.into());
            }
        }

        // 4. TTL.
        let timestamp: i64 = data
            .get("timestamp")
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| PostbackError::Malformed("timestamp is not a number".into()))?;
        let now = i64::try_from(self.signer.now()).unwrap_or(i64::MAX);
        let ttl = i64::try_from(self.ttl).unwrap_or(i64::MAX);
        if now.saturating_sub(timestamp) >= ttl {
            return Err(PostbackError::TtlExpired.into());
        }

        // 5. Signature.
        let given = data.remove("toopher_sig").unwrap_or_default();
        let computed = postback_signature(self.signer_secret().expose(), &data);
        if !signatures_equal(&given, &computed) {
            return Err(PostbackError::SignatureMismatch.into());
        }

        // 6. The resource.
        let resource_type = data.get("resource_type").cloned().unwrap_or_default();
        match resource_type.as_str() {
            "authentication_request" => {
                let user = postback_user(
                    &data,
                    "pairing_user_id",
                    "user_name",
                    "user_toopher_authentication_enabled",
                )?;
                Ok(PostbackResource::AuthenticationRequest(Box::new(
                    AuthenticationRequest {
                        id: field(&data, "id")?.to_owned(),
                        pending: flag(&data, "pending")?,
                        granted: flag(&data, "granted")?,
                        automated: flag(&data, "automated")?,
                        reason: field(&data, "reason")?.to_owned(),
                        reason_code: Some(field(&data, "reason_code")?.to_owned()),
                        terminal: UserTerminal {
                            id: field(&data, "terminal_id")?.to_owned(),
                            name: field(&data, "terminal_name")?.to_owned(),
                            requester_specified_id: field(
                                &data,
                                "terminal_requester_specified_id",
                            )?
                            .to_owned(),
                            user: user.clone(),
                            extra: Map::new(),
                        },
                        user,
                        action: Action {
                            id: field(&data, "action_id")?.to_owned(),
                            name: field(&data, "action_name")?.to_owned(),
                            extra: Map::new(),
                        },
                        extra: Map::new(),
                    },
                )))
            }
            "pairing" => Ok(PostbackResource::Pairing(Pairing {
                id: field(&data, "id")?.to_owned(),
                enabled: flag(&data, "enabled")?,
                pending: flag(&data, "pending")?,
                user: postback_user(
                    &data,
                    "pairing_user_id",
                    "user_name",
                    "user_toopher_authentication_enabled",
                )?,
                deactivated: None,
                extra: Map::new(),
            })),
            "requester_user" => Ok(PostbackResource::User(postback_user(
                &data,
                "id",
                "name",
                "toopher_authentication_enabled",
            )?)),
            other => Err(PostbackError::InvalidResourceType(other.to_owned()).into()),
        }
    }

    /// True only for a valid postback of a settled, granted authentication request.
    /// Every error, an error postback included (even 704), is false.
    pub fn is_authentication_granted<K: AsRef<str>, V: AsRef<str>>(
        &self,
        form_data: &[(K, V)],
        request_token: Option<&str>,
    ) -> bool {
        matches!(
            self.validate_postback(form_data, request_token),
            Ok(PostbackResource::AuthenticationRequest(r)) if r.is_granted()
        )
    }

    fn signer_secret(&self) -> &Secret {
        self.signer.consumer_secret()
    }
}

fn postback_user(
    data: &BTreeMap<String, String>,
    id: &str,
    name: &str,
    enabled: &str,
) -> Result<User> {
    Ok(User {
        id: field(data, id)?.to_owned(),
        name: field(data, name)?.to_owned(),
        toopher_authentication_enabled: flag(data, enabled)?,
        extra: Map::new(),
    })
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space).
fn form_decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiErrorKind;
    use crate::oauth::{FixedClock, FixedNonce};

    fn iframe(now: u64) -> ToopherIframe {
        ToopherIframe::new("abcdefg", "hijklmnop")
            .with_base_url("https://api.toopher.test/v1")
            .unwrap()
            .with_clock(Arc::new(FixedClock(now)))
            .with_nonce_source(Arc::new(FixedNonce("12345678".into())))
    }

    fn vector() -> Vec<(String, String)> {
        [
            ("id", "1"),
            ("pending", "false"),
            ("granted", "true"),
            ("automated", "false"),
            ("reason", "it is a test"),
            ("reason_code", "100"),
            ("terminal_id", "1"),
            ("terminal_name", "terminal name"),
            ("terminal_requester_specified_id", "requester specified id"),
            ("pairing_user_id", "1"),
            ("user_name", "user name"),
            ("user_toopher_authentication_enabled", "true"),
            ("action_id", "1"),
            ("action_name", "action name"),
            ("session_token", "s9s7vsb"),
            ("timestamp", "1000"),
            ("resource_type", "authentication_request"),
            ("toopher_sig", "s+fYUtChrNMjES5Xa+755H7BQKE="),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn set(v: &mut [(String, String)], k: &str, val: &str) {
        for p in v.iter_mut() {
            if p.0 == k {
                p.1 = val.to_owned();
            }
        }
    }

    #[test]
    fn user_management_url_vector() {
        let url = iframe(1000)
            .get_user_management_url("jdoe", "", &[])
            .unwrap();
        assert_eq!(
            url,
            "https://api.toopher.test/v1/web/manage_user?username=jdoe&reset_email=&expires=1300&v=2&oauth_nonce=12345678&oauth_timestamp=1000&oauth_version=1.0&oauth_signature_method=HMAC-SHA1&oauth_consumer_key=abcdefg&oauth_signature=SA7CAUj%2B5QcGO%2BMmdPv9ubbaozk%3D"
        );
    }

    #[test]
    fn auth_url_has_parameters_in_order_and_verifies() {
        let url = iframe(1000)
            .get_auth_url(
                "jdoe",
                "jdoe@example.com",
                "s9s7vsb",
                None,
                None,
                &[("allow_inline_pairing", "false"), ("ttl", "100")],
            )
            .unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://api.toopher.test/v1/web/authenticate");
        let names: Vec<&str> = query
            .split('&')
            .map(|p| p.split('=').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "username",
                "reset_email",
                "action_name",
                "session_token",
                "requester_metadata",
                "allow_inline_pairing",
                "expires",
                "v",
                "oauth_nonce",
                "oauth_timestamp",
                "oauth_version",
                "oauth_signature_method",
                "oauth_consumer_key",
                "oauth_signature"
            ]
        );
        assert!(query.contains("action_name=Log%20In"));
        assert!(query.contains("reset_email=jdoe%40example.com"));
        assert!(query.contains("expires=1100"));
        // Verify the signature independently from the decoded query.
        let pairs = form_decode(query);
        let sig = pairs
            .iter()
            .find(|(k, _)| k == "oauth_signature")
            .unwrap()
            .1
            .clone();
        let rest: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, _)| k != "oauth_signature")
            .collect();
        let u = url::Url::parse(base).unwrap();
        let b =
            crate::oauth::signature_base_string("GET", &crate::oauth::base_string_uri(&u), &rest);
        assert_eq!(sig, crate::oauth::hmac_sha1_signature("hijklmnop", "", &b));
    }

    #[test]
    fn postback_vector_is_valid_at_1000() {
        let r = iframe(1000)
            .validate_postback(&vector(), Some("s9s7vsb"))
            .unwrap();
        let PostbackResource::AuthenticationRequest(a) = r else {
            panic!("not an authentication request")
        };
        assert!(a.is_granted());
        assert_eq!(a.reason, "it is a test");
        assert_eq!(a.reason_code.as_deref(), Some("100"));
        assert_eq!(a.terminal.requester_specified_id, "requester specified id");
        assert_eq!(a.user.name, "user name");
        assert_eq!(a.action.name, "action name");
        assert!(iframe(1000).is_authentication_granted(&vector(), None));
    }

    #[test]
    fn postback_vector_expired_at_2000() {
        let e = iframe(2000).validate_postback(&vector(), None).unwrap_err();
        assert!(matches!(e, Error::Postback(PostbackError::TtlExpired)));
        assert_eq!(e.to_string(), "invalid postback: TTL expired");
        // Exactly at the TTL is expired too.
        let e = iframe(1300).validate_postback(&vector(), None).unwrap_err();
        assert!(matches!(e, Error::Postback(PostbackError::TtlExpired)));
        assert!(iframe(1299).validate_postback(&vector(), None).is_ok());
    }

    #[test]
    fn tampered_postback_is_refused() {
        let mut v = vector();
        set(&mut v, "granted", "false");
        assert!(matches!(
            iframe(1000).validate_postback(&v, None),
            Err(Error::Postback(PostbackError::SignatureMismatch))
        ));
        let mut v = vector();
        set(&mut v, "toopher_sig", "s+fYUtChrNMjES5Xa+755H7BQKF=");
        assert!(!iframe(1000).is_authentication_granted(&v, None));
        let other_secret =
            ToopherIframe::new("abcdefg", "other").with_clock(Arc::new(FixedClock(1000)));
        assert!(other_secret.validate_postback(&vector(), None).is_err());
    }

    #[test]
    fn session_token_must_match() {
        let e = iframe(1000)
            .validate_postback(&vector(), Some("other"))
            .unwrap_err();
        assert!(matches!(
            e,
            Error::Postback(PostbackError::SessionTokenMismatch)
        ));
    }

    #[test]
    fn missing_keys_are_listed() {
        let v: Vec<(String, String)> = vector()
            .into_iter()
            .filter(|(k, _)| k != "toopher_sig" && k != "timestamp")
            .collect();
        let e = iframe(1000).validate_postback(&v, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid postback: missing required keys: toopher_sig, timestamp"
        );
    }

    #[test]
    fn error_postbacks_are_never_grants() {
        for (code, kind) in [
            ("704", ApiErrorKind::UserDisabled),
            ("705", ApiErrorKind::UserUnknown),
            ("706", ApiErrorKind::TerminalUnknown),
            ("707", ApiErrorKind::PairingDeactivated),
        ] {
            let mut v = vector();
            v.push(("error_code".into(), code.into()));
            v.push(("error_message".into(), "msg".into()));
            let e = iframe(1000).validate_postback(&v, None).unwrap_err();
            assert_eq!(e.api_kind(), Some(kind));
            assert!(!iframe(1000).is_authentication_granted(&v, None));
        }
    }

    #[test]
    fn duplicate_fields_and_bad_resource_type() {
        let mut v = vector();
        v.push(("granted".into(), "true".into()));
        assert!(matches!(
            iframe(1000).validate_postback(&v, None),
            Err(Error::Postback(PostbackError::Malformed(_)))
        ));
        let mut fields: BTreeMap<String, String> = vector().into_iter().collect();
        fields.remove("toopher_sig");
        fields.insert("resource_type".into(), "bogus".into());
        let sig = postback_signature("hijklmnop", &fields);
        let mut v: Vec<(String, String)> = fields.into_iter().collect();
        v.push(("toopher_sig".into(), sig));
        assert!(matches!(
            iframe(1000).validate_postback(&v, None),
            Err(Error::Postback(PostbackError::InvalidResourceType(_)))
        ));
    }

    #[test]
    fn pairing_and_user_postbacks() {
        let mut fields: BTreeMap<String, String> = [
            ("id", "p1"),
            ("enabled", "true"),
            ("pending", "false"),
            ("pairing_user_id", "u1"),
            ("user_name", "jdoe"),
            ("user_toopher_authentication_enabled", "true"),
            ("session_token", "t"),
            ("timestamp", "1000"),
            ("resource_type", "pairing"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sig = postback_signature("hijklmnop", &fields);
        let mut v: Vec<(String, String)> = fields.clone().into_iter().collect();
        v.push(("toopher_sig".into(), sig));
        let r = iframe(1000).validate_postback(&v, Some("t")).unwrap();
        assert!(
            matches!(r, PostbackResource::Pairing(ref p) if p.enabled && p.user.name == "jdoe")
        );
        assert!(!iframe(1000).is_authentication_granted(&v, Some("t")));

        fields = [
            ("id", "u1"),
            ("name", "jdoe"),
            ("toopher_authentication_enabled", "false"),
            ("session_token", "t"),
            ("timestamp", "1000"),
            ("resource_type", "requester_user"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sig = postback_signature("hijklmnop", &fields);
        let mut v: Vec<(String, String)> = fields.into_iter().collect();
        v.push(("toopher_sig".into(), sig));
        let r = iframe(1000).validate_postback(&v, None).unwrap();
        assert!(matches!(r, PostbackResource::User(ref u) if !u.toopher_authentication_enabled));
    }

    #[test]
    fn urlencoded_postback() {
        let body = encode_pairs(&vector()).replace("%20", "+");
        assert!(
            iframe(1000)
                .validate_postback_urlencoded(&body, Some("s9s7vsb"))
                .is_ok()
        );
        assert_eq!(pct_decode("a%2Bb+c%"), "a+b c%");
        assert_eq!(pct_decode("%4"), "%4");
    }

    #[test]
    fn quote_plus_is_python2() {
        assert_eq!(quote_plus("a b~*+/"), "a+b%7E%2A%2B%2F");
    }
}
