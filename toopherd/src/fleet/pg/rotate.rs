//! `toopherctl store rotate-key`: every secret sealed with an older fleet key is sealed
//! again with the current one, one user per transaction (under the user's lock, so a
//! login never sees a half-rotated row). Until it has run, the old key stays in the
//! credentials file under `[[previous_keys]]`; afterwards it can go.

use super::{PgError, PgStore};
use crate::fleet::seal::{Purpose, SealError, sealed_key_id};

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotateReport {
    /// Secrets sealed again with the current key.
    pub resealed: u64,
    /// Secrets that did not open (named, with why): left as they were.
    pub failed: Vec<(String, SealError)>,
}

impl PgStore {
    /// Re-seals every secret not sealed with the current key.
    pub async fn rotate_key(&self, now: u64) -> Result<RotateReport, PgError> {
        let current = self.keyring.current_id();
        let users: Vec<String> = self
            .run(async |s| {
                self.check_keys(s, now).await?;
                let rows = s
                    .query(
                        "SELECT user_name FROM accounts WHERE substr(secret, 4, 4) <> $1
                         ORDER BY user_name",
                        &[&&current.to_be_bytes()[..]],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?)
            })
            .await?;
        let mut report = RotateReport::default();
        for user in users {
            let outcome = self
                .run(async |s| {
                    s.begin_for(&user).await?;
                    let Some(row) = s
                        .query_opt("SELECT secret FROM accounts WHERE user_name = $1", &[&user])
                        .await?
                    else {
                        return Ok(None);
                    };
                    let sealed: Vec<u8> = row.try_get(0)?;
                    if sealed_key_id(&sealed).ok() == Some(current) {
                        return Ok(None);
                    }
                    let secret = match self.keyring.open(Purpose::TotpSecret, &user, &sealed) {
                        Ok(s) => s,
                        Err(e) => return Ok(Some(Err(e))),
                    };
                    let resealed = self
                        .keyring
                        .seal(Purpose::TotpSecret, &user, &secret)
                        .map_err(|_| PgError::Random)?;
                    s.execute(
                        "UPDATE accounts SET secret = $2 WHERE user_name = $1",
                        &[&user, &resealed],
                    )
                    .await?;
                    s.commit().await?;
                    Ok(Some(Ok(())))
                })
                .await?;
            match outcome {
                Some(Ok(())) => report.resealed += 1,
                Some(Err(e)) => report.failed.push((user, e)),
                None => {}
            }
        }
        Ok(report)
    }
}
