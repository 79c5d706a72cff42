//! bench-fleet-store: verifications per second and their latency (p50, p99) in the store
//! itself, without the socket and the module: the fleet's PostgreSQL store with two
//! "hosts" (two store handles, each with its own pool) on one temporary cluster, next to
//! toopherd's SQLite store as the daemon drives it (one store behind a lock, each call on
//! a blocking thread). Every verification is a right code of a fresh step, so each one
//! is accepted and writes (the replay guard, the activity). Run as root (the cluster
//! runs as `postgres`): `cargo run --release -p toopher_tests --bin bench-fleet-store [SECONDS]`.

use hmac::{Hmac, KeyInit, Mac};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toopher_tests::postgres::TempPostgres;
use toopherd::fleet::pg::{PgSettings, PgStore, Timeouts};
use toopherd::fleet::seal::{FleetKey, Keyring};
use toopherd::store::{Attempt, Limits, Store, Verdict};
use zeroize::Zeroizing;

const T0: u64 = 1_800_000_000;
const LIMITS: Limits = Limits {
    max_failures: 5,
    window: 300,
};

/// RFC 6238 (SHA-1, 6 digits) for step `step`.
fn totp(secret: &[u8], step: u64) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[h.len() - 1] & 0x0f) as usize;
    let v = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]) % 1_000_000;
    format!("{v:06}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len().saturating_sub(1))]
}

struct User {
    name: String,
    secret: Vec<u8>,
    /// The next step to verify at.
    step: AtomicU64,
}

impl User {
    /// A right code of a step not used yet, and the time to verify it at.
    fn next(&self) -> (String, u64) {
        let step = self.step.fetch_add(1, Ordering::Relaxed);
        (totp(&self.secret, step), step * 30)
    }
}

struct Row {
    store: &'static str,
    concurrency: usize,
    count: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn report(rows: &[Row]) {
    println!(
        "{:<24} {:>11} {:>9} {:>10} {:>9} {:>9}",
        "store", "concurrency", "verifs", "verifs/s", "p50", "p99"
    );
    for r in rows {
        println!(
            "{:<24} {:>11} {:>9} {:>10.0} {:>7.2}ms {:>7.2}ms",
            r.store,
            r.concurrency,
            r.count,
            r.per_sec,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0
        );
    }
}

/// Runs `concurrency` workers for `span`, each on its own users; returns the latencies.
async fn drive<F, Fut>(concurrency: usize, span: Duration, users: &[Arc<User>], verify: F) -> Row
where
    F: Fn(usize, Arc<User>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Verdict> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mine: Vec<Arc<User>> = users.iter().skip(w).step_by(concurrency).cloned().collect();
        let verify = verify.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while start.elapsed() < span {
                let u = mine[i % mine.len()].clone();
                i += 1;
                let t = Instant::now();
                let v = verify(w, u).await;
                lat.push(t.elapsed());
                assert!(matches!(v, Verdict::Accepted(_)), "{v:?}");
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    let elapsed = start.elapsed();
    all.sort();
    Row {
        store: "",
        concurrency,
        count: all.len(),
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let span = Duration::from_secs(seconds);
    let levels: Vec<usize> = std::env::args()
        .nth(2)
        .map(|a| {
            a.split(',')
                .map(|n| n.parse().expect("concurrency levels: 1,8,32"))
                .collect()
        })
        .unwrap_or_else(|| vec![1, 8, 32]);
    let n_users = 64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();

    // PostgreSQL: two hosts, A over the socket and B over TCP, workers alternating.
    let pg = TempPostgres::start();
    let key =
        Arc::new(Keyring::new(FleetKey::new(1, Zeroizing::new([7; 32])), vec![]).expect("keyring"));
    let settings = |url: String, host: &str| PgSettings {
        url,
        ca_file: pg.ca_file.clone(),
        password: Some(Zeroizing::new(pg.password.clone())),
        timeouts: Timeouts::default(),
        pool_size: 16,
        host: host.into(),
    };
    let hosts: Arc<[PgStore; 2]> = Arc::new(rt.block_on(async {
        [
            PgStore::open(&settings(pg.url_socket(), "a"), key.clone(), T0)
                .await
                .expect("open A"),
            PgStore::open(&settings(pg.url_tcp(), "b"), key.clone(), T0)
                .await
                .expect("open B"),
        ]
    }));
    let users: Vec<Arc<User>> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..n_users {
            let name = format!("bench{i}");
            let e = hosts[0]
                .enroll(&name, 600, T0, false)
                .await
                .expect("enroll");
            let secret = e.secret.to_vec();
            let step = T0 / 30;
            hosts[0]
                .activate(&name, &totp(&secret, step), T0, LIMITS)
                .await
                .expect("activate");
            v.push(Arc::new(User {
                name,
                secret,
                step: AtomicU64::new(step + 1),
            }));
        }
        v
    });
    for &c in &levels {
        let hosts = hosts.clone();
        let mut row = rt.block_on(drive(c, span, &users, move |w, u| {
            let hosts = hosts.clone();
            async move {
                let (code, now) = u.next();
                hosts[w % 2]
                    .check(&u.name, &code, now, LIMITS, &Attempt::default())
                    .await
                    .expect("check")
                    .expect("enrolled")
                    .verdict
            }
        }));
        row.store = "postgres (2 hosts)";
        rows.push(row);
    }
    drop(hosts);
    drop(pg);

    // SQLite, as the daemon drives it.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Mutex::new(
        Store::open(&dir.path().join("toopherd.sqlite3")).expect("sqlite"),
    ));
    let users: Vec<Arc<User>> = (0..n_users)
        .map(|i| {
            let name = format!("bench{i}");
            let mut s = store.lock().expect("lock");
            let e = s.enroll(&name, 600, T0, false).expect("enroll");
            let secret = e.secret.to_vec();
            let step = T0 / 30;
            s.activate(&name, &totp(&secret, step), T0, LIMITS)
                .expect("activate");
            Arc::new(User {
                name,
                secret,
                step: AtomicU64::new(step + 1),
            })
        })
        .collect();
    for &c in &levels {
        let store = store.clone();
        let mut row = rt.block_on(drive(c, span, &users, move |_, u| {
            let store = store.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let (code, now) = u.next();
                    store
                        .lock()
                        .expect("lock")
                        .check(&u.name, &code, now, LIMITS, &Attempt::default())
                        .expect("check")
                        .expect("enrolled")
                        .verdict
                })
                .await
                .expect("blocking")
            }
        }));
        row.store = "sqlite (1 host)";
        rows.push(row);
    }
    report(&rows);
}
