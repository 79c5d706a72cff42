//! The guessing budget of someone who has the password: how long each rate-limit lock
//! lasts, and how many second-factor guesses that allows over a span of time.
//!
//! Every full set of `max_failures` failures inside `window` locks the account; the lock
//! lasts `window` x 2^level, where level counts the locks since the last recovery code or
//! administrator's unlock, capped at [`MAX_LOCK`]. A successful one-time password does not
//! lower the level: otherwise the person's own logins would hand the guesser a fresh,
//! cheap budget each time.

/// The longest lock: one day.
pub const MAX_LOCK: u64 = 86_400;

/// After this long without a lock the escalation starts again from `window`. Two weeks:
/// a guesser who waits that long to start again gets fewer guesses than one who keeps
/// the lock at its cap (9 doubling sets, 45 guesses, in 153,300 s + 14 days, about 2.9 a
/// day, against 5 a day at the cap), so the yearly budget below still holds.
pub const LEVEL_RESET_AFTER: u64 = 14 * 86_400;

/// Codes one guess can hit: RFC 6238 with the previous and next step accepted.
const CODES_PER_GUESS: f64 = 3.0;
/// Six digits.
const CODE_SPACE: f64 = 1_000_000.0;
pub const YEAR: u64 = 365 * 86_400;

/// How long the lock after the `level`-th full set of failures lasts (level 0 first).
pub fn lock_duration(window: u64, level: u32) -> u64 {
    let factor = 1u64.checked_shl(level).unwrap_or(u64::MAX);
    window.saturating_mul(factor).min(MAX_LOCK.max(window))
}

/// Guesses someone with the password can make within `span` seconds, guessing as fast
/// as allowed: a set of `max_failures` at once, then the lock it earns, and again.
pub fn guesses_within(max_failures: u64, window: u64, span: u64) -> u64 {
    let (mut t, mut level, mut guesses) = (0u64, 0u32, 0u64);
    while t < span {
        guesses = guesses.saturating_add(max_failures);
        t = t.saturating_add(lock_duration(window, level).max(1));
        level = level.saturating_add(1);
    }
    guesses
}

/// The chance that `guesses` guesses hit a valid code at least once.
pub fn chance(guesses: u64) -> f64 {
    let miss = 1.0 - CODES_PER_GUESS / CODE_SPACE;
    1.0 - miss.powf(guesses as f64)
}

/// A warning when the configured limits let a guesser past 1 % a year.
pub fn warning(max_failures: u64, window: u64) -> Option<String> {
    let guesses = guesses_within(max_failures, window, YEAR);
    let p = chance(guesses);
    (p >= 0.01).then(|| {
        format!(
            "[rate_limit] max_failures = {max_failures}, window = {window} let someone who has \
             a password make {guesses} second-factor guesses a year ({:.2} % chance to get in); \
             lower max_failures or raise window to stay under 1 %",
            p * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_then_stop_at_a_day() {
        let d: Vec<u64> = (0..11).map(|k| lock_duration(300, k)).collect();
        assert_eq!(
            d,
            [
                300, 600, 1200, 2400, 4800, 9600, 19_200, 38_400, 76_800, 86_400, 86_400
            ]
        );
        assert_eq!(lock_duration(300, 64), MAX_LOCK);
        assert_eq!(lock_duration(300, u32::MAX), MAX_LOCK);
        assert_eq!(lock_duration(86_400, 0), 86_400);
        assert_eq!(lock_duration(10, 1), 20);
    }

    #[test]
    fn the_default_budget_is_under_one_percent_a_year() {
        // 9 doubling locks (300 s .. 76,800 s, 153,300 s in all, 45 guesses), then one
        // set of 5 per day: ceil((31,536,000 - 153,300) / 86,400) = 364 sets.
        assert_eq!(guesses_within(5, 300, YEAR), 5 * (9 + 364));
        let p = chance(guesses_within(5, 300, YEAR));
        assert!(p > 0.0055 && p < 0.0056, "{p}");
        assert_eq!(warning(5, 300), None);
        // Before: 5 per 300 s, 1,440 a day, 0.43 % a day.
        let per_day_before = 5 * 86_400 / 300;
        assert_eq!(per_day_before, 1440);
        assert!(chance(per_day_before) > 0.0043);
    }

    #[test]
    fn a_generous_limit_is_warned_about() {
        let w = warning(1000, 10).expect("a warning");
        assert!(w.contains("max_failures = 1000"), "{w}");
        assert!(warning(1, 10).is_none());
    }
}
