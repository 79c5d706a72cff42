//! When a pending push is polled: quickly while a person typically answers, then backing
//! off, so that an approval reaches PAM fast without multiplying API calls.
//!
//! Times are counted from the moment the push went out. With `poll_interval` = P:
//!
//! | since the push | a poll every |
//! |---|---|
//! | 0-10 s | min(0.2 s, P) |
//! | 10-30 s | P |
//! | from 30 s | 2 P |
//!
//! and one last poll at the push's timeout. The polls are at fixed points of that
//! schedule (not "an interval after the previous answer"), so a slow API answer or a new
//! `Wait` from the module never adds a poll: a push costs at most [`PushTiming::budget`]
//! polls over its whole life (85 for the defaults, P = 1 s and a 60 s timeout; 115 for a
//! 120 s timeout), plus the push itself, plus a retry after each 429 answer waited out.

use super::PushTiming;
use std::time::Duration;

/// The interval while a person typically answers (and an automated grant comes back).
pub const FAST_INTERVAL: Duration = Duration::from_millis(200);
/// How long the fast polling lasts after the push went out.
pub const FAST_PHASE: Duration = Duration::from_secs(10);
/// After this, the interval is twice `poll_interval`.
pub const SLOW_AFTER: Duration = Duration::from_secs(30);

impl PushTiming {
    /// The phases of the schedule: (end, interval), the last one endless.
    fn phases(&self) -> [(Duration, Duration); 3] {
        let p = self.poll_interval.max(Duration::from_millis(1));
        [
            (FAST_PHASE, FAST_INTERVAL.min(p)),
            (SLOW_AFTER, p),
            (Duration::MAX, p.saturating_mul(2)),
        ]
    }

    /// The next poll strictly after `elapsed` (time since the push went out), never later
    /// than the push's timeout.
    pub fn next_poll(&self, elapsed: Duration) -> Duration {
        let mut start = Duration::ZERO;
        for (end, interval) in self.phases() {
            if elapsed < end {
                let since = elapsed.saturating_sub(start).as_nanos();
                let step = interval.as_nanos().max(1);
                let k = since / step + 1;
                let at = step
                    .checked_mul(k)
                    .and_then(|n| u64::try_from(n).ok())
                    .map_or(Duration::MAX, Duration::from_nanos);
                let at = start.saturating_add(at).min(end);
                return at.min(self.timeout);
            }
            start = end;
        }
        self.timeout
    }

    /// How many polls a push that is never answered costs over its life (the budget).
    pub fn budget(&self) -> u32 {
        let mut n = 0;
        let mut at = Duration::ZERO;
        while at < self.timeout {
            at = self.next_poll(at);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(poll: f64, timeout: u64) -> PushTiming {
        PushTiming {
            timeout: Duration::from_secs(timeout),
            poll_interval: Duration::from_secs_f64(poll),
        }
    }

    #[test]
    fn fast_while_a_person_answers_then_backing_off() {
        let t = timing(1.0, 60);
        let ms = |n| Duration::from_millis(n);
        assert_eq!(t.next_poll(ms(0)), ms(200));
        assert_eq!(t.next_poll(ms(200)), ms(400));
        assert_eq!(t.next_poll(ms(4_321)), ms(4_400));
        assert_eq!(t.next_poll(ms(9_999)), ms(10_000));
        assert_eq!(t.next_poll(ms(10_000)), ms(11_000));
        assert_eq!(t.next_poll(ms(29_500)), ms(30_000));
        assert_eq!(t.next_poll(ms(30_000)), ms(32_000));
        assert_eq!(t.next_poll(ms(59_000)), ms(60_000));
        assert_eq!(
            t.next_poll(ms(61_000)),
            ms(60_000),
            "never past the timeout"
        );
    }

    #[test]
    fn the_documented_budgets() {
        assert_eq!(timing(1.0, 60).budget(), 85, "defaults");
        assert_eq!(timing(1.0, 120).budget(), 115);
        assert_eq!(timing(1.0, 4).budget(), 20);
        assert_eq!(timing(2.0, 120).budget(), 50 + 10 + 23);
        // A poll_interval below the fast interval is used throughout the fast phase.
        assert_eq!(timing(0.1, 4).budget(), 40);
        // The bounds of the configuration: no overflow, no endless loop.
        assert_eq!(timing(0.05, 600).budget(), 200 + 400 + 5700);
        assert_eq!(timing(30.0, 600).budget(), 50 + 1 + 10);
    }
}
