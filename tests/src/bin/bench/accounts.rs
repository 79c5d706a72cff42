//! The benchmark's accounts: `BENCH_USERS` names that exist only for this process and
//! its children. The process enters a mount namespace of its own and bind-mounts a copy
//! of /etc/passwd with the bench users appended over /etc/passwd there, so toopherd
//! resolves them through NSS as it would real accounts, while the machine's accounts
//! are never touched and nothing is left behind when the process ends.

use std::ffi::CString;
use std::io::Write;

/// First uid of the bench accounts: far above any uid a distribution hands out.
const FIRST_UID: u32 = 3_900_000;

pub fn name(i: usize) -> String {
    format!("tbench{i:05}")
}

/// Enters a private mount namespace with `count` bench accounts in its /etc/passwd.
/// Must run before any thread starts (unshare(CLONE_NEWNS) refuses threaded processes).
/// Returns the file, which must stay alive as long as the mount is used.
pub fn enter_namespace(count: usize) -> tempfile::NamedTempFile {
    let mut passwd = tempfile::Builder::new()
        .prefix("bench-passwd-")
        .tempfile()
        .expect("temp passwd");
    let base = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let mut text = base;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for i in 0..count {
        let n = name(i);
        assert!(
            !text.contains(&format!("\n{n}:")),
            "{n} already exists on this machine"
        );
        text.push_str(&format!(
            "{n}:x:{}:65534:pam_toopher bench:/nonexistent:/usr/sbin/nologin\n",
            FIRST_UID + i as u32
        ));
    }
    passwd.write_all(text.as_bytes()).expect("write passwd");
    passwd.flush().expect("flush passwd");
    std::fs::set_permissions(
        passwd.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod passwd");
    let src = CString::new(passwd.path().to_str().expect("utf8 path")).expect("path");
    let root = CString::new("/").expect("c str");
    let target = CString::new("/etc/passwd").expect("c str");
    // SAFETY: plain syscalls with valid NUL-terminated strings; the process is still
    // single-threaded (called first thing in main).
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare(CLONE_NEWNS): {} (the benchmark needs root)",
            std::io::Error::last_os_error()
        );
        // Nothing mounted from here on propagates back to the machine.
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "make / private: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null()
            ),
            0,
            "bind-mount the bench passwd: {}",
            std::io::Error::last_os_error()
        );
    }
    passwd
}
