//! What `toopherctl store ...` does, as library functions the command line calls: they
//! work on the shared database directly (with toopherd.toml's `[store]` and the
//! credentials file, so as root), not through toopherd's socket.
//!
//! - `keygen`: a new credentials file with a fresh fleet key, on standard output.
//! - `check`: connect, authenticate, compare the schema and the fleet keys; plain words.
//! - `rotate-key`: re-seal every secret with the current key.
//! - `import --from-sqlite PATH [--force]`: move a host's enrolments into the fleet.

use super::credentials;
use super::pg::{ImportReport, PgError, PgStore, RotateReport};
use super::seal::KeyId;
use super::settings::{StoreConfig, StoreKind, host_name};
use std::path::Path;
use std::sync::Arc;

/// A failed command, said in plain words.
#[derive(Debug)]
pub struct CommandError(pub String);

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CommandError {}

fn err(e: impl std::fmt::Display) -> CommandError {
    CommandError(e.to_string())
}

/// The credentials file text for `toopherctl store keygen [--key-id N]`.
pub fn keygen(key_id: KeyId) -> Result<zeroize::Zeroizing<String>, CommandError> {
    credentials::keygen(key_id).map_err(err)
}

/// Runs `f` on the shared store of `store` (opened, so migrated, unless `migrate` is
/// false) on a small runtime of its own.
fn with_store<T>(
    store: &StoreConfig,
    migrate: bool,
    f: impl AsyncFnOnce(&PgStore) -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    if store.kind != StoreKind::Postgres {
        return Err(CommandError(
            "this host's [store] is kind = \"sqlite\"; `toopherctl store` works on a \
             kind = \"postgres\" store"
                .into(),
        ));
    }
    let creds = store.load_credentials().map_err(err)?;
    let settings = store.pg_settings(&creds, &host_name()).map_err(err)?;
    let keyring = Arc::new(creds.keyring);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let pg = if migrate {
            PgStore::open(&settings, keyring, crate::now()).await
        } else {
            PgStore::connect(&settings, keyring)
        }
        .map_err(err)?;
        f(&pg).await
    })
}

/// `--check-config` for a postgres store: `Ok` with a summary, or what is wrong.
pub fn check(store: &StoreConfig) -> Result<String, CommandError> {
    with_store(store, false, async |pg| {
        pg.check_config().await.map_err(|e| match e {
            PgError::SchemaTooOld { found: 0, .. } => CommandError(
                "the database has no toopherd schema yet: toopherd creates it when it starts"
                    .into(),
            ),
            other => err(other),
        })?;
        Ok(format!(
            "the shared database answers, the schema is current and the fleet key matches \
             (this host records its decisions as {})",
            pg.host()
        ))
    })
}

pub fn rotate_key(store: &StoreConfig) -> Result<RotateReport, CommandError> {
    with_store(store, true, async |pg| {
        pg.rotate_key(crate::now()).await.map_err(err)
    })
}

pub fn import(store: &StoreConfig, from: &Path, force: bool) -> Result<ImportReport, CommandError> {
    with_store(store, true, async |pg| {
        pg.import_sqlite(from, force, crate::now())
            .await
            .map_err(err)
    })
}

/// The report of `rotate-key` for a person.
pub fn describe_rotation(r: &RotateReport) -> String {
    let mut out = format!(
        "{} secret(s) sealed again with the current key\n",
        r.resealed
    );
    for (user, e) in &r.failed {
        out.push_str(&format!("{user}: left as it was: {e}\n"));
    }
    if r.failed.is_empty() {
        out.push_str("older keys can now be removed from the credentials files\n");
    }
    out
}

/// The report of `import` for a person.
pub fn describe_import(r: &ImportReport) -> String {
    let mut out = String::new();
    for (what, users) in [
        ("imported", &r.imported),
        (
            "updated (same enrolment; replay guard or used recovery codes)",
            &r.updated,
        ),
        ("unchanged (already in the fleet)", &r.unchanged),
        ("replaced (--force)", &r.replaced),
        (
            "NOT imported: the fleet has another enrolment (--force replaces it)",
            &r.conflicts,
        ),
        (
            "not imported: pending enrolments (enrol again)",
            &r.skipped_pending,
        ),
    ] {
        if !users.is_empty() {
            out.push_str(&format!("{what}: {}\n", users.join(" ")));
        }
    }
    out.push_str(&format!(
        "suspensions added: {}, pairings added: {}\n",
        r.suspended, r.pairings
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_every_user_and_the_way_out() {
        let r = ImportReport {
            imported: vec!["alice".into()],
            conflicts: vec!["bob".into()],
            suspended: 1,
            ..ImportReport::default()
        };
        let text = describe_import(&r);
        assert!(text.contains("imported: alice"), "{text}");
        assert!(text.contains("--force replaces it): bob"), "{text}");
        assert!(text.contains("suspensions added: 1"), "{text}");
        let text = describe_rotation(&RotateReport {
            resealed: 3,
            failed: vec![],
        });
        assert!(text.starts_with("3 secret(s)"), "{text}");
    }

    #[test]
    fn an_sqlite_store_is_refused() {
        let e = check(&StoreConfig::default()).unwrap_err();
        assert!(e.0.contains("kind = \"sqlite\""), "{e}");
    }
}
