//! The failure log: the rate limit's escalating locks (see `crate::budget`) and the
//! failures the person has not been told about yet. Each change happens inside the
//! caller's transaction, together with the verification it records.

use super::Savepoint;
use super::{Limits, Store, StoreError, to_i64, to_u64};
use crate::budget;
use rusqlite::{Connection, OptionalExtension, params};
use toopher_ipc::{FailureNotice, NOTICE_LOCAL, NOTICE_MAX_RHOSTS};

/// The failures of the current round, newest first (see `lock_from_round`).
pub(super) const ROUND: &str = "SELECT at FROM failures WHERE user = ?1 AND counts = 1 AND at > ?2
     ORDER BY at DESC, rowid DESC LIMIT ?3";

/// Version 3: where each failure came from, whether it still counts toward a lock and
/// whether the person was told; the lock state. Failures already on record count and are
/// untold: version 2 deleted them at a success.
pub(super) const SCHEMA_V3: &str = "
ALTER TABLE failures ADD COLUMN rhost TEXT;
ALTER TABLE failures ADD COLUMN counts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE failures ADD COLUMN told INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS lockouts (
    user       TEXT PRIMARY KEY,
    level      INTEGER NOT NULL DEFAULT 0,
    lock_until INTEGER NOT NULL DEFAULT 0,
    untold     INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO lockouts (user, untold) SELECT user, count(*) FROM failures GROUP BY user;
PRAGMA user_version = 3;
";

/// Failures kept per user at least (more when `max_failures` is larger): the newest,
/// enough for a lock and for the notice; the count itself is kept apart.
const KEEP_FAILURES: u64 = 64;

/// Who attempts a second factor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt<'a> {
    pub rhost: Option<&'a str>,
    /// Failures this login recorded already: the person saw each as "Incorrect code".
    pub own: &'a [i64],
    /// The person will be shown a notice at a success; otherwise failures stay untold
    /// for a later login.
    pub notify: bool,
}

/// What recording a result did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The failure's id.
    pub failure: Option<i64>,
    /// At a success: the failures to tell the person about.
    pub notice: Option<FailureNotice>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Lockout {
    /// Locks since the last recovery code or administrator's unlock.
    level: u32,
    /// The end of the last lock.
    lock_until: u64,
    untold: u64,
}

impl Store {
    /// `user`'s lock state at `now`. The escalation is forgotten after
    /// [`budget::LEVEL_RESET_AFTER`] without a lock, so a person's occasional typos over
    /// the years do not add up to day-long locks (and waiting that long gives a guesser
    /// fewer guesses than staying at the cap).
    fn lockout(conn: &Connection, user: &str, now: u64) -> Result<Lockout, StoreError> {
        let mut l: Lockout = conn
            .prepare_cached("SELECT level, lock_until, untold FROM lockouts WHERE user = ?1")?
            .query_row(params![user], |r| {
                Ok(Lockout {
                    level: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                    lock_until: to_u64(r.get(1)?),
                    untold: to_u64(r.get(2)?),
                })
            })
            .optional()?
            .unwrap_or_default();
        if l.lock_until.saturating_add(budget::LEVEL_RESET_AFTER) <= now {
            l.level = 0;
        }
        Ok(l)
    }

