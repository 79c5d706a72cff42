//! Push latency: from the phone's approval to PAM success, through the real module,
//! libpam, toopherd (Toopher backend, default timing) and the simulator, with the phone
//! approving each push after a random delay; and what each login cost in API calls.

use crate::accounts;
use crate::stats::Sample;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use toopher_tests::pam::{self, Stack};
use toopher_tests::sim::Sim;

/// The phone answers between these many milliseconds after the push reached it.
pub const DELAY_MS: (u64, u64) = (1_000, 8_000);
/// toopherd's defaults (the simulator's test config shortens them; the bench must not).
const DEFAULTS: &str = "timeout = 10\npoll_interval = 1\npush_timeout = 60";

pub struct Pushes {
    /// Approval -> pam_authenticate returned PAM_SUCCESS.
    pub latency: Sample,
    /// Per push: polls of its request (`GET /authentication_requests/{id}`).
    pub polls: Vec<usize>,
    /// Every API call the run cost, divided by the logins.
    pub calls_per_login: f64,
    pub logins: usize,
    pub concurrency: usize,
}

/// A small xorshift: the delays need to be spread, not unpredictable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `logins` logins, `concurrency` at a time, each of its own account (`first` onwards).
pub fn run(first: usize, logins: usize, concurrency: usize) -> Pushes {
    let sim = Sim::start();
    sim.handle.set_auto_answer(None);
    for i in first..first + logins {
        sim.paired(&accounts::name(i));
    }
    let d = sim.toopherd("", DEFAULTS);
    let stack = Stack::toopher(&d.socket, "");
    let next = AtomicUsize::new(0);
    let latencies = std::sync::Mutex::new(Vec::with_capacity(logins));
    std::thread::scope(|s| {
        for worker in 0..concurrency {
            let (sim, stack, next, latencies, d) = (&sim, &stack, &next, &latencies, &d);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((worker as u64 + 1) * 0x2545_F491));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= logins {
                        break;
                    }
                    let user = accounts::name(first + i);
                    let delay =
                        Duration::from_millis(DELAY_MS.0 + rng.below(DELAY_MS.1 - DELAY_MS.0 + 1));
                    let phone = s.spawn({
                        let user = user.clone();
                        move || approve_after(sim, &user, delay)
                    });
                    let t = pam::login(stack, &user, &[""], None);
                    let done = Instant::now();
                    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
                    let approved = phone.join().expect("phone thread");
                    latencies
                        .lock()
                        .expect("latencies")
                        .push(done.saturating_duration_since(approved));
                }
            });
        }
    });
    let log = sim.handle.request_log();
    let mut polls: HashMap<&str, usize> = HashMap::new();
    for e in &log {
        if let Some(id) = e.path.strip_prefix("/authentication_requests/")
            && e.method == "GET"
        {
            *polls.entry(id).or_default() += 1;
        }
    }
    assert_eq!(polls.len(), logins, "one push per login");
    Pushes {
        latency: Sample::new(latencies.into_inner().expect("latencies")),
        polls: polls.into_values().collect(),
        calls_per_login: log.len() as f64 / logins as f64,
        logins,
        concurrency,
    }
}

/// The phone: waits for `user`'s push, approves it after `delay`; returns when it did.
fn approve_after(sim: &Sim, user: &str, delay: Duration) -> Instant {
    let give_up = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Some(r) = sim
            .handle
            .pending_requests()
            .into_iter()
            .find(|r| r.user_name == user)
        {
            break r.id;
        }
        assert!(Instant::now() < give_up, "no push for {user}");
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(delay);
    let at = Instant::now();
    sim.handle.grant(&id).expect("grant");
    at
}
