//! Two-way registration at the login prompt, and the enrolment that follows it in the
//! same login: a TOTP secret (local backend) or a phone pairing (toopher backend).

use super::*;
use crate::config::EnrollMode;
use crate::store::{ApproveError, RegistrationCheck};
use toopher_ipc::{RegistrationNext, RegistrationStatus};

/// How long a phone has to confirm a pairing made during a login.
const PAIRING_TIMEOUT: Duration = Duration::from_secs(120);

impl Conn {
    /// An account without a factor: two-way registration when configured and required,
    /// else `availability` decides.
    pub(super) async fn no_factor(&mut self, ctx: LoginContext) -> Response {
        let cfg = &self.d.config;
        if cfg.enroll != EnrollMode::TwoWay || cfg.availability == Availability::Available {
            return self.not_enrolled(&ctx);
        }
        match self.start_registration(&ctx).await {
            Ok((code, secs)) => {
                self.log_auth(&ctx, "registration", "status=started");
                let mut login = Login::new(ctx);
                login.phase = Phase::Registering;
                self.login = Some(login);
                Response::Register {
                    registration_code: code.to_string(),
                    expires_in_secs: secs,
                }
            }
            Err(r) => *r,
        }
    }

    async fn start_registration(
        &self,
        ctx: &LoginContext,
    ) -> Result<(Zeroizing<String>, u32), Box<Response>> {
        let ttl = self.d.config.registration_ttl.0;
        let user = ctx.user.clone();
        match self
            .d
            .db(move |s| s.start_registration(&user, ttl, now()))
            .await
        {
            Ok(Some((code, _))) => Ok((code, u32::try_from(ttl).unwrap_or(u32::MAX))),
            Ok(None) => {
                self.log_auth(
                    ctx,
                    "refused",
                    "reason=rate_limited detail=too_many_registrations",
                );
                Err(Box::new(Response::denied(DenyReason::RateLimited)))
            }
            Err(e) => Err(Box::new(internal(&self.d, "registration", &e))),
        }
    }

    fn registration(status: RegistrationStatus, message: &str, next: RegistrationNext) -> Response {
        Response::Registration {
            status,
            message: message.into(),
            next,
        }
    }

