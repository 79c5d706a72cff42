//! Account administration in the shared store: status with the host of the last
//! decisions, suspension, Toopher pairings, recovery code regeneration and two-way
//! registration codes (shown at a login on one host, approvable from any host). The same
//! rules as the SQLite store's `admin`.

use super::session::Session;
use super::{PgError, PgStore, empty_status, failures, to_i64, to_u64};
use crate::recovery;
use crate::store::{ApproveError, Limits, RegistrationCheck};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toopher_ipc::{AccountStatus, EnrollmentState};
use zeroize::Zeroizing;

/// Wrong response codes before a registration is void.
const MAX_RESPONSE_TRIES: i64 = 5;
/// Registrations a user may start per hour, fleet-wide.
const MAX_STARTS_PER_HOUR: i64 = 10;

/// `toopherctl status`'s view of a user in the fleet: the usual status and where the
/// last success and failure happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStatus {
    pub status: AccountStatus,
    pub last_success_host: Option<String>,
    pub last_failure_host: Option<String>,
}

/// Six uniformly random digits.
fn six_digits() -> Result<Zeroizing<String>, getrandom::Error> {
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b)?;
        let v = u32::from_le_bytes(b);
        // Reject the top sliver so every code is equally likely.
        if v < u32::MAX - (u32::MAX % 1_000_000) {
            return Ok(Zeroizing::new(format!("{:06}", v % 1_000_000)));
        }
    }
}

fn salted(salt: &[u8], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.trim().as_bytes());
    h.finalize().into()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

pub(super) async fn is_suspended(s: &mut Session, user: &str) -> Result<bool, PgError> {
    Ok(
        s.query_opt("SELECT 1 FROM suspended WHERE user_name = $1", &[&user])
            .await?
            .is_some(),
    )
}

async fn pairing(s: &mut Session, user: &str) -> Result<Option<String>, PgError> {
    Ok(s.query_opt(
        "SELECT pairing_id FROM pairings WHERE user_name = $1",
        &[&user],
    )
    .await?
    .map(|r| r.try_get(0))
    .transpose()?)
}

impl PgStore {
    pub async fn status(
        &self,
        user: &str,
        backend: &str,
        now: u64,
        limits: Limits,
    ) -> Result<FleetStatus, PgError> {
        self.run(async |s| {
            let account = s
                .query_opt(
                    "SELECT state, created_at, activated_at, expires_at FROM accounts
                     WHERE user_name = $1",
                    &[&user],
                )
                .await?;
            let activity = s
                .query_opt(
                    "SELECT last_success_at, last_success_host, last_failure_at,
                     last_failure_host FROM activity WHERE user_name = $1",
                    &[&user],
                )
                .await?;
            let left: i64 = s
                .query_one(
                    "SELECT count(*) FROM recovery_codes WHERE user_name = $1 AND used_at IS NULL",
                    &[&user],
                )
                .await?
                .try_get(0)?;
            let opt = |v: Option<i64>| v.map(to_u64);
            let mut st = empty_status(user, backend);
            st.pairing_id = pairing(s, user).await?;
            if st.pairing_id.is_some() {
                st.state = EnrollmentState::Active;
            }
            st.recovery_codes_left = u32::try_from(left).unwrap_or(0);
            st.locked_until = failures::locked_until(s, user, now, limits).await?;
            st.lock_level = self.lock_level_in(s, user, now).await?;
            st.enabled = !is_suspended(s, user).await?;
            let mut fleet = FleetStatus {
                status: st,
                last_success_host: None,
                last_failure_host: None,
            };
            if let Some(a) = activity {
                fleet.status.last_success_at = opt(a.try_get(0)?);
                fleet.last_success_host = a.try_get(1)?;
                fleet.status.last_failure_at = opt(a.try_get(2)?);
                fleet.last_failure_host = a.try_get(3)?;
                fleet.status.hosts = Some(Box::new(toopher_ipc::DecisionHosts {
                    last_success: fleet.last_success_host.clone(),
                    last_failure: fleet.last_failure_host.clone(),
                }));
            }
            if let Some(r) = account {
                let state: String = r.try_get(0)?;
                let expires: Option<i64> = r.try_get(3)?;
                let expired = expires.is_some_and(|t| to_u64(t) <= now);
                let st = &mut fleet.status;
                st.state = match (state.as_str(), expired) {
                    ("active", _) => EnrollmentState::Active,
                    (_, false) => EnrollmentState::Pending,
                    (_, true) => st.state,
                };
                st.created_at = opt(r.try_get(1)?);
                st.activated_at = opt(r.try_get(2)?);
                st.expires_at = opt(expires);
            }
            Ok(fleet)
        })
        .await
    }

