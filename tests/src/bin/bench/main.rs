//! bench: pam_toopher beside its peers, in one run. Run it with `scripts/bench`, which
//! builds the release binaries and installs the peers first; it needs root.
//!
//! 1. One login in-process through the real libpam per stack, rounds interleaved:
//!    pam_permit alone, pam_oath, pam_google_authenticator, pam_toopher (local backend,
//!    a real toopherd on a temporary socket and state directory, durable).
//! 2. A load generator speaking toopherd's socket protocol: verifications per second
//!    and latency at several concurrencies, each a valid code of a distinct account.
//! 3. toopherd's resident memory: idle, with 10,000 enrolled accounts, and with the
//!    Toopher backend and 10,000 pushes asked for against a simulator that never answers.
//! 4. The stripped module's size beside pam_oath's.
//! 5. Push latency: approval to PAM success with the Toopher backend's default timing,
//!    the simulated phone approving each push 1-8 s after it arrived; API calls per push.
//!
//! `BENCH_ONLY=pam`, `BENCH_ONLY=load` and `BENCH_ONLY=push` run part 1, 2 or 5 alone.
//!
//! The accounts exist only inside this process's own mount namespace (see
//! `accounts`); every file is in a temporary directory removed at the end.

mod accounts;
mod load;
mod memory;
mod pam_stacks;
mod pool;
mod push;
mod stats;
mod totp;

use stats::{ms, us};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use toopher_tests::daemon::Toopherd;

/// Enrolled accounts of the local toopherd (and names for the other parts).
const USERS: usize = 10_000;
/// PAM rounds: one login per stack each (the first is a warm-up, not counted).
const ROUNDS: usize = 401;
/// The load generator's concurrencies and verifications at each: never more than
/// USERS, so every verification of a run is for a distinct account.
const LOAD: &[(usize, usize)] = &[(1, 2_000), (8, 4_000), (32, 8_000), (128, 8_000)];
/// Pushes asked for at once against the simulator.
const PUSHES: usize = 10_000;
/// Logins approved on the phone for the push latency, and how many at a time.
const PUSH_LOGINS: usize = 64;
const PUSH_CONCURRENCY: usize = 8;

fn say(what: &str) {
    eprintln!("==> {what}");
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let os = std::fs::read_to_string("/etc/debian_version")
        .map(|v| format!("Debian {}", v.trim()))
        .unwrap_or_else(|_| "Linux".into());
    format!(
        "{cores} cores ({cpu}), {os}, kernel {}",
        command_line("uname", &["-r"])
    )
}

/// Lets this process (and the toopherd it starts) hold as many sockets as allowed.
fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// Size in bytes of `path` stripped of symbols and debug information.
fn stripped_size(path: &Path, work: &Path) -> u64 {
    let out = work.join(path.file_name().expect("file name"));
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(path)
        .status()
        .expect("strip (binutils)")
        .success();
    assert!(ok, "strip {} failed", path.display());
    std::fs::metadata(&out).expect("stripped module").len()
}

/// The 1-minute load average: other work on the machine shows in every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Module load + unload (median and p90, µs) per module, by bench-dlcost: a C process
/// with libpam loaded and libgcc_s not, as sshd and sudo are.
fn load_costs(modules: &[&Path]) -> Vec<(f64, f64)> {
    let tool = toopher_tests::artifact("bench-dlcost");
    let out = Command::new(&tool)
        .arg("500")
        .args(modules)
        .output()
        .expect("run bench-dlcost");
    assert!(
        out.status.success(),
        "bench-dlcost failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let costs: Vec<(f64, f64)> = text
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace().map(|v| v.parse::<f64>().ok());
            match (f.next().flatten(), f.next().flatten()) {
                (Some(median), Some(p90)) => (median, p90),
                _ => panic!("bench-dlcost printed {l:?}"),
            }
        })
        .collect();
    assert_eq!(costs.len(), modules.len(), "bench-dlcost printed {text:?}");
    costs
}

fn kb(bytes: u64) -> String {
    format!("{} KB", bytes.div_ceil(1024))
}

