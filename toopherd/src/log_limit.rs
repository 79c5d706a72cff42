//! A per-key log budget: at most `burst` lines per key in each window; the rest are
//! counted and reported as one summary line when the window ends. It keeps an abusive
//! local user (the key is their uid) from filling the journal while leaving a trace of
//! what they did. Time is passed in, so the limiter is a plain value that tests drive.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Lines suppressed for one key (`None`: keys that did not fit in the table) over `span`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed<K> {
    pub key: Option<K>,
    pub count: u64,
    pub span: Duration,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict<K> {
    /// Write the line.
    pub log: bool,
    /// The key's previous window ended with suppressed lines: write this summary first.
    pub summary: Option<Suppressed<K>>,
}

#[derive(Debug)]
pub struct LogLimiter<K> {
    window: Duration,
    burst: u32,
    max_keys: usize,
    windows: HashMap<K, Window>,
    /// Lines of keys that found the table full: all suppressed, counted together.
    overflow: Option<Window>,
}

impl<K: Hash + Eq + Copy> LogLimiter<K> {
    /// `burst` lines per key per `window`; at most `max_keys` keys tracked at once (the
    /// table's memory is bounded whatever the number of keys).
    pub fn new(window: Duration, burst: u32, max_keys: usize) -> Self {
        LogLimiter {
            window,
            burst,
            max_keys,
            windows: HashMap::new(),
            overflow: None,
        }
    }

    pub fn check(&mut self, key: K, now: Instant) -> Verdict<K> {
        let window = self.window;
        let mut summary = None;
        if let Some(w) = self.windows.get_mut(&key) {
            if now.saturating_duration_since(w.started) >= window {
                summary = (w.suppressed > 0).then(|| Suppressed {
                    key: Some(key),
                    count: w.suppressed,
                    span: now.saturating_duration_since(w.started),
                });
                *w = Window {
                    started: now,
                    logged: 0,
                    suppressed: 0,
                };
            }
        } else {
            if self.windows.len() >= self.max_keys {
                self.expire(now);
            }
            if self.windows.len() >= self.max_keys {
                let o = self.overflow.get_or_insert(Window {
                    started: now,
                    logged: 0,
                    suppressed: 0,
                });
                o.suppressed += 1;
                return Verdict {
                    log: false,
                    summary: None,
                };
            }
            self.windows.insert(
                key,
                Window {
                    started: now,
                    logged: 0,
                    suppressed: 0,
                },
            );
        }
        let log = match self.windows.get_mut(&key) {
            Some(w) if w.logged < self.burst => {
                w.logged += 1;
                true
            }
            Some(w) => {
                w.suppressed += 1;
                false
            }
            None => false,
        };
        Verdict { log, summary }
    }

    /// Summaries of the windows that have ended (all of them with `all`, at shutdown);
    /// ended windows are forgotten, so quiet keys leave the table.
    pub fn flush(&mut self, now: Instant, all: bool) -> Vec<Suppressed<K>> {
        let window = self.window;
        let ended = |w: &Window| all || now.saturating_duration_since(w.started) >= window;
        let mut out = Vec::new();
        self.windows.retain(|key, w| {
            if !ended(w) {
                return true;
            }
            if w.suppressed > 0 {
                out.push(Suppressed {
                    key: Some(*key),
                    count: w.suppressed,
                    span: now.saturating_duration_since(w.started),
                });
            }
            false
        });
        if let Some(o) = self.overflow.take_if(|o| ended(o)) {
            out.push(Suppressed {
                key: None,
                count: o.suppressed,
                span: now.saturating_duration_since(o.started),
            });
        }
        out
    }

    /// Drops ended windows that suppressed nothing (they owe no summary).
    fn expire(&mut self, now: Instant) {
        let window = self.window;
        self.windows
            .retain(|_, w| w.suppressed > 0 || now.saturating_duration_since(w.started) < window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_burst_then_silence_then_one_summary() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(MIN, 3, 16);
        let logged = (0..1000)
            .filter(|i| l.check(7u32, t0 + Duration::from_millis(*i)).log)
            .count();
        assert_eq!(logged, 3);
        // Nothing to report before the window ends.
        assert!(l.flush(t0 + Duration::from_secs(30), false).is_empty());
        let s = l.flush(t0 + MIN, false);
        assert_eq!(
            s,
            vec![Suppressed {
                key: Some(7),
                count: 997,
                span: MIN
            }]
        );
        // Reported once, and the key is forgotten.
        assert!(l.flush(t0 + 2 * MIN, false).is_empty());
        assert!(l.check(7, t0 + 2 * MIN).log);
    }

    #[test]
    fn the_next_line_after_a_window_carries_its_summary() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(MIN, 1, 16);
        assert!(l.check(1u32, t0).log);
        assert!(!l.check(1, t0).log);
        assert!(!l.check(1, t0).log);
        let v = l.check(1, t0 + MIN + Duration::from_secs(1));
        assert!(v.log);
        assert_eq!(
            v.summary,
            Some(Suppressed {
                key: Some(1),
                count: 2,
                span: MIN + Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn keys_have_their_own_budget() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(MIN, 2, 16);
        for _ in 0..100 {
            l.check(65534u32, t0);
        }
        assert!(
            l.check(0, t0).log,
            "another uid is not silenced by an abuser"
        );
        assert!(l.check(0, t0).log);
        assert!(!l.check(0, t0).log);
    }

    #[test]
    fn the_table_is_bounded_and_overflow_is_counted() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(MIN, 1, 4);
        let logged = (0..100u32).filter(|k| l.check(*k, t0).log).count();
        assert_eq!(logged, 4);
        assert!(l.windows.len() <= 4);
        let s = l.flush(t0 + MIN, false);
        assert_eq!(
            s,
            vec![Suppressed {
                key: None,
                count: 96,
                span: MIN
            }]
        );
        // Ended quiet windows make room again.
        assert!(l.check(1000, t0 + MIN).log);
    }

    #[test]
    fn flush_all_reports_open_windows() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(MIN, 0, 4);
        l.check(3u32, t0);
        let s = l.flush(t0 + Duration::from_secs(5), true);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].count, 1);
    }
}
