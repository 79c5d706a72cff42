//! toopherd: the pam_toopher daemon. Runs in the foreground; systemd supervises it.

use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use toopherd::config::{Config, DEFAULT_CONFIG};
use toopherd::fleet::blocking::PgBlocking;
use toopherd::fleet::pg::PgStore;
use toopherd::fleet::settings::{StoreKind, host_name};
use toopherd::logging::{Log, LogTarget};
use toopherd::server::admission::Limits;
use toopherd::server::{Service, serve};
use toopherd::socket::Claim;
use toopherd::store::{Shared, Storage, Store};

/// sysexits.h: configuration error.
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    version,
    about = "The pam_toopher daemon: verifies second factors for the PAM module"
)]
struct Args {
    /// The configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Check the configuration and what it names (state directory, socket directory,
    /// admin group, Toopher credentials) for the user toopherd runs as, then exit: 0 when
    /// toopherd can start with it, 78 when not.
    #[arg(long)]
    check_config: bool,
    /// Where log lines go.
    #[arg(long, value_enum, default_value = "auto")]
    log: LogTarget,
}

fn main() -> ExitCode {
    // Before anything is read: no core file, no ptrace and no /proc/PID/mem or environ
    // for toopherd's own uid. Secrets live in this process's memory.
    if let Err(e) = keep_memory_private() {
        eprintln!("toopherd: {e}");
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("toopherd: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if args.check_config {
        return check_config(&args.config, &config);
    }
    let log = match Log::open(args.log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("toopherd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let to_syslog = !log.is_stderr();
    match run(config, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The reason goes to syslog (where the admin looks) and to stderr (the
            // journal, a terminal), once where they are the same.
            if to_syslog && let Ok(log) = Log::open(LogTarget::Syslog) {
                log.err(&e);
            }
            eprintln!("toopherd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: each finding on its own line; fails when any is a problem.
fn check_config(path: &Path, config: &Config) -> ExitCode {
    use toopherd::preflight::{self, Level, ServiceUser};
    let who = ServiceUser::guess();
    println!(
        "{}: checking for {} (uid {}), the user toopherd runs as{}",
        path.display(),
        who.name,
        who.uid,
        if who.name == "toopherd" {
            " under the packaged unit"
        } else {
            ""
        }
    );
    let mut findings = preflight::check(config, &who);
    // A shared store: reachable, the role accepted, the schema current, the key right.
    if config.store.kind == StoreKind::Postgres {
        findings.push(match toopherd::fleet::commands::check(&config.store) {
            Ok(summary) => preflight::Finding {
                level: Level::Ok,
                text: summary,
            },
            Err(e) => preflight::Finding {
                level: Level::Problem,
                text: format!("the shared store: {e}"),
            },
        });
    }
    let mut problems = 0;
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => {
                problems += 1;
                "PROBLEM"
            }
        };
        println!("  {tag:<8} {}", f.text);
    }
    if problems > 0 {
        println!(
            "{}: {problems} problem(s) to fix before toopherd can work as configured",
            path.display()
        );
        ExitCode::from(EX_CONFIG)
    } else {
        println!(
            "{}: no problems found; toopherd can start with it",
            path.display()
        );
        ExitCode::SUCCESS
    }
}

/// `uid 998 (toopherd)`: who toopherd is, for errors about what it may not do.
fn whoami() -> String {
    let uid = nix::unistd::Uid::effective();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

fn run(config: Config, log: Log) -> Result<(), String> {
    // Everything toopherd creates is private unless it says otherwise (the socket).
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    let state_dir = config.state_dir.path().to_owned();
    if config.store.kind == StoreKind::Sqlite {
        prepare_state_dir(&state_dir).map_err(with_who)?;
    }
    // Claim the socket path before touching the database: a second toopherd stops here
    // and leaves the running one's socket and state alone.
    let socket = config.socket.path().to_owned();
    let claim = Claim::take(&socket).map_err(with_who)?;
    raise_open_file_limit();
    // With the local store, one async thread runs the logins and the store's statements,
    // the store's own thread waits for its syncs (group commit), and NSS lookups run on
    // blocking threads: fewer wake-ups than two workers handing tasks to each other
    // (README, "Performance": less CPU per verification, lower latency). The fleet's
    // store keeps its TLS connections to PostgreSQL on the runtime: two workers.
    let mut runtime = match config.store.kind {
        StoreKind::Sqlite => tokio::runtime::Builder::new_current_thread(),
        StoreKind::Postgres => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    };
    let runtime = runtime
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let log = Arc::new(log);
    let store = match config.store.kind {
        StoreKind::Sqlite => open_sqlite(&config, &state_dir, &log)?,
        StoreKind::Postgres => open_shared(&config, &runtime, &log)?,
    };
    let daemon = Arc::new(Service::on_store(config, store, log)?);
    let bound = claim.bind().map_err(with_who)?;
    if bound.replaced_stale {
        daemon.log.info(&format!(
            "replaced the stale socket {} (no toopherd was listening)",
            socket.display()
        ));
    }
    let owned = bound.owned;
    let std_listener = bound.listener;
    let result = runtime.block_on(async {
        let listener = std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(std_listener))
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        // A typo in a group name would make its rule match nobody: say so at start.
        for w in toopherd::policy::warnings(&daemon.config.policy, &toopherd::policy::groups::Nss) {
            daemon.log.warn(&format!("policy: {w}"));
        }
        let policy =
            toopherd::policy::Policy::new(daemon.config.policy.clone(), daemon.config.availability);
        daemon.log.info(&format!(
            "listening on {} (store {}, backend {}, availability {}, failmode {})",
            socket.display(),
            match daemon.config.store.kind {
                StoreKind::Sqlite => "sqlite",
                StoreKind::Postgres => "postgres",
            },
            daemon.config.backend.as_str(),
            policy.availability().as_str(),
            daemon.config.failmode.as_str()
        ));
        notify_systemd("READY=1");
        serve(listener, Arc::clone(&daemon), shutdown_signal()).await;
        notify_systemd("STOPPING=1");
        Ok::<(), String>(())
    });
    // Only our own socket: if someone put another file there, it is theirs.
    if !owned.remove() {
        daemon.log.warn(&format!(
            "left {} in place: it is no longer the socket this toopherd created",
            socket.display()
        ));
    }
    // "stopped" only after a run that started: a failure is told by its own error.
    if result.is_ok() {
        daemon.log.info("stopped");
    }
    result
}

/// Appends who toopherd is to an error about access, which depends on it.
fn with_who(e: impl std::fmt::Display) -> String {
    let e = e.to_string();
    if e.contains("Permission denied")
        || e.contains("Read-only file system")
        || e.contains("Operation not permitted")
    {
        format!("{e} (toopherd runs as {})", whoami())
    } else {
        e
    }
}

/// When the state directory belongs to someone else: whose it is and the fix.
fn ownership_hint(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::Uid::effective();
    match std::fs::metadata(dir) {
        Ok(m) if m.uid() != me.as_raw() && !me.is_root() => {
            let name = nix::unistd::User::from_uid(me)
                .ok()
                .flatten()
                .map_or_else(|| me.to_string(), |u| u.name);
            format!(
                "; {} belongs to uid {} (chown -R {name}: {})",
                dir.display(),
                m.uid(),
                dir.display()
            )
        }
        _ => String::new(),
    }
}

/// This host's SQLite database in `state_dir`.
fn open_sqlite(config: &Config, state_dir: &Path, log: &Arc<Log>) -> Result<Shared, String> {
    let db_path = config.database_path();
    let mut store = Store::open(&db_path).map_err(|e| {
        format!(
            "cannot open the database {} as {}: {e}{}",
            db_path.display(),
            whoami(),
            ownership_hint(state_dir)
        )
    })?;
    Store::tighten_permissions(&db_path).map_err(with_who)?;
    if let Ok(n) = store.expire_pending(toopherd::now())
        && n > 0
    {
        log.info(&format!("dropped {n} expired pending enrolment(s)"));
    }
    Ok(Shared::new(Box::new(store), Arc::clone(log)))
}

/// The fleet's shared PostgreSQL store. A wrong key, role or schema stops toopherd
/// here; a database that cannot be reached does not: toopherd serves (logins follow
/// `failmode` until the database answers) and prepares the store once it does.
fn open_shared(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    log: &Arc<Log>,
) -> Result<Shared, String> {
    let fail = |e: &dyn std::fmt::Display| {
        let msg = format!("the shared store: {e}");
        log.err(&msg);
        msg
    };
    let credentials = config.store.load_credentials().map_err(|e| fail(&e))?;
    let settings = config
        .store
        .pg_settings(&credentials, &host_name())
        .map_err(|e| fail(&e))?;
    let store =
        Arc::new(PgStore::connect(&settings, Arc::new(credentials.keyring)).map_err(|e| fail(&e))?);
    match runtime.block_on(store.prepare(toopherd::now())) {
        Ok(()) => {
            if let Ok(n) = runtime.block_on(store.expire_pending(toopherd::now()))
                && n > 0
            {
                log.info(&format!("dropped {n} expired pending enrolment(s)"));
            }
        }
        Err(e) if e.is_unreachable() => {
            log.err(&format!(
                "the shared store cannot be reached ({e}); serving anyway: logins follow \
                 failmode until it answers and passes the schema and key check"
            ));
            // Nothing runs against the database before its schema and key are checked.
            store.hold_until_prepared();
            let (store, log) = (Arc::clone(&store), Arc::clone(log));
            runtime.spawn(async move {
                let mut told = String::new();
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    match store.prepare(toopherd::now()).await {
                        Ok(()) => {
                            log.info("the shared store answers; its schema and key are checked");
                            break;
                        }
                        Err(e) if e.is_unreachable() => {}
                        // A wrong key or a schema too new: every login is denied (the
                        // store refuses every operation) and said so, until a check passes.
                        Err(e) => {
                            let msg = e.to_string();
                            if msg != told {
                                log.err(&format!(
                                    "the shared store: {msg}; every login is denied until \
                                     this is fixed"
                                ));
                                told = msg;
                            }
                        }
                    }
                }
            });
        }
        Err(e) => return Err(fail(&e)),
    }
    let blocking = PgBlocking::new(store, runtime.handle().clone());
    Ok(Shared::concurrent(
        Arc::new(move || Box::new(blocking.clone()) as Box<dyn Storage>),
        Arc::clone(log),
    ))
}

fn prepare_state_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others; it holds secrets (chmod 700 {})",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Makes the process non-dumpable and its core size 0. PR_SET_DUMPABLE 0 also makes
/// /proc/PID root-owned, so toopherd's own uid cannot ptrace it or read its memory or
/// environment. The core limit is belt and braces for `fs.suid_dumpable = 2`, where a
/// non-dumpable process may still dump core; under systemd the unit's LimitCORE=0 sets
/// it (its seccomp filter refuses setrlimit, so that failure is ignored).
fn keep_memory_private() -> Result<(), String> {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot make the process non-dumpable: {}",
            std::io::Error::last_os_error()
        ));
    }
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads one rlimit we own.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    Ok(())
}

/// Raises the soft descriptor limit towards what the connection limits need; the
/// limits shrink to fit when it cannot be raised (see `Limits::fitting`).
fn raise_open_file_limit() {
    let want = Limits::DEFAULT.total as u64 + Limits::FD_RESERVE;
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 || rl.rlim_cur >= want {
        return;
    }
    rl.rlim_cur = want.min(rl.rlim_max);
    // SAFETY: setrlimit reads one rlimit we own; failure leaves the limit as it was.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers toopherd could not stop cleanly; run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET`.
fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let addr = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&target),
    };
    if let (Ok(sock), Ok(addr)) = (UnixDatagram::unbound(), addr) {
        let _ = sock.send_to_addr(state.as_bytes(), &addr);
    }
}
