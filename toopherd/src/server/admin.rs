//! toopherctl's requests: enrolment, status, removal, pairing, listing, suspension,
//! reset, reset links, terminals, recovery codes and unlocking. Dispatch has authorised
//! each one (target user, admin rights) before it gets here.

use super::conn::Conn;
use super::known;
use super::registration;
use crate::backend::{CodesError, PhonePairing};
use crate::logging::field;
use crate::now;
use crate::policy::{Enrolment, LoginFacts};
use crate::store::{LoginState, Rejection, StoreError, Verdict};
use crate::totp;
use std::sync::Arc;
use toopher_ipc::{
    AdminRequest, AdminResponse, DenyReason, Enrollment, ErrorKind, PairBy, PairingInfo, Secret,
    TerminalInfo,
};

/// Answers an administrative request (authorised by dispatch).
pub async fn handle(conn: &mut Conn, req: AdminRequest) -> AdminResponse {
    match req {
        AdminRequest::RegistrationApprove { user, code } => {
            registration::registration_approve(conn, user, code).await
        }
        AdminRequest::Enroll { user, force } => enroll(conn, user, force).await,
        AdminRequest::Activate { user, code } => activate(conn, user, code).await,
        AdminRequest::Status { user } => status(conn, user).await,
        AdminRequest::Remove { user } => remove(conn, user).await,
        AdminRequest::Pair { user, by } => pair(conn, user, by).await,
        AdminRequest::PairStatus { user, pairing_id } => pair_status(conn, user, pairing_id).await,
        AdminRequest::List => list(conn).await,
        AdminRequest::ResetLink { user, email } => reset_link(conn, user, email).await,
        AdminRequest::SetEnabled { user, enabled } => set_enabled(conn, user, enabled).await,
        AdminRequest::Reset { user } => reset(conn, user).await,
        AdminRequest::TerminalCreate {
            user,
            name,
            requester_id,
        } => terminal_create(conn, user, name, requester_id).await,
        AdminRequest::TerminalShow { user, id } => terminal_show(conn, user, id).await,
        AdminRequest::RegenerateRecoveryCodes { user } => {
            regenerate_recovery_codes(conn, user).await
        }
        AdminRequest::Unlock { user } => unlock(conn, user).await,
        AdminRequest::PolicyExplain {
            user,
            service,
            rhost,
            session,
        } => policy_explain(conn, user, service, rhost, session).await,
        AdminRequest::GraceClear { user } => grace_clear(conn, user),
    }
}

/// Ends every grace of `user`: a grace never outlives disable, reset, remove, a replaced
/// enrolment, new recovery codes or a reset link.
fn end_grace(conn: &Conn, user: &str) -> usize {
    conn.d.policy.clear(user)
}

fn grace_clear(conn: &mut Conn, user: String) -> AdminResponse {
    let cleared = end_grace(conn, &user);
    conn.log_admin("grace_clear", &user, &format!("cleared={cleared}"));
    AdminResponse::GraceCleared {
        user,
        cleared: u32::try_from(cleared).unwrap_or(u32::MAX),
    }
}

/// Which rule would decide a login of `user` now, by the code a login runs, without
/// performing one (nothing is recorded, no backend is asked).
async fn policy_explain(
    conn: &mut Conn,
    user: String,
    service: String,
    rhost: Option<String>,
    session: Option<u32>,
) -> AdminResponse {
    let bad = |s: &str| s.is_empty() || s.len() > 256 || s.chars().any(char::is_control);
    if bad(&service) || service.len() > 64 || rhost.as_deref().is_some_and(bad) {
        return AdminResponse::error(ErrorKind::BadRequest, "invalid service or rhost");
    }
    let limits = conn.d.limits();
    let local = conn.d.config.backend == crate::config::Backend::Local;
    let name = user.clone();
    let state = conn
        .d
        .store
        .call(move |s| {
            let suspended = s.is_suspended(&name)?;
            // Only the local backend knows enrolment without asking a service.
            let enrolment = if local {
                Some(match s.login_state(&name, now(), limits)? {
                    LoginState::NotEnrolled => Enrolment::NotEnrolled,
                    _ => Enrolment::Enrolled,
                })
            } else {
                None
            };
            Ok((suspended, enrolment))
        })
        .await;
    let (suspended, enrolment) = match state {
        Ok(s) => s,
        Err(e) => return conn.internal("policy explain", &e),
    };
    let d = Arc::clone(&conn.d);
    let name = user.clone();
    let explained = tokio::task::spawn_blocking(move || {
        d.policy.explain(
            &LoginFacts {
                user: &name,
                service: &service,
                rhost: rhost.as_deref(),
                session,
                suspended,
                now: now(),
            },
            enrolment,
        )
    })
    .await;
    match explained {
        Ok(e) => AdminResponse::Explanation {
            user,
            decision: e.decision,
            steps: e.steps,
        },
        Err(_) => super::conn::internal_error(),
    }
}

