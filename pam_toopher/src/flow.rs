//! One login's second factor, from `Begin` to a PAM outcome. Every state that is not a
//! plain grant ends in a denial; `failmode` is consulted only when toopherd could not be
//! reached at all.

use crate::conversation::{ConvError, Conversation};
use crate::daemon::Daemon;
use crate::options::{Failmode, Options};
use crate::text::printable;
use toopher_ipc::{
    AllowReason, DenyReason, ErrorKind, FrameError, LoginContext, Method, Request, Response, Secret,
};

pub const OTP_PROMPT: &str = "One-time password: ";
/// Longest input worth sending: a recovery code with its dashes is 14 characters.
const MAX_CODE_LEN: usize = 64;

/// What the module returns to PAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    AuthErr,
    MaxTries,
    /// The second factor could not be checked (toopherd unreachable in secure mode, or broken).
    AuthInfoUnavail,
    ConvErr,
    ServiceErr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

/// Where the module's log lines go (pam_syslog in production).
pub trait Syslog {
    fn log(&mut self, level: Level, msg: &str);
}

struct Login<'a> {
    ctx: &'a LoginContext,
    opts: &'a Options,
    conv: &'a mut dyn Conversation,
    log: &'a mut dyn Syslog,
}

impl Login<'_> {
    fn note(&mut self, level: Level, what: &str) {
        let line = format!(
            "user={} service={} rhost={} {what}",
            printable(&self.ctx.user, 64),
            printable(&self.ctx.service, 64),
            self.ctx
                .rhost
                .as_deref()
                .map_or_else(|| "-".into(), |r| printable(r, 128)),
        );
        self.log.log(level, &line);
    }

    fn debug(&mut self, what: &str) {
        if self.opts.debug {
            self.note(Level::Debug, what);
        }
    }
}

/// Runs the second factor for `ctx`. `connect` opens the link to toopherd; its failure
/// (or a failed first exchange) is the "unreachable" case that `failmode` decides.
pub fn authenticate<D: Daemon>(
    ctx: &LoginContext,
    opts: &Options,
    conv: &mut dyn Conversation,
    log: &mut dyn Syslog,
    connect: impl FnOnce() -> std::io::Result<D>,
) -> Outcome {
    let mut login = Login {
        ctx,
        opts,
        conv,
        log,
    };
    let mut daemon = match connect() {
        Ok(d) => d,
        Err(e) => return unreachable(&mut login, &format!("cannot connect to toopherd: {e}")),
    };
    let answer = match daemon.call(&Request::Begin(ctx.clone())) {
        Ok(r) => r,
        Err(e @ (FrameError::Io(_) | FrameError::Closed)) => {
            return unreachable(&mut login, &format!("toopherd did not answer: {e}"));
        }
        Err(e) => {
            login.note(
                Level::Err,
                &format!("outcome=error toopherd answer unusable: {e}"),
            );
            return Outcome::AuthErr;
        }
    };
    login.debug(&format!("begin answered {}", describe(&answer)));
    match answer {
        Response::Allow { reason } => {
            let why = match reason {
                AllowReason::NotEnrolled => "not_enrolled",
                AllowReason::Exempt => "exempt",
                AllowReason::Failmode => "backend_unreachable_failmode_safe",
            };
            login.note(Level::Info, &format!("outcome=allowed reason={why}"));
            Outcome::Success
        }
        Response::Challenge { methods, .. } => challenge(&mut login, &mut daemon, &methods),
        Response::Denied { reason, message } => denied(&mut login, reason, message.as_deref()),
        Response::Unavailable { detail } => {
            login.note(
                Level::Err,
                &format!(
                    "outcome=unavailable toopherd backend: {}",
                    printable(&detail, 200)
                ),
            );
            login
                .conv
                .error("The second-factor service is unavailable.");
            Outcome::AuthInfoUnavail
        }
        Response::Error { kind, message } => daemon_error(&mut login, kind, &message),
        other => {
            login.note(
                Level::Err,
                &format!("outcome=error unexpected answer {}", describe(&other)),
            );
            Outcome::AuthErr
        }
    }
}

fn unreachable(login: &mut Login<'_>, why: &str) -> Outcome {
    match login.opts.failmode {
        Failmode::Secure => {
            login.note(
                Level::Err,
                &format!("outcome=unavailable failmode=secure {why}"),
            );
            login
                .conv
                .error("The second-factor service is unavailable.");
            Outcome::AuthInfoUnavail
        }
        Failmode::Safe => {
            login.note(
                Level::Warning,
                &format!("outcome=allowed failmode=safe: NO SECOND FACTOR CHECKED, {why}"),
            );
            Outcome::Success
        }
    }
}

