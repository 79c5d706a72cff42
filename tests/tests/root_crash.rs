//! Needs root: toopherd authorises peers by uid (these clients act for several accounts)
//! and the checks read its database.
//!
//! Crash safety. toopherd is SIGKILLed at random moments while clients enrol, activate,
//! log in (through the socket and through the real libpam), regenerate recovery codes and
//! type wrong codes, and is restarted on the same state each time. An answer a client got
//! is a promise: what it said was done must still be done after every later kill. A
//! request whose answer was lost may or may not have been done; the clients never count
//! on either.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use toopher_ipc::{
    AdminRequest, AdminResponse, DenyReason, EnrollmentState, ErrorKind, ErrorReply, LoginResponse,
    Secret,
};
use toopher_tests::daemon::{Enrolled, Toopherd};
use toopher_tests::durable::{self, Ack, assert_private, call, integrity_check, login};
use toopher_tests::pam::{self, Stack};
use toopher_tests::{otp, system};

const KILLS: usize = 36;
const MAX_FAILURES: usize = 10;
const CONFIG: &str = "[rate_limit]\nmax_failures = 10\nwindow = 3600\n";

/// A xorshift generator: kill moments differ from run to run; the seed is printed so a
/// failing run can be repeated with `CRASH_SEED=<seed>`.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("root_crash: CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the clients share: the socket, a stop flag and counters for the summary.
struct Shared {
    socket: PathBuf,
    stop: AtomicBool,
    lost: AtomicU64,
    answered: AtomicU64,
}

impl Shared {
    fn note<R>(&self, ack: &Ack<R>) {
        match ack {
            Ack::Lost => self.lost.fetch_add(1, Ordering::SeqCst),
            Ack::Answer(_) => self.answered.fetch_add(1, Ordering::SeqCst),
        };
    }

    fn call(&self, req: &AdminRequest) -> Ack<AdminResponse> {
        let ack = call(&self.socket, req);
        self.note(&ack);
        ack
    }

    fn login(&self, user: &str, code: &str) -> Ack<LoginResponse> {
        let ack = login(&self.socket, user, code);
        self.note(&ack);
        ack
    }
}

fn secrets(v: &[Secret]) -> Vec<String> {
    v.iter().map(|s| s.expose().to_string()).collect()
}

/// Regenerates `user`'s recovery codes, asking again until an answer arrives (a kill
/// may lose one); returns the new set.
fn regenerate(shared: &Shared, user: &str) -> Vec<String> {
    let req = AdminRequest::RegenerateRecoveryCodes { user: user.into() };
    loop {
        match shared.call(&req) {
            Ack::Answer(AdminResponse::RecoveryCodes { codes, .. }) => return secrets(&codes),
            Ack::Answer(other) => panic!("{user}: regeneration answered {other:?}"),
            Ack::Lost => {}
        }
    }
}

/// An account enrolled again and again over the socket: enrolment (replacing the last),
/// activation, a login with a TOTP code and one with a recovery code, regeneration of
/// the recovery codes; and at the start of each round, the checks of what the last
/// round was told.
struct Enroller {
    user: &'static str,
    shared: Arc<Shared>,
    secret: Option<String>,
    /// Codes toopherd accepted for the current enrolment: never again.
    used: Vec<String>,
    /// The acknowledged current recovery codes not typed yet.
    fresh: Vec<String>,
    /// Codes of a set replaced by an acknowledged regeneration.
    revoked: Vec<String>,
    rounds: u64,
}

impl Enroller {
    fn new(user: &'static str, shared: Arc<Shared>) -> Enroller {
        Enroller {
            user,
            shared,
            secret: None,
            used: Vec::new(),
            fresh: Vec::new(),
            revoked: Vec::new(),
            rounds: 0,
        }
    }

    fn run(mut self) -> Enroller {
        while !self.shared.stop.load(Ordering::SeqCst) {
            self.check();
            self.enroll();
            let step = self.activate();
            let secret = self.secret.clone().expect("enrolled");
            self.must_accept(&otp::totp_step(&secret, step + 1));
            let code = self.fresh.remove(0);
            self.must_accept(&code);
            self.regenerate();
            self.rounds += 1;
        }
        self
    }

    /// What the last acknowledged answers promised, after whatever kills came since.
    fn check(&mut self) {
        if self.secret.is_none() {
            return;
        }
        let replays: Vec<String> = self
            .used
            .iter()
            .chain(self.revoked.first())
            .chain(self.revoked.last())
            .cloned()
            .collect();
        for code in replays {
            match self.shared.login(self.user, &code) {
                Ack::Answer(LoginResponse::Denied { .. }) | Ack::Lost => {}
                Ack::Answer(other) => panic!(
                    "{}: a code that was used, or revoked by an acknowledged regeneration, \
                     was answered {other:?}",
                    self.user
                ),
            }
        }
        // The acknowledged activation and regeneration: the current set works.
        let code = self.fresh.remove(0);
        self.must_accept(&code);
    }

