//! abuser: a hostile local user for the abuse suite. Holds `--connections` connections to
//! toopherd's socket, each in one of five roles (silent; a partial length prefix; an
//! oversized frame; garbage; valid `status` requests for `--user`, its own account,
//! repeated and held open), and re-opens each one as soon as toopherd drops or refuses
//! it. Runs until its stdin closes (or `--seconds` pass), then prints what it saw as
//! one JSON object, so the test can check the abuse really happened.
//!
//! `abuser --socket PATH --connections N --user NAME [--seconds S] [--only ROLE]
//! [--until-errors N]`; run it as an unprivileged uid (setpriv). `--only` gives every
//! connection one role (silent, partial-prefix, oversized, garbage, valid); with
//! `--until-errors` it also stops once toopherd has answered that many bad frames.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use toopher_ipc::{
    AdminRequest, AdminResponse, ErrorKind, ErrorReply, decode, encode, parse_header,
};

const THREADS: usize = 4;
/// A held-open connection asks again this often.
const REPEAT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
enum Role {
    Silent,
    PartialPrefix,
    Oversized,
    Garbage,
    Valid,
}

const ROLES: [Role; 5] = [
    Role::Silent,
    Role::PartialPrefix,
    Role::Oversized,
    Role::Garbage,
    Role::Valid,
];

#[derive(Default)]
struct Stats {
    connects: AtomicU64,
    /// Connection attempts the kernel refused (backlog full) and that were retried.
    connect_retries: AtomicU64,
    /// `busy` answers: toopherd turned the connection away at a limit.
    busy: AtomicU64,
    /// Error answers to the bad frames.
    errors: AtomicU64,
    /// Answers to the valid requests.
    answers: AtomicU64,
    /// Connections toopherd closed.
    dropped: AtomicU64,
}

struct Conn {
    role: Role,
    stream: Option<UnixStream>,
    inbuf: Vec<u8>,
    next_request: Option<Instant>,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn usage() -> ! {
    eprintln!(
        "usage: abuser --socket PATH --connections N --user NAME [--seconds S] \
         [--only ROLE] [--until-errors N]"
    );
    std::process::exit(2)
}

fn role_named(name: &str) -> Role {
    match name {
        "silent" => Role::Silent,
        "partial-prefix" => Role::PartialPrefix,
        "oversized" => Role::Oversized,
        "garbage" => Role::Garbage,
        "valid" => Role::Valid,
        _ => usage(),
    }
}

/// A non-blocking connect: `None` when the listen backlog is full (try again later).
fn connect(path: &Path) -> Option<UnixStream> {
    // SAFETY: plain socket(2); the descriptor is owned by the UnixStream below or closed.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in bounds below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return None;
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: addr is a valid sockaddr_un of the given size.
    let rc = unsafe {
        libc::connect(
            fd,
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    (rc == 0).then_some(stream)
}

fn opening(role: Role, user: &str) -> Vec<u8> {
    match role {
        Role::Silent => Vec::new(),
        Role::PartialPrefix => vec![0, 0],
        Role::Oversized => (1u32 << 20).to_be_bytes().to_vec(),
        Role::Garbage => {
            let mut v = 12u32.to_be_bytes().to_vec();
            v.extend_from_slice(b"not json!!!!");
            v
        }
        Role::Valid => status_request(user),
    }
}

fn status_request(user: &str) -> Vec<u8> {
    encode(&AdminRequest::Status { user: user.into() })
        .map(|f| f.to_vec())
        .unwrap_or_default()
}

/// Takes the complete frames out of `buf` and counts them.
fn count_answers(conn: &mut Conn, stats: &Stats) {
    loop {
        if conn.inbuf.len() < 4 {
            return;
        }
        let header = [conn.inbuf[0], conn.inbuf[1], conn.inbuf[2], conn.inbuf[3]];
        let Ok(len) = parse_header(header) else {
            conn.inbuf.clear();
            return;
        };
        if conn.inbuf.len() < 4 + len {
            return;
        }
        let body: Vec<u8> = conn.inbuf.drain(..4 + len).skip(4).collect();
        match decode::<AdminResponse>(&body) {
            Ok(AdminResponse::Error(ErrorReply {
                kind: ErrorKind::Busy,
                ..
            })) => stats.busy.fetch_add(1, Ordering::Relaxed),
            Ok(AdminResponse::Error(_)) => stats.errors.fetch_add(1, Ordering::Relaxed),
            Ok(_) => {
                conn.next_request = Some(Instant::now() + REPEAT);
                stats.answers.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => stats.errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn run_thread(
    socket: PathBuf,
    user: String,
    mut conns: Vec<Conn>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut reconnect_pending = false;
        for c in conns.iter_mut() {
            if c.stream.is_none() {
                match connect(&socket) {
                    Some(mut s) => {
                        stats.connects.fetch_add(1, Ordering::Relaxed);
                        let _ = s.write(&opening(c.role, &user));
                        c.stream = Some(s);
                        c.inbuf.clear();
                        c.next_request = None;
                    }
                    None => {
                        stats.connect_retries.fetch_add(1, Ordering::Relaxed);
                        reconnect_pending = true;
                        continue;
                    }
                }
            }
            let Some(mut s) = c.stream.take() else {
                continue;
            };
            let closed = loop {
                match s.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            count_answers(c, &stats);
            if closed {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                reconnect_pending = true;
                continue;
            }
            if let Some(at) = c.next_request
                && Instant::now() >= at
            {
                c.next_request = None;
                let _ = s.write(&status_request(&user));
            }
            c.stream = Some(s);
        }
        // Wait for anything to read; re-connect at once when something was dropped.
        let mut fds: Vec<libc::pollfd> = conns
            .iter()
            .filter_map(|c| c.stream.as_ref())
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout = if reconnect_pending { 1 } else { 20 };
        // SAFETY: fds is a valid array of pollfd of the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    }
}

fn main() {
    let socket = PathBuf::from(arg("--socket").unwrap_or_else(|| usage()));
    let n: usize = arg("--connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| usage());
    let user = arg("--user").unwrap_or_else(|| usage());
    let seconds: u64 = arg("--seconds")
        .map(|v| v.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(600);
    let only = arg("--only").map(|r| role_named(&r));
    let until_errors: Option<u64> =
        arg("--until-errors").map(|v| v.parse().unwrap_or_else(|_| usage()));
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    {
        // Stop when the test closes our stdin (or goes away).
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut per_thread: Vec<Vec<Conn>> = (0..THREADS).map(|_| Vec::new()).collect();
    for i in 0..n {
        per_thread[i % THREADS].push(Conn {
            role: only.unwrap_or(ROLES[i % ROLES.len()]),
            stream: None,
            inbuf: Vec::new(),
            next_request: None,
        });
    }
    let threads: Vec<_> = per_thread
        .into_iter()
        .map(|conns| {
            let (socket, user, stats, stop) = (
                socket.clone(),
                user.clone(),
                Arc::clone(&stats),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || run_thread(socket, user, conns, stats, stop))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !stop.load(Ordering::Relaxed)
        && Instant::now() < deadline
        && until_errors.is_none_or(|n| stats.errors.load(Ordering::Relaxed) < n)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "connects": get(&stats.connects),
            "connect_retries": get(&stats.connect_retries),
            "busy": get(&stats.busy),
            "errors": get(&stats.errors),
            "answers": get(&stats.answers),
            "dropped": get(&stats.dropped),
        })
    );
}
