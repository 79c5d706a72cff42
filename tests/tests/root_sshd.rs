//! A real OpenSSH server (keyboard-interactive through PAM: pam_unix, then pam_toopher)
//! and the real ssh client, against a real toopherd. Needs root.

use toopher_tests::daemon::Toopherd;
use toopher_tests::otp;
use toopher_tests::system::{PamDir, Sshd, TestUser};

fn setup(tag: &str) -> (Toopherd, TestUser, Sshd) {
    let d = Toopherd::start();
    let user = TestUser::create(tag);
    let sshd = Sshd::start(PamDir::password_then_toopher("sshd", &d.socket, ""));
    (d, user, sshd)
}

#[test]
fn password_then_one_time_password() {
    let (d, user, sshd) = setup("a");
    let mut e = d.enroll(&user.name);
    let code = e.next_code();
    let login = sshd.login(&user.name, &[&user.password, &code]);
    assert!(login.ok, "{login:?}\n{}\n{}", sshd.log(), d.log());
    assert_eq!(login.prompts.len(), 2, "{login:?}");
    assert!(login.prompts[0].ends_with("Password: "), "{login:?}");
    assert!(
        login.prompts[1].ends_with("One-time password: "),
        "{login:?}"
    );
    assert!(sshd.log().contains(&format!(
        "Accepted keyboard-interactive/pam for {}",
        user.name
    )));
    assert!(
        d.log().contains(&format!(
            "auth user={} service=sshd rhost=127.0.0.1",
            user.name
        )),
        "{}",
        d.log()
    );
}

#[test]
fn wrong_code_is_refused() {
    let (d, user, sshd) = setup("b");
    let e = d.enroll(&user.name);
    let wrong = otp::wrong_code(&e.secret);
    let login = sshd.login(&user.name, &[&user.password, &wrong, &wrong, &wrong]);
    assert!(!login.ok, "{login:?}");
    assert!(
        login
            .prompts
            .iter()
            .filter(|p| p.ends_with("One-time password: "))
            .count()
            >= 1
    );
    assert!(d.log().contains("outcome=denied reason=wrong_code"));
}

#[test]
fn a_wrong_password_never_reaches_the_second_factor() {
    let (d, user, sshd) = setup("c");
    d.enroll(&user.name);
    let login = sshd.login(&user.name, &["not-the-password", "000000"]);
    assert!(!login.ok, "{login:?}");
    assert!(
        login
            .prompts
            .iter()
            .all(|p| !p.contains("One-time password")),
        "{login:?}"
    );
    assert!(
        !d.log().contains(&format!("auth user={}", user.name)),
        "{}",
        d.log()
    );
}

#[test]
fn toopherd_down_denies_ssh_by_default() {
    let d = Toopherd::start();
    let user = TestUser::create("d");
    let missing = d.dir.path().join("no.sock");
    let sshd = Sshd::start(PamDir::password_then_toopher("sshd", &missing, ""));
    let login = sshd.login(&user.name, &[&user.password]);
    assert!(!login.ok, "{login:?}");
}

mod push {
    //! The Toopher backend behind real sshd: push, denial, timeout fallback, OTP while
    //! waiting, API down, and a wrong password that never sends a push.
    use super::*;
    use std::sync::Arc;
    use toopher_tests::sim::{Failure, FailureRule, Sim};

    fn setup(
        tag: &str,
        top: &str,
        toopher: &str,
        options: &str,
    ) -> (Arc<Sim>, Toopherd, TestUser, Sshd) {
        let sim = Sim::start();
        let user = TestUser::create(tag);
        let d = sim.toopherd(top, toopher);
        let sshd = Sshd::start(PamDir::password_then_toopher("sshd", &d.socket, options));
        (sim, d, user, sshd)
    }

    #[test]
    fn password_and_an_approved_push() {
        let (sim, d, user, sshd) = setup("p", "", "", "");
        sim.paired(&user.name);
        let answer = sim.answer_next_push(Some(None));
        let login = sshd.login(&user.name, &[&user.password, ""]);
        assert!(login.ok, "{login:?}\n{}\n{}", sshd.log(), d.log());
        assert!(
            login.prompts[1]
                .ends_with("Press Enter to approve on your phone, or type a one-time password: "),
            "{login:?}"
        );
        let id = answer.join().unwrap().unwrap();
        let req = sim
            .handle
            .requests()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap();
        assert!(
            req.terminal_name.ends_with("sshd from 127.0.0.1"),
            "{req:?}"
        );
        assert_eq!(req.action_name, "Log In");
    }

