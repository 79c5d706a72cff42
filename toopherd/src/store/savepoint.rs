//! A savepoint whose statements are prepared once: rusqlite's own parses its `SAVEPOINT`
//! and `RELEASE` text at every use, and the store opens one for every change, inside the
//! group's per-call one (`group`): SQLite's parser was a visible share of a
//! verification's CPU under load (doc/benchmark.md, "Phase 3"). Savepoints of one name
//! nest: `RELEASE` and `ROLLBACK TO` apply to the innermost open one.

use rusqlite::Connection;

const OPEN: &str = "SAVEPOINT toopherd_sp";
const RELEASE: &str = "RELEASE toopherd_sp";
const UNDO: &str = "ROLLBACK TO toopherd_sp";

/// One change as a transaction of its own: [`Savepoint::commit`] keeps it; dropped
/// without it (an error, a panic), everything since [`Savepoint::new`] is undone.
pub struct Savepoint<'c> {
    // Held exclusively, as rusqlite's own savepoint holds it: a second savepoint cannot
    // be opened, nor this one released out of order, while it lives.
    conn: &'c mut Connection,
    open: bool,
}

fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

impl<'c> Savepoint<'c> {
    pub fn new(conn: &'c mut Connection) -> rusqlite::Result<Savepoint<'c>> {
        run(conn, OPEN)?;
        Ok(Savepoint { conn, open: true })
    }

    /// Keeps the changes (in the enclosing transaction, or on disk when there is none).
    /// A failed release leaves the savepoint open, and dropping it undoes it.
    pub fn commit(mut self) -> rusqlite::Result<()> {
        run(self.conn, RELEASE)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to. The savepoint is dropped open only on a path that
            // returns an error, and the group then undoes the whole call (`end_call`).
            let _ = run(self.conn, UNDO).and_then(|()| run(self.conn, RELEASE));
        }
    }
}

impl std::ops::Deref for Savepoint<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_committed_savepoint_keeps_its_rows_and_a_dropped_one_undoes_them() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let kept = Savepoint::new(&mut conn).unwrap();
        kept.execute("INSERT INTO t VALUES (1)", []).unwrap();
        kept.commit().unwrap();
        {
            let dropped = Savepoint::new(&mut conn).unwrap();
            dropped.execute("INSERT INTO t VALUES (2)", []).unwrap();
        }
        assert_eq!(rows(&conn), 1);
        assert!(conn.is_autocommit(), "every savepoint was released");
        // Inside an enclosing transaction (the group's), a dropped one undoes only its own.
        conn.execute_batch("BEGIN; INSERT INTO t VALUES (3)")
            .unwrap();
        {
            let dropped = Savepoint::new(&mut conn).unwrap();
            dropped.execute("INSERT INTO t VALUES (4)", []).unwrap();
        }
        assert!(
            !conn.is_autocommit(),
            "the enclosing transaction is still open"
        );
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!(rows(&conn), 2);
    }
}
