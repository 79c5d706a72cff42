//! RFC 6238 TOTP as authenticator apps use it: SHA-1, 6 digits, 30-second steps.

use subtle::ConstantTimeEq;
use totp_rs::Builder;
use zeroize::Zeroizing;

pub const STEP_SECS: u64 = 30;
pub const DIGITS: usize = 6;
pub const SECRET_LEN: usize = 20;

/// The time step `unix_time` falls in.
pub fn step_of(unix_time: u64) -> u64 {
    unix_time / STEP_SECS
}

/// The code of `step`; `None` for a secret shorter than RFC 4226 allows, or a step whose
/// time does not fit in a u64 (a clock at the end of time matches no code).
pub(crate) fn code_at_step(secret: &[u8], step: u64) -> Option<Zeroizing<String>> {
    let time = step.checked_mul(STEP_SECS)?;
    let totp = Builder::new()
        .with_secret(secret.to_vec())
        .with_skew(0)
        .build()
        .ok()?;
    Some(Zeroizing::new(totp.generate(time).to_string()))
}

/// The steps of the window (previous, current, next) whose code equals `code`, earliest
/// first: none or one, or two when steps of the window share a code (about once in a
/// million steps). A caller accepts the first step later than the last one it accepted,
/// unless the code also matched that last step: the same code is never accepted twice
/// (RFC 6238, 5.2), while a code the previous and the next step share is accepted in the
/// next one when the current one was used. Every candidate is compared, in constant
/// time, so timing does not tell which matched.
pub fn matching_steps(secret: &[u8], code: &str, now: u64) -> Vec<u64> {
    let current = step_of(now);
    let mut found = Vec::new();
    for step in [current.saturating_sub(1), current, current + 1] {
        let Some(expected) = code_at_step(secret, step) else {
            return Vec::new();
        };
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && !found.contains(&step) {
            found.push(step);
        }
    }
    found
}

/// Whether `s` has the shape of a TOTP code.
pub fn looks_like_code(s: &str) -> bool {
    s.len() == DIGITS && s.bytes().all(|b| b.is_ascii_digit())
}

pub fn base32(secret: &[u8]) -> Zeroizing<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Zeroizing::new(String::with_capacity(secret.len() * 8 / 5 + 1));
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in secret {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `otpauth://totp/ISSUER:USER?secret=...&issuer=ISSUER&...`, the key-uri format apps scan.
pub fn otpauth_uri(issuer: &str, user: &str, secret: &[u8]) -> Zeroizing<String> {
    let issuer = percent(issuer);
    Zeroizing::new(format!(
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        percent(user),
        base32(secret).as_str()
    ))
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A secret with steps that share a code (found by search): 57840093 and 57840094 share
/// 681852; 58401910 and 58401912 share 703651 (58401911's is 239676).
#[cfg(test)]
pub(crate) const SHARED_CODE_SECRET: [u8; 20] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
];
#[cfg(test)]
pub(crate) const NEIGHBOURS_SHARE: u64 = 57_840_093;
#[cfg(test)]
pub(crate) const PREVIOUS_AND_NEXT_SHARE: u64 = 58_401_910;

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", truncated to 6 digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_vectors() {
        for (t, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(
                code_at_step(RFC_SECRET, step_of(t)).unwrap().as_str(),
                code,
                "t={t}"
            );
        }
    }

    #[test]
    fn window_is_one_step_each_way() {
        let now = 1_234_567_890;
        let cur = step_of(now);
        for (step, ok) in [
            (cur - 2, false),
            (cur - 1, true),
            (cur, true),
            (cur + 1, true),
            (cur + 2, false),
        ] {
            let code = code_at_step(RFC_SECRET, step).unwrap();
            assert_eq!(
                matching_steps(RFC_SECRET, &code, now),
                Vec::from_iter(ok.then_some(step)),
                "step {step}"
            );
        }
    }

    #[test]
    fn steps_of_the_window_that_share_a_code_all_match_the_earliest_first() {
        for (a, b, code) in [
            (NEIGHBOURS_SHARE, NEIGHBOURS_SHARE + 1, "681852"),
            (
                PREVIOUS_AND_NEXT_SHARE,
                PREVIOUS_AND_NEXT_SHARE + 2,
                "703651",
            ),
        ] {
            assert_eq!(code_at_step(&SHARED_CODE_SECRET, a).unwrap().as_str(), code);
            assert_eq!(code_at_step(&SHARED_CODE_SECRET, b).unwrap().as_str(), code);
            let middle = (a + 1) * STEP_SECS;
            assert_eq!(matching_steps(&SHARED_CODE_SECRET, code, middle), [a, b]);
        }
        assert_eq!(
            code_at_step(&SHARED_CODE_SECRET, PREVIOUS_AND_NEXT_SHARE + 1)
                .unwrap()
                .as_str(),
            "239676"
        );
    }

    #[test]
    fn a_clock_at_the_end_of_time_matches_nothing() {
        // Found by fuzz/fuzz_targets/code_normalise.rs: the next step's time overflowed.
        for now in [u64::MAX, u64::MAX - 29, u64::MAX / STEP_SECS * STEP_SECS] {
            assert_eq!(matching_steps(RFC_SECRET, "287082", now), Vec::<u64>::new());
        }
        assert!(code_at_step(RFC_SECRET, u64::MAX / STEP_SECS).is_some());
        assert!(code_at_step(RFC_SECRET, u64::MAX / STEP_SECS + 1).is_none());
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar").as_str(), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890").as_str(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    #[test]
    fn uri_escapes_labels() {
        let u = otpauth_uri("my host", "a&b", b"12345678901234567890");
        assert!(
            u.starts_with("otpauth://totp/my%20host:a%26b?secret=GEZDGNBV"),
            "{}",
            u.as_str()
        );
    }
}