    /// Types a code that toopherd has not accepted: it must be accepted, unless an
    /// earlier try was lost (then it may already have been, and is refused as used).
    fn must_accept(&mut self, code: &str) {
        let mut lost = false;
        loop {
            match self.shared.login(self.user, code) {
                Ack::Answer(LoginResponse::Granted { .. }) => break,
                Ack::Answer(LoginResponse::Denied {
                    reason: DenyReason::WrongCode,
                    ..
                }) if lost => break,
                Ack::Answer(other) => panic!(
                    "{}: a fresh code of an acknowledged enrolment was answered {other:?}",
                    self.user
                ),
                Ack::Lost => lost = true,
            }
        }
        self.used.push(code.to_string());
    }

    fn enroll(&mut self) {
        let req = AdminRequest::Enroll {
            user: self.user.into(),
            force: true,
        };
        loop {
            match self.shared.call(&req) {
                Ack::Answer(AdminResponse::Enrollment(e)) => {
                    self.secret = Some(e.secret.expose().to_string());
                    self.fresh = secrets(&e.recovery_codes);
                    self.used.clear();
                    self.revoked.clear();
                    return;
                }
                Ack::Answer(other) => panic!("{}: enrol answered {other:?}", self.user),
                Ack::Lost => {}
            }
        }
    }

    /// Activates the acknowledged pending enrolment; returns the newest step tried (a
    /// later code must be newer than whichever try was recorded).
    fn activate(&mut self) -> u64 {
        let secret = self.secret.clone().expect("enrolled");
        let mut newest_lost = None;
        loop {
            let step = otp::current_step();
            let code = otp::totp_step(&secret, step);
            let req = AdminRequest::Activate {
                user: self.user.into(),
                code: Secret::new(code.as_str()),
            };
            match self.shared.call(&req) {
                Ack::Answer(AdminResponse::Activated { .. }) => {
                    self.used.push(code);
                    return step;
                }
                Ack::Answer(AdminResponse::Error(ErrorReply {
                    kind: ErrorKind::NotFound,
                    ..
                })) if newest_lost.is_some() => {
                    // A lost try was done; the enrolment must be active, not gone.
                    self.assert_active();
                    return newest_lost.unwrap_or(step);
                }
                Ack::Answer(other) => panic!(
                    "{}: activating an acknowledged enrolment was answered {other:?}",
                    self.user
                ),
                Ack::Lost => newest_lost = Some(step),
            }
        }
    }

    fn assert_active(&self) {
        let req = AdminRequest::Status {
            user: self.user.into(),
        };
        loop {
            match self.shared.call(&req) {
                Ack::Answer(AdminResponse::Status(st)) => {
                    assert_eq!(st.state, EnrollmentState::Active, "{}: {st:?}", self.user);
                    return;
                }
                Ack::Answer(other) => panic!("{}: status answered {other:?}", self.user),
                Ack::Lost => {}
            }
        }
    }

    fn regenerate(&mut self) {
        self.revoked = std::mem::replace(&mut self.fresh, regenerate(&self.shared, self.user));
    }
}

/// An account that logs in through the real libpam with recovery codes: a used code or
/// one of a replaced set never opens a session again, a fresh one always does.
struct PamClient {
    user: &'static str,
    shared: Arc<Shared>,
    stack: Stack,
    fresh: Vec<String>,
    used: Vec<String>,
    revoked: Vec<String>,
    logins: u64,
}

impl PamClient {
    /// A login typing `code`: its PAM result, and whether toopherd died in the middle
    /// of it (the code may have been used).
    fn pam(&mut self, code: &str) -> (i32, bool) {
        let t = pam::login(&self.stack, self.user, &[code], None);
        self.logins += 1;
        let lost = t.auth == pam::PAM_AUTHINFO_UNAVAIL && t.shown("failed");
        if t.auth != pam::PAM_AUTHINFO_UNAVAIL {
            self.shared.answered.fetch_add(1, Ordering::SeqCst);
        } else if lost {
            self.shared.lost.fetch_add(1, Ordering::SeqCst);
        } else {
            // Not reached (being restarted): nothing was sent.
            std::thread::sleep(Duration::from_millis(10));
        }
        (t.auth, lost)
    }

    fn run(mut self) -> PamClient {
        while !self.shared.stop.load(Ordering::SeqCst) {
            self.check();
            if self.fresh.len() <= 7 {
                self.regenerate();
            }
        }
        self
    }

