//! The login requests: begin, a typed code, push, wait and cancel. The backend decides;
//! here its [`Outcome`] becomes the answer and its log line, and the session is ended
//! where the outcome ends it.

use super::conn::{Begun, Conn, Granted, internal_error, no_login, told};
use super::registration;
use super::session::{Login, MAX_WAIT_SLICE, PendingPush, Phase};
use crate::backend::{Attempting, Begin, Outcome};
use crate::now;
use crate::policy::grace::Generation;
use crate::policy::rules::Outcome as PolicyOutcome;
use crate::policy::{Decision, Enrolment, LoginFacts, Rule, Stage};
use crate::store::LoginState;
use std::time::{Duration, Instant};
use toopher_ipc::{
    AllowReason, DenyReason, ErrorKind, LoginContext, LoginRequest, LoginResponse, Method, Secret,
};

/// Answers a login request (authorised by dispatch).
pub async fn handle(conn: &mut Conn, req: LoginRequest) -> LoginResponse {
    match req {
        LoginRequest::Begin(ctx) => begin(conn, ctx).await,
        LoginRequest::Otp { code } if conn.session.in_phase(&Phase::EnrollingTotp) => {
            registration::activate_in_login(conn, code).await
        }
        LoginRequest::Otp { code } => otp(conn, code).await,
        LoginRequest::Wait { timeout_ms }
            if conn
                .session
                .login()
                .is_some_and(|l| matches!(l.phase, Phase::Pairing { .. })) =>
        {
            registration::wait_for_pairing(conn, timeout_ms).await
        }
        LoginRequest::Push | LoginRequest::Wait { .. } | LoginRequest::Cancel
            if conn.d.backend.push_timing().is_none() =>
        {
            LoginResponse::error(ErrorKind::Unsupported, conn.d.backend.unsupported("push"))
        }
        LoginRequest::Push => push(conn).await,
        LoginRequest::Wait { timeout_ms } => wait(conn, timeout_ms).await,
        LoginRequest::Cancel => cancel(conn),
        LoginRequest::RegistrationResponse { code } => {
            registration::registration_response(conn, code).await
        }
        LoginRequest::PairPhrase { phrase } => registration::pair_in_login(conn, phrase).await,
        LoginRequest::GraceToken => grace_token(conn),
        LoginRequest::BindSession { user, token } => bind_session(conn, &user, &token),
    }
}

/// Whether the login context is plausible: bounded, without control characters.
fn valid_context(ctx: &LoginContext) -> bool {
    let too_long = |s: &Option<String>| s.as_ref().is_some_and(|v| v.len() > 256);
    !(ctx.service.is_empty()
        || ctx.service.len() > 64
        || too_long(&ctx.rhost)
        || too_long(&ctx.tty)
        || too_long(&ctx.ruser)
        || [
            Some(&ctx.service),
            ctx.rhost.as_ref(),
            ctx.tty.as_ref(),
            ctx.ruser.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|v| v.chars().any(char::is_control)))
}

