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

    async fn begin_login(&self, who: &Attempting) -> Begin {
        let limits = self.limits;
        let user = who.ctx.user.clone();
        let state = self
            .store
            .call(move |s| s.login_state(&user, now(), limits))
            .await;
        match state {
            Ok(LoginState::Active) => Begin::Challenge {
                methods: vec![Method::Otp, Method::RecoveryCode],
                note: None,
            },
            // A recovery code still lifts the lock; nothing else is looked at.
            Ok(LoginState::RateLimited { until }) => Begin::Challenge {
                methods: vec![Method::RecoveryCode],
                note: Some(format!(
                    "reason=rate_limited until={until} methods=recovery_code"
                )),
            },
            Ok(LoginState::Suspended) => Begin::Settled(Outcome::Suspended),
            Ok(LoginState::NotEnrolled) => Begin::Settled(Outcome::NotEnrolled),
            Err(e) => {
                self.store.log_error("begin", &e);
                Begin::Settled(store_failed(&e))
            }
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
                store_failed(&e)
            }
        }
    }
}

/// A store that could not be reached (the fleet's database down) is the service not
/// reached, which `failmode` decides; any other store failure denies (a store with every
/// connection in use answers "busy", so a flood of logins never reaches `failmode`).
fn store_failed(e: &StoreError) -> Outcome {
    if e.is_unreachable() {
        Outcome::Unreachable(format!("the store could not be reached: {e}"))
    } else if e.is_busy() {
        Outcome::Busy
    } else {
        Outcome::Internal
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn begin<'a>(&'a self, who: &'a Attempting) -> BoxFuture<'a, Begin> {
        Box::pin(self.begin_login(who))
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
