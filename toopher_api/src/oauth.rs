//! OAuth 1.0a (RFC 5849) HMAC-SHA1 signing, two-legged (consumer key and secret, no token).
//!
//! The pieces are public so that the signature base string and the signature can be
//! checked against published vectors, and so that a server (a test simulator, for
//! example) can verify requests with the same rules.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A secret string (consumer secret, token secret). Its `Debug` never shows the value,
/// and the memory is wiped when it is dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret value. Keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// Source of the current time (seconds since the Unix epoch). Injectable for tests.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_time(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_time(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that always says the same time (tests, vectors).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn unix_time(&self) -> u64 {
        self.0
    }
}

/// Source of OAuth nonces. Injectable for tests.
pub trait NonceSource: Send + Sync {
    /// A fresh nonce; an error when no randomness is available.
    fn nonce(&self) -> std::io::Result<String>;
}

/// Random 128-bit nonces from the operating system, as 32 hex digits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomNonce;

impl NonceSource for RandomNonce {
    fn nonce(&self) -> std::io::Result<String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A nonce that never changes (tests, vectors). Never use it against a real server.
#[derive(Debug, Clone)]
pub struct FixedNonce(pub String);

impl NonceSource for FixedNonce {
    fn nonce(&self) -> std::io::Result<String> {
        Ok(self.0.clone())
    }
}

/// Nonces `prefix0`, `prefix1`, ... (tests that need distinct but predictable nonces).
#[derive(Debug, Default)]
pub struct CountingNonce {
    prefix: String,
    next: AtomicU64,
}

impl CountingNonce {
    /// Starts counting at 0.
    pub fn new(prefix: impl Into<String>) -> Self {
        CountingNonce {
            prefix: prefix.into(),
            next: AtomicU64::new(0),
        }
    }
}

impl NonceSource for CountingNonce {
    fn nonce(&self) -> std::io::Result<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(format!("{}{n}", self.prefix))
    }
}

/// RFC 3986 §2.3 percent-encoding as RFC 5849 §3.6 requires: every byte except the
/// unreserved characters `A-Z a-z 0-9 - . _ ~` becomes `%XX` (upper-case hex).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Encodes `key=value` pairs joined by `&` with [`percent_encode`], in the given order:
/// the form used for query strings and form bodies sent by this crate.
pub fn encode_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encode(k.as_ref()),
                percent_encode(v.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 5849 §3.4.1.3.2: encode every name and value, sort by name then value (byte
/// order of the encoded strings), join as `name=value` with `&`.
pub fn normalize_parameters<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k.as_ref()), percent_encode(v.as_ref())))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 5849 §3.4.1.2 base string URI: lower-case scheme and host, the port only when
/// it is not the scheme's default, the path (no query, no fragment).
pub fn base_string_uri(url: &url::Url) -> String {
    let scheme = url.scheme().to_ascii_lowercase();
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let port = match url.port() {
        Some(p) if !((scheme == "http" && p == 80) || (scheme == "https" && p == 443)) => {
            format!(":{p}")
        }
        _ => String::new(),
    };
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    format!("{scheme}://{host}{port}{path}")
}

/// RFC 5849 §3.4.1: `METHOD&encode(base string URI)&encode(normalized parameters)`.
/// `params` are the decoded query, form body and `oauth_*` parameters (without
/// `oauth_signature` and `realm`).
pub fn signature_base_string<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    base_uri: &str,
    params: &[(K, V)],
) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(base_uri),
        percent_encode(&normalize_parameters(params))
    )
}

/// RFC 5849 §3.4.2: base64(HMAC-SHA1(key = encode(consumer secret) & encode(token
/// secret), base string)).
pub fn hmac_sha1_signature(consumer_secret: &str, token_secret: &str, base_string: &str) -> String {
    let key = Zeroizing::new(format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    ));
    hmac_sha1_base64(key.as_bytes(), base_string.as_bytes())
}

