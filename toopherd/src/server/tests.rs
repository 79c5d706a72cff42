//! Dispatch, authorisation and the login's life in process, without root: a temporary
//! store, a fake backend (or the local one), and peers of any uid.

use super::conn::Conn;
use super::dispatch;
use super::service::Service;
use super::session::MAX_ATTEMPTS_PER_LOGIN;
use crate::authz::Peer;
use crate::backend::local::LocalBackend;
use crate::backend::{
    Attempting, Backend, Begin, BoxFuture, CodesError, EnrolInLogin, Outcome, PhonePairing, Phones,
    PushTiming, ServiceError, Terminal,
};
use crate::config::Config;
use crate::logging::Log;
use crate::policy::session::PeerSession;
use crate::store::{LoginState, Shared, Store, StoreError};
use crate::totp::{code_at_step, step_of};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use toopher_ipc::{
    AdminRequest, AdminResponse, AllowReason, DenyReason, ErrorKind, ErrorReply, LoginContext,
    LoginRequest, LoginResponse, Method, PairBy, Request, Response, Secret,
};
use zeroize::Zeroizing;

const RIGHT: &str = "111111";
const WRONG: &str = "000000";
/// The fake backend answers this code with "the service could not be reached".
const UNREACHABLE: &str = "999999";

/// A backend that decides by the code typed; with `push`, its pushes stay pending; with
/// `phones`, it pairs (and counts what reaches the service).
struct Fake {
    push: bool,
    phones: Option<CountingPhones>,
}

/// Phones at a service that says yes to everything, counting the calls that reach it.
struct CountingPhones(Arc<AtomicUsize>);

impl CountingPhones {
    fn called<T: Send + 'static>(&self, t: T) -> BoxFuture<'_, Result<T, ServiceError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(t) })
    }
}

fn terminal(name: &str) -> Terminal {
    Terminal {
        id: "t1".into(),
        name: name.into(),
        requester_specified_id: "r1".into(),
        of_user: true,
    }
}

impl Phones for CountingPhones {
    fn pair<'a>(
        &'a self,
        _user: &'a str,
        _phrase_or_phone: Option<&'a str>,
        _country: Option<&'a str>,
        _qr: bool,
    ) -> BoxFuture<'a, Result<(PhonePairing, Option<String>), ServiceError>> {
        let p = PhonePairing {
            id: "p1".into(),
            enabled: false,
            pending: true,
            of_user: true,
        };
        self.called((p, None))
    }
    fn pairing<'a>(
        &'a self,
        _user: &'a str,
        pairing_id: &'a str,
    ) -> BoxFuture<'a, Result<PhonePairing, ServiceError>> {
        self.called(PhonePairing {
            id: pairing_id.into(),
            enabled: true,
            pending: false,
            of_user: true,
        })
    }
    fn reset_link<'a>(
        &'a self,
        _pairing_id: &'a str,
        _email: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, ServiceError>> {
        self.called(Some("https://reset.invalid/1".into()))
    }
    fn create_terminal<'a>(
        &'a self,
        _user: &'a str,
        name: &'a str,
        _requester_id: &'a str,
    ) -> BoxFuture<'a, Result<Terminal, ServiceError>> {
        self.called(terminal(name))
    }
    fn terminal<'a>(
        &'a self,
        _user: &'a str,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<Terminal, ServiceError>> {
        self.called(terminal("n"))
    }
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(10)
    }
}

impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn begin<'a>(&'a self, who: &'a Attempting, _state: LoginState) -> BoxFuture<'a, Begin> {
        Box::pin(async move {
            match who.ctx.user.as_str() {
                "nobody" => Begin::Settled(Outcome::NotEnrolled),
                "offline" => Begin::Settled(Outcome::Unreachable("fake: down".into())),
                _ => Begin::Challenge {
                    methods: vec![Method::Otp],
                    note: None,
                },
            }
        })
    }

    fn verify<'a>(
        &'a self,
        _who: &'a Attempting,
        code: &'a str,
        _pending: Option<&'a str>,
    ) -> BoxFuture<'a, Outcome> {
        let outcome = match code {
            RIGHT => Outcome::Granted {
                method: Method::Otp,
                automated: None,
                notice: None,
            },
            UNREACHABLE => Outcome::Unreachable("fake: down".into()),
            _ => Outcome::Denied {
                reason: DenyReason::WrongCode,
                message: None,
                log: "reason=wrong_code".into(),
                counted: Some(1),
            },
        };
        Box::pin(async move { outcome })
    }

    fn push_timing(&self) -> Option<PushTiming> {
        self.push.then_some(PushTiming {
            timeout: Duration::from_millis(300),
            poll_interval: Duration::from_millis(50),
        })
    }

    fn push<'a>(&'a self, _who: &'a Attempting) -> BoxFuture<'a, Outcome> {
        Box::pin(async {
            Outcome::Pending {
                request_id: "r1".into(),
            }
        })
    }

    fn poll<'a>(
        &'a self,
        _who: &'a Attempting,
        request_id: &'a str,
        _deadline: Instant,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            Outcome::Pending {
                request_id: request_id.to_owned(),
            }
        })
    }

    fn unsupported(&self, what: &str) -> String {
        format!("the fake backend has no {what}")
    }

    fn phones(&self) -> Option<&dyn Phones> {
        self.phones.as_ref().map(|p| p as &dyn Phones)
    }

    fn enrol_in_login<'a>(
        &'a self,
        _user: &'a str,
    ) -> BoxFuture<'a, Result<EnrolInLogin, StoreError>> {
        Box::pin(async { Ok(EnrolInLogin::PairPhrase) })
    }

    fn regenerate_recovery_codes<'a>(
        &'a self,
        _user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Zeroizing<String>>, CodesError>> {
        Box::pin(async { Err(CodesError::Unsupported("no codes".into())) })
    }
}

