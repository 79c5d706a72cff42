//! What the daemon needs from its storage, as a trait: the SQLite [`Store`] implements
//! it, and a second store (a shared SQL database for a fleet) plugs in by implementing
//! it too, without touching the backends or the server. Calls are blocking; the daemon
//! runs them off its async workers ([`super::Shared`]). Every call that checks or
//! changes a second factor is one transaction in the store.

use super::{
    ApproveError, Attempt, Checked, Limits, LoginState, NewEnrollment, Recorded, RegistrationCheck,
    Store, StoreError, Verdict,
};
use toopher_ipc::AccountStatus;
use zeroize::Zeroizing;

pub trait Storage: Send {
    // The login.
    /// What a login of `user` meets right now.
    fn login_state(&self, user: &str, now: u64, limits: Limits) -> Result<LoginState, StoreError>;
    /// When the rate limit refuses `user` right now, until when.
    fn rate_limited(&self, user: &str, now: u64, limits: Limits)
    -> Result<Option<u64>, StoreError>;
    fn is_suspended(&self, user: &str) -> Result<bool, StoreError>;
    /// Checks a TOTP or recovery code of an active account and records the result;
    /// `None` when the account has no active enrolment.
    fn check(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Option<Checked>, StoreError>;
    /// Records a result decided elsewhere (a remote second-factor service).
    fn note_result(
        &mut self,
        user: &str,
        success: bool,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Recorded, StoreError>;

    // Local enrolments.
    fn enroll(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
        force: bool,
    ) -> Result<NewEnrollment, StoreError>;
    fn activate(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Verdict, StoreError>;
    fn regenerate_recovery_codes(
        &mut self,
        user: &str,
    ) -> Result<Vec<Zeroizing<String>>, StoreError>;
    /// Removes the local enrolment; whether one existed.
    fn remove(&mut self, user: &str) -> Result<bool, StoreError>;

    // Accounts.
    fn status(
        &self,
        user: &str,
        backend: &str,
        now: u64,
        limits: Limits,
    ) -> Result<AccountStatus, StoreError>;
    fn users(&self) -> Result<Vec<String>, StoreError>;
    fn set_suspended(&mut self, user: &str, suspended: bool, now: u64) -> Result<(), StoreError>;
    fn unlock(&mut self, user: &str, now: u64, limits: Limits) -> Result<bool, StoreError>;
    /// Forgets everything about `user`; whether anything existed.
    fn forget(&mut self, user: &str) -> Result<bool, StoreError>;
    fn pairing(&self, user: &str) -> Result<Option<String>, StoreError>;
    fn record_pairing(&mut self, user: &str, pairing_id: &str, now: u64) -> Result<(), StoreError>;

    // Two-way registration.
    /// A new registration code and its lifetime; `None` when `user` started too many.
    fn start_registration(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
    ) -> Result<Option<(Zeroizing<String>, u64)>, StoreError>;
    fn approve_registration(
        &mut self,
        user: &str,
        code: &str,
        approver: &str,
        now: u64,
    ) -> Result<Result<Zeroizing<String>, ApproveError>, StoreError>;
    fn check_registration(
        &mut self,
        user: &str,
        response: &str,
        now: u64,
    ) -> Result<RegistrationCheck, StoreError>;

    // Upkeep, after each call (see `store_watch`).
    /// Commits made durable so far.
    fn commits(&self) -> u64;
    /// The outcome of a checkpoint since the last call, if the store has them.
    fn take_checkpoint(&self) -> Option<Result<(), String>>;
    /// Ends a transaction an error left open.
    fn end_open_transaction(&mut self) -> Result<(), StoreError>;

    // Group commit ([`super::Shared`]): the calls waiting together run in one group and
    // are answered only once the group is durable. A store without groups keeps these
    // defaults, and each of its calls is durable by itself when it returns.
    /// Opens a group.
    fn begin_group(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Before one call of the group.
    fn begin_call(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// After one call: keep its changes in the group, or undo them alone.
    fn end_call(&mut self, _keep: bool) -> Result<(), StoreError> {
        Ok(())
    }
    /// Makes every kept change of the group durable.
    fn commit_group(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Rows changed so far (any count that grows with every change): a call that changed
    /// nothing, in a group that had changed nothing yet, read only durable state and is
    /// answered without waiting for the group's commit. Without groups every call is
    /// durable when it returns, so the default may say "nothing".
    fn changes(&self) -> u64 {
        0
    }
}

impl Storage for Store {
    fn login_state(&self, user: &str, now: u64, limits: Limits) -> Result<LoginState, StoreError> {
        Store::login_state(self, user, now, limits)
    }
    fn rate_limited(
        &self,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, StoreError> {
        Store::rate_limited(self, user, now, limits)
    }
    fn is_suspended(&self, user: &str) -> Result<bool, StoreError> {
        Store::is_suspended(self, user)
    }
    fn check(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Option<Checked>, StoreError> {
        Store::check(self, user, code, now, limits, attempt)
    }
    fn note_result(
        &mut self,
        user: &str,
        success: bool,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Recorded, StoreError> {
        Store::note_result(self, user, success, now, limits, attempt)
    }
    fn enroll(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
        force: bool,
    ) -> Result<NewEnrollment, StoreError> {
        Store::enroll(self, user, ttl, now, force)
    }
    fn activate(
        &mut self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Verdict, StoreError> {
        Store::activate(self, user, code, now, limits)
    }
    fn regenerate_recovery_codes(
        &mut self,
        user: &str,
    ) -> Result<Vec<Zeroizing<String>>, StoreError> {
        Store::regenerate_recovery_codes(self, user)
    }
    fn remove(&mut self, user: &str) -> Result<bool, StoreError> {
        Store::remove(self, user)
    }
    fn status(
        &self,
        user: &str,
        backend: &str,
        now: u64,
        limits: Limits,
    ) -> Result<AccountStatus, StoreError> {
        Store::status(self, user, backend, now, limits)
    }
    fn users(&self) -> Result<Vec<String>, StoreError> {
        Store::users(self)
    }
    fn set_suspended(&mut self, user: &str, suspended: bool, now: u64) -> Result<(), StoreError> {
        Store::set_suspended(self, user, suspended, now)
    }
    fn unlock(&mut self, user: &str, now: u64, limits: Limits) -> Result<bool, StoreError> {
        Store::unlock(self, user, now, limits)
    }
    fn forget(&mut self, user: &str) -> Result<bool, StoreError> {
        Store::forget(self, user)
    }
    fn pairing(&self, user: &str) -> Result<Option<String>, StoreError> {
        Store::pairing(self, user)
    }
    fn record_pairing(&mut self, user: &str, pairing_id: &str, now: u64) -> Result<(), StoreError> {
        Store::record_pairing(self, user, pairing_id, now)
    }
    fn start_registration(
        &mut self,
        user: &str,
        ttl: u64,
        now: u64,
    ) -> Result<Option<(Zeroizing<String>, u64)>, StoreError> {
        Store::start_registration(self, user, ttl, now)
    }
    fn approve_registration(
        &mut self,
        user: &str,
        code: &str,
        approver: &str,
        now: u64,
    ) -> Result<Result<Zeroizing<String>, ApproveError>, StoreError> {
        Store::approve_registration(self, user, code, approver, now)
    }
    fn check_registration(
        &mut self,
        user: &str,
        response: &str,
        now: u64,
    ) -> Result<RegistrationCheck, StoreError> {
        Store::check_registration(self, user, response, now)
    }
    fn commits(&self) -> u64 {
        Store::commits(self)
    }
    fn take_checkpoint(&self) -> Option<Result<(), String>> {
        Store::take_checkpoint(self)
    }
    fn end_open_transaction(&mut self) -> Result<(), StoreError> {
        Store::end_open_transaction(self)
    }
    fn begin_group(&mut self) -> Result<(), StoreError> {
        Store::begin_group(self)
    }
    fn begin_call(&mut self) -> Result<(), StoreError> {
        Store::begin_call(self)
    }
    fn end_call(&mut self, keep: bool) -> Result<(), StoreError> {
        Store::end_call(self, keep)
    }
    fn commit_group(&mut self) -> Result<(), StoreError> {
        Store::commit_group(self)
    }
    fn changes(&self) -> u64 {
        Store::changes(self)
    }
}
