//! The local backend: RFC 6238 TOTP and recovery codes, kept in the store, enrolled with
//! `toopherctl enroll` or at a login after two-way registration. No push.

use super::{Attempting, Backend, Begin, BoxFuture, CodesError, EnrolInLogin, Outcome};
use crate::now;
use crate::store::{Attempt, Limits, LoginState, Shared, StoreError, Verdict};
use toopher_ipc::Method;
use zeroize::Zeroizing;

pub struct LocalBackend {
    store: Shared,
    limits: Limits,
    /// How long an enrolment made at a login waits for its first code.
    enrollment_ttl: u64,
}

impl LocalBackend {
    pub fn new(store: Shared, limits: Limits, enrollment_ttl: u64) -> LocalBackend {
        LocalBackend {
            store,
            limits,
            enrollment_ttl,
        }
    }

    fn begin_login(&self, state: LoginState) -> Begin {
        match state {
            LoginState::Active => Begin::Challenge {
                methods: vec![Method::Otp, Method::RecoveryCode],
                note: None,
            },
            // A recovery code still lifts the lock; nothing else is looked at.
            LoginState::RateLimited { until } => Begin::Challenge {
                methods: vec![Method::RecoveryCode],
                note: Some(format!(
                    "reason=rate_limited until={until} methods=recovery_code"
                )),
            },
            LoginState::Suspended => Begin::Settled(Outcome::Suspended),
            LoginState::NotEnrolled => Begin::Settled(Outcome::NotEnrolled),
        }
    }

    async fn check(&self, who: &Attempting, code: &str) -> Outcome {
        let limits = self.limits;
        let user = who.ctx.user.clone();
        let (rhost, own, notify) = (
            who.ctx.rhost.clone(),
            who.own_failures.clone(),
            who.ctx.notify,
        );
        let code = Zeroizing::new(code.to_owned());
        let checked = self
            .store
            .call(move |s| {
                let attempt = Attempt {
                    rhost: rhost.as_deref(),
                    own: &own,
                    notify,
                };
                s.check(&user, &code, now(), limits, &attempt)
            })
            .await;
        match checked {
            Ok(Some(c)) => match c.verdict {
                Verdict::Accepted(method) => Outcome::Granted {
                    method,
                    automated: None,
                    notice: c.recorded.notice,
                },
                Verdict::Rejected(why) => Outcome::Denied {
                    reason: toopher_ipc::DenyReason::WrongCode,
                    message: None,
                    log: format!("reason={}", why.as_str()),
                    counted: c.recorded.failure,
                },
                Verdict::RateLimited { until } => Outcome::RateLimited { until },
            },
            // Removed while the login was in progress.
            Ok(None) => Outcome::Denied {
                reason: toopher_ipc::DenyReason::NotEnrolled,
                message: None,
                log: "reason=not_enrolled".into(),
                counted: None,
            },
            Err(e) => {
                self.store.log_error("verify", &e);
                verify_failed(&e)
            }
        }
    }
}

/// A store failure while checking a code denies, whatever it was: the store answered when
/// the login began, and a failure now is something anyone who can reach the database may
/// cause (hold the user's lock, break a row). `failmode` never lets a code through unchecked.
fn verify_failed(e: &StoreError) -> Outcome {
    if e.is_busy() {
        Outcome::Busy
    } else {
        Outcome::Internal
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn begin<'a>(&'a self, _who: &'a Attempting, state: LoginState) -> BoxFuture<'a, Begin> {
        let begun = self.begin_login(state);
        Box::pin(async move { begun })
    }

    fn verify<'a>(
        &'a self,
        who: &'a Attempting,
        code: &'a str,
        _pending: Option<&'a str>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.check(who, code))
    }

    fn unsupported(&self, what: &str) -> String {
        format!("{what} needs backend = \"toopher\"; this toopherd uses the local backend")
    }

    fn enrol_in_login<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<EnrolInLogin, StoreError>> {
        let (ttl, user) = (self.enrollment_ttl, user.to_owned());
        Box::pin(async move {
            self.store
                .call(move |s| s.enroll(&user, ttl, now(), false))
                .await
                .map(EnrolInLogin::Totp)
        })
    }

    fn regenerate_recovery_codes<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Zeroizing<String>>, CodesError>> {
        let user = user.to_owned();
        Box::pin(async move {
            self.store
                .call(move |s| s.regenerate_recovery_codes(&user))
                .await
                .map_err(CodesError::Store)
        })
    }
}
