//! One connection's state (its peer and its login) and what every handler shares:
//! log lines, and the answers that only configuration decides.

use super::service::Service;
use super::session::Session;
use crate::authz::{self, Peer};
use crate::backend::{Attempting, ServiceError};
use crate::config::Failmode;
use crate::logging::{Abuse, field};
use crate::policy::Decision;
use crate::policy::grace::Generation;
use crate::policy::rules::Outcome as PolicyOutcome;
use crate::policy::session::PeerSession;
use crate::store::StoreError;
use std::sync::Arc;
use toopher_ipc::{
    AllowReason, DenyReason, ErrorKind, ErrorReply, FailureNotice, LoginContext, LoginRequest,
    LoginResponse, Request,
};

pub struct Conn {
    pub(super) d: Arc<Service>,
    /// Who is on the other end; every request is authorised against it.
    pub(super) peer: Peer,
    pub(super) session: Session,
    /// The kernel audit session of a root peer (the PAM process) and its real uid, for
    /// the grace period.
    pub(super) audit_session: Option<PeerSession>,
    /// What this connection's login saw at `Begin`, for recording its grant.
    pub(super) begun: Option<Begun>,
    /// The second factor this connection's login passed, for `GraceToken`.
    pub(super) granted: Option<Granted>,
}

/// What a login's grant is recorded against, fixed at `Begin`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Begun {
    /// The audit session as this login's grace place: only when the peer really runs as
    /// the user being authenticated (see `PeerSession::place_for`).
    pub session: Option<u32>,
    /// The user's grace generation: a clear after it means no grant is recorded.
    pub generation: Generation,
}

/// A passed second factor: whose, when, and the generation its login began in.
#[derive(Debug, Clone)]
pub(super) struct Granted {
    pub user: String,
    pub at: u64,
    pub generation: Generation,
}

impl Conn {
    pub fn new(d: Arc<Service>, peer: Peer) -> Conn {
        Conn {
            d,
            peer,
            session: Session::Idle,
            audit_session: None,
            begun: None,
            granted: None,
        }
    }

    /// The peer's audit session (see `policy::session`); only a root peer's counts.
    pub fn with_audit_session(mut self, session: Option<PeerSession>) -> Conn {
        self.audit_session = session.filter(|_| self.peer.uid == 0);
        self
    }

    pub(super) fn log_auth(&self, ctx: &LoginContext, outcome: &str, extra: &str) {
        // A login asked for by a user's own process (not the module inside sshd, sudo or
        // login, which run as root) says so, so it cannot pass for one of theirs.
        let by = if self.peer.uid == 0 {
            String::new()
        } else {
            format!(" by={}", self.peer.describe())
        };
        let line = format!(
            "auth user={} service={} rhost={} tty={} outcome={outcome}{}{extra}{by}",
            field(Some(&ctx.user)),
            field(Some(&ctx.service)),
            field(ctx.rhost.as_deref()),
            field(ctx.tty.as_deref()),
            if extra.is_empty() { "" } else { " " },
        );
        if outcome == "granted" || outcome == "allowed" {
            self.d.log.info(&line);
        } else {
            self.d.log.warn(&line);
        }
    }

    /// A policy decision that hands the login to the backend: `policy user=... service=...
    /// rhost=... tty=... outcome=challenge rule=...` (the backend's result follows as an
    /// `auth` line). Decisions that end the login are `auth` lines with their rule.
    pub(super) fn log_policy(&self, ctx: &LoginContext, decision: &Decision) {
        let by = if self.peer.uid == 0 {
            String::new()
        } else {
            format!(" by={}", self.peer.describe())
        };
        self.d.log.info(&format!(
            "policy user={} service={} rhost={} tty={} {}{by}",
            field(Some(&ctx.user)),
            field(Some(&ctx.service)),
            field(ctx.rhost.as_deref()),
            field(ctx.tty.as_deref()),
            decision.log_fields(),
        ));
    }

    pub(super) fn log_admin(&self, request: &str, user: &str, outcome: &str) {
        self.d.log.info(&format!(
            "admin request={request} user={} by={} outcome={outcome}",
            field(Some(user)),
            self.peer.describe()
        ));
    }

    /// A failed call to the second-factor service, logged and answered.
    pub(super) fn service_failure<R: From<ErrorReply>>(
        &self,
        what: &str,
        user: &str,
        e: &ServiceError,
    ) -> R {
        self.log_admin(
            what,
            user,
            &format!("failed detail={}", field(Some(&e.message))),
        );
        ErrorReply::new(e.kind, e.message.clone()).into()
    }

    /// A store failure, logged (once while it lasts) and answered (in either family).
    pub(super) fn internal<R: From<ErrorReply>>(&self, what: &str, e: &StoreError) -> R {
        self.d.store.log_error(what, e);
        internal_error()
    }

    /// The open login as the backend needs it.
    pub(super) fn attempting(&self) -> Option<Attempting> {
        self.session.login().map(|l| Attempting {
            ctx: l.ctx.clone(),
            own_failures: l.own_failures.clone(),
        })
    }

