//! toopherd's memory, from /proc/PID/status; and pushes left pending against a
//! simulator that never answers.

use crate::accounts;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use toopher_ipc::{
    Client, ErrorKind, ErrorReply, FrameError, LoginContext, LoginRequest, LoginResponse, Timeouts,
};
use toopher_tests::sim::Sim;

/// A `VmRSS:`-style field of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

pub struct Pushes {
    pub asked: usize,
    pub pending: usize,
    pub busy: usize,
    pub rss_idle_kib: u64,
    pub rss_kib: u64,
}

/// toopherd with the Toopher backend (default poll interval; pushes time out after
/// 10 minutes, longer than the measurement) against the simulator, which never
/// answers; then `asked` logins at once, each sending its push at `Begin` and keeping
/// its connection (closing it would cancel the push). Resident memory with them pending.
pub fn pending_pushes(asked: usize) -> Pushes {
    let sim = Sim::start();
    sim.handle.set_auto_answer(None);
    sim.handle.set_request_ttl(None);
    for i in 0..asked {
        sim.paired(&accounts::name(i));
    }
    let d = sim.toopherd("", "timeout = 10\npoll_interval = 1\npush_timeout = 600");
    let pid = d.pid().expect("toopherd pid");
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_kib = rss_kib(pid);
    let next = AtomicUsize::new(0);
    let (pending, busy) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let held = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= asked {
                        break;
                    }
                    let mut c = Client::connect(&d.socket, Timeouts::default()).expect("connect");
                    let begin = LoginRequest::Begin(LoginContext {
                        user: accounts::name(i),
                        service: "bench".into(),
                        rhost: None,
                        tty: None,
                        ruser: None,
                        autopush: true,
                        notify: true,
                    });
                    match c.call(&begin) {
                        Ok(LoginResponse::Challenge {
                            push_pending: true, ..
                        }) => {
                            pending.fetch_add(1, Ordering::Relaxed);
                            held.lock().expect("held").push(c);
                        }
                        Ok(LoginResponse::Error(ErrorReply {
                            kind: ErrorKind::Busy,
                            ..
                        })) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        // Refused at the connection limit: the busy frame, or the
                        // socket already closed under the request.
                        Err(FrameError::Io(_) | FrameError::Closed) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("push for {}: {other:?}\n{}", accounts::name(i), d.log()),
                    }
                }
            });
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let rss_kib = rss_kib(pid);
    drop(held);
    Pushes {
        asked,
        pending: pending.into_inner(),
        busy: busy.into_inner(),
        rss_idle_kib,
        rss_kib,
    }
}

/// CPU time of process `pid` so far, all threads, user and system (`/proc/PID/stat`, in
/// clock ticks of 10 ms: read it around work that takes seconds).
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .expect("utime/stime")
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = tick(11) + tick(12);
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    std::time::Duration::from_micros(ticks * 1_000_000 / hz.max(1))
}