async fn enroll(conn: &mut Conn, user: String, force: bool) -> AdminResponse {
    if let Some(refused) = known::no_such_user(conn, "enroll", &user, false).await {
        return refused;
    }
    let ttl = conn.d.config.enrollment_ttl.0;
    let name = user.clone();
    match conn
        .d
        .store
        .call(move |s| s.enroll(&name, ttl, now(), force))
        .await
    {
        Ok(e) => {
            // A replaced enrolment (the "lost phone" path) ends what the old one granted.
            if force {
                end_grace(conn, &user);
            }
            conn.log_admin(
                "enroll",
                &user,
                if force { "replaced_pending" } else { "pending" },
            );
            AdminResponse::Enrollment(Enrollment {
                secret: Secret::new(totp::base32(&e.secret).as_str()),
                otpauth_uri: Secret::new(
                    totp::otpauth_uri(&conn.d.issuer, &user, &e.secret).as_str(),
                ),
                recovery_codes: e
                    .recovery_codes
                    .iter()
                    .map(|c| Secret::new(c.as_str()))
                    .collect(),
                expires_at: e.expires_at,
                user,
            })
        }
        Err(StoreError::AlreadyActive) => AdminResponse::error(
            ErrorKind::Conflict,
            format!(
                "{user} already has an active enrolment; root or the admin group can replace it with --force"
            ),
        ),
        Err(e) => conn.internal("enroll", &e),
    }
}

async fn activate(conn: &mut Conn, user: String, code: Secret) -> AdminResponse {
    if let Some(refused) = known::no_such_user(conn, "activate", &user, false).await {
        return refused;
    }
    let limits = conn.d.limits();
    let name = user.clone();
    match conn
        .d
        .store
        .call(move |s| s.activate(&name, code.expose(), now(), limits))
        .await
    {
        Ok(Verdict::Accepted(_)) => {
            conn.log_admin("activate", &user, "active");
            AdminResponse::Activated { user }
        }
        Ok(Verdict::Rejected(_)) => {
            conn.log_admin(
                "activate",
                &user,
                &format!("denied reason={}", Rejection::Wrong.as_str()),
            );
            AdminResponse::denied(DenyReason::WrongCode)
        }
        Ok(Verdict::RateLimited { until }) => {
            conn.log_admin(
                "activate",
                &user,
                &format!("refused reason=rate_limited until={until}"),
            );
            AdminResponse::denied(DenyReason::RateLimited)
        }
        Err(StoreError::NoPendingEnrollment) => AdminResponse::error(
            ErrorKind::NotFound,
            format!("{user} has no pending enrolment; run `toopherctl enroll {user}` first"),
        ),
        Err(StoreError::EnrollmentExpired) => AdminResponse::error(
            ErrorKind::Conflict,
            format!("the enrolment of {user} expired; run `toopherctl enroll {user}` again"),
        ),
        Err(e) => conn.internal("activate", &e),
    }
}

async fn status(conn: &mut Conn, user: String) -> AdminResponse {
    let limits = conn.d.limits();
    let backend = conn.d.backend.name();
    match conn
        .d
        .store
        .call(move |s| s.status(&user, backend, now(), limits))
        .await
    {
        Ok(st) => AdminResponse::Status(st),
        Err(e) => conn.internal("status", &e),
    }
}

async fn remove(conn: &mut Conn, user: String) -> AdminResponse {
    end_grace(conn, &user);
    let name = user.clone();
    match conn.d.store.call(move |s| s.remove(&name)).await {
        Ok(existed) => {
            conn.log_admin("remove", &user, if existed { "removed" } else { "absent" });
            AdminResponse::Removed { user, existed }
        }
        Err(e) => conn.internal("remove", &e),
    }
}

