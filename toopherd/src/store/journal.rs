//! Durability of the database: the files that hold secrets (the database and its `-wal`
//! and `-shm` companions) are private, a new database's directory entry is on disk, and
//! SQLite tells us each commit it made durable (its WAL hook), which is how toopherd
//! notices that a store that was failing (a full disk) works again. The hook replaces
//! SQLite's automatic checkpoint, so it checkpoints itself and keeps the outcome (and
//! `PRAGMA wal_autocheckpoint` must not be set: it would replace the hook).

use super::StoreError;
use rusqlite::{Connection, hooks::Wal, wal::CheckpointMode};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// SQLite's own default: checkpoint once the WAL holds this many pages.
const CHECKPOINT_PAGES: i32 = 1000;

/// The files SQLite keeps next to a WAL database.
pub const COMPANIONS: [&str; 2] = ["-wal", "-shm"];

pub fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Refuses an existing database file or companion that others may read or write, that
/// another uid owns, or (for a companion) that is not a plain file. Returns whether the
/// file exists.
pub fn check_private(path: &Path, follow: bool) -> Result<bool, StoreError> {
    let meta = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let shown = path.display().to_string();
    if !meta.file_type().is_file() {
        return Err(StoreError::NotAFile { path: shown });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 || meta.uid() != euid() {
        return Err(StoreError::InsecurePermissions { path: shown, mode });
    }
    Ok(true)
}

/// Puts the directory entry of a file just created in `dir` on disk: SQLite syncs the
/// directory when it creates a WAL, but not for the database file we create ourselves.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// What the WAL hook saw: how many commits reached the disk, and the last checkpoint.
#[derive(Default)]
pub struct Journal {
    commits: AtomicU64,
    checkpoint: Mutex<Option<Result<(), String>>>,
}

impl Journal {
    /// Every change is durable before its answer is sent: WAL, synced at each commit. The
    /// mode is checked: without WAL the companions and the hook below would not apply.
    pub fn attach(conn: &mut Connection) -> Result<Arc<Journal>, StoreError> {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal { mode });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        let journal = Arc::new(Journal::default());
        let seen = Arc::clone(&journal);
        conn.wal_hook(Some(move |wal: &mut Wal, pages: i32| {
            seen.commits.fetch_add(1, Ordering::SeqCst);
            if pages >= CHECKPOINT_PAGES {
                let outcome = wal
                    .checkpoint_v2(CheckpointMode::PASSIVE)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                if let Ok(mut last) = seen.checkpoint.lock() {
                    *last = Some(outcome);
                }
            }
            // An error here would make SQLite report the (already durable) commit as
            // failed; checkpoint trouble is kept above instead.
            Ok(())
        }))?;
        Ok(journal)
    }

    /// Commits made durable since the database was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// The outcome of the checkpoint tried since the last call, if any.
    pub fn take_checkpoint(&self) -> Option<Result<(), String>> {
        self.checkpoint.lock().ok().and_then(|mut c| c.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("toopherd-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loosened_or_planted_companions_are_refused() {
        let dir = temp_dir("companions");
        let db = dir.join("db.sqlite3");
        drop(Store::open(&db).unwrap());
        for suffix in COMPANIONS {
            let p = companion(&db, suffix);
            std::fs::write(&p, b"").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                Store::open(&db),
                Err(StoreError::InsecurePermissions { mode: 0o644, .. })
            ));
            std::fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink(&db, &p).unwrap();
            assert!(matches!(Store::open(&db), Err(StoreError::NotAFile { .. })));
            std::fs::remove_file(&p).unwrap();
        }
        // Created by SQLite, they are as private as the database.
        let store = Store::open(&db).unwrap();
        for suffix in COMPANIONS {
            assert!(check_private(&companion(&db, suffix), false).unwrap());
        }
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    const LIMITS: crate::store::Limits = crate::store::Limits {
        max_failures: 5,
        window: 300,
    };

    #[test]
    fn commits_are_counted_and_the_wal_is_checkpointed() {
        let dir = temp_dir("checkpoint");
        let db = dir.join("db.sqlite3");
        let mut store = Store::open(&db).unwrap();
        let before = store.commits();
        store
            .note_result(
                "alice",
                false,
                1_700_000_000,
                LIMITS,
                &crate::store::Attempt::default(),
            )
            .unwrap();
        assert_eq!(store.commits(), before + 1);
        // A read commits nothing.
        store
            .status(
                "alice",
                "local",
                1_700_000_000,
                crate::store::Limits {
                    max_failures: 5,
                    window: 300,
                },
            )
            .unwrap();
        assert_eq!(store.commits(), before + 1);
        // Without SQLite's automatic checkpoint, the hook's own keeps the WAL bounded.
        let mut checkpoint = None;
        for i in 0..3000 {
            store
                .note_result(
                    "alice",
                    false,
                    1_700_000_000 + i,
                    LIMITS,
                    &crate::store::Attempt::default(),
                )
                .unwrap();
            checkpoint = store.take_checkpoint();
            if checkpoint.is_some() {
                break;
            }
        }
        assert_eq!(checkpoint, Some(Ok(())));
        for i in 0..400 {
            store
                .note_result(
                    "alice",
                    false,
                    1_700_010_000 + i,
                    LIMITS,
                    &crate::store::Attempt::default(),
                )
                .unwrap();
        }
        let wal = std::fs::metadata(companion(&db, "-wal")).unwrap().len();
        assert!(wal < 5 << 20, "the WAL grew to {wal} bytes");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
