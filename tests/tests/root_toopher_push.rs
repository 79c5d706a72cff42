//! Push and OTP through the Toopher backend: the real module through the real libpam, a
//! real toopherd, and the Toopher API simulator over HTTPS. Needs root (toopherd lets only
//! root act for other accounts).

use std::time::{Duration, Instant};
use toopher_ipc::{Client, LoginContext, LoginRequest, LoginResponse, Timeouts};
use toopher_tests::daemon::Toopherd;
use toopher_tests::otp;
use toopher_tests::pam::{self, Stack};
use toopher_tests::sim::{AutoAnswer, Failure, FailureRule, Sim};

const CHOOSE: &str = "Press Enter to approve on your phone, or type a one-time password: ";
const AUTOPUSH: &str = "Approve on your phone and press Enter, or type a one-time password: ";

fn host() -> String {
    nix_hostname()
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn enter_sends_a_push_that_the_phone_approves() {
    let sim = Sim::start();
    sim.paired("alice");
    let d = sim.toopherd("", "");
    let answer = sim.answer_next_push(Some(None));
    let t = pam::login(
        &Stack::toopher(&d.socket, ""),
        "alice",
        &[""],
        Some("192.0.2.10"),
    );
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert_eq!(t.messages[0], (pam::PROMPT_ECHO_OFF, CHOOSE.into()));
    let id = answer.join().unwrap().expect("a push was sent");
    let req = sim
        .handle
        .requests()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(req.user_name, "alice");
    assert_eq!(
        req.terminal_name,
        format!("{} toopher-test from 192.0.2.10", host())
    );
    assert_eq!(req.terminal_requester_specified_id.len(), 32);
    assert_eq!(req.action_name, "Log In");
    assert!(req.automation_allowed);
    assert!(d.log().contains("auth user=alice service=toopher-test rhost=192.0.2.10 tty=- outcome=granted method=push automated=false"), "{}", d.log());
}

#[test]
fn a_denied_push_shows_the_reason_and_never_grants() {
    let sim = Sim::start();
    sim.paired("bob");
    let d = sim.toopherd("", "");
    let a1 = sim.answer_next_push(Some(Some("Not me\x1b[2J")));
    let stack = Stack::toopher(&d.socket, "prompts=2");
    // The second answer is typed after the first push was denied; deny that one too.
    let sim2 = sim.clone();
    let a2 = std::thread::spawn(move || {
        a1.join().unwrap();
        sim2.answer_next_push(Some(Some("Still not me")))
            .join()
            .unwrap()
    });
    let t = pam::login(&stack, "bob", &["", ""], None);
    a2.join().unwrap();
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:?}\n{}", d.log());
    assert_eq!(
        t.messages[1],
        (
            pam::PROMPT_ECHO_OFF,
            format!("Denied on your phone: Not me[2J.\n{CHOOSE}")
        )
    );
    assert!(t.shown("Still not me"));
    assert_eq!(
        d.log().matches("outcome=denied reason=push_denied").count(),
        2,
        "{}",
        d.log()
    );
}

