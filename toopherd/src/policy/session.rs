//! The kernel audit session of the peer: `/proc/PID/sessionid`, where PID is the process
//! at the other end of the socket (SO_PEERCRED). The kernel assigns the id when a login
//! writes `/proc/self/loginuid` (pam_loginuid) and nobody can change it afterwards, so
//! processes sharing it came from the same login. 4294967295 means "no session" (daemons
//! started outside any login, containers without audit).
//!
//! Only a root peer's session counts: the module inside sshd, sudo, su or login runs as
//! root, while a user's own process could ask on behalf of nothing but itself.
//!
//! One audit session can hold several people: `su alice` typed by deploy inside alice's
//! session, or a shell deploy left open. So the peer's *real* uid (`Uid:` in
//! `/proc/PID/status`, read through the same pinned process) is read too: a setuid sudo or
//! su keeps the invoking person's real uid, and the login counts the session as its grace
//! place only when that real uid is the uid of the user being authenticated (see
//! [`PeerSession::place_for`]).
//!
//! A pid can be reused once its process is gone. The process is pinned with a pidfd:
//! SO_PEERPIDFD (Linux 6.5) names the very process that connected; older kernels fall
//! back to pidfd_open(2) on the SO_PEERCRED pid, which is sound as long as the peer is
//! still alive when it is opened (the module waits for toopherd's answer, so it is).
//! After reading the session id the pidfd is asked whether its process still lives: if
//! it does, the pid was not reused, and the id read was its own.

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `/proc/PID/sessionid` of a process outside any audit session.
pub const UNSET: u32 = u32::MAX;

/// SO_PEERPIDFD from <asm-generic/socket.h> (not every libc version exports it).
const SO_PEERPIDFD: libc::c_int = 77;

#[derive(Debug)]
pub enum SessionError {
    /// The peer exited before its session could be read for certain.
    Gone,
    Io(std::io::Error),
    /// `/proc/PID/sessionid` held something other than a number, or `/proc/PID/status`
    /// no real uid.
    Malformed,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Gone => f.write_str("the peer process is gone"),
            SessionError::Io(e) => write!(f, "reading the peer's audit session: {e}"),
            SessionError::Malformed => {
                f.write_str("the peer's audit session id or status is malformed")
            }
        }
    }
}

impl std::error::Error for SessionError {}

/// The audit session of a peer process and who really runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSession {
    /// `/proc/PID/sessionid`, never [`UNSET`].
    pub id: u32,
    /// The real uid of the peer (`Uid:` in `/proc/PID/status`, first field): the person
    /// who ran sudo or su, not the root it runs as.
    pub real_uid: u32,
}

impl PeerSession {
    /// The session as the grace place of a login of the user with uid `user_uid`: only
    /// when the peer really runs as that user (`sudo` by alice for alice: yes; `su alice`
    /// run by deploy inside alice's session: no; an unknown user: no).
    pub fn place_for(&self, user_uid: Option<u32>) -> Option<u32> {
        (user_uid == Some(self.real_uid)).then_some(self.id)
    }
}

/// The audit session of a login's PAM process: `None` for a non-root peer, a process
/// outside any session, or when it cannot be read for certain (then grace by session
/// simply does not apply).
pub fn login_session(peer_uid: u32, socket: BorrowedFd, peer_pid: i32) -> Option<PeerSession> {
    if peer_uid != 0 {
        return None;
    }
    peer_session(socket, peer_pid).ok().flatten()
}

/// The audit session of the process at the other end of `socket`, whose SO_PEERCRED pid
/// is `peer_pid`; `Ok(None)` when it has none.
pub fn peer_session(
    socket: BorrowedFd,
    peer_pid: i32,
) -> Result<Option<PeerSession>, SessionError> {
    if peer_pid <= 0 {
        return Err(SessionError::Gone);
    }
    let pidfd = match peer_pidfd(socket.as_raw_fd()) {
        Ok(fd) => fd,
        Err(_) => pidfd_open(peer_pid)?,
    };
    session_of(&pidfd, peer_pid)
}

/// Up to `limit` bytes of `/proc/PID/NAME`.
fn proc_file(pid: i32, name: &str, limit: u64) -> Result<String, SessionError> {
    let mut text = String::new();
    std::fs::File::open(format!("/proc/{pid}/{name}"))
        .and_then(|f| f.take(limit).read_to_string(&mut text))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ESRCH) => SessionError::Gone,
            _ => SessionError::Io(e),
        })?;
    Ok(text)
}

