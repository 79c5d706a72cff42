//! RFC 6238 codes computed here (HMAC-SHA1, 6 digits, 30 s), not by toopherd's code:
//! the load generator needs thousands a second, more than `oathtool` processes give.
//! [`check_against_oathtool`] pins this implementation to OATH Toolkit's once per run.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use toopher_tests::otp;

pub const STEP: u64 = otp::STEP;

pub fn current_step() -> u64 {
    otp::current_step()
}

/// The code of `secret` at time step `step`.
pub fn code(secret: &[u8], step: u64) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub fn base32_decode(text: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("not base32: {c:?}")) as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

pub fn base32_encode(bytes: &[u8]) -> String {
    let (mut out, mut buffer, mut bits) = (String::new(), 0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fresh random bytes for a secret.
pub fn random_secret() -> Vec<u8> {
    let mut s = vec![0u8; 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut s,
    )
    .expect("read /dev/urandom");
    s
}

/// Panics unless this module and oathtool agree on a few steps of `secret_b32`.
pub fn check_against_oathtool(secret_b32: &str) {
    let secret = base32_decode(secret_b32);
    assert_eq!(base32_encode(&secret), secret_b32.trim_end_matches('='));
    let now = current_step();
    for step in [now - 1, now, now + 1] {
        assert_eq!(
            code(&secret, step),
            otp::totp_step(secret_b32, step),
            "the benchmark's TOTP disagrees with oathtool"
        );
    }
}
