//! The local backend's state in SQLite: enrolments, TOTP secrets, the replay guard,
//! hashed recovery codes and the failure log behind the rate limit (`failures`). Every change is one
//! transaction (a savepoint, so that it nests in a group commit: `group`), and the daemon
//! makes them one at a time on one connection, so concurrent logins of one user cannot
//! both use a code.

use crate::{recovery, totp};
use rusqlite::{Connection, OptionalExtension, params};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use subtle::ConstantTimeEq;
use toopher_ipc::{AccountStatus, EnrollmentState, Method};
use zeroize::Zeroizing;

#[derive(Debug)]
pub enum StoreError {
    Db(rusqlite::Error),
    Io(std::io::Error),
    /// The database file is readable or writable by others than its owner.
    InsecurePermissions {
        path: String,
        mode: u32,
    },
    /// The database or one of its companions is not a plain file (a symlink, a directory).
    NotAFile {
        path: String,
    },
    /// SQLite could not put the database in WAL mode.
    NotWal {
        mode: String,
    },
    Random(getrandom::Error),
    /// An active enrolment exists and replacing it was not asked for.
    AlreadyActive,
    /// There is no pending enrolment to activate.
    NoPendingEnrollment,
    /// The pending enrolment is past its lifetime.
    EnrollmentExpired,
    /// The account has no active enrolment.
    NotEnrolled,
    /// The fleet's shared PostgreSQL store failed (`[store] kind = "postgres"`).
    Fleet(crate::fleet::pg::PgError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Io(e) => write!(f, "state file error: {e}"),
            StoreError::InsecurePermissions { path, mode } => write!(
                f,
                "{path} has mode {mode:04o}; it holds secrets and must be 0600 (chmod 600 {path})"
            ),
            StoreError::NotAFile { path } => {
                write!(
                    f,
                    "{path} is not a plain file; it must be one, owned by toopherd"
                )
            }
            StoreError::NotWal { mode } => write!(
                f,
                "the database cannot use WAL (journal mode {mode}); \
                 put the state directory on a local file system"
            ),
            StoreError::Random(e) => write!(f, "no randomness: {e}"),
            StoreError::AlreadyActive => f.write_str("the account already has an active enrolment"),
            StoreError::NoPendingEnrollment => f.write_str("the account has no pending enrolment"),
            StoreError::EnrollmentExpired => {
                f.write_str("the pending enrolment expired; enrol again")
            }
            StoreError::NotEnrolled => f.write_str("the account has no active enrolment"),
            StoreError::Fleet(e) => write!(f, "shared store: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// The store itself failed (disk, database, files), as opposed to a refusal that
    /// follows from the account's state.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            StoreError::AlreadyActive
                | StoreError::NoPendingEnrollment
                | StoreError::EnrollmentExpired
                | StoreError::NotEnrolled
        )
    }

