//! Telling the person, at a successful login, about second-factor failures since their
//! last one: someone else has their password.

use crate::text::printable;
use toopher_ipc::{FailureNotice, NOTICE_MAX_RHOSTS};

/// Asked after the notice. OpenSSH shows PAM messages only together with a prompt (and
/// after a success only to an interactive shell), so the notice needs one to be seen.
pub const ACK_PROMPT: &str = "Press Enter to continue: ";

/// Longest host name shown.
const MAX_RHOST_CHARS: usize = 64;

/// The notice as text for a terminal: no control characters, bounded.
pub fn text(n: &FailureNotice) -> String {
    let attempts = if n.failures == 1 {
        "1 failed second-factor attempt".to_owned()
    } else {
        format!("{} failed second-factor attempts", n.failures)
    };
    let hosts: Vec<String> = n
        .rhosts
        .iter()
        .take(NOTICE_MAX_RHOSTS)
        .map(|r| printable(r, MAX_RHOST_CHARS))
        .filter(|r| !r.trim().is_empty())
        .collect();
    let from = match (hosts.is_empty(), n.more_rhosts) {
        (true, _) => String::new(),
        (false, false) => format!(", from {}", hosts.join(", ")),
        (false, true) => format!(", from {} and more", hosts.join(", ")),
    };
    let when = n
        .last_at
        .map_or_else(String::new, |t| format!(", the last at {}", utc(t)));
    format!(
        "WARNING: {attempts} since your last login{from}{when}. \
         Someone else may know your password: change it."
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` (the module has no time zone database of its own).
fn utc(t: u64) -> String {
    let days = i64::try_from(t / 86_400).unwrap_or(i64::MAX / 2);
    let secs = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe
        .saturating_add(era.saturating_mul(400))
        .saturating_add(i64::from(m <= 2));
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(failures: u32, rhosts: &[&str], more: bool, last_at: Option<u64>) -> FailureNotice {
        FailureNotice {
            failures,
            rhosts: rhosts.iter().map(|r| r.to_string()).collect(),
            more_rhosts: more,
            last_at,
        }
    }

    #[test]
    fn says_how_many_from_where_and_when() {
        assert_eq!(
            text(&notice(
                3,
                &["192.0.2.7", "(local)"],
                false,
                Some(1_700_000_000)
            )),
            "WARNING: 3 failed second-factor attempts since your last login, from 192.0.2.7, \
             (local), the last at 2023-11-14 22:13:20 UTC. Someone else may know your \
             password: change it."
        );
        assert_eq!(
            text(&notice(1, &[], false, None)),
            "WARNING: 1 failed second-factor attempt since your last login. Someone else \
             may know your password: change it."
        );
        assert!(text(&notice(9, &["a", "b"], true, None)).contains(", from a, b and more."));
    }

    #[test]
    fn text_from_toopherd_cannot_drive_the_terminal_or_grow_without_bound() {
        let evil = format!("\x1b[2J\n{}", "x".repeat(500));
        let many: Vec<&str> = vec![evil.as_str(); 50];
        let t = text(&notice(u32::MAX, &many, false, Some(u64::MAX)));
        assert!(!t.chars().any(char::is_control), "{t:?}");
        assert!(t.len() < 1000, "{}", t.len());
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
}
