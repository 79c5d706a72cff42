//! The shared PostgreSQL store behind the daemon's [`Storage`] trait: each call blocks on
//! the async store (the daemon makes it from a blocking thread); an error is
//! [`StoreError::Fleet`], whose `is_unreachable` tells failmode's case apart.

use super::blocking::PgBlocking;
use crate::store::{
    ApproveError, Attempt, Checked, Limits, LoginState, NewEnrollment, Recorded, RegistrationCheck,
    Storage, StoreError, Verdict,
};
use toopher_ipc::AccountStatus;
use zeroize::Zeroizing;

impl Storage for PgBlocking {
    fn login_state(&self, user: &str, now: u64, limits: Limits) -> Result<LoginState, StoreError> {
        PgBlocking::login_state(self, user, now, limits).map_err(fleet)
    }
    fn rate_limited(
        &self,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, StoreError> {
        PgBlocking::rate_limited(self, user, now, limits).map_err(fleet)
    }
    fn is_suspended(&self, user: &str) -> Result<bool, StoreError> {
        PgBlocking::is_suspended(self, user).map_err(fleet)
    }
    fn check(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Option<Checked>, StoreError> {
        PgBlocking::check(self, user, code, now, limits, attempt).map_err(fleet)
    }
    fn note_result(
        &mut self,
        user: &str,
        success: bool,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Recorded, StoreError> {
        PgBlocking::note_result(self, user, success, now, limits, attempt).map_err(fleet)
    }
    fn enroll(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
        force: bool,
    ) -> Result<NewEnrollment, StoreError> {
        PgBlocking::enroll(self, user, ttl, now, force).map_err(fleet)
    }
    fn activate(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Verdict, StoreError> {
        PgBlocking::activate(self, user, code, now, limits).map_err(fleet)
    }
    fn regenerate_recovery_codes(
        &mut self,
        user: &str,
    ) -> Result<Vec<Zeroizing<String>>, StoreError> {
        PgBlocking::regenerate_recovery_codes(self, user).map_err(fleet)
    }
    fn remove(&mut self, user: &str) -> Result<bool, StoreError> {
        PgBlocking::remove(self, user).map_err(fleet)
    }
    fn status(
        &self,
        user: &str,
        backend: &str,
        now: u64,
        limits: Limits,
    ) -> Result<AccountStatus, StoreError> {
        PgBlocking::status(self, user, backend, now, limits)
            .map(|s| s.status)
            .map_err(fleet)
    }
    fn users(&self) -> Result<Vec<String>, StoreError> {
        PgBlocking::users(self).map_err(fleet)
    }
    fn set_suspended(&mut self, user: &str, suspended: bool, now: u64) -> Result<(), StoreError> {
        PgBlocking::set_suspended(self, user, suspended, now).map_err(fleet)
    }
    fn unlock(&mut self, user: &str, now: u64, limits: Limits) -> Result<bool, StoreError> {
        PgBlocking::unlock(self, user, now, limits).map_err(fleet)
    }
    fn forget(&mut self, user: &str) -> Result<bool, StoreError> {
        PgBlocking::forget(self, user).map_err(fleet)
    }
    fn pairing(&self, user: &str) -> Result<Option<String>, StoreError> {
        PgBlocking::pairing(self, user).map_err(fleet)
    }
    fn record_pairing(&mut self, user: &str, pairing_id: &str, now: u64) -> Result<(), StoreError> {
        PgBlocking::record_pairing(self, user, pairing_id, now).map_err(fleet)
    }
    fn start_registration(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
    ) -> Result<Option<(Zeroizing<String>, u64)>, StoreError> {
        PgBlocking::start_registration(self, user, ttl, now).map_err(fleet)
    }
    fn approve_registration(
        &mut self,
        user: &str,
        code: &str,
        approver: &str,
        now: u64,
    ) -> Result<Result<Zeroizing<String>, ApproveError>, StoreError> {
        PgBlocking::approve_registration(self, user, code, approver, now).map_err(fleet)
    }
    fn check_registration(
        &mut self,
        user: &str,
        response: &str,
        now: u64,
    ) -> Result<RegistrationCheck, StoreError> {
        PgBlocking::check_registration(self, user, response, now).map_err(fleet)
    }
    fn commits(&self) -> u64 {
        self.answered()
    }
    fn take_checkpoint(&self) -> Option<Result<(), String>> {
        None
    }
    fn end_open_transaction(&mut self) -> Result<(), StoreError> {
        // Every operation is its own transaction, ended (or its connection dropped) inside.
        Ok(())
    }
}

/// The refusals that follow from the account's state keep their SQLite meaning, so the
/// server answers them the same way whichever store it has.
fn fleet(e: super::pg::PgError) -> StoreError {
    use super::pg::PgError;
    match e {
        PgError::AlreadyActive => StoreError::AlreadyActive,
        PgError::NoPendingEnrollment => StoreError::NoPendingEnrollment,
        PgError::EnrollmentExpired => StoreError::EnrollmentExpired,
        PgError::NotEnrolled => StoreError::NotEnrolled,
        other => StoreError::Fleet(other),
    }
}
