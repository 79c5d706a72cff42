//! Two-way registration at the login prompt, and the enrolment that follows it in the
//! same login: a TOTP secret or a phone pairing, as the backend enrols
//! ([`EnrolInLogin`]). Also `toopherctl registration approve`.

use super::conn::{Conn, no_login};
use super::session::{Login, MAX_WAIT_SLICE, Phase};
use crate::backend::EnrolInLogin;
use crate::config::EnrollMode;
use crate::logging::field;
use crate::now;
use crate::policy::Decision;
use crate::policy::rules::Outcome as PolicyOutcome;
use crate::store::{ApproveError, Attempt, RegistrationCheck, StoreError, Verdict};
use crate::totp;
use std::sync::Arc;
use std::time::{Duration, Instant};
use toopher_ipc::{
    AdminResponse, DenyReason, ErrorKind, LoginContext, LoginResponse, Method, RegistrationNext,
    RegistrationStatus, Secret,
};
use zeroize::Zeroizing;

/// How long a phone has to confirm a pairing made during a login.
const PAIRING_TIMEOUT: Duration = Duration::from_secs(120);

/// An account without a factor: two-way registration when configured and the policy
/// requires a factor, else the policy's decision.
pub(super) async fn no_factor(
    conn: &mut Conn,
    ctx: LoginContext,
    decision: &Decision,
) -> LoginResponse {
    // A login the policy lets through without a factor is not asked to register.
    if conn.d.config.enroll != EnrollMode::TwoWay || decision.outcome == PolicyOutcome::Allowed {
        return conn.not_enrolled(&ctx, decision);
    }
    match start_registration(conn, &ctx).await {
        Ok((code, secs)) => {
            conn.log_auth(&ctx, "registration", "status=started");
            conn.session.open(Login::new(ctx, Phase::Registering));
            LoginResponse::Register {
                registration_code: code.to_string(),
                expires_in_secs: secs,
            }
        }
        Err(r) => *r,
    }
}

async fn start_registration(
    conn: &Conn,
    ctx: &LoginContext,
) -> Result<(Zeroizing<String>, u32), Box<LoginResponse>> {
    let ttl = conn.d.config.registration_ttl.0;
    let user = ctx.user.clone();
    match conn
        .d
        .store
        .call(move |s| s.start_registration(&user, ttl, now()))
        .await
    {
        Ok(Some((code, _))) => Ok((code, u32::try_from(ttl).unwrap_or(u32::MAX))),
        Ok(None) => {
            conn.log_auth(
                ctx,
                "refused",
                "reason=rate_limited detail=too_many_registrations",
            );
            Err(Box::new(LoginResponse::denied(DenyReason::RateLimited)))
        }
        Err(e) => Err(Box::new(conn.internal("registration", &e))),
    }
}

fn registration(
    status: RegistrationStatus,
    message: &str,
    next: RegistrationNext,
) -> LoginResponse {
    LoginResponse::Registration {
        status,
        message: message.into(),
        next,
    }
}

fn set_phase(conn: &mut Conn, phase: Phase) {
    if let Some(l) = conn.session.login_mut() {
        l.phase = phase;
    }
}

/// Records a result of this login that the store did not check itself (a wrong response
/// code, a pairing made); a failure is remembered so no notice repeats it.
async fn note_result(conn: &mut Conn, success: bool) {
    let Some(who) = conn.attempting() else {
        return;
    };
    let limits = conn.d.limits();
    let recorded = conn
        .d
        .store
        .call(move |s| {
            let attempt = Attempt {
                rhost: who.ctx.rhost.as_deref(),
                own: &who.own_failures,
                notify: who.ctx.notify,
            };
            s.note_result(&who.ctx.user, success, now(), limits, &attempt)
        })
        .await;
    match recorded {
        Ok(r) => {
            if let Some(id) = r.failure {
                conn.remember_failure(id);
            }
        }
        Err(e) => conn.d.store.failed("recording a second-factor result", &e),
    }
}