async fn begin(conn: &mut Conn, mut ctx: LoginContext) -> LoginResponse {
    if !conn.session.is_idle() {
        return LoginResponse::error(ErrorKind::BadRequest, "a login is already in progress");
    }
    if !valid_context(&ctx) {
        return LoginResponse::error(ErrorKind::BadRequest, "invalid login context");
    }
    // Where a login comes from is known only to the module inside sshd, sudo or login,
    // which run as root. A user's own process could invent remote hosts for the failure
    // record, or use up the "failures since your last login" notice before the real
    // login shows it: from it, neither is taken.
    if conn.peer.uid != 0 {
        ctx.rhost = None;
        ctx.tty = None;
        ctx.ruser = None;
        ctx.notify = false;
    }
    // The generation first: a clear from here on means this login records no grant.
    let generation = conn.d.policy.generation(&ctx.user);
    // The policy first: an exempt login never reaches the backend.
    let (need, state) = match assess(conn, &ctx, generation).await {
        Ok((Stage::Decided(decision), _)) => return decided(conn, &ctx, &decision),
        Ok((need @ Stage::NeedsFactor { .. }, state)) => (need, state),
        Err(r) => return *r,
    };
    let who = Attempting {
        ctx,
        own_failures: Vec::new(),
    };
    let d = std::sync::Arc::clone(&conn.d);
    match d.backend.begin(&who, state).await {
        Begin::Settled(Outcome::NotEnrolled) => {
            let decision = need.with_enrolment(Enrolment::NotEnrolled);
            registration::no_factor(conn, who.ctx, &decision).await
        }
        Begin::Settled(outcome) => settle(conn, &who.ctx, outcome).await,
        Begin::Challenge { methods, note } => {
            // The policy's line: the rule that asks for a second factor. The backend's
            // result gets its own `auth` line, as before.
            let decision = need.clone().with_enrolment(Enrolment::Enrolled);
            conn.log_policy(&who.ctx, &decision);
            if let Some(note) = note {
                conn.log_auth(&who.ctx, "challenge", &note);
            }
            let mut login = Login::new(who.ctx.clone(), Phase::Challenge);
            login.policy = Some(need);
            conn.session.open(login);
            let push = who.ctx.autopush
                && methods.contains(&Method::Push)
                && d.backend.push_timing().is_some();
            if !push {
                return LoginResponse::Challenge {
                    methods,
                    push_pending: false,
                };
            }
            match send_push(conn, &who).await {
                LoginResponse::Pending => LoginResponse::Challenge {
                    methods,
                    push_pending: true,
                },
                other => other,
            }
        }
    }
}

/// The policy's answer for a login (suspension from the store, groups through NSS, the
/// grace book), with the account's state as the store has it when the backend is asked
/// (the same read serves both unless NSS was asked, which may take seconds). Fixes what
/// the login's grant will be recorded against (`conn.begun`).
async fn assess(
    conn: &mut Conn,
    ctx: &LoginContext,
    generation: Generation,
) -> Result<(Stage, LoginState), Box<LoginResponse>> {
    let state = account_state(conn, ctx).await?;
    let suspended = state == LoginState::Suspended;
    let d = std::sync::Arc::clone(&conn.d);
    let (user, service, rhost) = (ctx.user.clone(), ctx.service.clone(), ctx.rhost.clone());
    // Read at the connection only while some grace period is configured.
    let peer_session = conn.audit_session;
    let assess = move || {
        // The audit session is this login's place only when the PAM process really runs
        // as the user (sudo by alice), not as someone else inside that session (`su
        // alice` by deploy).
        let session = peer_session.and_then(|p| {
            let uid = nix::unistd::User::from_name(&user).ok().flatten();
            p.place_for(uid.map(|u| u.uid.as_raw()))
        });
        let stage = d.policy.assess(&LoginFacts {
            user: &user,
            service: &service,
            rhost: rhost.as_deref(),
            session,
            suspended,
            now: now(),
        });
        (stage, session)
    };
    // NSS may block (LDAP, sssd): off the async thread when the policy asks it anything.
    let blocks = conn.d.policy.assess_blocks(peer_session.is_some());
    let assessed = if blocks {
        tokio::task::spawn_blocking(assess).await
    } else {
        Ok(assess())
    };
    let Ok((stage, session)) = assessed else {
        conn.log_auth(ctx, "error", "reason=internal");
        return Err(Box::new(internal_error()));
    };
    // A `toopherctl disable` (or a removal) during a slow NSS answer must still count:
    // the backend gets the account as it is now.
    let state = if blocks && matches!(stage, Stage::NeedsFactor { .. }) {
        account_state(conn, ctx).await?
    } else {
        state
    };
    conn.begun = Some(Begun {
        session,
        generation,
    });
    Ok((stage, state))
}

