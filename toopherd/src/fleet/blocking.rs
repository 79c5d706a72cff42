//! The PostgreSQL store for callers that block: the daemon runs each storage call on a
//! blocking thread (off its async workers), so this adapter drives the async store on the
//! daemon's own runtime from there. Each call is bounded by the store's timeouts.

use super::pg::{FleetStatus, PgError, PgStore};
use crate::store::{
    ApproveError, Attempt, Checked, Limits, LoginState, NewEnrollment, Recorded, RegistrationCheck,
    Verdict,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::runtime::Handle;
use zeroize::Zeroizing;

/// Cheap to clone: clones share the store, its pool and the count of answers, so the
/// daemon can run calls side by side (each on its own blocking thread) instead of one at
/// a time behind a lock, which would let one slow call hold up every login.
#[derive(Clone)]
pub struct PgBlocking {
    store: Arc<PgStore>,
    handle: Handle,
    /// Calls that reached the database and came back (the store's "commits": a store
    /// that failed works again when this grows).
    answered: Arc<AtomicU64>,
}

impl PgBlocking {
    /// `handle`: the runtime the pool's connections run on. Calls must come from a
    /// thread outside it (`spawn_blocking`, or a plain thread): blocking inside an async
    /// worker would stall it.
    pub fn new(store: Arc<PgStore>, handle: Handle) -> PgBlocking {
        PgBlocking {
            store,
            handle,
            answered: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn store(&self) -> &Arc<PgStore> {
        &self.store
    }

    /// Calls that came back without a connection problem so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn block<T>(&self, f: impl Future<Output = Result<T, PgError>>) -> Result<T, PgError> {
        let r = self.handle.block_on(f);
        if !matches!(&r, Err(e) if e.is_unreachable()) {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    pub fn login_state(&self, user: &str, now: u64, limits: Limits) -> Result<LoginState, PgError> {
        self.block(self.store.login_state(user, now, limits))
    }

    pub fn rate_limited(
        &self,
        user: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Option<u64>, PgError> {
        self.block(self.store.rate_limited(user, now, limits))
    }

    pub fn is_suspended(&self, user: &str) -> Result<bool, PgError> {
        self.block(self.store.is_suspended(user))
    }

    pub fn check(
        &self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Option<Checked>, PgError> {
        self.block(self.store.check(user, code, now, limits, attempt))
    }

    pub fn note_result(
        &self,
        user: &str,
        success: bool,
        now: u64,
        limits: Limits,
        attempt: &Attempt<'_>,
    ) -> Result<Recorded, PgError> {
        self.block(self.store.note_result(user, success, now, limits, attempt))
    }

    pub fn enroll(
        &self,
        user: &str,
        ttl: u64,
        now: u64,
        force: bool,
    ) -> Result<NewEnrollment, PgError> {
        self.block(self.store.enroll(user, ttl, now, force))
    }

    pub fn activate(
        &self,
        user: &str,
        code: &str,
        now: u64,
        limits: Limits,
    ) -> Result<Verdict, PgError> {
        self.block(self.store.activate(user, code, now, limits))
    }

    pub fn regenerate_recovery_codes(&self, user: &str) -> Result<Vec<Zeroizing<String>>, PgError> {
        self.block(self.store.regenerate_recovery_codes(user))
    }

    pub fn remove(&self, user: &str) -> Result<bool, PgError> {
        self.block(self.store.remove(user))
    }

    pub fn status(
        &self,
        user: &str,
        backend: &str,
        now: u64,
        limits: Limits,
    ) -> Result<FleetStatus, PgError> {
        self.block(self.store.status(user, backend, now, limits))
    }

    pub fn users(&self) -> Result<Vec<String>, PgError> {
        self.block(self.store.users())
    }

    pub fn set_suspended(&self, user: &str, suspended: bool, now: u64) -> Result<(), PgError> {
        self.block(self.store.set_suspended(user, suspended, now))
    }

    pub fn unlock(&self, user: &str, now: u64, limits: Limits) -> Result<bool, PgError> {
        self.block(self.store.unlock(user, now, limits))
    }

    pub fn forget(&self, user: &str) -> Result<bool, PgError> {
        self.block(self.store.forget(user))
    }

    pub fn pairing(&self, user: &str) -> Result<Option<String>, PgError> {
        self.block(self.store.pairing(user))
    }

    pub fn record_pairing(&self, user: &str, pairing_id: &str, now: u64) -> Result<(), PgError> {
        self.block(self.store.record_pairing(user, pairing_id, now))
    }

    pub fn start_registration(
        &self,
        user: &str,
        ttl: u64,
        now: u64,
    ) -> Result<Option<(Zeroizing<String>, u64)>, PgError> {
        self.block(self.store.start_registration(user, ttl, now))
    }

    pub fn approve_registration(
        &self,
        user: &str,
        code: &str,
        approver: &str,
        now: u64,
    ) -> Result<Result<Zeroizing<String>, ApproveError>, PgError> {
        self.block(self.store.approve_registration(user, code, approver, now))
    }

    pub fn check_registration(
        &self,
        user: &str,
        response: &str,
        now: u64,
    ) -> Result<RegistrationCheck, PgError> {
        self.block(self.store.check_registration(user, response, now))
    }
}
