use super::{
    AUTOPUSH_PROMPT, CHOOSE_PROMPT, LOCKED_NOTE, Level, OTP_PROMPT, Outcome, RECOVERY_PROMPT,
    Syslog, authenticate,
};
use crate::conversation::{ConvError, Conversation};
use crate::daemon::LoginLink;
use crate::options::{Failmode, Options};
use std::collections::VecDeque;
use toopher_ipc::{
    AdminResponse, AllowReason, DenyReason, FrameError, LoginContext, LoginRequest, LoginResponse,
    Method, RegistrationNext, RegistrationStatus, Response, Secret,
};

/// A conversation that answers prompts from a script and records everything shown. Like
/// kanidm's `TestHandler`, it fails the test when dropped with answers left unused: a
/// leftover means the login ended earlier than the test believes.
struct Script {
    answers: VecDeque<Result<&'static str, ConvError>>,
    shown: Vec<String>,
}

impl Script {
    fn new(answers: Vec<Result<&'static str, ConvError>>) -> Script {
        Script {
            answers: answers.into(),
            shown: Vec::new(),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // Not while unwinding: a second panic would abort and hide the first.
        if !std::thread::panicking() {
            assert!(
                self.answers.is_empty(),
                "{} scripted answers left unused (shown: {:?})",
                self.answers.len(),
                self.shown
            );
        }
    }
}

impl Conversation for Script {
    fn prompt_hidden(&mut self, text: &str) -> Result<Secret, ConvError> {
        self.shown.push(format!("prompt:{text}"));
        match self.answers.pop_front() {
            Some(Ok(a)) => Ok(Secret::new(a)),
            Some(Err(e)) => Err(e),
            None => panic!("unexpected prompt {text:?}"),
        }
    }
    fn prompt_visible(&mut self, text: &str) -> Result<Secret, ConvError> {
        self.prompt_hidden(text)
    }
    fn info(&mut self, text: &str) {
        self.shown.push(format!("info:{text}"));
    }
    fn error(&mut self, text: &str) {
        self.shown.push(format!("error:{text}"));
    }
}

/// A daemon that answers from a script and records the requests. A request past the end
/// of the script, or answers left unused when it is dropped, fail the test (as `Script`).
struct FakeLink {
    answers: VecDeque<Result<LoginResponse, FrameError>>,
    /// After the script, answer every request `Pending` (a phone that never answers).
    then_pending: bool,
    seen: std::rc::Rc<std::cell::RefCell<Vec<LoginRequest>>>,
}

impl FakeLink {
    fn new(
        answers: Vec<Result<LoginResponse, FrameError>>,
        seen: std::rc::Rc<std::cell::RefCell<Vec<LoginRequest>>>,
    ) -> FakeLink {
        FakeLink {
            answers: answers.into(),
            then_pending: false,
            seen,
        }
    }
}

impl Drop for FakeLink {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.answers.is_empty(),
                "{} scripted daemon answers left unused, the first {:?} (requests: {:?})",
                self.answers.len(),
                self.answers.front(),
                self.seen.borrow()
            );
        }
    }
}

impl LoginLink for FakeLink {
    fn call(&mut self, req: &LoginRequest) -> Result<LoginResponse, FrameError> {
        self.seen.borrow_mut().push(req.clone());
        match self.answers.pop_front() {
            Some(answer) => answer,
            None if self.then_pending => Ok(LoginResponse::Pending),
            None => panic!("unexpected request {req:?}"),
        }
    }
    fn call_within(
        &mut self,
        req: &LoginRequest,
        _: std::time::Duration,
    ) -> Result<LoginResponse, FrameError> {
        // A Wait takes time, as toopherd's does.
        std::thread::sleep(std::time::Duration::from_millis(5));
        self.call(req)
    }
}

#[derive(Default)]
struct Lines(Vec<(Level, String)>);
impl Syslog for Lines {
    fn log(&mut self, level: Level, msg: &str) {
        self.0.push((level, msg.to_string()));
    }
}

fn ctx() -> LoginContext {
    LoginContext {
        user: "alice".into(),
        service: "sshd".into(),
        rhost: Some("192.0.2.7".into()),
        tty: None,
        ruser: None,
        autopush: false,
        notify: true,
    }
}

struct Run {
    outcome: Outcome,
    shown: Vec<String>,
    requests: Vec<LoginRequest>,
    log: Vec<(Level, String)>,
}