    fn check(&mut self) {
        let old: Vec<String> = self
            .used
            .last()
            .into_iter()
            .chain(self.revoked.last())
            .cloned()
            .collect();
        for code in old {
            let (rc, _) = self.pam(&code);
            assert_ne!(
                rc,
                pam::PAM_SUCCESS,
                "{}: a used or revoked recovery code opened a session",
                self.user
            );
        }
        let code = self.fresh.remove(0);
        let mut lost = false;
        loop {
            match self.pam(&code) {
                (pam::PAM_SUCCESS, _) => break,
                (pam::PAM_AUTHINFO_UNAVAIL, died) => lost |= died,
                _ if lost => break,
                (rc, _) => panic!(
                    "{}: a fresh recovery code was refused (PAM {rc})",
                    self.user
                ),
            }
        }
        self.used.push(code);
    }

    fn regenerate(&mut self) {
        self.revoked = std::mem::replace(&mut self.fresh, regenerate(&self.shared, self.user));
    }
}

/// Accounts that only type wrong codes. Once `MAX_FAILURES` wrong codes were answered
/// as wrong, every later attempt must be refused by the rate limit, after any kill: a
/// failure that was answered is a failure that counts.
struct Failer {
    shared: Arc<Shared>,
    accounts: Vec<Enrolled>,
    /// Wrong codes answered as wrong, for the account in use.
    counted: usize,
    /// Generations (restarts) in which the current account was seen locked.
    locked_in: Vec<u64>,
    generation: Arc<AtomicU64>,
    done: Vec<String>,
}

impl Failer {
    fn run(mut self) -> Failer {
        while !self.shared.stop.load(Ordering::SeqCst) && !self.accounts.is_empty() {
            self.attempt();
            std::thread::sleep(Duration::from_millis(60));
        }
        self
    }

    fn attempt(&mut self) {
        let acct = &self.accounts[0];
        let code = otp::wrong_code(&acct.secret);
        let user = acct.user.clone();
        match self.shared.login(&user, &code) {
            Ack::Answer(LoginResponse::Denied {
                reason: DenyReason::WrongCode,
                ..
            }) => {
                assert!(
                    self.counted < MAX_FAILURES && self.locked_in.is_empty(),
                    "{user}: {} wrong codes were answered (the limit is {MAX_FAILURES}) and \
                     the account was {}locked, yet a wrong code was checked again: \
                     acknowledged failures were forgotten",
                    self.counted,
                    if self.locked_in.is_empty() {
                        "not yet "
                    } else {
                        ""
                    },
                );
                self.counted += 1;
            }
            Ack::Answer(LoginResponse::Denied {
                reason: DenyReason::RateLimited,
                ..
            }) => {
                let generation = self.generation.load(Ordering::SeqCst);
                if !self.locked_in.contains(&generation) {
                    self.locked_in.push(generation);
                }
                // Locked across two restarts: on to the next account.
                if self.locked_in.len() >= 3 {
                    self.done.push(user);
                    self.accounts.remove(0);
                    self.counted = 0;
                    self.locked_in.clear();
                }
            }
            Ack::Answer(other) => panic!("{user}: a wrong code was answered {other:?}"),
            Ack::Lost => {}
        }
    }

    /// After the last restart: an account with enough acknowledged failures is locked.
    fn check(&mut self) {
        if let Some(acct) = self.accounts.first()
            && (self.counted >= MAX_FAILURES || !self.locked_in.is_empty())
        {
            let code = otp::wrong_code(&acct.secret);
            match self.shared.login(&acct.user, &code) {
                Ack::Answer(LoginResponse::Denied {
                    reason: DenyReason::RateLimited,
                    ..
                }) => {}
                other => panic!("{}: locked before the last kill, now {other:?}", acct.user),
            }
        }
    }
}