struct Setup {
    service: Arc<Service>,
    _dir: tempfile::TempDir,
}

fn setup(config: &str, backend: impl FnOnce(Shared) -> Box<dyn Backend>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("toopherd.sqlite3")).unwrap();
    let log = Arc::new(Log::stderr());
    let shared = Shared::new(Box::new(store), Arc::clone(&log));
    let config = Config::parse(config).unwrap();
    let backend = backend(shared.clone());
    Setup {
        service: Arc::new(Service::with_backend(config, log, shared, backend)),
        _dir: dir,
    }
}

fn fake(config: &str) -> Setup {
    setup(config, |_| {
        Box::new(Fake {
            push: false,
            phones: None,
        })
    })
}

fn root() -> Peer {
    Peer {
        uid: 0,
        name: Some("root".into()),
        in_admin_group: false,
    }
}

fn bob() -> Peer {
    Peer {
        uid: 1000,
        name: Some("bob".into()),
        in_admin_group: false,
    }
}

fn carol_admin() -> Peer {
    Peer {
        uid: 1001,
        name: Some("carol".into()),
        in_admin_group: true,
    }
}

fn ctx(user: &str) -> LoginContext {
    LoginContext {
        user: user.into(),
        service: "sshd".into(),
        rhost: Some("192.0.2.7".into()),
        tty: None,
        ruser: None,
        autopush: false,
        notify: true,
    }
}

/// A request of either family, and the answer of its family that dispatch gives it.
trait Asked: Into<Request> {
    type Answer: Answer;
    fn answer(r: Response) -> Self::Answer;
}

impl Asked for LoginRequest {
    type Answer = LoginResponse;
    fn answer(r: Response) -> LoginResponse {
        match r {
            Response::Login(r) => r,
            other => panic!("a login's request answered by {other:?}"),
        }
    }
}

impl Asked for AdminRequest {
    type Answer = AdminResponse;
    fn answer(r: Response) -> AdminResponse {
        match r {
            Response::Admin(r) => r,
            other => panic!("an administrative request answered by {other:?}"),
        }
    }
}

/// An answer of either family, as far as the tests look at errors.
trait Answer: std::fmt::Debug {
    fn as_error(&self) -> Option<&ErrorReply>;
}

impl Answer for LoginResponse {
    fn as_error(&self) -> Option<&ErrorReply> {
        LoginResponse::as_error(self)
    }
}

impl Answer for AdminResponse {
    fn as_error(&self) -> Option<&ErrorReply> {
        AdminResponse::as_error(self)
    }
}

async fn ask<R: Asked>(conn: &mut Conn, req: R) -> R::Answer {
    R::answer(dispatch(conn, req.into()).await)
}

fn begin(user: &str) -> LoginRequest {
    LoginRequest::Begin(ctx(user))
}

fn otp(code: &str) -> LoginRequest {
    LoginRequest::Otp {
        code: Secret::new(code),
    }
}

fn kind(r: &impl Answer) -> Option<ErrorKind> {
    r.as_error().map(|e| e.kind)
}

/// Every administrative request, for `user`.
fn every_admin_request(user: &str) -> Vec<AdminRequest> {
    let u = || user.to_string();
    vec![
        AdminRequest::RegistrationApprove {
            user: u(),
            code: Secret::new("123456"),
        },
        AdminRequest::Enroll {
            user: u(),
            force: false,
        },
        AdminRequest::Enroll {
            user: u(),
            force: true,
        },
        AdminRequest::Activate {
            user: u(),
            code: Secret::new("123456"),
        },
        AdminRequest::Status { user: u() },
        AdminRequest::Remove { user: u() },
        AdminRequest::Pair {
            user: u(),
            by: PairBy::Qr,
        },
        AdminRequest::PairStatus {
            user: u(),
            pairing_id: "p".into(),
        },
        AdminRequest::ResetLink {
            user: u(),
            email: None,
        },
        AdminRequest::SetEnabled {
            user: u(),
            enabled: false,
        },
        AdminRequest::Reset { user: u() },
        AdminRequest::TerminalCreate {
            user: u(),
            name: "n".into(),
            requester_id: "r".into(),
        },
        AdminRequest::TerminalShow {
            user: u(),
            id: "t".into(),
        },
        AdminRequest::RegenerateRecoveryCodes { user: u() },
        AdminRequest::Unlock { user: u() },
        AdminRequest::PolicyExplain {
            user: u(),
            service: "sshd".into(),
            rhost: None,
            session: None,
        },
        AdminRequest::GraceClear { user: u() },
    ]
}

#[tokio::test]
async fn a_user_is_refused_every_administrative_request_for_another_account() {
    let s = fake("");
    let mut all = every_admin_request("alice");
    all.push(AdminRequest::List);
    for req in all {
        let mut conn = Conn::new(Arc::clone(&s.service), bob());
        let r = ask(&mut conn, req.clone()).await;
        assert_eq!(kind(&r), Some(ErrorKind::Forbidden), "{req:?}: {r:?}");
    }
}

#[tokio::test]
async fn a_user_may_only_do_the_non_administrative_requests_for_itself() {
    let s = fake("");
    for req in every_admin_request("bob") {
        let mut conn = Conn::new(Arc::clone(&s.service), bob());
        let r = ask(&mut conn, req.clone()).await;
        let refused = kind(&r) == Some(ErrorKind::Forbidden);
        assert_eq!(refused, req.needs_admin(), "{req:?}: {r:?}");
    }
}

