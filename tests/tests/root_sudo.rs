//! Real sudo with a sudoers drop-in `Defaults:USER pam_service=...`, the service file in a
//! private /etc/pam.d (mount namespace). Needs root.

use toopher_tests::daemon::Toopherd;
use toopher_tests::otp;
use toopher_tests::system::{PamDir, SudoersDropIn, TestUser, sudo};

const SERVICE: &str = "toopher-e2e-sudo";

#[test]
fn sudo_with_password_and_one_time_password() {
    let d = Toopherd::start();
    let user = TestUser::create("s");
    let _dropin = SudoersDropIn::install(&user.name, SERVICE);
    let pam = PamDir::password_then_toopher(SERVICE, &d.socket, "prompts=1");
    let mut e = d.enroll(&user.name);

    let code = e.next_code();
    let run = sudo(&pam, &user.name, &[&user.password, &code], "id -u");
    assert!(run.ok, "{run:?}\n{}", d.log());
    assert_eq!(run.stdout.trim(), "0");
    assert!(run.stderr.contains("One-time password: "), "{run:?}");
    assert!(
        d.log()
            .contains(&format!("auth user={} service={SERVICE}", user.name)),
        "{}",
        d.log()
    );

    let wrong = otp::wrong_code(&e.secret);
    let run = sudo(&pam, &user.name, &[&user.password, &wrong], "id -u");
    assert!(!run.ok, "{run:?}");
    assert!(run.stdout.is_empty());
    // sudo passes PAM_SILENT (its `pam_silent` default), so the module shows no error line.
    assert!(!run.stderr.contains("Incorrect code"), "{run:?}");
    assert!(d.log().contains(&format!(
        "auth user={} service={SERVICE} rhost=- tty=",
        user.name
    )));
    assert!(
        d.log().contains("outcome=denied reason=wrong_code"),
        "{}",
        d.log()
    );
}