async fn pair(conn: &mut Conn, user: String, by: PairBy) -> AdminResponse {
    let d = Arc::clone(&conn.d);
    let Some(phones) = d.backend.phones() else {
        return AdminResponse::error(ErrorKind::Unsupported, d.backend.unsupported("pair"));
    };
    if let Some(refused) = known::no_such_user(conn, "pair", &user, false).await {
        return refused;
    }
    // Pairing a new phone over an existing pairing replaces the second factor: like
    // `enroll --force`, only an administrator may (someone with only the user's session
    // or password must not be able to move the account to their own phone).
    if !conn.peer.is_admin() {
        let name = user.clone();
        match d.store.call(move |s| s.pairing(&name)).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return conn
                    .refuse("pair over an existing pairing", Some(&user), true)
                    .into();
            }
            Err(e) => return conn.internal("pairing", &e),
        }
    }
    let (arg, country) = match &by {
        PairBy::Phrase { phrase } if registration::valid_phrase(phrase.trim()) => {
            (Some(phrase.trim().to_owned()), None)
        }
        PairBy::Phrase { .. } => {
            return AdminResponse::error(
                ErrorKind::BadRequest,
                "a pairing phrase is a few words, without digits",
            );
        }
        PairBy::Sms { phone, country } => {
            let ok = phone.len() <= 20
                && phone.chars().any(|c| c.is_ascii_digit())
                && phone
                    .chars()
                    .all(|c| c.is_ascii_digit() || "+-() ".contains(c));
            if !ok {
                return AdminResponse::error(ErrorKind::BadRequest, "not a phone number");
            }
            (Some(phone.clone()), country.clone())
        }
        PairBy::Qr => (None, None),
    };
    let qr = matches!(by, PairBy::Qr);
    match phones
        .pair(&user, arg.as_deref(), country.as_deref(), qr)
        .await
    {
        Ok((pairing, image)) => {
            conn.log_admin(
                "pair",
                &user,
                &format!("started pairing_id={}", field(Some(&pairing.id))),
            );
            pairing_answer(conn, &user, pairing, image).await
        }
        Err(e) => conn.service_failure("pair", &user, &e),
    }
}

/// Records a confirmed pairing and answers its state.
async fn pairing_answer(
    conn: &Conn,
    user: &str,
    p: PhonePairing,
    qr: Option<String>,
) -> AdminResponse {
    if p.confirmed() {
        let (u, id) = (user.to_owned(), p.id.clone());
        if let Err(e) = conn
            .d
            .store
            .call(move |s| s.record_pairing(&u, &id, now()))
            .await
        {
            return conn.internal("record pairing", &e);
        }
        conn.log_admin("pair", user, "paired");
    }
    AdminResponse::Pairing(PairingInfo {
        user: user.to_owned(),
        pairing_id: p.id,
        enabled: p.enabled,
        pending: p.pending,
        qr_png_base64: qr,
    })
}

async fn pair_status(conn: &mut Conn, user: String, pairing_id: String) -> AdminResponse {
    let d = Arc::clone(&conn.d);
    let Some(phones) = d.backend.phones() else {
        return AdminResponse::error(ErrorKind::Unsupported, d.backend.unsupported("pair"));
    };
    match phones.pairing(&user, &pairing_id).await {
        // A pairing of someone else can never be recorded for this user.
        Ok(p) if !p.of_user => {
            conn.log_admin("pair", &user, "refused reason=pairing_of_another_user");
            AdminResponse::error(
                ErrorKind::Forbidden,
                format!("that pairing does not belong to {user}"),
            )
        }
        Ok(p) => pairing_answer(conn, &user, p, None).await,
        Err(e) => conn.service_failure("pair", &user, &e),
    }
}

async fn list(conn: &mut Conn) -> AdminResponse {
    let limits = conn.d.limits();
    let backend = conn.d.backend.name();
    let all = conn
        .d
        .store
        .call(move |s| {
            let now = now();
            s.users()?
                .iter()
                .map(|u| s.status(u, backend, now, limits))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    match all {
        Ok(accounts) => AdminResponse::Accounts { accounts },
        Err(e) => conn.internal("list", &e),
    }
}

async fn set_enabled(conn: &mut Conn, user: String, enabled: bool) -> AdminResponse {
    if let Some(refused) = known::no_such_user(conn, "set_enabled", &user, enabled).await {
        return refused;
    }
    let what = if enabled { "enable" } else { "disable" };
    if !enabled {
        end_grace(conn, &user);
    }
    let d = Arc::clone(&conn.d);
    if let Err(e) = d.backend.set_enabled(&user, enabled).await {
        return conn.service_failure(what, &user, &e);
    }
    let name = user.clone();
    if let Err(e) = d
        .store
        .call(move |s| s.set_suspended(&name, !enabled, now()))
        .await
    {
        return conn.internal(what, &e);
    }
    conn.log_admin(what, &user, if enabled { "enabled" } else { "suspended" });
    status(conn, user).await
}

async fn reset(conn: &mut Conn, user: String) -> AdminResponse {
    end_grace(conn, &user);
    let d = Arc::clone(&conn.d);
    if let Err(e) = d.backend.reset(&user).await {
        return conn.service_failure("reset", &user, &e);
    }
    let name = user.clone();
    match d.store.call(move |s| s.forget(&name)).await {
        Ok(existed) => {
            conn.log_admin("reset", &user, "reset");
            AdminResponse::Removed { user, existed }
        }
        Err(e) => conn.internal("reset", &e),
    }
}

async fn reset_link(conn: &mut Conn, user: String, email: Option<String>) -> AdminResponse {
    let d = Arc::clone(&conn.d);
    let Some(phones) = d.backend.phones() else {
        return AdminResponse::error(ErrorKind::Unsupported, d.backend.unsupported("reset-link"));
    };
    if let Some(refused) = known::no_such_user(conn, "reset_link", &user, false).await {
        return refused;
    }
    let name = user.clone();
    let pairing = match d.store.call(move |s| s.pairing(&name)).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return AdminResponse::error(
                ErrorKind::NotFound,
                format!("{user} has no recorded pairing"),
            );
        }
        Err(e) => return conn.internal("reset-link", &e),
    };
    if let Some(address) = &email {
        let ok = address.len() <= 254
            && address.contains('@')
            && !address.chars().any(|c| c.is_control() || c.is_whitespace());
        if !ok {
            return AdminResponse::error(ErrorKind::BadRequest, "not an e-mail address");
        }
    }
    match phones.reset_link(&pairing, email.as_deref()).await {
        Ok(url) => {
            // The link replaces the pairing: what the old phone granted ends now.
            end_grace(conn, &user);
            let shown = if email.is_some() { "emailed" } else { "shown" };
            conn.log_admin("reset_link", &user, shown);
            AdminResponse::ResetLink {
                user,
                url,
                emailed_to: email,
            }
        }
        Err(e) => conn.service_failure("reset_link", &user, &e),
    }
}

