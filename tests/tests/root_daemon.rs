//! Needs root: toopherd authorises peers by uid, and these tests act for several accounts.
//! toopherd as a service: misbehaving clients, peer authorisation, configuration errors,
//! file modes, shutdown, and toopherctl.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use toopher_ipc::{
    AdminRequest, AdminResponse, Client, ErrorKind, LoginContext, LoginRequest, LoginResponse,
    Timeouts, decode, read_frame,
};
use toopher_tests::daemon::{Toopherd, ctl_as, run_once};
use toopher_tests::pam::{self, Stack};
use toopher_tests::{artifact, otp};

fn error_kind(stream: &mut UnixStream) -> Option<ErrorKind> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = read_frame(stream).ok()?;
    // An error reads alike in both families.
    decode::<LoginResponse>(&body)
        .ok()?
        .as_error()
        .map(|e| e.kind)
}

/// Whether toopherd closes the connection within 15 s (its first-frame timeout is 10 s).
fn closed(stream: &mut UnixStream) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            // A read with a timeout is never restarted after a signal (signal(7)): a
            // signal to this test process is not the daemon's doing, so read on.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return matches!(r, Ok(0)),
        }
    }
}

#[test]
fn bad_clients_get_an_error_or_are_closed_while_others_log_in() {
    let d = Toopherd::start();
    let mut u = d.enroll("daemon");

    let mut silent = UnixStream::connect(&d.socket).unwrap();
    let mut half = UnixStream::connect(&d.socket).unwrap();
    half.write_all(&[0, 0, 0]).unwrap(); // an unfinished header
    let mut garbage = UnixStream::connect(&d.socket).unwrap();
    garbage.write_all(&[0, 0, 0, 12]).unwrap();
    garbage.write_all(b"not json!!!!").unwrap();
    let mut http = UnixStream::connect(&d.socket).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut oversized = UnixStream::connect(&d.socket).unwrap();
    oversized.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
    let mut wrong_version = UnixStream::connect(&d.socket).unwrap();
    let body = br#"{"v":999,"msg":{"type":"push"}}"#;
    wrong_version
        .write_all(&(body.len() as u32).to_be_bytes())
        .unwrap();
    wrong_version.write_all(body).unwrap();

    // A real login goes through while all of them hang around.
    let code = u.next_code();
    let t = pam::login(&Stack::toopher(&d.socket, ""), "daemon", &[&code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());

    assert_eq!(error_kind(&mut garbage), Some(ErrorKind::BadRequest));
    assert!(closed(&mut garbage));
    assert_eq!(error_kind(&mut http), Some(ErrorKind::TooLarge));
    assert_eq!(error_kind(&mut oversized), Some(ErrorKind::TooLarge));
    assert!(closed(&mut oversized));
    assert_eq!(error_kind(&mut wrong_version), Some(ErrorKind::Version));

    // The silent ones are dropped after the first-frame timeout, not kept forever.
    assert!(closed(&mut silent), "silent client kept open");
    assert!(closed(&mut half));

    // And toopherd is still serving.
    let mut c = Client::connect(&d.socket, Timeouts::default()).unwrap();
    assert!(matches!(
        c.call(&AdminRequest::Status {
            user: "daemon".into()
        }),
        Ok(AdminResponse::Status(_))
    ));
}

#[test]
fn many_concurrent_logins_each_get_their_answer() {
    let d = Toopherd::start_with("availability = \"available\"\n");
    let socket = d.socket.clone();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                pam::login(&Stack::toopher(&socket, ""), "proxy", &[], None).auth
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), pam::PAM_SUCCESS);
    }
}

fn nobody_uid() -> u32 {
    65534
}

