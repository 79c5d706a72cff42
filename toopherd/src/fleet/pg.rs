//! The shared PostgreSQL store: the same operations as the SQLite [`crate::store::Store`],
//! fleet-wide. Each change is one transaction that first takes the user's advisory lock,
//! so two hosts deciding about one user take turns as two logins do in SQLite; the replay
//! guard and recovery codes are also conditional updates (`... WHERE last_step < $step`,
//! `... WHERE used_at IS NULL`), so a code counts once however the hosts race. TOTP
//! secrets are sealed with the fleet key ([`super::seal`]); recovery codes stay hashed.
//!
//! Every operation is bounded: the connect timeout to get a connection, the query timeout
//! for its transaction (the server enforces it too). A database that cannot be reached
//! is [`PgError::is_unreachable`], the only case `failmode` may decide.

use super::seal::{Keyring, Purpose, SealError};
use crate::store::{
    Attempt, Checked, Limits, LoginState, NewEnrollment, Recorded, Rejection, Verdict,
};
use crate::{recovery, totp};
use session::Session;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio_postgres::error::SqlState;
use toopher_ipc::{AccountStatus, EnrollmentState, Method};
use zeroize::Zeroizing;

mod admin;
mod failures;
mod import;
mod pool;
mod rotate;
pub mod schema;
mod session;

pub use admin::FleetStatus;
pub use import::{ImportError, ImportReport};
pub use pool::{PgSettings, Timeouts, Tls, parse_url};
pub use rotate::RotateReport;

#[derive(Debug)]
pub enum PgError {
    /// The database could not be reached or went away (connect, network, shutdown).
    Unreachable(String),
    /// No answer at all within the bound: the database is not there for us.
    Timeout {
        what: &'static str,
    },
    /// The database answered, then the operation did not finish within the bound (a
    /// lock held by someone else, a slow query). Denies: anyone who can connect could
    /// cause it, so it must never reach `failmode`.
    Stalled {
        what: &'static str,
    },
    /// Every pooled connection stayed in use for the connect timeout: toopherd is
    /// overloaded. Denies; never a failmode case.
    Busy,
    /// The server refused the role or its password.
    AuthenticationFailed(String),
    /// `[store]` or the credentials are not usable.
    Config(String),
    Tls(String),
    /// An error the database answered with (the transaction was rolled back).
    Db(tokio_postgres::Error),
    SchemaTooNew {
        found: i64,
        supported: i64,
    },
    SchemaTooOld {
        found: i64,
        supported: i64,
    },
    /// The credentials file's key under this id is not the one the fleet sealed with.
    WrongKey {
        key_id: u32,
    },
    /// A stored secret does not open (or is not a secret): the login is denied.
    Seal {
        user: String,
        error: SealError,
    },
    /// A stored value out of range.
    Corrupt(String),
    /// The database came back after toopherd started, and its schema or the fleet key
    /// did not pass the check toopherd makes first: every operation denies until it does.
    NotReady(String),
    Random,
    /// An active enrolment exists and replacing it was not asked for.
    AlreadyActive,
    NoPendingEnrollment,
    EnrollmentExpired,
    NotEnrolled,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Unreachable(e) => write!(f, "the database cannot be reached: {e}"),
            PgError::Timeout { what } => write!(f, "the database did not answer in time ({what})"),
            PgError::Stalled { what } => write!(
                f,
                "the database answered but did not finish in time ({what}); denied"
            ),
            PgError::Busy => f.write_str(
                "every connection to the database is in use (toopherd is busy; raise \
                 [store] pool_size if this lasts)",
            ),
            PgError::AuthenticationFailed(e) => write!(
                f,
                "the database refused toopherd's role: {e} (check the user in [store] url and \
                 the password in the credentials file)"
            ),
            PgError::Config(e) => f.write_str(e),
            PgError::Tls(e) => write!(f, "TLS to the database: {e}"),
            // The server's message and code (its DETAIL, which can quote values, is left out).
            PgError::Db(e) => match e.as_db_error() {
                Some(db) => write!(f, "database error {}: {}", db.code().code(), db.message()),
                None => write!(f, "database error: {e}"),
            },
            PgError::SchemaTooNew { found, supported } => write!(
                f,
                "the database's schema is version {found}, newer than this toopherd knows \
                 ({supported}): a newer toopherd upgraded it; upgrade this host's toopherd \
                 (nothing was changed)"
            ),
            PgError::SchemaTooOld { found, supported } => write!(
                f,
                "the database's schema is version {found}, older than this toopherd's \
                 ({supported}): toopherd upgrades it when it starts"
            ),
            PgError::WrongKey { key_id } => write!(
                f,
                "the credentials file's fleet key {key_id} is not the key the fleet sealed \
                 with under that id: copy the credentials file of the other hosts"
            ),
            PgError::Seal { user, error } => write!(f, "{user}: {error}"),
            PgError::Corrupt(e) => write!(f, "unexpected value in the database: {e}"),
            PgError::NotReady(e) => write!(
                f,
                "the shared store failed toopherd's check ({e}); every login is denied until \
                 it passes"
            ),
            PgError::Random => f.write_str("no randomness"),
            PgError::AlreadyActive => f.write_str("the account already has an active enrolment"),
            PgError::NoPendingEnrollment => f.write_str("the account has no pending enrolment"),
            PgError::EnrollmentExpired => f.write_str("the pending enrolment expired; enrol again"),
            PgError::NotEnrolled => f.write_str("the account has no active enrolment"),
        }
    }
}

