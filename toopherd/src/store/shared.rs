//! The store as the daemon's tasks use it: one [`Storage`] owned by a thread of its own,
//! which takes every call waiting and runs them as one group (group commit: one
//! transaction, one commit, so one sync makes them all durable), then answers each. No
//! call is answered before its group is on disk, so an accepted code's record is durable
//! before the login hears of it, as when each call committed alone. A store whose calls
//! are each durable by themselves and may run side by side (the fleet's PostgreSQL, with
//! its own pool) is called from blocking threads instead ([`Shared::concurrent`]).
//! Failures are logged once while they last ([`StoreWatch`]).

use super::watch::StoreWatch;
use super::{Storage, StoreError};
use crate::logging::Log;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Most calls in one group: bounds the time the first of them waits for the last.
const MAX_GROUP: usize = 128;

/// A cheap handle; clones share the one store.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

/// Makes a handle on a store that serves calls side by side (the fleet's PostgreSQL).
pub type StorageFactory = Arc<dyn Fn() -> Box<dyn Storage> + Send + Sync>;

struct Inner {
    calls: Mutex<Option<mpsc::Sender<Box<dyn Call>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// For a store whose calls run side by side: a handle per call, no store thread (one
    /// slow call, a database that does not answer, must not hold up every other login).
    per_call: Option<StorageFactory>,
    watch: Arc<StoreWatch>,
    log: Arc<Log>,
}

impl Shared {
    pub fn new(storage: Box<dyn Storage>, log: Arc<Log>) -> Shared {
        let (tx, rx) = mpsc::channel();
        let watch = Arc::new(StoreWatch::default());
        let thread = {
            let (watch, log) = (Arc::clone(&watch), Arc::clone(&log));
            std::thread::Builder::new()
                .name("store".into())
                .spawn(move || serve(storage, &rx, &watch, &log))
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                // Every call will fail (fail closed) and say why.
                log.err(&format!("store thread not started: {e}"));
                None
            }
        };
        Shared {
            inner: Arc::new(Inner {
                calls: Mutex::new(thread.as_ref().map(|_| tx)),
                thread: Mutex::new(thread),
                per_call: None,
                watch,
                log,
            }),
        }
    }

    /// A store whose calls run side by side, each on a handle from `factory`, on a
    /// blocking thread, each durable when it returns.
    pub fn concurrent(factory: StorageFactory, log: Arc<Log>) -> Shared {
        Shared {
            inner: Arc::new(Inner {
                calls: Mutex::new(None),
                thread: Mutex::new(None),
                per_call: Some(factory),
                watch: Arc::new(StoreWatch::default()),
                log,
            }),
        }
    }

    /// Runs one storage call in the store's next group; answers once the group is durable.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Storage) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(make) = &self.inner.per_call {
            let (make, inner) = (Arc::clone(make), Arc::clone(&self.inner));
            return tokio::task::spawn_blocking(move || {
                let mut storage = make();
                let commits = storage.commits();
                let result = f(storage.as_mut());
                inner
                    .watch
                    .after_call(&inner.log, storage.as_mut(), commits);
                result
            })
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        }
        let gone = || StoreError::Io(std::io::Error::other("the store thread is gone"));
        let (reply, answer) = tokio::sync::oneshot::channel();
        let call: Box<dyn Call> = Box::new(CallOf {
            f: Some(f),
            result: None,
            reply: Some(reply),
        });
        {
            let calls = self.inner.calls.lock().map_err(|_| gone())?;
            calls
                .as_ref()
                .ok_or_else(gone)?
                .send(call)
                .map_err(|_| gone())?;
        }
        answer.await.map_err(|_| gone())?
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

impl Drop for Inner {
    /// The last handle gone: the thread finishes the calls already queued, closes the
    /// store (the database is closed cleanly) and ends.
    fn drop(&mut self) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// The store thread: a group is every call waiting when the previous group is done (at
/// most [`MAX_GROUP`]); nothing waits on purpose, so a lone call is not delayed.
fn serve(
    mut storage: Box<dyn Storage>,
    calls: &mpsc::Receiver<Box<dyn Call>>,
    watch: &StoreWatch,
    log: &Log,
) {
    while let Ok(first) = calls.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match calls.try_recv() {
                Ok(c) => group.push(c),
                Err(_) => break,
            }
        }
        let mut group: Vec<Option<Box<dyn Call>>> = group.into_iter().map(Some).collect();
        let commits = storage.commits();
        let outcome = run_group(storage.as_mut(), &mut group);
        watch.after_call(log, storage.as_mut(), commits);
        let outcome = outcome.map_err(|e| e.to_string());
        for call in group.into_iter().flatten() {
            call.answer(&outcome);
        }
    }
}

/// Runs the calls, each in its own savepoint, and commits them together. An error here
/// is the group's: none of its calls still in `group` may be answered as done. A call
/// that changed nothing while the group had changed nothing before it read only durable
/// state: it is answered at once (and taken out of `group`), not after the sync.
fn run_group(
    storage: &mut dyn Storage,
    group: &mut [Option<Box<dyn Call>>],
) -> Result<(), StoreError> {
    storage.begin_group()?;
    let mut changed = false;
    for slot in group.iter_mut() {
        let Some(call) = slot.as_mut() else {
            continue;
        };
        let before = storage.changes();
        storage.begin_call()?;
        let ok = call.run(storage);
        storage.end_call(ok)?;
        changed |= storage.changes() != before;
        if !changed && let Some(call) = slot.take() {
            call.answer(&Ok(()));
        }
    }
    storage.commit_group()
}