    #[test]
    fn a_denied_push_refuses_the_login() {
        let (sim, d, user, sshd) = setup("q", "", "", "prompts=1");
        sim.paired(&user.name);
        let answer = sim.answer_next_push(Some(Some("Not me")));
        let login = sshd.login(&user.name, &[&user.password, ""]);
        answer.join().unwrap().unwrap();
        assert!(!login.ok, "{login:?}");
        assert!(
            d.log().contains("outcome=denied reason=push_denied"),
            "{}",
            d.log()
        );
    }

    #[test]
    fn no_answer_then_a_one_time_password() {
        let (sim, d, user, sshd) = setup("r", "", "push_timeout = 1.5", "");
        let u = sim.paired(&user.name);
        let code = otp::totp_at(&u.totp_secret.unwrap(), otp::now());
        let login = sshd.login(&user.name, &[&user.password, "", &code]);
        assert!(login.ok, "{login:?}\n{}", d.log());
        let joined = login.prompts.join("\n");
        assert!(joined.contains("No answer from your phone."), "{login:?}");
    }

    #[test]
    fn a_code_typed_while_the_push_waits() {
        let (sim, d, user, sshd) = setup("s", "", "", "autopush");
        let u = sim.paired(&user.name);
        let code = otp::totp_at(&u.totp_secret.unwrap(), otp::now());
        let login = sshd.login(&user.name, &[&user.password, &code]);
        assert!(login.ok, "{login:?}\n{}", d.log());
        assert!(
            login.prompts[1]
                .ends_with("Approve on your phone and press Enter, or type a one-time password: ")
        );
        let id = &sim.handle.requests()[0].id;
        assert_eq!(
            sim.calls(&format!("/authentication_requests/{id}/otp_auth"))
                .len(),
            1
        );
    }

    #[test]
    fn api_down_follows_failmode() {
        for (mode, ok) in [("secure", false), ("safe", true)] {
            let (sim, d, user, sshd) = setup(
                if ok { "t" } else { "u" },
                &format!("failmode = \"{mode}\""),
                "",
                "",
            );
            sim.paired(&user.name);
            sim.handle.inject_failure(FailureRule::new(
                "*",
                Failure::Status {
                    status: 503,
                    error_code: None,
                    error_message: None,
                },
            ));
            let login = sshd.login(&user.name, &[&user.password, ""]);
            assert_eq!(login.ok, ok, "failmode {mode}: {login:?}\n{}", d.log());
        }
    }

    #[test]
    fn a_wrong_password_never_sends_a_push() {
        let (sim, d, user, sshd) = setup("v", "", "", "autopush");
        sim.paired(&user.name);
        let login = sshd.login(&user.name, &["wrong-password", ""]);
        assert!(!login.ok);
        assert!(
            sim.calls("/authentication_requests").is_empty(),
            "{:?}",
            sim.handle.request_log()
        );
        assert!(sim.calls("/users").is_empty());
        assert!(!d.log().contains(&format!("user={}", user.name)));
    }
}

#[test]
fn two_way_registration_and_enrolment_through_real_sshd() {
    // The chicken-and-egg of SSH-only hosts: no factor yet, 2FA required.
    let d = Toopherd::start_with("enroll = \"two-way\"\n");
    let user = TestUser::create("w");
    let sshd = Sshd::start(PamDir::password_then_toopher("sshd", &d.socket, ""));
    let ctl = toopher_tests::artifact("toopherctl");
    // The askpass plays the person: the password, then the registration code taken to an
    // administrator (toopherctl), then the first code of the new enrolment (oathtool).
    let answer = format!(
        r#"case "$1" in
  *Password:*) echo '{password}' ;;
  *"Registration code: "*)
    code=$(printf '%s' "$1" | sed -n 's/.*Registration code: \([0-9]\{{6\}}\).*/\1/p' | head -n 1)
    '{ctl}' --socket '{socket}' registration approve '{user}' "$code" | sed -n 's/^Response code for .*: //p' ;;
  *"finish enrolment"*)
    key=$(printf '%s\n' "$1" | sed -n 's/^Key: //p')
    oathtool --totp -b "$key" ;;
  *) echo ;;
esac
"#,
        password = user.password,
        ctl = ctl.display(),
        socket = d.socket.display(),
        user = user.name,
    );
    let login = sshd.login_with(&user.name, &answer);
    assert!(login.ok, "{login:?}\n{}\n{}", sshd.log(), d.log());
    let prompts = login.prompts.join("\n");
    assert!(
        prompts.contains("This account has no second factor yet."),
        "{prompts}"
    );
    assert!(prompts.contains("Registered (2000)."), "{prompts}");
    assert!(
        prompts.contains('\u{2588}'),
        "the QR code did not reach the ssh client"
    );
    assert!(d.log().contains("detail=enrolled_in_login"));
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["status", &user.name, "--json"]).stdout).unwrap();
    assert_eq!(st["state"], "active");
}