/// After each restart: the database is sound and its files are private.
fn check_files(db: &Path) {
    assert_eq!(
        integrity_check(db),
        "ok",
        "integrity_check of {}",
        db.display()
    );
    for f in durable::database_files(db) {
        assert_private(&f);
    }
}

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
fn acknowledged_changes_survive_random_sigkills() {
    system::require_root();
    let mut rng = Rng::new();
    let mut d = Toopherd::start_with(CONFIG);
    let db = d.database();
    let shared = Arc::new(Shared {
        socket: d.socket.clone(),
        stop: AtomicBool::new(false),
        lost: AtomicU64::new(0),
        answered: AtomicU64::new(0),
    });
    let generation = Arc::new(AtomicU64::new(0));

    // The pam client's and the failing accounts' enrolments, through toopherctl.
    let sys = d.enroll("sys");
    let failing: Vec<Enrolled> = ["games", "man", "lp", "mail", "news", "uucp", "proxy"]
        .iter()
        .map(|u| d.enroll(u))
        .collect();

    let enrollers: Vec<JoinHandle<Enroller>> = ["daemon", "bin"]
        .into_iter()
        .map(|u| {
            let e = Enroller::new(u, Arc::clone(&shared));
            std::thread::spawn(move || e.run())
        })
        .collect();
    let pam_client = PamClient {
        user: "sys",
        shared: Arc::clone(&shared),
        stack: Stack::toopher(&d.socket, "prompts=1"),
        fresh: sys.recovery_codes.clone(),
        used: Vec::new(),
        revoked: Vec::new(),
        logins: 0,
    };
    let pam_thread = std::thread::spawn(move || pam_client.run());
    let failer = Failer {
        shared: Arc::clone(&shared),
        accounts: failing,
        counted: 0,
        locked_in: Vec::new(),
        generation: Arc::clone(&generation),
        done: Vec::new(),
    };
    let failer_thread = std::thread::spawn(move || failer.run());

    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(40 + rng.below(360)));
        d.kill();
        std::thread::sleep(Duration::from_millis(rng.below(30)));
        d.spawn();
        generation.fetch_add(1, Ordering::SeqCst);
        check_files(&db);
    }
    shared.stop.store(true, Ordering::SeqCst);
    let mut enrollers: Vec<Enroller> = enrollers.into_iter().map(join).collect();
    let mut pam_client = join(pam_thread);
    let mut failer = join(failer_thread);

    // One more kill with everything quiet, then every promise once more.
    d.kill();
    d.spawn();
    check_files(&db);
    for e in &mut enrollers {
        e.check();
    }
    pam_client.check();
    failer.check();

    let lost = shared.lost.load(Ordering::SeqCst);
    let answered = shared.answered.load(Ordering::SeqCst);
    eprintln!(
        "root_crash: {KILLS} kills; {answered} answers, {lost} lost; enrolment rounds {:?}; \
         {} libpam logins; accounts locked and kept locked: {:?}",
        enrollers.iter().map(|e| e.rounds).collect::<Vec<_>>(),
        pam_client.logins,
        failer.done,
    );
    assert!(
        lost > 0,
        "no kill hit a request in flight; the test proved nothing"
    );
    assert!(
        enrollers.iter().all(|e| e.rounds >= 3) && !failer.done.is_empty(),
        "too little work between the kills to prove anything"
    );
    assert!(d.stop(), "toopherd did not stop cleanly:\n{}", d.log());
    assert_eq!(integrity_check(&db), "ok");
}

/// Runs toopherd on `config` and expects it to refuse to start within 10 s; returns
/// what it printed.
fn refused_start(config: &Path) -> String {
    let mut child = std::process::Command::new(toopher_tests::artifact("toopherd"))
        .args(["--log", "stderr", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn toopherd");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("toopherd started although a database file is not private");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn wal_and_shm_are_private_and_refused_when_loosened() {
    system::require_root();
    let mut d = Toopherd::start();
    let mut u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let used = u.next_code();
    let t = pam::login(&stack, "daemon", &[&used], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    let [db, wal, shm] = durable::database_files(&d.database());
    for f in [&db, &wal, &shm] {
        assert_private(f);
    }

    // Killed, toopherd leaves the WAL (holding the last changes) and the shared memory.
    d.kill();
    assert!(wal.exists() && shm.exists());
    for f in [&wal, &shm] {
        let set_mode = |mode| {
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
        };
        set_mode(0o640);
        let err = refused_start(&d.config);
        assert!(
            err.contains(&f.display().to_string()) && err.contains("0640"),
            "{err}"
        );
        set_mode(0o600);

        std::os::unix::fs::chown(f, Some(65534), None).unwrap();
        let err = refused_start(&d.config);
        assert!(err.contains(&f.display().to_string()), "{err}");
        std::os::unix::fs::chown(f, Some(0), None).unwrap();

        let aside = f.with_extension("aside");
        std::fs::rename(f, &aside).unwrap();
        std::os::unix::fs::symlink(&aside, f).unwrap();
        let err = refused_start(&d.config);
        assert!(err.contains("not a plain file"), "{err}");
        std::fs::remove_file(f).unwrap();
        std::fs::rename(&aside, f).unwrap();
    }

    // Put right, it starts on the same state: the code used before is still used.
    d.spawn();
    let t = pam::login(&stack, "daemon", &[&used], None);
    assert_ne!(
        t.auth,
        pam::PAM_SUCCESS,
        "a used code worked after the restart"
    );
    let t = pam::login(&stack, "daemon", &[&u.recovery_codes[0]], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    for f in [&db, &wal, &shm] {
        assert_private(f);
    }
}
