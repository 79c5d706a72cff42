//! Account administration in the store: suspension, recorded Toopher pairings and
//! recovery code regeneration.

use super::Savepoint;
use super::{Store, StoreError, to_i64};
use crate::recovery;
use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

impl Store {
    pub fn is_suspended(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM suspended WHERE user = ?1")?
            .query_row(params![user], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn set_suspended(
        &mut self,
        user: &str,
        suspended: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        if suspended {
            self.conn
                .prepare_cached("INSERT OR IGNORE INTO suspended (user, at) VALUES (?1, ?2)")?
                .execute(params![user, to_i64(now)])?;
        } else {
            self.conn
                .prepare_cached("DELETE FROM suspended WHERE user = ?1")?
                .execute(params![user])?;
        }
        Ok(())
    }

    pub fn pairing(&self, user: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT pairing_id FROM pairings WHERE user = ?1")?
            .query_row(params![user], |r| r.get(0))
            .optional()?)
    }

    pub fn record_pairing(
        &mut self,
        user: &str,
        pairing_id: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn.prepare_cached("INSERT INTO pairings (user, pairing_id, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user) DO UPDATE SET pairing_id = excluded.pairing_id, created_at = excluded.created_at")?.execute(
            params![user, pairing_id, to_i64(now)],
        )?;
        Ok(())
    }

    /// Forgets everything about `user`: enrolment, pairing, registration, suspension,
    /// failures, lock and activity. Returns whether anything existed.
    pub fn forget(&mut self, user: &str) -> Result<bool, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let mut n = 0;
        for table in [
            "recovery_codes",
            "accounts",
            "pairings",
            "registrations",
            "suspended",
            "failures",
            "lockouts",
            "activity",
        ] {
            n += tx.execute(
                &format!("DELETE FROM {table} WHERE user = ?1"),
                params![user],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Every user toopherd has a record of.
    pub fn users(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT user FROM accounts UNION SELECT user FROM pairings UNION SELECT user FROM suspended
             UNION SELECT user FROM activity ORDER BY 1",
        )?;
        let users = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(users)
    }

    /// Replaces the recovery codes of an active local enrolment; the old ones stop
    /// working in the same transaction.
    pub fn regenerate_recovery_codes(
        &mut self,
        user: &str,
    ) -> Result<Vec<Zeroizing<String>>, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let Some(acct) = Self::account(&tx, user)? else {
            return Err(StoreError::NotEnrolled);
        };
        if acct.state != "active" {
            return Err(StoreError::NotEnrolled);
        }
        let codes = (0..recovery::COUNT)
            .map(|_| recovery::generate())
            .collect::<Result<Vec<_>, _>>()?;
        tx.prepare_cached("DELETE FROM recovery_codes WHERE user = ?1")?
            .execute(params![user])?;
        for code in &codes {
            if let Some(n) = recovery::normalize(code) {
                tx.prepare_cached("INSERT INTO recovery_codes (user, hash) VALUES (?1, ?2)")?
                    .execute(params![user, &recovery::hash(&acct.salt, &n)[..]])?;
            }
        }
        tx.commit()?;
        Ok(codes)
    }
}