#[test]
fn a_non_root_peer_may_not_act_for_another_user() {
    let d = Toopherd::start();
    d.enroll("daemon");
    // The state dir is private to root; a non-root test process needs to reach the socket.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    toopher_tests::system::require_root();
    let as_uid = Some(nobody_uid());
    for args in [
        vec!["status", "daemon"],
        vec!["enroll", "daemon", "--json"],
        vec!["activate", "daemon", "123456"],
        vec!["remove", "daemon"],
    ] {
        let out = ctl_as(&d.socket, &args, as_uid);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} was not refused: {out:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("may only") || err.contains("needs root"),
            "{args:?}: {err}"
        );
    }
    let log = d.log();
    assert!(
        log.contains("refused request=status user=daemon by=uid="),
        "{log}"
    );
    // Still enrolled: nothing the refused requests asked for happened.
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["status", "daemon", "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "active");
}

#[test]
fn a_non_root_peer_may_not_begin_a_login_for_another_user() {
    toopher_tests::system::require_root();
    // As root: the module run by a non-root process (setpriv) asks for root's login.
    let d = Toopherd::start_with("availability = \"available\"\n");
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stack = Stack::toopher(&d.socket, "");
    std::fs::set_permissions(stack.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(artifact("pam-login"))
        .args([
            "--confdir",
            stack.dir.path().to_str().unwrap(),
            "--service",
            &stack.service,
            "--user",
            "root",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        d.log()
            .contains("refused request=begin user=root by=uid=65534"),
        "{}",
        d.log()
    );
    // nobody may begin its own login.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(artifact("pam-login"))
        .args([
            "--confdir",
            stack.dir.path().to_str().unwrap(),
            "--service",
            &stack.service,
            "--user",
            "nobody",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log());
}

fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toopherd.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(artifact("toopherd"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap()
}

#[test]
fn bad_configs_are_refused_naming_key_and_line() {
    let ok = check_config("socket = \"/run/x.sock\"\nbackend = \"local\"\nfailmode = \"safe\"\n");
    assert!(ok.status.success(), "{ok:?}");
    for (text, key, line) in [
        (
            "backend = \"local\"\nfailmode = \"open\"\n",
            "failmode",
            "line 2",
        ),
        ("\n\nstate_dir = \"var/lib\"\n", "state_dir", "line 3"),
        ("socket = \"/x\"\nsokcet = \"/y\"\n", "sokcet", "line 2"),
        ("availability = \"sometimes\"\n", "availability", "line 1"),
        ("[rate_limit]\nwindow = -5\n", "window", "line 2"),
        ("enrollment_ttl = \"ten\"\n", "enrollment_ttl", "line 1"),
    ] {
        let out = check_config(text);
        assert_eq!(out.status.code(), Some(78), "{text:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains(line), "{text:?}: {err}");
    }
    // And the daemon itself refuses to start with one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "failmode = 1\n").unwrap();
    let out = Command::new(artifact("toopherd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn database_is_private_and_refused_when_it_is_not() {
    let mut d = Toopherd::start();
    d.enroll("daemon");
    let db = d.dir.path().join("state/toopherd.sqlite3");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&d.dir.path().join("state")), 0o700);
    assert_eq!(mode(&d.socket), 0o666);
    assert!(d.stop());
    assert!(!d.socket.exists(), "socket left behind after SIGTERM");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_once(&d.config, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be 0600"),
        "{out:?}"
    );
}

fn inode(path: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.dev(), m.ino())
}

#[test]
fn a_second_toopherd_on_the_same_socket_refuses_to_start_and_leaves_the_first_alone() {
    toopher_tests::system::require_root();
    let mut d = Toopherd::start();
    let mut u = d.enroll("daemon");
    let before = inode(&d.socket);
    let out = run_once(&d.config, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another toopherd is listening"),
        "{out:?}"
    );
    // The running daemon's socket is still there, the same file, and it still serves
    // a real login through libpam.
    assert_eq!(inode(&d.socket), before, "the live socket was replaced");
    assert!(d.is_running());
    let code = u.next_code();
    let t = pam::login(&Stack::toopher(&d.socket, ""), "daemon", &[&code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    // Again, now that the first has served: still refused, still harmless.
    assert_eq!(run_once(&d.config, &[]).status.code(), Some(1));
    assert_eq!(inode(&d.socket), before);
    assert!(d.stop());
    assert!(
        !d.socket.exists(),
        "the first toopherd left its socket behind"
    );
}

#[test]
fn a_stale_socket_of_a_killed_toopherd_is_replaced() {
    toopher_tests::system::require_root();
    let mut d = Toopherd::start();
    let mut u = d.enroll("daemon");
    let pid = d.pid().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(!d.stop(), "toopherd survived SIGKILL");
    assert!(
        d.socket.exists(),
        "a killed toopherd cannot remove its socket"
    );
    assert!(
        UnixStream::connect(&d.socket).is_err(),
        "no one should listen on the stale socket"
    );
    d.spawn();
    assert!(d.log().contains("replaced the stale socket"), "{}", d.log());
    let code = u.next_code();
    let t = pam::login(&Stack::toopher(&d.socket, ""), "daemon", &[&code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
}

#[test]
fn on_exit_toopherd_removes_only_the_socket_it_made() {
    toopher_tests::system::require_root();
    let mut d = Toopherd::start();
    // Someone (root) moved the socket away and put another one in its place.
    std::fs::rename(&d.socket, d.dir.path().join("moved.sock")).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
    let theirs = inode(&d.socket);
    assert!(d.stop());
    assert_eq!(
        inode(&d.socket),
        theirs,
        "toopherd removed a socket it did not make"
    );
    assert!(
        d.log().contains("left") && d.log().contains("in place"),
        "{}",
        d.log()
    );
    drop(other);
}

/// A config whose socket is `dir/toopherd.sock`, with its own state directory.
fn config_with_socket_in(tmp: &Path, dir: &Path) -> std::path::PathBuf {
    let config = tmp.join("toopherd.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{}\"\nstate_dir = \"{}\"\nbackend = \"local\"\n",
            dir.join("toopherd.sock").display(),
            tmp.join("state").display()
        ),
    )
    .unwrap();
    config
}

/// Runs toopherd expecting it to refuse to start; one that starts anyway is killed
/// after 15 s (and then fails the caller's assertions) instead of hanging the test.
fn run_bounded(config: &Path) -> std::process::Output {
    let mut child = Command::new(artifact("toopherd"))
        .args(["--log", "stderr", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Not yet reaped, so the pid is still our child's.
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn unsafe_socket_directories_are_refused_with_a_clear_message() {
    toopher_tests::system::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let refused = |dir: &Path, why: &str| {
        let out = run_bounded(&config_with_socket_in(tmp.path(), dir));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {out:?}", dir.display());
        assert!(
            err.contains(&format!("refusing to listen in {}", dir.display())) && err.contains(why),
            "{}: {err}",
            dir.display()
        );
        assert!(!dir.join("toopherd.sock").exists());
    };
    for (name, mode) in [("group", 0o775), ("world", 0o777), ("sticky", 0o1777)] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        refused(&dir, "writable by group or others");
    }
    // A directory that belongs to someone else.
    let owned = tmp.path().join("owned");
    std::fs::create_dir(&owned).unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&owned, Some(nobody_uid()), Some(nobody_uid())).unwrap();
    refused(&owned, "owned by uid 65534");
    // A symlink planted by someone else, even to a good directory.
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).unwrap();
    let planted = tmp.path().join("planted");
    std::os::unix::fs::symlink(&good, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(nobody_uid()), Some(nobody_uid())).unwrap();
    refused(&planted, "symbolic link owned by uid 65534");
    assert!(!good.join("toopherd.sock").exists());
}

#[test]
fn a_socket_directory_linked_by_root_is_accepted() {
    toopher_tests::system::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let config = config_with_socket_in(tmp.path(), &link);
    let mut child = Command::new(artifact("toopherd"))
        .args(["--log", "stderr", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while UnixStream::connect(link.join("toopherd.sock")).is_err() {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("toopherd did not listen: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(!good.join("toopherd.sock").exists());
}

#[test]
fn a_client_stalling_in_the_middle_of_a_later_frame_is_dropped() {
    // After a first request, the wait for the next one is long (a person types); a
    // frame once begun must still complete within toopherd's frame timeout (10 s).
    let d = Toopherd::start();
    let mut s = UnixStream::connect(&d.socket).unwrap();
    toopher_ipc::write_frame(
        &mut s,
        &AdminRequest::Status {
            user: "daemon".into(),
        },
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = read_frame(&mut s).unwrap();
    assert!(matches!(
        decode::<AdminResponse>(&body),
        Ok(AdminResponse::Status(_))
    ));
    s.write_all(&[0, 0]).unwrap();
    assert!(
        closed(&mut s),
        "a half-sent length prefix held the connection"
    );
    let mut s = UnixStream::connect(&d.socket).unwrap();
    toopher_ipc::write_frame(
        &mut s,
        &AdminRequest::Status {
            user: "daemon".into(),
        },
    )
    .unwrap();
    read_frame(&mut s).unwrap();
    s.write_all(&[0, 0, 0, 100, b'{']).unwrap();
    assert!(closed(&mut s), "a half-sent body held the connection");
    assert!(
        d.log()
            .contains("dropped a connection stalled in the middle of a frame"),
        "{}",
        d.log()
    );
}

/// Whether uid 65534 can open `path` for reading (through setpriv and a shell
/// redirection: only the open is tested, /proc/PID/mem cannot be read at offset 0).
fn nobody_can_read(path: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", ": < \"$1\"", "sh"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("setpriv")
        .success()
}

#[test]
fn toopherd_is_not_dumpable_even_by_its_own_uid() {
    toopher_tests::system::require_root();
    // toopherd as nobody, with its own state directory and socket.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(tmp.path(), Some(nobody_uid()), Some(nobody_uid())).unwrap();
    let config = config_with_socket_in(tmp.path(), &tmp.path().join("run"));
    std::os::unix::fs::chown(&config, Some(nobody_uid()), Some(nobody_uid())).unwrap();
    let spawn_as_nobody = |program: &Path, args: &[&std::ffi::OsStr]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("setpriv")
    };
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut daemon = Killed(spawn_as_nobody(
        &artifact("toopherd"),
        &[
            "--log".as_ref(),
            "stderr".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    ));
    let socket = tmp.path().join("run/toopherd.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while UnixStream::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline && daemon.0.try_wait().unwrap().is_none(),
            "toopherd as nobody did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The method works: an ordinary process of nobody's is readable by nobody.
    let control = Killed(spawn_as_nobody(Path::new("sleep"), &["60".as_ref()]));
    let control_proc = Path::new("/proc").join(control.0.id().to_string());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        nobody_can_read(&control_proc.join("environ")),
        "control: environ"
    );
    assert!(nobody_can_read(&control_proc.join("mem")), "control: mem");
    assert_eq!(
        std::fs::metadata(&control_proc).unwrap().uid(),
        nobody_uid()
    );

    let proc_dir = Path::new("/proc").join(daemon.0.id().to_string());
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "toopherd is not running as nobody: {status}"
    );
    assert!(
        !nobody_can_read(&proc_dir.join("environ")),
        "environ readable by its own uid"
    );
    assert!(
        !nobody_can_read(&proc_dir.join("mem")),
        "mem readable by its own uid"
    );
    assert_eq!(
        std::fs::metadata(proc_dir.join("environ")).unwrap().uid(),
        0,
        "the files of a non-dumpable process in /proc/PID belong to root"
    );
    // And no core file: its core size limit is 0.
    let limits = std::fs::read_to_string(proc_dir.join("limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    drop(control);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    assert!(daemon.0.wait().unwrap().success());
}

#[test]
fn the_systemd_unit_forbids_core_files() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/toopherd.service"),
    )
    .unwrap();
    let service = unit
        .split("[Service]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [Service] section");
    assert!(
        service.lines().any(|l| l.trim() == "LimitCORE=0"),
        "no LimitCORE=0 in [Service]"
    );
}

#[test]
fn enroll_json_has_everything_a_script_needs() {
    let d = Toopherd::start();
    let u = d.enroll("daemon");
    let j = &u.json;
    assert_eq!(j["user"], "daemon");
    assert_eq!(u.secret.len(), 32, "160-bit base32 secret");
    let uri = j["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={}", u.secret)),
        "{uri}"
    );
    assert!(
        uri.contains("digits=6") && uri.contains("period=30") && uri.contains("algorithm=SHA1")
    );
    let png = j["qr_png_base64"].as_str().unwrap();
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(png.as_bytes())?;
            c.wait_with_output()
        });
    assert!(out.unwrap().stdout.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(j["recovery_codes"].as_array().unwrap().len(), 10);
    assert!(j["expires_at"].as_u64().unwrap() > otp::now());
    // Status after activation.
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["status", "daemon", "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "active");
    assert_eq!(st["recovery_codes_left"], 10);
    // Nothing secret reached the log.
    assert!(!d.log().contains(&u.secret));
}

#[test]
fn interactive_enroll_shows_the_qr_code_and_activates_with_the_first_code() {
    let d = Toopherd::start();
    let mut child = Command::new(artifact("toopherctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["enroll", "bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Read until the prompt, take the secret from the output, answer with a wrong then the right code.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("to activate") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "toopherctl ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.contains("\u{2580}"), "no QR code drawn");
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("Key, to type into the app by hand: "))
        .unwrap()
        .trim()
        .to_string();
    assert!(text.contains("Recovery codes"));
    let code = otp::totp_at(&secret, otp::now());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", otp::wrong_code(&secret)).unwrap();
    writeln!(stdin, "{code}").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(
        rest.contains("bin: two-factor authentication is active."),
        "{rest}"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["status", "bin", "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "active");
}

#[test]
fn enroll_left_unanswered_stays_pending() {
    let d = Toopherd::start();
    let out = Command::new(artifact("toopherctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["enroll", "sys"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stays pending"));
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["status", "sys", "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "pending");
}

#[test]
fn enrolment_rules_and_removal() {
    let d = Toopherd::start();
    d.enroll("daemon");
    let again = d.ctl(&["enroll", "daemon", "--json"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has an active enrolment"));
    let forced = d.ctl(&["enroll", "daemon", "--json", "--force"]);
    assert!(forced.status.success());
    let unknown = d.ctl(&["enroll", "no-such-user-here", "--json"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such user"));
    let rm = d.ctl(&["remove", "daemon"]);
    assert!(rm.status.success());
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["status", "daemon", "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "none");
    let t = pam::login(&Stack::toopher(&d.socket, ""), "daemon", &[], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR);
}

#[test]
fn toopherctl_says_when_toopherd_is_down() {
    let out = ctl_as(
        std::path::Path::new("/nonexistent/toopherd.sock"),
        &["status", "root"],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach toopherd"));
}

#[test]
fn a_login_in_progress_survives_shutdown_requests_finishing() {
    // SIGTERM while a login waits for a person: toopherd closes idle connections and
    // exits cleanly; the module, mid-login, denies (it never falls back to failmode).
    let mut d = Toopherd::start();
    let mut u = d.enroll("daemon");
    let socket = d.socket.clone();
    let code = u.next_code();
    let mut c = Client::connect(&socket, Timeouts::default()).unwrap();
    let r = c.call(&LoginRequest::Begin(LoginContext {
        user: "daemon".into(),
        service: "t".into(),
        rhost: None,
        tty: None,
        ruser: None,
        autopush: false,
        notify: false,
    }));
    assert!(matches!(r, Ok(LoginResponse::Challenge { .. })));
    assert!(d.stop(), "toopherd did not exit cleanly");
    assert!(
        c.call(&LoginRequest::Otp {
            code: toopher_ipc::Secret::new(code)
        })
        .is_err()
    );
}

#[test]
fn the_shipped_default_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/toopherd.toml");
    let out = Command::new(artifact("toopherd"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
