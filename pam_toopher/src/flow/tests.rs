use super::*;
use std::collections::VecDeque;

/// A conversation that answers prompts from a script and records everything shown.
#[derive(Default)]
struct Script {
    answers: VecDeque<Result<&'static str, ConvError>>,
    shown: Vec<String>,
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
    fn info(&mut self, text: &str) {
        self.shown.push(format!("info:{text}"));
    }
    fn error(&mut self, text: &str) {
        self.shown.push(format!("error:{text}"));
    }
}

/// A daemon that answers from a script and records the requests.
struct FakeDaemon {
    answers: VecDeque<Result<Response, FrameError>>,
    seen: std::rc::Rc<std::cell::RefCell<Vec<Request>>>,
}

impl Daemon for FakeDaemon {
    fn call(&mut self, req: &Request) -> Result<Response, FrameError> {
        self.seen.borrow_mut().push(req.clone());
        self.answers.pop_front().unwrap_or(Err(FrameError::Closed))
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
    }
}

struct Run {
    outcome: Outcome,
    shown: Vec<String>,
    requests: Vec<Request>,
    log: Vec<(Level, String)>,
}

fn run(
    opts: Options,
    prompts: Vec<Result<&'static str, ConvError>>,
    daemon: Option<Vec<Result<Response, FrameError>>>,
) -> Run {
    let mut conv = Script {
        answers: prompts.into(),
        ..Default::default()
    };
    let mut log = Lines::default();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    let outcome = authenticate(&ctx(), &opts, &mut conv, &mut log, move || match daemon {
        Some(answers) => Ok(FakeDaemon {
            answers: answers.into(),
            seen: seen2,
        }),
        None => Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
    });
    let requests = seen.borrow().clone();
    Run {
        outcome,
        shown: conv.shown,
        requests,
        log: log.0,
    }
}

fn otp_challenge() -> Result<Response, FrameError> {
    Ok(Response::Challenge {
        methods: vec![Method::Otp, Method::RecoveryCode],
        push_pending: false,
    })
}

fn wrong() -> Result<Response, FrameError> {
    Ok(Response::denied(DenyReason::WrongCode))
}

#[test]
fn right_code_is_success_and_the_code_is_never_logged() {
    let r = run(
        Options::default(),
        vec![Ok(" 123456 ")],
        Some(vec![
            otp_challenge(),
            Ok(Response::Granted {
                method: Method::Otp,
            }),
        ]),
    );
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.shown, vec![format!("prompt:{OTP_PROMPT}")]);
    assert_eq!(
        r.requests[1],
        Request::Otp {
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
    assert!(
        r.shown
            .contains(&"error:Incorrect code. Try again.".to_string())
    );
}

#[test]
fn wrong_then_right() {
    let r = run(
        Options::default(),
        vec![Ok("111111"), Ok("222222")],
        Some(vec![
            otp_challenge(),
            wrong(),
            Ok(Response::Granted {
                method: Method::RecoveryCode,
            }),
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
    // A daemon that accepts and then says nothing is unreachable too.
    let r = run(opts, vec![], Some(vec![Err(FrameError::Closed)]));
    assert_eq!(r.outcome, Outcome::Success);
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
        Some(vec![Ok(Response::denied(DenyReason::NotEnrolled))]),
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
        Some(vec![Ok(Response::Pending)]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    let r = run(
        Options::default(),
        vec![Ok("123456")],
        Some(vec![otp_challenge(), Ok(Response::Pending)]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
    let r = run(
        Options::default(),
        vec![],
        Some(vec![Ok(Response::Challenge {
            methods: vec![Method::Unknown],
            push_pending: false,
        })]),
    );
    assert_eq!(r.outcome, Outcome::AuthErr);
}

#[test]
fn denial_text_is_stripped_of_control_characters() {
    let r = run(
        Options::default(),
        vec![],
        Some(vec![Ok(Response::Denied {
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
            Ok(Response::denied(DenyReason::RateLimited)),
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
        Some(vec![Ok(Response::Allow {
            reason: AllowReason::NotEnrolled,
        })]),
    );
    assert_eq!(r.outcome, Outcome::Success);
}
