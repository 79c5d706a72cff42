//! What happens to a typed code on its way to a verdict: the module trims it and bounds
//! its length (`login.rs` and `flow.rs`, mirrored below; `module_flow` runs the real one) and makes any text it shows printable (`text.rs`); toopherd
//! trims it again and takes it as a TOTP code (`totp.rs`) or as a recovery code
//! (`recovery.rs`, which normalises case, dashes and spaces). Properties: the normalisers
//! are idempotent and accept only canonical shapes; a code is never both a TOTP code and
//! a recovery code; a TOTP match is within one step and only for six digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_toopher::text::{printable, printable_lines};
use toopherd::{recovery, totp};

fn printable_properties(s: &str, max: usize) {
    let p = printable(s, max);
    assert!(p.chars().count() <= max);
    assert!(!p.chars().any(char::is_control));
    assert_eq!(printable(&p, max), p, "printable is idempotent");
    let l = printable_lines(s, max);
    assert!(l.chars().count() <= max);
    assert!(l.chars().all(|c| c == '\n' || !c.is_control()));
    assert_eq!(printable_lines(&l, max), l, "printable_lines is idempotent");
}

fn recovery_properties(typed: &str, cut: usize) {
    let Some(n) = recovery::normalize(typed) else {
        return;
    };
    assert_eq!(n.len(), 12);
    assert!(
        n.bytes()
            .all(|b| b"abcdefghijklmnopqrstuvwxyz234567".contains(&b))
    );
    assert_eq!(recovery::normalize(&n).as_deref(), Some(&*n), "idempotent");
    // Accepted input is ASCII, so case, dashes and spaces are all that differ.
    assert!(typed.is_ascii());
    let upper = typed.to_ascii_uppercase();
    assert_eq!(recovery::normalize(&upper).as_deref(), Some(&*n));
    let shown = format!("{}-{}-{}", &n[..4], &n[4..8], &n[8..]);
    assert_eq!(recovery::normalize(&shown).as_deref(), Some(&*n));
    let cut = cut % (typed.len() + 1);
    let dashed = format!("{}-{}", &typed[..cut], &typed[cut..]);
    assert_eq!(recovery::normalize(&dashed).as_deref(), Some(&*n));
    assert_eq!(recovery::hash(b"salt", &n), recovery::hash(b"salt", &n));
}

fn totp_properties(secret: &[u8], code: &str, now: u64) {
    let shaped = totp::looks_like_code(code);
    if shaped {
        assert!(code.len() == totp::DIGITS && code.bytes().all(|b| b.is_ascii_digit()));
        assert!(
            recovery::normalize(code).is_none(),
            "never both kinds of code"
        );
    }
    let steps = totp::matching_steps(secret, code, now);
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "earliest first, once each");
    for step in steps {
        assert!(shaped, "only a six-digit code can match");
        let cur = totp::step_of(now);
        assert!(step + 1 >= cur && step <= cur + 1, "within one step");
    }
    let b32 = totp::base32(secret);
    assert_eq!(b32.len(), (secret.len() * 8).div_ceil(5));
    assert!(
        b32.bytes()
            .all(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".contains(&b))
    );
    let uri = totp::otpauth_uri(code, code, secret);
    assert!(uri.starts_with("otpauth://totp/"));
    assert!(!uri.chars().any(|c| c.is_whitespace() || c.is_control()));
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let (head, rest) = data.split_at(10);
    let now = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    let secret_len = usize::from(head[8]) % 41;
    let cut = usize::from(head[9]);
    let (secret, typed) = rest.split_at(secret_len.min(rest.len()));
    let Ok(typed) = std::str::from_utf8(typed) else {
        return;
    };

    printable_properties(typed, 1 + cut % 64);

    // The module: trimmed, non-empty and at most 64 bytes, or not sent at all.
    let sent = typed.trim();
    if sent.is_empty() || sent.len() > 64 {
        return;
    }
    // toopherd: trimmed again (a no-op now), then one kind of code or the other.
    let code = sent.trim();
    assert_eq!(code, sent);
    recovery_properties(code, cut);
    totp_properties(secret, code, now);
});
