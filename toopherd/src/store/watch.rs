//! Store failures are logged once while they last. A full disk fails every request that
//! changes the store; a line per request would bury the log (and, on that disk, fill it).
//! The first failure is logged with its reason, a different reason is logged again, and
//! the first commit that reaches the disk afterwards logs the recovery. Decisions about
//! logins are logged by their callers as always; only the store's reason is latched.

use super::{Storage, StoreError};
use crate::logging::Log;
use std::sync::Mutex;

#[derive(Default)]
pub struct StoreWatch {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failing: Option<Failing>,
    /// The reason the last WAL checkpoint failed, while checkpoints fail.
    checkpoint: Option<String>,
}

struct Failing {
    reason: String,
    /// Failed requests since the failure was logged.
    requests: u64,
}

impl StoreWatch {
    /// A request failed in the store: logged unless this reason is already logged.
    pub fn failed(&self, log: &Log, what: &str, e: &StoreError) {
        let Ok(mut st) = self.state.lock() else {
            log.err(&format!("{what}: {e}"));
            return;
        };
        let reason = e.to_string();
        match st.failing.as_mut() {
            Some(f) if f.reason == reason => f.requests += 1,
            _ => {
                log.err(&format!(
                    "store failing: {what}: {reason}; requests that need the store fail \
                     until it works again (a code is never accepted unchecked; a login that \
                     cannot reach the store at all follows `failmode`); repeats are not logged"
                ));
                st.failing = Some(Failing {
                    reason,
                    requests: 1,
                });
            }
        }
    }

    /// After each store call, under the store's lock: rolls back a transaction an error
    /// left open, and notes a commit that reached the disk (the store works again) and
    /// the outcome of a checkpoint.
    pub fn after_call(&self, log: &Log, store: &mut dyn Storage, commits_before: u64) {
        if let Err(e) = store.end_open_transaction() {
            self.failed(log, "rolling back", &e);
        }
        let committed = store.commits() > commits_before;
        let checkpoint = store.take_checkpoint();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if committed && let Some(f) = st.failing.take() {
            log.info(&format!(
                "store works again ({} request(s) failed while it did not: {})",
                f.requests, f.reason
            ));
        }
        match (checkpoint, st.checkpoint.is_some()) {
            (Some(Ok(())), true) => {
                st.checkpoint = None;
                log.info("WAL checkpoint works again");
            }
            (Some(Err(reason)), false) => {
                log.err(&format!(
                    "WAL checkpoint failed: {reason}; nothing is lost (the -wal file keeps \
                     every change and grows until a checkpoint succeeds); repeats are not logged"
                ));
                st.checkpoint = Some(reason);
            }
            _ => {}
        }
    }
}
