//! The socket server. One task per connection; a login lives on its connection, so a
//! client that goes away takes its login with it. Malformed, oversized or silent
//! clients get an error frame or a closed connection and never hold up anyone else.
//!
//! This file is the accept loop, the connection's framing and [`dispatch`], which
//! authorises every request once and hands it to its family: `login` (the module's
//! requests, with `registration`) or `admin` (toopherctl's). The connection's state is
//! in `conn` and `session`; what all connections share in `service`.

mod admin;
pub mod admission;
mod conn;
mod known;
mod login;
mod registration;
mod service;
mod session;
#[cfg(test)]
mod tests;

pub use conn::Conn;
pub use service::Service;

use crate::authz::Peer;
use crate::logging::{Abuse, UNKNOWN_UID};
use admission::{Admission, Refusal};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use toopher_ipc::{ErrorKind, FrameError, Request, Response, decode, encode, parse_header};
use zeroize::Zeroizing;

/// A connection must send its first frame this soon after connecting.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Once a frame has begun, the rest of it (length prefix and body, at most
/// `MAX_FRAME_LEN` bytes) must arrive this soon: a trickling client is dropped.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Between messages a person is typing: a code at a login prompt, or scanning a QR code
/// and typing its first code in `toopherctl enroll`. Bounded all the same, and shorter
/// for non-root peers, whose connections do not carry logins of sshd or sudo.
const IDLE_TIMEOUT_ROOT: Duration = Duration::from_secs(600);
const IDLE_TIMEOUT_USER: Duration = Duration::from_secs(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often counts of suppressed log lines are written out.
const LOG_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// On shutdown, how long in-flight requests may take to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` fires, then lets in-flight requests finish.
/// The connection limits fit the process's descriptor limit (RLIMIT_NOFILE).
pub async fn serve(
    listener: UnixListener,
    daemon: Arc<Service>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = admission::Limits::fitting(open_file_limit());
    serve_with(listener, daemon, limits, shutdown).await
}

/// [`serve`] with explicit connection limits.
async fn serve_with(
    listener: UnixListener,
    daemon: Arc<Service>,
    limits: admission::Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let admission = Admission::new(limits);
    daemon.log.info(&format!(
        "connection limits: {} in all, {} of them reserved for root, {} per other uid",
        limits.total, limits.root_reserved, limits.per_uid
    ));
    let refusals = RefusalFrames::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut flush = tokio::time::interval(LOG_FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some((uid, slot)) = admit(&daemon, &admission, &refusals, &stream) else {
                        continue;
                    };
                    let d = Arc::clone(&daemon);
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        connection(d, stream, uid, stop).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of descriptors or memory: pause rather than spin.
                    daemon.log.abuse(UNKNOWN_UID, Abuse::AtLimit, &format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = flush.tick() => daemon.log.flush_suppressed(false),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        daemon
            .log
            .warn("shutdown: requests still running after the drain timeout were cut off");
        tasks.abort_all();
    }
    daemon.log.flush_suppressed(true);
}

/// The soft RLIMIT_NOFILE; 1024 (the usual default) when it cannot be read.
fn open_file_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    rl.rlim_cur
}

/// The answers to refused connections, encoded once: refusing costs no allocation.
struct RefusalFrames {
    per_uid: Option<Zeroizing<Vec<u8>>>,
    busy: Option<Zeroizing<Vec<u8>>>,
}

impl RefusalFrames {
    fn new() -> Self {
        let frame = |msg: &str| encode(&Response::error(ErrorKind::Busy, msg)).ok();
        RefusalFrames {
            per_uid: frame("too many connections from this user"),
            busy: frame("toopherd is busy"),
        }
    }
}

/// Admits a new connection or refuses it on the spot: no task, no waiting, one
/// non-blocking write of a short error frame into the fresh socket's empty buffer.
fn admit(
    daemon: &Service,
    admission: &Arc<Admission>,
    refusals: &RefusalFrames,
    stream: &UnixStream,
) -> Option<(u32, admission::Slot)> {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            daemon.log.abuse(
                UNKNOWN_UID,
                Abuse::BadInput,
                &format!("connection without peer credentials refused: {e}"),
            );
            return None;
        }
    };
    match admission.try_admit(uid) {
        Ok(slot) => Some((uid, slot)),
        Err(refusal) => {
            daemon.log.abuse(
                uid,
                Abuse::AtLimit,
                &format!("uid={uid}: connection refused: {}", refusal.describe()),
            );
            let frame = match refusal {
                Refusal::PerUid => &refusals.per_uid,
                Refusal::NonRootShare | Refusal::Total => &refusals.busy,
            };
            if let Some(f) = frame {
                let _ = stream.try_write(f);
            }
            None
        }
    }
}

/// Why no frame was read.
enum ReadError {
    /// The peer closed (or the socket failed): nothing to answer.
    Closed,
    /// Nothing arrived within the wait for a new frame.
    Idle,
    /// A frame began but did not complete within [`FRAME_TIMEOUT`].
    Stalled,
    /// A frame that breaks the protocol (too large).
    Frame(FrameError),
}

