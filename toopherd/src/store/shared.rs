//! The store as the daemon's tasks use it. The local SQLite store groups its calls:
//! every call waiting when a group's turn comes joins it (group commit: one transaction,
//! one commit, so one sync makes them all durable), and none is answered before its group
//! is on disk, so an accepted code's record is durable before the login hears of it, as
//! when each call committed alone. A group's statements run on the async thread (mostly
//! microseconds, in SQLite's page cache; a page not cached is read from disk, and a
//! write lock another process holds, which only root can take, is waited for up to the
//! busy timeout); its commit, which waits for the WAL's sync, runs on the store's own
//! thread, so the runtime reads the next requests meanwhile. A group that only read commits without a sync and never leaves the async
//! thread: handing every call to a store thread and back cost two thread wake-ups a call,
//! more than the call itself on a virtual machine. A store whose calls are each durable
//! by themselves and may run side by side (the fleet's PostgreSQL, with its own pool) is
//! called from blocking threads instead ([`Shared::concurrent`]). Failures are logged
//! once while they last ([`StoreWatch`]).

use super::watch::StoreWatch;
use super::{Storage, StoreError};
use crate::logging::Log;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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

enum Inner {
    /// One store; its calls are grouped and run by the runtime.
    Grouped(Arc<Grouped>),
    /// A store whose calls run side by side: a handle per call, each on a blocking
    /// thread (one slow call, a database that does not answer, must not hold up every
    /// other login).
    PerCall {
        make: StorageFactory,
        watch: Arc<StoreWatch>,
        log: Arc<Log>,
    },
}

struct Grouped {
    /// Out while a group's commit syncs on a blocking thread.
    storage: Mutex<Option<Box<dyn Storage>>>,
    /// Set for good when a group panicked or its task was dropped with the store: every
    /// later call fails (fail closed).
    gone: AtomicBool,
    queue: Mutex<Queue>,
    syncer: Syncer,
    watch: StoreWatch,
    log: Arc<Log>,
}

/// The calls waiting for the next group, and whether a task is on its way to run it.
#[derive(Default)]
struct Queue {
    calls: Vec<Box<dyn Call>>,
    committer: bool,
}

fn gone() -> StoreError {
    StoreError::Io(std::io::Error::other("the store is gone"))
}

impl Shared {
    pub fn new(storage: Box<dyn Storage>, log: Arc<Log>) -> Shared {
        let syncer = Syncer::start();
        if let Err(e) = &syncer.thread {
            // Every call will fail (fail closed) and say why.
            log.err(&format!("store thread not started: {e}"));
        }
        Shared {
            inner: Arc::new(Inner::Grouped(Arc::new(Grouped {
                gone: AtomicBool::new(syncer.thread.is_err()),
                syncer,
                storage: Mutex::new(Some(storage)),
                queue: Mutex::new(Queue::default()),
                watch: StoreWatch::default(),
                log,
            }))),
        }
    }