/// Reads the session and real uid of `pid`, then checks that `pidfd` (the same process)
/// still lives: both were read from the process that connected.
fn session_of(pidfd: &OwnedFd, pid: i32) -> Result<Option<PeerSession>, SessionError> {
    // Outside any session (sshd's auth phase): nothing more to read. Should the pid
    // have been reused meanwhile, "no session" only means no grace by session.
    let Some(id) = parse(&proc_file(pid, "sessionid", 16)?)? else {
        return Ok(None);
    };
    // `Uid:` comes after Name, Umask, State, Tgid, Ngid, Pid, PPid and TracerPid: well
    // within the first 4 KiB.
    let status = proc_file(pid, "status", 4096)?;
    if !alive(pidfd) {
        return Err(SessionError::Gone);
    }
    let real_uid = parse_real_uid(&status)?;
    Ok(Some(PeerSession { id, real_uid }))
}

/// The real uid from the contents of `/proc/PID/status` (`Uid:\treal\teffective\t...`).
pub fn parse_real_uid(status: &str) -> Result<u32, SessionError> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .ok_or(SessionError::Malformed)?;
    let real = line
        .split_whitespace()
        .next()
        .ok_or(SessionError::Malformed)?;
    if real.is_empty() || real.len() > 10 || !real.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SessionError::Malformed);
    }
    real.parse().map_err(|_| SessionError::Malformed)
}

/// The contents of `/proc/PID/sessionid`.
pub fn parse(text: &str) -> Result<Option<u32>, SessionError> {
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SessionError::Malformed);
    }
    match digits.parse::<u32>() {
        Ok(UNSET) => Ok(None),
        Ok(id) => Ok(Some(id)),
        Err(_) => Err(SessionError::Malformed),
    }
}

fn peer_pidfd(socket: RawFd) -> Result<OwnedFd, SessionError> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the c_int we own and updates len.
    let rc = unsafe {
        libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || fd < 0 {
        return Err(SessionError::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, SessionError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ESRCH) => SessionError::Gone,
            _ => SessionError::Io(e),
        });
    }
    let fd = RawFd::try_from(fd)
        .map_err(|_| SessionError::Io(std::io::Error::other("descriptor out of range")))?;
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process behind `pidfd` has not exited (signal 0 checks without sending).
fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; null info and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn parses_session_ids() {
        assert_eq!(parse("42").unwrap(), Some(42));
        assert_eq!(parse("42\n").unwrap(), Some(42));
        assert_eq!(parse("0").unwrap(), Some(0));
        assert_eq!(parse("4294967295").unwrap(), None, "unset");
        for bad in [
            "",
            "\n",
            "-1",
            "4294967296",
            "12a",
            " 1",
            "99999999999",
            "1\n\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_the_real_uid() {
        let status = "Name:\tsudo\nUmask:\t0022\nState:\tS (sleeping)\n\
                      Uid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_real_uid(status).unwrap(), 1000);
        for bad in [
            "",
            "Name:\tx\n",
            "Uid:\n",
            "Uid:\t-1\t0\t0\t0\n",
            "Uid:\t99999999999\t0\n",
            "Uid:\tx\t0\n",
        ] {
            assert!(parse_real_uid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_session_counts_only_for_the_user_who_really_runs_the_peer() {
        // sudo run by alice (uid 1000) for alice: alice's session is her place.
        let by_alice = PeerSession {
            id: 7,
            real_uid: 1000,
        };
        assert_eq!(by_alice.place_for(Some(1000)), Some(7));
        // `su alice` run by deploy (uid 1001) inside alice's session: not a place.
        let by_deploy = PeerSession {
            id: 7,
            real_uid: 1001,
        };
        assert_eq!(by_deploy.place_for(Some(1000)), None);
        // A user the system does not know has no uid to match.
        assert_eq!(by_alice.place_for(None), None);
    }

    #[test]
    fn reads_the_session_of_the_peer() {
        let own = std::fs::read_to_string("/proc/self/sessionid")
            .expect("/proc/self/sessionid (a kernel with audit)");
        let expected = parse(&own).unwrap().map(|id| PeerSession {
            id,
            real_uid: nix::unistd::getuid().as_raw(),
        });
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let pid = std::process::id() as i32;
        assert_eq!(peer_session(a.as_fd(), pid).unwrap(), expected);
        // The fallback without SO_PEERPIDFD gives the same answer.
        let pidfd = pidfd_open(pid).unwrap();
        assert_eq!(session_of(&pidfd, pid).unwrap(), expected);
    }

    #[test]
    fn only_root_peers_have_a_login_session() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let pid = std::process::id() as i32;
        assert_eq!(login_session(1000, a.as_fd(), pid), None);
        assert_eq!(login_session(0, a.as_fd(), 0), None);
    }

    #[test]
    fn a_gone_process_has_no_session() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let pidfd = pidfd_open(pid).unwrap();
        assert!(alive(&pidfd));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!alive(&pidfd));
        assert!(matches!(session_of(&pidfd, pid), Err(SessionError::Gone)));
        assert!(matches!(pidfd_open(pid), Err(SessionError::Gone)));
    }
}
