//! The store as the daemon's tasks use it: one [`Storage`] behind a lock, each call run
//! off the async workers, and its failures logged once while they last ([`StoreWatch`]).

use super::watch::StoreWatch;
use super::{Storage, StoreError};
use crate::logging::Log;
use std::sync::{Arc, Mutex};

/// A cheap handle; clones share the one store.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

/// Makes a handle on a store that serves calls side by side (the fleet's PostgreSQL).
pub type StorageFactory = Arc<dyn Fn() -> Box<dyn Storage> + Send + Sync>;

enum Storages {
    /// One store, one call at a time (SQLite: each call is a transaction on one connection).
    One(Mutex<Box<dyn Storage>>),
    /// A fresh handle per call, calls side by side: one slow call (a database that does
    /// not answer) must not hold up every other login behind a lock.
    PerCall(StorageFactory),
}

struct Inner {
    storage: Storages,
    watch: StoreWatch,
    log: Arc<Log>,
}

impl Shared {
    pub fn new(storage: Box<dyn Storage>, log: Arc<Log>) -> Shared {
        Shared {
            inner: Arc::new(Inner {
                storage: Storages::One(Mutex::new(storage)),
                watch: StoreWatch::default(),
                log,
            }),
        }
    }

    /// A store whose calls run side by side, each on a handle from `factory`.
    pub fn concurrent(factory: StorageFactory, log: Arc<Log>) -> Shared {
        Shared {
            inner: Arc::new(Inner {
                storage: Storages::PerCall(factory),
                watch: StoreWatch::default(),
                log,
            }),
        }
    }

    /// Runs one storage call on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Storage) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let run = |storage: &mut dyn Storage| {
                let commits = storage.commits();
                let result = f(storage);
                inner.watch.after_call(&inner.log, storage, commits);
                result
            };
            match &inner.storage {
                Storages::One(one) => {
                    let mut storage = one.lock().map_err(|_| {
                        StoreError::Io(std::io::Error::other("store lock poisoned"))
                    })?;
                    run(storage.as_mut())
                }
                Storages::PerCall(make) => run(make().as_mut()),
            }
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
    }

    /// Logs a failed call: a failure of the store once while it lasts, a refusal that
    /// follows from the account's state as it is.
    pub fn log_error(&self, what: &str, e: &StoreError) {
        if e.is_failure() {
            self.inner.watch.failed(&self.inner.log, what, e);
        } else {
            self.inner.log.err(&format!("{what}: {e}"));
        }
    }

    /// Logs a store failure (once while it lasts).
    pub fn failed(&self, what: &str, e: &StoreError) {
        self.inner.watch.failed(&self.inner.log, what, e);
    }
}