/// The account's state in the store at the start of a login, or the answer when the
/// store fails.
async fn account_state(
    conn: &mut Conn,
    ctx: &LoginContext,
) -> Result<LoginState, Box<LoginResponse>> {
    let (user, limits) = (ctx.user.clone(), conn.d.limits());
    match conn
        .d
        .store
        .call(move |s| s.login_state(&user, now(), limits))
        .await
    {
        Ok(state) => Ok(state),
        // The fleet's database down when the login begins is the service not reached:
        // `failmode` decides. The policy denies nothing before the backend but a
        // suspension, which is exactly what cannot be known now, so nothing else is
        // asked (under `failmode = "safe"` a suspended account gets in, as every account
        // does without its factor; README "When the database is down").
        Err(e) if e.is_unreachable() => {
            conn.d.store.log_error("begin", &e);
            Err(Box::new(
                conn.unreachable(ctx, "the store could not be reached"),
            ))
        }
        // Every connection of the fleet's pool in use: a flood of logins is refused,
        // it never reaches `failmode`.
        Err(e) if e.is_busy() => {
            conn.d.store.log_error("begin", &e);
            Err(Box::new(settle(conn, ctx, Outcome::Busy).await))
        }
        Err(e) => {
            conn.log_auth(ctx, "error", "reason=internal");
            Err(Box::new(conn.internal("begin", &e)))
        }
    }
}

/// A login the policy decided without the backend: logged with its rule, answered.
fn decided(conn: &mut Conn, ctx: &LoginContext, decision: &Decision) -> LoginResponse {
    match (decision.outcome, &decision.rule) {
        (_, Rule::Suspended) => {
            conn.log_auth(
                ctx,
                "denied",
                &format!(
                    "reason=user_disabled detail=suspended_by_admin rule={}",
                    decision.rule.name()
                ),
            );
            conn.suspended_answer()
        }
        (PolicyOutcome::Allowed, _) => {
            conn.log_auth(ctx, "allowed", &decision.details());
            LoginResponse::Allow {
                reason: AllowReason::Exempt,
            }
        }
        // The policy denies only suspended accounts before the backend; anything else
        // here is a bug, and a bug denies.
        (_, _) => {
            conn.log_auth(ctx, "denied", &decision.details());
            LoginResponse::denied(DenyReason::Policy)
        }
    }
}

/// A code typed for the open login (with a push pending, it settles that push).
async fn otp(conn: &mut Conn, code: Secret) -> LoginResponse {
    if conn.session.login().is_none() {
        return no_login();
    }
    if conn.session.count_attempt().is_err() {
        return LoginResponse::denied(DenyReason::RateLimited);
    }
    let pending = conn
        .session
        .login_mut()
        .and_then(|l| l.push.take())
        .map(|p| p.id);
    let Some(who) = conn.attempting() else {
        return no_login();
    };
    let d = std::sync::Arc::clone(&conn.d);
    let outcome = d
        .backend
        .verify(&who, code.expose(), pending.as_deref())
        .await;
    settle(conn, &who.ctx, outcome).await
}

async fn push(conn: &mut Conn) -> LoginResponse {
    let Some(login) = conn.session.login() else {
        return no_login();
    };
    if login.push.is_some() {
        return LoginResponse::Pending;
    }
    let Some(who) = conn.attempting() else {
        return no_login();
    };
    send_push(conn, &who).await
}

async fn send_push(conn: &mut Conn, who: &Attempting) -> LoginResponse {
    let d = std::sync::Arc::clone(&conn.d);
    let Some(timing) = d.backend.push_timing() else {
        return LoginResponse::error(ErrorKind::Unsupported, d.backend.unsupported("push"));
    };
    match d.backend.push(who).await {
        Outcome::Pending { request_id } => {
            if let Some(l) = conn.session.login_mut() {
                let sent = Instant::now();
                l.push = Some(PendingPush {
                    id: request_id,
                    sent,
                    deadline: sent + timing.timeout,
                    next_poll: sent + timing.next_poll(Duration::ZERO),
                });
            }
            LoginResponse::Pending
        }
        other => settle(conn, &who.ctx, other).await,
    }
}

