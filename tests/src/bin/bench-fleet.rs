//! bench-fleet: logins per second and their latency (p50, p99) through the real module,
//! libpam and toopherd, at concurrency 1, 8 and 32: two toopherd on one PostgreSQL
//! (logins alternate between them) next to one toopherd on its SQLite store. Each login
//! is accepted: its code is a recovery code (a TOTP code can be used once per 30-second
//! step, so thousands of logins a minute need codes that do not wait for the clock;
//! a recovery code is checked and used up in the store like a TOTP step). Codes are
//! regenerated between runs, outside the timing. Root (enrols system accounts, the
//! cluster runs as `postgres`). `scripts/bench-fleet [ROUNDS]` (100 logins a round per
//! setting, default 5) builds it in release mode and runs it.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toopher_tests::daemon::Toopherd;
use toopher_tests::pam::{self, Stack};
use toopher_tests::postgres::TempPostgres;

const USERS: &[&str] = toopher_tests::USERS;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len().saturating_sub(1))]
}

/// Fresh recovery codes for every user (ten each; the old ones stop working), through
/// `host`, interleaved so that concurrent logins are mostly of different users.
fn codes(host: &Toopherd) -> VecDeque<(String, String)> {
    let mut by_user: Vec<VecDeque<(String, String)>> = USERS
        .iter()
        .map(|user| {
            let out = host.ctl(&["recovery-codes", user, "--regenerate"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("    "))
                .map(|c| (user.to_string(), c.trim().to_owned()))
                .collect()
        })
        .collect();
    let mut mixed = VecDeque::new();
    while by_user.iter().any(|q| !q.is_empty()) {
        for q in &mut by_user {
            if let Some(c) = q.pop_front() {
                mixed.push_back(c);
            }
        }
    }
    assert_eq!(mixed.len(), USERS.len() * 10, "ten codes per user");
    mixed
}

struct Row {
    store: &'static str,
    concurrency: usize,
    logins: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// `rounds` times: fresh codes (untimed), then logins with every one of them from
/// `concurrency` threads, alternating hosts.
fn run(hosts: &[&Toopherd], concurrency: usize, rounds: usize) -> Row {
    let mut all = Vec::new();
    let mut busy = Duration::ZERO;
    for _ in 0..rounds {
        let queue = codes(hosts[0]);
        let start = Instant::now();
        all.extend(logins(hosts, concurrency, queue));
        busy += start.elapsed();
    }
    all.sort();
    Row {
        store: "",
        concurrency,
        logins: all.len(),
        per_sec: all.len() as f64 / busy.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

fn logins(
    hosts: &[&Toopherd],
    concurrency: usize,
    queue: VecDeque<(String, String)>,
) -> Vec<Duration> {
    let stacks: Vec<Arc<Stack>> = hosts
        .iter()
        .map(|h| Arc::new(Stack::toopher(&h.socket, "prompts=1")))
        .collect();
    let queue = Arc::new(Mutex::new(queue));
    let threads: Vec<_> = (0..concurrency)
        .map(|t| {
            let (queue, stacks) = (queue.clone(), stacks.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = t;
                loop {
                    let Some((user, code)) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    let stack = &stacks[i % stacks.len()];
                    i += 1;
                    let t0 = Instant::now();
                    let r = pam::login(stack, &user, &[&code], None);
                    lat.push(t0.elapsed());
                    assert_eq!(r.auth, pam::PAM_SUCCESS, "{user}: {r:?}");
                }
                lat
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect()
}

fn main() {
    toopher_tests::system::require_root();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let levels = [1usize, 8, 32];
    let mut rows = Vec::new();

    // Two hosts on one PostgreSQL.
    let pg = TempPostgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("fleet.toml");
    let key = toopherd::fleet::credentials::keygen(1).expect("keygen");
    std::fs::write(
        &creds,
        format!("{}password = \"{}\"\n", key.as_str(), pg.password),
    )
    .expect("write credentials");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let store = |url: String| {
        format!(
            "[store]\nkind = \"postgres\"\nurl = \"{url}\"\ncredentials_file = \"{}\"\n\
             ca_file = \"{}\"\npool_size = 8\n",
            creds.display(),
            pg.ca_file.as_ref().expect("test CA").display()
        )
    };
    let a = Toopherd::start_with(&store(pg.url_socket()));
    let b = Toopherd::start_with(&store(pg.url_tcp()));
    for user in USERS {
        a.enroll(user);
    }
    for &c in &levels {
        let mut row = run(&[&a, &b], c, rounds);
        row.store = "postgres (2 toopherd)";
        rows.push(row);
    }
    drop((a, b, pg));

    let d = Toopherd::start();
    for user in USERS {
        d.enroll(user);
    }
    for &c in &levels {
        let mut row = run(&[&d], c, rounds);
        row.store = "sqlite (1 toopherd)";
        rows.push(row);
    }

    println!(
        "{:<24} {:>11} {:>7} {:>9} {:>9} {:>9}",
        "store", "concurrency", "logins", "logins/s", "p50", "p99"
    );
    for r in &rows {
        println!(
            "{:<24} {:>11} {:>7} {:>9.0} {:>7.2}ms {:>7.2}ms",
            r.store,
            r.concurrency,
            r.logins,
            r.per_sec,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0
        );
    }
}
