//! The benchmark's accounts: `count` names that exist only for this process and its
//! children. The process enters a mount namespace of its own and mounts an overlay over
//! /etc there, whose /etc/passwd is the machine's with the bench accounts appended, so
//! toopherd resolves them through NSS as it would real accounts, while the machine's
//! accounts and files are never touched and nothing is left behind when the process ends.
//!
//! Syslog: every PAM module logs through syslog(3), which on a machine without a syslog
//! daemon (no /dev/log, as in a bare container) writes each message to /dev/console
//! instead; on a serial console that is ~0.4 ms a line, which would swamp what is being
//! measured. So when /dev/log is missing, the namespace gets one: an overlay over /dev
//! holding a datagram socket that a thread of the benchmark reads and discards, as
//! journald or rsyslogd would take the lines. A machine's own /dev/log is used as it is.
//!
//! Account lookups: glibc's `files` backend reads /etc/passwd from the top at every
//! lookup, ~0.9 ms for a name at the end of 10,000 lines, which would make the throughput
//! runs (each verification a different account, so toopherd's lookup of it is one of
//! thousands) measure that scan. Sites with that many accounts use an indexed source
//! (sssd's cache, nss_db); for the throughput runs [`Namespace::indexed_lookups`] switches
//! to Debian's nss_db (libnss-db, ~0.1 ms a lookup whatever the account). The in-process
//! login rounds keep `files`: their accounts are the first in the file.
//!
//! An overlay of the directory, not a bind mount of the file: when another process on the
//! machine replaces /etc/passwd (useradd, userdel rename a new file over it), Linux
//! detaches mounts on the replaced file in every namespace, and the accounts would vanish
//! in the middle of a run.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// First uid of the bench accounts: far above any uid a distribution hands out.
const FIRST_UID: u32 = 3_900_000;

pub fn name(i: usize) -> String {
    format!("tbench{i:05}")
}

/// The overlays' upper and work directories; unmounts the overlays and removes them on
/// drop.
pub struct Namespace {
    dir: Option<tempfile::TempDir>,
    /// The passwd text, for nss_db.
    passwd: String,
    /// Whether syslog goes to the benchmark's own /dev/log (the machine has none).
    pub own_syslog: bool,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for path in ["/var/lib/misc", "/etc", "/dev"] {
            let p = CString::new(path).expect("c str");
            // SAFETY: a plain syscall with a valid NUL-terminated path (/dev fails
            // harmlessly with EINVAL when it was not overlaid).
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn c(path: &Path) -> CString {
    CString::new(path.to_str().expect("utf8 path")).expect("path")
}

fn check(rc: i32, what: &str) {
    assert_eq!(
        rc,
        0,
        "{what}: {} (the benchmark needs root)",
        std::io::Error::last_os_error()
    );
}

/// Enters a private mount namespace with `count` bench accounts in its /etc/passwd.
/// Must run before any thread starts (unshare(CLONE_NEWNS) refuses threaded processes).
pub fn enter_namespace(count: usize) -> Namespace {
    let mut text = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for i in 0..count {
        let n = name(i);
        assert!(
            !text.contains(&format!("\n{n}:")) && !text.starts_with(&format!("{n}:")),
            "{n} already exists on this machine"
        );
        text.push_str(&format!(
            "{n}:x:{}:65534:pam_toopher bench:/nonexistent:/usr/sbin/nologin\n",
            FIRST_UID + i as u32
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("bench-etc-")
        .tempdir()
        .expect("tempdir");
    let root = c(Path::new("/"));
    // SAFETY: plain syscalls with valid NUL-terminated strings; the process is still
    // single-threaded (called first thing in main).
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS), "unshare(CLONE_NEWNS)");
        // Nothing mounted from here on propagates back to the machine.
        check(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "make / private",
        );
    }
    overlay(Path::new("/etc"), &dir.path().join("etc"));
    let own_syslog = !Path::new("/dev/log").exists();
    if own_syslog {
        overlay(Path::new("/dev"), &dir.path().join("dev"));
        let log = std::os::unix::net::UnixDatagram::bind("/dev/log").expect("bind /dev/log");
        std::fs::set_permissions(
            "/dev/log",
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .expect("chmod /dev/log");
        // Read and dropped, as a syslog daemon would take them; runs until the end.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while log.recv(&mut buf).is_ok() {}
        });
    }
    // Written through the overlay: the copy lands in `upper`, /etc stays as it is.
    std::fs::write("/etc/passwd", &text).expect("write the bench passwd");
    Namespace {
        dir: Some(dir),
        passwd: text,
        own_syslog,
    }
}

impl Namespace {
    /// From here on, accounts are looked up through nss_db first (an index built from
    /// the bench's passwd with libnss-db's makedb, over /var/lib/misc in this namespace
    /// only), then `files`. glibc rereads nsswitch.conf when it changes, in toopherd too.
    pub fn indexed_lookups(&self) {
        let dir = self.dir.as_ref().expect("namespace directory").path();
        let db = dir.join("misc");
        std::fs::create_dir_all(&db).expect("mkdir");
        // The key lines of libnss-db's own Makefile: ".name", "=uid", "0N" (the order).
        let mut keyed = String::new();
        for (n, line) in self
            .passwd
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .enumerate()
        {
            let mut f = line.split(':');
            let (name, uid) = (f.next().unwrap_or(""), f.nth(1).unwrap_or(""));
            keyed.push_str(&format!("0{n} {line}\n.{name} {line}\n={uid} {line}\n"));
        }
        let mut makedb = std::process::Command::new("makedb")
            .arg("-o")
            .arg(db.join("passwd.db"))
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("makedb (Debian's libnss-db; scripts/bench installs it)");
        std::io::Write::write_all(makedb.stdin.as_mut().expect("stdin"), keyed.as_bytes())
            .expect("write to makedb");
        drop(makedb.stdin.take());
        assert!(makedb.wait().expect("makedb").success(), "makedb failed");
        let (from, to) = (c(&db), c(Path::new("/var/lib/misc")));
        // SAFETY: a plain syscall with valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                from.as_ptr(),
                to.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        check(rc, "bind the passwd index over /var/lib/misc");
        let nss = std::fs::read_to_string("/etc/nsswitch.conf").expect("read nsswitch.conf");
        let nss: String = nss
            .lines()
            .map(|l| {
                if l.starts_with("passwd:") {
                    "passwd: db files\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write("/etc/nsswitch.conf", nss).expect("write nsswitch.conf");
        // The index answers for the bench's accounts (not `files` behind it).
        let last = self
            .passwd
            .lines()
            .last()
            .and_then(|l| l.split(':').next())
            .unwrap_or("");
        let found = std::process::Command::new("getent")
            .args(["-s", "db", "passwd", last])
            .output()
            .expect("getent");
        assert!(found.status.success(), "nss_db does not know {last}");
    }
}

/// Mounts an overlay over `target` (in this namespace only), its changes kept under `at`.
fn overlay(target: &Path, at: &Path) {
    let (upper, work): (PathBuf, PathBuf) = (at.join("upper"), at.join("work"));
    std::fs::create_dir_all(&upper).expect("mkdir upper");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let options = CString::new(format!(
        "lowerdir={},upperdir={},workdir={}",
        target.display(),
        upper.display(),
        work.display()
    ))
    .expect("options");
    let (t, kind) = (c(target), c(Path::new("overlay")));
    // SAFETY: a plain syscall with valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            kind.as_ptr(),
            t.as_ptr(),
            kind.as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    check(rc, &format!("mount an overlay over {}", target.display()));
}
