//! Two-way registration codes in the store: single use, hashed, expiring, rate-limited,
//! bound to one user.

use super::Savepoint;
use super::{Store, StoreError, to_i64, to_u64};
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Wrong response codes before a registration is void (5000, start over).
const MAX_RESPONSE_TRIES: i64 = 5;
/// Registrations a user may start per hour.
const MAX_STARTS_PER_HOUR: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApproveError {
    /// No registration in progress for the user, or it expired.
    NoRegistration,
    /// The code is not the one shown at the user's login prompt.
    WrongCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationCheck {
    Registered,
    WrongResponse,
    NotApproved,
    Failed,
}

/// salt, expires_at, tries, response_hash
type ResponseRow = (Vec<u8>, i64, i64, Option<Vec<u8>>);

/// Six uniformly random digits.
fn six_digits() -> Result<Zeroizing<String>, getrandom::Error> {
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b)?;
        let v = u32::from_le_bytes(b);
        // Reject the top sliver so every code is equally likely.
        if v < u32::MAX - (u32::MAX % 1_000_000) {
            return Ok(Zeroizing::new(format!("{:06}", v % 1_000_000)));
        }
    }
}

fn salted(salt: &[u8], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.trim().as_bytes());
    h.finalize().into()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

impl Store {
    /// Starts (or restarts) a two-way registration: returns the registration code and its
    /// expiry, or `None` when the user started too many within the hour.
    pub fn start_registration(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
    ) -> Result<Option<(Zeroizing<String>, u64)>, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        tx.prepare_cached("DELETE FROM registration_starts WHERE at <= ?1")?
            .execute(params![to_i64(now.saturating_sub(3600))])?;
        let recent: i64 = tx
            .prepare_cached("SELECT count(*) FROM registration_starts WHERE user = ?1")?
            .query_row(params![user], |r| r.get(0))?;
        if recent >= MAX_STARTS_PER_HOUR {
            return Ok(None);
        }
        let code = six_digits()?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        let expires_at = now + ttl;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO registrations (user, salt, code_hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            user,
            &salt[..],
            &salted(&salt, &code)[..],
            to_i64(now),
            to_i64(expires_at)
        ])?;
        tx.prepare_cached("INSERT INTO registration_starts (user, at) VALUES (?1, ?2)")?
            .execute(params![user, to_i64(now)])?;
        tx.commit()?;
        Ok(Some((code, expires_at)))
    }

    /// Approves the registration code shown at `user`'s login prompt and returns the
    /// response code to type there. Only that user's registration can match.
    pub fn approve_registration(
        &mut self,
        user: &str,
        code: &str,
        approver: &str,
        now: u64,
    ) -> Result<Result<Zeroizing<String>, ApproveError>, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let row: Option<(Vec<u8>, Vec<u8>, i64, i64)> = tx
            .prepare_cached(
                "SELECT salt, code_hash, expires_at, tries FROM registrations WHERE user = ?1",
            )?
            .query_row(params![user], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((salt, code_hash, expires_at, tries)) = row else {
            return Ok(Err(ApproveError::NoRegistration));
        };
        if to_u64(expires_at) <= now || tries >= MAX_RESPONSE_TRIES {
            return Ok(Err(ApproveError::NoRegistration));
        }
        if !same(&salted(&salt, code), &code_hash) {
            // Wrong codes count against the registration, so approvals cannot be guessed.
            tx.prepare_cached("UPDATE registrations SET tries = tries + 1 WHERE user = ?1")?
                .execute(params![user])?;
            tx.commit()?;
            return Ok(Err(ApproveError::WrongCode));
        }
        let response = six_digits()?;
        tx.prepare_cached("UPDATE registrations SET approved_at = ?2, approved_by = ?3, response_hash = ?4 WHERE user = ?1")?.execute(
            params![user, to_i64(now), approver, &salted(&salt, &response)[..]],
        )?;
        tx.commit()?;
        Ok(Ok(response))
    }

    /// Checks a response code typed at `user`'s login prompt. `Registered` consumes the
    /// registration; `Failed` voids it.
    pub fn check_registration(
        &mut self,
        user: &str,
        response: &str,
        now: u64,
    ) -> Result<RegistrationCheck, StoreError> {
        let tx = Savepoint::new(&mut self.conn)?;
        let row: Option<ResponseRow> = tx
            .prepare_cached(
                "SELECT salt, expires_at, tries, response_hash FROM registrations WHERE user = ?1",
            )?
            .query_row(params![user], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let result = match row {
            None => RegistrationCheck::Failed,
            Some((_, expires_at, tries, _))
                if to_u64(expires_at) <= now || tries >= MAX_RESPONSE_TRIES =>
            {
                tx.prepare_cached("DELETE FROM registrations WHERE user = ?1")?
                    .execute(params![user])?;
                RegistrationCheck::Failed
            }
            Some((_, _, _, None)) => RegistrationCheck::NotApproved,
            Some((salt, _, _, Some(expected))) => {
                if same(&salted(&salt, response), &expected) {
                    tx.prepare_cached("DELETE FROM registrations WHERE user = ?1")?
                        .execute(params![user])?;
                    RegistrationCheck::Registered
                } else {
                    tx.prepare_cached(
                        "UPDATE registrations SET tries = tries + 1 WHERE user = ?1",
                    )?
                    .execute(params![user])?;
                    RegistrationCheck::WrongResponse
                }
            }
        };
        tx.commit()?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> (std::path::PathBuf, Store) {
        let dir =
            std::env::temp_dir().join(format!("toopherd-admin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = Store::open(&dir.join("db")).unwrap();
        (dir, s)
    }

    #[test]
    fn registration_lifecycle() {
        let (dir, mut s) = store("reg");
        let (code, expires) = s.start_registration("alice", 600, 1000).unwrap().unwrap();
        assert_eq!(code.len(), 6);
        assert_eq!(expires, 1600);
        assert_eq!(
            s.check_registration("alice", "123456", 1001).unwrap(),
            RegistrationCheck::NotApproved
        );
        // An approval is bound to the user whose prompt showed the code.
        assert_eq!(
            s.approve_registration("bob", &code, "root", 1002).unwrap(),
            Err(ApproveError::NoRegistration)
        );
        let wrong = if code.as_str() == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert_eq!(
            s.approve_registration("alice", wrong, "root", 1002)
                .unwrap(),
            Err(ApproveError::WrongCode)
        );
        let response = s
            .approve_registration("alice", &code, "root", 1003)
            .unwrap()
            .unwrap();
        let typo = if response.as_str() == "999999" {
            "999998"
        } else {
            "999999"
        };
        assert_eq!(
            s.check_registration("alice", typo, 1004).unwrap(),
            RegistrationCheck::WrongResponse
        );
        assert_eq!(
            s.check_registration("alice", &response, 1005).unwrap(),
            RegistrationCheck::Registered
        );
        // Single use.
        assert_eq!(
            s.check_registration("alice", &response, 1006).unwrap(),
            RegistrationCheck::Failed
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn registrations_expire_and_tries_are_bounded() {
        let (dir, mut s) = store("exp");
        let (code, _) = s.start_registration("carol", 60, 1000).unwrap().unwrap();
        let response = s
            .approve_registration("carol", &code, "root", 1001)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.check_registration("carol", &response, 1061).unwrap(),
            RegistrationCheck::Failed
        );
        let (code, _) = s.start_registration("carol", 60, 2000).unwrap().unwrap();
        let response = s
            .approve_registration("carol", &code, "root", 2001)
            .unwrap()
            .unwrap();
        let typo = if response.as_str() == "999999" {
            "999998"
        } else {
            "999999"
        };
        for _ in 0..MAX_RESPONSE_TRIES - 1 {
            assert_eq!(
                s.check_registration("carol", typo, 2002).unwrap(),
                RegistrationCheck::WrongResponse
            );
        }
        // One approval attempt was spent by nobody; the fifth typo voids it.
        assert_eq!(
            s.check_registration("carol", typo, 2003).unwrap(),
            RegistrationCheck::WrongResponse
        );
        assert_eq!(
            s.check_registration("carol", &response, 2004).unwrap(),
            RegistrationCheck::Failed
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn registration_starts_are_rate_limited() {
        let (dir, mut s) = store("rl");
        for i in 0..MAX_STARTS_PER_HOUR {
            assert!(
                s.start_registration("dave", 600, 1000 + i as u64)
                    .unwrap()
                    .is_some()
            );
        }
        assert!(s.start_registration("dave", 600, 1100).unwrap().is_none());
        assert!(
            s.start_registration("dave", 600, 1000 + 3601)
                .unwrap()
                .is_some()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
