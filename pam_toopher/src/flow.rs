//! One login's second factor, from `Begin` to a PAM outcome. Every state that is not a
//! plain grant ends in a denial; `failmode` is consulted only when toopherd could not be
//! reached at all.

use crate::conversation::{ConvError, Conversation};
use crate::daemon::Daemon;
use crate::options::{Failmode, Options};
use crate::text::printable;
use std::time::{Duration, Instant};
use toopher_ipc::{
    AllowReason, DenyReason, ErrorKind, FailureNotice, FrameError, LoginContext, LoginRequest,
    Method, Response, Secret,
};

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
/// Each `Wait` is this long at most, so toopherd soon notices a vanished module.
const WAIT_SLICE: Duration = Duration::from_secs(5);
/// Allowance on top of a slice for toopherd's last poll, which may have begun just
/// before the slice ended (one API request, at most 20 s, plus a 429 waited out).
const WAIT_MARGIN: Duration = crate::daemon::TIMEOUTS.io;
/// Longest input worth sending: a recovery code with its dashes is 14 characters.
pub(crate) const MAX_CODE_LEN: usize = 64;

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

pub(crate) struct Login<'a> {
    pub(crate) ctx: &'a LoginContext,
    pub(crate) opts: &'a Options,
    pub(crate) conv: &'a mut dyn Conversation,
    pub(crate) log: &'a mut dyn Syslog,
}

