//! The failure log and the rate limit's escalating locks, fleet-wide: the same rules as
//! the SQLite store's (`crate::store::failures`, `crate::budget`), so failures on every
//! host count toward one lock per user. Each change runs inside the caller's transaction,
//! under the user's advisory lock.

use super::session::Session;
use super::{PgError, to_i64, to_u64};
use crate::budget;
use crate::store::failures::failure_notice;
use crate::store::{Attempt, Limits, Recorded};
use tokio_postgres::Row;

/// Failures kept per user at least (more when `max_failures` is larger).
const KEEP_FAILURES: u64 = 64;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Lockout {
    /// Locks since the last recovery code or administrator's unlock.
    level: u32,
    /// The end of the last lock.
    lock_until: u64,
    untold: u64,
}

pub(super) const LOCKOUT_SQL: &str =
    "SELECT level, lock_until, untold FROM lockouts WHERE user_name = $1";
/// The failures of the current round: inside the window, not yet counted toward a lock.
pub(super) const ROUND_SQL: &str = "SELECT at FROM failures WHERE user_name = $1 AND counts
     AND at > $2 ORDER BY at DESC, id DESC LIMIT $3";

/// `user`'s lock state at `now` from its row; the escalation is forgotten after
/// [`budget::LEVEL_RESET_AFTER`] without a lock.
pub(super) fn lockout_of(row: Option<Row>, now: u64) -> Result<Lockout, PgError> {
    let mut l = match row {
        Some(r) => Lockout {
            level: u32::try_from(r.try_get::<_, i64>(0)?).unwrap_or(u32::MAX),
            lock_until: to_u64(r.try_get(1)?),
            untold: to_u64(r.try_get(2)?),
        },
        None => Lockout::default(),
    };
    if l.lock_until.saturating_add(budget::LEVEL_RESET_AFTER) <= now {
        l.level = 0;
    }
    Ok(l)
}

/// The parameters of [`ROUND_SQL`]: since when, and how many failures make a round.
pub(super) fn round_window(now: u64, limits: Limits) -> (i64, i64) {
    (
        to_i64(now.saturating_sub(limits.window)),
        to_i64(limits.max_failures),
    )
}

