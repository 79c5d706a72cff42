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

mod push {
    //! The Toopher backend behind real sudo: approved, denied, OTP.
    use super::*;
    use toopher_tests::sim::Sim;

    #[test]
    fn sudo_approved_denied_and_otp() {
        let sim = Sim::start();
        let user = TestUser::create("x");
        let u = sim.paired(&user.name);
        // The test's sudo uses its own PAM service name; give it sudo's policy.
        let d = sim.toopherd(
            "",
            &format!(
                "[toopher.services.{SERVICE}]\naction = \"sudo\"\nautomation_allowed = false\n"
            ),
        );
        let _dropin = SudoersDropIn::install(&user.name, SERVICE);
        let pam = PamDir::password_then_toopher(SERVICE, &d.socket, "prompts=1");

        let answer = sim.answer_next_push(Some(None));
        let run = sudo(&pam, &user.name, &[&user.password, ""], "id -u");
        assert!(run.ok, "{run:?}\n{}", d.log());
        assert_eq!(run.stdout.trim(), "0");
        let id = answer.join().unwrap().unwrap();
        let req = sim
            .handle
            .requests()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap();
        assert_eq!(req.action_name, "sudo");
        assert!(
            !req.automation_allowed,
            "automation is off for sudo by default"
        );

        let answer = sim.answer_next_push(Some(Some("Not me")));
        let run = sudo(&pam, &user.name, &[&user.password, ""], "id -u");
        answer.join().unwrap().unwrap();
        assert!(!run.ok, "{run:?}");
        assert!(run.stdout.is_empty());

        let code = otp::totp_at(&u.totp_secret.unwrap(), otp::now());
        let run = sudo(&pam, &user.name, &[&user.password, &code], "id -u");
        assert!(run.ok, "{run:?}\n{}", d.log());
        assert_eq!(run.stdout.trim(), "0");
    }
}
