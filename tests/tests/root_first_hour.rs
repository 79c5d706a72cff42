//! What a new administrator meets in the first hour (issue 14): errors that name the
//! fix, users that do not exist refused everywhere, a QR code that fits and stays
//! legible in a pipe, a module that says it is misconfigured, start failures told once.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use toopher_tests::daemon::{Toopherd, ctl_as, run_once};
use toopher_tests::pam::{self, Stack};
use toopher_tests::{artifact, system};

const NOBODY: u32 = 65534;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_user_that_does_not_exist_is_an_error_everywhere() {
    system::require_root();
    let d = Toopherd::start();
    for args in [
        &["status", "nosuchuser"][..],
        &["status", "nosuchuser", "--json"],
        &["activate", "nosuchuser", "123456"],
        &["enroll", "nosuchuser", "--json"],
        &["enroll", "nosuchuser"],
        &["remove", "nosuchuser"],
        &["enable", "nosuchuser"],
        &["disable", "nosuchuser"],
        &["unlock", "nosuchuser"],
        &["recovery-codes", "nosuchuser", "--regenerate"],
        &["reset", "nosuchuser"],
        &["pair", "nosuchuser", "--qr", "--timeout", "1"],
        &["reset-link", "nosuchuser"],
        &["terminals", "create", "nosuchuser", "laptop", "laptop-1"],
        &["registration", "approve", "nosuchuser", "123456"],
    ] {
        let out = d.ctl(args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {stdout}");
        assert!(
            stderr.contains("no such user: nosuchuser"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("toopherctl enroll") && !stdout.contains("not enrolled"),
            "{args:?} suggests enrolling a user that does not exist: {stdout}{stderr}"
        );
    }
    // A real user is still just "not enrolled", with success.
    let out = d.ctl(&["status", "daemon"]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out).0.contains("not enrolled"));
}

#[test]
fn an_enrolment_into_a_pipe_is_plain_text_that_fits_80x24() {
    system::require_root();
    let d = Toopherd::start_with("issuer = \"toopher-demo\"\n");
    let png = d.dir.path().join("qr.png");
    let out = Command::new(artifact("toopherctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["enroll", "daemon", "--qr-file"])
        .arg(&png)
        .stdin(Stdio::null())
        .output()
        .expect("toopherctl");
    let (stdout, stderr) = text(&out);
    // No activation code on stdin: pending, and it says how to finish.
    assert!(!out.status.success());
    assert!(stderr.contains("toopherctl activate daemon"), "{stderr}");
    assert!(
        !stdout.contains('\x1b'),
        "escape sequences into a pipe: {stdout:?}"
    );
    let qr: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Scan this QR code"))
        .skip(1)
        .take_while(|l| l.starts_with(['\u{2588}', '\u{2580}', '\u{2584}', ' ']))
        .collect();
    assert!(!qr.is_empty(), "no QR code drawn: {stdout}");
    // With the prompt under it, it fits a 24-line terminal; every line 80 columns at most.
    assert!(qr.len() <= 23, "{} lines:\n{stdout}", qr.len());
    assert!(qr.iter().all(|l| l.chars().count() <= 80), "{stdout}");
    // The quiet zone: the first line is all light (drawn as full blocks).
    assert!(qr[0].chars().all(|c| c == '\u{2588}'), "{}", qr[0]);
    assert!(!stdout.contains("more than"), "{stdout}");
    // The PNG: private, and a PNG.
    let meta = std::fs::metadata(&png).expect("the PNG was not written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(stdout.contains(&format!("QR code PNG: {}", png.display())));
    // It will not overwrite a file.
    let out = d.ctl(&["enroll", "daemon", "--qr-file", png.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("exists"), "{out:?}");
}

#[test]
fn a_qr_code_too_large_for_80x24_says_where_the_png_is() {
    system::require_root();
    let d =
        Toopherd::start_with("issuer = \"a-rather-long-host-name.eu-west-1.compute.internal\"\n");
    let out = Command::new(artifact("toopherctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["enroll", "daemon"])
        .stdin(Stdio::null())
        .output()
        .expect("toopherctl");
    let stdout = text(&out).0;
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    assert!(
        stdout.contains("more than an 80x24 terminal")
            && stdout.contains("toopherctl enroll daemon --qr-file FILE"),
        "{stdout}"
    );
}

#[test]
fn a_misconfigured_module_says_so_unless_silent() {
    system::require_root();
    let d = Toopherd::start();
    let stack = Stack::toopher(&d.socket, "failmod=safe");
    let t = pam::login(&stack, "daemon", &[], None);
    assert_eq!(t.auth, pam::PAM_SERVICE_ERR, "{t:?}");
    assert_eq!(t.prompts(), 0, "{t:?}");
    assert!(
        t.messages.iter().any(|(style, m)| *style == pam::ERROR_MSG
            && m.contains("pam_toopher is misconfigured")
            && m.contains("journalctl")
            && m.contains("/var/log/auth.log")),
        "{t:?}"
    );
    // The option itself is for the log, not for whoever is at the prompt.
    assert!(!t.shown("failmod"), "{t:?}");
    let mut none = |_: i32, _: &str| None;
    let t = pam::login_flags(&stack, "daemon", None, pam::PAM_SILENT, &mut none);
    assert_eq!(t.auth, pam::PAM_SERVICE_ERR, "{t:?}");
    assert!(t.messages.is_empty(), "shown under PAM_SILENT: {t:?}");
}

/// A directory nobody can use as toopherd's: owned by nobody, 0755, inside a
/// temporary directory others may traverse.
fn nobody_dir(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    dir
}

fn toopherd_as_nobody(config: &Path) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(artifact("toopherd"))
        .args(["--log", "stderr", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv toopherd")
}

#[test]
fn a_database_toopherd_cannot_open_is_named_with_its_path_and_uid() {
    system::require_root();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = nobody_dir(tmp.path(), "run");
    // The state directory is root's: toopherd running as nobody cannot write it.
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = tmp.path().join("toopherd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{}/s.sock\"\nstate_dir = \"{}\"\n",
            run.display(),
            state.display()
        ),
    )
    .unwrap();
    let out = toopherd_as_nobody(&config);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    let db = state.join("toopherd.sqlite3");
    assert!(
        stderr.contains(&format!("cannot open the database {}", db.display()))
            && stderr.contains(&format!("uid {NOBODY}"))
            && stderr.contains(&format!("chown -R nobody: {}", state.display())),
        "{stderr}"
    );
    // It never started, so it never says it stopped.
    assert!(!stderr.contains("stopped"), "{stderr}");
}

#[test]
fn a_failed_bind_is_not_preceded_by_stopped() {
    system::require_root();
    let tmp = tempfile::tempdir().unwrap();
    // A socket path longer than a unix socket address can hold: the claim succeeds,
    // the bind fails.
    let deep = tmp.path().join("d".repeat(100));
    std::fs::create_dir(&deep).unwrap();
    let config = tmp.path().join("toopherd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{}/toopherd.sock\"\nstate_dir = \"{}/state\"\n",
            deep.display(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let out = run_once(&config, &[]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("toopherd.sock"), "{stderr}");
    assert!(!stderr.contains("stopped"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn check_config_checks_what_the_file_names() {
    system::require_root();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();
    let config = tmp.path().join("toopherd.toml");
    let write = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "socket = \"{}/s.sock\"\nstate_dir = \"{}\"\n{extra}",
                run.display(),
                state.display()
            ),
        )
        .unwrap()
    };
    write("admin_group = \"no-such-group-fh\"\n");
    let out = run_once(&config, &["--check-config"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{stdout}");
    assert!(
        stdout.contains("admin_group no-such-group-fh: no such group"),
        "{stdout}"
    );
    assert!(stdout.contains("chmod 700"), "{stdout}");
    assert!(!stdout.contains("valid"), "{stdout}");
    // Put right, it passes and says what it checked.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    write("admin_group = \"root\"\n");
    let out = run_once(&config, &["--check-config"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("admin_group root"), "{stdout}");
    // Checked as nobody, the root-owned state directory is not writable.
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(artifact("toopherd"))
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()
        .expect("setpriv");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{stdout}{stderr}");
    assert!(
        stdout.contains("cannot write") && stdout.contains("nobody"),
        "{stdout}"
    );
}

#[test]
fn toopherctl_as_a_user_without_toopherd_says_how_to_start_it() {
    system::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let out = ctl_as(&tmp.path().join("absent.sock"), &["status"], Some(NOBODY));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("systemctl status toopherd"), "{stderr}");
}