fn main() {
    assert!(
        toopher_tests::is_root(),
        "the benchmark needs root (a mount namespace, toopherd acting for other accounts)"
    );
    let namespace = accounts::enter_namespace(USERS);
    raise_nofile();
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let machine = machine();
    let load_before = load_average();
    if let Some(part) = std::env::var_os("BENCH_ONLY") {
        let part = part.to_string_lossy().into_owned();
        // The local parts need a toopherd with its accounts, looked up through nss_db.
        let local = || {
            namespace.indexed_lookups();
            let d = Toopherd::start();
            say(&format!("enrolling {USERS} accounts through the socket"));
            let (pool, _) = pool::enroll(&d.socket, USERS, 8);
            (d, pool)
        };
        let print: Box<dyn Fn()> = match part.as_str() {
            "push" => {
                let push = push_latency();
                Box::new(move || report_push(&push))
            }
            "load" => {
                let (d, pool) = local();
                let runs = load_runs(&d, &pool);
                Box::new(move || report_load(&runs))
            }
            "pam" => {
                let (d, pool) = local();
                let pid = d.pid().expect("toopherd pid");
                let pam = pam_stacks::Stacks::new(ROUNDS, &d.socket).run(&pool, pid);
                Box::new(move || report_pam(&pam))
            }
            other => panic!("BENCH_ONLY={other}: pam, load or push"),
        };
        println!(
            "Measured {date} on {machine} (1-minute load average {load_before} before, {} after), with `BENCH_ONLY={part} scripts/bench`.",
            load_average()
        );
        println!();
        print();
        return;
    }

    say("toopherd, local backend, temporary socket and state directory");
    let d = Toopherd::start();
    let pid = d.pid().expect("toopherd pid");
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = memory::rss_kib(pid);
    // From here on every part looks accounts up through nss_db: glibc's `files` backend
    // scans the bench's 10,000-line passwd on every lookup (~0.9 ms at its end), a cost
    // of the bench's shape, not of a machine with that many accounts (which has an index
    // or a directory service). After the idle figure: nss_db's libraries are not what an
    // idle toopherd holds on a machine that uses `files`.
    namespace.indexed_lookups();

    say(&format!("enrolling {USERS} accounts through the socket"));
    let (pool, enrol_time) = pool::enroll(&d.socket, USERS, 8);
    assert_eq!(pool.len(), USERS);
    std::thread::sleep(Duration::from_secs(1));
    let rss_enrolled = memory::rss_kib(pid);

    say(&format!(
        "{} PAM rounds: pam_permit, pam_oath, pam_google_authenticator, pam_toopher",
        ROUNDS - 1
    ));
    let stacks = pam_stacks::Stacks::new(ROUNDS, &d.socket);
    let pam = stacks.run(&pool, pid);
    drop(stacks);

    let runs = load_runs(&d, &pool);
    let rss_after_load = memory::rss_kib(pid);
    let hwm_local = memory::status_kib(pid, "VmHWM:");
    drop(d);

    say(&format!(
        "toopher backend: {PUSHES} pushes against a simulator that never answers"
    ));
    let pushes = memory::pending_pushes(PUSHES);
    let push = push_latency();

    let work = tempfile::Builder::new()
        .prefix("bench-size-")
        .tempdir()
        .expect("tempdir");
    let module_path = toopher_tests::module_path();
    let security = Path::new("/lib/x86_64-linux-gnu/security");
    let (permit_path, oath_path, google_path) = (
        security.join("pam_permit.so"),
        security.join("pam_oath.so"),
        security.join("pam_google_authenticator.so"),
    );
    let module = stripped_size(&module_path, work.path());
    let oath = stripped_size(&oath_path, work.path());
    let google = stripped_size(&google_path, work.path());
    say("module load + unload in a process with libpam and without libgcc_s");
    let loads = load_costs(&[&permit_path, &oath_path, &google_path, &module_path]);

    report(&Report {
        own_syslog: namespace.own_syslog,
        load: format!("{load_before} before, {} after", load_average()),
        date,
        machine,
        pam,
        runs,
        rss_idle,
        rss_enrolled,
        rss_after_load,
        hwm_local,
        enrol_time,
        pushes,
        push,
        module,
        oath,
        google,
        loads,
    });
}