    /// A store whose calls run side by side, each on a handle from `factory`, on a
    /// blocking thread, each durable when it returns.
    pub fn concurrent(factory: StorageFactory, log: Arc<Log>) -> Shared {
        Shared {
            inner: Arc::new(Inner::PerCall {
                make: factory,
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
        let group = match &*self.inner {
            Inner::Grouped(group) => group,
            Inner::PerCall { make, watch, log } => {
                let (make, watch, log) = (Arc::clone(make), Arc::clone(watch), Arc::clone(log));
                return tokio::task::spawn_blocking(move || {
                    let mut storage = make();
                    let commits = storage.commits();
                    let result = f(storage.as_mut());
                    watch.after_call(&log, storage.as_mut(), commits);
                    result
                })
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
            }
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        group.enqueue(Box::new(CallOf {
            f: Some(f),
            result: None,
            reply: Some(reply),
        }))?;
        answer.await.map_err(|_| gone())?
    }

    fn watch_and_log(&self) -> (&StoreWatch, &Log) {
        match &*self.inner {
            Inner::Grouped(g) => (&g.watch, &g.log),
            Inner::PerCall { watch, log, .. } => (watch, log),
        }
    }

    /// Logs a failed call: a failure of the store once while it lasts, a refusal that
    /// follows from the account's state as it is.
    pub fn log_error(&self, what: &str, e: &StoreError) {
        let (watch, log) = self.watch_and_log();
        if e.is_failure() {
            watch.failed(log, what, e);
        } else {
            log.err(&format!("{what}: {e}"));
        }
    }

    /// Logs a store failure (once while it lasts).
    pub fn failed(&self, what: &str, e: &StoreError) {
        let (watch, log) = self.watch_and_log();
        watch.failed(log, what, e);
    }
}

impl Grouped {
    /// Queues a call for the next group, and starts the task that runs it unless one is
    /// on its way. A store that panicked in a group takes no more calls (fail closed).
    fn enqueue(self: &Arc<Self>, call: Box<dyn Call>) -> Result<(), StoreError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(gone());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| gone())?;
        let mut queue = self.queue.lock().map_err(|_| gone())?;
        queue.calls.push(call);
        if !std::mem::replace(&mut queue.committer, true) {
            // The guard goes with the task: dropped unpolled (a runtime shutting down),
            // it still clears the flag.
            runtime.spawn(Grouped::commit(ClearUnlessDone {
                grouped: Arc::clone(self),
                done: false,
            }));
        }
        Ok(())
    }

    /// Runs groups while calls wait. It first lets the other tasks ready in this turn of
    /// the runtime (requests already read) queue their calls: they join this group
    /// rather than wait for the next sync.
    async fn commit(mut unfinished: ClearUnlessDone) {
        let this = Arc::clone(&unfinished.grouped);
        loop {
            tokio::task::yield_now().await;
            let mut group: Vec<Option<Box<dyn Call>>> = {
                let Ok(mut queue) = this.queue.lock() else {
                    return;
                };
                if queue.calls.is_empty() {
                    queue.committer = false;
                    unfinished.done = true;
                    return;
                }
                let n = queue.calls.len().min(MAX_GROUP);
                queue.calls.drain(..n).map(Some).collect()
            };
            let outcome = this.run(&mut group).await;
            for call in group.into_iter().flatten() {
                call.answer(&outcome);
            }
        }
    }

    /// Runs one group: its calls here (see the module's comment), and its commit, which syncs the WAL when a call changed anything, on the store's
    /// thread, so the runtime reads the next requests meanwhile.
    async fn run(&self, group: &mut [Option<Box<dyn Call>>]) -> Result<(), String> {
        let taken = self.storage.lock().ok().and_then(|mut s| s.take());
        let Some(mut storage) = taken else {
            return Err(gone().to_string());
        };
        let commits = storage.commits();
        let ran = storage
            .begin_group()
            .and_then(|()| run_calls(storage.as_mut(), group));
        let (mut storage, outcome) = match ran {
            Ok(Changed(true)) => {
                let synced = self
                    .syncer
                    .run(move || {
                        let outcome = storage.commit_group();
                        (storage, outcome)
                    })
                    .await;
                let Some(synced) = synced else {
                    // The store went with the thread that panicked.
                    self.gone.store(true, Ordering::SeqCst);
                    return Err(gone().to_string());
                };
                synced
            }
            Ok(Changed(false)) => {
                let outcome = storage.commit_group();
                (storage, outcome)
            }
            Err(e) => (storage, Err(e)),
        };
        self.watch.after_call(&self.log, storage.as_mut(), commits);
        match self.storage.lock() {
            Ok(mut slot) => *slot = Some(storage),
            Err(_) => self.gone.store(true, Ordering::SeqCst),
        }
        outcome.map_err(|e| e.to_string())
    }
}

/// The store's own thread, where a group's commit waits for its sync: not the runtime's
/// blocking pool, which slow NSS lookups may fill.
struct Syncer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::io::Result<JoinHandle<()>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Syncer {
    fn start() -> Syncer {
        let (jobs, next) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                while let Ok(job) = next.recv() {
                    job();
                }
            });
        Syncer {
            jobs: Mutex::new(Some(jobs)),
            thread,
        }
    }