/// One queued call, type-erased: run it in the group, then answer with its result, or
/// with the group's failure.
trait Call: Send {
    /// Whether the call succeeded (its changes are kept in the group).
    fn run(&mut self, storage: &mut dyn Storage) -> bool;
    fn answer(self: Box<Self>, group: &Result<(), String>);
}

struct CallOf<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: Option<tokio::sync::oneshot::Sender<Result<T, StoreError>>>,
}

impl<T, F> Call for CallOf<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Storage) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, storage: &mut dyn Storage) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = f(storage);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(mut self: Box<Self>, group: &Result<(), String>) {
        let result = match (self.result.take(), group) {
            // A refusal or failure of the call itself changed nothing: it says why.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(why)) | (None, Err(why)) => {
                Err(StoreError::Io(std::io::Error::other(why.clone())))
            }
            (None, Ok(())) => Err(StoreError::Io(std::io::Error::other(
                "the call did not run",
            ))),
        };
        if let Some(reply) = self.reply.take() {
            // The caller may have gone (its client closed): nothing to answer then.
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use tokio::sync::oneshot;

    const T0: u64 = 1_700_000_000;

    type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

    fn call<T, F>(f: F) -> (Option<Box<dyn Call>>, Answer<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Storage) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call: Box<dyn Call> = Box::new(CallOf {
            f: Some(f),
            result: None,
            reply: Some(reply),
        });
        (Some(call), answer)
    }

    fn enroll(user: &'static str) -> impl FnOnce(&mut dyn Storage) -> Result<(), StoreError> {
        move |s: &mut dyn Storage| s.enroll(user, 600, T0, false).map(|_| ())
    }

    fn users_in(path: &std::path::Path) -> Vec<String> {
        Store::open(path).unwrap().users().unwrap()
    }

    #[test]
    fn a_failed_call_is_undone_alone_and_the_rest_of_its_group_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let mut storage: Box<dyn Storage> = Box::new(Store::open(&path).unwrap());
        let (a, mut alice) = call(enroll("alice"));
        let (b, mut bob) = call(|s: &mut dyn Storage| {
            s.enroll("bob", 600, T0, false)?;
            Err::<(), _>(StoreError::NotEnrolled)
        });
        let (c, mut carol) = call(enroll("carol"));
        let mut group = vec![a, b, c];
        run_group(storage.as_mut(), &mut group).unwrap();
        for call in group.into_iter().flatten() {
            call.answer(&Ok(()));
        }
        assert!(matches!(alice.try_recv(), Ok(Ok(()))));
        assert!(matches!(bob.try_recv(), Ok(Err(StoreError::NotEnrolled))));
        assert!(matches!(carol.try_recv(), Ok(Ok(()))));
        drop(storage);
        assert_eq!(users_in(&path), ["alice", "carol"]);
    }

    #[test]
    fn a_read_before_any_change_is_answered_before_the_commit_and_a_write_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let mut storage: Box<dyn Storage> = Box::new(Store::open(&path).unwrap());
        let (read, mut listed) = call(|s: &mut dyn Storage| s.users());
        let (write, mut alice) = call(enroll("alice"));
        let (read_after, mut listed_after) = call(|s: &mut dyn Storage| s.users());
        let mut group = vec![read, write, read_after];
        run_group(storage.as_mut(), &mut group).unwrap();
        // Answered inside the group: it read only what was already on disk.
        assert!(group[0].is_none());
        assert_eq!(listed.try_recv().unwrap().unwrap(), Vec::<String>::new());
        // The write and the read that saw it wait for the commit.
        assert!(group[1].is_some() && group[2].is_some());
        assert!(alice.try_recv().is_err() && listed_after.try_recv().is_err());
        for call in group.into_iter().flatten() {
            call.answer(&Ok(()));
        }
        assert!(matches!(alice.try_recv(), Ok(Ok(()))));
        assert_eq!(listed_after.try_recv().unwrap().unwrap(), ["alice"]);
    }

    #[test]
    fn a_group_that_fails_answers_every_waiting_call_with_the_failure() {
        let (ok, mut answer) = call(|_: &mut dyn Storage| Ok(7));
        let Some(mut ok) = ok else { unreachable!() };
        let dir = tempfile::tempdir().unwrap();
        let mut storage: Box<dyn Storage> =
            Box::new(Store::open(&dir.path().join("db.sqlite3")).unwrap());
        assert!(ok.run(storage.as_mut()));
        ok.answer(&Err("disk full".into()));
        let e = answer.try_recv().unwrap().unwrap_err();
        assert!(e.is_failure() && e.to_string().contains("disk full"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_are_all_answered_and_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let shared = Shared::new(
            Box::new(Store::open(&path).unwrap()),
            Arc::new(Log::stderr()),
        );
        let names: Vec<String> = (0..64).map(|i| format!("user{i:02}")).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for name in names.clone() {
            let shared = shared.clone();
            tasks.spawn(async move {
                shared
                    .call(move |s| s.enroll(&name, 600, T0, false).map(|_| ()))
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        // The last handle gone, the store thread ends and closes the database.
        drop(shared);
        assert_eq!(users_in(&path), names);
    }
}