/// Polls the pending push, at the points of its schedule (backend::poll_schedule), until
/// it is answered, `timeout_ms` passes (`Pending`), or the push times out
/// (`Denied{PushTimeout}`, or `failmode` when the service was unreachable).
async fn wait(conn: &mut Conn, timeout_ms: u32) -> LoginResponse {
    let d = std::sync::Arc::clone(&conn.d);
    let Some(timing) = d.backend.push_timing() else {
        return LoginResponse::error(ErrorKind::Unsupported, d.backend.unsupported("push"));
    };
    let Some(who) = conn.attempting() else {
        return no_login();
    };
    let Some(mut push) = conn.session.login().and_then(|l| l.push.clone()) else {
        return LoginResponse::error(ErrorKind::BadRequest, "no push is pending");
    };
    let slice_end =
        Instant::now() + Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT_SLICE);
    loop {
        // The poll due next belongs to a later Wait: a new Wait never adds a poll.
        if push.next_poll > slice_end {
            return LoginResponse::Pending;
        }
        tokio::time::sleep_until(push.next_poll.into()).await;
        let last_error = match d
            .backend
            .poll(&who, &push.id, push.deadline.min(slice_end))
            .await
        {
            Outcome::Pending { .. } => None,
            Outcome::Unreachable(e) => Some(e),
            settled => {
                clear_push(conn);
                return settle(conn, &who.ctx, settled).await;
            }
        };
        let now = Instant::now();
        if now >= push.deadline {
            clear_push(conn);
            return match last_error {
                Some(e) => conn.unreachable(&who.ctx, &e),
                None => {
                    conn.log_auth(&who.ctx, "timeout", "reason=push_timeout");
                    LoginResponse::denied(DenyReason::PushTimeout)
                }
            };
        }
        push.next_poll = push.sent + timing.next_poll(now.saturating_duration_since(push.sent));
        if let Some(pending) = conn.session.login_mut().and_then(|l| l.push.as_mut()) {
            pending.next_poll = push.next_poll;
        }
    }
}

fn clear_push(conn: &mut Conn) {
    if let Some(l) = conn.session.login_mut() {
        l.push = None;
    }
}

fn cancel(conn: &mut Conn) -> LoginResponse {
    let cancelled = conn
        .session
        .login_mut()
        .and_then(|l| l.push.take().map(|_| l.ctx.clone()));
    if let Some(ctx) = cancelled {
        conn.log_auth(&ctx, "cancelled", "reason=module_cancelled_push");
    }
    LoginResponse::Denied {
        reason: DenyReason::Other,
        message: Some("cancelled".into()),
    }
}

/// Turns a backend's outcome into the answer: logs the decision and ends the login
/// where the outcome ends it.
pub(super) async fn settle(conn: &mut Conn, ctx: &LoginContext, outcome: Outcome) -> LoginResponse {
    match outcome {
        Outcome::Granted {
            method,
            automated,
            notice,
        } => {
            let name = match method {
                Method::Push => "push",
                Method::RecoveryCode => "recovery_code",
                _ => "otp",
            };
            let automated = automated.map_or_else(String::new, |a| format!(" automated={a}"));
            conn.log_auth(
                ctx,
                "granted",
                &format!("method={name}{automated}{}", told(notice.as_ref())),
            );
            conn.session.end();
            remember_grant(conn, ctx);
            LoginResponse::Granted { method, notice }
        }
        Outcome::Denied {
            reason,
            message,
            log,
            counted,
        } => {
            conn.log_auth(ctx, "denied", &log);
            match counted {
                Some(id) => conn.remember_failure(id),
                // A failure the store did not count ends the login: no more guesses on it.
                None => conn.session.end(),
            }
            LoginResponse::Denied { reason, message }
        }
        Outcome::RateLimited { until } => {
            conn.log_auth(
                ctx,
                "refused",
                &format!("reason=rate_limited until={until}"),
            );
            conn.session.end();
            LoginResponse::denied(DenyReason::RateLimited)
        }
        Outcome::Suspended => {
            conn.session.end();
            conn.suspended(ctx)
        }
        Outcome::Pending { .. } => LoginResponse::Pending,
        Outcome::NotEnrolled => {
            // Removed while the login was open: what the policy said for it decides.
            let need = conn.session.login().and_then(|l| l.policy.clone());
            conn.session.end();
            let decision = match need {
                Some(need) => need.with_enrolment(Enrolment::NotEnrolled),
                None => Decision {
                    rule: Rule::Availability(crate::config::Availability::Required),
                    outcome: PolicyOutcome::Denied,
                    reason: Some(crate::policy::rules::Reason::NotEnrolled),
                },
            };
            conn.not_enrolled(ctx, &decision)
        }
        Outcome::OtpRequired => {
            conn.log_auth(ctx, "challenge", "reason=toopher_708_requires_otp");
            LoginResponse::Challenge {
                methods: vec![Method::Otp],
                push_pending: false,
            }
        }
        Outcome::Unreachable(detail) => {
            conn.session.end();
            conn.unreachable(ctx, &detail)
        }
        Outcome::Busy => {
            conn.log_auth(ctx, "refused", "reason=busy");
            LoginResponse::error(ErrorKind::Busy, "toopherd is busy")
        }
        Outcome::Internal => {
            conn.log_auth(ctx, "error", "reason=internal");
            internal_error()
        }
    }
}