fn run(
    opts: Options,
    prompts: Vec<Result<&'static str, ConvError>>,
    daemon: Option<Vec<Result<LoginResponse, FrameError>>>,
) -> Run {
    run_with(opts, prompts, daemon, false)
}

/// `run`, with a daemon that answers `Pending` after its script when `then_pending`.
fn run_with(
    opts: Options,
    prompts: Vec<Result<&'static str, ConvError>>,
    daemon: Option<Vec<Result<LoginResponse, FrameError>>>,
    then_pending: bool,
) -> Run {
    let mut conv = Script::new(prompts);
    let mut log = Lines::default();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    let outcome = authenticate(&ctx(), &opts, &mut conv, &mut log, move || match daemon {
        Some(answers) => {
            let mut daemon = FakeLink::new(answers, seen2);
            daemon.then_pending = then_pending;
            Ok(daemon)
        }
        None => Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
    });
    let requests = seen.borrow().clone();
    Run {
        outcome,
        shown: std::mem::take(&mut conv.shown),
        requests,
        log: log.0,
    }
}

fn otp_challenge() -> Result<LoginResponse, FrameError> {
    Ok(LoginResponse::Challenge {
        methods: vec![Method::Otp, Method::RecoveryCode],
        push_pending: false,
    })
}

/// toopherd's answer to `Cancel` (which the module does not read).
fn cancelled() -> Result<LoginResponse, FrameError> {
    Ok(LoginResponse::Denied {
        reason: DenyReason::Other,
        message: Some("cancelled".into()),
    })
}

fn wrong() -> Result<LoginResponse, FrameError> {
    Ok(LoginResponse::denied(DenyReason::WrongCode))
}