impl std::error::Error for PgError {}

/// SQLSTATE classes that mean the server is not there for us: connection exceptions and
/// a server shutting down. "Too many connections" (53300) and "cannot connect now"
/// (57P03) are answers, and anyone who can connect can cause the first: they are busy.
fn unreachable_state(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08") || (c.starts_with("57P") && c != "57P03")
}

/// SQLSTATEs that say the server is there but will not take us now: they deny.
fn busy_state(code: &SqlState) -> bool {
    *code == SqlState::TOO_MANY_CONNECTIONS || *code == SqlState::CANNOT_CONNECT_NOW
}

/// Whether a client-side error (no SQLSTATE) means the connection itself failed: closed,
/// or an I/O error underneath. Anything else the client found (a value that does not
/// convert, a row count, a protocol surprise) is an answer it did not like: it denies.
pub(super) fn connection_failed(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The server's message, or the client's description when the server said nothing.
fn server_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c)
                if *c == SqlState::INVALID_PASSWORD
                    || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                PgError::AuthenticationFailed(server_message(&e))
            }
            Some(c) if busy_state(c) => PgError::Busy,
            Some(c) if unreachable_state(c) => PgError::Unreachable(server_message(&e)),
            Some(_) => PgError::Db(e),
            // No answer from the server: the connection closed or failed underneath.
            None if connection_failed(&e) => PgError::Unreachable(server_message(&e)),
            // The client refused what the server sent: an answer, which denies.
            None => PgError::Db(e),
        }
    }
}

impl PgError {
    /// A failure while connecting (TLS, the startup exchange) is the server not reached,
    /// except a refused role or password, or a server that is there but full.
    fn from_connect(e: tokio_postgres::Error) -> PgError {
        match PgError::from(e) {
            PgError::Db(e) => PgError::Unreachable(server_message(&e)),
            other => other,
        }
    }

    /// The database could not be reached in time: the one case `failmode` decides.
    /// Everything else (a wrong code, a secret that does not open, an error the
    /// database answered with) denies.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PgError::Unreachable(_) | PgError::Timeout { .. })
    }

    /// The store failed, as opposed to a refusal that follows from the account's state.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            PgError::AlreadyActive
                | PgError::NoPendingEnrollment
                | PgError::EnrollmentExpired
                | PgError::NotEnrolled
        )
    }
}

