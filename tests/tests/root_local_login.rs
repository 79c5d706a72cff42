//! Needs root (toopherd lets only root act for other accounts). Logins through the real libpam and the built module against a real toopherd with the
//! local backend; codes come from oathtool.

use toopher_tests::daemon::Toopherd;
use toopher_tests::otp;
use toopher_tests::pam::{self, Stack};

#[test]
fn correct_code_logs_in_and_the_log_names_the_login_but_not_the_code() {
    let d = Toopherd::start();
    let mut u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "");
    let code = u.next_code();
    let t = pam::login(&stack, "daemon", &[&code], Some("192.0.2.10"));
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert_eq!(t.prompts(), 1);
    assert_eq!(
        t.messages[0],
        (pam::PROMPT_ECHO_OFF, "One-time password: ".into())
    );
    assert_eq!(
        t.setcred,
        Some(pam::PAM_SUCCESS),
        "setcred must stack cleanly"
    );
    assert_eq!(
        t.acct,
        Some(pam::PAM_SUCCESS),
        "acct_mgmt must not change the account stack"
    );
    let log = d.log();
    assert!(
        log.contains("auth user=daemon service=toopher-test rhost=192.0.2.10 tty=- outcome=granted method=otp"),
        "{log}"
    );
    assert!(!log.contains(&code), "a code reached the log:\n{log}");
}

#[test]
fn wrong_code_is_refused_and_prompts_bound_the_tries() {
    let d = Toopherd::start();
    let u = d.enroll("bin");
    let wrong = otp::wrong_code(&u.secret);
    let stack = Stack::toopher(&d.socket, "prompts=2");
    let t = pam::login(&stack, "bin", &[&wrong, &wrong], None);
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:?}");
    assert_eq!(t.prompts(), 2);
    assert!(t.shown("Incorrect code"));
    assert_eq!(
        d.log().matches("outcome=denied reason=wrong_code").count(),
        2,
        "{}",
        d.log()
    );
}

#[test]
fn wrong_then_right_code_within_prompts() {
    let d = Toopherd::start();
    let mut u = d.enroll("sys");
    let wrong = otp::wrong_code(&u.secret);
    let stack = Stack::toopher(&d.socket, "");
    let right = u.next_code();
    let t = pam::login(&stack, "sys", &[&wrong, &right], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_eq!(t.prompts(), 2);
}

#[test]
fn a_code_is_accepted_once() {
    let d = Toopherd::start();
    let mut u = d.enroll("games");
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let code = u.next_code();
    assert_eq!(
        pam::login(&stack, "games", &[&code], None).auth,
        pam::PAM_SUCCESS
    );
    let again = pam::login(&stack, "games", &[&code], None);
    assert_eq!(again.auth, pam::PAM_MAXTRIES, "{again:?}");
    assert!(
        d.log().contains("outcome=denied reason=replayed_code"),
        "{}",
        d.log()
    );
    // The activation code was used too.
    let activation = otp::totp_step(&u.secret, u.last_step - 1);
    let t = pam::login(&stack, "games", &[&activation], None);
    assert_ne!(t.auth, pam::PAM_SUCCESS);
}

#[test]
fn a_code_from_two_steps_ago_is_refused() {
    let d = Toopherd::start();
    let u = d.enroll("man");
    let old = otp::totp_at(&u.secret, otp::now() - 2 * otp::STEP);
    let current: Vec<String> = (0..=2)
        .map(|k| otp::totp_step(&u.secret, otp::current_step() + k - 1))
        .collect();
    assert!(!current.contains(&old), "code collision; rerun");
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let t = pam::login(&stack, "man", &[&old], None);
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:?}");
    assert!(d.log().contains("reason=wrong_code"), "{}", d.log());
}