#[test]
fn right_code_is_success_and_the_code_is_never_logged() {
    let r = run(
        Options::default(),
        vec![Ok(" 123456 ")],
        Some(vec![
            otp_challenge(),
            Ok(LoginResponse::granted(Method::Otp)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.shown, vec![format!("prompt:{OTP_PROMPT}")]);
    assert_eq!(
        r.requests[1],
        LoginRequest::Otp {
            code: Secret::new("123456")
        }
    );
    assert!(r.log.iter().all(|(_, l)| !l.contains("123456")));
    assert!(r.log.iter().any(|(_, l)| l.contains("outcome=granted")));
}

#[test]
fn wrong_codes_use_up_the_prompts_then_maxtries() {
    let opts = Options {
        prompts: 2,
        ..Default::default()
    };
    let r = run(
        opts,
        vec![Ok("111111"), Ok("222222")],
        Some(vec![otp_challenge(), wrong(), wrong()]),
    );
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(r.requests.len(), 3);
    // The note rides on the next prompt; after the last try it is shown as an error.
    assert_eq!(r.shown[1], format!("prompt:Incorrect code.\n{OTP_PROMPT}"));
    assert_eq!(r.shown[2], "error:Incorrect code.");
}

#[test]
fn wrong_then_right() {
    let r = run(
        Options::default(),
        vec![Ok("111111"), Ok("222222")],
        Some(vec![
            otp_challenge(),
            wrong(),
            Ok(LoginResponse::granted(Method::RecoveryCode)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
}

#[test]
fn empty_input_is_a_try_without_asking_the_daemon() {
    let opts = Options {
        prompts: 1,
        ..Default::default()
    };
    let r = run(opts, vec![Ok("")], Some(vec![otp_challenge()]));
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(r.requests.len(), 1);
}

#[test]
fn unreachable_secure_denies_safe_allows() {
    let r = run(Options::default(), vec![], None);
    assert_eq!(r.outcome, Outcome::AuthInfoUnavail);
    let opts = Options {
        failmode: Failmode::Safe,
        ..Default::default()
    };
    let r = run(opts.clone(), vec![], None);
    assert_eq!(r.outcome, Outcome::Success);
    assert!(
        r.log
            .iter()
            .any(|(lvl, l)| *lvl == Level::Warning && l.contains("failmode=safe"))
    );
    // A daemon that accepts and then closes without a word is unreachable too.
    let r = run(opts, vec![], Some(vec![Err(FrameError::Closed)]));
    assert_eq!(r.outcome, Outcome::Success);
}

/// A toopherd that is there but does not answer in time (its listen queue full, or no
/// answer within the I/O timeout) is busy, which a local user can cause: denied under
/// `failmode = "safe"` too.
#[test]
fn a_busy_toopherd_is_never_failmode_safe() {
    let opts = Options {
        failmode: Failmode::Safe,
        ..Default::default()
    };
    for kind in [std::io::ErrorKind::TimedOut, std::io::ErrorKind::WouldBlock] {
        let r = run(
            opts.clone(),
            vec![],
            Some(vec![Err(FrameError::Io(std::io::Error::from(kind)))]),
        );
        assert_eq!(r.outcome, Outcome::AuthInfoUnavail, "{kind:?}");
        assert!(
            r.log.iter().any(|(_, l)| l.contains("toopherd_busy")),
            "{:?}",
            r.log
        );
        assert!(
            !r.log.iter().any(|(_, l)| l.contains("failmode=safe")),
            "{:?}",
            r.log
        );
        let mut conv = Script::new(vec![]);
        let mut log = Lines::default();
        let outcome = authenticate(&ctx(), &opts, &mut conv, &mut log, || {
            Err::<FakeLink, _>(std::io::Error::from(kind))
        });
        assert_eq!(outcome, Outcome::AuthInfoUnavail, "connect {kind:?}");
    }
}

#[test]
fn failmode_safe_never_covers_a_wrong_code_or_a_mid_login_failure() {
    let opts = Options {
        failmode: Failmode::Safe,
        prompts: 1,
        ..Default::default()
    };
    let r = run(
        opts.clone(),
        vec![Ok("111111")],
        Some(vec![otp_challenge(), wrong()]),
    );
    assert_eq!(r.outcome, Outcome::MaxTries);
    let r = run(
        opts.clone(),
        vec![Ok("111111")],
        Some(vec![otp_challenge(), Err(FrameError::Closed)]),
    );
    assert_eq!(r.outcome, Outcome::AuthInfoUnavail);
    let r = run(
        opts,
        vec![],
        Some(vec![Ok(LoginResponse::denied(DenyReason::NotEnrolled))]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
}

#[test]
fn garbage_or_unexpected_answers_deny() {
    let r = run(
        Options::default(),
        vec![],
        Some(vec![Err(FrameError::Malformed { line: 1, column: 1 })]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    let r = run(
        Options::default(),
        vec![],
        Some(vec![Ok(LoginResponse::Pending)]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    let r = run(
        Options::default(),
        vec![Ok("123456")],
        Some(vec![otp_challenge(), Ok(LoginResponse::Pending)]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    let r = run(
        Options::default(),
        vec![],
        Some(vec![Ok(LoginResponse::Challenge {
            methods: vec![Method::Unknown],
            push_pending: false,
        })]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
}

/// A toopherd stand-in on a real socket: answers each request it reads with the next
/// frame of `answers`, which may be of either family (the module reads only a login's).
fn stand_in(
    name: &str,
    answers: Vec<Response>,
) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    let dir = std::env::temp_dir().join(format!("pam-toopher-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.join("s.sock")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        for answer in answers {
            toopher_ipc::read_frame(&mut s).unwrap();
            toopher_ipc::write_frame(&mut s, &answer).unwrap();
        }
    });
    (dir, server)
}

/// An administrative answer reaching the module (a confused or hostile toopherd) is not
/// a login's answer: it does not decode, and the login fails closed, under
/// `failmode = "safe"` too (toopherd was reached).
#[test]
fn an_administrative_answer_is_a_decode_error_that_fails_closed() {
    let opts = Options {
        failmode: Failmode::Safe,
        ..Default::default()
    };
    let admin: Response = AdminResponse::Activated {
        user: "alice".into(),
    }
    .into();
    // As the answer to Begin...
    let (dir, server) = stand_in("admin-begin", vec![admin.clone()]);
    let mut conv = Script::new(vec![]);
    let mut log = Lines::default();
    let outcome = authenticate(&ctx(), &opts, &mut conv, &mut log, || {
        crate::daemon::connect(&dir.join("s.sock"))
    });
    server.join().unwrap();
    assert_eq!(outcome, Outcome::AuthErr);
    assert!(
        log.0
            .iter()
            .any(|(_, l)| l.contains("answer unusable: malformed message")),
        "{:?}",
        log.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    // ...and to a code in the middle of the login.
    let challenge: Response = LoginResponse::Challenge {
        methods: vec![Method::Otp],
        push_pending: false,
    }
    .into();
    let (dir, server) = stand_in("admin-otp", vec![challenge, admin]);
    let mut conv = Script::new(vec![Ok("123456")]);
    let mut log = Lines::default();
    let outcome = authenticate(&ctx(), &opts, &mut conv, &mut log, || {
        crate::daemon::connect(&dir.join("s.sock"))
    });
    server.join().unwrap();
    assert_eq!(outcome, Outcome::AuthInfoUnavail);
    assert!(
        log.0
            .iter()
            .any(|(_, l)| l.contains("failed during the login: malformed message")),
        "{:?}",
        log.0
    );
    assert!(!log.0.iter().any(|(_, l)| l.contains("failmode=safe")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn denial_text_is_stripped_of_control_characters() {
    let r = run(
        Options::default(),
        vec![],
        Some(vec![Ok(LoginResponse::Denied {
            reason: DenyReason::Policy,
            message: Some("no\x1b[31m entry\r\n".into()),
        })]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    assert_eq!(r.shown, vec!["error:no[31m entry".to_string()]);
}

#[test]
fn rate_limited_stops_at_once() {
    let r = run(
        Options::default(),
        vec![Ok("111111")],
        Some(vec![
            otp_challenge(),
            Ok(LoginResponse::denied(DenyReason::RateLimited)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    assert!(
        r.shown
            .iter()
            .any(|s| s.contains("Too many failed attempts"))
    );
}

#[test]
fn conversation_failure_is_conv_err() {
    let r = run(
        Options::default(),
        vec![Err(ConvError)],
        Some(vec![otp_challenge()]),
    );
    assert_eq!(r.outcome, Outcome::ConvErr);
}

#[test]
fn allowed_when_not_enrolled_and_policy_says_so() {
    let r = run(
        Options::default(),
        vec![],
        Some(vec![Ok(LoginResponse::Allow {
            reason: AllowReason::NotEnrolled,
        })]),
    );
    assert_eq!(r.outcome, Outcome::Success);
}

fn push_challenge(pending: bool) -> Result<LoginResponse, FrameError> {
    Ok(LoginResponse::Challenge {
        methods: vec![Method::Push, Method::Otp],
        push_pending: pending,
    })
}

#[test]
fn choose_enter_sends_the_push_and_waits_for_the_grant() {
    let r = run(
        Options::default(),
        vec![Ok("")],
        Some(vec![
            push_challenge(false),
            Ok(LoginResponse::Pending),
            Ok(LoginResponse::Pending),
            Ok(LoginResponse::granted(Method::Push)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.shown, vec![format!("prompt:{CHOOSE_PROMPT}")]);
    assert_eq!(r.requests[1], LoginRequest::Push);
    assert!(matches!(r.requests[2], LoginRequest::Wait { timeout_ms } if timeout_ms <= 5000));
    assert!(
        r.log
            .iter()
            .any(|(_, l)| l.contains("outcome=granted method=push"))
    );
}

#[test]
fn choose_a_typed_code_is_checked_without_a_push() {
    let r = run(
        Options::default(),
        vec![Ok("123456")],
        Some(vec![
            push_challenge(false),
            Ok(LoginResponse::granted(Method::Otp)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert!(!r.requests.contains(&LoginRequest::Push));
}

#[test]
fn autopush_a_code_typed_while_waiting_settles_the_push() {
    let r = run(
        Options::default(),
        vec![Ok("654321")],
        Some(vec![
            push_challenge(true),
            Ok(LoginResponse::granted(Method::Otp)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.shown, vec![format!("prompt:{AUTOPUSH_PROMPT}")]);
    assert_eq!(
        r.requests[1],
        LoginRequest::Otp {
            code: Secret::new("654321")
        }
    );
}

#[test]
fn autopush_enter_waits_for_the_pending_push_without_sending_another() {
    let r = run(
        Options::default(),
        vec![Ok("")],
        Some(vec![
            push_challenge(true),
            Ok(LoginResponse::granted(Method::Push)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert!(matches!(r.requests[1], LoginRequest::Wait { .. }));
}

#[test]
fn no_answer_falls_back_to_a_one_time_password() {
    let r = run(
        Options::default(),
        vec![Ok(""), Ok("111222")],
        Some(vec![
            push_challenge(false),
            Ok(LoginResponse::Pending),
            Ok(LoginResponse::denied(DenyReason::PushTimeout)),
            Ok(LoginResponse::granted(Method::Otp)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success, "{:?}", r.shown);
    assert_eq!(
        r.shown[1],
        format!(
            "prompt:No answer from your phone. Type a one-time password instead.\n{OTP_PROMPT}"
        )
    );
}

#[test]
fn a_denied_push_shows_the_reason_on_the_next_prompt() {
    let r = run(
        Options::default(),
        vec![Ok(""), Err(ConvError)],
        Some(vec![
            push_challenge(false),
            Ok(LoginResponse::Pending),
            Ok(LoginResponse::Denied {
                reason: DenyReason::PushDenied,
                message: Some("Not me\x1b[2J".into()),
            }),
        ]),
    );
    assert_eq!(r.outcome, Outcome::ConvErr);
    assert_eq!(
        r.shown[1],
        format!("prompt:Denied on your phone: Not me[2J.\n{CHOOSE_PROMPT}")
    );
}

#[test]
fn the_module_timeout_bounds_the_wait_and_cancels_the_push() {
    let opts = Options {
        timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    // The phone never answers: every Wait, and the Cancel, get Pending.
    let r = run_with(opts, vec![Ok("")], Some(vec![push_challenge(false)]), true);
    assert_eq!(r.outcome, Outcome::AuthErr);
    assert_eq!(r.requests.last(), Some(&LoginRequest::Cancel));
}

#[test]
fn a_person_who_walks_away_cancels_the_pending_push() {
    let r = run(
        Options::default(),
        vec![Err(ConvError)],
        Some(vec![push_challenge(true), cancelled()]),
    );
    assert_eq!(r.outcome, Outcome::ConvErr);
    assert_eq!(r.requests.last(), Some(&LoginRequest::Cancel));
}

#[test]
fn otp_required_switches_to_the_code_prompt() {
    let r = run(
        Options::default(),
        vec![Ok(""), Ok("123123")],
        Some(vec![
            push_challenge(false),
            Ok(LoginResponse::Challenge {
                methods: vec![Method::Otp],
                push_pending: false,
            }),
            Ok(LoginResponse::granted(Method::Otp)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(
        r.shown[1],
        format!("prompt:A one-time password is required.\n{OTP_PROMPT}")
    );
}

#[test]
fn failmode_safe_from_the_daemon_mid_push_is_its_decision_and_logged() {
    let r = run(
        Options::default(),
        vec![Ok("")],
        Some(vec![
            push_challenge(false),
            Ok(LoginResponse::Allow {
                reason: AllowReason::Failmode,
            }),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert!(
        r.log
            .iter()
            .any(|(l, m)| *l == Level::Warning && m.contains("failmode_safe"))
    );
}

#[test]
fn a_broken_link_during_the_wait_denies() {
    let r = run(
        Options {
            failmode: Failmode::Safe,
            ..Default::default()
        },
        vec![Ok("")],
        Some(vec![
            push_challenge(false),
            Ok(LoginResponse::Pending),
            Err(FrameError::Closed),
        ]),
    );
    assert_eq!(r.outcome, Outcome::AuthInfoUnavail);
}

fn granted_with_notice() -> Result<LoginResponse, FrameError> {
    Ok(LoginResponse::Granted {
        method: Method::Otp,
        notice: Some(toopher_ipc::FailureNotice {
            failures: 4,
            rhosts: vec!["198.51.100.4\x1b[2J".into()],
            more_rhosts: false,
            last_at: Some(1_700_000_000),
        }),
    })
}

#[test]
fn a_grant_tells_the_failures_since_the_last_login_and_waits_for_enter() {
    let r = run(
        Options::default(),
        vec![Ok("123456"), Ok("")],
        Some(vec![otp_challenge(), granted_with_notice()]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.shown.len(), 3, "{:?}", r.shown);
    assert_eq!(
        r.shown[1],
        "info:WARNING: 4 failed second-factor attempts since your last login, from \
         198.51.100.4[2J, the last at 2023-11-14 22:13:20 UTC. Someone else may know \
         your password: change it."
    );
    assert_eq!(r.shown[2], format!("prompt:{}", crate::notice::ACK_PROMPT));
    assert!(
        r.log.iter().any(|(_, l)| l.contains("told_failures=4")),
        "{:?}",
        r.log
    );
}

#[test]
fn the_grant_stands_when_the_person_goes_away_at_the_notice() {
    let r = run(
        Options::default(),
        vec![Ok("123456"), Err(ConvError)],
        Some(vec![otp_challenge(), granted_with_notice()]),
    );
    assert_eq!(r.outcome, Outcome::Success);
}

#[test]
fn no_notice_without_news_or_when_the_login_cannot_show_it() {
    let r = run(
        Options::default(),
        vec![Ok("123456")],
        Some(vec![
            otp_challenge(),
            Ok(LoginResponse::granted(Method::Otp)),
        ]),
    );
    assert_eq!(r.shown, vec![format!("prompt:{OTP_PROMPT}")]);
    // A login under PAM_SILENT says so in Begin (notify = false); toopherd then keeps the
    // notice, and the module shows nothing if one comes anyway.
    let mut conv = Script::new(vec![Ok("123456")]);
    let mut log = Lines::default();
    let mut quiet = ctx();
    quiet.notify = false;
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    let outcome = authenticate(
        &quiet,
        &Options::default(),
        &mut conv,
        &mut log,
        move || {
            Ok(FakeLink::new(
                vec![otp_challenge(), granted_with_notice()],
                seen2,
            ))
        },
    );
    assert_eq!(outcome, Outcome::Success);
    assert_eq!(conv.shown, vec![format!("prompt:{OTP_PROMPT}")]);
    assert!(matches!(&seen.borrow()[0], LoginRequest::Begin(c) if !c.notify));
}

#[test]
fn a_locked_account_is_asked_for_a_recovery_code_only() {
    let r = run(
        Options::default(),
        vec![Ok("123456")],
        Some(vec![
            Ok(LoginResponse::Challenge {
                methods: vec![Method::RecoveryCode],
                push_pending: false,
            }),
            Ok(LoginResponse::denied(DenyReason::RateLimited)),
        ]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    assert_eq!(
        r.shown[0],
        format!("prompt:{LOCKED_NOTE}\n{RECOVERY_PROMPT}")
    );
    assert_eq!(
        r.shown[1],
        "error:Too many failed attempts. Try again later."
    );
}

#[test]
#[should_panic(expected = "scripted answers left unused")]
fn an_unused_scripted_answer_fails_the_test() {
    // The login ends at the grant: the second answer is never asked for.
    run(
        Options::default(),
        vec![Ok("123456"), Ok("654321")],
        Some(vec![
            otp_challenge(),
            Ok(LoginResponse::granted(Method::Otp)),
        ]),
    );
}

#[test]
#[should_panic(expected = "scripted daemon answers left unused")]
fn an_unused_daemon_answer_fails_the_test() {
    run(
        Options::default(),
        vec![Ok("123456")],
        Some(vec![
            otp_challenge(),
            Ok(LoginResponse::granted(Method::Otp)),
            Ok(LoginResponse::Pending),
        ]),
    );
}

/// Two-way registration: the code is shown, the response code accepted, then `next`.
fn registered(next: RegistrationNext) -> Vec<Result<LoginResponse, FrameError>> {
    vec![
        Ok(LoginResponse::Register {
            registration_code: "ABCD-EFGH".into(),
            expires_in_secs: 600,
        }),
        Ok(LoginResponse::Registration {
            status: RegistrationStatus::Registered,
            message: "Registered.".into(),
            next,
        }),
    ]
}

#[test]
fn registration_then_totp_enrolment_grants_with_the_first_code() {
    let mut daemon = registered(RegistrationNext::EnrollTotp {
        qr_text: Secret::new("##\n##"),
        secret: Secret::new("JBSWY3DPEHPK3PXP"),
        otpauth_uri: Secret::new("otpauth://totp/x"),
        recovery_codes: vec![Secret::new("qzvb-xk2m-7tnd")],
    });
    daemon.push(Ok(LoginResponse::granted(Method::Otp)));
    let r = run(
        Options::default(),
        vec![Ok("RESP-1234"), Ok("123456")],
        Some(daemon),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(
        r.requests[1],
        LoginRequest::RegistrationResponse {
            code: Secret::new("RESP-1234")
        }
    );
    assert!(r.log.iter().any(|(_, l)| l.contains("detail=enrolled")));
    assert!(r.log.iter().all(|(_, l)| !l.contains("123456")));
}

#[test]
fn an_unavailable_backend_while_pairing_is_logged_like_everywhere_else() {
    let mut daemon = registered(RegistrationNext::PairPhrase);
    daemon.push(Ok(LoginResponse::Unavailable {
        detail: "the second-factor service could not be reached".into(),
    }));
    let r = run(
        Options::default(),
        vec![Ok("RESP-1234"), Ok("correct horse battery")],
        Some(daemon),
    );
    assert_eq!(r.outcome, Outcome::AuthInfoUnavail);
    assert!(
        r.log
            .iter()
            .any(|(lvl, l)| *lvl == Level::Err && l.contains("outcome=unavailable")),
        "{:?}",
        r.log
    );
    assert_eq!(
        r.shown.last().map(String::as_str),
        Some("error:The second-factor service is unavailable.")
    );
}

#[test]
fn a_refused_pairing_phrase_is_asked_again() {
    let mut daemon = registered(RegistrationNext::PairPhrase);
    daemon.extend([
        Ok(LoginResponse::Denied {
            reason: DenyReason::WrongCode,
            message: None,
        }),
        Ok(LoginResponse::Pending),
        Ok(LoginResponse::granted(Method::Push)),
    ]);
    let r = run(
        Options::default(),
        vec![Ok("RESP-1234"), Ok("wrong words"), Ok("right words")],
        Some(daemon),
    );
    assert_eq!(r.outcome, Outcome::Success, "{:?}", r.shown);
    assert!(r.shown[2].starts_with("prompt:That pairing phrase was refused.\n"));
    assert!(r.log.iter().any(|(_, l)| l.contains("detail=paired")));
}

// forward_pass and the grace token: what the login leaves in the PAM handle.

/// A PAM handle that records what the login leaves in it.
#[derive(Default)]
struct Kept {
    authtok: Option<String>,
    grace_token: Option<String>,
    /// As without the `grace_session` option: no session hook to take a token.
    no_session_hook: bool,
}

impl crate::handle::Handle for Kept {
    fn set_authtok(&mut self, password: &Secret) -> bool {
        self.authtok = Some(password.expose().to_owned());
        true
    }
    fn takes_grace_token(&self) -> bool {
        !self.no_session_hook
    }
    fn keep_grace_token(&mut self, token: &Secret) {
        self.grace_token = Some(token.expose().to_owned());
    }
}

/// `run` through `authenticate_in` with `handle`.
fn run_in(
    opts: Options,
    prompts: Vec<Result<&'static str, ConvError>>,
    daemon: Vec<Result<LoginResponse, FrameError>>,
    handle: &mut Kept,
) -> Run {
    let mut conv = Script::new(prompts);
    let mut log = Lines::default();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    let outcome = super::authenticate_in(&ctx(), &opts, &mut conv, &mut log, handle, move || {
        Ok(FakeLink::new(daemon, seen2))
    });
    let requests = seen.borrow().clone();
    Run {
        outcome,
        shown: std::mem::take(&mut conv.shown),
        requests,
        log: log.0,
    }
}

fn forward() -> Options {
    Options {
        forward_pass: true,
        ..Options::default()
    }
}

fn no_token() -> Result<LoginResponse, FrameError> {
    Ok(LoginResponse::error(
        toopher_ipc::ErrorKind::NotFound,
        "no grace period",
    ))
}

#[test]
fn forward_pass_checks_the_trailing_code_and_hands_on_the_password() {
    let mut h = Kept::default();
    let r = run_in(
        forward(),
        vec![Ok("  my pw 2024123456")],
        vec![
            otp_challenge(),
            Ok(LoginResponse::granted(Method::Otp)),
            no_token(),
        ],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::Success, "{:?}", r.log);
    assert_eq!(r.shown, ["prompt:Password & one-time password: "]);
    assert_eq!(
        r.requests[1],
        LoginRequest::Otp {
            code: Secret::new("123456")
        }
    );
    // Not trimmed: the password is the person's, to the byte.
    assert_eq!(h.authtok.as_deref(), Some("  my pw 2024"));
    assert_eq!(h.grace_token, None);
}

#[test]
fn forward_pass_with_a_wrong_or_missing_code_hands_on_nothing() {
    let mut h = Kept::default();
    let r = run_in(
        forward(),
        vec![Ok("pw000000")],
        vec![otp_challenge(), wrong()],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    assert_eq!(
        r.shown.len(),
        2,
        "one prompt, then the error: {:?}",
        r.shown
    );
    assert_eq!(h.authtok, None);
    // No code and no push: refused without asking toopherd.
    let r = run_in(
        forward(),
        vec![Ok("password")],
        vec![otp_challenge()],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    assert_eq!(r.requests.len(), 1, "{:?}", r.requests);
    assert_eq!(h.authtok, None);
}

#[test]
fn forward_pass_without_a_code_pushes_when_the_backend_can() {
    let mut h = Kept::default();
    let r = run_in(
        forward(),
        vec![Ok("pw")],
        vec![
            Ok(LoginResponse::Challenge {
                methods: vec![Method::Push, Method::Otp],
                push_pending: false,
            }),
            Ok(LoginResponse::Pending),
            Ok(LoginResponse::granted(Method::Push)),
            Ok(LoginResponse::GraceToken {
                token: Secret::new("t0k"),
            }),
        ],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::Success, "{:?}", r.log);
    assert_eq!(r.requests[1], LoginRequest::Push);
    assert_eq!(h.authtok.as_deref(), Some("pw"));
    // A remote login that passed asks for the session hook's token and keeps it.
    assert_eq!(r.requests.last(), Some(&LoginRequest::GraceToken));
    assert_eq!(h.grace_token.as_deref(), Some("t0k"));
}

#[test]
fn forward_pass_when_the_policy_needs_no_code_forwards_everything() {
    let mut h = Kept::default();
    let r = run_in(
        forward(),
        vec![Ok("pw123456")],
        vec![
            Ok(LoginResponse::Allow {
                reason: AllowReason::Exempt,
            }),
            no_token(),
        ],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.shown, ["prompt:Password: "]);
    assert_eq!(h.authtok.as_deref(), Some("pw123456"));
}

#[test]
fn forward_pass_asks_for_the_password_after_a_grant_at_begin() {
    // With autopush and an automated grant toopherd answers Begin with Granted: the
    // password is still asked for, and only that is handed on (never an empty one).
    let mut h = Kept::default();
    let r = run_in(
        Options {
            autopush: true,
            ..forward()
        },
        vec![Ok("my pw")],
        vec![Ok(LoginResponse::granted(Method::Push)), no_token()],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::Success, "{:?}", r.log);
    assert_eq!(r.shown, ["prompt:Password: "]);
    assert_eq!(h.authtok.as_deref(), Some("my pw"));
    // A person who goes away at that prompt ends the login, with nothing handed on.
    let mut h = Kept::default();
    let r = run_in(
        forward(),
        vec![Err(ConvError)],
        vec![Ok(LoginResponse::granted(Method::Push))],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::ConvErr);
    assert_eq!(h.authtok, None);
}

#[test]
fn forward_pass_refuses_a_two_way_registration_and_hands_on_nothing() {
    let mut h = Kept::default();
    let r = run_in(
        forward(),
        vec![],
        vec![Ok(LoginResponse::Register {
            registration_code: "ABCD-1234".into(),
            expires_in_secs: 300,
        })],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    assert_eq!(h.authtok, None);
    assert_eq!(r.shown.len(), 1, "{:?}", r.shown);
    assert!(r.shown[0].contains("keyboard-interactive"), "{:?}", r.shown);
    assert!(
        r.log
            .iter()
            .any(|(_, l)| l.contains("reason=registration_needs_prompts")),
        "{:?}",
        r.log
    );
}

#[test]
fn forward_pass_a_denial_at_begin_asks_nothing_and_hands_on_nothing() {
    let mut h = Kept::default();
    let r = run_in(forward(), vec![], vec![cancelled()], &mut h);
    assert_ne!(r.outcome, Outcome::Success);
    assert!(
        r.shown.iter().all(|s| !s.starts_with("prompt:")),
        "{:?}",
        r.shown
    );
    assert_eq!(h.authtok, None);
}

#[test]
fn forward_pass_an_empty_answer_sends_no_push() {
    for pending in [false, true] {
        let mut h = Kept::default();
        let mut daemon = vec![Ok(LoginResponse::Challenge {
            methods: vec![Method::Push, Method::Otp],
            push_pending: pending,
        })];
        if pending {
            // The push autopush already sent is called back.
            daemon.push(cancelled());
        }
        let r = run_in(forward(), vec![Ok("")], daemon, &mut h);
        assert_eq!(r.outcome, Outcome::AuthErr, "{:?}", r.log);
        assert!(
            !r.requests.contains(&LoginRequest::Push),
            "{:?}",
            r.requests
        );
        assert_eq!(
            r.requests.contains(&LoginRequest::Cancel),
            pending,
            "{:?}",
            r.requests
        );
        assert_eq!(h.authtok, None);
        assert!(
            r.shown.iter().any(|s| s.contains("password")),
            "{:?}",
            r.shown
        );
    }
}

#[test]
fn without_the_session_hook_no_grace_token_is_asked_for() {
    let mut h = Kept {
        no_session_hook: true,
        ..Kept::default()
    };
    let r = run_in(
        Options::default(),
        vec![Ok("123456")],
        vec![otp_challenge(), Ok(LoginResponse::granted(Method::Otp))],
        &mut h,
    );
    assert_eq!(r.outcome, Outcome::Success, "{:?}", r.log);
    assert!(
        !r.requests.contains(&LoginRequest::GraceToken),
        "{:?}",
        r.requests
    );
    assert_eq!(h.grace_token, None);
}