impl From<getrandom::Error> for PgError {
    fn from(_: getrandom::Error) -> Self {
        PgError::Random
    }
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

struct Account {
    state: String,
    sealed: Vec<u8>,
    salt: Vec<u8>,
    expires_at: Option<u64>,
}

const ACCOUNT_SQL: &str =
    "SELECT state, secret, recovery_salt, expires_at FROM accounts WHERE user_name = $1";

fn account_of(row: Option<tokio_postgres::Row>) -> Result<Option<Account>, PgError> {
    row.map(|r| -> Result<Account, PgError> {
        Ok(Account {
            state: r.try_get(0)?,
            sealed: r.try_get(1)?,
            salt: r.try_get(2)?,
            expires_at: r.try_get::<_, Option<i64>>(3)?.map(to_u64),
        })
    })
    .transpose()
}

async fn account(s: &mut Session, user: &str) -> Result<Option<Account>, PgError> {
    let row = s.query_opt(ACCOUNT_SQL, &[&user]).await?;
    account_of(row)
}

/// The account and its lock state, in one statement.
async fn account_and_lock(
    s: &mut Session,
    user: &str,
    now: u64,
    limits: Limits,
) -> Result<(Option<Account>, failures::LockState), PgError> {
    const SQL: &str = "SELECT a.state, a.secret, a.recovery_salt, a.expires_at,
         l.level, l.lock_until, l.untold,
         ARRAY(SELECT f.at FROM failures f WHERE f.user_name = $1 AND f.counts AND f.at > $2
               ORDER BY f.at DESC, f.id DESC LIMIT $3)
         FROM (SELECT 1) AS one
         LEFT JOIN accounts a ON a.user_name = $1
         LEFT JOIN lockouts l ON l.user_name = $1";
    let (since, max) = failures::round_window(now, limits);
    let r = s.query_one(SQL, &[&user, &since, &max]).await?;
    let state: Option<String> = r.try_get(0)?;
    let account = match state {
        Some(state) => Some(Account {
            state,
            sealed: r.try_get(1)?,
            salt: r.try_get(2)?,
            expires_at: r.try_get::<_, Option<i64>>(3)?.map(to_u64),
        }),
        None => None,
    };
    Ok((account, failures::lock_state_of(&r, 4, now)?))
}

/// The shared store of one host. Cheap to share between tasks: operations take `&self`.
pub struct PgStore {
    pool: pool::Pool,
    keyring: Arc<Keyring>,
    host: String,
    readiness: std::sync::Mutex<Readiness>,
}

/// Whether the schema and the fleet key were checked ([`PgStore::prepare`]) before the
/// store is used. A toopherd that started while the database was down has not checked
/// them yet; nothing runs against the database until it has.
#[derive(Debug, Clone)]
enum Readiness {
    Ready,
    /// Not checked yet: the database could not be reached when it was tried.
    Unchecked,
    /// Checked and refused (a wrong key, a schema too new): every operation denies.
    Refused(String),
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("host", &self.host).finish()
    }
}

impl PgStore {
    /// Connects, creates or upgrades the schema (refusing a newer one) and checks the
    /// fleet keys against the database.
    pub async fn open(
        settings: &PgSettings,
        keyring: Arc<Keyring>,
        now: u64,
    ) -> Result<PgStore, PgError> {
        let store = PgStore::connect(settings, keyring)?;
        store.prepare(now).await?;
        Ok(store)
    }

    /// Creates or upgrades the schema (refusing a newer one) and checks the fleet keys
    /// against the database: what [`PgStore::open`] does after connecting, and what a
    /// toopherd that started while the database was down does once it answers.
    pub async fn prepare(&self, now: u64) -> Result<(), PgError> {
        let mut conn = self.pool.get().await?;
        let bound = self.pool.timeouts.query.saturating_mul(4);
        let result = tokio::time::timeout(bound, async {
            let s = conn.session();
            schema::migrate(s.client(), &self.keyring, &self.host, to_i64(now)).await?;
            self.check_keys(s, now).await
        })
        .await
        .map_err(|_| PgError::Timeout {
            what: "creating or upgrading the schema",
        })
        .and_then(|r| r);
        if result.is_ok() {
            conn.reusable();
        }
        match &result {
            Ok(()) => self.set_readiness(Readiness::Ready),
            Err(e) if e.is_unreachable() => {}
            Err(e) => self.set_readiness(Readiness::Refused(e.to_string())),
        }
        result
    }

    /// Nothing runs against the database until [`PgStore::prepare`] succeeds: for a
    /// toopherd whose first check could not reach the database.
    pub fn hold_until_prepared(&self) {
        self.set_readiness(Readiness::Unchecked);
    }

