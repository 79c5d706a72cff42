//! The socket server. One task per connection; a login lives on its connection, so a
//! client that goes away takes its login with it. Malformed, oversized or silent
//! clients get an error frame or a closed connection and never hold up anyone else.

use crate::authz::{self, Peer};
use crate::config::{Availability, Backend, Config, Failmode};
use crate::logging::{Abuse, Log, UNKNOWN_UID, field};
use crate::store::{Attempt, Limits, LoginState, Rejection, Store, StoreError, Verdict};
use crate::toopher::{Outcome, Preauth, ToopherBackend};
use crate::{now, totp};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use toopher_ipc::{
    AllowReason, DenyReason, Enrollment, ErrorKind, FailureNotice, FrameError, LoginContext,
    Method, Request, Response, Secret, decode, encode, parse_header,
};
use zeroize::Zeroizing;

/// A connection must send its first frame this soon after connecting.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Once a frame has begun, the rest of it (length prefix and body, at most
/// `MAX_FRAME_LEN` bytes) must arrive this soon: a trickling client is dropped.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Between messages a person is typing: a code at a login prompt, or scanning a QR code
/// and typing its first code in `toopherctl enroll`. Bounded all the same, and shorter
/// for non-root peers, whose connections do not carry logins of sshd or sudo.
const IDLE_TIMEOUT_ROOT: Duration = Duration::from_secs(600);
const IDLE_TIMEOUT_USER: Duration = Duration::from_secs(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often counts of suppressed log lines are written out.
const LOG_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Second-factor attempts on one connection, on top of the per-user rate limit.
const MAX_ATTEMPTS_PER_LOGIN: u32 = 10;
/// On shutdown, how long in-flight requests may take to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest single `Wait`: the module waits in slices so a vanished client ends the poll.
const MAX_WAIT_SLICE: Duration = Duration::from_secs(10);

pub struct Daemon {
    pub config: Config,
    store: Mutex<Store>,
    pub log: Log,
    issuer: String,
    toopher: Option<Arc<ToopherBackend>>,
    store_watch: StoreWatch,
    /// Per user, the turn to check a code with the Toopher API (see [`Daemon::turn_of`]).
    turns: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// How long a code waits for its user's turn before the login is refused as busy.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

impl Daemon {
    /// Fails when the configured backend cannot be set up (credentials, CA file).
    pub fn new(config: Config, store: Store, log: Log) -> Result<Daemon, String> {
        let issuer = match &config.issuer {
            Some(l) => l.0.clone(),
            None => host_name(),
        };
        let toopher = match config.backend {
            Backend::Toopher => Some(Arc::new(ToopherBackend::new(
                &config.toopher,
                &host_name(),
            )?)),
            Backend::Local => None,
        };
        if let Some(w) =
            crate::budget::warning(config.rate_limit.max_failures.0, config.rate_limit.window.0)
        {
            log.warn(&w);
        }
        Ok(Daemon {
            config,
            store: Mutex::new(store),
            log,
            issuer,
            toopher,
            store_watch: StoreWatch::default(),
            turns: Mutex::default(),
        })
    }

    /// One code check at a time per user with the Toopher backend: the rate-limit check,
    /// the API call and the recording of its result are one step, so parallel connections
    /// can neither each guess inside one window nor each use one code (the local backend
    /// gets the same from its single SQLite transaction). `None` when the turn did not
    /// come within [`TURN_TIMEOUT`].
    async fn turn_of(&self, user: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
            // Forget the turns nobody holds or waits for.
            turns.retain(|_, t| Arc::strong_count(t) > 1);
            Arc::clone(turns.entry(user.to_owned()).or_default())
        };
        tokio::time::timeout(TURN_TIMEOUT, turn.lock_owned())
            .await
            .ok()
    }

    fn limits(&self) -> Limits {
        Limits {
            max_failures: self.config.rate_limit.max_failures.0,
            window: self.config.rate_limit.window.0,
        }
    }

    /// Runs a database call off the async workers.
    async fn db<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut store = me
                .store
                .lock()
                .map_err(|_| StoreError::Io(std::io::Error::other("store lock poisoned")))?;
            let commits = store.commits();
            let result = f(&mut store);
            me.store_watch.after_call(&me.log, &mut store, commits);
            result
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
    }
}

/// Accepts connections until `shutdown` fires, then lets in-flight requests finish.
/// The connection limits fit the process's descriptor limit (RLIMIT_NOFILE).
pub async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = admission::Limits::fitting(open_file_limit());
    serve_with(listener, daemon, limits, shutdown).await
}

