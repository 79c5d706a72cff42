//! The end-to-end harness: the built `pam_toopher.so` through the real libpam
//! (`pam_start_confdir` with a private PAM directory), a real `toopherd` on a temporary
//! socket and state directory, and codes computed by `oathtool`, independently of toopherd.

pub mod daemon;
pub mod durable;
pub mod fake_toopherd;
pub mod memcheck;
pub mod otp;
pub mod pam;
pub mod postgres;
pub mod sim;
pub mod system;

use std::path::PathBuf;

/// The cargo target directory holding the built binaries and module.
pub fn build_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOOPHER_BUILD_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A built artifact; missing means the workspace was not built, which is a loud failure.
pub fn artifact(name: &str) -> PathBuf {
    let p = build_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`), \
         or run the README's test command",
        p.display()
    );
    p
}

pub fn module_path() -> PathBuf {
    artifact("libpam_toopher.so")
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// System accounts that exist on every Debian machine; toopherd only enrols real accounts.
pub const USERS: &[&str] = &[
    "daemon", "bin", "sys", "games", "man", "lp", "mail", "news", "uucp", "proxy",
];