/// base64(HMAC-SHA1(key, message)), standard alphabet with padding.
pub fn hmac_sha1_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha1> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares two signatures in constant time (for equal lengths).
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The `oauth_*` protocol parameters of one request, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthParams {
    /// `oauth_consumer_key`
    pub consumer_key: String,
    /// `oauth_nonce`
    pub nonce: String,
    /// `oauth_timestamp`
    pub timestamp: u64,
}

impl OAuthParams {
    /// The protocol parameters in the order this crate sends them: nonce, timestamp,
    /// version, signature method, consumer key.
    pub fn pairs(&self) -> Vec<(String, String)> {
        vec![
            ("oauth_nonce".into(), self.nonce.clone()),
            ("oauth_timestamp".into(), self.timestamp.to_string()),
            ("oauth_version".into(), "1.0".into()),
            ("oauth_signature_method".into(), "HMAC-SHA1".into()),
            ("oauth_consumer_key".into(), self.consumer_key.clone()),
        ]
    }
}

/// Signs requests for one consumer (two-legged OAuth 1.0a, HMAC-SHA1).
#[derive(Clone)]
pub struct Signer {
    consumer_key: String,
    consumer_secret: Secret,
    clock: Arc<dyn Clock>,
    nonce: Arc<dyn NonceSource>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &self.consumer_secret)
            .finish_non_exhaustive()
    }
}

/// A signed request: the protocol parameters, including `oauth_signature`, in order.
#[derive(Debug, Clone)]
pub struct Signed {
    /// `oauth_*` parameters, `oauth_signature` last.
    pub oauth: Vec<(String, String)>,
}

impl Signed {
    /// The `Authorization` header value (RFC 5849 §3.5.1).
    pub fn authorization_header(&self) -> String {
        let fields: Vec<String> = self
            .oauth
            .iter()
            .map(|(k, v)| format!("{}=\"{}\"", percent_encode(k), percent_encode(v)))
            .collect();
        format!("OAuth {}", fields.join(", "))
    }