/// [`serve`] with explicit connection limits.
async fn serve_with(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    limits: admission::Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let admission = Admission::new(limits);
    daemon.log.info(&format!(
        "connection limits: {} in all, {} of them reserved for root, {} per other uid",
        limits.total, limits.root_reserved, limits.per_uid
    ));
    let refusals = RefusalFrames::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut flush = tokio::time::interval(LOG_FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some((uid, slot)) = admit(&daemon, &admission, &refusals, &stream) else {
                        continue;
                    };
                    let d = Arc::clone(&daemon);
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        connection(d, stream, uid, stop).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of descriptors or memory: pause rather than spin.
                    daemon.log.abuse(UNKNOWN_UID, Abuse::AtLimit, &format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = flush.tick() => daemon.log.flush_suppressed(false),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        daemon
            .log
            .warn("shutdown: requests still running after the drain timeout were cut off");
        tasks.abort_all();
    }
    daemon.log.flush_suppressed(true);
}

/// The soft RLIMIT_NOFILE; 1024 (the usual default) when it cannot be read.
fn open_file_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    rl.rlim_cur
}

/// The answers to refused connections, encoded once: refusing costs no allocation.
struct RefusalFrames {
    per_uid: Option<Zeroizing<Vec<u8>>>,
    busy: Option<Zeroizing<Vec<u8>>>,
}

impl RefusalFrames {
    fn new() -> Self {
        let frame = |msg: &str| encode(&Response::error(ErrorKind::Busy, msg)).ok();
        RefusalFrames {
            per_uid: frame("too many connections from this user"),
            busy: frame("toopherd is busy"),
        }
    }
}

/// Admits a new connection or refuses it on the spot: no task, no waiting, one
/// non-blocking write of a short error frame into the fresh socket's empty buffer.
fn admit(
    daemon: &Daemon,
    admission: &Arc<Admission>,
    refusals: &RefusalFrames,
    stream: &UnixStream,
) -> Option<(u32, admission::Slot)> {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            daemon.log.abuse(
                UNKNOWN_UID,
                Abuse::BadInput,
                &format!("connection without peer credentials refused: {e}"),
            );
            return None;
        }
    };
    match admission.try_admit(uid) {
        Ok(slot) => Some((uid, slot)),
        Err(refusal) => {
            daemon.log.abuse(
                uid,
                Abuse::AtLimit,
                &format!("uid={uid}: connection refused: {}", refusal.describe()),
            );
            let frame = match refusal {
                Refusal::PerUid => &refusals.per_uid,
                Refusal::NonRootShare | Refusal::Total => &refusals.busy,
            };
            if let Some(f) = frame {
                let _ = stream.try_write(f);
            }
            None
        }
    }
}

/// Why no frame was read.
enum ReadError {
    /// The peer closed (or the socket failed): nothing to answer.
    Closed,
    /// Nothing arrived within the wait for a new frame.
    Idle,
    /// A frame began but did not complete within [`FRAME_TIMEOUT`].
    Stalled,
    /// A frame that breaks the protocol (too large).
    Frame(FrameError),
}

/// Reads one frame: its first byte within `idle`, the rest within [`FRAME_TIMEOUT`].
async fn read_body(
    stream: &mut UnixStream,
    idle: Duration,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let mut header = [0u8; 4];
    let got = match tokio::time::timeout(idle, stream.read(&mut header)).await {
        Err(_) => return Err(ReadError::Idle),
        Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadError::Closed),
        Ok(Ok(n)) => n,
    };
    let rest = async {
        stream.read_exact(&mut header[got..]).await?;
        let len = parse_header(header)?;
        let mut body = Zeroizing::new(vec![0u8; len]);
        stream.read_exact(&mut body).await?;
        Ok::<_, FrameError>(body)
    };
    match tokio::time::timeout(FRAME_TIMEOUT, rest).await {
        Err(_) => Err(ReadError::Stalled),
        Ok(Err(FrameError::Closed | FrameError::Io(_))) => Err(ReadError::Closed),
        Ok(Err(e)) => Err(ReadError::Frame(e)),
        Ok(Ok(body)) => Ok(body),
    }
}

async fn send(stream: &mut UnixStream, resp: &Response) -> Result<(), String> {
    let frame = encode(resp).map_err(|e| e.to_string())?;
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("write timed out".into()),
    }
}

