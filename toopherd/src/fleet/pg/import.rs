//! `toopherctl store import --from-sqlite PATH`: moving a host into the fleet. Its active
//! enrolments are copied into the shared store: the secret sealed with the fleet key, the
//! recovery code hashes (used ones stay used), the replay guard; with its suspensions and
//! Toopher pairings. A user the fleet already has with another enrolment is left alone
//! unless `force`; the same enrolment (imported before) is merged, never duplicated, so a
//! second run changes nothing. The SQLite file is opened read-only.

use super::{PgError, PgStore, account, to_i64};
use crate::fleet::seal::Purpose;
use crate::recovery;
use rusqlite::{OpenFlags, OptionalExtension};
use std::path::Path;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The SQLite schema versions this importer reads.
const SQLITE_VERSIONS: std::ops::RangeInclusive<i64> = 1..=3;

#[derive(Debug)]
pub enum ImportError {
    Sqlite(String),
    Store(PgError),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Sqlite(e) => write!(f, "the SQLite database: {e}"),
            ImportError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ImportError {}

impl From<PgError> for ImportError {
    fn from(e: PgError) -> Self {
        ImportError::Store(e)
    }
}

/// What an import did, user by user.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// New in the fleet.
    pub imported: Vec<String>,
    /// The same enrolment was there; the replay guard or used recovery codes moved on.
    pub updated: Vec<String>,
    /// The same enrolment was there, nothing to change.
    pub unchanged: Vec<String>,
    /// The fleet has another enrolment for the user: left alone (use `force`).
    pub conflicts: Vec<String>,
    /// Another enrolment replaced, with `force`.
    pub replaced: Vec<String>,
    /// Pending enrolments are not imported (they expire; enrol again in the fleet).
    pub skipped_pending: Vec<String>,
    /// Suspensions and pairings added.
    pub suspended: u64,
    pub pairings: u64,
}

struct LocalAccount {
    user: String,
    state: String,
    secret: Zeroizing<Vec<u8>>,
    salt: Vec<u8>,
    created_at: i64,
    activated_at: Option<i64>,
    last_step: i64,
    /// (hash, used_at)
    codes: Vec<(Vec<u8>, Option<i64>)>,
}

struct LocalData {
    accounts: Vec<LocalAccount>,
    suspended: Vec<(String, i64)>,
    pairings: Vec<(String, String, i64)>,
}

fn sqlite_err(e: rusqlite::Error) -> ImportError {
    ImportError::Sqlite(e.to_string())
}

fn read_sqlite(path: &Path) -> Result<LocalData, ImportError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| ImportError::Sqlite(format!("{}: {e}", path.display())))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_err)?;
    let has_accounts = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'accounts'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(sqlite_err)?
        .is_some();
    if !has_accounts || !SQLITE_VERSIONS.contains(&version.max(1)) {
        return Err(ImportError::Sqlite(format!(
            "{} is not a toopherd database this toopherd can read (schema version {version})",
            path.display()
        )));
    }
    let mut stmt = conn
        .prepare(
            "SELECT user, state, secret, recovery_salt, created_at, activated_at, last_step
             FROM accounts ORDER BY user",
        )
        .map_err(sqlite_err)?;
    let mut accounts = stmt
        .query_map([], |r| {
            Ok(LocalAccount {
                user: r.get(0)?,
                state: r.get(1)?,
                secret: Zeroizing::new(r.get(2)?),
                salt: r.get(3)?,
                created_at: r.get(4)?,
                activated_at: r.get(5)?,
                last_step: r.get(6)?,
                codes: Vec::new(),
            })
        })
        .map_err(sqlite_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite_err)?;
    let mut codes = conn
        .prepare("SELECT hash, used_at FROM recovery_codes WHERE user = ?1 ORDER BY rowid")
        .map_err(sqlite_err)?;
    for a in &mut accounts {
        let found: Vec<(Vec<u8>, Option<i64>)> = codes
            .query_map([&a.user], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sqlite_err)?
            .collect::<Result<_, _>>()
            .map_err(sqlite_err)?;
        // Keyed as the fleet keeps them: the host's hash of each code, under its secret.
        a.codes = found
            .into_iter()
            .map(|(hash, used)| (recovery::keyed(&a.secret, &hash).to_vec(), used))
            .collect();
    }
    let table = |name: &str| -> Result<bool, ImportError> {
        Ok(conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()
            .map_err(sqlite_err)?
            .is_some())
    };
    let suspended = if table("suspended")? {
        conn.prepare("SELECT user, at FROM suspended ORDER BY user")
            .map_err(sqlite_err)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sqlite_err)?
            .collect::<Result<_, _>>()
            .map_err(sqlite_err)?
    } else {
        Vec::new()
    };
    let pairings = if table("pairings")? {
        conn.prepare("SELECT user, pairing_id, created_at FROM pairings ORDER BY user")
            .map_err(sqlite_err)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sqlite_err)?
            .collect::<Result<_, _>>()
            .map_err(sqlite_err)?
    } else {
        Vec::new()
    };
    Ok(LocalData {
        accounts,
        suspended,
        pairings,
    })
}