/// The times of the current round's failures, newest first.
pub(super) fn round_of(rows: Vec<Row>) -> Result<Vec<i64>, PgError> {
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// A user's lock and the failures of its current round, read together.
pub(super) struct LockState {
    pub(super) lockout: Lockout,
    pub(super) round: Vec<i64>,
}

impl LockState {
    /// Until when the user is locked at `now`, if they are.
    pub(super) fn locked_until(&self, now: u64, limits: Limits) -> Option<u64> {
        if self.lockout.lock_until > now {
            return Some(self.lockout.lock_until);
        }
        round_lock(&self.lockout, &self.round, limits).filter(|&t| t > now)
    }
}

async fn lockout(s: &mut Session, user: &str, now: u64) -> Result<Lockout, PgError> {
    let row = s.query_opt(LOCKOUT_SQL, &[&user]).await?;
    lockout_of(row, now)
}

/// The lock state from a row whose columns `first..first + 4` are the lock row's
/// `level, lock_until, untold` (NULL without one) and the round's failure times (an array).
pub(super) fn lock_state_of(r: &Row, first: usize, now: u64) -> Result<LockState, PgError> {
    let level: Option<i64> = r.try_get(first)?;
    let mut l = match level {
        Some(level) => Lockout {
            level: u32::try_from(level).unwrap_or(u32::MAX),
            lock_until: to_u64(r.try_get::<_, Option<i64>>(first + 1)?.unwrap_or(0)),
            untold: to_u64(r.try_get::<_, Option<i64>>(first + 2)?.unwrap_or(0)),
        },
        None => Lockout::default(),
    };
    if l.lock_until.saturating_add(budget::LEVEL_RESET_AFTER) <= now {
        l.level = 0;
    }
    Ok(LockState {
        lockout: l,
        round: r.try_get(first + 3)?,
    })
}

/// The lock state in one round trip.
pub(super) async fn lock_state(
    s: &mut Session,
    user: &str,
    now: u64,
    limits: Limits,
) -> Result<LockState, PgError> {
    const SQL: &str = "SELECT l.level, l.lock_until, l.untold,
         ARRAY(SELECT f.at FROM failures f WHERE f.user_name = $1 AND f.counts AND f.at > $2
               ORDER BY f.at DESC, f.id DESC LIMIT $3)
         FROM (SELECT 1) AS one LEFT JOIN lockouts l ON l.user_name = $1";
    let (since, max) = round_window(now, limits);
    let row = s.query_one(SQL, &[&user, &since, &max]).await?;
    lock_state_of(&row, 0, now)
}

async fn save_lockout(s: &mut Session, user: &str, l: &Lockout) -> Result<(), PgError> {
    s.execute(
        SAVE_LOCKOUT_SQL,
        &[
            &user,
            &i64::from(l.level),
            &to_i64(l.lock_until),
            &to_i64(l.untold),
        ],
    )
    .await?;
    Ok(())
}

/// The lock the failures of the round call for (newest first), if they make a round.
fn round_lock(l: &Lockout, round: &[i64], limits: Limits) -> Option<u64> {
    let max = usize::try_from(limits.max_failures).unwrap_or(usize::MAX);
    if max == 0 || round.len() < max {
        return None;
    }
    let oldest = to_u64(round[max - 1]);
    Some(oldest.saturating_add(budget::lock_duration(limits.window, l.level)))
}

/// The lock the failures on record call for: those inside the window that have not
/// earned a lock yet.
async fn lock_from_round(
    s: &mut Session,
    user: &str,
    l: &Lockout,
    now: u64,
    limits: Limits,
) -> Result<Option<u64>, PgError> {
    let (since, max) = round_window(now, limits);
    let rows = s.query(ROUND_SQL, &[&user, &since, &max]).await?;
    Ok(round_lock(l, &round_of(rows)?, limits))
}

/// Until when `user` is locked at `now`, if they are.
pub(super) async fn locked_until(
    s: &mut Session,
    user: &str,
    now: u64,
    limits: Limits,
) -> Result<Option<u64>, PgError> {
    Ok(lock_state(s, user, now, limits)
        .await?
        .locked_until(now, limits))
}

/// Like [`locked_until`] on a state already read, storing a lock that was due but not
/// stored. Returns the lock and the lock state as it is now.
pub(super) async fn enforce_lock(
    s: &mut Session,
    user: &str,
    now: u64,
    limits: Limits,
    state: LockState,
) -> Result<(Option<u64>, Lockout), PgError> {
    let mut l = state.lockout;
    if l.lock_until > now {
        return Ok((Some(l.lock_until), l));
    }
    match round_lock(&l, &state.round, limits).filter(|&t| t > now) {
        Some(until) => {
            impose(s, user, &mut l, until).await?;
            save_lockout(s, user, &l).await?;
            Ok((Some(until), l))
        }
        None => Ok((None, l)),
    }
}

/// Starts a lock: the failures that earned it count toward no later one.
async fn impose(s: &mut Session, user: &str, l: &mut Lockout, until: u64) -> Result<(), PgError> {
    l.lock_until = until;
    l.level = l.level.saturating_add(1);
    discount(s, user).await
}

async fn discount(s: &mut Session, user: &str) -> Result<(), PgError> {
    s.execute(
        "UPDATE failures SET counts = false WHERE user_name = $1 AND counts",
        &[&user],
    )
    .await?;
    Ok(())
}

const SAVE_LOCKOUT_SQL: &str =
    "INSERT INTO lockouts (user_name, level, lock_until, untold) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_name) DO UPDATE SET level = excluded.level,
     lock_until = excluded.lock_until, untold = excluded.untold";

/// Saves the lock state and notes the decision with its host: one statement (a
/// data-modifying CTE), one round trip.
async fn save_and_note(
    s: &mut Session,
    user: &str,
    host: &str,
    l: &Lockout,
    success: bool,
    now: u64,
) -> Result<(), PgError> {
    const SUCCESS: &str = "WITH saved AS (
         INSERT INTO lockouts (user_name, level, lock_until, untold) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_name) DO UPDATE SET level = excluded.level,
         lock_until = excluded.lock_until, untold = excluded.untold RETURNING 1)
     INSERT INTO activity (user_name, last_success_at, last_success_host) VALUES ($1, $5, $6)
     ON CONFLICT (user_name) DO UPDATE SET last_success_at = excluded.last_success_at,
     last_success_host = excluded.last_success_host";
    const FAILURE: &str = "WITH saved AS (
         INSERT INTO lockouts (user_name, level, lock_until, untold) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_name) DO UPDATE SET level = excluded.level,
         lock_until = excluded.lock_until, untold = excluded.untold RETURNING 1)
     INSERT INTO activity (user_name, last_failure_at, last_failure_host) VALUES ($1, $5, $6)
     ON CONFLICT (user_name) DO UPDATE SET last_failure_at = excluded.last_failure_at,
     last_failure_host = excluded.last_failure_host";
    s.execute(
        if success { SUCCESS } else { FAILURE },
        &[
            &user,
            &i64::from(l.level),
            &to_i64(l.lock_until),
            &to_i64(l.untold),
            &to_i64(now),
            &host,
        ],
    )
    .await?;
    Ok(())
}

