//! A small blocking client: bounded connect, bounded reads and writes, one call at a time.

use crate::Outgoing;
use crate::frame::{FrameError, read_frame};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Bound on each write and on each wait for an answer.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            io: Duration::from_secs(10),
        }
    }
}

pub struct Client {
    stream: UnixStream,
    io_timeout: Duration,
}

impl Client {
    /// Connects within `timeouts.connect`. Any failure here means toopherd could not be
    /// reached, which is the one case `failmode` governs.
    pub fn connect(path: &Path, timeouts: Timeouts) -> io::Result<Client> {
        let stream = connect_bounded(path, timeouts.connect)?;
        stream.set_write_timeout(Some(nonzero(timeouts.io)))?;
        stream.set_read_timeout(Some(nonzero(timeouts.io)))?;
        Ok(Client {
            stream,
            io_timeout: timeouts.io,
        })
    }

    /// Sends a request and waits for its answer within the I/O timeout. The answer is
    /// read as the request's family answers ([`Outgoing::Answer`]): anything else is
    /// [`FrameError::Malformed`].
    pub fn call<R: Outgoing>(&mut self, req: &R) -> Result<R::Answer, FrameError> {
        self.call_within(req, self.io_timeout)
    }

    /// Like [`Client::call`], with its own bound on the wait for the answer (for `Wait`).
    pub fn call_within<R: Outgoing>(
        &mut self,
        req: &R,
        wait: Duration,
    ) -> Result<R::Answer, FrameError> {
        self.stream.set_read_timeout(Some(nonzero(wait)))?;
        let frame = req.frame()?;
        if let Err(e) = send_all(&self.stream, &frame) {
            // toopherd refuses a connection over its limits with one frame ("busy") and
            // closes without reading: the write then fails, but the answer is there to
            // read. A full daemon must be "busy" (a denial), never "unreachable" (which
            // `failmode=safe` lets through, and a local user could cause on purpose).
            let refused = matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            );
            if refused && let Ok(body) = read_frame(&mut self.stream) {
                return R::answer(&body);
            }
            return Err(e.into());
        }
        wait_readable(&self.stream, wait)?;
        let body = read_frame(&mut self.stream)?;
        R::answer(&body)
    }
}

/// Waits until the answer can be read, at most `wait` (`read_frame` then has the
/// stream's read timeout as well). `poll` rather than a blocking `recv`: a thread blocked
/// in a unix socket's `recv` is woken again whenever toopherd reads a request of ours
/// (the kernel's "write space" wake-up does not say what it is for), and on a virtual
/// machine every wake-up of an idle CPU is a trip through the hypervisor; `poll` for
/// `POLLIN` is woken only by what it waits for.
fn wait_readable(stream: &UnixStream, wait: Duration) -> io::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd on this frame (count 1); the descriptor is open
        // (borrowed from `stream` for this call).
        let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if n > 0 {
            // Readable, closed or failed: `read_frame` says which.
            return Ok(());
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer from toopherd in time",
            ));
        }
    }
}

/// Writes all of `buf` with `MSG_NOSIGNAL`: a peer that closed is `EPIPE`, never a SIGPIPE
/// to the process the module runs in (sshd, sudo). Bounded by the stream's write timeout.
fn send_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: the descriptor is open (borrowed from `stream` for this call); the pointer
        // and length describe `buf`, which outlives the call.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // n > 0 and at most buf.len().
        buf = buf.get(n as usize..).unwrap_or_default();
    }
    Ok(())
}

fn nonzero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

