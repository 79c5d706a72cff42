//! The guessing budget of someone who has the password: escalating rate-limit locks,
//! lifted by a recovery code or an administrator, kept across restarts; and the notice
//! of failures shown at the next successful login, through the real libpam, sshd and
//! sudo. Needs root.

use std::time::Duration;
use toopher_tests::daemon::{Toopherd, ctl_as};
use toopher_tests::otp;
use toopher_tests::pam::{self, Stack};
use toopher_tests::system::{self, PamDir, Sshd, SudoersDropIn, TestUser, sudo};

/// Two failures lock; the first lock lasts 10 s, so a test sees two locks in seconds.
const SHORT: &str = "[rate_limit]\nmax_failures = 2\nwindow = 10\n";
const LOCKED: &str = "Too many failed attempts";
const WARNING: &str = "WARNING: ";
const ACK: &str = "Press Enter to continue: ";

fn status(d: &Toopherd, user: &str) -> serde_json::Value {
    let out = d.ctl(&["status", user, "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("status --json")
}

/// Two wrong codes in one login: with [`SHORT`], a full set.
fn two_failures(d: &Toopherd, stack: &Stack, user: &str, secret: &str) {
    let wrong = otp::wrong_code(secret);
    let t = pam::login(stack, user, &[&wrong, &wrong], Some("192.0.2.66"));
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:?}\n{}", d.log());
}

fn wait_until(t: u64) {
    while otp::now() <= t {
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn each_full_set_of_failures_locks_twice_as_long_and_a_right_code_is_refused_meanwhile() {
    system::require_root();
    let d = Toopherd::start_with(SHORT);
    let mut u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "prompts=2");

    let before = otp::now();
    two_failures(&d, &stack, "daemon", &u.secret);
    let st = status(&d, "daemon");
    let until = st["locked_until"].as_u64().expect("locked");
    assert!(
        until >= before + 10 && until <= otp::now() + 10,
        "the first lock lasts the window: {st}"
    );
    assert_eq!(st["lock_level"], 1);

    // Locked: the right code is refused, at the recovery-code prompt.
    let right = u.next_code();
    let t = pam::login(&stack, "daemon", &[&right], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}\n{}", d.log());
    assert_eq!(t.prompts(), 1, "{t:?}");
    assert!(t.messages[0].1.ends_with("Recovery code: "), "{t:?}");
    assert!(t.shown(LOCKED), "{t:?}");
    assert!(d.log().contains("outcome=refused reason=rate_limited"));

    // After the lock, the next full set locks for twice the window.
    wait_until(until);
    let before = otp::now();
    two_failures(&d, &stack, "daemon", &u.secret);
    let st = status(&d, "daemon");
    let until = st["locked_until"].as_u64().expect("locked again");
    assert!(
        until >= before + 20 && until <= otp::now() + 20,
        "the second lock lasts twice the window: {st}"
    );
    assert_eq!(st["lock_level"], 2);
    let right = u.next_code();
    let t = pam::login(&stack, "daemon", &[&right], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
}

#[test]
fn a_recovery_code_lifts_the_lock_and_its_escalation() {
    system::require_root();
    let d = Toopherd::start_with(SHORT);
    let mut u = d.enroll("bin");
    let stack = Stack::toopher(&d.socket, "prompts=2");
    two_failures(&d, &stack, "bin", &u.secret);
    assert_eq!(status(&d, "bin")["lock_level"], 1);

    let recovery = u.recovery_codes[0].clone();
    let t = pam::login(&stack, "bin", &[&recovery, ""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert!(
        d.log().contains("outcome=granted method=recovery_code"),
        "{}",
        d.log()
    );
    let st = status(&d, "bin");
    assert!(st["locked_until"].is_null(), "{st}");
    assert_eq!(st["lock_level"], 0);
    let code = u.next_code();
    assert_eq!(
        pam::login(&stack, "bin", &[&code], None).auth,
        pam::PAM_SUCCESS
    );
}

#[test]
fn root_and_the_admin_group_can_unlock_no_one_else_can() {
    system::require_root();
    let admin = TestUser::create("ba");
    let other = TestUser::create("bb");
    // useradd made a group named after each account; the first one's is the admin group.
    let d = Toopherd::start_with(&format!("admin_group = \"{}\"\n{SHORT}", admin.name));
    let mut u = d.enroll(&other.name);
    let stack = Stack::toopher(&d.socket, "prompts=2");

    two_failures(&d, &stack, &other.name, &u.secret);
    assert!(status(&d, &other.name)["locked_until"].is_u64());
    // Neither the locked user (who may be the one guessing) nor an unprivileged uid.
    for uid in [system::uid_of(&other.name), 65534] {
        let out = ctl_as(&d.socket, &["unlock", &other.name], Some(uid));
        assert_eq!(out.status.code(), Some(1), "uid {uid}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("needs root"),
            "{out:?}"
        );
    }
    assert!(status(&d, &other.name)["locked_until"].is_u64());
    assert!(
        d.log()
            .contains(&format!("refused request=unlock user={}", other.name)),
        "{}",
        d.log()
    );

    let out = ctl_as(
        &d.socket,
        &["unlock", &other.name],
        Some(system::uid_of(&admin.name)),
    );
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let st = status(&d, &other.name);
    assert!(st["locked_until"].is_null(), "{st}");
    assert_eq!(st["lock_level"], 0);
    let code = u.next_code();
    let t = pam::login(&stack, &other.name, &[&code, ""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");

    // Root can, too.
    two_failures(&d, &stack, &other.name, &u.secret);
    assert!(status(&d, &other.name)["locked_until"].is_u64());
    let out = d.ctl(&["unlock", &other.name]);
    assert!(out.status.success(), "{out:?}");
    assert!(status(&d, &other.name)["locked_until"].is_null());
    assert!(
        d.log()
            .contains(&format!("admin request=unlock user={}", other.name)),
        "{}",
        d.log()
    );
}

#[test]
fn the_next_success_tells_how_many_failures_from_where_once() {
    system::require_root();
    let d = Toopherd::start();
    let mut u = d.enroll("sys");
    let wrong = otp::wrong_code(&u.secret);
    let one = Stack::toopher(&d.socket, "prompts=1");
    let two = Stack::toopher(&d.socket, "prompts=2");
    assert_eq!(
        pam::login(&one, "sys", &[&wrong], Some("192.0.2.7")).auth,
        pam::PAM_MAXTRIES
    );
    assert_eq!(
        pam::login(&two, "sys", &[&wrong, &wrong], Some("198.51.100.4")).auth,
        pam::PAM_MAXTRIES
    );
    // The person mistypes once, then gets it right: their own mistake is not news.
    let right = u.next_code();
    let t = pam::login(&two, "sys", &[&wrong, &right, ""], Some("203.0.113.9"));
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    let info: Vec<&String> = t
        .messages
        .iter()
        .filter(|(s, _)| *s == pam::TEXT_INFO)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(info.len(), 1, "{t:?}");
    assert!(
        info[0].starts_with(
            "WARNING: 3 failed second-factor attempts since your last login, \
             from 198.51.100.4, 192.0.2.7, the last at "
        ),
        "{t:?}"
    );
    assert!(!info[0].contains("203.0.113.9"), "{t:?}");
    assert_eq!(
        t.messages.last(),
        Some(&(pam::PROMPT_ECHO_ON, ACK.to_string())),
        "{t:?}"
    );
    assert!(d.log().contains("told_failures=3"), "{}", d.log());

    // Told once.
    let right = u.next_code();
    let t = pam::login(&one, "sys", &[&right], Some("203.0.113.9"));
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert!(!t.shown(WARNING), "{t:?}");
    assert_eq!(t.prompts(), 1, "{t:?}");
}

#[test]
fn lock_level_and_untold_failures_survive_a_restart() {
    system::require_root();
    let mut d = Toopherd::start_with(SHORT);
    let mut u = d.enroll("games");
    let stack = Stack::toopher(&d.socket, "prompts=2");
    two_failures(&d, &stack, "games", &u.secret);
    let before = status(&d, "games");
    assert!(d.stop(), "toopherd did not stop cleanly");
    d.spawn();
    let after = status(&d, "games");
    assert_eq!(after["locked_until"], before["locked_until"], "{after}");
    assert_eq!(after["lock_level"], 1);
    let right = u.next_code();
    assert_eq!(
        pam::login(&stack, "games", &[&right], None).auth,
        pam::PAM_AUTH_ERR
    );
    // The next lock still escalates from the one before the restart.
    wait_until(after["locked_until"].as_u64().expect("locked"));
    let t0 = otp::now();
    two_failures(&d, &stack, "games", &u.secret);
    let st = status(&d, "games");
    assert!(
        st["locked_until"].as_u64().expect("locked") >= t0 + 20,
        "{st}"
    );
    // And the failures are still told, after a restart.
    d.stop();
    d.spawn();
    assert!(d.ctl(&["unlock", "games"]).status.success());
    let right = u.next_code();
    let t = pam::login(&stack, "games", &[&right, ""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert!(
        t.shown("WARNING: 4 failed second-factor attempts since your last login, from 192.0.2.66"),
        "{t:?}"
    );
}

#[test]
fn the_toopher_backend_follows_the_same_rule() {
    system::require_root();
    let sim = toopher_tests::sim::Sim::start();
    // A real account: toopherd refuses names neither it nor the system knows.
    let tina_account = TestUser::create("bk");
    let tina = tina_account.name.as_str();
    let u = sim.paired(tina);
    let secret = u.totp_secret.expect("a TOTP secret");
    let d = sim.toopherd("", SHORT);
    let stack = Stack::toopher(&d.socket, "prompts=2");
    let wrong = otp::wrong_code(&secret);
    let t = pam::login(&stack, tina, &[&wrong, &wrong], Some("192.0.2.5"));
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:?}\n{}", d.log());
    // Locked: refused before any prompt (no recovery codes with Toopher).
    let t = pam::login(&stack, tina, &[""], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    assert_eq!(t.prompts(), 0, "{t:?}");
    assert!(t.shown(LOCKED), "{t:?}");
    assert_eq!(status(&d, tina)["lock_level"], 1);
    assert!(d.ctl(&["unlock", tina]).status.success());
    let code = otp::totp_at(&secret, otp::now());
    let t = pam::login(&stack, tina, &[&code, ""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert!(
        t.shown("WARNING: 2 failed second-factor attempts since your last login, from 192.0.2.5"),
        "{t:?}"
    );
}

#[test]
fn the_notice_reaches_the_ssh_client() {
    let d = Toopherd::start();
    let user = TestUser::create("bs");
    let sshd = Sshd::start(PamDir::password_then_toopher(
        "sshd",
        &d.socket,
        "prompts=1",
    ));
    let mut e = d.enroll(&user.name);
    let wrong = otp::wrong_code(&e.secret);
    let login = sshd.login(&user.name, &[&user.password, &wrong]);
    assert!(!login.ok, "{login:?}");

    let code = e.next_code();
    let login = sshd.login(&user.name, &[&user.password, &code, ""]);
    assert!(login.ok, "{login:?}\n{}\n{}", sshd.log(), d.log());
    // What the person's ssh client showed: the warning, on the prompt that waits for Enter.
    assert_eq!(login.prompts.len(), 4, "{login:?}");
    let shown = login.prompts.join("\n");
    assert!(
        shown.contains(
            "WARNING: 1 failed second-factor attempt since your last login, from 127.0.0.1"
        ),
        "{login:?}"
    );
    assert!(login.prompts[3].ends_with(ACK), "{login:?}");

    let code = e.next_code();
    let login = sshd.login(&user.name, &[&user.password, &code]);
    assert!(login.ok, "{login:?}");
    assert_eq!(login.prompts.len(), 2, "told once: {login:?}");
    assert!(!login.prompts.join("\n").contains(WARNING), "{login:?}");
}

#[test]
fn a_silent_sudo_shows_nothing_and_keeps_the_notice_for_a_login_that_can() {
    const SERVICE: &str = "toopher-e2e-budget";
    let d = Toopherd::start();
    let user = TestUser::create("bt");
    let _dropin = SudoersDropIn::install(&user.name, SERVICE);
    let pam = PamDir::password_then_toopher(SERVICE, &d.socket, "prompts=1");
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let mut e = d.enroll(&user.name);
    let wrong = otp::wrong_code(&e.secret);
    let failed = pam::login(&stack, &user.name, &[&wrong], Some("192.0.2.44"));
    assert_eq!(failed.auth, pam::PAM_MAXTRIES);

    // sudo (1.9.13) always authenticates with PAM_SILENT: no line can be shown, so the
    // module says so in Begin and toopherd keeps the failures untold.
    let code = e.next_code();
    let run = sudo(&pam, &user.name, &[&user.password, &code], "id -u");
    assert!(run.ok, "{run:?}\n{}", d.log());
    assert_eq!(run.stdout.trim(), "0");
    assert!(
        !run.stderr.contains(WARNING) && !run.stderr.contains(ACK),
        "{run:?}"
    );
    assert!(!d.log().contains("told_failures"), "{}", d.log());

    // The next login that can show it does.
    let code = e.next_code();
    let t = pam::login(&stack, &user.name, &[&code, ""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert!(
        t.shown("WARNING: 1 failed second-factor attempt since your last login, from 192.0.2.44"),
        "{t:?}"
    );
}

/// Runs `pam-script` as `user`'s own uid (a user's process running the module, e.g. a
/// screen locker) with `rhost` and the answers; returns its output.
fn login_as_user_process(stack: &Stack, user: &str, rhost: &str, answers: &[&str]) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(stack.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .args(["--clear-groups", "--"])
        .arg(toopher_tests::artifact("pam-script"))
        .args(["--confdir", stack.dir.path().to_str().unwrap()])
        .args([
            "--service",
            &stack.service,
            "--user",
            user,
            "--rhost",
            rhost,
        ]);
    for a in answers {
        cmd.args(["--answer", a]);
    }
    let out = cmd.output().expect("pam-script");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_users_own_process_can_neither_invent_remote_hosts_nor_use_up_the_notice() {
    system::require_root();
    let d = Toopherd::start();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "prompts=1");
    // daemon's own process claims a remote host and types a wrong code...
    let wrong = otp::wrong_code(&u.secret);
    let out = login_as_user_process(&stack, "daemon", "203.0.113.99", &[&wrong]);
    assert!(
        d.log().contains("outcome=denied reason=wrong_code by=uid="),
        "a user's own login does not say so: {out}\n{}",
        d.log()
    );
    // ...then a right one: granted, but the notice is not used up by it.
    let right = u.next_code();
    let out = login_as_user_process(&stack, "daemon", "203.0.113.99", &[&right, ""]);
    assert!(
        !out.contains(WARNING),
        "a user's process was shown the notice: {out}"
    );
    assert!(d.log().contains("outcome=granted"), "{out}\n{}", d.log());
    // The real login (root, as in sshd) shows it, without the invented host.
    let right = u.next_code();
    let t = pam::login(&stack, "daemon", &[&right, ""], Some("192.0.2.10"));
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert!(t.shown(WARNING), "{t:?}");
    let shown: String = t.messages.iter().map(|m| m.1.clone()).collect();
    assert!(
        !shown.contains("203.0.113.99"),
        "an invented host was told: {shown}"
    );
}
