//! Needs root (toopherd lets only root act for other accounts). The module under
//! valgrind's memcheck: real libpam logins through the built pam_toopher.so, driven by
//! `pam-script` (pam_start_confdir, pam_authenticate, pam_setcred, pam_acct_mgmt, pam_end
//! with a scripted conversation), against a real toopherd, no toopherd at all, and a fake
//! one that answers with garbage. Each case asserts its PAM result (so it cannot pass by
//! not running), no memcheck error, no definite leak, and no descriptor or thread left
//! behind after pam_end.

use toopher_ipc::{LoginResponse, Method};
use toopher_tests::daemon::Toopherd;
use toopher_tests::fake_toopherd::{FakeToopherd, frame};
use toopher_tests::memcheck::{self, Conv, MEMCHECK_ERROR_EXIT};
use toopher_tests::otp;
use toopher_tests::pam::{
    PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_CONV_ERR, PAM_MAXTRIES, PAM_SERVICE_ERR, PAM_SUCCESS,
    Stack,
};
use toopher_tests::system::require_root;

const UNAVAILABLE: &str = "The second-factor service is unavailable.";

fn setup() {
    require_root();
    memcheck::require_valgrind();
}

// --- a real toopherd ---

#[test]
fn right_code() {
    setup();
    let d = Toopherd::start();
    let mut u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "");
    let code = u.next_code();
    let r = memcheck::login(&stack, "daemon", Conv::Script, &[&code]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_SUCCESS), "{r}\n{}", d.log());
    assert_eq!(r.code("setcred"), Some(PAM_SUCCESS), "{r}");
    assert_eq!(r.code("acct"), Some(PAM_SUCCESS), "{r}");
    assert!(
        d.log().contains("outcome=granted method=otp"),
        "{}",
        d.log()
    );
}

#[test]
fn wrong_code_until_the_prompts_run_out() {
    setup();
    let d = Toopherd::start();
    let u = d.enroll("bin");
    let wrong = otp::wrong_code(&u.secret);
    let stack = Stack::toopher(&d.socket, "prompts=2");
    let r = memcheck::login(&stack, "bin", Conv::Script, &[&wrong, &wrong]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_MAXTRIES), "{r}");
    assert!(r.shown("Incorrect code"), "{r}");
    assert_eq!(r.code("setcred"), None, "{r}");
    assert_eq!(
        d.log().matches("reason=wrong_code").count(),
        2,
        "{}",
        d.log()
    );
}

#[test]
fn the_person_goes_away_at_the_first_prompt() {
    setup();
    let d = Toopherd::start();
    d.enroll("sys");
    let stack = Stack::toopher(&d.socket, "");
    // No answers: the conversation fails with PAM_CONV_ERR at the first prompt.
    let r = memcheck::login(&stack, "sys", Conv::Script, &[]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_CONV_ERR), "{r}");
    assert!(r.shown("One-time password"), "{r}");
}

#[test]
fn the_person_goes_away_after_a_wrong_code() {
    setup();
    let d = Toopherd::start();
    let u = d.enroll("games");
    let wrong = otp::wrong_code(&u.secret);
    let stack = Stack::toopher(&d.socket, "prompts=3");
    let r = memcheck::login(&stack, "games", Conv::Script, &[&wrong]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_CONV_ERR), "{r}");
    assert!(r.shown("Incorrect code"), "{r}");
    assert_eq!(r.value("answers_left"), Some("0"), "{r}");
}

#[test]
fn the_conversation_returns_no_responses() {
    setup();
    let d = Toopherd::start();
    d.enroll("man");
    let stack = Stack::toopher(&d.socket, "");
    let r = memcheck::login(&stack, "man", Conv::NullReply, &[]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_CONV_ERR), "{r}");
}

#[test]
fn the_conversation_returns_null_texts() {
    setup();
    let d = Toopherd::start();
    d.enroll("lp");
    let stack = Stack::toopher(&d.socket, "prompts=2");
    let r = memcheck::login(&stack, "lp", Conv::NullText, &[]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_MAXTRIES), "{r}");
    assert!(r.shown("No valid code entered."), "{r}");
}

// --- no toopherd ---

#[test]
fn no_socket() {
    setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::toopher(&dir.path().join("absent.sock"), "");
    let r = memcheck::login(&stack, "daemon", Conv::Script, &["123456"]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_AUTHINFO_UNAVAIL), "{r}");
    assert!(r.shown(UNAVAILABLE), "{r}");
    assert_eq!(r.value("answers_left"), Some("1"), "asked for a code: {r}");
}

#[test]
fn no_socket_with_failmode_safe() {
    setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::toopher(&dir.path().join("absent.sock"), "failmode=safe");
    let r = memcheck::login(&stack, "daemon", Conv::Script, &[]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_SUCCESS), "{r}");
}

#[test]
fn stale_socket() {
    setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stale.sock");
    // Bound and closed: the file stays, nobody listens (connect: ECONNREFUSED).
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let stack = Stack::toopher(&path, "");
    let r = memcheck::login(&stack, "daemon", Conv::Script, &["123456"]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_AUTHINFO_UNAVAIL), "{r}");
    assert!(r.shown(UNAVAILABLE), "{r}");
}

// --- a fake toopherd answering garbage ---

/// Runs a login against a fake toopherd with `replies`; returns the run and the
/// requests the fake received.
fn against_fake(replies: Vec<Vec<u8>>, answers: &[&str]) -> (memcheck::Run, Vec<String>) {
    setup();
    let fake = FakeToopherd::start(replies);
    let stack = Stack::toopher(&fake.socket, "");
    let r = memcheck::login(&stack, "daemon", Conv::Script, answers);
    let requests = fake.requests();
    r.assert_clean();
    (r, requests)
}

