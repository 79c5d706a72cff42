//! Recovery codes: ten single-use codes of 60 random bits, shown once, stored hashed.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const COUNT: usize = 10;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const CHARS: usize = 12;

/// A new code, shown as `xxxx-xxxx-xxxx`.
pub fn generate() -> Result<Zeroizing<String>, getrandom::Error> {
    let mut raw = Zeroizing::new([0u8; CHARS]);
    getrandom::fill(&mut *raw)?;
    let mut out = Zeroizing::new(String::with_capacity(CHARS + 2));
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[(*b & 31) as usize] as char);
    }
    Ok(out)
}

/// The canonical form of what a person typed (case, dashes and spaces do not matter),
/// or `None` when it cannot be a recovery code.
pub fn normalize(input: &str) -> Option<Zeroizing<String>> {
    let s: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    );
    (s.len() == CHARS && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

pub fn hash(salt: &[u8], normalized: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(normalized.as_bytes());
    h.finalize().into()
}

/// What the fleet's shared database holds for a code: its salted [`hash`] keyed with the
/// account's TOTP secret (HMAC-SHA-256), which only the fleet key opens. Whoever can
/// read or write the database without the fleet key can neither test guesses against a
/// dump nor add a code that works. The secret, not the fleet key, is the key so that a
/// key rotation (which re-seals the same secret) leaves these hashes valid, and so that
/// an import can key a host's existing hashes without knowing the codes.
pub fn keyed(secret: &[u8], hash: &[u8]) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(b"toopherd fleet recovery code\0");
    ctx.update(hash);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_normalize_to_themselves() {
        let c = generate().unwrap();
        assert_eq!(c.len(), 14);
        let n = normalize(&c).unwrap();
        assert_eq!(n.len(), 12);
        assert_eq!(normalize(&c.to_uppercase()).unwrap().as_str(), n.as_str());
        assert_ne!(generate().unwrap().as_str(), c.as_str());
    }

    #[test]
    fn keyed_hashes_depend_on_the_secret_and_the_code() {
        let h = hash(b"salt", "abcdabcdabcd");
        let k = keyed(&[1; 20], &h);
        assert_eq!(k, keyed(&[1; 20], &h));
        assert_ne!(k, keyed(&[2; 20], &h));
        assert_ne!(k, keyed(&[1; 20], &hash(b"salt", "abcdabcdabce")));
        assert_ne!(k, h);
    }

    #[test]
    fn otp_shaped_input_is_not_a_recovery_code() {
        assert!(normalize("123456").is_none());
        assert!(normalize("abcd-efgh-ijk1").is_none());
    }
}
