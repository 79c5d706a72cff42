//! For the durability suites: requests whose answer may be lost (toopherd killed in the
//! middle), the database's integrity and file modes, and a small file system to fill.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use toopher_ipc::{
    AdminRequest, AdminResponse, Client, LoginContext, LoginRequest, LoginResponse, Secret,
    Timeouts,
};

/// How long a client keeps trying to reach a toopherd that is being restarted.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// What came of a request that was sent (`R`: the answer's family).
#[derive(Debug)]
pub enum Ack<R> {
    /// toopherd answered: what the answer says was done is on disk.
    Answer(R),
    /// Sent, but toopherd died before answering: it may or may not have been done.
    Lost,
}

fn connect(socket: &Path) -> Client {
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(15),
    };
    loop {
        match Client::connect(socket, timeouts) {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "toopherd did not come back on {}: {e}",
                    socket.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Sends one request, reconnecting while toopherd is down (nothing was sent then).
pub fn call(socket: &Path, req: &AdminRequest) -> Ack<AdminResponse> {
    match connect(socket).call(req) {
        Ok(r) => Ack::Answer(r),
        Err(_) => Ack::Lost,
    }
}

/// A login of `user` that types `code`. A failure before the code was sent is retried
/// (the code was not used); after, it is `Lost`. An answer to `Begin` other than a
/// challenge (a rate-limit refusal) is returned as it is.
pub fn login(socket: &Path, user: &str, code: &str) -> Ack<LoginResponse> {
    let ctx = LoginContext {
        user: user.into(),
        service: "durability-test".into(),
        rhost: None,
        tty: None,
        ruser: None,
        autopush: false,
        notify: false,
    };
    loop {
        let mut c = connect(socket);
        match c.call(&LoginRequest::Begin(ctx.clone())) {
            Ok(LoginResponse::Challenge { .. }) => {}
            Ok(other) => return Ack::Answer(other),
            Err(_) => continue,
        }
        let otp = LoginRequest::Otp {
            code: Secret::new(code),
        };
        return match c.call(&otp) {
            Ok(r) => Ack::Answer(r),
            Err(_) => Ack::Lost,
        };
    }
}

/// `PRAGMA integrity_check` on a read-only connection ("ok" when sound). Read-only, so it
/// neither checkpoints nor removes the WAL toopherd works with.
pub fn integrity_check(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {} read-only: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .unwrap_or_else(|e| panic!("integrity_check on {}: {e}", db.display()));
    rows.join("; ")
}

/// The database and its `-wal` and `-shm` companions.
pub fn database_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// A plain file, owned by root, mode 0600.
pub fn assert_private(path: &Path) {
    let meta = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    assert!(
        meta.file_type().is_file(),
        "{} is not a plain file",
        path.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "{} has mode {:o}",
        path.display(),
        meta.permissions().mode() & 0o7777
    );
    assert_eq!(meta.uid(), 0, "{} is not owned by root", path.display());
}

/// A tmpfs of a few hundred KiB in a temp dir, unmounted on drop (also when a test panics:
/// declare it before the toopherd that uses it, so toopherd is stopped first).
pub struct SmallFs {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SmallFs {
    pub fn mount(size_kib: u64) -> SmallFs {
        let dir = tempfile::Builder::new()
            .prefix("toopher-smallfs-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_kib}k,mode=0700"))
            .arg("toopher-smallfs")
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { _dir: dir, path }
    }

    /// Writes `name` until the file system is full; returns the file's path.
    pub fn fill(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        let mut f = std::fs::File::create(&p).expect("filler");
        let block = vec![0u8; 16 * 1024];
        let mut chunk = &block[..];
        loop {
            match f.write(chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && chunk.len() > 1 => {
                    // Fill the last partial page too.
                    chunk = &block[..1];
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", p.display()),
            }
        }
        p
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process we could not stop): detach it all the same.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