/// std has no connect timeout for unix sockets; a full backlog would block `connect`,
/// so connect non-blocking and retry `EAGAIN` until the deadline.
fn connect_bounded(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    // SAFETY: sockaddr_un is plain old data (integers and a byte array): all zeroes is a
    // valid value, and the conventional way to start one.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad socket path",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: socket(2) takes no pointers; its result is checked just below before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fd is open (held by `owned` for this call); the pointer and length describe
        // `addr`, a sockaddr_un that lives on this frame and outlives the call.
        let rc = unsafe {
            libc::connect(
                fd,
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            let stream = UnixStream::from(owned);
            stream.set_nonblocking(false)?;
            return Ok(stream);
        }
        let err = io::Error::last_os_error();
        let retry = matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR));
        if !retry {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;
    use crate::{
        AdminRequest, AdminResponse, ErrorKind, LoginRequest, LoginResponse, Request, Response,
        frame,
    };
    use std::os::unix::net::UnixListener;

    #[test]
    fn missing_socket_is_an_error_not_a_hang() {
        let t = Instant::now();
        let r = Client::connect(Path::new("/nonexistent/toopherd.sock"), Timeouts::default());
        assert!(r.is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    /// A fresh socket path in a directory of its own, listened on.
    fn listen(name: &str) -> (std::path::PathBuf, UnixListener) {
        let dir = std::env::temp_dir().join(format!("ipc-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        (dir, listener)
    }

    /// A client of the socket in `dir` with the I/O bound `io`.
    fn client(dir: &Path, io: Duration) -> Client {
        let connect = Duration::from_secs(1);
        Client::connect(&dir.join("s.sock"), Timeouts { connect, io }).unwrap()
    }

    #[test]
    fn silent_server_times_out() {
        let (dir, _listener) = listen("silent");
        let mut c = client(&dir, Duration::from_millis(200));
        let t = Instant::now();
        let err = c.call(&LoginRequest::Push).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn call_within_waits_no_longer_than_its_own_bound() {
        let (dir, _listener) = listen("within");
        let mut c = client(&dir, Duration::from_secs(30));
        let t = Instant::now();
        let err = c
            .call_within(&LoginRequest::Push, Duration::from_millis(200))
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert!(t.elapsed() < Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_server_that_closes_without_answering_is_closed_at_once_not_a_timeout() {
        let (dir, listener) = listen("close");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            frame::read_frame(&mut s).unwrap();
        });
        let mut c = client(&dir, Duration::from_secs(30));
        let t = Instant::now();
        let err = c.call(&LoginRequest::Push).unwrap_err();
        assert!(matches!(err, FrameError::Closed), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn call_gets_the_answer() {
        let (dir, listener) = listen("answer");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let body = frame::read_frame(&mut s).unwrap();
            let req: Request = frame::decode(&body).unwrap();
            assert_eq!(req, Request::Login(LoginRequest::Cancel));
            frame::write_frame(&mut s, &LoginResponse::error(ErrorKind::Unsupported, "no"))
                .unwrap();
        });
        let mut c = client(&dir, Timeouts::default().io);
        let r = c.call(&LoginRequest::Cancel).unwrap();
        assert_eq!(r, LoginResponse::error(ErrorKind::Unsupported, "no"));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Serves one connection: each request read is answered with the next of `answers`.
    fn serve(
        name: &str,
        answers: Vec<Response>,
    ) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
        let (dir, listener) = listen(name);
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for answer in answers {
                let _ = frame::read_frame(&mut s).unwrap();
                frame::write_frame(&mut s, &answer).unwrap();
            }
        });
        (dir, server)
    }

    #[test]
    fn each_family_reads_its_own_answers_and_no_other() {
        let (dir, server) = serve(
            "families",
            vec![
                AdminResponse::Activated { user: "bob".into() }.into(),
                AdminResponse::Activated { user: "bob".into() }.into(),
                LoginResponse::Pending.into(),
            ],
        );
        let mut c = client(&dir, Timeouts::default().io);
        let status = AdminRequest::Status { user: "bob".into() };
        assert_eq!(
            c.call(&status).unwrap(),
            AdminResponse::Activated { user: "bob".into() }
        );
        // An administrative answer to a login's request is not a login's answer.
        assert!(matches!(
            c.call(&LoginRequest::Push),
            Err(FrameError::Malformed { .. })
        ));
        // Nor the other way round.
        assert!(matches!(c.call(&status), Err(FrameError::Malformed { .. })));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_refusal_sent_before_the_request_is_read_is_the_answer() {
        // toopherd over its connection limit: one "busy" frame, then close without reading.
        let (dir, listener) = listen("busy");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            frame::write_frame(
                &mut s,
                &Response::error(ErrorKind::Busy, "toopherd is busy"),
            )
            .unwrap();
        });
        let mut c = client(&dir, Timeouts::default().io);
        // The refusal is written and the socket closed before the request goes out.
        server.join().unwrap();
        let r = c.call(&LoginRequest::Cancel);
        assert_eq!(
            r.ok(),
            Some(LoginResponse::error(ErrorKind::Busy, "toopherd is busy"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