/// The response code typed at the login prompt.
pub(super) async fn registration_response(conn: &mut Conn, code: Secret) -> LoginResponse {
    if !conn.session.in_phase(&Phase::Registering) {
        return LoginResponse::error(
            ErrorKind::BadRequest,
            "no registration in progress on this connection",
        );
    }
    let Some(ctx) = conn.session.login().map(|l| l.ctx.clone()) else {
        return no_login();
    };
    if conn.session.count_attempt().is_err() {
        return LoginResponse::denied(DenyReason::RateLimited);
    }
    let user = ctx.user.clone();
    let check = match conn
        .d
        .store
        .call(move |s| s.check_registration(&user, code.expose(), now()))
        .await
    {
        Ok(c) => c,
        Err(e) => return conn.internal("registration", &e),
    };
    match check {
        RegistrationCheck::Registered => {
            conn.log_auth(&ctx, "registration", "status=2000");
            enrol_in_login(conn, &ctx).await
        }
        RegistrationCheck::WrongResponse => {
            conn.log_auth(&ctx, "registration", "status=4001 reason=wrong_response");
            note_result(conn, false).await;
            registration(
                RegistrationStatus::WrongResponse,
                "That response code is not right (4001). Check it and type it again.",
                RegistrationNext::Retry,
            )
        }
        RegistrationCheck::NotApproved => {
            conn.log_auth(&ctx, "registration", "status=4002 reason=not_approved");
            registration(
                RegistrationStatus::NotApproved,
                "The registration code has not been approved yet (4002). Have it approved where you are known, then type the response code.",
                RegistrationNext::Retry,
            )
        }
        RegistrationCheck::Failed => {
            conn.log_auth(
                &ctx,
                "registration",
                "status=5000 reason=expired_or_too_many_tries",
            );
            match start_registration(conn, &ctx).await {
                Ok((code, secs)) => registration(
                    RegistrationStatus::Failed,
                    "The registration could not be completed (5000): it expired or had too many tries. Starting over with a new code.",
                    RegistrationNext::StartOver {
                        registration_code: code.to_string(),
                        expires_in_secs: secs,
                    },
                ),
                Err(r) => {
                    conn.session.end();
                    *r
                }
            }
        }
    }
}