    fn save_lockout(conn: &Connection, user: &str, l: &Lockout) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO lockouts (user, level, lock_until, untold) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user) DO UPDATE SET level = excluded.level,
             lock_until = excluded.lock_until, untold = excluded.untold",
        )?
        .execute(params![
            user,
            i64::from(l.level),
            to_i64(l.lock_until),
            to_i64(l.untold)
        ])?;
        Ok(())
    }

    /// The lock the failures on record call for: those inside the window that have not
    /// earned a lock yet (nor were made during one, nor wiped by a lift).
    fn lock_from_round(
        conn: &Connection,
        user: &str,
        l: &Lockout,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, StoreError> {
        let max = usize::try_from(limits.max_failures).unwrap_or(usize::MAX);
        if max == 0 {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached(ROUND)?;
        let round: Vec<i64> = stmt
            .query_map(
                params![
                    user,
                    to_i64(now.saturating_sub(limits.window)),
                    to_i64(limits.max_failures)
                ],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        if round.len() < max {
            return Ok(None);
        }
        let oldest = to_u64(round[max - 1]);
        Ok(Some(oldest.saturating_add(budget::lock_duration(
            limits.window,
            l.level,
        ))))
    }

    /// Until when `user` is locked at `now`, if they are: the stored lock, or one that
    /// the failures on record already call for (a database from before escalation).
    pub(super) fn locked_until(
        conn: &Connection,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, StoreError> {
        let l = Self::lockout(conn, user, now)?;
        if l.lock_until > now {
            return Ok(Some(l.lock_until));
        }
        Ok(Self::lock_from_round(conn, user, &l, now, limits)?.filter(|&t| t > now))
    }

    /// Like [`Store::locked_until`], storing a lock that was due but not stored, so the
    /// next one escalates from it.
    pub(super) fn enforce_lock(
        conn: &Connection,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, StoreError> {
        let mut l = Self::lockout(conn, user, now)?;
        if l.lock_until > now {
            return Ok(Some(l.lock_until));
        }
        match Self::lock_from_round(conn, user, &l, now, limits)?.filter(|&t| t > now) {
            Some(until) => {
                Self::impose(conn, user, &mut l, until)?;
                Self::save_lockout(conn, user, &l)?;
                Ok(Some(until))
            }
            None => Ok(None),
        }
    }

    /// Starts a lock: the failures that earned it count toward no later one.
    fn impose(
        conn: &Connection,
        user: &str,
        l: &mut Lockout,
        until: u64,
    ) -> Result<(), StoreError> {
        l.lock_until = until;
        l.level = l.level.saturating_add(1);
        Self::discount(conn, user)
    }

    fn discount(conn: &Connection, user: &str) -> Result<(), StoreError> {
        conn.prepare_cached("UPDATE failures SET counts = 0 WHERE user = ?1 AND counts = 1")?
            .execute(params![user])?;
        Ok(())
    }

    /// Records a failed second factor; the set of failures that completes a round
    /// earns the next lock. Failures during a lock (a wrong recovery code) are only told.
    pub(super) fn record_failure(
        conn: &Connection,
        user: &str,
        now: u64,
        limits: Limits,
        rhost: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut l = Self::lockout(conn, user, now)?;
        let locked = l.lock_until > now;
        conn.prepare_cached(
            "INSERT INTO failures (user, at, rhost, counts) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![user, to_i64(now), rhost, i64::from(!locked)])?;
        let id = conn.last_insert_rowid();
        l.untold = l.untold.saturating_add(1);
        if !locked && let Some(until) = Self::lock_from_round(conn, user, &l, now, limits)? {
            Self::impose(conn, user, &mut l, until)?;
        }
        Self::save_lockout(conn, user, &l)?;
        // Told failures matter only while they can still count toward a lock.
        conn.prepare_cached(
            "DELETE FROM failures WHERE user = ?1 AND told = 1 AND (at <= ?2 OR counts = 0)",
        )?
        .execute(params![user, to_i64(now.saturating_sub(limits.window))])?;
        conn.prepare_cached(
            "DELETE FROM failures WHERE user = ?1 AND rowid NOT IN
             (SELECT rowid FROM failures WHERE user = ?1 ORDER BY rowid DESC LIMIT ?2)",
        )?
        .execute(params![
            user,
            to_i64(limits.max_failures.max(KEEP_FAILURES))
        ])?;
        Self::note_activity(conn, user, false, now)?;
        Ok(id)
    }

    /// Records a successful second factor. `lift` (a recovery code) ends the lock and
    /// its escalation. With `attempt.notify`, returns the untold failures (other than
    /// this login's own) and marks them told.
    pub(super) fn record_success(
        conn: &Connection,
        user: &str,
        now: u64,
        attempt: &Attempt<'_>,
        lift: bool,
    ) -> Result<Option<FailureNotice>, StoreError> {
        let mut l = Self::lockout(conn, user, now)?;
        if lift {
            Self::lift(conn, user, &mut l, now)?;
        }
        let mut notice = None;
        if attempt.notify {
            let mut stmt = conn.prepare_cached(
                "SELECT rowid, at, rhost FROM failures WHERE user = ?1 AND told = 0
                 ORDER BY at DESC, rowid DESC",
            )?;
            let rows: Vec<(i64, i64, Option<String>)> = stmt
                .query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            notice = failure_notice(&rows, attempt.own, l.untold);
            conn.prepare_cached("UPDATE failures SET told = 1 WHERE user = ?1 AND told = 0")?
                .execute(params![user])?;
            l.untold = 0;
        }
        Self::save_lockout(conn, user, &l)?;
        Self::note_activity(conn, user, true, now)?;
        Ok(notice)
    }

    /// Ends the lock and its escalation; the failures so far count toward no lock.
    fn lift(conn: &Connection, user: &str, l: &mut Lockout, now: u64) -> Result<(), StoreError> {
        l.lock_until = l.lock_until.min(now);
        l.level = 0;
        Self::discount(conn, user)
    }

    /// Lifts `user`'s lock and resets its escalation (an administrator's unlock).
    /// Returns whether there was anything to lift.
    pub fn unlock(&mut self, user: &str, now: u64, limits: Limits) -> Result<bool, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let was = Self::locked_until(&tx, user, now, limits)?.is_some()
            || Self::lockout(&tx, user, now)?.level > 0;
        let mut l = Self::lockout(&tx, user, now)?;
        Self::lift(&tx, user, &mut l, now)?;
        Self::save_lockout(&tx, user, &l)?;
        tx.commit()?;
        Ok(was)
    }

    /// Locks since the last recovery code or administrator's unlock.
    pub fn lock_level(&self, user: &str, now: u64) -> Result<u32, StoreError> {
        Ok(Self::lockout(&self.conn, user, now)?.level)
    }

    /// Records a second-factor result of the Toopher backend (a wrong OTP or a denied
    /// push is a failure), under the same rule as the local backend.
    pub fn note_result(
        &mut self,
        user: &str,
        success: bool,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Recorded, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let recorded = if success {
            Recorded {
                failure: None,
                notice: Self::record_success(&tx, user, now, attempt, false)?,
            }
        } else {
            Recorded {
                failure: Some(Self::record_failure(&tx, user, now, limits, attempt.rhost)?),
                notice: None,
            }
        };
        tx.commit()?;
        Ok(recorded)
    }
}

/// The notice for failures the person has not been told about: `rows` are the untold
/// failures (id, time, rhost), newest first; `own` those of this login (the person saw
/// them); `untold` how many the account counts. Both stores build it here.
pub(crate) fn failure_notice(
    rows: &[(i64, i64, Option<String>)],
    own: &[i64],
    untold: u64,
) -> Option<FailureNotice> {
    let others: Vec<_> = rows.iter().filter(|(id, _, _)| !own.contains(id)).collect();
    let own_untold = (rows.len() - others.len()) as u64;
    let failures = untold.saturating_sub(own_untold);
    if failures == 0 {
        return None;
    }
    let mut rhosts: Vec<String> = Vec::new();
    let mut more_rhosts = false;
    for (_, _, rhost) in &others {
        let name = rhost.as_deref().unwrap_or(NOTICE_LOCAL);
        if rhosts.iter().any(|r| r == name) {
            continue;
        }
        if rhosts.len() == NOTICE_MAX_RHOSTS {
            more_rhosts = true;
            break;
        }
        rhosts.push(name.to_owned());
    }
    Some(FailureNotice {
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        rhosts,
        more_rhosts,
        last_at: others
            .first()
            .map(|(_, at, _)| u64::try_from(*at).unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests;
