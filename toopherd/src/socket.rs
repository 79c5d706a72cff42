//! toopherd's claim on its socket path. Only one toopherd may own a path: the first
//! takes an exclusive lock next to the socket and holds it for its whole life, so a
//! second one refuses to start without touching anything. The socket's directory must
//! be one that only root or toopherd can change, or someone else could swap the socket
//! for their own and answer the PAM module. On exit a toopherd removes the socket only
//! if it is still the one it bound.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum SocketError {
    /// The socket's directory is not safe to listen in.
    UnsafeDir { dir: PathBuf, problem: String },
    /// Another toopherd owns this socket path.
    Running { socket: PathBuf },
    /// Something that is not a socket is in the way.
    NotASocket { path: PathBuf },
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::UnsafeDir { dir, problem } => {
                write!(f, "refusing to listen in {}: {problem}", dir.display())
            }
            SocketError::Running { socket } => write!(
                f,
                "another toopherd is listening on {}; this one does not start and leaves it alone",
                socket.display()
            ),
            SocketError::NotASocket { path } => {
                write!(f, "{} exists and is not a socket", path.display())
            }
            SocketError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for SocketError {}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SocketError + use<> {
    let path = path.to_owned();
    move |source| SocketError::Io { what, path, source }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Checks the socket's directory, creating it (0755) when missing: it must be a
/// directory owned by root or toopherd's euid and writable by no one else; a symlink is
/// followed only when root or toopherd made it.
pub fn check_dir(dir: &Path) -> Result<(), SocketError> {
    let unsafe_dir = |problem: String| SocketError::UnsafeDir {
        dir: dir.to_owned(),
        problem,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io_err("create", dir))?;
            // The umask (077) applies to the mode above; the socket must be reachable.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err("set the mode of", dir))?;
            std::fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?
        }
        Err(e) => return Err(io_err("inspect", dir)(e)),
    };
    let me = euid();
    let trusted = |uid: u32| uid == 0 || uid == me;
    let meta = if meta.file_type().is_symlink() {
        if !trusted(meta.uid()) {
            return Err(unsafe_dir(format!(
                "it is a symbolic link owned by uid {}, not by root or toopherd's user",
                meta.uid()
            )));
        }
        std::fs::metadata(dir).map_err(io_err("inspect", dir))?
    } else {
        meta
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".into()));
    }
    if !trusted(meta.uid()) {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}; it must belong to root or toopherd's user (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "it is writable by group or others (mode {mode:04o}), so anyone could replace \
             the socket; make it 0755 (chmod 755 {})",
            dir.display()
        )));
    }
    Ok(())
}

/// A socket path this toopherd owns: the directory is checked and the lock is held, but
/// nothing is listening yet.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    lock: File,
}

/// The listening socket, and the claim that removes it.
#[derive(Debug)]
pub struct Bound {
    pub listener: UnixListener,
    /// A socket of a toopherd that had died was replaced.
    pub replaced_stale: bool,
    pub owned: Owned,
}

/// The socket file this toopherd made (by device and inode) and the lock it holds.
#[derive(Debug)]
pub struct Owned {
    path: PathBuf,
    dev: u64,
    ino: u64,
    _lock: File,
}

/// The lock file next to the socket. It is never removed: removing it would let two
/// processes lock two different files of the same name.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl Claim {
    /// Checks the directory and takes the lock; fails with [`SocketError::Running`] when
    /// another toopherd holds it or still answers on the socket.
    pub fn take(socket: &Path) -> Result<Claim, SocketError> {
        let dir = match socket.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        check_dir(dir)?;
        let lock_path = lock_path(socket);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_err("open the lock file", &lock_path))?;
        // SAFETY: flock on a descriptor we own; the lock lives as long as `lock`.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                SocketError::Running {
                    socket: socket.to_owned(),
                }
            } else {
                io_err("lock", &lock_path)(e)
            });
        }
        // A toopherd that does not take the lock (an older one) may still be listening.
        if is_socket(socket)? && UnixStream::connect(socket).is_ok() {
            return Err(SocketError::Running {
                socket: socket.to_owned(),
            });
        }
        Ok(Claim {
            path: socket.to_owned(),
            lock,
        })
    }

    /// Replaces a stale socket (no one answers; we hold the lock, so no one will) and
    /// listens, world-connectable: every request is authorised by the peer's uid.
    pub fn bind(self) -> Result<Bound, SocketError> {
        let path = self.path;
        let replaced_stale = is_socket(&path)?;
        if replaced_stale {
            std::fs::remove_file(&path).map_err(io_err("remove the stale socket", &path))?;
        }
        let listener = UnixListener::bind(&path).map_err(io_err("listen on", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(io_err("set the mode of", &path))?;
        let meta = std::fs::symlink_metadata(&path).map_err(io_err("inspect", &path))?;
        Ok(Bound {
            listener,
            replaced_stale,
            owned: Owned {
                dev: meta.dev(),
                ino: meta.ino(),
                path,
                _lock: self.lock,
            },
        })
    }
}

/// Whether `path` is a socket; an error when something else is there.
fn is_socket(path: &Path) -> Result<bool, SocketError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(true),
        Ok(_) => Err(SocketError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

impl Owned {
    /// Removes the socket if the file at its path is still the one this toopherd bound
    /// (same device and inode); returns whether it did. The lock is released afterwards.
    pub fn remove(self) -> bool {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                std::fs::remove_file(&self.path).is_ok()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn a_missing_directory_is_created_0755() {
        let t = tmp();
        let dir = t.path().join("run/toopherd");
        check_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn group_or_world_writable_directories_are_refused() {
        let t = tmp();
        for mode in [0o775, 0o757, 0o1777] {
            let dir = t.path().join(format!("d{mode:o}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_dir(&dir).unwrap_err().to_string();
            assert!(e.contains("writable by group or others"), "{e}");
        }
    }

    #[test]
    fn a_second_claim_on_a_path_is_refused_and_the_first_survives() {
        let t = tmp();
        let sock = t.path().join("s/toopherd.sock");
        let bound = Claim::take(&sock).unwrap().bind().unwrap();
        assert!(!bound.replaced_stale);
        let e = Claim::take(&sock).unwrap_err();
        assert!(matches!(e, SocketError::Running { .. }), "{e}");
        assert!(
            UnixStream::connect(&sock).is_ok(),
            "the live socket was harmed"
        );
        assert!(bound.owned.remove());
        assert!(!sock.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let t = tmp();
        let sock = t.path().join("toopherd.sock");
        drop(UnixListener::bind(&sock).unwrap());
        let bound = Claim::take(&sock).unwrap().bind().unwrap();
        assert!(bound.replaced_stale);
        assert!(UnixStream::connect(&sock).is_ok());
    }

    #[test]
    fn a_socket_replaced_by_someone_else_is_not_removed() {
        let t = tmp();
        let sock = t.path().join("toopherd.sock");
        let bound = Claim::take(&sock).unwrap().bind().unwrap();
        std::fs::rename(&sock, t.path().join("old.sock")).unwrap();
        let other = UnixListener::bind(&sock).unwrap();
        assert!(!bound.owned.remove());
        assert!(sock.exists());
        drop(other);
    }

    #[test]
    fn something_else_in_the_way_is_not_removed() {
        let t = tmp();
        let path = t.path().join("toopherd.sock");
        std::fs::write(&path, b"data").unwrap();
        let e = Claim::take(&path).unwrap_err();
        assert!(matches!(e, SocketError::NotASocket { .. }), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
