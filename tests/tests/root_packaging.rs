//! The deb and rpm packages: runs `packaging/check`, which builds both packages (cargo-deb,
//! cargo-generate-rpm), checks their file lists, modes, scripts, unit and man pages, then
//! installs the .deb into a clean Debian 12 root (debootstrap), logs in there through the
//! installed module and daemon with pamtester, and purges it, checking nothing is left.
//! Needs root, like every `root_*` suite. Its output is shown as it runs.

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn packages_build_install_log_in_and_purge_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let status = Command::new(root.join("packaging/check"))
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .expect("cannot run packaging/check");
    assert!(
        status.success(),
        "packaging/check failed ({status}); the lines above name the problem"
    );
}
