//! Enrolment and account management through the real module, libpam, toopherd and
//! toopherctl: two-way registration (2000, 4001, 4002, 5000, another user's approval),
//! enrolment inside the login, recovery-code regeneration, suspension, the admin group,
//! and every refusal of a non-admin caller. Needs root.

use std::process::Command;
use toopher_tests::daemon::{Toopherd, ctl_as};
use toopher_tests::otp;
use toopher_tests::pam::{self, Stack};
use toopher_tests::system::{TestUser, require_root, uid_of};

fn registration_code(prompt: &str) -> String {
    let at = prompt
        .find("Registration code: ")
        .expect("a registration code")
        + "Registration code: ".len();
    prompt[at..at + 6].to_string()
}

fn key(prompt: &str) -> String {
    prompt
        .lines()
        .find_map(|l| l.strip_prefix("Key: "))
        .expect("the key")
        .trim()
        .to_string()
}

/// `toopherctl registration approve` as root; the response code it prints.
fn approve(d: &Toopherd, user: &str, code: &str) -> String {
    let out = d.ctl(&["registration", "approve", user, code]);
    assert!(
        out.status.success(),
        "approve failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split("Response code for ").nth(1))
        .and_then(|l| l.split(": ").nth(1))
        .expect("a response code")
        .trim()
        .to_string()
}

fn other_code(code: &str) -> String {
    if code == "000000" {
        "000001".into()
    } else {
        "000000".into()
    }
}

fn status(d: &Toopherd, user: &str) -> serde_json::Value {
    serde_json::from_slice(&d.ctl(&["status", user, "--json"]).stdout).expect("status json")
}

#[test]
fn two_way_registration_4002_then_4001_then_2000_and_enrolment_in_the_login() {
    require_root();
    let d = Toopherd::start_with("enroll = \"two-way\"\n");
    let stack = Stack::toopher(&d.socket, "prompts=5");
    let mut prompts = Vec::new();
    let mut response = String::new();
    let mut secret = String::new();
    let t = pam::login_with(&stack, "daemon", Some("198.51.100.4"), &mut |_, prompt| {
        prompts.push(prompt.to_string());
        match prompts.len() {
            // Typed before anyone approved the code: 4002.
            1 => Some("123456".into()),
            // Approved now; a typo first: 4001.
            2 => {
                response = approve(&d, "daemon", &registration_code(prompt));
                Some(other_code(&response))
            }
            3 => Some(response.clone()),
            // Enrolment inside the login: the first code from the new secret.
            4 => {
                secret = key(prompt);
                Some(otp::totp_at(&secret, otp::now()))
            }
            _ => None,
        }
    });
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:#?}\n{}", d.log());
    assert!(
        prompts[0].contains("This account has no second factor yet."),
        "{}",
        prompts[0]
    );
    assert!(prompts[0].contains("toopherctl registration approve daemon"));
    assert!(
        prompts[1].starts_with("The registration code has not been approved yet (4002)."),
        "{}",
        prompts[1]
    );
    assert!(
        prompts[2].starts_with("That response code is not right (4001)."),
        "{}",
        prompts[2]
    );
    assert!(
        prompts[3].starts_with("Registered (2000)."),
        "{}",
        prompts[3]
    );
    assert!(prompts[3].contains('\u{2588}'), "the QR code is drawn");
    assert!(prompts[3].contains("Recovery codes"));
    assert!(
        prompts[3].ends_with("Type the code your authenticator app shows to finish enrolment: ")
    );
    // Registration and response codes are shown visibly; the TOTP code is hidden.
    assert_eq!(t.messages[0].0, pam::PROMPT_ECHO_ON);
    assert_eq!(t.messages.last().unwrap().0, pam::PROMPT_ECHO_OFF);
    let log = d.log();
    for needle in [
        "status=started",
        "status=4002",
        "status=4001",
        "status=2000",
        "outcome=granted method=otp detail=enrolled_in_login",
    ] {
        assert!(log.contains(needle), "{needle} not in\n{log}");
    }
    assert!(!log.contains(&response) && !log.contains(&secret));
    // Enrolled: the next login asks for a code, and the registration is used up.
    assert_eq!(status(&d, "daemon")["state"], "active");
    let next = otp::totp_step(&secret, otp::current_step() + 1);
    let t = pam::login(&Stack::toopher(&d.socket, ""), "daemon", &[&next], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
}

#[test]
fn an_expired_registration_is_5000_and_starts_over() {
    require_root();
    let d = Toopherd::start_with("enroll = \"two-way\"\nregistration_ttl = 10\n");
    let stack = Stack::toopher(&d.socket, "prompts=3");
    let mut prompts = Vec::new();
    let mut first = String::new();
    let t = pam::login_with(&stack, "bin", None, &mut |_, prompt| {
        prompts.push(prompt.to_string());
        match prompts.len() {
            1 => {
                first = registration_code(prompt);
                let response = approve(&d, "bin", &first);
                std::thread::sleep(std::time::Duration::from_secs(11));
                Some(response)
            }
            2 => {
                // 5000: a new code replaces the old one, which can no longer be approved.
                let fresh = registration_code(prompt);
                let old = d.ctl(&["registration", "approve", "bin", &first]);
                assert_eq!(old.status.code(), Some(1));
                Some(approve(&d, "bin", &fresh))
            }
            3 => Some(otp::totp_at(&key(prompt), otp::now())),
            _ => None,
        }
    });
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:#?}\n{}", d.log());
    assert!(
        prompts[1].starts_with("The registration could not be completed (5000)"),
        "{}",
        prompts[1]
    );
    assert_ne!(registration_code(&prompts[1]), first);
    assert!(d.log().contains("status=5000"));
}

#[test]
fn an_approval_for_another_user_never_completes_a_registration() {
    require_root();
    let d = Toopherd::start_with("enroll = \"two-way\"\n");
    let stack = Stack::toopher(&d.socket, "prompts=2");
    let mut n = 0;
    let t = pam::login_with(&stack, "sys", None, &mut |_, prompt| {
        n += 1;
        if n > 2 {
            return None;
        }
        let code = registration_code(prompt);
        // The code shown to sys, approved for games: refused, nothing is approved.
        let out = d.ctl(&["registration", "approve", "games", &code]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no registration in progress"));
        Some("123456".into())
    });
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:#?}");
    assert!(t.messages.iter().any(|(_, m)| m.contains("(4002)")));
    assert!(!d.log().contains("status=2000"));
    assert_eq!(status(&d, "sys")["state"], "none");
}

#[test]
fn the_person_can_approve_their_own_registration_from_a_logged_in_session() {
    require_root();
    let d = Toopherd::start_with("enroll = \"two-way\"\n");
    std::fs::set_permissions(
        d.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let stack = Stack::toopher(&d.socket, "prompts=2");
    let mut n = 0;
    let t = pam::login_with(&stack, "man", None, &mut |_, prompt| {
        n += 1;
        match n {
            1 => {
                let code = registration_code(prompt);
                // Another account may not approve it...
                let other = ctl_as(
                    &d.socket,
                    &["registration", "approve", "man", &code],
                    Some(uid_of("lp")),
                );
                assert_eq!(other.status.code(), Some(1));
                assert!(
                    String::from_utf8_lossy(&other.stderr).contains("may only"),
                    "{other:?}"
                );
                // ...the account itself may.
                let own = ctl_as(
                    &d.socket,
                    &["registration", "approve", "man", &code],
                    Some(uid_of("man")),
                );
                assert!(own.status.success(), "{own:?}");
                let text = String::from_utf8_lossy(&own.stdout).into_owned();
                Some(
                    text.lines()
                        .next()
                        .unwrap()
                        .rsplit(": ")
                        .next()
                        .unwrap()
                        .trim()
                        .to_string(),
                )
            }
            2 => Some(otp::totp_at(&key(prompt), otp::now())),
            _ => None,
        }
    });
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:#?}\n{}", d.log());
}

#[test]
fn regenerated_recovery_codes_replace_the_old_ones_at_once() {
    require_root();
    let d = Toopherd::start();
    let u = d.enroll("daemon");
    let out = d.ctl(&["recovery-codes", "daemon", "--regenerate"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let fresh: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .collect();
    assert_eq!(fresh.len(), 10);
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let t = pam::login(&stack, "daemon", &[&u.recovery_codes[0]], None);
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "an old code still worked");
    let t = pam::login(&stack, "daemon", &[fresh[0]], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_eq!(status(&d, "daemon")["recovery_codes_left"], 9);
}

#[test]
fn a_suspended_account_is_denied_until_enabled() {
    require_root();
    let d = Toopherd::start();
    let mut u = d.enroll("daemon");
    assert!(d.ctl(&["disable", "daemon"]).status.success());
    assert_eq!(status(&d, "daemon")["enabled"], false);
    let stack = Stack::toopher(&d.socket, "");
    let t = pam::login(&stack, "daemon", &[], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    assert!(t.shown("suspended"));
    assert!(
        d.log()
            .contains("reason=user_disabled detail=suspended_by_admin")
    );
    assert!(d.ctl(&["enable", "daemon"]).status.success());
    let code = u.next_code();
    assert_eq!(
        pam::login(&stack, "daemon", &[&code], None).auth,
        pam::PAM_SUCCESS
    );
    let list = d.ctl(&["list", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|a| a["user"] == "daemon" && a["enabled"] == true)
    );
}

#[test]
fn every_administrative_command_refuses_a_non_admin_caller() {
    require_root();
    let d = Toopherd::start();
    d.enroll("daemon");
    std::fs::set_permissions(
        d.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for args in [
        vec!["list"],
        vec!["remove", "daemon"],
        vec!["reset", "daemon"],
        vec!["disable", "daemon"],
        vec!["enable", "daemon"],
        vec!["reset-link", "daemon"],
        vec!["reset-link", "daemon", "--email", "a@example.com"],
        vec!["terminals", "create", "daemon", "laptop", "t-1"],
        vec!["terminals", "show", "daemon", "t-1"],
        vec!["enroll", "daemon", "--force", "--json"],
        vec!["recovery-codes", "daemon", "--regenerate"],
        vec!["registration", "approve", "daemon", "123456"],
        vec!["pair", "daemon", "--phrase", "some words"],
        vec!["status", "daemon"],
    ] {
        let out = ctl_as(&d.socket, &args, Some(65534));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} was not refused: {out:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("administrative request")
                || err.contains("needs root")
                || err.contains("may only"),
            "{args:?}: unclear refusal {err}"
        );
    }
    assert_eq!(status(&d, "daemon")["state"], "active");
    assert_eq!(status(&d, "daemon")["enabled"], true);
}

/// A group removed on drop.
struct TestGroup(String);
impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

#[test]
fn members_of_the_admin_group_may_administer() {
    require_root();
    let group = TestGroup(format!("tptadm{}", std::process::id() % 100_000));
    assert!(
        Command::new("groupadd")
            .arg(&group.0)
            .status()
            .unwrap()
            .success()
    );
    let admin = TestUser::create("g");
    let plain = TestUser::create("h");
    assert!(
        Command::new("gpasswd")
            .args(["-a", &admin.name, &group.0])
            .output()
            .unwrap()
            .status
            .success()
    );
    let d = Toopherd::start_with(&format!("admin_group = \"{}\"\n", group.0));
    d.enroll("daemon");
    std::fs::set_permissions(
        d.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let ok = ctl_as(&d.socket, &["list"], Some(uid_of(&admin.name)));
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("daemon"));
    let refused = ctl_as(&d.socket, &["list"], Some(uid_of(&plain.name)));
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn a_user_cannot_mint_their_own_recovery_codes() {
    require_root();
    let d = Toopherd::start();
    d.enroll("daemon");
    std::fs::set_permissions(
        d.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // New recovery codes are a second factor: someone with only daemon's session must
    // not be able to make them.
    let uid = toopher_tests::system::uid_of("daemon");
    let out = ctl_as(
        &d.socket,
        &["recovery-codes", "daemon", "--regenerate"],
        Some(uid),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs root or the admin group"),
        "{out:?}"
    );
    // An administrator still may.
    let out = d.ctl(&["recovery-codes", "daemon", "--regenerate"]);
    assert!(out.status.success(), "{out:?}");
}