fn daemon_error(login: &mut Login<'_>, kind: ErrorKind, message: &str) -> Outcome {
    login.note(
        Level::Err,
        &format!(
            "outcome=error toopherd refused ({kind:?}): {}",
            printable(message, 200)
        ),
    );
    match kind {
        ErrorKind::Internal | ErrorKind::Busy => Outcome::AuthInfoUnavail,
        _ => Outcome::AuthErr,
    }
}

fn denied(login: &mut Login<'_>, reason: DenyReason, message: Option<&str>) -> Outcome {
    login.note(
        Level::Notice,
        &format!("outcome=denied reason={}", reason.as_str()),
    );
    let text = match (reason, message) {
        (_, Some(m)) if !m.trim().is_empty() => printable(m, 300),
        (DenyReason::RateLimited, _) => "Too many failed attempts. Try again later.".into(),
        (DenyReason::NotEnrolled, _) => "This account has no second factor enrolled.".into(),
        _ => "Second-factor authentication failed.".into(),
    };
    login.conv.error(&text);
    Outcome::AuthErr
}

fn challenge<D: Daemon>(login: &mut Login<'_>, daemon: &mut D, methods: &[Method]) -> Outcome {
    if !methods
        .iter()
        .any(|m| matches!(m, Method::Otp | Method::RecoveryCode))
    {
        login.note(Level::Err, "outcome=error no method this module can offer");
        return Outcome::AuthErr;
    }
    let tries = login.opts.prompts;
    for attempt in 1..=tries {
        let code = match login.conv.prompt_hidden(OTP_PROMPT) {
            Ok(c) => c,
            Err(ConvError) => {
                login.note(Level::Notice, "outcome=aborted conversation failed");
                return Outcome::ConvErr;
            }
        };
        let code = Secret::new(code.expose().trim());
        if code.is_empty() || code.expose().len() > MAX_CODE_LEN {
            login.conv.error("No valid code entered.");
            continue;
        }
        match daemon.call(&Request::Otp { code }) {
            Ok(Response::Granted { method }) => {
                login.note(
                    Level::Info,
                    &format!("outcome=granted method={}", method_name(method)),
                );
                return Outcome::Success;
            }
            Ok(Response::Denied {
                reason: DenyReason::WrongCode,
                ..
            }) => {
                login.note(
                    Level::Notice,
                    &format!("outcome=retry reason=wrong_code attempt={attempt}"),
                );
                if attempt < tries {
                    login.conv.error("Incorrect code. Try again.");
                } else {
                    login.conv.error("Incorrect code.");
                }
            }
            Ok(Response::Denied { reason, message }) => {
                return denied(login, reason, message.as_deref());
            }
            Ok(Response::Error { kind, message }) => return daemon_error(login, kind, &message),
            Ok(other) => {
                login.note(
                    Level::Err,
                    &format!("outcome=error unexpected answer {}", describe(&other)),
                );
                return Outcome::AuthErr;
            }
            Err(e) => {
                // toopherd was reached and then failed: never a failmode case.
                login.note(
                    Level::Err,
                    &format!("outcome=error toopherd failed during the login: {e}"),
                );
                login.conv.error("The second-factor service failed.");
                return Outcome::AuthInfoUnavail;
            }
        }
    }
    login.note(
        Level::Notice,
        &format!("outcome=denied reason=max_tries tries={tries}"),
    );
    Outcome::MaxTries
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Otp => "otp",
        Method::RecoveryCode => "recovery_code",
        Method::Push => "push",
        Method::Unknown => "unknown",
    }
}

/// The answer's type, for debug lines (never its content, which may hold secrets).
fn describe(r: &Response) -> &'static str {
    match r {
        Response::Allow { .. } => "allow",
        Response::Challenge { .. } => "challenge",
        Response::Register { .. } => "register",
        Response::Granted { .. } => "granted",
        Response::Denied { .. } => "denied",
        Response::Pending => "pending",
        Response::Unavailable { .. } => "unavailable",
        Response::Enrollment(_) => "enrollment",
        Response::Activated { .. } => "activated",
        Response::Status(_) => "status",
        Response::Removed { .. } => "removed",
        Response::Error { .. } => "error",
    }
}

#[cfg(test)]
mod tests;