enum Merged {
    Imported,
    Updated,
    Unchanged,
    Conflict,
    Replaced,
}

impl PgStore {
    /// Imports a host's SQLite database (see the module's description).
    pub async fn import_sqlite(
        &self,
        path: &Path,
        force: bool,
        now: u64,
    ) -> Result<ImportReport, ImportError> {
        let data = read_sqlite(path)?;
        let mut report = ImportReport::default();
        for a in &data.accounts {
            if a.state != "active" {
                report.skipped_pending.push(a.user.clone());
                continue;
            }
            let merged = self.import_account(a, force, now).await?;
            let list = match merged {
                Merged::Imported => &mut report.imported,
                Merged::Updated => &mut report.updated,
                Merged::Unchanged => &mut report.unchanged,
                Merged::Conflict => &mut report.conflicts,
                Merged::Replaced => &mut report.replaced,
            };
            list.push(a.user.clone());
        }
        let (suspended, pairings) = self
            .run(async |s| {
                s.begin().await?;
                let mut added = 0;
                for (user, at) in &data.suspended {
                    added += s
                        .execute(
                            "INSERT INTO suspended (user_name, at, by_host) VALUES ($1, $2, $3)
                             ON CONFLICT (user_name) DO NOTHING",
                            &[user, at, &self.host],
                        )
                        .await?;
                }
                let mut p = 0;
                for (user, id, at) in &data.pairings {
                    p += s
                        .execute(
                            "INSERT INTO pairings (user_name, pairing_id, created_at)
                             VALUES ($1, $2, $3) ON CONFLICT (user_name) DO NOTHING",
                            &[user, id, at],
                        )
                        .await?;
                }
                s.commit().await?;
                Ok((added, p))
            })
            .await?;
        report.suspended = suspended;
        report.pairings = pairings;
        Ok(report)
    }

    async fn import_account(
        &self,
        a: &LocalAccount,
        force: bool,
        now: u64,
    ) -> Result<Merged, PgError> {
        let user = a.user.as_str();
        let sealed = self
            .keyring
            .seal(Purpose::TotpSecret, user, &a.secret)
            .map_err(|_| PgError::Random)?;
        self.run(async |s| {
            s.begin_for(user).await?;
            let existing = account(s, user).await?;
            let same = existing.as_ref().is_some_and(|e| {
                e.state == "active"
                    && bool::from(e.salt.as_slice().ct_eq(&a.salt))
                    && self
                        .keyring
                        .open(Purpose::TotpSecret, user, &e.sealed)
                        .is_ok_and(|s| bool::from(s.as_slice().ct_eq(&a.secret)))
            });
            let merged = match (existing.is_some(), same) {
                (true, true) => {
                    let mut changed = s
                        .execute(
                            "UPDATE accounts SET last_step = $2
                             WHERE user_name = $1 AND last_step < $2",
                            &[&user, &a.last_step],
                        )
                        .await?;
                    for (hash, used_at) in &a.codes {
                        if let Some(at) = used_at {
                            changed += s
                                .execute(
                                    "UPDATE recovery_codes SET used_at = $3, used_by = $4
                                     WHERE user_name = $1 AND hash = $2 AND used_at IS NULL",
                                    &[&user, hash, at, &self.host],
                                )
                                .await?;
                        }
                    }
                    if changed > 0 {
                        Merged::Updated
                    } else {
                        Merged::Unchanged
                    }
                }
                (true, false) if !force => Merged::Conflict,
                (existed, _) => {
                    s.execute("DELETE FROM accounts WHERE user_name = $1", &[&user])
                        .await?;
                    s.execute(
                        "INSERT INTO accounts (user_name, state, secret, recovery_salt,
                         created_at, created_by, activated_at, last_step)
                         VALUES ($1, 'active', $2, $3, $4, $5, $6, $7)",
                        &[
                            &user,
                            &sealed,
                            &a.salt,
                            &a.created_at,
                            &format!("{} (imported)", self.host),
                            &a.activated_at.or(Some(to_i64(now))),
                            &a.last_step,
                        ],
                    )
                    .await?;
                    for (hash, used_at) in &a.codes {
                        s.execute(
                            "INSERT INTO recovery_codes (user_name, hash, used_at, used_by)
                             VALUES ($1, $2, $3, $4)",
                            &[
                                &user,
                                hash,
                                used_at,
                                &used_at.map(|_| format!("{} (imported)", self.host)),
                            ],
                        )
                        .await?;
                    }
                    if existed {
                        Merged::Replaced
                    } else {
                        Merged::Imported
                    }
                }
            };
            s.commit().await?;
            Ok(merged)
        })
        .await
    }
}
