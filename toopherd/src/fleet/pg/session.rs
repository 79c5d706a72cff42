//! One pooled connection and what it keeps between operations: its prepared statements
//! (so a query costs one round trip, not a prepare and an execute) and whether a
//! transaction is open. A user's transaction starts with `BEGIN` and the user's advisory
//! lock in one round trip.

use super::PgError;
use super::pool::Connector;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) struct Session {
    client: Client,
    connector: Arc<Connector>,
    statements: HashMap<&'static str, Statement>,
    in_transaction: bool,
    /// When it went back to the pool.
    idle_since: std::time::Instant,
    /// Taken from the pool for this operation (not connected for it).
    reused: bool,
    /// The operation has had no answer yet.
    unanswered: bool,
}

/// The advisory lock key of a user: every change to one user's rows takes it first, so
/// two hosts deciding about one user take turns.
pub(super) fn user_lock(user: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"toopherd user lock\0")
        .chain_update(user.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl Session {
    pub(super) fn new(client: Client, connector: Arc<Connector>) -> Session {
        Session {
            client,
            connector,
            statements: HashMap::new(),
            in_transaction: false,
            idle_since: std::time::Instant::now(),
            reused: false,
            unanswered: true,
        }
    }

    /// Taken from the pool: the server may have dropped it since.
    pub(super) fn mark_reused(&mut self) {
        self.reused = true;
    }

    /// An operation starts.
    pub(super) fn start(&mut self) {
        self.unanswered = true;
    }

    /// Whether `e` on this request means the pooled connection was already gone before
    /// the operation began: its first request, on a reused connection, failed at the
    /// connection (closed, reset, or the server's "terminating connection" notice). Then
    /// nothing of the operation happened, and it can go to a new connection.
    fn gone_before(&self, e: &tokio_postgres::Error) -> bool {
        let connection_level = match e.code() {
            Some(c) => {
                let c = c.code();
                c.starts_with("08") || c.starts_with("57P")
            }
            None => e.is_closed() || e.as_db_error().is_none(),
        };
        self.reused && self.unanswered && connection_level
    }

    /// Replaces the dead connection with a new one (once per operation).
    async fn reconnect(&mut self) -> Result<(), PgError> {
        self.client = self.connector.connect().await?;
        self.statements.clear();
        self.reused = false;
        Ok(())
    }

    /// Notes an answer to the operation's request.
    fn answered<T>(&mut self, r: Result<T, tokio_postgres::Error>) -> Result<T, PgError> {
        if r.is_ok() {
            self.unanswered = false;
        }
        Ok(r?)
    }

    /// The connection itself (the schema migrations use their own transaction).
    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Notes that the session goes back to the pool.
    pub(super) fn park(&mut self) {
        self.idle_since = std::time::Instant::now();
    }

    /// How long the session has been in the pool.
    pub(super) fn idle_for(&self) -> std::time::Duration {
        self.idle_since.elapsed()
    }

    /// One empty round trip: whether the server still has this connection.
    pub(super) async fn alive(&self) -> bool {
        self.client.check_connection().await.is_ok()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Forgets the prepared statements (after an error: a schema change by a newer
    /// toopherd can invalidate them).
    pub(super) fn forget_statements(&mut self) {
        self.statements.clear();
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement, PgError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let r = match self.client.prepare(sql).await {
            Err(e) if self.gone_before(&e) => {
                self.reconnect().await?;
                self.client.prepare(sql).await
            }
            r => r,
        };
        let s = self.answered(r)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, PgError> {
        let st = self.statement(sql).await?;
        let r = match self.client.query(&st, params).await {
            Err(e) if self.gone_before(&e) => {
                self.reconnect().await?;
                let st = self.statement(sql).await?;
                self.client.query(&st, params).await
            }
            r => r,
        };
        self.answered(r)
    }

    pub(super) async fn query_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Row, PgError> {
        let st = self.statement(sql).await?;
        let r = match self.client.query_one(&st, params).await {
            Err(e) if self.gone_before(&e) => {
                self.reconnect().await?;
                let st = self.statement(sql).await?;
                self.client.query_one(&st, params).await
            }
            r => r,
        };
        self.answered(r)
    }

    pub(super) async fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, PgError> {
        let st = self.statement(sql).await?;
        let r = match self.client.query_opt(&st, params).await {
            Err(e) if self.gone_before(&e) => {
                self.reconnect().await?;
                let st = self.statement(sql).await?;
                self.client.query_opt(&st, params).await
            }
            r => r,
        };
        self.answered(r)
    }

    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, PgError> {
        let st = self.statement(sql).await?;
        let r = match self.client.execute(&st, params).await {
            Err(e) if self.gone_before(&e) => {
                self.reconnect().await?;
                let st = self.statement(sql).await?;
                self.client.execute(&st, params).await
            }
            r => r,
        };
        self.answered(r)
    }

    /// Starts a transaction.
    pub(super) async fn begin(&mut self) -> Result<(), PgError> {
        self.batch("BEGIN").await?;
        self.in_transaction = true;
        Ok(())
    }

    /// Starts a transaction holding `user`'s advisory lock (until it ends).
    pub(super) async fn begin_for(&mut self, user: &str) -> Result<(), PgError> {
        // The key is a number this code computed: no text of anyone's goes into the SQL.
        let sql = format!("BEGIN; SELECT pg_advisory_xact_lock({})", user_lock(user));
        // Marked before the answer: a BEGIN that failed halfway must still be rolled back.
        self.in_transaction = true;
        self.batch(&sql).await
    }

    async fn batch(&mut self, sql: &str) -> Result<(), PgError> {
        let r = match self.client.batch_execute(sql).await {
            Err(e) if self.gone_before(&e) => {
                self.reconnect().await?;
                self.client.batch_execute(sql).await
            }
            r => r,
        };
        self.answered(r)
    }

    pub(super) async fn commit(&mut self) -> Result<(), PgError> {
        let r = self.client.batch_execute("COMMIT").await;
        // A failed COMMIT ends the transaction too (the server rolls it back).
        self.in_transaction = false;
        Ok(r?)
    }

    /// Ends an open transaction without its changes.
    pub(super) async fn rollback(&mut self) -> Result<(), PgError> {
        if self.in_transaction {
            self.client.batch_execute("ROLLBACK").await?;
            self.in_transaction = false;
        }
        Ok(())
    }
}
