//! One-time passwords computed by oathtool (OATH Toolkit), not by toopherd's code.

use std::process::Command;

pub const STEP: u64 = 30;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The TOTP code of `secret_b32` at unix time `t` (SHA-1, 6 digits, 30 s).
pub fn totp_at(secret_b32: &str, t: u64) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", secret_b32, "--now", &format!("@{t}")])
        .output()
        .expect("oathtool is required for these tests (apt-get install oathtool)");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(code.len(), 6, "oathtool printed {code:?}");
    code
}

/// The code of a given time step.
pub fn totp_step(secret_b32: &str, step: u64) -> String {
    totp_at(secret_b32, step * STEP)
}

pub fn current_step() -> u64 {
    now() / STEP
}

/// A six-digit code that is none of the codes toopherd accepts right now.
pub fn wrong_code(secret_b32: &str) -> String {
    let s = current_step();
    let valid: Vec<String> = (s.saturating_sub(2)..=s + 2)
        .map(|k| totp_step(secret_b32, k))
        .collect();
    (0..100)
        .map(|i| format!("{:06}", 13_579 + i * 7_919))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}
