//! bench-push: how long a granted push takes to reach PAM success, through the real
//! module, libpam, toopherd and the simulator (which approves at once). Also prints
//! toopherd's memory. Run it after `cargo build --release --workspace`.

use std::time::{Duration, Instant};
use toopher_tests::pam::{self, Stack};
use toopher_tests::sim::{AutoAnswer, Sim};

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8(
                std::process::Command::new("id")
                    .arg("-un")
                    .output()
                    .expect("id")
                    .stdout,
            )
            .expect("utf8")
            .trim()
            .to_string()
        })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn status_kb(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.trim_start_matches(key).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let user = user();
    println!(
        "bench-push: {runs} logins per setting, user {user}, approval by the simulator at once"
    );
    for poll in ["1", "0.2"] {
        let sim = Sim::start();
        sim.paired(&user);
        sim.handle.set_auto_answer(Some(AutoAnswer {
            grant: true,
            after_ms: 0,
            reason: None,
            automated: false,
        }));
        let d = sim.toopherd("", &format!("poll_interval = {poll}\npush_timeout = 30"));
        let stack = Stack::toopher(&d.socket, "");
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let t = pam::login(&stack, &user, &[""], None);
            assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
            times.push(start.elapsed());
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / runs as u32;
        println!(
            "poll_interval={poll}s  Enter→PAM_SUCCESS: mean {}  p50 {}  p95 {}  max {}",
            ms(mean),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(*times.last().expect("runs")),
        );
        let pid = d.pid().expect("toopherd pid");
        println!(
            "  toopherd memory after the run: VmRSS {}  VmHWM (peak) {}",
            status_kb(pid, "VmRSS:"),
            status_kb(pid, "VmHWM:")
        );
    }
}