#[tokio::test]
async fn root_and_the_admin_group_pass_authorisation_for_every_request() {
    let s = fake("");
    for peer in [root(), carol_admin()] {
        let mut all = every_admin_request("alice");
        all.push(AdminRequest::List);
        for req in all {
            let mut conn = Conn::new(Arc::clone(&s.service), peer.clone());
            let r = ask(&mut conn, req.clone()).await;
            assert_ne!(kind(&r), Some(ErrorKind::Forbidden), "{req:?}: {r:?}");
        }
    }
}

/// The requests that act for an account at the Toopher service.
fn at_the_service(user: &str) -> Vec<AdminRequest> {
    every_admin_request(user)
        .into_iter()
        .filter(|r| {
            matches!(
                r,
                AdminRequest::Pair { .. }
                    | AdminRequest::ResetLink { .. }
                    | AdminRequest::TerminalCreate { .. }
                    | AdminRequest::RegistrationApprove { .. }
            )
        })
        .collect()
}

#[tokio::test]
async fn a_name_neither_the_system_nor_toopherd_knows_is_refused_at_the_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let phones = CountingPhones(Arc::clone(&calls));
    let s = setup("", move |_| {
        Box::new(Fake {
            push: false,
            phones: Some(phones),
        })
    });
    let asked = |user: &'static str| {
        let service = Arc::clone(&s.service);
        async move {
            let mut answers = Vec::new();
            for req in at_the_service(user) {
                let mut conn = Conn::new(Arc::clone(&service), root());
                answers.push((req.clone(), ask(&mut conn, req).await));
            }
            answers
        }
    };
    let answers = asked("nosuchuser").await;
    assert_eq!(answers.len(), 4);
    for (req, r) in &answers {
        let e = r.as_error().unwrap_or_else(|| panic!("{req:?}: {r:?}"));
        assert_eq!(e.kind, ErrorKind::NotFound, "{req:?}: {r:?}");
        assert_eq!(e.message, "no such user: nosuchuser", "{req:?}");
    }
    // Refused before the service was asked or a record made.
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    match ask(
        &mut conn,
        AdminRequest::Status {
            user: "nosuchuser".into(),
        },
    )
    .await
    {
        AdminResponse::Status(st) => assert!(!st.has_record(), "{st:?}"),
        other => panic!("{other:?}"),
    }

    // A system account goes on (root exists everywhere), and so does a name toopherd
    // holds a record of (an account deleted since, its Toopher pairing still managed).
    s.service
        .store
        .call(|st| st.record_pairing("deletedsince", "p9", 1))
        .await
        .unwrap();
    // The service is asked for pair and terminal create, and for a reset link where a
    // pairing is recorded (root has none: refused for that, not for its name).
    for (user, reaching) in [("root", 2), ("deletedsince", 3)] {
        let before = calls.load(Ordering::SeqCst);
        for (req, r) in asked(user).await {
            let refused = r
                .as_error()
                .is_some_and(|e| e.message.starts_with("no such user"));
            assert!(!refused, "{req:?}: {r:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst) - before, reaching, "{user}");
    }
}

#[tokio::test]
async fn invalid_user_names_are_refused_before_anything_else() {
    let s = fake("");
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    let r = ask(
        &mut conn,
        AdminRequest::Status {
            user: "../x".into(),
        },
    )
    .await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest));
    let r = ask(&mut conn, begin("a b")).await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest));
}

#[tokio::test]
async fn a_user_may_not_begin_another_users_login_but_its_own() {
    let s = fake("");
    let mut conn = Conn::new(Arc::clone(&s.service), bob());
    let r = ask(&mut conn, begin("alice")).await;
    assert_eq!(kind(&r), Some(ErrorKind::Forbidden), "{r:?}");
    // The refusal opened nothing: the codes of a login that was never begun are refused.
    let r = ask(&mut conn, otp(RIGHT)).await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "{r:?}");
    let r = ask(&mut conn, begin("bob")).await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
    let r = ask(&mut conn, otp(RIGHT)).await;
    assert!(matches!(r, LoginResponse::Granted { .. }), "{r:?}");
}

#[tokio::test]
async fn the_attempt_limit_ends_the_login() {
    let s = fake("");
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    assert!(matches!(
        ask(&mut conn, begin("alice")).await,
        LoginResponse::Challenge { .. }
    ));
    for _ in 0..MAX_ATTEMPTS_PER_LOGIN {
        let r = ask(&mut conn, otp(WRONG)).await;
        assert_eq!(r, LoginResponse::denied(DenyReason::WrongCode));
    }
    let r = ask(&mut conn, otp(RIGHT)).await;
    assert_eq!(r, LoginResponse::denied(DenyReason::RateLimited));
    // Ended: even the right code is no longer looked at.
    let r = ask(&mut conn, otp(RIGHT)).await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "{r:?}");
}

#[tokio::test]
async fn a_granted_login_is_over_and_the_connection_carries_no_second() {
    let s = fake("");
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    let r = ask(&mut conn, otp(RIGHT)).await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "no login yet: {r:?}");
    ask(&mut conn, begin("alice")).await;
    assert_eq!(
        ask(&mut conn, begin("alice")).await,
        LoginResponse::error(ErrorKind::BadRequest, "a login is already in progress")
    );
    assert!(matches!(
        ask(&mut conn, otp(RIGHT)).await,
        LoginResponse::Granted {
            method: Method::Otp,
            ..
        }
    ));
    let r = ask(&mut conn, otp(RIGHT)).await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "{r:?}");
    let r = ask(&mut conn, begin("alice")).await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "{r:?}");
}

