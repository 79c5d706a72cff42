//! The load generator: `concurrency` threads, each doing what the module does for a
//! typed code (connect, `Begin`, `Otp`, close) for the next account of the pool, as
//! fast as toopherd answers. Every answer must be a grant.

use crate::pool::Pool;
use crate::stats::Sample;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use toopher_ipc::{Client, LoginContext, LoginRequest, LoginResponse, Method, Secret, Timeouts};

pub struct Run {
    pub concurrency: usize,
    pub latencies: Sample,
    pub wall: Duration,
    /// CPU time toopherd spent during the run (all its threads, user and system).
    pub daemon_cpu: Duration,
    /// CPU time of the bench's own process during the run: the load generator's threads
    /// (toopherd and they share the machine's cores).
    pub client_cpu: Duration,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// One verification as the module makes it; panics on anything but a grant.
fn verify(socket: &Path, user: &str, code: String) {
    let mut c = Client::connect(socket, Timeouts::default()).expect("connect to toopherd");
    let begin = LoginRequest::Begin(LoginContext {
        user: user.to_string(),
        service: "bench".into(),
        rhost: Some("192.0.2.1".into()),
        tty: None,
        ruser: None,
        autopush: false,
        notify: true,
    });
    match c.call(&begin) {
        Ok(LoginResponse::Challenge { .. }) => {}
        other => panic!("begin {user}: {other:?}"),
    }
    match c.call(&LoginRequest::Otp {
        code: Secret::new(code),
    }) {
        Ok(LoginResponse::Granted {
            method: Method::Otp,
            ..
        }) => {}
        other => panic!("otp {user}: {other:?}"),
    }
}

pub fn run(socket: &Path, pool: &Pool, concurrency: usize, count: usize) -> Run {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(count));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                let mut mine = Vec::with_capacity(count / concurrency + 1);
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let (user, code) = pool.take();
                    let t = Instant::now();
                    verify(socket, &user.name, code);
                    mine.push(t.elapsed());
                    pool.give_back(user);
                }
                latencies.lock().expect("latencies").extend(mine);
            });
        }
    });
    let wall = start.elapsed();
    Run {
        concurrency,
        latencies: Sample::new(latencies.into_inner().expect("latencies")),
        wall,
        daemon_cpu: Duration::ZERO,
        client_cpu: Duration::ZERO,
    }
}