impl Login<'_> {
    pub(crate) fn note(&mut self, level: Level, what: &str) {
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

    pub(crate) fn debug(&mut self, what: &str) {
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
    let answer = match daemon.call(&LoginRequest::Begin(ctx.clone())) {
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
        Response::Allow { reason } => allowed(&mut login, reason),
        // An automated grant can come back at once with autopush.
        Response::Granted { method, notice } => granted(&mut login, method, notice.as_ref()),
        Response::Challenge {
            methods,
            push_pending,
        } => challenge(&mut login, &mut daemon, &methods, push_pending),
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
        Response::Register {
            registration_code,
            expires_in_secs,
        } => crate::registration::register(
            &mut login,
            &mut daemon,
            registration_code,
            expires_in_secs,
        ),
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

/// A grant; failures since the person's last login are told, and acknowledged so that
/// OpenSSH shows them (it holds PAM messages back until a prompt).
fn granted(login: &mut Login<'_>, method: Method, notice: Option<&FailureNotice>) -> Outcome {
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

pub(crate) fn daemon_error(login: &mut Login<'_>, kind: ErrorKind, message: &str) -> Outcome {
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

pub(crate) fn denied(login: &mut Login<'_>, reason: DenyReason, message: Option<&str>) -> Outcome {
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

/// Where the conversation stands between prompts.
struct ChallengeState {
    /// A push is out (autopush, or sent after Enter and not yet answered).
    push_pending: bool,
    /// Only a typed code will do (no push method, or the push timed out).
    otp_only: bool,
    /// Locked: only a recovery code is looked at.
    recovery_only: bool,
    /// Said at the start of the next prompt: OpenSSH shows PAM messages only together with
    /// a prompt, and sudo silences them, so what the person must know rides on the prompt.
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
        match self.note.take() {
            Some(note) => format!("{note}\n{ask}"),
            None => ask.to_owned(),
        }
    }
}

/// What an answer means for the conversation.
enum Step {
    Done(Outcome),
    /// Ask again (with this note).
    Again(String),
}

fn challenge<D: Daemon>(
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
        let input = match login.conv.prompt_hidden(&prompt) {
            Ok(c) => c,
            Err(ConvError) => {
                login.note(Level::Notice, "outcome=aborted conversation failed");
                if st.push_pending {
                    let _ = daemon.call(&LoginRequest::Cancel);
                }
                return Outcome::ConvErr;
            }
        };
        let code = Secret::new(input.expose().trim());
        drop(input);
        let step = if code.is_empty() && !st.otp_only {
            push_and_wait(login, daemon, &mut st, deadline)
        } else if code.is_empty() || code.expose().len() > MAX_CODE_LEN {
            Step::Again("No valid code entered.".into())
        } else {
            // A code typed while a push is pending settles that push (otp_auth).
            st.push_pending = false;
            match daemon.call(&LoginRequest::Otp { code }) {
                Ok(answer) => answer_step(login, &mut st, answer, attempt),
                Err(e) => Step::Done(failed_mid_login(login, &e)),
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
fn push_and_wait<D: Daemon>(
    login: &mut Login<'_>,
    daemon: &mut D,
    st: &mut ChallengeState,
    deadline: Instant,
) -> Step {
    if !st.push_pending {
        match daemon.call(&LoginRequest::Push) {
            Ok(Response::Pending) => st.push_pending = true,
            Ok(answer) => return answer_step(login, st, answer, 0),
            Err(e) => return Step::Done(failed_mid_login(login, &e)),
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

/// Waits in slices for toopherd's final answer to a pending push or pairing, within the
/// module's deadline (then cancels and denies).
pub(crate) fn wait_for_answer<D: Daemon>(
    login: &mut Login<'_>,
    daemon: &mut D,
    deadline: Instant,
) -> Result<Response, Outcome> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = daemon.call(&LoginRequest::Cancel);
            login.note(Level::Notice, "outcome=denied reason=module_timeout");
            login.conv.error("Timed out waiting for approval.");
            return Err(Outcome::AuthErr);
        }
        let slice = left.min(WAIT_SLICE);
        let wait = LoginRequest::Wait {
            timeout_ms: u32::try_from(slice.as_millis()).unwrap_or(u32::MAX),
        };
        match daemon.call_within(&wait, slice + WAIT_MARGIN) {
            Ok(Response::Pending) => continue,
            Ok(answer) => return Ok(answer),
            Err(e) => return Err(failed_mid_login(login, &e)),
        }
    }
}

/// toopherd was reached and then failed: never a failmode case.
pub(crate) fn failed_mid_login(login: &mut Login<'_>, e: &FrameError) -> Outcome {
    login.note(
        Level::Err,
        &format!("outcome=error toopherd failed during the login: {e}"),
    );
    login.conv.error("The second-factor service failed.");
    Outcome::AuthInfoUnavail
}

fn answer_step(
    login: &mut Login<'_>,
    st: &mut ChallengeState,
    answer: Response,
    attempt: u32,
) -> Step {
    match answer {
        Response::Granted { method, notice } => Step::Done(granted(login, method, notice.as_ref())),
        Response::Allow { reason } => Step::Done(allowed(login, reason)),
        Response::Denied {
            reason: DenyReason::WrongCode,
            ..
        } => {
            login.note(
                Level::Notice,
                &format!("outcome=retry reason=wrong_code attempt={attempt}"),
            );
            Step::Again("Incorrect code.".into())
        }
        Response::Denied {
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
        Response::Denied {
            reason: DenyReason::PushTimeout,
            ..
        } => {
            login.note(Level::Notice, "outcome=retry reason=push_timeout");
            st.otp_only = true;
            Step::Again("No answer from your phone. Type a one-time password instead.".into())
        }
        Response::Denied { reason, message } => {
            Step::Done(denied(login, reason, message.as_deref()))
        }
        // The service requires a typed code for this account (Toopher 708).
        Response::Challenge { methods, .. } if methods.contains(&Method::Otp) => {
            st.otp_only = true;
            Step::Again("A one-time password is required.".into())
        }
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
            Step::Done(Outcome::AuthInfoUnavail)
        }
        Response::Error { kind, message } => Step::Done(daemon_error(login, kind, &message)),
        other => {
            login.note(
                Level::Err,
                &format!("outcome=error unexpected answer {}", describe(&other)),
            );
            Step::Done(Outcome::AuthErr)
        }
    }
}

fn allowed(login: &mut Login<'_>, reason: AllowReason) -> Outcome {
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

pub(crate) fn method_name(m: Method) -> &'static str {
    match m {
        Method::Otp => "otp",
        Method::RecoveryCode => "recovery_code",
        Method::Push => "push",
        Method::Unknown => "unknown",
    }
}

/// The answer's type, for debug lines (never its content, which may hold secrets).
pub(crate) fn describe(r: &Response) -> &'static str {
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
        Response::Pairing(_) => "pairing",
        Response::Accounts { .. } => "accounts",
        Response::ResetLink { .. } => "reset_link",
        Response::Terminal(_) => "terminal",
        Response::RecoveryCodes { .. } => "recovery_codes",
        Response::RegistrationApproved { .. } => "registration_approved",
        Response::Registration { .. } => "registration",
        Response::Error { .. } => "error",
    }
}

#[cfg(test)]
mod tests;