/// Reads one frame: its first byte within `idle`, the rest within [`FRAME_TIMEOUT`].
async fn read_body(
    stream: &mut UnixStream,
    idle: Duration,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let mut header = [0u8; 4];
    let got = match tokio::time::timeout(idle, stream.read(&mut header)).await {
        Err(_) => return Err(ReadError::Idle),
        Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadError::Closed),
        Ok(Ok(n)) => n,
    };
    let rest = async {
        stream.read_exact(&mut header[got..]).await?;
        let len = parse_header(header)?;
        let mut body = Zeroizing::new(vec![0u8; len]);
        stream.read_exact(&mut body).await?;
        Ok::<_, FrameError>(body)
    };
    match tokio::time::timeout(FRAME_TIMEOUT, rest).await {
        Err(_) => Err(ReadError::Stalled),
        Ok(Err(FrameError::Closed | FrameError::Io(_))) => Err(ReadError::Closed),
        Ok(Err(e)) => Err(ReadError::Frame(e)),
        Ok(Ok(body)) => Ok(body),
    }
}

async fn send(stream: &mut UnixStream, resp: &Response) -> Result<(), String> {
    let frame = encode(resp).map_err(|e| e.to_string())?;
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("write timed out".into()),
    }
}

async fn connection(
    d: Arc<Service>,
    mut stream: UnixStream,
    uid: u32,
    mut stop: watch::Receiver<bool>,
) {
    let peer = match d.root_peer.get() {
        Some(root) if uid == 0 => root.clone(),
        _ => {
            let admin_group = d.config.admin_group.as_ref().map(|g| g.0.clone());
            let lookup =
                tokio::task::spawn_blocking(move || Peer::lookup(uid, admin_group.as_deref()));
            match lookup.await {
                Ok(p) => {
                    if uid == 0 {
                        let _ = d.root_peer.set(p.clone());
                    }
                    p
                }
                Err(_) => return,
            }
        }
    };
    // The PAM process's audit session, read while it waits for our answer (root peers
    // only; see policy::session for why a reused pid cannot slip in). Only while some
    // grace period is configured (the policy is fixed while toopherd runs): without one
    // no login has a place, and the read is half a dozen system calls a connection.
    let audit_session = if uid == 0 && d.policy.policy().grace_enabled() {
        stream
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .and_then(|pid| crate::policy::session::login_session(uid, stream.as_fd(), pid))
    } else {
        None
    };
    let mut conn = Conn::new(Arc::clone(&d), peer).with_audit_session(audit_session);
    let idle = if uid == 0 {
        IDLE_TIMEOUT_ROOT
    } else {
        IDLE_TIMEOUT_USER
    };
    let mut first = true;
    loop {
        let wait = if first { FIRST_FRAME_TIMEOUT } else { idle };
        let read = tokio::select! {
            r = read_body(&mut stream, wait) => r,
            _ = stop.changed() => return,
        };
        let body = match read {
            Ok(body) => body,
            Err(ReadError::Closed) => return,
            // A person who never typed their code: not abuse, nothing to log.
            Err(ReadError::Idle) if !first => return,
            Err(ReadError::Idle) => {
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!(
                        "{}: dropped a connection that sent nothing for {} s",
                        conn.peer.describe(),
                        FIRST_FRAME_TIMEOUT.as_secs()
                    ),
                );
                return;
            }
            Err(ReadError::Stalled) => {
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!(
                        "{}: dropped a connection stalled in the middle of a frame",
                        conn.peer.describe()
                    ),
                );
                return;
            }
            Err(ReadError::Frame(e)) => {
                let kind = match e {
                    FrameError::TooLarge(_) => ErrorKind::TooLarge,
                    _ => ErrorKind::BadRequest,
                };
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!("{}: refused a bad frame: {e}", conn.peer.describe()),
                );
                let _ = send(&mut stream, &Response::error(kind, e.to_string())).await;
                return;
            }
        };
        first = false;
        let req: Request = match decode(&body) {
            Ok(r) => r,
            Err(e) => {
                let kind = match e {
                    FrameError::Version(_) => ErrorKind::Version,
                    _ => ErrorKind::BadRequest,
                };
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!("{}: refused a bad message: {e}", conn.peer.describe()),
                );
                let _ = send(&mut stream, &Response::error(kind, e.to_string())).await;
                return;
            }
        };
        drop(body);
        // A client that goes away mid-request (a module giving up on a push) ends the work.
        let resp = tokio::select! {
            r = dispatch(&mut conn, req) => r,
            _ = peer_gone(&stream) => return,
        };
        if let Err(e) = send(&mut stream, &resp).await {
            d.log.abuse(
                uid,
                Abuse::BadInput,
                &format!("{}: answer not sent: {e}", conn.peer.describe()),
            );
            return;
        }
    }
}

/// Answers one request of a connection: authorised once, here, then handled by its
/// family, which answers in its own family (a refusal too). The peer is the connection's (`SO_PEERCRED`); tests pass any.
pub async fn dispatch(conn: &mut Conn, req: Request) -> Response {
    let refusal = conn.authorise(&req);
    match (req, refusal) {
        (Request::Login(_), Some(refusal)) => Response::Login(refusal.into()),
        (Request::Admin(_), Some(refusal)) => Response::Admin(refusal.into()),
        (Request::Login(r), None) => Response::Login(login::handle(conn, r).await),
        (Request::Admin(r), None) => Response::Admin(admin::handle(conn, r).await),
    }
}

/// Resolves when the peer closes its end (or sends before its answer, which the
/// protocol does not allow).
async fn peer_gone(stream: &UnixStream) {
    let mut probe = [0u8; 1];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            _ => return,
        }
    }
}