/// Records a failed second factor on `host`; the failure that completes a round earns
/// the next lock. Failures during a lock are only told. Returns the failure's id.
pub(super) async fn record_failure(
    s: &mut Session,
    user: &str,
    host: &str,
    now: u64,
    limits: Limits,
    rhost: Option<&str>,
) -> Result<i64, PgError> {
    let mut l = lockout(s, user, now).await?;
    let locked = l.lock_until > now;
    let id: i64 = s
        .query_one(
            "INSERT INTO failures (user_name, at, rhost, host, counts) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
            &[&user, &to_i64(now), &rhost, &host, &!locked],
        )
        .await?
        .try_get(0)?;
    l.untold = l.untold.saturating_add(1);
    if !locked && let Some(until) = lock_from_round(s, user, &l, now, limits).await? {
        impose(s, user, &mut l, until).await?;
    }
    // Told failures matter only while they can still count toward a lock.
    s.execute(
        "DELETE FROM failures WHERE user_name = $1 AND told AND (at <= $2 OR NOT counts)",
        &[&user, &to_i64(now.saturating_sub(limits.window))],
    )
    .await?;
    s.execute(
        "DELETE FROM failures WHERE user_name = $1 AND id NOT IN
         (SELECT id FROM failures WHERE user_name = $1 ORDER BY id DESC LIMIT $2)",
        &[&user, &to_i64(limits.max_failures.max(KEEP_FAILURES))],
    )
    .await?;
    save_and_note(s, user, host, &l, false, now).await?;
    Ok(id)
}

/// Records a successful second factor on `host`. `lift` (a recovery code) ends the lock
/// and its escalation. With `attempt.notify`, returns the untold failures (other than
/// this login's own, from any host) and marks them told.
pub(super) async fn record_success(
    s: &mut Session,
    user: &str,
    host: &str,
    now: u64,
    attempt: &Attempt<'_>,
    lift: bool,
    known: Option<Lockout>,
) -> Result<Option<toopher_ipc::FailureNotice>, PgError> {
    let mut l = match known {
        Some(l) => l,
        None => lockout(s, user, now).await?,
    };
    if lift {
        lift_lock(s, user, &mut l, now).await?;
    }
    let mut notice = None;
    if attempt.notify {
        let rows = s
            .query(
                "SELECT id, at, rhost FROM failures WHERE user_name = $1 AND NOT told
                 ORDER BY at DESC, id DESC",
                &[&user],
            )
            .await?;
        let rows: Vec<(i64, i64, Option<String>)> = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        notice = failure_notice(&rows, attempt.own, l.untold);
        s.execute(
            "UPDATE failures SET told = true WHERE user_name = $1 AND NOT told",
            &[&user],
        )
        .await?;
        l.untold = 0;
    }
    save_and_note(s, user, host, &l, true, now).await?;
    Ok(notice)
}

/// Ends the lock and its escalation; the failures so far count toward no lock.
async fn lift_lock(s: &mut Session, user: &str, l: &mut Lockout, now: u64) -> Result<(), PgError> {
    l.lock_until = l.lock_until.min(now);
    l.level = 0;
    discount(s, user).await
}

impl super::PgStore {
    /// Lifts `user`'s lock and resets its escalation (an administrator's unlock), on every
    /// host. Returns whether there was anything to lift.
    pub async fn unlock(&self, user: &str, now: u64, limits: Limits) -> Result<bool, PgError> {
        self.run(async |s| {
            s.begin_for(user).await?;
            let was = locked_until(s, user, now, limits).await?.is_some()
                || lockout(s, user, now).await?.level > 0;
            let mut l = lockout(s, user, now).await?;
            lift_lock(s, user, &mut l, now).await?;
            save_lockout(s, user, &l).await?;
            s.commit().await?;
            Ok(was)
        })
        .await
    }

    /// Locks since the last recovery code or administrator's unlock.
    pub async fn lock_level(&self, user: &str, now: u64) -> Result<u32, PgError> {
        self.run(async |s| Ok(lockout(s, user, now).await?.level))
            .await
    }

    /// Records a second-factor result of the Toopher backend, under the same rule.
    pub async fn note_result(
        &self,
        user: &str,
        success: bool,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Recorded, PgError> {
        let host = self.host.as_str();
        self.run(async |s| {
            s.begin_for(user).await?;
            let recorded = if success {
                Recorded {
                    failure: None,
                    notice: record_success(s, user, host, now, attempt, false, None).await?,
                }
            } else {
                Recorded {
                    failure: Some(record_failure(s, user, host, now, limits, attempt.rhost).await?),
                    notice: None,
                }
            };
            s.commit().await?;
            Ok(recorded)
        })
        .await
    }
}
