//! One login's second factor, from `Begin` to a PAM outcome. Every state that is not a
//! plain grant ends in a denial; `failmode` is consulted only when toopherd could not be
//! reached at all.

use crate::conversation::Conversation;
use crate::daemon::LoginLink;
use crate::handle::{Handle, NoHandle};
use crate::login::{Echo, Login, MAX_CODE_LEN, describe, with_note};
use crate::options::{Failmode, Options};
use crate::registration::register;
use crate::text::printable;
use crate::wait::wait_for_answer;
use std::time::Instant;
use toopher_ipc::{
    AllowReason, DenyReason, FailureNotice, FrameError, LoginContext, LoginRequest, LoginResponse,
    Method,
};

pub use crate::login::{Level, Outcome, Syslog};

pub const OTP_PROMPT: &str = "One-time password: ";
/// While the account is locked, only a recovery code is looked at.
pub const RECOVERY_PROMPT: &str = "Recovery code: ";
pub const LOCKED_NOTE: &str =
    "Too many failed attempts: only a recovery code is accepted until the lock ends.";
/// The "choose" placement: Enter sends the push, a typed code is checked at once.
pub const CHOOSE_PROMPT: &str =
    "Press Enter to approve on your phone, or type a one-time password: ";
/// The "type while waiting" placement: the push is already out.
pub const AUTOPUSH_PROMPT: &str =
    "Approve on your phone and press Enter, or type a one-time password: ";

/// Runs the second factor for `ctx`. `connect` opens the link to toopherd; its failure
/// (or a failed first exchange) is the "unreachable" case that `failmode` decides.
pub fn authenticate<D: LoginLink>(
    ctx: &LoginContext,
    opts: &Options,
    conv: &mut dyn Conversation,
    log: &mut dyn Syslog,
    connect: impl FnOnce() -> std::io::Result<D>,
) -> Outcome {
    authenticate_in(ctx, opts, conv, log, &mut NoHandle, connect)
}

/// [`authenticate`], leaving what the rest of the stack needs in `handle`: the password
/// (`forward_pass`) and a grace bind token for the session hook.
pub fn authenticate_in<D: LoginLink>(
    ctx: &LoginContext,
    opts: &Options,
    conv: &mut dyn Conversation,
    log: &mut dyn Syslog,
    handle: &mut dyn Handle,
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
        Err(e) if timed_out(&e) => {
            return overloaded(&mut login, &format!("connecting to toopherd: {e}"));
        }
        Err(e) => return unreachable(&mut login, &format!("cannot connect to toopherd: {e}")),
    };
    let answer = match daemon.call(&LoginRequest::Begin(ctx.clone())) {
        Ok(r) => r,
        Err(FrameError::Io(e)) if timed_out(&e) => {
            return overloaded(&mut login, &format!("waiting for toopherd's answer: {e}"));
        }
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
    let outcome = if opts.forward_pass {
        match crate::forward_pass::run(&mut login, &mut daemon, answer) {
            Ok((answer, password)) => {
                let outcome = second_factor(&mut login, &mut daemon, answer);
                // Only a login that passes hands its password on, and only one it asked for.
                if outcome == Outcome::Success
                    && password.as_ref().is_some_and(|p| !handle.set_authtok(p))
                {
                    login.note(
                        Level::Err,
                        "outcome=error forward_pass: PAM refused PAM_AUTHTOK",
                    );
                    return Outcome::ServiceErr;
                }
                outcome
            }
            Err(outcome) => outcome,
        }
    } else {
        second_factor(&mut login, &mut daemon, answer)
    };
    // A remote login that passed: its session hook may carry the grant into the audit
    // session the login will run in (toopherd says NotFound when there is none to carry).
    if outcome == Outcome::Success
        && handle.takes_grace_token()
        && ctx.rhost.as_deref().is_some_and(|r| !r.is_empty())
    {
        match daemon.call(&LoginRequest::GraceToken) {
            Ok(LoginResponse::GraceToken { token }) => handle.keep_grace_token(&token),
            Ok(other) => login.debug(&format!("no grace token: {}", describe(&other))),
            Err(e) => login.debug(&format!("no grace token: {e}")),
        }
    }
    outcome
}

