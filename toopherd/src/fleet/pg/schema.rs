//! The shared database's schema, created and upgraded by toopherd: numbered migrations,
//! each applied once in one transaction under an advisory lock (hosts starting together
//! take turns), recorded in `toopher_schema`. A database already at a newer version than
//! this toopherd knows is refused, never written to.

use super::PgError;
use crate::fleet::seal::{Keyring, Purpose};
use crate::recovery;
use tokio_postgres::{Client, Transaction};

/// One migration's work.
enum Step {
    Sql(&'static str),
    /// Version 2: every recovery code hash keyed with its account's TOTP secret
    /// ([`recovery::keyed`]), so the database alone no longer lets anyone add a code.
    KeyRecoveryCodes,
}

/// (version, step). Append only: a released migration never changes.
const MIGRATIONS: &[(i64, Step)] = &[(1, Step::Sql(V1)), (2, Step::KeyRecoveryCodes)];

/// The newest version this toopherd knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Serializes migrations across the fleet (the two-key advisory lock space, apart from
/// the per-user locks).
const MIGRATION_LOCK: (i32, i32) = (0x746f_6f70, 1);

const VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS toopher_schema (
    version    bigint PRIMARY KEY,
    applied_at bigint NOT NULL,
    applied_by text NOT NULL
)";

/// Version 1: the local backend's state, fleet-wide. Every time is seconds since the
/// epoch by the clock of the host that wrote it; every decision names its host.
const V1: &str = "
CREATE TABLE accounts (
    user_name     text PRIMARY KEY,
    state         text NOT NULL CHECK (state IN ('pending', 'active')),
    -- Sealed with the fleet key (XChaCha20-Poly1305, the user name as associated data;
    -- the key id is inside): a dump alone does not give the TOTP secret.
    secret        bytea NOT NULL,
    recovery_salt bytea NOT NULL,
    created_at    bigint NOT NULL,
    created_by    text NOT NULL,
    expires_at    bigint,
    activated_at  bigint,
    -- The replay guard: the last TOTP step accepted anywhere in the fleet.
    last_step     bigint NOT NULL DEFAULT -1
);
CREATE TABLE recovery_codes (
    id        bigserial PRIMARY KEY,
    user_name text NOT NULL REFERENCES accounts (user_name) ON DELETE CASCADE,
    hash      bytea NOT NULL,
    used_at   bigint,
    used_by   text
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_name);
CREATE TABLE failures (
    id        bigserial PRIMARY KEY,
    user_name text NOT NULL,
    at        bigint NOT NULL,
    rhost     text,
    host      text NOT NULL,
    counts    boolean NOT NULL DEFAULT true,
    told      boolean NOT NULL DEFAULT false
);
CREATE INDEX failures_user_at ON failures (user_name, at);
CREATE TABLE lockouts (
    user_name  text PRIMARY KEY,
    level      bigint NOT NULL DEFAULT 0,
    lock_until bigint NOT NULL DEFAULT 0,
    untold     bigint NOT NULL DEFAULT 0
);
CREATE TABLE activity (
    user_name         text PRIMARY KEY,
    last_success_at   bigint,
    last_success_host text,
    last_failure_at   bigint,
    last_failure_host text
);
CREATE TABLE pairings (
    user_name  text PRIMARY KEY,
    pairing_id text NOT NULL,
    created_at bigint NOT NULL
);
CREATE TABLE registrations (
    user_name     text PRIMARY KEY,
    salt          bytea NOT NULL,
    code_hash     bytea NOT NULL,
    created_at    bigint NOT NULL,
    created_by    text NOT NULL,
    expires_at    bigint NOT NULL,
    approved_at   bigint,
    approved_by   text,
    approved_on   text,
    response_hash bytea,
    tries         bigint NOT NULL DEFAULT 0
);
CREATE TABLE registration_starts (
    user_name text NOT NULL,
    at        bigint NOT NULL
);
CREATE INDEX registration_starts_user ON registration_starts (user_name, at);
CREATE TABLE suspended (
    user_name text PRIMARY KEY,
    at        bigint NOT NULL,
    by_host   text NOT NULL
);
-- One value sealed by each fleet key: a host with another key under the same id is told
-- so at start instead of failing every login.
CREATE TABLE fleet_keys (
    key_id      bigint PRIMARY KEY,
    check_value bytea NOT NULL,
    created_at  bigint NOT NULL
);
";

/// The schema's version: 0 for an empty database.
pub async fn version(client: &Client) -> Result<i64, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('toopher_schema') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT coalesce(max(version), 0) FROM toopher_schema", &[])
        .await?
        .try_get(0)?)
}

/// Brings the schema to [`LATEST`]; returns the version found.
pub async fn migrate(
    client: &mut Client,
    keyring: &Keyring,
    host: &str,
    now: i64,
) -> Result<i64, PgError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1],
    )
    .await?;
    tx.batch_execute(VERSION_TABLE).await?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM toopher_schema", &[])
        .await?
        .try_get(0)?;
    if found > LATEST {
        return Err(PgError::SchemaTooNew {
            found,
            supported: LATEST,
        });
    }
    for (version, step) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        match step {
            Step::Sql(sql) => tx.batch_execute(sql).await?,
            Step::KeyRecoveryCodes => key_recovery_codes(&tx, keyring).await?,
        }
        tx.execute(
            "INSERT INTO toopher_schema (version, applied_at, applied_by) VALUES ($1, $2, $3)",
            &[version, &now, &host],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Keys every stored recovery code hash with its account's secret, in the migration's
/// transaction (so exactly once: nothing written later is ever keyed by toopherd but a
/// code it made itself). A hash whose account's secret does not open with this host's
/// keys is left as it was, which no code matches any more; the account cannot log in
/// with a TOTP code either until it is enrolled again. One UPDATE for all of them: a
/// fleet's hundred thousand codes must fit in the migration's time bound.
async fn key_recovery_codes(tx: &Transaction<'_>, keyring: &Keyring) -> Result<(), PgError> {
    let rows = tx
        .query(
            "SELECT r.id, r.hash, a.user_name, a.secret
             FROM recovery_codes r JOIN accounts a USING (user_name)
             ORDER BY a.user_name",
            &[],
        )
        .await?;
    let (mut ids, mut hashes) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    // Each account's secret opened once (its codes come together).
    let mut opened: Option<(String, Option<zeroize::Zeroizing<Vec<u8>>>)> = None;
    for r in rows {
        let (id, hash, user, sealed): (i64, Vec<u8>, String, Vec<u8>) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        if opened.as_ref().is_none_or(|(u, _)| *u != user) {
            let secret = keyring.open(Purpose::TotpSecret, &user, &sealed).ok();
            opened = Some((user, secret));
        }
        if let Some((_, Some(secret))) = &opened {
            ids.push(id);
            hashes.push(recovery::keyed(secret, &hash).to_vec());
        }
    }
    tx.execute(
        "UPDATE recovery_codes SET hash = v.hash
         FROM unnest($1::bigint[], $2::bytea[]) AS v(id, hash)
         WHERE recovery_codes.id = v.id",
        &[&ids, &hashes],
    )
    .await?;
    Ok(())
}

/// Refuses a schema other than [`LATEST`] without changing it (for `--check-config` and
/// for a toopherd told not to migrate).
pub fn check(found: i64) -> Result<(), PgError> {
    match found {
        v if v > LATEST => Err(PgError::SchemaTooNew {
            found: v,
            supported: LATEST,
        }),
        v if v < LATEST => Err(PgError::SchemaTooOld {
            found: v,
            supported: LATEST,
        }),
        _ => Ok(()),
    }
}