    async fn lock_level_in(&self, s: &mut Session, user: &str, now: u64) -> Result<u32, PgError> {
        // The lock level as `lock_level` reads it, on this connection.
        let row = s
            .query_opt(
                "SELECT level, lock_until FROM lockouts WHERE user_name = $1",
                &[&user],
            )
            .await?;
        Ok(match row {
            Some(r) => {
                let level = u32::try_from(r.try_get::<_, i64>(0)?).unwrap_or(u32::MAX);
                let until = to_u64(r.try_get(1)?);
                if until.saturating_add(crate::budget::LEVEL_RESET_AFTER) <= now {
                    0
                } else {
                    level
                }
            }
            None => 0,
        })
    }

    pub async fn is_suspended(&self, user: &str) -> Result<bool, PgError> {
        self.run(async |s| is_suspended(s, user).await).await
    }

    /// Suspends or re-enables `user`'s second factor on every host at once.
    pub async fn set_suspended(
        &self,
        user: &str,
        suspended: bool,
        now: u64,
    ) -> Result<(), PgError> {
        let host = self.host.as_str();
        self.run(async |s| {
            if suspended {
                s.execute(
                    "INSERT INTO suspended (user_name, at, by_host) VALUES ($1, $2, $3)
                     ON CONFLICT (user_name) DO NOTHING",
                    &[&user, &to_i64(now), &host],
                )
                .await?;
            } else {
                s.execute("DELETE FROM suspended WHERE user_name = $1", &[&user])
                    .await?;
            }
            Ok(())
        })
        .await
    }

    pub async fn pairing(&self, user: &str) -> Result<Option<String>, PgError> {
        self.run(async |s| pairing(s, user).await).await
    }

