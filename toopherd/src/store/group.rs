//! Group commit for the SQLite store: the calls waiting together share one `BEGIN
//! IMMEDIATE` transaction and one commit, so one WAL sync (`synchronous = FULL`) makes
//! all of them durable, and none is answered before it (see [`super::Shared`]). Each call
//! runs inside its own savepoint, so a call that fails is undone alone; the store's own
//! transactions are savepoints too, which nest inside the group's.

use super::{Store, StoreError};

/// The savepoint around one call of a group.
const CALL_OPEN: &str = "SAVEPOINT toopherd_call";
const CALL_RELEASE: &str = "RELEASE toopherd_call";
const CALL_UNDO: &str = "ROLLBACK TO toopherd_call";

impl Store {
    pub fn begin_group(&mut self) -> Result<(), StoreError> {
        self.run("BEGIN IMMEDIATE")
    }

    pub fn begin_call(&mut self) -> Result<(), StoreError> {
        self.group_open()?;
        self.run(CALL_OPEN)
    }

    /// Keeps the call's changes in the group, or undoes them alone.
    pub fn end_call(&mut self, keep: bool) -> Result<(), StoreError> {
        self.group_open()?;
        if !keep {
            self.run(CALL_UNDO)?;
        }
        self.run(CALL_RELEASE)
    }

    pub fn commit_group(&mut self) -> Result<(), StoreError> {
        self.group_open()?;
        self.run("COMMIT")
    }

    /// Runs one of the group's statements, prepared once (parsing them at every call was
    /// a visible share of the CPU under load).
    fn run(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Rows inserted, updated or deleted since the connection opened (rolled-back ones
    /// included: that only makes a call wait for a commit it did not need).
    pub fn changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// SQLite rolls a whole transaction back by itself after some errors (a full disk, an
    /// I/O error): then the calls before would be lost while reported as done, so the
    /// group fails instead.
    fn group_open(&self) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            return Err(StoreError::Io(std::io::Error::other(
                "the group's transaction was rolled back",
            )));
        }
        Ok(())
    }
}
