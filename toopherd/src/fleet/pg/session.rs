//! One pooled connection and what it keeps between operations: its prepared statements
//! (so a query costs one round trip, not a prepare and an execute) and whether a
//! transaction is open. A user's transaction starts with `BEGIN` and the user's advisory
//! lock in one round trip.

use super::PgError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) struct Session {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    in_transaction: bool,
    /// When it went back to the pool.
    idle_since: std::time::Instant,
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
    pub(super) fn new(client: Client) -> Session {
        Session {
            client,
            statements: HashMap::new(),
            in_transaction: false,
            idle_since: std::time::Instant::now(),
        }
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
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// The prepared statements of `sqls` and the connection, to send independent queries
    /// together: tokio-postgres pipelines queries polled at once, one round trip in all.
    pub(super) async fn prepare_all<const N: usize>(
        &mut self,
        sqls: [&'static str; N],
    ) -> Result<([Statement; N], &Client), PgError> {
        let mut out = Vec::with_capacity(N);
        for sql in sqls {
            out.push(self.statement(sql).await?);
        }
        let statements: [Statement; N] = out
            .try_into()
            .map_err(|_| PgError::Corrupt("prepared statements miscounted".into()))?;
        Ok((statements, &self.client))
    }

    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, PgError> {
        let st = self.statement(sql).await?;
        Ok(self.client.query(&st, params).await?)
    }

    pub(super) async fn query_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Row, PgError> {
        let st = self.statement(sql).await?;
        Ok(self.client.query_one(&st, params).await?)
    }

    pub(super) async fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, PgError> {
        let st = self.statement(sql).await?;
        Ok(self.client.query_opt(&st, params).await?)
    }

    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, PgError> {
        let st = self.statement(sql).await?;
        Ok(self.client.execute(&st, params).await?)
    }

    /// Starts a transaction.
    pub(super) async fn begin(&mut self) -> Result<(), PgError> {
        self.in_transaction = true;
        self.client.batch_execute("BEGIN").await?;
        Ok(())
    }

    /// Starts a transaction holding `user`'s advisory lock (until it ends).
    pub(super) async fn begin_for(&mut self, user: &str) -> Result<(), PgError> {
        self.in_transaction = true;
        // The key is a number this code computed: no text of anyone's goes into the SQL.
        self.client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({})",
                user_lock(user)
            ))
            .await?;
        Ok(())
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