#[tokio::test]
async fn an_unreachable_backend_is_failmode_s_to_decide() {
    for (failmode, allowed) in [("secure", false), ("safe", true)] {
        let s = fake(&format!("failmode = \"{failmode}\"\n"));
        // At the start of a login...
        let mut conn = Conn::new(Arc::clone(&s.service), root());
        let r = ask(&mut conn, begin("offline")).await;
        if allowed {
            assert_eq!(
                r,
                LoginResponse::Allow {
                    reason: AllowReason::Failmode
                }
            );
        } else {
            assert!(matches!(r, LoginResponse::Unavailable { .. }), "{r:?}");
        }
        // ...and at a code, which ends the login.
        let mut conn = Conn::new(Arc::clone(&s.service), root());
        ask(&mut conn, begin("alice")).await;
        let r = ask(&mut conn, otp(UNREACHABLE)).await;
        if allowed {
            assert_eq!(
                r,
                LoginResponse::Allow {
                    reason: AllowReason::Failmode
                }
            );
        } else {
            assert!(matches!(r, LoginResponse::Unavailable { .. }), "{r:?}");
        }
        let r = ask(&mut conn, otp(RIGHT)).await;
        assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "{failmode}: {r:?}");
    }
}

#[tokio::test]
async fn a_wrong_code_under_failmode_safe_is_still_a_denial() {
    let s = fake("failmode = \"safe\"\n");
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    ask(&mut conn, begin("alice")).await;
    assert_eq!(
        ask(&mut conn, otp(WRONG)).await,
        LoginResponse::denied(DenyReason::WrongCode)
    );
}

#[tokio::test]
async fn an_account_without_a_factor_is_availability_s_to_decide() {
    for (availability, allowed) in [("required", false), ("available", true)] {
        let s = fake(&format!("availability = \"{availability}\"\n"));
        let mut conn = Conn::new(Arc::clone(&s.service), root());
        let r = ask(&mut conn, begin("nobody")).await;
        if allowed {
            assert_eq!(
                r,
                LoginResponse::Allow {
                    reason: AllowReason::NotEnrolled
                }
            );
        } else {
            assert!(
                matches!(
                    r,
                    LoginResponse::Denied {
                        reason: DenyReason::NotEnrolled,
                        ..
                    }
                ),
                "{r:?}"
            );
        }
    }
}