async fn connection(
    d: Arc<Daemon>,
    mut stream: UnixStream,
    uid: u32,
    mut stop: watch::Receiver<bool>,
) {
    let admin_group = d.config.admin_group.as_ref().map(|g| g.0.clone());
    let peer = match tokio::task::spawn_blocking(move || Peer::lookup(uid, admin_group.as_deref()))
        .await
    {
        Ok(p) => p,
        Err(_) => return,
    };
    let mut conn = Conn {
        d: Arc::clone(&d),
        peer,
        login: None,
    };
    let idle = if uid == 0 {
        IDLE_TIMEOUT_ROOT
    } else {
        IDLE_TIMEOUT_USER
    };
    let mut first = true;
    loop {
        let wait = if first { FIRST_FRAME_TIMEOUT } else { idle };
        let read = tokio::select! {
            r = read_body(&mut stream, wait) => r,
            _ = stop.changed() => return,
        };
        let body = match read {
            Ok(body) => body,
            Err(ReadError::Closed) => return,
            // A person who never typed their code: not abuse, nothing to log.
            Err(ReadError::Idle) if !first => return,
            Err(ReadError::Idle) => {
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!(
                        "{}: dropped a connection that sent nothing for {} s",
                        conn.peer.describe(),
                        FIRST_FRAME_TIMEOUT.as_secs()
                    ),
                );
                return;
            }
            Err(ReadError::Stalled) => {
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!(
                        "{}: dropped a connection stalled in the middle of a frame",
                        conn.peer.describe()
                    ),
                );
                return;
            }
            Err(ReadError::Frame(e)) => {
                let kind = match e {
                    FrameError::TooLarge(_) => ErrorKind::TooLarge,
                    _ => ErrorKind::BadRequest,
                };
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!("{}: refused a bad frame: {e}", conn.peer.describe()),
                );
                let _ = send(&mut stream, &Response::error(kind, e.to_string())).await;
                return;
            }
        };
        first = false;
        let req: Request = match decode(&body) {
            Ok(r) => r,
            Err(e) => {
                let kind = match e {
                    FrameError::Version(_) => ErrorKind::Version,
                    _ => ErrorKind::BadRequest,
                };
                d.log.abuse(
                    uid,
                    Abuse::BadInput,
                    &format!("{}: refused a bad message: {e}", conn.peer.describe()),
                );
                let _ = send(&mut stream, &Response::error(kind, e.to_string())).await;
                return;
            }
        };
        drop(body);
        // A client that goes away mid-request (a module giving up on a push) ends the work.
        let resp = tokio::select! {
            r = conn.handle(req) => r,
            _ = peer_gone(&stream) => return,
        };
        if let Err(e) = send(&mut stream, &resp).await {
            d.log.abuse(
                uid,
                Abuse::BadInput,
                &format!("{}: answer not sent: {e}", conn.peer.describe()),
            );
            return;
        }
    }
}

mod admin;
pub mod admission;
mod registration;
mod store_watch;
mod unlock;

use admission::{Admission, Refusal};
use store_watch::StoreWatch;

/// A second-factor result the store could not record.
struct NotRecorded;

/// Resolves when the peer closes its end (or sends before its answer, which the
/// protocol does not allow).
async fn peer_gone(stream: &UnixStream) {
    let mut probe = [0u8; 1];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            _ => return,
        }
    }
}

struct Login {
    ctx: LoginContext,
    attempts: u32,
    done: bool,
    /// Toopher backend: the push waiting for the person.
    push: Option<PendingPush>,
    phase: Phase,
    /// Failures recorded in this login: the person saw them, so no notice repeats them.
    own_failures: Vec<i64>,
}

/// Where a login stands. Most logins stay in `Challenge`; an account without a factor
/// under `enroll = "two-way"` goes through registration and enrolment first.
#[derive(Clone, PartialEq, Eq)]
enum Phase {
    Challenge,
    /// A registration code was shown; waiting for the response code.
    Registering,
    /// Registered (local backend): the first TOTP code activates the new enrolment.
    EnrollingTotp,
    /// Registered (toopher backend): waiting for the app's pairing phrase.
    AwaitingPhrase,
    /// The pairing was created; waiting for the phone to confirm it.
    Pairing {
        id: String,
        deadline: Instant,
    },
}

#[derive(Clone)]
struct PendingPush {
    id: String,
    deadline: Instant,
}

impl Login {
    fn new(ctx: LoginContext) -> Login {
        Login {
            ctx,
            attempts: 0,
            done: false,
            push: None,
            phase: Phase::Challenge,
            own_failures: Vec::new(),
        }
    }
}

struct Conn {
    d: Arc<Daemon>,
    peer: Peer,
    login: Option<Login>,
}

/// The failures a grant tells the person about, for its log line.
fn told(notice: Option<&FailureNotice>) -> String {
    notice.map_or_else(String::new, |n| format!(" told_failures={}", n.failures))
}

fn internal(d: &Daemon, what: &str, e: &StoreError) -> Response {
    if e.is_failure() {
        d.store_watch.failed(&d.log, what, e);
    } else {
        d.log.err(&format!("{what}: {e}"));
    }
    Response::error(ErrorKind::Internal, "internal error; see toopherd's log")
}