/// Registered: the enrolment starts in the same login.
async fn enrol_in_login(conn: &mut Conn, ctx: &LoginContext) -> LoginResponse {
    let d = Arc::clone(&conn.d);
    let e = match d.backend.enrol_in_login(&ctx.user).await {
        Ok(EnrolInLogin::PairPhrase) => {
            set_phase(conn, Phase::AwaitingPhrase);
            return registration(
                RegistrationStatus::Registered,
                "Registered (2000). Now pair your phone: open the Toopher app and add this account.",
                RegistrationNext::PairPhrase,
            );
        }
        Ok(EnrolInLogin::Totp(e)) => e,
        Err(e) => {
            conn.session.end();
            return conn.internal("enroll in login", &e);
        }
    };
    let uri = totp::otpauth_uri(&d.issuer, &ctx.user, &e.secret);
    let qr_text = match crate::qr::blocks(&uri) {
        Ok(q) => q,
        Err(err) => {
            conn.session.end();
            d.log.err(&err.to_string());
            return LoginResponse::error(ErrorKind::Internal, "cannot draw the QR code");
        }
    };
    conn.log_admin("enroll", &ctx.user, "pending via=two-way-registration");
    set_phase(conn, Phase::EnrollingTotp);
    registration(
        RegistrationStatus::Registered,
        "Registered (2000). Scan the QR code with your authenticator app (or enter the key), keep the recovery codes, then type the code the app shows.",
        RegistrationNext::EnrollTotp {
            qr_text: Secret::new(qr_text),
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
pub(super) async fn activate_in_login(conn: &mut Conn, code: Secret) -> LoginResponse {
    let Some(ctx) = conn.session.login().map(|l| l.ctx.clone()) else {
        return no_login();
    };
    let limits = conn.d.limits();
    let user = ctx.user.clone();
    let activated = conn
        .d
        .store
        .call(move |s| s.activate(&user, code.expose().trim(), now(), limits))
        .await;
    match activated {
        Ok(Verdict::Accepted(method)) => {
            conn.log_admin("activate", &ctx.user, "active via=two-way-registration");
            conn.log_auth(&ctx, "granted", "method=otp detail=enrolled_in_login");
            conn.session.end();
            LoginResponse::granted(method)
        }
        Ok(Verdict::Rejected(_)) => {
            conn.log_auth(&ctx, "denied", "reason=wrong_code detail=enrolment_code");
            LoginResponse::denied(DenyReason::WrongCode)
        }
        Ok(Verdict::RateLimited { until }) => {
            conn.log_auth(
                &ctx,
                "refused",
                &format!("reason=rate_limited until={until}"),
            );
            conn.session.end();
            LoginResponse::denied(DenyReason::RateLimited)
        }
        Err(e @ (StoreError::EnrollmentExpired | StoreError::NoPendingEnrollment)) => {
            conn.log_auth(&ctx, "denied", "reason=enrolment_expired");
            conn.session.end();
            LoginResponse::Denied {
                reason: DenyReason::Other,
                message: Some(e.to_string()),
            }
        }
        Err(e) => conn.internal("activate in login", &e),
    }
}

/// The pairing phrase the app shows, typed at the login prompt after registration.
pub(super) async fn pair_in_login(conn: &mut Conn, phrase: String) -> LoginResponse {
    let d = Arc::clone(&conn.d);
    let (Some(phones), true) = (
        d.backend.phones(),
        conn.session.in_phase(&Phase::AwaitingPhrase),
    ) else {
        return LoginResponse::error(
            ErrorKind::BadRequest,
            "no pairing expected on this connection",
        );
    };
    let Some(ctx) = conn.session.login().map(|l| l.ctx.clone()) else {
        return no_login();
    };
    let phrase = phrase.trim().to_owned();
    if !valid_phrase(&phrase) {
        return LoginResponse::Denied {
            reason: DenyReason::WrongCode,
            message: Some("A pairing phrase is a few words, without digits.".into()),
        };
    }
    match phones.pair(&ctx.user, Some(&phrase), None, false).await {
        Ok((p, _)) if p.confirmed() => paired(conn, &ctx, &p.id).await,
        Ok((p, _)) => {
            set_phase(
                conn,
                Phase::Pairing {
                    id: p.id,
                    deadline: Instant::now() + PAIRING_TIMEOUT,
                },
            );
            LoginResponse::Pending
        }
        Err(e) if e.unreachable => {
            conn.session.end();
            conn.unreachable(&ctx, &e.detail)
        }
        Err(e) => {
            conn.log_auth(
                &ctx,
                "denied",
                &format!("reason=pairing_refused detail={}", field(Some(&e.detail))),
            );
            LoginResponse::Denied {
                reason: DenyReason::WrongCode,
                message: Some("The Toopher service refused that pairing phrase.".into()),
            }
        }
    }
}

async fn paired(conn: &mut Conn, ctx: &LoginContext, pairing_id: &str) -> LoginResponse {
    let (user, id) = (ctx.user.clone(), pairing_id.to_owned());
    if let Err(e) = conn
        .d
        .store
        .call(move |s| s.record_pairing(&user, &id, now()))
        .await
    {
        conn.session.end();
        return conn.internal("record pairing", &e);
    }
    conn.log_admin("pair", &ctx.user, "paired via=two-way-registration");
    conn.log_auth(ctx, "granted", "method=push detail=paired_in_login");
    note_result(conn, true).await;
    conn.session.end();
    LoginResponse::granted(Method::Push)
}

/// Polls the pairing made in this login until the phone confirms it.
pub(super) async fn wait_for_pairing(conn: &mut Conn, timeout_ms: u32) -> LoginResponse {
    let d = Arc::clone(&conn.d);
    let Some(phones) = d.backend.phones() else {
        return LoginResponse::error(ErrorKind::Unsupported, d.backend.unsupported("pairing"));
    };
    let Some(ctx) = conn.session.login().map(|l| l.ctx.clone()) else {
        return no_login();
    };
    let Some(Phase::Pairing { id, deadline }) = conn.session.login().map(|l| l.phase.clone())
    else {
        return LoginResponse::error(ErrorKind::BadRequest, "no pairing is pending");
    };
    let slice_end =
        Instant::now() + Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT_SLICE);
    loop {
        match phones.pairing(&ctx.user, &id).await {
            Ok(p) if !p.of_user => {
                conn.session.end();
                conn.log_auth(
                    &ctx,
                    "denied",
                    "reason=policy detail=pairing_of_another_user",
                );
                return LoginResponse::denied(DenyReason::Policy);
            }
            Ok(p) if p.confirmed() => return paired(conn, &ctx, &p.id).await,
            Ok(_) => {}
            // Unreachable for a moment, or asked to slow down: keep waiting.
            Err(e) if e.unreachable || e.rate_limited => {}
            Err(e) => {
                conn.session.end();
                conn.log_auth(
                    &ctx,
                    "denied",
                    &format!("reason=pairing_failed detail={}", field(Some(&e.detail))),
                );
                return LoginResponse::denied(DenyReason::Policy);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            conn.session.end();
            conn.log_auth(&ctx, "denied", "reason=pairing_not_confirmed");
            return LoginResponse::Denied {
                reason: DenyReason::PushTimeout,
                message: Some("The pairing was not confirmed on the phone in time.".into()),
            };
        }
        let next = (now + phones.poll_interval()).min(deadline);
        if next > slice_end {
            return LoginResponse::Pending;
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

/// toopherctl (admin, or the user in a session already logged in): approve the
/// registration code shown at `user`'s login prompt; answers the response code.
pub(super) async fn registration_approve(
    conn: &mut Conn,
    user: String,
    code: Secret,
) -> AdminResponse {
    if let Some(refused) =
        super::known::no_such_user(conn, "registration_approve", &user, false).await
    {
        return refused;
    }
    let (name, approver) = (user.clone(), conn.peer.describe());
    let result = conn
        .d
        .store
        .call(move |s| s.approve_registration(&name, code.expose(), &approver, now()))
        .await;
    match result {
        Ok(Ok(response)) => {
            conn.log_admin("registration_approve", &user, "approved");
            AdminResponse::RegistrationApproved {
                user,
                response_code: Secret::new(response.as_str()),
            }
        }
        Ok(Err(ApproveError::NoRegistration)) => {
            conn.log_admin(
                "registration_approve",
                &user,
                "refused reason=no_registration",
            );
            AdminResponse::error(
                ErrorKind::NotFound,
                format!(
                    "{user} has no registration in progress (it may have expired); log in again to get a new code"
                ),
            )
        }
        Ok(Err(ApproveError::WrongCode)) => {
            conn.log_admin("registration_approve", &user, "refused reason=wrong_code");
            AdminResponse::error(
                ErrorKind::NotFound,
                format!("that is not the registration code shown at {user}'s login prompt"),
            )
        }
        Err(e) => conn.internal("registration approve", &e),
    }
}

/// A Toopher pairing phrase: words (letters, spaces, dashes), no digits (digits would
/// make it a phone number).
pub(super) fn valid_phrase(p: &str) -> bool {
    !p.is_empty() && p.len() <= 100 && p.chars().all(|c| c.is_alphabetic() || c == ' ' || c == '-')
}