    /// Runs `f` on the store's thread; `None` if that thread is gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        self.jobs.lock().ok()?.as_ref()?.send(job).ok()?;
        result.await.ok()
    }
}

impl Drop for Syncer {
    /// The last handle gone: the thread ends once its job is done.
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(thread) =
            std::mem::replace(&mut self.thread, Err(std::io::Error::other("joined")))
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// A group that panicked answers none of its calls (their callers see the store gone),
/// and a runtime shutting down drops the task: the store is then gone for good, and the
/// calls still queued are dropped too (their callers hear so), so none waits for a task
/// that is no more.
struct ClearUnlessDone {
    grouped: Arc<Grouped>,
    done: bool,
}

impl Drop for ClearUnlessDone {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.grouped.gone.store(true, Ordering::SeqCst);
        let mut queue = match self.grouped.queue.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        queue.calls.clear();
        queue.committer = false;
    }
}

/// Whether a group's calls changed anything (its commit then syncs the WAL).
struct Changed(bool);

/// Runs a group's calls in order, each in its own savepoint, inside the group's
/// transaction. A call that changed nothing while the group had changed nothing before
/// it read only durable state: it is answered at once (and taken out of `group`), not
/// after the sync. An error here is the group's: none of its calls still in `group` may
/// be answered as done.
fn run_calls(
    storage: &mut dyn Storage,
    group: &mut [Option<Box<dyn Call>>],
) -> Result<Changed, StoreError> {
    let mut changed = false;
    for slot in group.iter_mut() {
        changed |= run_call(storage, slot)?;
        if !changed && let Some(call) = slot.take() {
            call.answer(&Ok(()));
        }
    }
    Ok(Changed(changed))
}

/// Runs one call in its savepoint, undone alone if it failed; whether it changed rows.
fn run_call(
    storage: &mut dyn Storage,
    slot: &mut Option<Box<dyn Call>>,
) -> Result<bool, StoreError> {
    let Some(call) = slot.as_mut() else {
        return Ok(false);
    };
    let before = storage.changes();
    storage.begin_call()?;
    let ok = call.run(storage);
    storage.end_call(ok)?;
    Ok(storage.changes() != before)
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

    /// A group as the store runs it, on one thread.
    fn run_group(storage: &mut dyn Storage, group: &mut [Option<Box<dyn Call>>]) {
        storage.begin_group().unwrap();
        run_calls(storage, group).unwrap();
        storage.commit_group().unwrap();
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
        run_group(storage.as_mut(), &mut group);
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
        run_group(storage.as_mut(), &mut group);
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

    /// A store on `path` and 64 enrolments asked for at once; returns their names once
    /// each was answered.
    async fn enroll_64_at_once(path: &std::path::Path) -> (Shared, Vec<String>) {
        let shared = Shared::new(
            Box::new(Store::open(path).unwrap()),
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
        (shared, names)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_the_daemons_one_thread_concurrent_calls_are_all_answered_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let (shared, names) = enroll_64_at_once(&path).await;
        // Answered means on disk: another connection sees every one.
        assert_eq!(users_in(&path), names);
        // The store still serves after the groups.
        let listed = shared.call(|s| s.users()).await.unwrap();
        assert_eq!(listed, names);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_panics_leaves_the_store_refusing_not_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new(
            Box::new(Store::open(&dir.path().join("db.sqlite3")).unwrap()),
            Arc::new(Log::stderr()),
        );
        let limit = std::time::Duration::from_secs(5);
        let panicked = tokio::time::timeout(
            limit,
            shared.call(|_| -> Result<(), StoreError> { panic!("a bug in a store call") }),
        )
        .await
        .expect("the caller hears back");
        assert!(panicked.unwrap_err().is_failure());
        // Fail closed: every later call is refused at once.
        let later = tokio::time::timeout(limit, shared.call(|s: &mut dyn Storage| s.users()))
            .await
            .expect("no hang");
        assert!(later.unwrap_err().is_failure());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_are_all_answered_and_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let (shared, names) = enroll_64_at_once(&path).await;
        // The last handle gone, the database is closed.
        drop(shared);
        assert_eq!(users_in(&path), names);
    }
}