/// The answer to `Begin`, through to the outcome.
fn second_factor<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    answer: LoginResponse,
) -> Outcome {
    let (login, daemon) = (login, daemon);
    match answer {
        LoginResponse::Allow { reason } => allowed(login, reason),
        // An automated grant can come back at once with autopush.
        LoginResponse::Granted { method, notice } => granted(login, method, notice.as_ref()),
        LoginResponse::Challenge {
            methods,
            push_pending,
        } => challenge(login, daemon, &methods, push_pending),
        LoginResponse::Register {
            registration_code,
            expires_in_secs,
        } => register(login, daemon, registration_code, expires_in_secs),
        // A denial, an unavailable backend, a refusal or an answer out of place.
        other => login.end(other),
    }
}

/// A grant; failures since the person's last login are told, and acknowledged so that
/// OpenSSH shows them (it holds PAM messages back until a prompt).
pub(crate) fn granted(
    login: &mut Login<'_>,
    method: Method,
    notice: Option<&FailureNotice>,
) -> Outcome {
    let told = match notice {
        Some(n) if login.ctx.notify && n.failures > 0 => {
            login.conv.info(&crate::notice::text(n));
            // The answer does not matter, nor does a client that went away: the second
            // factor passed.
            let _ = login.conv.prompt_visible(crate::notice::ACK_PROMPT);
            format!(" told_failures={}", n.failures)
        }
        _ => String::new(),
    };
    login.note(
        Level::Info,
        &format!("outcome=granted method={}{told}", method_name(method)),
    );
    Outcome::Success
}

/// A wait that ran out: toopherd is there (its socket takes connections, or took this
/// one) but too busy to answer in time.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// toopherd reached but not answering in time: denied under either failmode. Only a
/// toopherd that cannot be reached at all is `failmode`'s to decide; a busy one could be
/// made busy on purpose by any local user, who must never turn `failmode = "safe"` into
/// a way in without the second factor.
fn overloaded(login: &mut Login<'_>, why: &str) -> Outcome {
    login.note(
        Level::Err,
        &format!("outcome=unavailable reason=toopherd_busy (failmode does not apply) {why}"),
    );
    login
        .conv
        .error("The second-factor service is busy; try again.");
    Outcome::AuthInfoUnavail
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

/// Where the conversation stands between prompts.
struct ChallengeState {
    /// A push is out (autopush, or sent after Enter and not yet answered).
    push_pending: bool,
    /// Only a typed code will do (no push method, or the push timed out).
    otp_only: bool,
    /// Locked: only a recovery code is looked at.
    recovery_only: bool,
    /// Said at the start of the next prompt (see [`with_note`]).
    note: Option<String>,
}

impl ChallengeState {
    fn prompt(&mut self) -> String {
        let ask = if self.recovery_only {
            RECOVERY_PROMPT
        } else if self.otp_only {
            OTP_PROMPT
        } else if self.push_pending {
            AUTOPUSH_PROMPT
        } else {
            CHOOSE_PROMPT
        };
        with_note(&mut self.note, ask)
    }
}

/// What an answer means for the conversation.
enum Step {
    Done(Outcome),
    /// Ask again (with this note).
    Again(String),
}

fn challenge<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    methods: &[Method],
    push_pending: bool,
) -> Outcome {
    let can_push = methods.contains(&Method::Push);
    let can_type = methods
        .iter()
        .any(|m| matches!(m, Method::Otp | Method::RecoveryCode));
    if !can_push && !can_type {
        login.note(Level::Err, "outcome=error no method this module can offer");
        return Outcome::AuthErr;
    }
    let recovery_only = methods.iter().all(|m| *m == Method::RecoveryCode);
    let mut st = ChallengeState {
        push_pending: push_pending && can_push,
        otp_only: !can_push,
        recovery_only,
        note: recovery_only.then(|| LOCKED_NOTE.to_owned()),
    };
    let deadline = Instant::now() + login.opts.timeout;
    let tries = login.opts.prompts;
    for attempt in 1..=tries {
        let prompt = st.prompt();
        let code = match login.ask(&prompt, Echo::Hidden) {
            Ok(c) => c,
            Err(outcome) => {
                if st.push_pending {
                    let _ = daemon.call(&LoginRequest::Cancel);
                }
                return outcome;
            }
        };
        let step = if code.is_empty() && !st.otp_only {
            push_and_wait(login, daemon, &mut st, deadline)
        } else if code.is_empty() || code.expose().len() > MAX_CODE_LEN {
            Step::Again("No valid code entered.".into())
        } else {
            // A code typed while a push is pending settles that push (otp_auth).
            st.push_pending = false;
            match daemon.call(&LoginRequest::Otp { code }) {
                Ok(answer) => answer_step(login, &mut st, answer, attempt),
                Err(e) => Step::Done(login.failed_mid_login(&e)),
            }
        };
        match step {
            Step::Done(outcome) => return outcome,
            Step::Again(note) => {
                if attempt == tries {
                    // No prompt left to carry it: say it the only way left.
                    login.conv.error(&note);
                }
                st.note = Some(note);
            }
        }
    }
    login.note(
        Level::Notice,
        &format!("outcome=denied reason=max_tries tries={tries}"),
    );
    Outcome::MaxTries
}

