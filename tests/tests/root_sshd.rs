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