    /// A failure the open login recorded: no notice repeats it.
    pub(super) fn remember_failure(&mut self, id: i64) {
        if let Some(l) = self.session.login_mut() {
            l.own_failures.push(id);
        }
    }

    pub(super) fn suspended(&self, ctx: &LoginContext) -> LoginResponse {
        self.log_auth(
            ctx,
            "denied",
            "reason=user_disabled detail=suspended_by_admin",
        );
        self.suspended_answer()
    }

    /// The answer to a login of a suspended account (logged by the caller).
    pub(super) fn suspended_answer(&self) -> LoginResponse {
        LoginResponse::Denied {
            reason: DenyReason::UserDisabled,
            message: Some(
                "The second factor of this account is suspended; ask an administrator.".into(),
            ),
        }
    }

    /// An account without a second factor: the policy's decision (its rule named).
    pub(super) fn not_enrolled(&self, ctx: &LoginContext, decision: &Decision) -> LoginResponse {
        let rule = decision.rule.log_fields();
        match decision.outcome {
            PolicyOutcome::Allowed => {
                self.log_auth(ctx, "allowed", &format!("reason=not_enrolled {rule}"));
                LoginResponse::Allow {
                    reason: AllowReason::NotEnrolled,
                }
            }
            _ => {
                self.log_auth(ctx, "denied", &format!("reason=not_enrolled {rule}"));
                LoginResponse::Denied {
                    reason: DenyReason::NotEnrolled,
                    message: Some(
                        "Two-factor authentication is required, but this account is not enrolled."
                            .into(),
                    ),
                }
            }
        }
    }

    /// The backend service could not be reached: `failmode` decides (and only here).
    pub(super) fn unreachable(&self, ctx: &LoginContext, detail: &str) -> LoginResponse {
        let detail = field(Some(detail));
        match self.d.config.failmode {
            Failmode::Safe => {
                self.log_auth(
                    ctx,
                    "allowed",
                    &format!(
                        "reason=backend_unreachable failmode=safe NO_SECOND_FACTOR detail={detail}"
                    ),
                );
                LoginResponse::Allow {
                    reason: AllowReason::Failmode,
                }
            }
            Failmode::Secure => {
                self.log_auth(
                    ctx,
                    "unavailable",
                    &format!("reason=backend_unreachable failmode=secure detail={detail}"),
                );
                LoginResponse::Unavailable {
                    detail: "the second-factor service could not be reached".into(),
                }
            }
        }
    }
}

/// A failure inside toopherd, answered in either family.
pub(super) fn internal_error<R: From<ErrorReply>>() -> R {
    ErrorReply::new(ErrorKind::Internal, "internal error; see toopherd's log").into()
}

pub(super) fn no_login() -> LoginResponse {
    LoginResponse::error(
        ErrorKind::BadRequest,
        "no login in progress on this connection",
    )
}

/// The failures a grant tells the person about, for its log line.
pub(super) fn told(notice: Option<&FailureNotice>) -> String {
    notice.map_or_else(String::new, |n| format!(" told_failures={}", n.failures))
}

impl Conn {
    /// The one authorisation point: the request's target account and rights against
    /// the peer. A login names its user in `Begin` only (the rest act on the login it
    /// opened); an administrative request names its account and whether it needs
    /// root or `admin_group`.
    pub(super) fn authorise(&self, req: &Request) -> Option<ErrorReply> {
        let (request, user, admin) = match req {
            Request::Login(LoginRequest::Begin(ctx)) => ("begin", Some(ctx.user.as_str()), false),
            // The session hook of the module inside sshd (root; checked again there).
            Request::Login(LoginRequest::BindSession { user, .. }) => {
                ("bind session", Some(user.as_str()), true)
            }
            Request::Login(_) => return None,
            Request::Admin(a) => (a.name(), a.target(), a.needs_admin()),
        };
        if let Some(user) = user
            && !authz::valid_user_name(user)
        {
            return Some(ErrorReply::new(ErrorKind::BadRequest, "invalid user name"));
        }
        let allowed = match user {
            _ if admin => self.peer.is_admin(),
            Some(user) => self.peer.may_act_for(user),
            None => self.peer.is_admin(),
        };
        (!allowed).then(|| self.refuse(request, user, admin))
    }

    /// Refuses `request` for `user` (logged): it needs an administrator (`admin`), or
    /// the peer's own account.
    pub(super) fn refuse(&self, request: &str, user: Option<&str>, admin: bool) -> ErrorReply {
        self.d.log.abuse(
            self.peer.uid,
            Abuse::BadInput,
            &format!(
                "refused request={request} user={} by={}",
                field(Some(user.unwrap_or("-"))),
                self.peer.describe()
            ),
        );
        let why = match user {
            Some(user) if admin => format!("{request} for {user} needs root or the admin group"),
            Some(_) => format!(
                "{} may only {request} for its own account",
                self.peer.describe()
            ),
            None => {
                format!("{request} is an administrative request: it needs root or the admin group")
            }
        };
        ErrorReply::new(ErrorKind::Forbidden, why)
    }
}