    pub async fn record_pairing(
        &self,
        user: &str,
        pairing_id: &str,
        now: u64,
    ) -> Result<(), PgError> {
        self.run(async |s| {
            s.execute(
                "INSERT INTO pairings (user_name, pairing_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (user_name) DO UPDATE SET pairing_id = excluded.pairing_id,
                 created_at = excluded.created_at",
                &[&user, &pairing_id, &to_i64(now)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Forgets everything about `user`. Returns whether anything existed.
    pub async fn forget(&self, user: &str) -> Result<bool, PgError> {
        self.run(async |s| {
            s.begin_for(user).await?;
            let mut n = 0;
            for sql in [
                "DELETE FROM recovery_codes WHERE user_name = $1",
                "DELETE FROM accounts WHERE user_name = $1",
                "DELETE FROM pairings WHERE user_name = $1",
                "DELETE FROM registrations WHERE user_name = $1",
                "DELETE FROM registration_starts WHERE user_name = $1",
                "DELETE FROM suspended WHERE user_name = $1",
                "DELETE FROM failures WHERE user_name = $1",
                "DELETE FROM lockouts WHERE user_name = $1",
                "DELETE FROM activity WHERE user_name = $1",
            ] {
                n += s.execute(sql, &[&user]).await?;
            }
            s.commit().await?;
            Ok(n > 0)
        })
        .await
    }

    /// Every user the fleet has a record of.
    pub async fn users(&self) -> Result<Vec<String>, PgError> {
        self.run(async |s| {
            let rows = s
                .query(
                    "SELECT user_name FROM accounts UNION SELECT user_name FROM pairings
                     UNION SELECT user_name FROM suspended UNION SELECT user_name FROM activity
                     ORDER BY 1",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Replaces the recovery codes of an active enrolment; the old ones stop working
    /// everywhere in the same transaction.
    pub async fn regenerate_recovery_codes(
        &self,
        user: &str,
    ) -> Result<Vec<Zeroizing<String>>, PgError> {
        let codes = (0..recovery::COUNT)
            .map(|_| recovery::generate())
            .collect::<Result<Vec<_>, _>>()?;
        self.run(async |s| {
            s.begin_for(user).await?;
            let (salt, sealed): (Vec<u8>, Vec<u8>) = match s
                .query_opt(
                    "SELECT recovery_salt, secret FROM accounts
                     WHERE user_name = $1 AND state = 'active'",
                    &[&user],
                )
                .await?
            {
                Some(r) => (r.try_get(0)?, r.try_get(1)?),
                None => return Err(PgError::NotEnrolled),
            };
            let secret = self.open_secret(user, &sealed)?;
            s.execute("DELETE FROM recovery_codes WHERE user_name = $1", &[&user])
                .await?;
            for code in &codes {
                if let Some(n) = recovery::normalize(code) {
                    s.execute(
                        "INSERT INTO recovery_codes (user_name, hash) VALUES ($1, $2)",
                        &[
                            &user,
                            &&recovery::keyed(&secret, &recovery::hash(&salt, &n))[..],
                        ],
                    )
                    .await?;
                }
            }
            s.commit().await?;
            Ok(())
        })
        .await?;
        Ok(codes)
    }

    /// Starts (or restarts) a two-way registration: the registration code and its expiry,
    /// or `None` when the user started too many within the hour (on any host).
    pub async fn start_registration(
        &self,
        user: &str,
        ttl: u64,
        now: u64,
    ) -> Result<Option<(Zeroizing<String>, u64)>, PgError> {
        let code = six_digits()?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        let expires_at = now.saturating_add(ttl);
        let host = self.host.as_str();
        let started = self
            .run(async |s| {
                s.begin_for(user).await?;
                s.execute(
                    "DELETE FROM registration_starts WHERE user_name = $1 AND at <= $2",
                    &[&user, &to_i64(now.saturating_sub(3600))],
                )
                .await?;
                let recent: i64 = s
                    .query_one(
                        "SELECT count(*) FROM registration_starts WHERE user_name = $1",
                        &[&user],
                    )
                    .await?
                    .try_get(0)?;
                if recent >= MAX_STARTS_PER_HOUR {
                    return Ok(false);
                }
                s.execute(
                    "INSERT INTO registrations (user_name, salt, code_hash, created_at,
                     created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (user_name) DO UPDATE SET salt = excluded.salt,
                     code_hash = excluded.code_hash, created_at = excluded.created_at,
                     created_by = excluded.created_by, expires_at = excluded.expires_at,
                     approved_at = NULL, approved_by = NULL, approved_on = NULL,
                     response_hash = NULL, tries = 0",
                    &[
                        &user,
                        &&salt[..],
                        &&salted(&salt, &code)[..],
                        &to_i64(now),
                        &host,
                        &to_i64(expires_at),
                    ],
                )
                .await?;
                s.execute(
                    "INSERT INTO registration_starts (user_name, at) VALUES ($1, $2)",
                    &[&user, &to_i64(now)],
                )
                .await?;
                s.commit().await?;
                Ok(true)
            })
            .await?;
        Ok(started.then_some((code, expires_at)))
    }

    /// Approves the registration code shown at `user`'s login prompt (on any host) and
    /// returns the response code to type there.
    pub async fn approve_registration(
        &self,
        user: &str,
        code: &str,
        approver: &str,
        now: u64,
    ) -> Result<Result<Zeroizing<String>, ApproveError>, PgError> {
        let response = six_digits()?;
        let host = self.host.as_str();
        self.run(async |s| {
            s.begin_for(user).await?;
            let row = s
                .query_opt(
                    "SELECT salt, code_hash, expires_at, tries FROM registrations
                     WHERE user_name = $1",
                    &[&user],
                )
                .await?;
            let Some(row) = row else {
                return Ok(Err(ApproveError::NoRegistration));
            };
            let (salt, code_hash, expires_at, tries): (Vec<u8>, Vec<u8>, i64, i64) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            );
            if to_u64(expires_at) <= now || tries >= MAX_RESPONSE_TRIES {
                return Ok(Err(ApproveError::NoRegistration));
            }
            if !same(&salted(&salt, code), &code_hash) {
                // Wrong codes count against the registration, so approvals cannot be guessed.
                s.execute(
                    "UPDATE registrations SET tries = tries + 1 WHERE user_name = $1",
                    &[&user],
                )
                .await?;
                s.commit().await?;
                return Ok(Err(ApproveError::WrongCode));
            }
            s.execute(
                "UPDATE registrations SET approved_at = $2, approved_by = $3, approved_on = $4,
                 response_hash = $5 WHERE user_name = $1",
                &[
                    &user,
                    &to_i64(now),
                    &approver,
                    &host,
                    &&salted(&salt, &response)[..],
                ],
            )
            .await?;
            s.commit().await?;
            Ok(Ok(()))
        })
        .await
        .map(|r| r.map(|()| response))
    }

    /// Checks a response code typed at `user`'s login prompt. `Registered` consumes the
    /// registration; `Failed` voids it.
    pub async fn check_registration(
        &self,
        user: &str,
        response: &str,
        now: u64,
    ) -> Result<RegistrationCheck, PgError> {
        self.run(async |s| {
            s.begin_for(user).await?;
            let row = s
                .query_opt(
                    "SELECT salt, expires_at, tries, response_hash FROM registrations
                     WHERE user_name = $1",
                    &[&user],
                )
                .await?;
            let delete = "DELETE FROM registrations WHERE user_name = $1";
            let result = match row {
                None => RegistrationCheck::Failed,
                Some(r) => {
                    let (salt, expires_at, tries, expected): (Vec<u8>, i64, i64, Option<Vec<u8>>) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                    if to_u64(expires_at) <= now || tries >= MAX_RESPONSE_TRIES {
                        s.execute(delete, &[&user]).await?;
                        RegistrationCheck::Failed
                    } else {
                        match expected {
                            None => RegistrationCheck::NotApproved,
                            Some(expected) if same(&salted(&salt, response), &expected) => {
                                s.execute(delete, &[&user]).await?;
                                RegistrationCheck::Registered
                            }
                            Some(_) => {
                                s.execute(
                                    "UPDATE registrations SET tries = tries + 1
                                     WHERE user_name = $1",
                                    &[&user],
                                )
                                .await?;
                                RegistrationCheck::WrongResponse
                            }
                        }
                    }
                }
            };
            s.commit().await?;
            Ok(result)
        })
        .await
    }
}