struct Report {
    own_syslog: bool,
    /// The machine's 1-minute load average before and after the run.
    load: String,
    date: String,
    machine: String,
    pam: Vec<pam_stacks::StackResult>,
    runs: Vec<load::Run>,
    rss_idle: u64,
    rss_enrolled: u64,
    rss_after_load: u64,
    hwm_local: u64,
    enrol_time: Duration,
    pushes: memory::Pushes,
    push: push::Pushes,
    module: u64,
    oath: u64,
    google: u64,
    /// Load + unload (median, p90 µs): pam_permit, pam_oath, pam_google_authenticator, pam_toopher.
    loads: Vec<(f64, f64)>,
}

fn report(r: &Report) {
    println!(
        "Measured {} on {} (1-minute load average {}), with `scripts/bench`.",
        r.date, r.machine, r.load
    );
    println!();
    if r.own_syslog {
        println!(
            "The machine runs no syslog daemon (no /dev/log), so the benchmark reads the \
             modules' syslog lines itself from a /dev/log of its own (without one, glibc \
             writes every line to the console)."
        );
    } else {
        println!("The modules' syslog lines go to the machine's own /dev/log.");
    }
    println!();
    report_pam(&r.pam);
    println!();
    println!(
        "toopherd, local backend, throughput (a Rust client speaking the socket protocol: \
         connect, `Begin`, `Otp`, close; every verification a valid code of a distinct \
         enrolled account, on disk before its answer; 10,000 accounts):"
    );
    println!();
    report_load(&r.runs);
    println!();
    println!("| memory and size | |");
    println!("|---|---:|");
    println!(
        "| toopherd resident, idle, no accounts | {} |",
        memory::mib(r.rss_idle)
    );
    println!(
        "| toopherd resident, {USERS} enrolled accounts (enrolled in {:.1} s) | {} |",
        r.enrol_time.as_secs_f64(),
        memory::mib(r.rss_enrolled)
    );
    println!(
        "| toopherd resident after the load runs (peak) | {} ({}) |",
        memory::mib(r.rss_after_load),
        memory::mib(r.hwm_local)
    );
    println!(
        "| toopherd resident, Toopher backend, idle | {} |",
        memory::mib(r.pushes.rss_idle_kib)
    );
    println!(
        "| toopherd resident, Toopher backend, {} of {} pushes pending ({} refused at the connection limit) | {} |",
        r.pushes.pending,
        r.pushes.asked,
        r.pushes.busy,
        memory::mib(r.pushes.rss_kib)
    );
    println!("| pam_toopher.so, stripped | {} |", kb(r.module));
    println!("| pam_oath.so (Debian), stripped | {} |", kb(r.oath));
    println!(
        "| pam_google_authenticator.so (Debian), stripped | {} |",
        kb(r.google)
    );
    println!();
    println!(
        "Loading and unloading each module (`dlopen` + `dlclose`, as libpam does every \
         transaction) in a process that has libpam loaded and not libgcc_s, as sshd and sudo:"
    );
    println!();
    println!("| module | median | p90 |");
    println!("|---|---:|---:|");
    let names = [
        "pam_permit.so",
        "pam_oath.so",
        "pam_google_authenticator.so",
        "pam_toopher.so",
    ];
    for (name, (median, p90)) in names.iter().zip(&r.loads) {
        println!("| {name} | {median:.0} µs | {p90:.0} µs |");
    }
    println!();
    report_push(&r.push);
}