impl Conn {
    async fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Begin(ctx) => self.begin(ctx).await,
            Request::Otp { code } if self.in_phase(&Phase::EnrollingTotp) => {
                self.activate_in_login(code).await
            }
            Request::Otp { code } if self.d.toopher.is_some() => self.otp_toopher(code).await,
            Request::Otp { code } => self.otp(code).await,
            Request::Push if self.d.toopher.is_some() => self.push().await,
            Request::Wait { timeout_ms } if self.pairing_in_login() => {
                self.wait_for_pairing(timeout_ms).await
            }
            Request::Wait { timeout_ms } if self.d.toopher.is_some() => self.wait(timeout_ms).await,
            Request::Cancel if self.d.toopher.is_some() => self.cancel(),
            Request::Push | Request::Wait { .. } | Request::Cancel => Response::error(
                ErrorKind::Unsupported,
                "push needs backend = \"toopher\"; this toopherd uses the local backend",
            ),
            Request::RegistrationResponse { code } => self.registration_response(code).await,
            Request::RegistrationApprove { user, code } => {
                self.registration_approve(user, code).await
            }
            Request::PairPhrase { phrase } => self.pair_in_login(phrase).await,
            Request::Pair { user, by } => self.pair(user, by).await,
            Request::PairStatus { user, pairing_id } => self.pair_status(user, pairing_id).await,
            Request::List => self.list().await,
            Request::ResetLink { user, email } => self.reset_link(user, email).await,
            Request::SetEnabled { user, enabled } => self.set_enabled(user, enabled).await,
            Request::Reset { user } => self.reset(user).await,
            Request::TerminalCreate {
                user,
                name,
                requester_id,
            } => self.terminal_create(user, name, requester_id).await,
            Request::TerminalShow { user, id } => self.terminal_show(user, id).await,
            Request::RegenerateRecoveryCodes { user } => self.regenerate_recovery_codes(user).await,
            Request::Unlock { user } => self.unlock(user).await,
            Request::Enroll { user, force } => self.enroll(user, force).await,
            Request::Activate { user, code } => self.activate(user, code).await,
            Request::Status { user } => self.status(user).await,
            Request::Remove { user } => self.remove(user).await,
        }
    }

    /// Refusal (logged) unless the peer may act for `user`, and `admin` when required.
    fn authorize(&self, request: &str, user: &str, admin: bool) -> Option<Response> {
        if !authz::valid_user_name(user) {
            return Some(Response::error(ErrorKind::BadRequest, "invalid user name"));
        }
        let allowed = if admin {
            self.peer.is_admin()
        } else {
            self.peer.may_act_for(user)
        };
        if allowed {
            return None;
        }
        self.d.log.abuse(
            self.peer.uid,
            Abuse::BadInput,
            &format!(
                "refused request={request} user={} by={}",
                field(Some(user)),
                self.peer.describe()
            ),
        );
        let why = if admin {
            format!("{request} for {user} needs root or the admin group")
        } else {
            format!(
                "{} may only {request} for its own account",
                self.peer.describe()
            )
        };
        Some(Response::error(ErrorKind::Forbidden, why))
    }

    fn log_auth(&self, ctx: &LoginContext, outcome: &str, extra: &str) {
        // A login asked for by a user's own process (not the module inside sshd, sudo or
        // login, which run as root) says so, so it cannot pass for one of theirs.
        let by = if self.peer.uid == 0 {
            String::new()
        } else {
            format!(" by={}", self.peer.describe())
        };
        let line = format!(
            "auth user={} service={} rhost={} tty={} outcome={outcome}{}{extra}{by}",
            field(Some(&ctx.user)),
            field(Some(&ctx.service)),
            field(ctx.rhost.as_deref()),
            field(ctx.tty.as_deref()),
            if extra.is_empty() { "" } else { " " },
        );
        if outcome == "granted" || outcome == "allowed" {
            self.d.log.info(&line);
        } else {
            self.d.log.warn(&line);
        }
    }

    async fn begin(&mut self, mut ctx: LoginContext) -> Response {
        if self.login.is_some() {
            return Response::error(ErrorKind::BadRequest, "a login is already in progress");
        }
        if let Some(refusal) = self.authorize("begin", &ctx.user, false) {
            return refusal;
        }
        let too_long = |s: &Option<String>| s.as_ref().is_some_and(|v| v.len() > 256);
        if ctx.service.is_empty()
            || ctx.service.len() > 64
            || too_long(&ctx.rhost)
            || too_long(&ctx.tty)
            || too_long(&ctx.ruser)
            || [
                Some(&ctx.service),
                ctx.rhost.as_ref(),
                ctx.tty.as_ref(),
                ctx.ruser.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|v| v.chars().any(char::is_control))
        {
            return Response::error(ErrorKind::BadRequest, "invalid login context");
        }
        // Where a login comes from is known only to the module inside sshd, sudo or login,
        // which run as root. A user's own process could invent remote hosts for the failure
        // record, or use up the "failures since your last login" notice before the real
        // login shows it: from it, neither is taken.
        if self.peer.uid != 0 {
            ctx.rhost = None;
            ctx.tty = None;
            ctx.ruser = None;
            ctx.notify = false;
        }
        if self.d.toopher.is_some() {
            return self.begin_toopher(ctx).await;
        }
        let limits = self.d.limits();
        let user = ctx.user.clone();
        let state = match self
            .d
            .db(move |s| s.login_state(&user, now(), limits))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.log_auth(&ctx, "error", "reason=internal");
                return internal(&self.d, "begin", &e);
            }
        };
        match state {
            LoginState::Active => {
                self.login = Some(Login::new(ctx));
                Response::Challenge {
                    methods: vec![Method::Otp, Method::RecoveryCode],
                    push_pending: false,
                }
            }
            // A recovery code still lifts the lock; nothing else is looked at.
            LoginState::RateLimited { until } => {
                self.log_auth(
                    &ctx,
                    "challenge",
                    &format!("reason=rate_limited until={until} methods=recovery_code"),
                );
                self.login = Some(Login::new(ctx));
                Response::Challenge {
                    methods: vec![Method::RecoveryCode],
                    push_pending: false,
                }
            }
            LoginState::Suspended => self.suspended(&ctx),
            LoginState::NotEnrolled => self.no_factor(ctx).await,
        }
    }

    fn suspended(&self, ctx: &LoginContext) -> Response {
        self.log_auth(
            ctx,
            "denied",
            "reason=user_disabled detail=suspended_by_admin",
        );
        Response::Denied {
            reason: DenyReason::UserDisabled,
            message: Some(
                "The second factor of this account is suspended; ask an administrator.".into(),
            ),
        }
    }

    /// The toopher backend, or the answer that this toopherd has none.
    fn toopher(&self, what: &str) -> Result<Arc<ToopherBackend>, Box<Response>> {
        self.d.toopher.clone().ok_or_else(|| {
            Box::new(Response::error(
                ErrorKind::Unsupported,
                format!("{what} needs backend = \"toopher\"; this toopherd uses the local backend"),
            ))
        })
    }

    fn in_phase(&self, phase: &Phase) -> bool {
        self.login
            .as_ref()
            .is_some_and(|l| !l.done && &l.phase == phase)
    }

    fn pairing_in_login(&self) -> bool {
        self.login
            .as_ref()
            .is_some_and(|l| !l.done && matches!(l.phase, Phase::Pairing { .. }))
    }

    /// An account without a second factor: `availability` decides.
    fn not_enrolled(&self, ctx: &LoginContext) -> Response {
        match self.d.config.availability {
            Availability::Required => {
                self.log_auth(ctx, "denied", "reason=not_enrolled");
                Response::Denied {
                    reason: DenyReason::NotEnrolled,
                    message: Some(
                        "Two-factor authentication is required, but this account is not enrolled."
                            .into(),
                    ),
                }
            }
            Availability::Available => {
                self.log_auth(ctx, "allowed", "reason=not_enrolled");
                Response::Allow {
                    reason: AllowReason::NotEnrolled,
                }
            }
        }
    }

    /// The backend service could not be reached: `failmode` decides (and only here).
    fn unreachable(&self, ctx: &LoginContext, detail: &str) -> Response {
        let detail = field(Some(detail));
        match self.d.config.failmode {
            Failmode::Safe => {
                self.log_auth(
                    ctx,
                    "allowed",
                    &format!(
                        "reason=backend_unreachable failmode=safe NO_SECOND_FACTOR detail={detail}"
                    ),
                );
                Response::Allow {
                    reason: AllowReason::Failmode,
                }
            }
            Failmode::Secure => {
                self.log_auth(
                    ctx,
                    "unavailable",
                    &format!("reason=backend_unreachable failmode=secure detail={detail}"),
                );
                Response::Unavailable {
                    detail: "the second-factor service could not be reached".into(),
                }
            }
        }
    }

    /// The user's failures refuse attempts right now (logged), or an internal error.
    async fn rate_limit_refusal(&self, ctx: &LoginContext) -> Option<Response> {
        let limits = self.d.limits();
        let user = ctx.user.clone();
        match self
            .d
            .db(move |s| s.rate_limited(&user, now(), limits))
            .await
        {
            Ok(None) => None,
            Ok(Some(until)) => {
                self.log_auth(
                    ctx,
                    "refused",
                    &format!("reason=rate_limited until={until}"),
                );
                Some(Response::denied(DenyReason::RateLimited))
            }
            Err(e) => Some(internal(&self.d, "rate limit", &e)),
        }
    }

    /// Where this login comes from, for the failure log and the notice.
    fn attempt_of(&self) -> (Option<String>, Vec<i64>, bool) {
        match self.login.as_ref() {
            Some(l) => (l.ctx.rhost.clone(), l.own_failures.clone(), l.ctx.notify),
            None => (None, Vec::new(), false),
        }
    }

    fn remember_failure(&mut self, id: Option<i64>) {
        if let (Some(l), Some(id)) = (self.login.as_mut(), id) {
            l.own_failures.push(id);
        }
    }

    /// Records a second-factor result outside the local backend's verification; at a
    /// success, the failures to tell the person about. `Err` when the store could not
    /// record it (logged once by the store watch).
    async fn note_result(
        &mut self,
        user: &str,
        success: bool,
    ) -> Result<Option<FailureNotice>, NotRecorded> {
        let limits = self.d.limits();
        let user = user.to_owned();
        let (rhost, own, notify) = self.attempt_of();
        let recorded = self
            .d
            .db(move |s| {
                let attempt = Attempt {
                    rhost: rhost.as_deref(),
                    own: &own,
                    notify,
                };
                s.note_result(&user, success, now(), limits, &attempt)
            })
            .await;
        match recorded {
            Ok(r) => {
                self.remember_failure(r.failure);
                Ok(r.notice)
            }
            Err(e) => {
                self.d
                    .store_watch
                    .failed(&self.d.log, "recording a second-factor result", &e);
                Err(NotRecorded)
            }
        }
    }

    async fn begin_toopher(&mut self, ctx: LoginContext) -> Response {
        let tb = match self.toopher("push") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        if let Some(refusal) = self.rate_limit_refusal(&ctx).await {
            return refusal;
        }
        let user = ctx.user.clone();
        match self.d.db(move |s| s.is_suspended(&user)).await {
            Ok(false) => {}
            Ok(true) => return self.suspended(&ctx),
            Err(e) => return internal(&self.d, "begin", &e),
        }
        match tb.preauth(&ctx).await {
            Preauth::Enrolled => {}
            Preauth::Other(Outcome::NotEnrolled) => return self.no_factor(ctx).await,
            Preauth::Other(outcome) => return self.settle(&ctx, outcome).await,
        }
        let autopush = ctx.autopush;
        self.login = Some(Login::new(ctx.clone()));
        if !autopush {
            return Response::Challenge {
                methods: vec![Method::Push, Method::Otp],
                push_pending: false,
            };
        }
        match self.send_push(&tb, &ctx).await {
            Response::Pending => Response::Challenge {
                methods: vec![Method::Push, Method::Otp],
                push_pending: true,
            },
            other => other,
        }
    }

    async fn send_push(&mut self, tb: &ToopherBackend, ctx: &LoginContext) -> Response {
        match tb.push(ctx).await {
            Outcome::Pending { request_id } => {
                if let Some(l) = self.login.as_mut() {
                    l.push = Some(PendingPush {
                        id: request_id,
                        deadline: Instant::now() + tb.push_timeout(),
                    });
                }
                Response::Pending
            }
            other => self.settle(ctx, other).await,
        }
    }

    /// The current login, when one is open on this connection.
    fn open_login(&self) -> Result<LoginContext, Box<Response>> {
        match self.login.as_ref().filter(|l| !l.done) {
            Some(l) => Ok(l.ctx.clone()),
            None => Err(Box::new(Response::error(
                ErrorKind::BadRequest,
                "no login in progress on this connection",
            ))),
        }
    }

    async fn push(&mut self) -> Response {
        let tb = match self.toopher("push") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        let ctx = match self.open_login() {
            Ok(c) => c,
            Err(r) => return *r,
        };
        if self.login.as_ref().is_some_and(|l| l.push.is_some()) {
            return Response::Pending;
        }
        if let Some(refusal) = self.rate_limit_refusal(&ctx).await {
            return refusal;
        }
        self.send_push(&tb, &ctx).await
    }

    /// Polls the pending push until it is answered, `timeout_ms` passes (`Pending`), or
    /// the push times out (`Denied{PushTimeout}`, or `failmode` when the API was unreachable).
    async fn wait(&mut self, timeout_ms: u32) -> Response {
        let tb = match self.toopher("push") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        let ctx = match self.open_login() {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let Some(push) = self.login.as_ref().and_then(|l| l.push.clone()) else {
            return Response::error(ErrorKind::BadRequest, "no push is pending");
        };
        let slice_end =
            Instant::now() + Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT_SLICE);
        loop {
            let last_error = match tb.poll(&ctx, &push.id, push.deadline.min(slice_end)).await {
                Outcome::Pending { .. } => None,
                Outcome::Unreachable(e) => Some(e),
                settled => {
                    self.clear_push();
                    return self.settle(&ctx, settled).await;
                }
            };
            let now = Instant::now();
            if now >= push.deadline {
                self.clear_push();
                return match last_error {
                    Some(e) => self.unreachable(&ctx, &e),
                    None => {
                        self.log_auth(&ctx, "timeout", "reason=push_timeout");
                        Response::denied(DenyReason::PushTimeout)
                    }
                };
            }
            let next = (now + tb.poll_interval()).min(push.deadline);
            if next > slice_end {
                return Response::Pending;
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }

    fn clear_push(&mut self) {
        if let Some(l) = self.login.as_mut() {
            l.push = None;
        }
    }

    fn cancel(&mut self) -> Response {
        let cancelled = self
            .login
            .as_mut()
            .and_then(|l| l.push.take().map(|_| l.ctx.clone()));
        if let Some(ctx) = cancelled {
            self.log_auth(&ctx, "cancelled", "reason=module_cancelled_push");
        }
        Response::Denied {
            reason: DenyReason::Other,
            message: Some("cancelled".into()),
        }
    }

    async fn otp_toopher(&mut self, code: Secret) -> Response {
        let tb = match self.toopher("push") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        let ctx = match self.open_login() {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let pending = match self.login.as_mut() {
            Some(l) => {
                l.attempts += 1;
                if l.attempts > MAX_ATTEMPTS_PER_LOGIN {
                    l.done = true;
                    return Response::denied(DenyReason::RateLimited);
                }
                l.push.take().map(|p| p.id)
            }
            None => None,
        };
        let Some(_turn) = self.d.turn_of(&ctx.user).await else {
            self.log_auth(&ctx, "refused", "reason=busy");
            return Response::error(ErrorKind::Busy, "toopherd is busy");
        };
        if let Some(refusal) = self.rate_limit_refusal(&ctx).await {
            return refusal;
        }
        let outcome = tb.otp(&ctx, pending.as_deref(), code.expose().trim()).await;
        self.settle(&ctx, outcome).await
    }

    /// Turns a backend outcome into the answer, logging the decision and keeping the
    /// rate limit's record.
    async fn settle(&mut self, ctx: &LoginContext, outcome: Outcome) -> Response {
        match outcome {
            Outcome::Granted { method, automated } => {
                let name = match method {
                    Method::Push => "push",
                    _ => "otp",
                };
                // The backend has decided; a success the store could not record only
                // loses the failure notice (and the reset of the failure record).
                let notice = self.note_result(&ctx.user, true).await.unwrap_or(None);
                self.log_auth(
                    ctx,
                    "granted",
                    &format!(
                        "method={name} automated={automated}{}",
                        told(notice.as_ref())
                    ),
                );
                if let Some(l) = self.login.as_mut() {
                    l.done = true;
                }
                Response::Granted { method, notice }
            }
            Outcome::Denied {
                reason,
                message,
                detail,
            } => {
                self.log_auth(
                    ctx,
                    "denied",
                    &format!("reason={} detail={}", reason.as_str(), field(Some(&detail))),
                );
                let counted = matches!(reason, DenyReason::WrongCode | DenyReason::PushDenied)
                    && self.note_result(&ctx.user, false).await.is_ok();
                // A failure the store could not count ends the login: no more guesses on it.
                if !counted && let Some(l) = self.login.as_mut() {
                    l.done = true;
                }
                Response::Denied { reason, message }
            }
            Outcome::Pending { .. } => Response::Pending,
            Outcome::NotEnrolled => {
                if let Some(l) = self.login.as_mut() {
                    l.done = true;
                }
                self.not_enrolled(ctx)
            }
            Outcome::OtpRequired => {
                self.log_auth(ctx, "challenge", "reason=toopher_708_requires_otp");
                Response::Challenge {
                    methods: vec![Method::Otp],
                    push_pending: false,
                }
            }
            Outcome::Unreachable(detail) => {
                if let Some(l) = self.login.as_mut() {
                    l.done = true;
                }
                self.unreachable(ctx, &detail)
            }
        }
    }

    async fn otp(&mut self, code: Secret) -> Response {
        let Some(login) = self.login.as_mut().filter(|l| !l.done) else {
            return Response::error(
                ErrorKind::BadRequest,
                "no login in progress on this connection",
            );
        };
        login.attempts += 1;
        if login.attempts > MAX_ATTEMPTS_PER_LOGIN {
            login.done = true;
            return Response::denied(DenyReason::RateLimited);
        }
        let ctx = login.ctx.clone();
        let user = ctx.user.clone();
        let limits = self.d.limits();
        let (rhost, own, notify) = self.attempt_of();
        let checked = self
            .d
            .db(move |s| {
                let attempt = Attempt {
                    rhost: rhost.as_deref(),
                    own: &own,
                    notify,
                };
                s.check(&user, code.expose(), now(), limits, &attempt)
            })
            .await;
        let verdict = checked.map(|c| {
            c.map(|c| {
                self.remember_failure(c.recorded.failure);
                (c.verdict, c.recorded.notice)
            })
        });
        let resp = match verdict {
            Ok(Some((Verdict::Accepted(method), notice))) => {
                let name = match method {
                    Method::RecoveryCode => "recovery_code",
                    _ => "otp",
                };
                self.log_auth(
                    &ctx,
                    "granted",
                    &format!("method={name}{}", told(notice.as_ref())),
                );
                Response::Granted { method, notice }
            }
            Ok(Some((Verdict::Rejected(why), _))) => {
                self.log_auth(&ctx, "denied", &format!("reason={}", why.as_str()));
                Response::denied(DenyReason::WrongCode)
            }
            Ok(Some((Verdict::RateLimited { until }, _))) => {
                self.log_auth(
                    &ctx,
                    "refused",
                    &format!("reason=rate_limited until={until}"),
                );
                Response::denied(DenyReason::RateLimited)
            }
            Ok(None) => {
                // Removed while the login was in progress.
                self.log_auth(&ctx, "denied", "reason=not_enrolled");
                Response::denied(DenyReason::NotEnrolled)
            }
            Err(e) => {
                self.log_auth(&ctx, "error", "reason=internal");
                internal(&self.d, "verify", &e)
            }
        };
        if let (
            Some(l),
            Response::Granted { .. }
            | Response::Denied {
                reason: DenyReason::RateLimited | DenyReason::NotEnrolled,
                ..
            },
        ) = (self.login.as_mut(), &resp)
        {
            l.done = true;
        }
        resp
    }

    fn log_admin(&self, request: &str, user: &str, outcome: &str) {
        self.d.log.info(&format!(
            "admin request={request} user={} by={} outcome={outcome}",
            field(Some(user)),
            self.peer.describe()
        ));
    }

    async fn enroll(&mut self, user: String, force: bool) -> Response {
        if let Some(refusal) = self.authorize("enroll", &user, force) {
            return refusal;
        }
        let name = user.clone();
        if !tokio::task::spawn_blocking(move || authz::user_exists(&name))
            .await
            .unwrap_or(false)
        {
            return Response::error(ErrorKind::NotFound, format!("no such user: {user}"));
        }
        let ttl = self.d.config.enrollment_ttl.0;
        let name = user.clone();
        match self.d.db(move |s| s.enroll(&name, ttl, now(), force)).await {
            Ok(e) => {
                self.log_admin(
                    "enroll",
                    &user,
                    if force { "replaced_pending" } else { "pending" },
                );
                Response::Enrollment(Enrollment {
                    secret: Secret::new(totp::base32(&e.secret).as_str()),
                    otpauth_uri: Secret::new(
                        totp::otpauth_uri(&self.d.issuer, &user, &e.secret).as_str(),
                    ),
                    recovery_codes: e
                        .recovery_codes
                        .iter()
                        .map(|c| Secret::new(c.as_str()))
                        .collect(),
                    expires_at: e.expires_at,
                    user,
                })
            }
            Err(StoreError::AlreadyActive) => Response::error(
                ErrorKind::Conflict,
                format!("{user} already has an active enrolment; root can replace it with --force"),
            ),
            Err(e) => internal(&self.d, "enroll", &e),
        }
    }

    async fn activate(&mut self, user: String, code: Secret) -> Response {
        if let Some(refusal) = self.authorize("activate", &user, false) {
            return refusal;
        }
        let limits = self.d.limits();
        let name = user.clone();
        match self
            .d
            .db(move |s| s.activate(&name, code.expose(), now(), limits))
            .await
        {
            Ok(Verdict::Accepted(_)) => {
                self.log_admin("activate", &user, "active");
                Response::Activated { user }
            }
            Ok(Verdict::Rejected(_)) => {
                self.log_admin(
                    "activate",
                    &user,
                    &format!("denied reason={}", Rejection::Wrong.as_str()),
                );
                Response::denied(DenyReason::WrongCode)
            }
            Ok(Verdict::RateLimited { until }) => {
                self.log_admin(
                    "activate",
                    &user,
                    &format!("refused reason=rate_limited until={until}"),
                );
                Response::denied(DenyReason::RateLimited)
            }
            Err(StoreError::NoPendingEnrollment) => Response::error(
                ErrorKind::NotFound,
                format!("{user} has no pending enrolment; run `toopherctl enroll {user}` first"),
            ),
            Err(StoreError::EnrollmentExpired) => Response::error(
                ErrorKind::Conflict,
                format!("the enrolment of {user} expired; run `toopherctl enroll {user}` again"),
            ),
            Err(e) => internal(&self.d, "activate", &e),
        }
    }

    async fn status(&mut self, user: String) -> Response {
        if let Some(refusal) = self.authorize("status", &user, false) {
            return refusal;
        }
        let limits = self.d.limits();
        let backend = self.d.config.backend.as_str();
        match self
            .d
            .db(move |s| s.status(&user, backend, now(), limits))
            .await
        {
            Ok(st) => Response::Status(st),
            Err(e) => internal(&self.d, "status", &e),
        }
    }

    async fn remove(&mut self, user: String) -> Response {
        if let Some(refusal) = self.authorize("remove", &user, true) {
            return refusal;
        }
        let name = user.clone();
        match self.d.db(move |s| s.remove(&name)).await {
            Ok(existed) => {
                self.log_admin("remove", &user, if existed { "removed" } else { "absent" });
                Response::Removed { user, existed }
            }
            Err(e) => internal(&self.d, "remove", &e),
        }
    }
}