    /// The value of `oauth_signature`.
    pub fn signature(&self) -> &str {
        self.oauth
            .iter()
            .find(|(k, _)| k == "oauth_signature")
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

impl Signer {
    /// A signer using the system clock and random nonces.
    pub fn new(consumer_key: impl Into<String>, consumer_secret: impl Into<Secret>) -> Self {
        Signer {
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            clock: Arc::new(SystemClock),
            nonce: Arc::new(RandomNonce),
        }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the nonce source.
    pub fn with_nonce_source(mut self, nonce: Arc<dyn NonceSource>) -> Self {
        self.nonce = nonce;
        self
    }

    /// The consumer key.
    pub fn consumer_key(&self) -> &str {
        &self.consumer_key
    }

    /// The consumer secret (for postback signatures).
    pub(crate) fn consumer_secret(&self) -> &Secret {
        &self.consumer_secret
    }

    /// The clock in use.
    pub fn now(&self) -> u64 {
        self.clock.unix_time()
    }

    /// Fresh protocol parameters (new nonce, current time).
    pub fn fresh_params(&self) -> std::io::Result<OAuthParams> {
        Ok(OAuthParams {
            consumer_key: self.consumer_key.clone(),
            nonce: self.nonce.nonce()?,
            timestamp: self.clock.unix_time(),
        })
    }

    /// Signs `method url` with the request parameters `params` (decoded query and form
    /// body) and the given protocol parameters.
    pub fn sign_with<K: AsRef<str>, V: AsRef<str>>(
        &self,
        method: &str,
        url: &url::Url,
        params: &[(K, V)],
        oauth: &OAuthParams,
    ) -> Signed {
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let mut oauth_pairs = oauth.pairs();
        all.extend(oauth_pairs.iter().cloned());
        let base = signature_base_string(method, &base_string_uri(url), &all);
        let sig = hmac_sha1_signature(self.consumer_secret.expose(), "", &base);
        oauth_pairs.push(("oauth_signature".into(), sig));
        Signed { oauth: oauth_pairs }
    }

    /// Signs with a fresh nonce and the current time.
    pub fn sign<K: AsRef<str>, V: AsRef<str>>(
        &self,
        method: &str,
        url: &url::Url,
        params: &[(K, V)],
    ) -> std::io::Result<Signed> {
        let oauth = self.fresh_params()?;
        Ok(self.sign_with(method, url, params, &oauth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("abcABC123-._~"), "abcABC123-._~");
        assert_eq!(percent_encode("a b+c/d=e&f*"), "a%20b%2Bc%2Fd%3De%26f%2A");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode(""), "");
    }

    /// RFC 5849 §1.2: the worked example (three-legged, with a token), which any
    /// HMAC-SHA1 signer must reproduce.
    #[test]
    fn rfc5849_section_1_2_example() {
        let params = [
            ("file", "vacation.jpg"),
            ("size", "original"),
            ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
            ("oauth_token", "nnch734d00sl2jdk"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131202"),
            ("oauth_nonce", "chapoH"),
        ];
        let url =
            url::Url::parse("http://photos.example.net/photos?file=vacation.jpg&size=original")
                .unwrap();
        let base = signature_base_string("GET", &base_string_uri(&url), &params);
        assert_eq!(
            base,
            "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26\
             oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26\
             oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26\
             oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
        );
        let sig = hmac_sha1_signature("kd94hf93k423kf44", "pfkkdhi9sl3r4s00", &base);
        assert_eq!(sig, "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
        assert_eq!(percent_encode(&sig), "MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D");
    }

    /// RFC 5849 §3.4.1.1: the base string example (query + form body, repeated names,
    /// encoded characters, default port dropped from the URI).
    #[test]
    fn rfc5849_section_3_4_1_base_string() {
        let params = [
            ("b5", "=%3D"),
            ("a3", "a"),
            ("c@", ""),
            ("a2", "r b"),
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
            ("c2", ""),
            ("a3", "2 q"),
        ];
        let url = url::Url::parse("http://EXAMPLE.COM:80/request?b5=%3D%253D").unwrap();
        let base = signature_base_string("post", &base_string_uri(&url), &params);
        assert_eq!(
            base,
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
             %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
             key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
             ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
             9d7dh3k39sjv7"
        );
    }

    #[test]
    fn base_uri_keeps_non_default_port_and_drops_query() {
        let u = url::Url::parse("https://Api.Example.com:8443/v1/users?name=x#f").unwrap();
        assert_eq!(base_string_uri(&u), "https://api.example.com:8443/v1/users");
        let u = url::Url::parse("https://api.example.com:443/v1").unwrap();
        assert_eq!(base_string_uri(&u), "https://api.example.com/v1");
    }

    #[test]
    fn two_legged_signature_uses_empty_token_secret() {
        let signer = Signer::new("key", "se cret")
            .with_clock(Arc::new(FixedClock(1000)))
            .with_nonce_source(Arc::new(FixedNonce("n".into())));
        let url = url::Url::parse("https://api.toopher.test/v1/users/create").unwrap();
        let signed = signer.sign("POST", &url, &[("name", "jdoe")]).unwrap();
        let base = "POST&https%3A%2F%2Fapi.toopher.test%2Fv1%2Fusers%2Fcreate&name%3Djdoe%26\
                    oauth_consumer_key%3Dkey%26oauth_nonce%3Dn%26oauth_signature_method%3D\
                    HMAC-SHA1%26oauth_timestamp%3D1000%26oauth_version%3D1.0";
        assert_eq!(
            signed.signature(),
            hmac_sha1_base64(b"se%20cret&", base.as_bytes())
        );
        let header = signed.authorization_header();
        assert!(header.starts_with("OAuth oauth_nonce=\"n\", oauth_timestamp=\"1000\""));
        assert!(header.contains("oauth_consumer_key=\"key\""));
        assert!(!header.contains("se cret") && !header.contains("se%20cret"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let signer = Signer::new("k", "hunter2");
        assert!(!format!("{signer:?}").contains("hunter2"));
    }

    #[test]
    fn random_nonces_differ() {
        let a = RandomNonce.nonce().unwrap();
        let b = RandomNonce.nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_compare() {
        assert!(signatures_equal("abc=", "abc="));
        assert!(!signatures_equal("abc=", "abd="));
        assert!(!signatures_equal("abc", "abc="));
    }
}