#[tokio::test]
async fn push_is_unsupported_without_a_push_and_pending_with_one() {
    let s = fake("");
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    ask(&mut conn, begin("alice")).await;
    for req in [
        LoginRequest::Push,
        LoginRequest::Wait { timeout_ms: 10 },
        LoginRequest::Cancel,
    ] {
        let r = ask(&mut conn, req).await;
        assert_eq!(kind(&r), Some(ErrorKind::Unsupported), "{r:?}");
    }

    let s = setup("", |_| {
        Box::new(Fake {
            push: true,
            phones: None,
        })
    });
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    ask(&mut conn, begin("alice")).await;
    assert_eq!(
        ask(&mut conn, LoginRequest::Push).await,
        LoginResponse::Pending
    );
    assert_eq!(
        ask(&mut conn, LoginRequest::Push).await,
        LoginResponse::Pending
    );
    assert_eq!(
        ask(&mut conn, LoginRequest::Wait { timeout_ms: 50 }).await,
        LoginResponse::Pending
    );
    // Past the push's timeout: a denial the person may answer with a code instead.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        ask(&mut conn, LoginRequest::Wait { timeout_ms: 50 }).await,
        LoginResponse::denied(DenyReason::PushTimeout)
    );
    assert!(matches!(
        ask(&mut conn, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
}

#[tokio::test]
async fn the_local_backend_enrols_activates_and_verifies_in_process() {
    let s = setup("", |store| {
        Box::new(LocalBackend::new(
            store,
            crate::store::Limits {
                max_failures: 5,
                window: 300,
            },
            600,
        ))
    });
    // root is an account on every system, so `enroll` finds it.
    let mut admin = Conn::new(Arc::clone(&s.service), root());
    let e = match ask(
        &mut admin,
        AdminRequest::Enroll {
            user: "root".into(),
            force: false,
        },
    )
    .await
    {
        AdminResponse::Enrollment(e) => e,
        other => panic!("{other:?}"),
    };
    let secret = decode_base32(e.secret.expose());
    let step = step_of(crate::now());
    let first = code_at_step(&secret, step).unwrap();
    let r = ask(
        &mut admin,
        AdminRequest::Activate {
            user: "root".into(),
            code: Secret::new(first.as_str()),
        },
    )
    .await;
    assert_eq!(
        r,
        AdminResponse::Activated {
            user: "root".into()
        }
    );
    let mut login = Conn::new(Arc::clone(&s.service), root());
    let r = ask(&mut login, begin("root")).await;
    assert_eq!(
        r,
        LoginResponse::Challenge {
            methods: vec![Method::Otp, Method::RecoveryCode],
            push_pending: false
        }
    );
    // The code that activated the enrolment is used up.
    assert_eq!(
        ask(&mut login, otp(first.as_str())).await,
        LoginResponse::denied(DenyReason::WrongCode)
    );
    let next = code_at_step(&secret, step + 1).unwrap();
    let r = ask(&mut login, otp(next.as_str())).await;
    match r {
        LoginResponse::Granted {
            method: Method::Otp,
            notice,
        } => {
            // The failure of this login is its own: not told again.
            assert!(notice.is_none(), "{notice:?}");
        }
        other => panic!("{other:?}"),
    }
    // Push needs a backend that has one.
    let mut conn = Conn::new(Arc::clone(&s.service), root());
    ask(&mut conn, begin("root")).await;
    let r = ask(&mut conn, LoginRequest::Push).await;
    assert_eq!(kind(&r), Some(ErrorKind::Unsupported));
    match ask(
        &mut admin,
        AdminRequest::Status {
            user: "root".into(),
        },
    )
    .await
    {
        AdminResponse::Status(st) => {
            assert_eq!(st.backend, "local");
            assert!(st.last_failure_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    let r = ask(
        &mut admin,
        AdminRequest::Remove {
            user: "root".into(),
        },
    )
    .await;
    assert_eq!(
        r,
        AdminResponse::Removed {
            user: "root".into(),
            existed: true
        }
    );
}

fn decode_base32(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut acc, mut out) = (0u32, 0u64, Vec::new());
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A peer of another protocol version (a module and a daemon from different packages
/// during an upgrade) gets an error, never an answer it could take for a decision.
#[tokio::test]
async fn a_peer_of_another_protocol_version_is_refused_with_a_version_mismatch() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = fake("");
    let (mut client, server_end) = tokio::net::UnixStream::pair().unwrap();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(super::connection(
        Arc::clone(&s.service),
        server_end,
        0,
        stop_rx,
    ));
    let body = br#"{"v":2,"msg":{"type":"begin","user":"alice","service":"sshd"}}"#;
    client
        .write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    client.write_all(body).await.unwrap();
    let mut header = [0u8; 4];
    client.read_exact(&mut header).await.unwrap();
    let mut answer = vec![0u8; toopher_ipc::parse_header(header).unwrap()];
    client.read_exact(&mut answer).await.unwrap();
    match toopher_ipc::decode::<LoginResponse>(&answer).unwrap() {
        LoginResponse::Error(ErrorReply {
            kind: ErrorKind::Version,
            message,
        }) => assert!(message.contains("version mismatch"), "{message}"),
        other => panic!("{other:?}"),
    }
    // The connection is closed after the refusal.
    assert_eq!(client.read(&mut header).await.unwrap(), 0);
    task.await.unwrap();
}

#[tokio::test]
async fn a_backend_without_push_refuses_one_if_asked_anyway() {
    let s = setup("failmode = \"safe\"\n", |store| {
        Box::new(LocalBackend::new(
            store,
            crate::store::Limits {
                max_failures: 5,
                window: 300,
            },
            600,
        ))
    });
    assert!(s.service.backend.push_timing().is_none());
    let who = Attempting {
        ctx: ctx("alice"),
        own_failures: Vec::new(),
    };
    // A refusal: never "unreachable", which failmode = "safe" would let through.
    for outcome in [
        s.service.backend.push(&who).await,
        s.service.backend.poll(&who, "r1", Instant::now()).await,
    ] {
        assert!(
            matches!(
                outcome,
                Outcome::Denied {
                    reason: DenyReason::Policy,
                    counted: None,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
}

// The policy in the login: asked before the backend, and the grace book.

/// A root connection whose PAM process runs in audit session `session`, really as root
/// (real uid 0: the session counts for logins of `root`).
fn root_in(s: &Setup, session: Option<u32>) -> Conn {
    Conn::new(Arc::clone(&s.service), root())
        .with_audit_session(session.map(|id| PeerSession { id, real_uid: 0 }))
}

/// A root connection (a setuid sudo or su) in audit session `id`, run by `real_uid`.
fn run_by(s: &Setup, id: u32, real_uid: u32) -> Conn {
    Conn::new(Arc::clone(&s.service), root()).with_audit_session(Some(PeerSession { id, real_uid }))
}

fn begin_from(user: &str, rhost: Option<&str>) -> LoginRequest {
    let mut c = ctx(user);
    c.rhost = rhost.map(str::to_owned);
    LoginRequest::Begin(c)
}

#[tokio::test]
async fn a_trusted_network_allows_without_asking_the_backend() {
    let s = fake("[policy]\ntrusted_networks = [\"192.0.2.0/24\"]\n");
    // The fake backend would answer "unreachable" for this user: it is never asked.
    let r = ask(
        &mut root_in(&s, None),
        begin_from("offline", Some("192.0.2.7")),
    )
    .await;
    assert_eq!(
        r,
        LoginResponse::Allow {
            reason: AllowReason::Exempt
        }
    );
    let r = ask(
        &mut root_in(&s, None),
        begin_from("alice", Some("198.51.100.7")),
    )
    .await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
    // A user's own process cannot claim a remote host: its rhost is dropped.
    let mut conn = Conn::new(Arc::clone(&s.service), bob());
    let r = ask(&mut conn, begin_from("bob", Some("192.0.2.7"))).await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
}

#[tokio::test]
async fn the_policy_decides_what_an_account_without_a_factor_does() {
    // [policy] availability overrides the top-level key.
    let s = fake("availability = \"available\"\n[policy]\navailability = \"required\"\n");
    let r = ask(&mut root_in(&s, None), begin("nobody")).await;
    assert!(
        matches!(
            r,
            LoginResponse::Denied {
                reason: DenyReason::NotEnrolled,
                ..
            }
        ),
        "{r:?}"
    );
    let s = fake("availability = \"available\"\n");
    let r = ask(&mut root_in(&s, None), begin("nobody")).await;
    assert_eq!(
        r,
        LoginResponse::Allow {
            reason: AllowReason::NotEnrolled
        }
    );
    // A service that is exempt never asks.
    let s = fake("[policy.services.sshd]\nrequired = false\n");
    let r = ask(&mut root_in(&s, None), begin("offline")).await;
    assert_eq!(
        r,
        LoginResponse::Allow {
            reason: AllowReason::Exempt
        }
    );
}

#[tokio::test]
async fn a_grace_by_rhost_is_per_user_and_place_and_grace_clear_ends_it() {
    let s = fake("[policy]\ngrace_period = 60\n");
    let mut conn = root_in(&s, None);
    assert!(matches!(
        ask(&mut conn, begin("alice")).await,
        LoginResponse::Challenge { .. }
    ));
    assert!(matches!(
        ask(&mut conn, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
    let again = |user: &'static str, rhost: &'static str| {
        let s = Arc::clone(&s.service);
        async move {
            let mut conn = Conn::new(s, root());
            ask(&mut conn, begin_from(user, Some(rhost))).await
        }
    };
    assert_eq!(
        again("alice", "192.0.2.7").await,
        LoginResponse::Allow {
            reason: AllowReason::Exempt
        }
    );
    assert!(matches!(
        again("alice", "192.0.2.8").await,
        LoginResponse::Challenge { .. }
    ));
    assert!(matches!(
        again("bob", "192.0.2.7").await,
        LoginResponse::Challenge { .. }
    ));
    let r = ask(
        &mut root_in(&s, None),
        AdminRequest::GraceClear {
            user: "alice".into(),
        },
    )
    .await;
    assert_eq!(
        r,
        AdminResponse::GraceCleared {
            user: "alice".into(),
            cleared: 1
        }
    );
    assert!(matches!(
        again("alice", "192.0.2.7").await,
        LoginResponse::Challenge { .. }
    ));
}

#[tokio::test]
async fn the_session_hook_binds_a_grant_to_its_audit_session_once() {
    let s = fake("[policy]\ngrace_period = 60\n");
    let mut conn = root_in(&s, None);
    // Nothing granted yet: no token.
    assert!(matches!(
        ask(&mut conn, LoginRequest::GraceToken).await,
        LoginResponse::Error(ErrorReply {
            kind: ErrorKind::NotFound,
            ..
        })
    ));
    // root: the one account every system has, so its uid (0) is known.
    assert!(matches!(
        ask(&mut conn, begin("root")).await,
        LoginResponse::Challenge { .. }
    ));
    assert!(matches!(
        ask(&mut conn, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
    let LoginResponse::GraceToken { token } = ask(&mut conn, LoginRequest::GraceToken).await else {
        panic!("a token after a grant");
    };
    // A user's own process that passed its own login gets no token.
    let mut own = Conn::new(Arc::clone(&s.service), bob());
    assert!(matches!(
        ask(&mut own, begin("bob")).await,
        LoginResponse::Challenge { .. }
    ));
    assert!(matches!(
        ask(&mut own, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
    assert_eq!(
        kind(&ask(&mut own, LoginRequest::GraceToken).await),
        Some(ErrorKind::NotFound)
    );
    let bind = |token: &Secret| LoginRequest::BindSession {
        user: "root".into(),
        token: token.clone(),
    };
    // Only root's module binds, and only from inside an audit session.
    let mut users =
        Conn::new(Arc::clone(&s.service), bob()).with_audit_session(Some(PeerSession {
            id: 7,
            real_uid: 1000,
        }));
    assert_eq!(
        kind(&ask(&mut users, bind(&token)).await),
        Some(ErrorKind::Forbidden)
    );
    assert_eq!(
        kind(&ask(&mut root_in(&s, None), bind(&token)).await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(
        ask(&mut root_in(&s, Some(7)), bind(&token)).await,
        LoginResponse::Bound { session: 7 }
    );
    assert_eq!(
        kind(&ask(&mut root_in(&s, Some(8)), bind(&token)).await),
        Some(ErrorKind::NotFound),
        "single use"
    );
    // A login without an rhost in session 7 (sudo inside the SSH login) passes; 8 asks.
    let r = ask(&mut root_in(&s, Some(7)), begin_from("root", None)).await;
    assert_eq!(
        r,
        LoginResponse::Allow {
            reason: AllowReason::Exempt
        }
    );
    let r = ask(&mut root_in(&s, Some(8)), begin_from("root", None)).await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
    // Inside session 7, a su to root run by someone else (real uid 1000) asks.
    let r = ask(&mut run_by(&s, 7, 1000), begin_from("root", None)).await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
}

#[tokio::test]
async fn explain_names_the_rule_a_login_would_meet() {
    let s = fake("[policy]\ntrusted_networks = [\"192.0.2.0/24\"]\n");
    let explain = |rhost: Option<&str>| AdminRequest::PolicyExplain {
        user: "alice".into(),
        service: "sshd".into(),
        rhost: rhost.map(str::to_owned),
        session: None,
    };
    let AdminResponse::Explanation {
        decision, steps, ..
    } = ask(&mut root_in(&s, None), explain(Some("192.0.2.7"))).await
    else {
        panic!("an explanation");
    };
    assert_eq!(
        decision,
        ["outcome=allowed rule=trusted_network network=192.0.2.0/24"]
    );
    assert!(
        steps
            .iter()
            .any(|l| l.contains("192.0.2.7 is in 192.0.2.0/24")),
        "{steps:?}"
    );
    let r = ask(&mut root_in(&s, None), explain(Some("bad\nhost"))).await;
    assert_eq!(kind(&r), Some(ErrorKind::BadRequest));
}

// A grace never outlives a replaced second factor (review of issue 12).

#[tokio::test]
async fn a_grace_does_not_survive_enroll_force() {
    let s = fake("[policy]\ngrace_period = 60\n");
    let mut conn = root_in(&s, None);
    assert!(matches!(
        ask(&mut conn, begin("root")).await,
        LoginResponse::Challenge { .. }
    ));
    assert!(matches!(
        ask(&mut conn, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
    // Within the grace: no code.
    assert!(matches!(
        ask(&mut root_in(&s, None), begin("root")).await,
        LoginResponse::Allow { .. }
    ));
    // A plain enroll (a pending enrolment, nothing replaced) leaves it.
    let enroll = |force| AdminRequest::Enroll {
        user: "root".into(),
        force,
    };
    let r = ask(&mut root_in(&s, None), enroll(false)).await;
    assert!(matches!(r, AdminResponse::Enrollment(_)), "{r:?}");
    assert!(matches!(
        ask(&mut root_in(&s, None), begin("root")).await,
        LoginResponse::Allow { .. }
    ));
    let r = ask(&mut root_in(&s, None), enroll(true)).await;
    assert!(matches!(r, AdminResponse::Enrollment(_)), "{r:?}");
    let r = ask(&mut root_in(&s, None), begin("root")).await;
    assert!(
        matches!(r, LoginResponse::Challenge { .. }),
        "grace survived enroll --force: {r:?}"
    );
}

#[tokio::test]
async fn a_grace_does_not_survive_new_recovery_codes() {
    let s = setup("[policy]\ngrace_period = 60\n", |store| {
        Box::new(LocalBackend::new(
            store,
            crate::store::Limits {
                max_failures: 5,
                window: 300,
            },
            600,
        ))
    });
    let e = match ask(
        &mut root_in(&s, None),
        AdminRequest::Enroll {
            user: "root".into(),
            force: false,
        },
    )
    .await
    {
        AdminResponse::Enrollment(e) => e,
        other => panic!("{other:?}"),
    };
    let secret = decode_base32(e.secret.expose());
    let step = step_of(crate::now());
    let first = code_at_step(&secret, step).unwrap();
    let r = ask(
        &mut root_in(&s, None),
        AdminRequest::Activate {
            user: "root".into(),
            code: Secret::new(first.as_str()),
        },
    )
    .await;
    assert!(matches!(r, AdminResponse::Activated { .. }), "{r:?}");
    let mut login = root_in(&s, None);
    ask(&mut login, begin("root")).await;
    let next = code_at_step(&secret, step + 1).unwrap();
    let r = ask(&mut login, otp(next.as_str())).await;
    assert!(matches!(r, LoginResponse::Granted { .. }), "{r:?}");
    assert!(matches!(
        ask(&mut root_in(&s, None), begin("root")).await,
        LoginResponse::Allow { .. }
    ));
    let r = ask(
        &mut root_in(&s, None),
        AdminRequest::RegenerateRecoveryCodes {
            user: "root".into(),
        },
    )
    .await;
    assert!(matches!(r, AdminResponse::RecoveryCodes { .. }), "{r:?}");
    let r = ask(&mut root_in(&s, None), begin("root")).await;
    assert!(
        matches!(r, LoginResponse::Challenge { .. }),
        "grace survived new recovery codes: {r:?}"
    );
}

// Issue 14, the daemon side: a user that does not exist is an error everywhere.

const NO_SUCH: &str = "toopher-nosuchuser-t14";

#[tokio::test]
async fn requests_that_create_state_refuse_a_user_that_does_not_exist() {
    let s = fake("");
    let u = || NO_SUCH.to_string();
    for req in [
        AdminRequest::Enroll {
            user: u(),
            force: false,
        },
        AdminRequest::Enroll {
            user: u(),
            force: true,
        },
        AdminRequest::Activate {
            user: u(),
            code: Secret::new("123456"),
        },
        AdminRequest::RegenerateRecoveryCodes { user: u() },
        AdminRequest::SetEnabled {
            user: u(),
            enabled: false,
        },
        AdminRequest::SetEnabled {
            user: u(),
            enabled: true,
        },
    ] {
        let what = format!("{req:?}");
        let r = ask(&mut root_in(&s, None), req).await;
        let e = r.as_error().unwrap_or_else(|| panic!("{what}: {r:?}"));
        assert_eq!(e.kind, ErrorKind::NotFound, "{what}");
        assert_eq!(e.message, format!("no such user: {NO_SUCH}"), "{what}");
    }
    // Nothing was recorded for the name: a later account of that name inherits nothing.
    let users = s.service.store.call(|st| st.users()).await.unwrap();
    assert!(users.is_empty(), "{users:?}");
    // Cleaning up still goes through.
    let r = ask(&mut root_in(&s, None), AdminRequest::Remove { user: u() }).await;
    assert_eq!(
        r,
        AdminResponse::Removed {
            user: u(),
            existed: false
        }
    );
}

#[tokio::test]
async fn a_deleted_account_that_toopherd_knows_can_still_be_suspended_and_enabled() {
    let s = fake("");
    // A record of a name without an account: as if the account were deleted since.
    s.service
        .store
        .call(|st| st.set_suspended(NO_SUCH, true, crate::now()))
        .await
        .unwrap();
    for enabled in [false, true] {
        let r = ask(
            &mut root_in(&s, None),
            AdminRequest::SetEnabled {
                user: NO_SUCH.into(),
                enabled,
            },
        )
        .await;
        assert!(matches!(r, AdminResponse::Status(_)), "{enabled}: {r:?}");
    }
    // Enabled, toopherd holds nothing of it any more: the name is unknown again.
    let users = s.service.store.call(|st| st.users()).await.unwrap();
    assert!(users.is_empty(), "{users:?}");
    // Enrolling it is still refused: a record is no account.
    let r = ask(
        &mut root_in(&s, None),
        AdminRequest::Enroll {
            user: NO_SUCH.into(),
            force: false,
        },
    )
    .await;
    assert_eq!(kind(&r), Some(ErrorKind::NotFound));
}

#[tokio::test]
async fn an_active_enrolment_says_who_may_replace_it() {
    let s = setup("", |store| {
        Box::new(LocalBackend::new(
            store,
            crate::store::Limits {
                max_failures: 5,
                window: 300,
            },
            600,
        ))
    });
    let enroll = || AdminRequest::Enroll {
        user: "root".into(),
        force: false,
    };
    let e = match ask(&mut root_in(&s, None), enroll()).await {
        AdminResponse::Enrollment(e) => e,
        other => panic!("{other:?}"),
    };
    let code = code_at_step(&decode_base32(e.secret.expose()), step_of(crate::now())).unwrap();
    let r = ask(
        &mut root_in(&s, None),
        AdminRequest::Activate {
            user: "root".into(),
            code: Secret::new(code.as_str()),
        },
    )
    .await;
    assert!(matches!(r, AdminResponse::Activated { .. }), "{r:?}");
    let r = ask(&mut root_in(&s, None), enroll()).await;
    let e = r.as_error().unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(
        e.message
            .ends_with("root or the admin group can replace it with --force"),
        "{}",
        e.message
    );
}

// An audit-session grace never crosses uids inside one session (review of issue 12).

#[tokio::test]
async fn a_session_grace_counts_only_for_a_peer_really_run_by_the_user() {
    let s = fake("[policy]\ngrace_period = 60\n");
    // A sudo by someone (real uid 1000) for root inside session 5 passes its factor:
    // not root's own session place, so nothing is recorded for it.
    let mut su = run_by(&s, 5, 1000);
    assert!(matches!(
        ask(&mut su, begin_from("root", None)).await,
        LoginResponse::Challenge { .. }
    ));
    assert!(matches!(
        ask(&mut su, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
    let r = ask(&mut root_in(&s, Some(5)), begin_from("root", None)).await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
    // root's own login in session 5 (real uid 0) records a grace there ...
    let mut own = root_in(&s, Some(5));
    ask(&mut own, begin_from("root", None)).await;
    assert!(matches!(
        ask(&mut own, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
    let r = ask(&mut root_in(&s, Some(5)), begin_from("root", None)).await;
    assert!(matches!(r, LoginResponse::Allow { .. }), "{r:?}");
    // ... that a `su root` run by uid 1000 inside the same session does not get.
    let r = ask(&mut run_by(&s, 5, 1000), begin_from("root", None)).await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
    // A user the system does not know has no uid to match: never a session grace.
    let r = ask(
        &mut root_in(&s, Some(5)),
        begin_from("toopher-nosuchuser-t4", None),
    )
    .await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
}

#[tokio::test]
async fn a_grant_after_a_clear_leaves_no_grace() {
    let s = fake("[policy]\ngrace_period = 60\n");
    // The login begins; an administrator clears the user; then the code is typed.
    let mut conn = root_in(&s, None);
    assert!(matches!(
        ask(&mut conn, begin("root")).await,
        LoginResponse::Challenge { .. }
    ));
    let r = ask(
        &mut root_in(&s, None),
        AdminRequest::GraceClear {
            user: "root".into(),
        },
    )
    .await;
    assert!(matches!(r, AdminResponse::GraceCleared { .. }), "{r:?}");
    assert!(matches!(
        ask(&mut conn, otp(RIGHT)).await,
        LoginResponse::Granted { .. }
    ));
    // The login passed, but no grace was recorded, and no token carries one on.
    let r = ask(&mut root_in(&s, None), begin("root")).await;
    assert!(matches!(r, LoginResponse::Challenge { .. }), "{r:?}");
    assert_eq!(
        kind(&ask(&mut conn, LoginRequest::GraceToken).await),
        Some(ErrorKind::NotFound)
    );
}

/// A group lookup that answers slowly: while it runs, an administrator suspends the
/// account (written through a connection of its own, as `toopherctl disable` would be).
struct SuspendsWhileLooking {
    db: std::path::PathBuf,
    user: &'static str,
}

impl crate::policy::groups::GroupDb for SuspendsWhileLooking {
    fn primary_gid(&self, user: &str) -> Result<Option<u32>, String> {
        let mut store = Store::open(&self.db).map_err(|e| e.to_string())?;
        store
            .set_suspended(self.user, true, crate::now())
            .map_err(|e| e.to_string())?;
        Ok((user == self.user).then_some(4242))
    }
    fn group_list(&self, _user: &str, primary: u32) -> Result<Vec<u32>, String> {
        Ok(vec![primary])
    }
    fn gid_of(&self, _group: &str) -> Result<Option<u32>, String> {
        Ok(Some(4242))
    }
}

#[tokio::test]
async fn an_account_suspended_while_nss_answers_is_denied_not_challenged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("toopherd.sqlite3");
    let mut store = Store::open(&db).unwrap();
    let e = store.enroll("root", 600, crate::now(), false).unwrap();
    let secret = e.secret.clone();
    let code = code_at_step(&secret, step_of(crate::now())).unwrap();
    let limits = crate::store::Limits {
        max_failures: 5,
        window: 300,
    };
    store
        .activate("root", code.as_str(), crate::now(), limits)
        .unwrap();
    drop(store);
    let log = Arc::new(Log::stderr());
    let shared = Shared::new(Box::new(Store::open(&db).unwrap()), Arc::clone(&log));
    // A group rule: the policy asks NSS, off the async thread, and that takes a while.
    let config = Config::parse("[policy]\nrequired_groups = [\"admins\"]\n").unwrap();
    let backend = Box::new(LocalBackend::new(shared.clone(), limits, 600));
    let mut service = Service::with_backend(config.clone(), log, shared, backend);
    service.policy = crate::policy::Gate::with_db(
        crate::policy::Policy::new(config.policy.clone(), config.availability),
        Box::new(SuspendsWhileLooking {
            db: db.clone(),
            user: "root",
        }),
    );
    let mut login = Conn::new(Arc::new(service), root());
    // The account was active when the login began; by the time the backend is asked it
    // is suspended, and that is what counts.
    let r = ask(&mut login, begin("root")).await;
    assert!(
        !matches!(r, LoginResponse::Challenge { .. }),
        "a suspended account was asked for its code: {r:?}"
    );
    assert_eq!(r, login.suspended_answer());
}