/// A passed second factor: the grace book learns it, and the connection keeps it for a
/// `GraceToken` request.
fn remember_grant(conn: &mut Conn, ctx: &LoginContext) {
    // Every grant comes from a login that began on this connection.
    let Some(begun) = conn.begun else {
        return;
    };
    let at = now();
    conn.d.policy.granted(
        &LoginFacts {
            user: &ctx.user,
            service: &ctx.service,
            rhost: ctx.rhost.as_deref(),
            session: begun.session,
            suspended: false,
            now: at,
        },
        begun.generation,
    );
    conn.granted = Some(Granted {
        user: ctx.user.clone(),
        at,
        generation: begun.generation,
    });
}

/// `GraceToken`: the bind token for this connection's granted login.
fn grace_token(conn: &mut Conn) -> LoginResponse {
    // Only the module inside sshd (root) has a session hook to hand a token to; a user's
    // own process gets none, so it cannot turn a grant of its own into a session's grace.
    let granted = conn.granted.take().filter(|_| conn.peer.uid == 0);
    let Some(g) = granted else {
        return LoginResponse::error(
            ErrorKind::NotFound,
            "no second factor was passed on this connection",
        );
    };
    match conn.d.policy.token(&g.user, g.generation, g.at, now()) {
        Ok(Some(token)) => LoginResponse::GraceToken {
            token: Secret::new(token.as_str()),
        },
        Ok(None) => LoginResponse::error(
            ErrorKind::NotFound,
            "no grace to carry (none configured, or cleared since the login began)",
        ),
        Err(e) => {
            conn.d.log.err(&format!("grace token: {e}"));
            internal_error()
        }
    }
}

/// `BindSession`, from the session hook of a login that passed its second factor: the
/// grant counts in the peer's audit session from now on. Only a root peer (the module
/// inside sshd) has a session that counts.
fn bind_session(conn: &mut Conn, user: &str, token: &Secret) -> LoginResponse {
    if conn.peer.uid != 0 {
        return conn.refuse("bind session", Some(user), true).into();
    }
    // sshd opens the session as root: the token, not the real uid, ties it to the user.
    let Some(session) = conn.audit_session.map(|p| p.id) else {
        return LoginResponse::error(
            ErrorKind::Conflict,
            "the session hook runs outside any audit session (is pam_loginuid before it?)",
        );
    };
    match conn.d.policy.bind(token.expose(), user, session, now()) {
        Ok(place) => {
            conn.d.log.info(&format!(
                "grace user={} bound to {place}",
                crate::logging::field(Some(user))
            ));
            LoginResponse::Bound { session }
        }
        Err(e) => {
            conn.d.log.warn(&format!(
                "grace user={} not bound: {e}",
                crate::logging::field(Some(user))
            ));
            LoginResponse::error(ErrorKind::NotFound, e.to_string())
        }
    }
}