#[test]
fn a_recovery_code_works_once() {
    let d = Toopherd::start();
    let u = d.enroll("lp");
    assert_eq!(u.recovery_codes.len(), 10);
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let code = u.recovery_codes[0].clone();
    let t = pam::login(&stack, "lp", &[&code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert!(d.log().contains("outcome=granted method=recovery_code"));
    let again = pam::login(&stack, "lp", &[&code], None);
    assert_eq!(again.auth, pam::PAM_MAXTRIES, "{again:?}");
    assert!(d.log().contains("reason=used_recovery_code"), "{}", d.log());
    // Another code still works, typed in upper case without dashes.
    let other = u.recovery_codes[1].replace('-', "").to_uppercase();
    assert_eq!(
        pam::login(&stack, "lp", &[&other], None).auth,
        pam::PAM_SUCCESS
    );
    let status = d.ctl(&["status", "lp", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(st["recovery_codes_left"], 8);
    let log = d.log();
    for c in &u.recovery_codes {
        assert!(!log.contains(c.as_str()));
    }
}

#[test]
fn five_failures_lock_the_user_even_against_the_right_code() {
    let d = Toopherd::start();
    let mut u = d.enroll("mail");
    let wrong = otp::wrong_code(&u.secret);
    let stack = Stack::toopher(&d.socket, "prompts=5");
    let t = pam::login(
        &stack,
        "mail",
        &[&wrong, &wrong, &wrong, &wrong, &wrong],
        None,
    );
    assert_eq!(t.auth, pam::PAM_MAXTRIES);
    let right = u.next_code();
    let t = pam::login(&stack, "mail", &[&right], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    // A locked user is asked for a recovery code only (it would lift the lock); the
    // right one-time password typed there is refused without being looked at.
    assert_eq!(t.prompts(), 1, "{t:?}");
    assert!(t.messages[0].1.ends_with("Recovery code: "), "{t:?}");
    assert!(t.shown("Too many failed attempts"));
    let log = d.log();
    assert!(
        log.contains("user=mail") && log.contains("outcome=refused reason=rate_limited"),
        "{log}"
    );
    // Another user is not affected.
    let mut other = d.enroll("news");
    let code = other.next_code();
    assert_eq!(
        pam::login(&stack, "news", &[&code], None).auth,
        pam::PAM_SUCCESS
    );
    // The lock shows in status.
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["status", "mail", "--json"]).stdout).unwrap();
    assert!(st["locked_until"].as_u64().unwrap() > otp::now());
}

#[test]
fn the_rate_limit_also_stops_a_login_in_progress() {
    let d = Toopherd::start_with("[rate_limit]\nmax_failures = 2\nwindow = 60\n");
    let mut u = d.enroll("uucp");
    let wrong = otp::wrong_code(&u.secret);
    let right = u.next_code();
    let stack = Stack::toopher(&d.socket, "prompts=3");
    let t = pam::login(&stack, "uucp", &[&wrong, &wrong, &right], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    assert!(t.shown("Too many failed attempts"));
}

#[test]
fn not_enrolled_user_is_denied_when_required() {
    let d = Toopherd::start();
    let stack = Stack::toopher(&d.socket, "");
    let t = pam::login(&stack, "proxy", &[], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    assert_eq!(t.prompts(), 0);
    assert!(t.shown("not enrolled"));
    assert!(
        d.log().contains("user=proxy") && d.log().contains("outcome=denied reason=not_enrolled")
    );
}

#[test]
fn not_enrolled_user_passes_when_available_but_enrolled_users_still_need_a_code() {
    let d = Toopherd::start_with("availability = \"available\"\n");
    let stack = Stack::toopher(&d.socket, "");
    let t = pam::login(&stack, "proxy", &[], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_eq!(t.prompts(), 0);
    assert!(d.log().contains("outcome=allowed reason=not_enrolled"));
    let u = d.enroll("daemon");
    let t = pam::login(&stack, "daemon", &[&otp::wrong_code(&u.secret)], None);
    assert_ne!(t.auth, pam::PAM_SUCCESS);
}

#[test]
fn a_pending_enrolment_is_not_a_second_factor() {
    let d = Toopherd::start();
    let out = d.ctl(&["enroll", "daemon", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = otp::totp_at(json["secret"].as_str().unwrap(), otp::now());
    let stack = Stack::toopher(&d.socket, "");
    let t = pam::login(&stack, "daemon", &[&code], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    assert_eq!(t.prompts(), 0);
}

#[test]
fn pending_enrolments_expire() {
    let d = Toopherd::start_with("enrollment_ttl = 60\n");
    let out = d.ctl(&["enroll", "bin", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expires = json["expires_at"].as_u64().unwrap();
    let now = otp::now();
    assert!(
        (now + 59..=now + 60).contains(&expires),
        "expires_at {expires} now {now}"
    );
}

#[test]
fn toopherd_down_secure_denies_safe_allows() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.sock");
    let t = pam::login(&Stack::toopher(&missing, ""), "daemon", &[], None);
    assert_eq!(t.auth, pam::PAM_AUTHINFO_UNAVAIL, "{t:?}");
    let t = pam::login(
        &Stack::toopher(&missing, "failmode=secure"),
        "daemon",
        &[],
        None,
    );
    assert_eq!(t.auth, pam::PAM_AUTHINFO_UNAVAIL);
    let t = pam::login(
        &Stack::toopher(&missing, "failmode=safe"),
        "daemon",
        &[],
        None,
    );
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_eq!(t.prompts(), 0);

    // A stale socket left by a stopped toopherd is the same case.
    let mut d = Toopherd::start();
    d.enroll("daemon");
    assert!(d.stop(), "toopherd did not stop cleanly on SIGTERM");
    let stale = d.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for (socket, _) in [(&stale, ()), (&d.socket, ())] {
        let t = pam::login(&Stack::toopher(socket, ""), "daemon", &[], None);
        assert_eq!(t.auth, pam::PAM_AUTHINFO_UNAVAIL);
        let t = pam::login(
            &Stack::toopher(socket, "failmode=safe"),
            "daemon",
            &[],
            None,
        );
        assert_eq!(t.auth, pam::PAM_SUCCESS);
    }
}

/// A socket that takes no more connections (its listen queue full, as a local user can
/// make it) is toopherd busy, not toopherd down: denied under `failmode = safe` too.
#[test]
fn a_full_listen_queue_is_busy_not_failmode_safe() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("full.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    // SAFETY: sockaddr_un is plain data; all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
        *d = *s as libc::c_char;
    }
    // Never accepted: connect until the queue refuses with EAGAIN.
    let mut held = Vec::new();
    loop {
        // SAFETY: plain syscalls; the descriptor is owned at once and `addr` outlives
        // the call.
        let (fd, rc) = unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            assert!(fd >= 0, "socket");
            let rc = libc::connect(
                fd,
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            );
            (OwnedFd::from_raw_fd(fd), rc)
        };
        if rc != 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            break;
        }
        held.push(fd);
        assert!(held.len() < 100_000, "the listen queue never filled");
    }
    let t = pam::login(&Stack::toopher(&path, "failmode=safe"), "daemon", &[], None);
    assert_eq!(t.auth, pam::PAM_AUTHINFO_UNAVAIL, "{t:?}");
    assert_eq!(t.prompts(), 0);
}

#[test]
fn failmode_safe_does_not_let_a_wrong_code_through() {
    let d = Toopherd::start();
    let u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "failmode=safe prompts=1");
    let t = pam::login(&stack, "daemon", &[&otp::wrong_code(&u.secret)], None);
    assert_eq!(t.auth, pam::PAM_MAXTRIES);
    let t = pam::login(&stack, "proxy", &[], None);
    assert_eq!(
        t.auth,
        pam::PAM_AUTH_ERR,
        "not enrolled is a policy denial, not unreachable"
    );
}

#[test]
fn invalid_module_options_refuse_to_run() {
    let d = Toopherd::start();
    for opts in ["failmode=open", "prompts=0", "nullok"] {
        let t = pam::login(&Stack::toopher(&d.socket, opts), "daemon", &[], None);
        assert_eq!(t.auth, pam::PAM_SERVICE_ERR, "{opts}: {t:?}");
    }
}

#[test]
fn the_person_walking_away_is_a_conversation_error() {
    let d = Toopherd::start();
    d.enroll("daemon");
    let t = pam::login(&Stack::toopher(&d.socket, ""), "daemon", &[], None);
    assert_eq!(t.auth, pam::PAM_CONV_ERR, "{t:?}");
}