    fn set_readiness(&self, r: Readiness) {
        // A poisoned lock only means a panic elsewhere; the value is still a whole enum.
        let mut g = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        *g = r;
    }

    fn readiness(&self) -> Result<(), PgError> {
        let g = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Readiness::Ready => Ok(()),
            Readiness::Unchecked => Err(PgError::Unreachable(
                "not reached yet since toopherd started (its schema and fleet key are \
                 checked first)"
                    .into(),
            )),
            Readiness::Refused(e) => Err(PgError::NotReady(e.clone())),
        }
    }

    /// The store without touching the database yet (connections are made on demand).
    pub fn connect(settings: &PgSettings, keyring: Arc<Keyring>) -> Result<PgStore, PgError> {
        Ok(PgStore {
            pool: pool::Pool::new(settings)?,
            keyring,
            host: settings.host.clone(),
            readiness: std::sync::Mutex::new(Readiness::Ready),
        })
    }

    /// What `--check-config` reports: reachable, authenticated, the schema at this
    /// toopherd's version, and the fleet keys the ones the fleet uses. Changes nothing.
    pub async fn check_config(&self) -> Result<(), PgError> {
        self.run(async |s| {
            schema::check(schema::version(s.client()).await?)?;
            let rows = s
                .query("SELECT key_id, check_value FROM fleet_keys", &[])
                .await?;
            for r in rows {
                let id = u32::try_from(r.try_get::<_, i64>(0)?)
                    .map_err(|_| PgError::Corrupt("fleet_keys.key_id out of range".into()))?;
                let value: Vec<u8> = r.try_get(1)?;
                self.check_key_value(id, &value)?;
            }
            Ok(())
        })
        .await
    }

    /// Seals a known value under each key the database has not seen yet, and checks the
    /// ones it has: a host with another key under a used id refuses to start.
    async fn check_keys(&self, s: &mut Session, now: u64) -> Result<(), PgError> {
        s.begin().await?;
        let id = self.keyring.current_id();
        let row = s
            .query_opt(
                "SELECT check_value FROM fleet_keys WHERE key_id = $1",
                &[&i64::from(id)],
            )
            .await?;
        match row {
            Some(r) => self.check_key_value(id, &r.try_get::<_, Vec<u8>>(0)?)?,
            None => {
                let value = self
                    .keyring
                    .seal(Purpose::KeyCheck, "", KEY_CHECK)
                    .map_err(|_| PgError::Random)?;
                s.execute(
                    "INSERT INTO fleet_keys (key_id, check_value, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (key_id) DO NOTHING",
                    &[&i64::from(id), &value, &to_i64(now)],
                )
                .await?;
            }
        }
        s.commit().await?;
        Ok(())
    }

    fn check_key_value(&self, id: u32, value: &[u8]) -> Result<(), PgError> {
        match self.keyring.open(Purpose::KeyCheck, "", value) {
            Ok(v) if bool::from(v.as_slice().ct_eq(KEY_CHECK)) => Ok(()),
            // A retired key this host no longer holds: nothing to check.
            Err(SealError::UnknownKey { .. }) => Ok(()),
            _ => Err(PgError::WrongKey { key_id: id }),
        }
    }

    /// Runs `op` on a pooled connection within the query timeout. A transaction `op`
    /// left open (a refusal, an error) is rolled back; the connection is reused only
    /// when it is known to be clean.
    async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut Session) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        self.readiness()?;
        let mut conn = self.pool.get().await?;
        let what = "a database transaction";
        let outcome = tokio::time::timeout(self.pool.timeouts.query, async {
            let s = conn.session();
            s.start();
            let r = op(&mut *s).await;
            if matches!(r, Err(PgError::Db(_))) {
                s.forget_statements();
            }
            let clean = match &r {
                Err(e) if e.is_unreachable() => false,
                _ => s.rollback().await.is_ok(),
            };
            (r, clean)
        })
        .await;
        match outcome {
            Ok((result, clean)) => {
                if clean {
                    conn.reusable();
                }
                result
            }
            // The transaction may still be open on the connection: it is dropped. Only
            // an operation that had no answer at all is the database not reached; once it
            // answered, a stall (someone holding the user's lock) denies.
            Err(_) if conn.session().is_unanswered() => Err(PgError::Timeout { what }),
            Err(_) => Err(PgError::Stalled { what }),
        }
    }

    fn open_secret(&self, user: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, PgError> {
        let secret = self
            .keyring
            .open(Purpose::TotpSecret, user, sealed)
            .map_err(|error| PgError::Seal {
                user: user.to_owned(),
                error,
            })?;
        if secret.len() < 16 {
            return Err(PgError::Corrupt(format!(
                "{user}: the TOTP secret is too short"
            )));
        }
        Ok(secret)
    }

    /// When the rate limit refuses `user` right now, until when.
    pub async fn rate_limited(
        &self,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, PgError> {
        self.run(async |s| failures::locked_until(s, user, now, limits).await)
            .await
    }

    /// What a login of `user` meets right now.
    pub async fn login_state(
        &self,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<LoginState, PgError> {
        self.run(async |s| {
            // One statement: suspension, enrolment and lock state.
            const SQL: &str = "SELECT EXISTS (SELECT 1 FROM suspended WHERE user_name = $1),
                 (SELECT state FROM accounts WHERE user_name = $1),
                 l.level, l.lock_until, l.untold,
                 ARRAY(SELECT f.at FROM failures f WHERE f.user_name = $1 AND f.counts
                       AND f.at > $2 ORDER BY f.at DESC, f.id DESC LIMIT $3)
                 FROM (SELECT 1) AS one LEFT JOIN lockouts l ON l.user_name = $1";
            let (since, max) = failures::round_window(now, limits);
            let r = s.query_one(SQL, &[&user, &since, &max]).await?;
            if r.try_get::<_, bool>(0)? {
                return Ok(LoginState::Suspended);
            }
            if r.try_get::<_, Option<String>>(1)?.as_deref() != Some("active") {
                return Ok(LoginState::NotEnrolled);
            }
            let state = failures::lock_state_of(&r, 2, now)?;
            Ok(match state.locked_until(now, limits) {
                Some(until) => LoginState::RateLimited { until },
                None => LoginState::Active,
            })
        })
        .await
    }

    /// Creates a pending enrolment (replacing a pending or, with `force`, an active one).
    pub async fn enroll(
        &self,
        user: &str,
        ttl: u64,
        now: u64,
        force: bool,
    ) -> Result<NewEnrollment, PgError> {
        let mut secret = Zeroizing::new(vec![0u8; totp::SECRET_LEN]);
        getrandom::fill(&mut secret)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        let codes = (0..recovery::COUNT)
            .map(|_| recovery::generate())
            .collect::<Result<Vec<_>, _>>()?;
        let sealed = self
            .keyring
            .seal(Purpose::TotpSecret, user, &secret)
            .map_err(|_| PgError::Random)?;
        let expires_at = now.saturating_add(ttl);
        let host = &self.host;
        self.run(async |s| {
            s.begin_for(user).await?;
            if let Some(existing) = account(s, user).await?
                && existing.state == "active"
                && !force
            {
                return Err(PgError::AlreadyActive);
            }
            s.execute("DELETE FROM accounts WHERE user_name = $1", &[&user])
                .await?;
            s.execute(
                "INSERT INTO accounts (user_name, state, secret, recovery_salt, created_at,
                 created_by, expires_at) VALUES ($1, 'pending', $2, $3, $4, $5, $6)",
                &[
                    &user,
                    &sealed,
                    &&salt[..],
                    &to_i64(now),
                    host,
                    &to_i64(expires_at),
                ],
            )
            .await?;
            for code in &codes {
                if let Some(n) = recovery::normalize(code) {
                    s.execute(
                        "INSERT INTO recovery_codes (user_name, hash) VALUES ($1, $2)",
                        &[
                            &user,
                            &&recovery::keyed(&secret, &recovery::hash(&salt, &n))[..],
                        ],
                    )
                    .await?;
                }
            }
            s.commit().await?;
            Ok(())
        })
        .await?;
        Ok(NewEnrollment {
            secret,
            recovery_codes: codes,
            expires_at,
        })
    }

    /// Activates a pending enrolment with its first code (which is then used up).
    pub async fn activate(
        &self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Verdict, PgError> {
        let host = self.host.as_str();
        self.run(async |s| {
            s.begin_for(user).await?;
            let (acct, lock) = account_and_lock(s, user, now, limits).await?;
            let Some(acct) = acct else {
                return Err(PgError::NoPendingEnrollment);
            };
            if acct.state != "pending" {
                return Err(PgError::NoPendingEnrollment);
            }
            if acct.expires_at.is_none_or(|t| t <= now) {
                return Err(PgError::EnrollmentExpired);
            }
            let (locked, lockout) = failures::enforce_lock(s, user, now, limits, lock).await?;
            if let Some(until) = locked {
                s.commit().await?;
                return Ok(Verdict::RateLimited { until });
            }
            let secret = self.open_secret(user, &acct.sealed)?;
            let verdict = match totp::looks_like_code(code)
                .then(|| totp::matching_steps(&secret, code, now).first().copied())
                .flatten()
            {
                Some(step) => {
                    s.execute(
                        "UPDATE accounts SET state = 'active', expires_at = NULL,
                         activated_at = $2, last_step = $3 WHERE user_name = $1",
                        &[&user, &to_i64(now), &to_i64(step)],
                    )
                    .await?;
                    // Not a login: the failures stay untold for the next one.
                    failures::record_success(
                        s,
                        user,
                        host,
                        now,
                        &Attempt::default(),
                        false,
                        Some(lockout),
                    )
                    .await?;
                    Verdict::Accepted(Method::Otp)
                }
                None => {
                    failures::record_failure(s, user, host, now, limits, None).await?;
                    Verdict::Rejected(Rejection::Wrong)
                }
            };
            s.commit().await?;
            Ok(verdict)
        })
        .await
    }

    /// Checks a second factor of an active account (see [`PgStore::check`]).
    pub async fn verify(
        &self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<Verdict>, PgError> {
        Ok(self
            .check(user, code, now, limits, &Attempt::default())
            .await?
            .map(|c| c.verdict))
    }

    /// Checks a TOTP code (each step accepted once fleet-wide, and none older than the
    /// last accepted) or an unused recovery code, and records the result. While the
    /// account is locked only a recovery code is looked at; it lifts the lock. `None`
    /// when the account has no active enrolment.
    pub async fn check(
        &self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Option<Checked>, PgError> {
        let host = self.host.as_str();
        let code = code.trim();
        self.run(async |s| {
            s.begin_for(user).await?;
            let (acct, lock) = account_and_lock(s, user, now, limits).await?;
            let acct = match acct {
                Some(a) if a.state == "active" => a,
                _ => return Ok(None),
            };
            let (locked, lockout) = failures::enforce_lock(s, user, now, limits, lock).await?;
            let secret = self.open_secret(user, &acct.sealed)?;
            let recovery = RecoveryKey {
                salt: &acct.salt,
                secret: &secret,
            };
            let verdict = match locked {
                // A one-time password is not looked at while locked: that is the limit.
                Some(until) if totp::looks_like_code(code) => Verdict::RateLimited { until },
                Some(_) => check_recovery_code(s, user, host, &recovery, code, now).await?,
                None if totp::looks_like_code(code) => {
                    let steps = totp::matching_steps(&secret, code, now);
                    let mut verdict = if steps.is_empty() {
                        Verdict::Rejected(Rejection::Wrong)
                    } else {
                        Verdict::Rejected(Rejection::Replayed)
                    };
                    // The first matching step later than the last one accepted, unless
                    // the code also matched that one (never the same code twice). Never
                    // read-then-write: the update itself is the guard.
                    let all: Vec<i64> = steps.iter().map(|&s| to_i64(s)).collect();
                    for step in steps {
                        let won = s
                            .execute(
                                "UPDATE accounts SET last_step = $2
                                 WHERE user_name = $1 AND last_step < $2
                                 AND last_step <> ALL($3)",
                                &[&user, &to_i64(step), &all],
                            )
                            .await?;
                        if won == 1 {
                            verdict = Verdict::Accepted(Method::Otp);
                            break;
                        }
                    }
                    verdict
                }
                None => check_recovery_code(s, user, host, &recovery, code, now).await?,
            };
            let recorded = match verdict {
                Verdict::Accepted(method) => Recorded {
                    failure: None,
                    notice: failures::record_success(
                        s,
                        user,
                        host,
                        now,
                        attempt,
                        method == Method::RecoveryCode,
                        Some(lockout),
                    )
                    .await?,
                },
                Verdict::Rejected(_) => Recorded {
                    failure: Some(
                        failures::record_failure(s, user, host, now, limits, attempt.rhost).await?,
                    ),
                    notice: None,
                },
                Verdict::RateLimited { .. } => Recorded::default(),
            };
            s.commit().await?;
            Ok(Some(Checked { verdict, recorded }))
        })
        .await
    }

    /// Removes the account's enrolment, its failure log and lock. Returns whether an
    /// enrolment existed.
    pub async fn remove(&self, user: &str) -> Result<bool, PgError> {
        self.run(async |s| {
            s.begin_for(user).await?;
            for sql in [
                "DELETE FROM recovery_codes WHERE user_name = $1",
                "DELETE FROM failures WHERE user_name = $1",
                "DELETE FROM lockouts WHERE user_name = $1",
            ] {
                s.execute(sql, &[&user]).await?;
            }
            let n = s
                .execute("DELETE FROM accounts WHERE user_name = $1", &[&user])
                .await?;
            s.commit().await?;
            Ok(n > 0)
        })
        .await
    }

    /// Drops pending enrolments past their lifetime (recovery codes go with them).
    pub async fn expire_pending(&self, now: u64) -> Result<u64, PgError> {
        self.run(async |s| {
            s.execute(
                "DELETE FROM accounts WHERE state = 'pending' AND expires_at <= $1",
                &[&to_i64(now)],
            )
            .await
        })
        .await
    }

    /// This host's name, as recorded with its decisions.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// The known plaintext of the key check values.
const KEY_CHECK: &[u8] = b"toopherd fleet key check";

/// What a typed recovery code is hashed with: the account's salt and its TOTP secret.
struct RecoveryKey<'a> {
    salt: &'a [u8],
    secret: &'a [u8],
}

async fn check_recovery_code(
    s: &mut Session,
    user: &str,
    host: &str,
    key: &RecoveryKey<'_>,
    input: &str,
    now: u64,
) -> Result<Verdict, PgError> {
    let Some(normalized) = recovery::normalize(input) else {
        return Ok(Verdict::Rejected(Rejection::Wrong));
    };
    let candidate = recovery::keyed(key.secret, &recovery::hash(key.salt, &normalized));
    let rows = s
        .query(
            "SELECT id, hash, used_at FROM recovery_codes WHERE user_name = $1",
            &[&user],
        )
        .await?;
    let mut matched = None;
    // Every stored hash is compared, in constant time.
    for r in rows {
        let (id, hash, used_at): (i64, Vec<u8>, Option<i64>) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if bool::from(hash.as_slice().ct_eq(&candidate[..])) {
            matched = Some((id, used_at));
        }
    }
    Ok(match matched {
        Some((id, None)) => {
            let won = s
                .execute(
                    "UPDATE recovery_codes SET used_at = $2, used_by = $3
                     WHERE id = $1 AND used_at IS NULL",
                    &[&id, &to_i64(now), &host],
                )
                .await?;
            if won == 1 {
                Verdict::Accepted(Method::RecoveryCode)
            } else {
                Verdict::Rejected(Rejection::RecoveryCodeUsed)
            }
        }
        Some((_, Some(_))) => Verdict::Rejected(Rejection::RecoveryCodeUsed),
        None => Verdict::Rejected(Rejection::Wrong),
    })
}

/// The status shape shared with the SQLite store.
fn empty_status(user: &str, backend: &str) -> AccountStatus {
    AccountStatus {
        user: user.into(),
        backend: backend.into(),
        state: EnrollmentState::None,
        created_at: None,
        activated_at: None,
        expires_at: None,
        last_success_at: None,
        last_failure_at: None,
        recovery_codes_left: 0,
        locked_until: None,
        lock_level: 0,
        pairing_id: None,
        enabled: true,
        hosts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::session::user_lock;
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The daemon runs operations in spawned tasks: their futures must be Send.
    #[allow(dead_code)]
    fn operations_are_send(s: &PgStore, limits: Limits) {
        let a = Attempt::default();
        assert_send(&s.check("u", "123456", 0, limits, &a));
        assert_send(&s.enroll("u", 1, 0, false));
        assert_send(&s.status("u", "local", 0, limits));
        assert_send(&s.note_result("u", true, 0, limits, &a));
        assert_send(&s.approve_registration("u", "1", "root", 0));
    }

    #[test]
    fn user_locks_differ_per_user_and_are_stable() {
        assert_eq!(user_lock("alice"), user_lock("alice"));
        assert_ne!(user_lock("alice"), user_lock("bob"));
    }

    #[test]
    fn unreachable_is_only_the_network() {
        assert!(PgError::Unreachable("x".into()).is_unreachable());
        assert!(PgError::Timeout { what: "x" }.is_unreachable());
        for e in [
            PgError::AuthenticationFailed("x".into()),
            PgError::WrongKey { key_id: 1 },
            PgError::Seal {
                user: "u".into(),
                error: SealError::DoesNotOpen { key_id: 1 },
            },
            PgError::SchemaTooNew {
                found: 9,
                supported: 1,
            },
            PgError::Corrupt("x".into()),
            PgError::Busy,
            PgError::Stalled { what: "x" },
        ] {
            assert!(!e.is_unreachable(), "{e}");
            assert!(e.is_failure(), "{e}");
        }
    }

    /// A server that is there but full or not taking connections yet is busy (denies);
    /// only a lost connection or a shutdown is "not reached". A lock or statement timeout
    /// is an answer too.
    #[test]
    fn sqlstates_of_a_server_that_answered_are_not_unreachable() {
        for c in [SqlState::TOO_MANY_CONNECTIONS, SqlState::CANNOT_CONNECT_NOW] {
            assert!(busy_state(&c), "{}", c.code());
            assert!(!unreachable_state(&c), "{}", c.code());
        }
        for c in [
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::UNIQUE_VIOLATION,
            SqlState::DATATYPE_MISMATCH,
        ] {
            assert!(!busy_state(&c), "{}", c.code());
            assert!(!unreachable_state(&c), "{}", c.code());
        }
        for c in [
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
        ] {
            assert!(unreachable_state(&c), "{}", c.code());
            assert!(!busy_state(&c), "{}", c.code());
        }
    }

    #[test]
    fn a_lock_wait_gives_up_well_before_the_client() {
        use std::time::Duration;
        assert_eq!(
            pool::lock_timeout(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            pool::lock_timeout(Duration::from_millis(800)),
            Duration::from_millis(400)
        );
    }

    /// A store whose check failed (a wrong key, a schema too new, found when the database
    /// came back) denies every operation; one not checked yet is not reached.
    #[test]
    fn a_store_not_checked_or_refused_runs_nothing() {
        use std::time::Duration;
        let settings = PgSettings {
            url: "postgresql://t@%2Fnonexistent-toopher-test/db".into(),
            ca_file: None,
            password: None,
            timeouts: Timeouts {
                connect: Duration::from_millis(200),
                query: Duration::from_millis(200),
            },
            pool_size: 1,
            host: "h".into(),
        };
        let key = crate::fleet::seal::FleetKey::new(1, Zeroizing::new([7; 32]));
        let keyring = Arc::new(Keyring::new(key, vec![]).expect("keyring"));
        let store = PgStore::connect(&settings, keyring).expect("connect");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let limits = Limits {
            max_failures: 5,
            window: 300,
        };
        store.hold_until_prepared();
        match rt.block_on(store.login_state("u", 0, limits)) {
            Err(e) => assert!(e.is_unreachable(), "{e}"),
            Ok(_) => panic!("an unchecked store answered"),
        }
        store.set_readiness(Readiness::Refused("wrong key".into()));
        match rt.block_on(store.login_state("u", 0, limits)) {
            Err(e @ PgError::NotReady(_)) => {
                assert!(!e.is_unreachable(), "{e}");
                assert!(e.is_failure(), "{e}");
            }
            other => panic!("a refused store gave {other:?}"),
        }
    }
}