#[test]
fn garbage_answer() {
    let (r, requests) = against_fake(vec![frame(b"\x00\xffnot json at all{{{")], &["123456"]);
    assert_eq!(requests, ["begin"], "{r}");
    assert_eq!(r.code("auth"), Some(PAM_AUTH_ERR), "{r}");
}

#[test]
fn truncated_answer() {
    // A header announcing 200 bytes, 20 of them, then the connection closes.
    let mut reply = 200u32.to_be_bytes().to_vec();
    reply.extend_from_slice(br#"{"v":1,"msg":{"type""#);
    let (r, requests) = against_fake(vec![reply], &["123456"]);
    assert_eq!(requests, ["begin"], "{r}");
    assert_eq!(r.code("auth"), Some(PAM_AUTHINFO_UNAVAIL), "{r}");
}

#[test]
fn oversized_length() {
    let mut reply = u32::MAX.to_be_bytes().to_vec();
    reply.extend_from_slice(b"{}");
    let (r, requests) = against_fake(vec![reply], &["123456"]);
    assert_eq!(requests, ["begin"], "{r}");
    assert_eq!(r.code("auth"), Some(PAM_AUTH_ERR), "{r}");
}

#[test]
fn wrong_protocol_version_granting() {
    // A well-formed grant in another protocol version must not be taken as one.
    let reply = frame(br#"{"v":2,"msg":{"type":"granted","method":"otp"}}"#);
    let (r, requests) = against_fake(vec![reply], &["123456"]);
    assert_eq!(requests, ["begin"], "{r}");
    assert_eq!(r.code("auth"), Some(PAM_AUTH_ERR), "{r}");
}

#[test]
fn garbage_after_a_challenge() {
    let challenge = toopher_ipc::encode(&LoginResponse::Challenge {
        methods: vec![Method::Otp, Method::RecoveryCode],
        push_pending: false,
    })
    .expect("encode")
    .to_vec();
    let (r, requests) = against_fake(vec![challenge, frame(b"[1,2,3")], &["123456"]);
    assert_eq!(requests, ["begin", "otp"], "{r}");
    assert_eq!(r.code("auth"), Some(PAM_AUTHINFO_UNAVAIL), "{r}");
    assert!(r.shown("The second-factor service failed."), "{r}");
}

/// The push path: Enter sends a push, two waits come back pending, the third granted.
#[test]
fn push_approved_after_waiting() {
    let enc = |r: &LoginResponse| toopher_ipc::encode(r).expect("encode").to_vec();
    let replies = vec![
        enc(&LoginResponse::Challenge {
            methods: vec![Method::Push, Method::Otp],
            push_pending: false,
        }),
        enc(&LoginResponse::Pending),
        enc(&LoginResponse::Pending),
        // With a notice of earlier failures: shown, then an Enter prompt.
        enc(&LoginResponse::Granted {
            method: Method::Push,
            notice: Some(toopher_ipc::FailureNotice {
                failures: 3,
                rhosts: vec!["198.51.100.4".into(), "192.0.2.7\x1b[2J".into()],
                more_rhosts: true,
                last_at: Some(1_800_000_000),
            }),
        }),
    ];
    let (r, requests) = against_fake(replies, &["", ""]);
    assert_eq!(requests, ["begin", "push", "wait", "wait"], "{r}");
    assert_eq!(r.code("auth"), Some(PAM_SUCCESS), "{r}");
    assert!(format!("{r}").contains("3 failed"), "notice not shown: {r}");
}

/// Two-way registration: the code is shown, a response typed, and the answer is garbage.
#[test]
fn garbage_during_registration() {
    let register = toopher_ipc::encode(&LoginResponse::Register {
        registration_code: "K7Q2MX".into(),
        expires_in_secs: 600,
    })
    .expect("encode")
    .to_vec();
    let (r, requests) = against_fake(vec![register, frame(b"\"\xc3\x28")], &["R3SP0NSE"]);
    assert_eq!(requests, ["begin", "registration_response"], "{r}");
    assert_eq!(r.code("auth"), Some(PAM_AUTHINFO_UNAVAIL), "{r}");
    assert!(r.shown("Registration code: K7Q2MX"), "{r}");
}

// --- configuration ---

#[test]
fn invalid_options() {
    setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::toopher(
        &dir.path().join("absent.sock"),
        "failmode=open prompts=0 bogus",
    );
    let r = memcheck::login(&stack, "daemon", Conv::Script, &["123456"]);
    r.assert_clean();
    assert_eq!(r.code("auth"), Some(PAM_SERVICE_ERR), "{r}");
    // One line for the person: misconfigured, see the system log.
    assert_eq!(r.messages().len(), 1, "{r}");
    assert!(r.shown("pam_toopher is misconfigured"), "{r}");
}

// --- the harness itself ---

/// memcheck, as this suite runs it, fails a run that loses a block: the checks above
/// would see a leak in the module.
#[test]
fn memcheck_catches_a_definite_leak() {
    setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = Stack::toopher(&dir.path().join("absent.sock"), "failmode=safe");
    let r = memcheck::run(&stack, &["--user", "daemon", "--self-test", "leak"], &[]);
    assert_eq!(r.exit, Some(MEMCHECK_ERROR_EXIT), "{r}");
    assert!(
        r.log.contains("definitely lost: 4,096 bytes in 1 blocks"),
        "{r}"
    );
    assert_eq!(r.code("auth"), Some(PAM_SUCCESS), "{r}");
}
