//! Enrolled accounts of the local toopherd, handed out one at a time with a code that
//! toopherd has not yet accepted for them: every verification is a real, valid code
//! and therefore a durable write of its replay record.

use crate::{accounts, totp};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use toopher_ipc::{AdminRequest, AdminResponse, Client, Secret, Timeouts};

pub struct User {
    pub name: String,
    secret: Vec<u8>,
    /// The last time step toopherd accepted for this account.
    last_step: u64,
}

/// Accounts in the order they were last used, the least recently used first.
pub struct Pool {
    users: Mutex<VecDeque<User>>,
}

impl Pool {
    /// The front account and a code toopherd has not seen for it: the step after its
    /// last one, never older than the current step, at most the next one (toopherd
    /// accepts the previous, current and next steps). Waits for the clock when even
    /// the least recently used account has no such step left.
    pub fn take(&self) -> (User, String) {
        loop {
            {
                let mut users = self.users.lock().expect("pool");
                let now = totp::current_step();
                if let Some(u) = users.front() {
                    let mut step = (u.last_step + 1).max(now);
                    // toopherd never accepts a code twice: a step whose code the last
                    // one shares (once in a million) is skipped.
                    if totp::code(&u.secret, step) == totp::code(&u.secret, u.last_step) {
                        step += 1;
                    }
                    if step <= now + 1 {
                        let mut u = users.pop_front().expect("front");
                        u.last_step = step;
                        let code = totp::code(&u.secret, step);
                        return (u, code);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn give_back(&self, u: User) {
        self.users.lock().expect("pool").push_back(u);
    }

    /// Waits until at least `n` accounts can take a code right away, so that a timed
    /// run never waits for the clock. Returns how long it waited.
    pub fn wait_usable(&self, n: usize) -> Duration {
        let start = Instant::now();
        loop {
            let now = totp::current_step();
            let usable = self
                .users
                .lock()
                .expect("pool")
                .iter()
                .filter(|u| u.last_step < now + 1)
                .count();
            if usable >= n {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(2 * totp::STEP),
                "fewer than {n} accounts can be used"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn len(&self) -> usize {
        self.users.lock().expect("pool").len()
    }
}

fn client(socket: &Path) -> Client {
    Client::connect(socket, Timeouts::default()).expect("connect to toopherd")
}

/// Enrols and activates accounts 0..count through the socket (as `toopherctl enroll`
/// and `activate` do), `threads` at a time. Returns the pool and the time it took.
pub fn enroll(socket: &Path, count: usize, threads: usize) -> (Pool, Duration) {
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut c = client(socket);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let name = accounts::name(i);
                    let secret = match c.call(&AdminRequest::Enroll {
                        user: name.clone(),
                        force: false,
                    }) {
                        Ok(AdminResponse::Enrollment(e)) => e.secret,
                        other => panic!("enroll {name}: {other:?}"),
                    };
                    if i == 0 {
                        totp::check_against_oathtool(secret.expose());
                    }
                    let secret = totp::base32_decode(secret.expose());
                    let step = totp::current_step();
                    let code = Secret::new(totp::code(&secret, step));
                    match c.call(&AdminRequest::Activate {
                        user: name.clone(),
                        code,
                    }) {
                        Ok(AdminResponse::Activated { .. }) => {}
                        other => panic!("activate {name}: {other:?}"),
                    }
                    done.lock().expect("done").push(User {
                        name,
                        secret,
                        last_step: step,
                    });
                }
            });
        }
    });
    let mut users = done.into_inner().expect("done");
    users.sort_by(|a, b| a.name.cmp(&b.name));
    (
        Pool {
            users: Mutex::new(users.into()),
        },
        start.elapsed(),
    )
}