#[test]
fn no_answer_then_a_one_time_password() {
    let sim = Sim::start();
    let user = sim.paired("carol");
    let d = sim.toopherd("", "push_timeout = 1.5");
    let secret = user.totp_secret.clone().unwrap();
    // The person reads the next code while the push times out.
    let code = otp::totp_at(&secret, otp::now());
    let t = pam::login(&Stack::toopher(&d.socket, ""), "carol", &["", &code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert_eq!(
        t.messages[1].1,
        "No answer from your phone. Type a one-time password instead.\nOne-time password: "
    );
    assert!(d.log().contains("outcome=timeout reason=push_timeout"));
    assert!(d.log().contains("outcome=granted method=otp"));
    let initiates = sim.calls("/authentication_requests/initiate");
    assert_eq!(initiates.len(), 2, "a push, then the OTP on a new request");
    assert_eq!(initiates[1].param("otp"), Some("<redacted>"));
    assert!(!d.log().contains(&code));
}

#[test]
fn autopush_a_code_typed_while_the_push_waits_settles_it() {
    let sim = Sim::start();
    let user = sim.paired("dave");
    let d = sim.toopherd("", "");
    let code = otp::totp_at(&user.totp_secret.clone().unwrap(), otp::now());
    let t = pam::login(
        &Stack::toopher(&d.socket, "autopush"),
        "dave",
        &[&code],
        None,
    );
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert_eq!(t.messages[0].1, AUTOPUSH);
    let pushes = sim.handle.requests();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let otp_auth = sim.calls(&format!(
        "/authentication_requests/{}/otp_auth",
        pushes[0].id
    ));
    assert_eq!(otp_auth.len(), 1, "{:?}", sim.handle.request_log());
    assert!(
        sim.calls("/authentication_requests/initiate")
            .iter()
            .all(|e| e.param("otp").is_none())
    );
}

#[test]
fn autopush_enter_after_approving() {
    let sim = Sim::start();
    sim.paired("erin");
    let d = sim.toopherd("", "");
    let answer = sim.answer_next_push(Some(None));
    let t = pam::login(&Stack::toopher(&d.socket, "autopush"), "erin", &[""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    answer.join().unwrap().unwrap();
    assert_eq!(sim.handle.requests().len(), 1);
}

#[test]
fn a_code_typed_first_goes_with_the_request_and_is_used_once() {
    let sim = Sim::start();
    let user = sim.paired("frank");
    let d = sim.toopherd("", "");
    let code = otp::totp_at(&user.totp_secret.clone().unwrap(), otp::now());
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let t = pam::login(&stack, "frank", &[&code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    let t = pam::login(&stack, "frank", &[&code], None);
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:?}");
    assert!(d.log().contains("detail=replayed_code"), "{}", d.log());
    assert_eq!(
        sim.calls("/authentication_requests/initiate").len(),
        1,
        "the replay never reached the API"
    );
    let wrong = otp::wrong_code(&user.totp_secret.unwrap());
    let t = pam::login(&stack, "frank", &[&wrong], None);
    assert_eq!(t.auth, pam::PAM_MAXTRIES);
}

#[test]
fn api_down_secure_denies_safe_allows() {
    let sim = Sim::start();
    sim.paired("gina");
    for (failure, what) in [
        (
            Failure::Status {
                status: 503,
                error_code: None,
                error_message: None,
            },
            "5xx",
        ),
        (Failure::Malformed { status: 200 }, "malformed json"),
        (Failure::Drop, "dropped connection"),
        (Failure::Delay { ms: 5_000 }, "slower than the timeout"),
    ] {
        sim.handle.clear_failures();
        sim.handle
            .inject_failure(FailureRule::new("/users", failure));
        let d = sim.toopherd("failmode = \"secure\"", "");
        let t = pam::login(&Stack::toopher(&d.socket, ""), "gina", &[""], None);
        assert_eq!(
            t.auth,
            pam::PAM_AUTHINFO_UNAVAIL,
            "{what}: {t:?}\n{}",
            d.log()
        );
        assert_eq!(t.prompts(), 0);
        assert!(
            d.log()
                .contains("outcome=unavailable reason=backend_unreachable failmode=secure"),
            "{what}"
        );
        let d = sim.toopherd("failmode = \"safe\"", "");
        let t = pam::login(&Stack::toopher(&d.socket, ""), "gina", &[""], None);
        assert_eq!(t.auth, pam::PAM_SUCCESS, "{what}: {t:?}\n{}", d.log());
        assert!(
            d.log()
                .contains("outcome=allowed reason=backend_unreachable failmode=safe"),
            "{what}"
        );
    }
    // Nothing listening at all, and a server whose certificate is not trusted.
    let dead = Toopherd::start_with(
        &sim.config("")
            .replace(sim.handle.base_url(), "https://127.0.0.1:9/v1"),
    );
    let t = pam::login(&Stack::toopher(&dead.socket, ""), "gina", &[""], None);
    assert_eq!(t.auth, pam::PAM_AUTHINFO_UNAVAIL, "{t:?}");
    // The reason is logged in logfmt: one quoted value with its spaces, not underscores.
    let line = dead
        .log()
        .lines()
        .find(|l| l.contains("reason=backend_unreachable"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no unreachable line:\n{}", dead.log()));
    let detail = line
        .split_once(" detail=\"")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("detail is not quoted: {line}"));
    assert!(detail.contains(' ') && detail.ends_with('"'), "{line}");
    assert!(
        !detail.contains("_to_"),
        "spaces turned into underscores: {line}"
    );
    let untrusted = Toopherd::start_with(
        &sim.config("")
            .lines()
            .filter(|l| !l.starts_with("ca_file"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let t = pam::login(&Stack::toopher(&untrusted.socket, ""), "gina", &[""], None);
    assert_eq!(
        t.auth,
        pam::PAM_AUTHINFO_UNAVAIL,
        "TLS failure: {t:?}\n{}",
        untrusted.log()
    );
}

#[test]
fn the_api_failing_during_a_push_follows_failmode_too() {
    let sim = Sim::start();
    sim.paired("hank");
    let d = sim.toopherd("failmode = \"secure\"", "");
    sim.handle.inject_failure(FailureRule::new(
        "/authentication_requests/initiate",
        Failure::Status {
            status: 502,
            error_code: None,
            error_message: None,
        },
    ));
    let t = pam::login(&Stack::toopher(&d.socket, ""), "hank", &[""], None);
    assert_eq!(t.auth, pam::PAM_AUTHINFO_UNAVAIL, "{t:?}");
}

#[test]
fn api_refusals_are_policy_decisions_named_in_the_log() {
    let sim = Sim::start();
    // 704: the user turned Toopher off.
    sim.handle
        .create_user(&toopher_tests::sim::NewUser {
            enabled: false,
            ..toopher_tests::sim::NewUser::paired("ivan")
        })
        .unwrap();
    // 707: pairing deactivated.
    let judy = sim.paired("judy");
    sim.handle
        .deactivate_pairing(judy.pairing_id.as_deref().unwrap())
        .unwrap();
    let d = sim.toopherd("", "");
    let stack = Stack::toopher(&d.socket, "");
    let t = pam::login(&stack, "ivan", &[""], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    assert!(t.shown("Toopher is disabled for this account."));
    assert!(
        d.log().contains("user=ivan")
            && d.log()
                .contains("reason=user_disabled detail=toopher_704_user_disabled"),
        "{}",
        d.log()
    );
    let t = pam::login(&stack, "judy", &[""], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}\n{}", d.log());
    assert!(
        d.log().contains("toopher_707_pairing_deactivated"),
        "{}",
        d.log()
    );
    // 705: unknown to the API: availability decides.
    let t = pam::login(&stack, "nobody-there", &[], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR);
    assert!(
        d.log().contains("user=nobody-there")
            && d.log().contains("outcome=denied reason=not_enrolled")
    );
    let open = sim.toopherd("availability = \"available\"", "");
    let t = pam::login(&Stack::toopher(&open.socket, ""), "nobody-there", &[], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS);
}

#[test]
fn requires_otp_switches_to_the_code() {
    let sim = Sim::start();
    let k = sim
        .handle
        .create_user(&toopher_tests::sim::NewUser {
            requires_otp: true,
            ..toopher_tests::sim::NewUser::paired("kim")
        })
        .unwrap();
    let d = sim.toopherd("", "");
    let code = otp::totp_at(&k.totp_secret.unwrap(), otp::now());
    let t = pam::login(&Stack::toopher(&d.socket, ""), "kim", &["", &code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert_eq!(
        t.messages[1].1,
        "A one-time password is required.\nOne-time password: "
    );
    assert!(d.log().contains("toopher_708_requires_otp"));
}

#[test]
fn rate_limited_by_the_api_backs_off_as_told() {
    let sim = Sim::start();
    sim.paired("lee");
    let d = sim.toopherd("", "");
    sim.handle.inject_failure(
        FailureRule::new(
            "/authentication_requests/initiate",
            Failure::RateLimit { retry_after: 1 },
        )
        .times(1),
    );
    let answer = sim.answer_next_push(Some(None));
    let start = std::time::Instant::now();
    let t = pam::login(&Stack::toopher(&d.socket, ""), "lee", &[""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    answer.join().unwrap().unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "did not wait for Retry-After"
    );
    assert_eq!(sim.calls("/authentication_requests/initiate").len(), 2);
}

#[test]
fn sudo_forbids_automation_and_names_the_action() {
    let sim = Sim::start();
    sim.paired("mia");
    let d = sim.toopherd("", "");
    let answer = sim.answer_next_push(Some(None));
    let stack = Stack::new(
        "sudo",
        &format!(
            "auth required {} socket={}\n",
            toopher_tests::module_path().display(),
            d.socket.display()
        ),
    );
    let t = pam::login(&stack, "mia", &[""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    let id = answer.join().unwrap().unwrap();
    let req = sim
        .handle
        .requests()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(req.action_name, "sudo");
    assert!(!req.automation_allowed);
}

#[test]
fn a_module_that_goes_away_ends_its_poll() {
    let sim = Sim::start();
    sim.paired("ned");
    let d = sim.toopherd("", "push_timeout = 30");
    let mut c = Client::connect(&d.socket, Timeouts::default()).unwrap();
    let begin = c.call(&LoginRequest::Begin(LoginContext {
        user: "ned".into(),
        service: "sshd".into(),
        rhost: None,
        tty: None,
        ruser: None,
        autopush: true,
        notify: false,
    }));
    assert!(
        matches!(
            begin,
            Ok(LoginResponse::Challenge {
                push_pending: true,
                ..
            })
        ),
        "{begin:?}"
    );
    // Start a long wait, then vanish in the middle of it.
    let socket = d.socket.clone();
    drop(socket);
    let mut raw = c;
    std::thread::spawn(move || {
        let _ = raw.call_within(
            &LoginRequest::Wait { timeout_ms: 10_000 },
            Duration::from_millis(500),
        );
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let polls = |sim: &Sim| {
        sim.calls("/authentication_requests/")
            .iter()
            .filter(|e| e.method == "GET")
            .count()
    };
    let before = polls(&sim);
    assert!(before > 0);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        polls(&sim),
        before,
        "toopherd kept polling for a client that left"
    );
}

#[test]
fn credentials_are_refused_when_others_may_read_them_but_systemd_credentials_are_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("t.sock");
    let base = format!(
        "socket = \"{}\"\nstate_dir = \"{}\"\n",
        socket.display(),
        dir.path().join("state").display()
    );
    let loose = dir.path().join("loose.toml");
    std::fs::copy(sim.credentials_file(), &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o640)).unwrap();
    let with_file = sim.config("").replace(
        &sim.credentials_file().display().to_string(),
        &loose.display().to_string(),
    );
    std::fs::write(dir.path().join("a.toml"), format!("{base}{with_file}")).unwrap();
    let out = std::process::Command::new(toopher_tests::artifact("toopherd"))
        .args(["--log", "stderr", "--config"])
        .arg(dir.path().join("a.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0640") && err.contains("chmod 600"), "{err}");
    assert!(!err.contains(sim.handle.consumer_secret()));
    // --check-config says so too, before anyone restarts the service with it.
    let check = std::process::Command::new(toopher_tests::artifact("toopherd"))
        .arg("--config")
        .arg(dir.path().join("a.toml"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(78), "{check:?}");
    // One line per check on stdout; the credentials' is a PROBLEM naming the fix.
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report
            .lines()
            .any(|l| l.trim_start().starts_with("PROBLEM") && l.contains("chmod 600")),
        "{report}"
    );
    assert!(!report.contains(sim.handle.consumer_secret()));

    // systemd LoadCredential=toopher:...: $CREDENTIALS_DIRECTORY/toopher, even group-readable.
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::copy(sim.credentials_file(), creds.join("toopher")).unwrap();
    std::fs::set_permissions(
        creds.join("toopher"),
        std::fs::Permissions::from_mode(0o440),
    )
    .unwrap();
    let without_file: String = sim
        .config("")
        .lines()
        .filter(|l| !l.starts_with("credentials_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("b.toml"), format!("{base}{without_file}")).unwrap();
    let mut child = std::process::Command::new(toopher_tests::artifact("toopherd"))
        .args(["--log", "stderr", "--config"])
        .arg(dir.path().join("b.toml"))
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "toopherd refused systemd credentials"
        );
        assert!(Instant::now() < until, "toopherd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn rate_limited_polls_only_slow_the_wait() {
    let sim = Sim::start();
    sim.paired("oona");
    let d = sim.toopherd("", "push_timeout = 20");
    sim.handle.inject_failure(
        FailureRule {
            method: Some("GET".into()),
            ..FailureRule::new(
                "/authentication_requests/*",
                Failure::RateLimit { retry_after: 30 },
            )
        }
        .times(4),
    );
    let answer = sim.answer_next_push(Some(None));
    let t = pam::login(&Stack::toopher(&d.socket, ""), "oona", &[""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    answer.join().unwrap().unwrap();
    let polls = sim
        .calls("/authentication_requests/")
        .into_iter()
        .filter(|e| e.method == "GET")
        .count();
    assert!(polls >= 5, "the 429s were not polled through: {polls}");
}

/// Opens a login for `user` on a new connection (as root, as the module does).
fn open_login(d: &Toopherd, user: &str) -> Client {
    let mut c = Client::connect(&d.socket, Timeouts::default()).unwrap();
    let begin = c.call(&LoginRequest::Begin(LoginContext {
        user: user.into(),
        service: "sshd".into(),
        rhost: None,
        tty: None,
        ruser: None,
        autopush: false,
        notify: false,
    }));
    assert!(
        matches!(begin, Ok(LoginResponse::Challenge { .. })),
        "{begin:?}"
    );
    c
}

#[test]
fn parallel_logins_get_no_more_guesses_and_no_more_uses_of_a_code() {
    let sim = Sim::start();
    let user = sim.paired("par");
    let secret = user.totp_secret.clone().unwrap();
    let d = sim.toopherd("", "");
    // 30 logins open at once, each typing a wrong code at the same moment: only
    // max_failures (5) may reach the API; the rest are refused by the rate limit.
    let wrong = otp::wrong_code(&secret);
    let clients: Vec<Client> = (0..30).map(|_| open_login(&d, "par")).collect();
    let answers: Vec<LoginResponse> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                let code = wrong.clone();
                s.spawn(move || {
                    c.call(&LoginRequest::Otp {
                        code: toopher_ipc::Secret::new(code.as_str()),
                    })
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let log = d.log();
    let wrong_answers = log.matches("reason=wrong_code").count();
    assert_eq!(wrong_answers, 5, "{answers:?}\n{log}");
    assert_eq!(log.matches("reason=rate_limited").count(), 25, "{log}");

    // One right code typed into many logins at once is accepted once.
    let sim2 = Sim::start();
    let user = sim2.paired("one");
    let secret = user.totp_secret.clone().unwrap();
    let d = sim2.toopherd("", "");
    let code = otp::totp_at(&secret, otp::now());
    let clients: Vec<Client> = (0..20).map(|_| open_login(&d, "one")).collect();
    let granted = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                let code = code.clone();
                s.spawn(move || {
                    c.call(&LoginRequest::Otp {
                        code: toopher_ipc::Secret::new(code.as_str()),
                    })
                    .unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|r| matches!(r, LoginResponse::Granted { .. }))
            .count()
    });
    assert_eq!(granted, 1, "{}", d.log());
}

/// The polls of pushes (`GET /authentication_requests/{id}`) the simulator answered.
fn polls(sim: &Sim) -> usize {
    sim.calls("/authentication_requests/")
        .iter()
        .filter(|e| e.method == "GET")
        .count()
}

#[test]
fn an_unanswered_push_costs_at_most_its_poll_budget() {
    // The schedule with poll_interval = 1 s: every 0.2 s for the first 10 s, so a 4 s
    // push has 20 points (the last one at its timeout), whatever the module's Waits.
    let sim = Sim::start();
    sim.paired("pia");
    let d = sim.toopherd("", "poll_interval = 1\npush_timeout = 4");
    let mut c = open_autopush(&d, "pia");
    let mut waits = 0;
    let answer = loop {
        // Short slices: a new Wait must not add a poll of its own.
        match c.call(&LoginRequest::Wait { timeout_ms: 300 }) {
            Ok(LoginResponse::Pending) => waits += 1,
            other => break other,
        }
        assert!(waits < 100, "the push never timed out");
    };
    assert!(
        matches!(
            answer,
            Ok(LoginResponse::Denied {
                reason: toopher_ipc::DenyReason::PushTimeout,
                ..
            })
        ),
        "{answer:?}\n{}",
        d.log()
    );
    assert!(waits >= 5, "the slices did not end: {waits}");
    let n = polls(&sim);
    assert!(n <= 20, "{n} polls for a 4 s push, budget 20");
    // Fewer only when one poll took longer than the 0.2 s between two points.
    assert!(
        n >= 10,
        "{n} polls: not polled quickly after the push went out"
    );
    assert_eq!(sim.calls("/authentication_requests/initiate").len(), 1);
}

#[test]
fn a_push_approved_quickly_costs_a_few_polls() {
    let sim = Sim::start();
    sim.paired("quinn");
    sim.handle.set_auto_answer(Some(AutoAnswer {
        grant: true,
        after_ms: 1000,
        reason: None,
        automated: false,
    }));
    let d = sim.toopherd("", "poll_interval = 1\npush_timeout = 60");
    let t = pam::login(&Stack::toopher(&d.socket, ""), "quinn", &[""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    let n = polls(&sim);
    // Points at 0.2, 0.4, ... s: the grant at 1 s is seen by the fifth or sixth poll
    // (a few more if the machine delays the simulator's grant).
    assert!(
        (4..=10).contains(&n),
        "{n} polls for a push approved after 1 s"
    );
    assert_eq!(sim.calls("/authentication_requests/initiate").len(), 1);
}

/// Begins a login whose push goes out at once (autopush), as root, as the module does.
fn open_autopush(d: &Toopherd, user: &str) -> Client {
    let mut c = Client::connect(&d.socket, Timeouts::default()).unwrap();
    let begin = c.call(&LoginRequest::Begin(LoginContext {
        user: user.into(),
        service: "sshd".into(),
        rhost: None,
        tty: None,
        ruser: None,
        autopush: true,
        notify: false,
    }));
    assert!(
        matches!(
            begin,
            Ok(LoginResponse::Challenge {
                push_pending: true,
                ..
            })
        ),
        "{begin:?}"
    );
    c
}
