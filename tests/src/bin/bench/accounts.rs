//! The benchmark's accounts: `count` names that exist only for this process and its
//! children. The process enters a mount namespace of its own and mounts an overlay over
//! /etc there, whose /etc/passwd is the machine's with the bench accounts appended, so
//! toopherd resolves them through NSS as it would real accounts, while the machine's
//! accounts and files are never touched and nothing is left behind when the process ends.
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

/// The overlay's upper and work directories; unmounts the overlay and removes them on drop.
pub struct Namespace {
    dir: Option<tempfile::TempDir>,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let etc = CString::new("/etc").expect("c str");
        // SAFETY: a plain syscall with a valid NUL-terminated path.
        unsafe { libc::umount2(etc.as_ptr(), libc::MNT_DETACH) };
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
    let (upper, work): (PathBuf, PathBuf) = (dir.path().join("upper"), dir.path().join("work"));
    std::fs::create_dir(&upper).expect("mkdir upper");
    std::fs::create_dir(&work).expect("mkdir work");
    let options = CString::new(format!(
        "lowerdir=/etc,upperdir={},workdir={}",
        upper.display(),
        work.display()
    ))
    .expect("options");
    let (root, etc, overlay) = (
        c(Path::new("/")),
        c(Path::new("/etc")),
        c(Path::new("overlay")),
    );
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
        check(
            libc::mount(
                overlay.as_ptr(),
                etc.as_ptr(),
                overlay.as_ptr(),
                0,
                options.as_ptr().cast(),
            ),
            "mount an overlay over /etc",
        );
    }
    let ns = Namespace { dir: Some(dir) };
    // Written through the overlay: the copy lands in `upper`, /etc stays as it is.
    std::fs::write("/etc/passwd", text).expect("write the bench passwd");
    ns
}