async fn terminal_create(
    conn: &mut Conn,
    user: String,
    name: String,
    requester_id: String,
) -> AdminResponse {
    let d = Arc::clone(&conn.d);
    let Some(phones) = d.backend.phones() else {
        return AdminResponse::error(ErrorKind::Unsupported, d.backend.unsupported("terminals"));
    };
    let printable = |s: &str| !s.is_empty() && s.len() <= 120 && !s.chars().any(char::is_control);
    if !printable(&name) || !printable(&requester_id) {
        return AdminResponse::error(
            ErrorKind::BadRequest,
            "terminal name and id must be 1-120 printable characters",
        );
    }
    if let Some(refused) = known::no_such_user(conn, "terminal_create", &user, false).await {
        return refused;
    }
    match phones.create_terminal(&user, &name, &requester_id).await {
        Ok(t) => {
            conn.log_admin("terminal_create", &user, "created");
            AdminResponse::Terminal(TerminalInfo {
                id: t.id,
                name: t.name,
                requester_specified_id: t.requester_specified_id,
                user,
            })
        }
        Err(e) => conn.service_failure("terminal_create", &user, &e),
    }
}

async fn terminal_show(conn: &mut Conn, user: String, id: String) -> AdminResponse {
    let d = Arc::clone(&conn.d);
    let Some(phones) = d.backend.phones() else {
        return AdminResponse::error(ErrorKind::Unsupported, d.backend.unsupported("terminals"));
    };
    match phones.terminal(&user, &id).await {
        Ok(t) if !t.of_user => AdminResponse::error(
            ErrorKind::NotFound,
            format!("terminal {id} is not one of {user}'s"),
        ),
        Ok(t) => AdminResponse::Terminal(TerminalInfo {
            id: t.id,
            name: t.name,
            requester_specified_id: t.requester_specified_id,
            user,
        }),
        Err(e) => conn.service_failure("terminal_show", &user, &e),
    }
}

/// Administrators only: new codes are a second factor of their own, so a user's
/// session (or password) alone must not be able to mint them.
async fn regenerate_recovery_codes(conn: &mut Conn, user: String) -> AdminResponse {
    if let Some(refused) =
        known::no_such_user(conn, "regenerate_recovery_codes", &user, false).await
    {
        return refused;
    }
    let d = Arc::clone(&conn.d);
    match d.backend.regenerate_recovery_codes(&user).await {
        Err(CodesError::Unsupported(why)) => AdminResponse::error(ErrorKind::Unsupported, why),
        Ok(codes) => {
            // New codes are a new second factor: what the old ones granted ends.
            end_grace(conn, &user);
            conn.log_admin("recovery_codes", &user, "regenerated");
            AdminResponse::RecoveryCodes {
                user,
                codes: codes.iter().map(|c| Secret::new(c.as_str())).collect(),
            }
        }
        Err(CodesError::Store(StoreError::NotEnrolled)) => AdminResponse::error(
            ErrorKind::NotFound,
            format!("{user} has no active enrolment"),
        ),
        Err(CodesError::Store(e)) => conn.internal("recovery codes", &e),
    }
}

/// Lifts a rate-limit lock and its escalation.
async fn unlock(conn: &mut Conn, user: String) -> AdminResponse {
    let limits = conn.d.limits();
    let name = user.clone();
    match conn
        .d
        .store
        .call(move |s| s.unlock(&name, now(), limits))
        .await
    {
        Ok(was) => {
            conn.log_admin("unlock", &user, if was { "unlocked" } else { "not_locked" });
            status(conn, user).await
        }
        Err(e) => conn.internal("unlock", &e),
    }
}