    fn end_login(&mut self) {
        if let Some(l) = self.login.as_mut() {
            l.done = true;
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        if let Some(l) = self.login.as_mut() {
            l.phase = phase;
        }
    }

    /// The response code typed at the login prompt.
    pub(super) async fn registration_response(&mut self, code: Secret) -> Response {
        if !self.in_phase(&Phase::Registering) {
            return Response::error(
                ErrorKind::BadRequest,
                "no registration in progress on this connection",
            );
        }
        let ctx = match self.open_login() {
            Ok(c) => c,
            Err(r) => return *r,
        };
        if let Some(l) = self.login.as_mut() {
            l.attempts += 1;
            if l.attempts > MAX_ATTEMPTS_PER_LOGIN {
                l.done = true;
                return Response::denied(DenyReason::RateLimited);
            }
        }
        let user = ctx.user.clone();
        let check = match self
            .d
            .db(move |s| s.check_registration(&user, code.expose(), now()))
            .await
        {
            Ok(c) => c,
            Err(e) => return internal(&self.d, "registration", &e),
        };
        match check {
            RegistrationCheck::Registered => {
                self.log_auth(&ctx, "registration", "status=2000");
                self.enroll_in_login(&ctx).await
            }
            RegistrationCheck::WrongResponse => {
                self.log_auth(&ctx, "registration", "status=4001 reason=wrong_response");
                let _ = self.note_result(&ctx.user, false).await;
                Self::registration(
                    RegistrationStatus::WrongResponse,
                    "That response code is not right (4001). Check it and type it again.",
                    RegistrationNext::Retry,
                )
            }
            RegistrationCheck::NotApproved => {
                self.log_auth(&ctx, "registration", "status=4002 reason=not_approved");
                Self::registration(
                    RegistrationStatus::NotApproved,
                    "The registration code has not been approved yet (4002). Have it approved where you are known, then type the response code.",
                    RegistrationNext::Retry,
                )
            }
            RegistrationCheck::Failed => {
                self.log_auth(
                    &ctx,
                    "registration",
                    "status=5000 reason=expired_or_too_many_tries",
                );
                match self.start_registration(&ctx).await {
                    Ok((code, secs)) => Self::registration(
                        RegistrationStatus::Failed,
                        "The registration could not be completed (5000): it expired or had too many tries. Starting over with a new code.",
                        RegistrationNext::StartOver {
                            registration_code: code.to_string(),
                            expires_in_secs: secs,
                        },
                    ),
                    Err(r) => {
                        self.end_login();
                        *r
                    }
                }
            }
        }
    }

    /// Registered: the enrolment starts in the same login.
    async fn enroll_in_login(&mut self, ctx: &LoginContext) -> Response {
        if self.d.toopher.is_some() {
            self.set_phase(Phase::AwaitingPhrase);
            return Self::registration(
                RegistrationStatus::Registered,
                "Registered (2000). Now pair your phone: open the Toopher app and add this account.",
                RegistrationNext::PairPhrase,
            );
        }
        let ttl = self.d.config.enrollment_ttl.0;
        let user = ctx.user.clone();
        let e = match self.d.db(move |s| s.enroll(&user, ttl, now(), false)).await {
            Ok(e) => e,
            Err(e) => {
                self.end_login();
                return internal(&self.d, "enroll in login", &e);
            }
        };
        let uri = totp::otpauth_uri(&self.d.issuer, &ctx.user, &e.secret);
        let qr_text = match crate::qr::blocks(&uri) {
            Ok(q) => q,
            Err(err) => {
                self.end_login();
                self.d.log.err(&err.to_string());
                return Response::error(ErrorKind::Internal, "cannot draw the QR code");
            }
        };
        self.log_admin("enroll", &ctx.user, "pending via=two-way-registration");
        self.set_phase(Phase::EnrollingTotp);
        Self::registration(
            RegistrationStatus::Registered,
            "Registered (2000). Scan the QR code with your authenticator app (or enter the key), keep the recovery codes, then type the code the app shows.",
            RegistrationNext::EnrollTotp {
                qr_text,
                secret: Secret::new(totp::base32(&e.secret).as_str()),
                otpauth_uri: Secret::new(uri.as_str()),
                recovery_codes: e
                    .recovery_codes
                    .iter()
                    .map(|c| Secret::new(c.as_str()))
                    .collect(),
            },
        )
    }

    /// The first code from the new enrolment: it activates it and grants this login.
    pub(super) async fn activate_in_login(&mut self, code: Secret) -> Response {
        let ctx = match self.open_login() {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let limits = self.d.limits();
        let user = ctx.user.clone();
        match self
            .d
            .db(move |s| s.activate(&user, code.expose().trim(), now(), limits))
            .await
        {
            Ok(Verdict::Accepted(method)) => {
                self.log_admin("activate", &ctx.user, "active via=two-way-registration");
                self.log_auth(&ctx, "granted", "method=otp detail=enrolled_in_login");
                self.end_login();
                Response::granted(method)
            }
            Ok(Verdict::Rejected(_)) => {
                self.log_auth(&ctx, "denied", "reason=wrong_code detail=enrolment_code");
                Response::denied(DenyReason::WrongCode)
            }
            Ok(Verdict::RateLimited { until }) => {
                self.log_auth(
                    &ctx,
                    "refused",
                    &format!("reason=rate_limited until={until}"),
                );
                self.end_login();
                Response::denied(DenyReason::RateLimited)
            }
            Err(e @ (StoreError::EnrollmentExpired | StoreError::NoPendingEnrollment)) => {
                self.log_auth(&ctx, "denied", "reason=enrolment_expired");
                self.end_login();
                Response::Denied {
                    reason: DenyReason::Other,
                    message: Some(e.to_string()),
                }
            }
            Err(e) => internal(&self.d, "activate in login", &e),
        }
    }

    /// The pairing phrase the app shows, typed at the login prompt after registration.
    pub(super) async fn pair_in_login(&mut self, phrase: String) -> Response {
        let d = Arc::clone(&self.d);
        let (Some(tb), true) = (d.toopher.as_ref(), self.in_phase(&Phase::AwaitingPhrase)) else {
            return Response::error(
                ErrorKind::BadRequest,
                "no pairing expected on this connection",
            );
        };
        let ctx = match self.open_login() {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let phrase = phrase.trim().to_owned();
        if !valid_phrase(&phrase) {
            return Response::Denied {
                reason: DenyReason::WrongCode,
                message: Some("A pairing phrase is a few words, without digits.".into()),
            };
        }
        match tb
            .api()
            .pair(&tb.name_of(&ctx.user), Some(&phrase), &[])
            .await
        {
            Ok(p) if p.enabled && !p.pending => self.paired(&ctx, &p.id).await,
            Ok(p) => {
                self.set_phase(Phase::Pairing {
                    id: p.id,
                    deadline: Instant::now() + PAIRING_TIMEOUT,
                });
                Response::Pending
            }
            Err(e) if e.is_unreachable() => {
                self.end_login();
                self.unreachable(&ctx, &e.to_string())
            }
            Err(e) => {
                self.log_auth(
                    &ctx,
                    "denied",
                    &format!(
                        "reason=pairing_refused detail={}",
                        field(Some(&e.to_string()))
                    ),
                );
                Response::Denied {
                    reason: DenyReason::WrongCode,
                    message: Some("The Toopher service refused that pairing phrase.".into()),
                }
            }
        }
    }

    async fn paired(&mut self, ctx: &LoginContext, pairing_id: &str) -> Response {
        let (user, id) = (ctx.user.clone(), pairing_id.to_owned());
        if let Err(e) = self
            .d
            .db(move |s| s.record_pairing(&user, &id, now()))
            .await
        {
            self.end_login();
            return internal(&self.d, "record pairing", &e);
        }
        self.log_admin("pair", &ctx.user, "paired via=two-way-registration");
        self.log_auth(ctx, "granted", "method=push detail=paired_in_login");
        let _ = self.note_result(&ctx.user, true).await;
        self.end_login();
        Response::granted(Method::Push)
    }

    /// Polls the pairing made in this login until the phone confirms it.
    pub(super) async fn wait_for_pairing(&mut self, timeout_ms: u32) -> Response {
        let tb = match self.toopher("pairing") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        let ctx = match self.open_login() {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let Some(Phase::Pairing { id, deadline }) = self.login.as_ref().map(|l| l.phase.clone())
        else {
            return Response::error(ErrorKind::BadRequest, "no pairing is pending");
        };
        let slice_end =
            Instant::now() + Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT_SLICE);
        let name = tb.name_of(&ctx.user);
        loop {
            match tb.api().get_pairing_by_id(&id).await {
                Ok(p) if p.user.name != name => {
                    self.end_login();
                    self.log_auth(
                        &ctx,
                        "denied",
                        "reason=policy detail=pairing_of_another_user",
                    );
                    return Response::denied(DenyReason::Policy);
                }
                Ok(p) if p.enabled && !p.pending => return self.paired(&ctx, &p.id).await,
                Ok(_) => {}
                // Unreachable for a moment, or asked to slow down: keep waiting.
                Err(e)
                    if e.is_unreachable() || e.class() == toopher_api::ErrorClass::RateLimited => {}
                Err(e) => {
                    self.end_login();
                    self.log_auth(
                        &ctx,
                        "denied",
                        &format!(
                            "reason=pairing_failed detail={}",
                            field(Some(&e.to_string()))
                        ),
                    );
                    return Response::denied(DenyReason::Policy);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                self.end_login();
                self.log_auth(&ctx, "denied", "reason=pairing_not_confirmed");
                return Response::Denied {
                    reason: DenyReason::PushTimeout,
                    message: Some("The pairing was not confirmed on the phone in time.".into()),
                };
            }
            let next = (now + tb.poll_interval()).min(deadline);
            if next > slice_end {
                return Response::Pending;
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }

    /// toopherctl (admin, or the user in a session already logged in): approve the
    /// registration code shown at `user`'s login prompt; answers the response code.
    pub(super) async fn registration_approve(&mut self, user: String, code: Secret) -> Response {
        if let Some(refusal) = self.authorize("registration approve", &user, false) {
            return refusal;
        }
        let (name, approver) = (user.clone(), self.peer.describe());
        let result = self
            .d
            .db(move |s| s.approve_registration(&name, code.expose(), &approver, now()))
            .await;
        match result {
            Ok(Ok(response)) => {
                self.log_admin("registration_approve", &user, "approved");
                Response::RegistrationApproved {
                    user,
                    response_code: Secret::new(response.as_str()),
                }
            }
            Ok(Err(ApproveError::NoRegistration)) => {
                self.log_admin(
                    "registration_approve",
                    &user,
                    "refused reason=no_registration",
                );
                Response::error(
                    ErrorKind::NotFound,
                    format!(
                        "{user} has no registration in progress (it may have expired); log in again to get a new code"
                    ),
                )
            }
            Ok(Err(ApproveError::WrongCode)) => {
                self.log_admin("registration_approve", &user, "refused reason=wrong_code");
                Response::error(
                    ErrorKind::NotFound,
                    format!("that is not the registration code shown at {user}'s login prompt"),
                )
            }
            Err(e) => internal(&self.d, "registration approve", &e),
        }
    }
}

/// A Toopher pairing phrase: words (letters, spaces, dashes), no digits (digits would
/// make it a phone number).
pub(super) fn valid_phrase(p: &str) -> bool {
    !p.is_empty() && p.len() <= 100 && p.chars().all(|c| c.is_alphabetic() || c == ' ' || c == '-')
}
