//! toopherd: the pam_toopher daemon. Runs in the foreground; systemd supervises it.

use clap::Parser;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use toopherd::config::{Config, DEFAULT_CONFIG};
use toopherd::logging::{Log, LogTarget};
use toopherd::server::{Daemon, serve};
use toopherd::store::Store;

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
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Where log lines go.
    #[arg(long, value_enum, default_value = "auto")]
    log: LogTarget,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("toopherd: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if args.check_config {
        // The Toopher backend's credentials are part of a working configuration.
        if config.backend == toopherd::config::Backend::Toopher {
            let path = config.toopher.credentials_path();
            if let Err(e) = toopherd::toopher::load_credentials(&path) {
                eprintln!("toopherd: invalid configuration: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        }
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let log = match Log::open(args.log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("toopherd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(config, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("toopherd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, log: Log) -> Result<(), String> {
    // Everything toopherd creates is private unless it says otherwise (the socket).
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    let state_dir = config.state_dir.path().to_owned();
    prepare_state_dir(&state_dir)?;
    let db_path = config.database_path();
    let mut store = Store::open(&db_path).map_err(|e| {
        let msg = format!("cannot open the database: {e}");
        log.err(&msg);
        msg
    })?;
    Store::tighten_permissions(&db_path).map_err(|e| e.to_string())?;
    if let Ok(n) = store.expire_pending(toopherd::now())
        && n > 0
    {
        log.info(&format!("dropped {n} expired pending enrolment(s)"));
    }
    let socket = config.socket.path().to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let daemon = match Daemon::new(config, store, log) {
        Ok(d) => Arc::new(d),
        Err(e) => return Err(e),
    };
    let result = runtime.block_on(async {
        let listener = bind(&socket)?;
        daemon.log.info(&format!(
            "listening on {} (backend {}, availability {}, failmode {})",
            socket.display(),
            daemon.config.backend.as_str(),
            daemon.config.availability.as_str(),
            daemon.config.failmode.as_str()
        ));
        notify_systemd("READY=1");
        serve(listener, Arc::clone(&daemon), shutdown_signal()).await;
        notify_systemd("STOPPING=1");
        Ok::<(), String>(())
    });
    let _ = std::fs::remove_file(&socket);
    daemon.log.info("stopped");
    result
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

/// Binds the socket, world-connectable (every request is authorised by peer uid).
/// A stale socket file is replaced; a live one means another toopherd is running.
fn bind(path: &Path) -> Result<tokio::net::UnixListener, String> {
    if let Some(parent) = path.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot set the mode of {}: {e}", parent.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", path.display()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another toopherd is listening on {}",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(listener)
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