    /// The store could not be reached in time (the shared database is down or did not
    /// answer): the one store failure `failmode` decides. Every other failure denies.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Fleet(e) if e.is_unreachable())
    }

    /// Every connection to the shared store is in use: toopherd is overloaded (denies).
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Fleet(crate::fleet::pg::PgError::Busy))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e)
    }
}
impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}
impl From<getrandom::Error> for StoreError {
    fn from(e: getrandom::Error) -> Self {
        StoreError::Random(e)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_failures: u64,
    pub window: u64,
}

/// A new enrolment's secrets, handed out once.
pub struct NewEnrollment {
    pub secret: Zeroizing<Vec<u8>>,
    pub recovery_codes: Vec<Zeroizing<String>>,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Wrong,
    /// A valid code of a step already used (or older than one used).
    Replayed,
    /// A recovery code that was already used.
    RecoveryCodeUsed,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Wrong => "wrong_code",
            Rejection::Replayed => "replayed_code",
            Rejection::RecoveryCodeUsed => "used_recovery_code",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted(Method),
    Rejected(Rejection),
    /// Refused without looking at the code: too many recent failures.
    RateLimited {
        until: u64,
    },
}

/// A verification's verdict and what it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Verdict,
    pub recorded: Recorded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginState {
    /// An administrator suspended the account's second factor.
    Suspended,
    NotEnrolled,
    Active,
    RateLimited {
        until: u64,
    },
}

pub struct Store {
    conn: Connection,
    journal: std::sync::Arc<journal::Journal>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    user            TEXT PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'active')),
    secret          BLOB NOT NULL,
    recovery_salt   BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    activated_at    INTEGER,
    last_step       INTEGER NOT NULL DEFAULT -1,
    last_success_at INTEGER,
    last_failure_at INTEGER
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    user    TEXT NOT NULL REFERENCES accounts (user) ON DELETE CASCADE,
    hash    BLOB NOT NULL,
    used_at INTEGER
);
CREATE INDEX IF NOT EXISTS recovery_codes_user ON recovery_codes (user);
CREATE TABLE IF NOT EXISTS failures (
    user TEXT NOT NULL,
    at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_user_at ON failures (user, at);
";

/// Version 2: Toopher pairings, two-way registrations, suspended users, activity.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS pairings (
    user       TEXT PRIMARY KEY,
    pairing_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS registrations (
    user          TEXT PRIMARY KEY,
    salt          BLOB NOT NULL,
    code_hash     BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    approved_at   INTEGER,
    approved_by   TEXT,
    response_hash BLOB,
    tries         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS registration_starts (
    user TEXT NOT NULL,
    at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS suspended (
    user TEXT PRIMARY KEY,
    at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS activity (
    user            TEXT PRIMARY KEY,
    last_success_at INTEGER,
    last_failure_at INTEGER
);
PRAGMA user_version = 2;
";

struct Account {
    state: String,
    secret: Zeroizing<Vec<u8>>,
    salt: Vec<u8>,
    expires_at: Option<u64>,
    last_step: i64,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating with mode 0600) the database. An existing database, `-wal` or
    /// `-shm` file that others can read or write, or that another user owns, is refused:
    /// they hold TOTP secrets (the WAL holds recent pages of the database).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        for suffix in journal::COMPANIONS {
            journal::check_private(&journal::companion(path, suffix), false)?;
        }
        if !journal::check_private(path, true)? {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?
                .sync_all()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                journal::sync_dir(dir)?;
            }
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement is prepared once and kept (`prepare_cached`): parsing SQL was a
        // visible share of a verification's time. Room for all of them.
        conn.set_prepared_statement_cache_capacity(96);
        // The planner's stability guarantee: a plan never depends on the values bound to
        // it. Otherwise SQLite marks a statement whose parameter meets an indexed range
        // (`at > ?2`, with the STAT4 support the bundled build has) or is a `LIMIT` to be
        // parsed again at every new binding: the cache above would not save the parse.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        // WAL synced at each commit: an answer is sent only after its change is on disk.
        let journal = journal::Journal::attach(&mut conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < 3 {
            // One transaction: an upgrade is whole or not at all.
            let tx = conn.unchecked_transaction()?;
            if version < 2 {
                tx.execute_batch(SCHEMA)?;
                tx.execute_batch(SCHEMA_V2)?;
            }
            tx.execute_batch(failures::SCHEMA_V3)?;
            tx.commit()?;
        }
        Ok(Store { conn, journal })
    }

    /// Commits made durable since the database was opened (each counted once it is on
    /// disk): a store that failed works again when this grows.
    pub fn commits(&self) -> u64 {
        self.journal.commits()
    }

    /// The outcome of the WAL checkpoint tried since the last call, if any. A failed
    /// checkpoint loses nothing: the WAL keeps the changes and grows until one succeeds.
    pub fn take_checkpoint(&self) -> Option<Result<(), String>> {
        self.journal.take_checkpoint()
    }

    /// Rolls back a transaction that an error left open, so the next request can start
    /// its own (a failed COMMIT may leave it to the caller).
    pub fn end_open_transaction(&mut self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    fn account(conn: &Connection, user: &str) -> Result<Option<Account>, StoreError> {
        Ok(conn
            .prepare_cached("SELECT state, secret, recovery_salt, expires_at, last_step FROM accounts WHERE user = ?1")?.query_row(
                params![user],
                |r| {
                    Ok(Account {
                        state: r.get(0)?,
                        secret: Zeroizing::new(r.get(1)?),
                        salt: r.get(2)?,
                        expires_at: r.get::<_, Option<i64>>(3)?.map(to_u64),
                        last_step: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    fn note_activity(
        conn: &Connection,
        user: &str,
        success: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        // Two fixed statements, each prepared once (this runs at every verification).
        let sql = if success {
            "INSERT INTO activity (user, last_success_at) VALUES (?1, ?2)
             ON CONFLICT (user) DO UPDATE SET last_success_at = excluded.last_success_at"
        } else {
            "INSERT INTO activity (user, last_failure_at) VALUES (?1, ?2)
             ON CONFLICT (user) DO UPDATE SET last_failure_at = excluded.last_failure_at"
        };
        conn.prepare_cached(sql)?
            .execute(params![user, to_i64(now)])?;
        Ok(())
    }

    /// When the rate limit refuses `user` right now, until when.
    pub fn rate_limited(
        &self,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, StoreError> {
        Self::locked_until(&self.conn, user, now, limits)
    }

    /// What a login of `user` meets right now.
    pub fn login_state(
        &self,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<LoginState, StoreError> {
        if self.is_suspended(user)? {
            return Ok(LoginState::Suspended);
        }
        let active = matches!(Self::account(&self.conn, user)?, Some(a) if a.state == "active");
        if !active {
            return Ok(LoginState::NotEnrolled);
        }
        Ok(match Self::locked_until(&self.conn, user, now, limits)? {
            Some(until) => LoginState::RateLimited { until },
            None => LoginState::Active,
        })
    }

    /// Creates a pending enrolment (replacing a pending or, with `force`, an active one).
    pub fn enroll(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
        force: bool,
    ) -> Result<NewEnrollment, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        if let Some(existing) = Self::account(&tx, user)?
            && existing.state == "active"
            && !force
        {
            return Err(StoreError::AlreadyActive);
        }
        let mut secret = Zeroizing::new(vec![0u8; totp::SECRET_LEN]);
        getrandom::fill(&mut secret)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        let codes = (0..recovery::COUNT)
            .map(|_| recovery::generate())
            .collect::<Result<Vec<_>, _>>()?;
        let expires_at = now + ttl;
        tx.prepare_cached("DELETE FROM accounts WHERE user = ?1")?
            .execute(params![user])?;
        tx.prepare_cached(
            "INSERT INTO accounts (user, state, secret, recovery_salt, created_at, expires_at)
             VALUES (?1, 'pending', ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            user,
            &secret[..],
            &salt[..],
            to_i64(now),
            to_i64(expires_at)
        ])?;
        for code in &codes {
            if let Some(n) = recovery::normalize(code) {
                tx.prepare_cached("INSERT INTO recovery_codes (user, hash) VALUES (?1, ?2)")?
                    .execute(params![user, &recovery::hash(&salt, &n)[..]])?;
            }
        }
        tx.commit()?;
        Ok(NewEnrollment {
            secret,
            recovery_codes: codes,
            expires_at,
        })
    }

    /// Activates a pending enrolment with its first code (which is then used up).
    pub fn activate(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Verdict, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let Some(acct) = Self::account(&tx, user)? else {
            return Err(StoreError::NoPendingEnrollment);
        };
        if acct.state != "pending" {
            return Err(StoreError::NoPendingEnrollment);
        }
        if acct.expires_at.is_none_or(|t| t <= now) {
            return Err(StoreError::EnrollmentExpired);
        }
        if let Some(until) = Self::enforce_lock(&tx, user, now, limits)? {
            tx.commit()?;
            return Ok(Verdict::RateLimited { until });
        }
        let verdict = match totp::looks_like_code(code)
            .then(|| {
                totp::matching_steps(&acct.secret, code, now)
                    .first()
                    .copied()
            })
            .flatten()
        {
            Some(step) => {
                tx.prepare_cached(
                    "UPDATE accounts SET state = 'active', expires_at = NULL, activated_at = ?2,
                     last_step = ?3, last_success_at = ?2 WHERE user = ?1",
                )?
                .execute(params![user, to_i64(now), to_i64(step)])?;
                // Not a login: the failures stay untold for the next one.
                Self::record_success(&tx, user, now, &Attempt::default(), false)?;
                Verdict::Accepted(Method::Otp)
            }
            None => {
                Self::record_failure(&tx, user, now, limits, None)?;
                Verdict::Rejected(Rejection::Wrong)
            }
        };
        tx.commit()?;
        Ok(verdict)
    }

    /// Checks a second factor of an active account: a TOTP code (each step accepted
    /// once, and none older than the last accepted) or an unused recovery code.
    pub fn verify(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<Verdict>, StoreError> {
        Ok(self
            .check(user, code, now, limits, &Attempt::default())?
            .map(|c| c.verdict))
    }

    /// [`Store::verify`] for a login: records where a failure came from and, at a
    /// success, returns the failures to tell the person about. While the account is
    /// locked only a recovery code is looked at; it lifts the lock.
    pub fn check(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Option<Checked>, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let acct = match Self::account(&tx, user)? {
            Some(a) if a.state == "active" => a,
            _ => return Ok(None),
        };
        let code = code.trim();
        let locked = Self::enforce_lock(&tx, user, now, limits)?;
        let verdict = match locked {
            // A one-time password is not looked at while locked: that is the limit.
            Some(until) if totp::looks_like_code(code) => Verdict::RateLimited { until },
            Some(_) => Self::check_recovery_code(&tx, user, &acct.salt, code, now)?,
            None if totp::looks_like_code(code) => {
                let steps = totp::matching_steps(&acct.secret, code, now);
                let used = steps.iter().any(|&s| to_i64(s) == acct.last_step);
                match steps.iter().find(|&&s| to_i64(s) > acct.last_step) {
                    Some(&step) if !used => {
                        tx.prepare_cached("UPDATE accounts SET last_step = ?2 WHERE user = ?1")?
                            .execute(params![user, to_i64(step)])?;
                        Verdict::Accepted(Method::Otp)
                    }
                    _ if steps.is_empty() => Verdict::Rejected(Rejection::Wrong),
                    _ => Verdict::Rejected(Rejection::Replayed),
                }
            }
            None => Self::check_recovery_code(&tx, user, &acct.salt, code, now)?,
        };
        let recorded = match verdict {
            Verdict::Accepted(method) => Recorded {
                failure: None,
                notice: Self::record_success(
                    &tx,
                    user,
                    now,
                    attempt,
                    method == Method::RecoveryCode,
                )?,
            },
            Verdict::Rejected(_) => Recorded {
                failure: Some(Self::record_failure(&tx, user, now, limits, attempt.rhost)?),
                notice: None,
            },
            Verdict::RateLimited { .. } => Recorded::default(),
        };
        tx.commit()?;
        Ok(Some(Checked { verdict, recorded }))
    }

    fn check_recovery_code(
        tx: &Connection,
        user: &str,
        salt: &[u8],
        input: &str,
        now: u64,
    ) -> Result<Verdict, StoreError> {
        let Some(normalized) = recovery::normalize(input) else {
            return Ok(Verdict::Rejected(Rejection::Wrong));
        };
        let candidate = recovery::hash(salt, &normalized);
        let mut stmt =
            tx.prepare_cached("SELECT rowid, hash, used_at FROM recovery_codes WHERE user = ?1")?;
        let rows: Vec<(i64, Vec<u8>, Option<i64>)> = stmt
            .query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut matched = None;
        for (rowid, hash, used_at) in rows {
            if bool::from(hash.as_slice().ct_eq(&candidate[..])) {
                matched = Some((rowid, used_at));
            }
        }
        Ok(match matched {
            Some((rowid, None)) => {
                tx.prepare_cached("UPDATE recovery_codes SET used_at = ?2 WHERE rowid = ?1")?
                    .execute(params![rowid, to_i64(now)])?;
                Verdict::Accepted(Method::RecoveryCode)
            }
            Some((_, Some(_))) => Verdict::Rejected(Rejection::RecoveryCodeUsed),
            None => Verdict::Rejected(Rejection::Wrong),
        })
    }

    pub fn status(
        &self,
        user: &str,
        backend: &str,
        now: u64,
        limits: Limits,
    ) -> Result<AccountStatus, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT state, created_at, activated_at, expires_at FROM accounts WHERE user = ?1",
            )?
            .query_row(params![user], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .optional()?;
        let (last_success_at, last_failure_at) = self
            .conn
            .prepare_cached(
                "SELECT last_success_at, last_failure_at FROM activity WHERE user = ?1",
            )?
            .query_row(params![user], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .optional()?
            .unwrap_or((None, None));
        let left: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM recovery_codes WHERE user = ?1 AND used_at IS NULL",
            )?
            .query_row(params![user], |r| r.get(0))?;
        let pairing = self.pairing(user)?;
        let opt = |v: Option<i64>| v.map(to_u64);
        let mut st = AccountStatus {
            user: user.into(),
            backend: backend.into(),
            state: if pairing.is_some() {
                EnrollmentState::Active
            } else {
                EnrollmentState::None
            },
            created_at: None,
            activated_at: None,
            expires_at: None,
            last_success_at: opt(last_success_at),
            last_failure_at: opt(last_failure_at),
            recovery_codes_left: u32::try_from(left).unwrap_or(0),
            locked_until: Self::locked_until(&self.conn, user, now, limits)?,
            lock_level: self.lock_level(user, now)?,
            pairing_id: pairing,
            enabled: !self.is_suspended(user)?,
            hosts: None,
        };
        if let Some((state, created, activated, expires)) = row {
            let expired = expires.is_some_and(|t| to_u64(t) <= now);
            st.state = match (state.as_str(), expired) {
                ("active", _) => EnrollmentState::Active,
                (_, false) => EnrollmentState::Pending,
                (_, true) => st.state,
            };
            st.created_at = opt(created);
            st.activated_at = opt(activated);
            st.expires_at = opt(expires);
        }
        Ok(st)
    }

    /// Removes the account's enrolment, its failure log and lock. Returns whether an
    /// enrolment existed.
    pub fn remove(&mut self, user: &str) -> Result<bool, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        tx.prepare_cached("DELETE FROM recovery_codes WHERE user = ?1")?
            .execute(params![user])?;
        tx.prepare_cached("DELETE FROM failures WHERE user = ?1")?
            .execute(params![user])?;
        tx.prepare_cached("DELETE FROM lockouts WHERE user = ?1")?
            .execute(params![user])?;
        let n = tx
            .prepare_cached("DELETE FROM accounts WHERE user = ?1")?
            .execute(params![user])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Drops pending enrolments past their lifetime.
    pub fn expire_pending(&mut self, now: u64) -> Result<usize, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        tx.prepare_cached(
            "DELETE FROM recovery_codes WHERE user IN
             (SELECT user FROM accounts WHERE state = 'pending' AND expires_at <= ?1)",
        )?
        .execute(params![to_i64(now)])?;
        let n = tx
            .prepare_cached("DELETE FROM accounts WHERE state = 'pending' AND expires_at <= ?1")?
            .execute(params![to_i64(now)])?;
        tx.commit()?;
        Ok(n)
    }

    /// Sets the file mode of the database and its WAL companions to 0600.
    pub fn tighten_permissions(path: &Path) -> Result<(), StoreError> {
        for suffix in ["", journal::COMPANIONS[0], journal::COMPANIONS[1]] {
            let p = journal::companion(path, suffix);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(())
    }
}

mod admin;
pub(crate) mod failures;
mod group;
mod journal;
mod registration;
mod savepoint;
mod shared;
mod storage;
mod watch;
pub use failures::{Attempt, Recorded};
pub use registration::{ApproveError, RegistrationCheck};
use savepoint::Savepoint;
pub use shared::{Shared, StorageFactory};
pub use storage::Storage;

#[cfg(test)]
mod tests;