/// Sends the push if it is not out yet, then waits for the answer in slices (so
/// toopherd notices if this process goes away), within the module's `timeout`.
fn push_and_wait<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    st: &mut ChallengeState,
    deadline: Instant,
) -> Step {
    if !st.push_pending {
        match daemon.call(&LoginRequest::Push) {
            Ok(LoginResponse::Pending) => st.push_pending = true,
            Ok(answer) => return answer_step(login, st, answer, 0),
            Err(e) => return Step::Done(login.failed_mid_login(&e)),
        }
        login.debug("push sent");
    }
    match wait_for_answer(login, daemon, deadline) {
        Ok(answer) => {
            st.push_pending = false;
            answer_step(login, st, answer, 0)
        }
        Err(outcome) => Step::Done(outcome),
    }
}

fn answer_step(
    login: &mut Login<'_>,
    st: &mut ChallengeState,
    answer: LoginResponse,
    attempt: u32,
) -> Step {
    match answer {
        LoginResponse::Granted { method, notice } => {
            Step::Done(granted(login, method, notice.as_ref()))
        }
        LoginResponse::Allow { reason } => Step::Done(allowed(login, reason)),
        LoginResponse::Denied {
            reason: DenyReason::WrongCode,
            ..
        } => {
            login.note(
                Level::Notice,
                &format!("outcome=retry reason=wrong_code attempt={attempt}"),
            );
            Step::Again("Incorrect code.".into())
        }
        LoginResponse::Denied {
            reason: DenyReason::PushDenied,
            message,
        } => {
            login.note(Level::Notice, "outcome=retry reason=push_denied");
            let why = message
                .map(|m| printable(&m, 200))
                .filter(|m| !m.trim().is_empty())
                .map_or_else(String::new, |m| format!(": {m}"));
            Step::Again(format!("Denied on your phone{why}."))
        }
        LoginResponse::Denied {
            reason: DenyReason::PushTimeout,
            ..
        } => {
            login.note(Level::Notice, "outcome=retry reason=push_timeout");
            st.otp_only = true;
            Step::Again("No answer from your phone. Type a one-time password instead.".into())
        }
        // The service requires a typed code for this account (Toopher 708).
        LoginResponse::Challenge { methods, .. } if methods.contains(&Method::Otp) => {
            st.otp_only = true;
            Step::Again("A one-time password is required.".into())
        }
        other => Step::Done(login.end(other)),
    }
}

pub(crate) fn allowed(login: &mut Login<'_>, reason: AllowReason) -> Outcome {
    let why = match reason {
        AllowReason::NotEnrolled => "not_enrolled",
        AllowReason::Exempt => "exempt",
        AllowReason::Failmode => "backend_unreachable_failmode_safe",
    };
    let level = if reason == AllowReason::Failmode {
        Level::Warning
    } else {
        Level::Info
    };
    login.note(level, &format!("outcome=allowed reason={why}"));
    Outcome::Success
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Otp => "otp",
        Method::RecoveryCode => "recovery_code",
        Method::Push => "push",
        Method::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests;