/// The table of part 1: one login per stack, and each stack's cost over pam_permit
/// against pam_oath's.
fn report_pam(pam: &[pam_stacks::StackResult]) {
    use pam_stacks::Kind;
    let find = |k: Kind| pam.iter().find(|r| r.kind == k).expect("every stack ran");
    // CPU per login: the login's own thread, plus toopherd's share for pam_toopher.
    let cpu = |r: &pam_stacks::StackResult| us(r.cpu.median()) + r.daemon_cpu.map_or(0.0, us);
    let floor = us(find(Kind::Permit).wall.median());
    let oath_cost = us(find(Kind::Oath).wall.median()) - floor;
    let cpu_floor = cpu(find(Kind::Permit));
    let oath_cpu = cpu(find(Kind::Oath)) - cpu_floor;
    println!(
        "One login in-process through libpam (`pam_start_confdir`, `pam_authenticate`, \
         `pam_end`; every module loaded each time; a fresh account and code each login; \
         {} rounds, stacks interleaved). Wall time, then CPU time: the thread that ran the \
         login (libpam and the module, user and system; median), plus toopherd's CPU per \
         login for pam_toopher:",
        pam[0].wall.len()
    );
    println!();
    println!(
        "| stack | median | p99 | over pam_permit | ÷ pam_oath's over pam_permit | CPU per login | CPU over pam_permit | ÷ pam_oath's |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in pam {
        let over = us(r.wall.median()) - floor;
        let cpu_over = cpu(r) - cpu_floor;
        let (ratio, cpu_ratio) = if r.kind == Kind::Permit {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.2}", over / oath_cost),
                format!("{:.2}", cpu_over / oath_cpu),
            )
        };
        let cpu_text = match r.daemon_cpu {
            Some(d) => format!(
                "{:.0} µs ({:.0} + toopherd {:.0})",
                cpu(r),
                us(r.cpu.median()),
                us(d)
            ),
            None => format!("{:.0} µs", cpu(r)),
        };
        println!(
            "| {} | {:.0} µs | {:.0} µs | {:.0} µs | {ratio} | {cpu_text} | {cpu_over:.0} µs | {cpu_ratio} |",
            r.kind.label(),
            us(r.wall.median()),
            us(r.wall.percentile(0.99)),
            over
        );
    }
}

/// Part 2: the load generator at each concurrency of [`LOAD`].
fn load_runs(d: &Toopherd, pool: &pool::Pool) -> Vec<load::Run> {
    let mut runs = Vec::new();
    for &(concurrency, count) in LOAD {
        pool.wait_usable(count);
        say(&format!(
            "load: {count} verifications at concurrency {concurrency}"
        ));
        let pid = d.pid().expect("toopherd pid");
        let (before, client_before) = (memory::cpu_time(pid), memory::cpu_time(std::process::id()));
        let mut run = load::run(&d.socket, pool, concurrency, count);
        run.daemon_cpu = memory::cpu_time(pid).saturating_sub(before);
        run.client_cpu = memory::cpu_time(std::process::id()).saturating_sub(client_before);
        runs.push(run);
    }
    runs
}

fn report_load(runs: &[load::Run]) {
    println!(
        "| concurrency | verifications | per second | p50 | p99 | toopherd CPU per verification | load generator CPU per verification |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.0} µs | {:.0} µs |",
            run.concurrency,
            run.latencies.len(),
            run.per_second(),
            ms(run.latencies.median()),
            ms(run.latencies.percentile(0.99)),
            us(run.daemon_cpu) / run.latencies.len().max(1) as f64,
            us(run.client_cpu) / run.latencies.len().max(1) as f64
        );
    }
}

fn push_latency() -> push::Pushes {
    say(&format!(
        "push latency: {PUSH_LOGINS} logins, {PUSH_CONCURRENCY} at a time, each approved {}-{} s after its push",
        push::DELAY_MS.0 / 1000,
        push::DELAY_MS.1 / 1000
    ));
    push::run(0, PUSH_LOGINS, PUSH_CONCURRENCY)
}

fn report_push(p: &push::Pushes) {
    println!(
        "Push latency, Toopher backend with the default timing (`poll_interval = 1`, \
         `push_timeout = 60`), through the real module and libpam, toopherd and the simulator \
         over HTTPS; the simulated phone approves each push 1-8 s (uniformly) after it arrived; \
         {} logins, {} at a time:",
        p.logins, p.concurrency
    );
    println!();
    let max_polls = p.polls.iter().max().copied().unwrap_or(0);
    let mean_polls = p.polls.iter().sum::<usize>() as f64 / p.polls.len().max(1) as f64;
    println!("| push | |");
    println!("|---|---:|");
    println!(
        "| approval → PAM success, p50 | {} |",
        ms(p.latency.median())
    );
    println!(
        "| approval → PAM success, p95 | {} |",
        ms(p.latency.percentile(0.95))
    );
    println!(
        "| approval → PAM success, max | {} |",
        ms(p.latency.percentile(1.0))
    );
    println!("| polls per push, mean (max) | {mean_polls:.1} ({max_polls}) |");
    println!(
        "| API calls per login, all kinds (user lookup, push, polls) | {:.1} |",
        p.calls_per_login
    );
}
