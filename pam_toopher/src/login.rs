//! What every part of a login shares: the login itself (context, options, conversation,
//! log), the PAM outcome, prompting, and the one ending for an answer that is not a grant.
//! The login's steps (`flow`, `registration`) build on this file; it knows none of them.

use crate::conversation::{ConvError, Conversation};
use crate::options::Options;
use crate::text::printable;
use toopher_ipc::{
    DenyReason, ErrorKind, ErrorReply, FrameError, LoginContext, LoginResponse, Secret,
};

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

/// Whether the person's answer is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Echo {
    /// A code: not echoed.
    Hidden,
    /// A registration response or a pairing phrase: not secret.
    Visible,
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

    /// Asks the person, and returns the answer trimmed. A failed conversation (the client
    /// went away) is logged and ends the login with `ConvErr`.
    pub(crate) fn ask(&mut self, text: &str, echo: Echo) -> Result<Secret, Outcome> {
        let answer = match echo {
            Echo::Hidden => self.conv.prompt_hidden(text),
            Echo::Visible => self.conv.prompt_visible(text),
        };
        match answer {
            Ok(a) => Ok(Secret::new(a.expose().trim())),
            Err(ConvError) => {
                self.note(Level::Notice, "outcome=aborted conversation failed");
                Err(Outcome::ConvErr)
            }
        }
    }

    /// The one ending for an answer the current step has no use of its own for: a
    /// denial, an unavailable backend, a refusal by toopherd, or an answer that does not
    /// belong here. Never a success.
    pub(crate) fn end(&mut self, answer: LoginResponse) -> Outcome {
        match answer {
            LoginResponse::Denied { reason, message } => self.denied(reason, message.as_deref()),
            LoginResponse::Unavailable { detail } => {
                self.note(
                    Level::Err,
                    &format!(
                        "outcome=unavailable toopherd backend: {}",
                        printable(&detail, 200)
                    ),
                );
                self.conv.error("The second-factor service is unavailable.");
                Outcome::AuthInfoUnavail
            }
            LoginResponse::Error(ErrorReply { kind, message }) => self.daemon_error(kind, &message),
            other => {
                self.note(
                    Level::Err,
                    &format!("outcome=error unexpected answer {}", describe(&other)),
                );
                Outcome::AuthErr
            }
        }
    }

    /// toopherd was reached and then failed: never a failmode case.
    pub(crate) fn failed_mid_login(&mut self, e: &FrameError) -> Outcome {
        self.note(
            Level::Err,
            &format!("outcome=error toopherd failed during the login: {e}"),
        );
        self.conv.error("The second-factor service failed.");
        Outcome::AuthInfoUnavail
    }

    fn daemon_error(&mut self, kind: ErrorKind, message: &str) -> Outcome {
        self.note(
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

    fn denied(&mut self, reason: DenyReason, message: Option<&str>) -> Outcome {
        self.note(
            Level::Notice,
            &format!("outcome=denied reason={}", reason.as_str()),
        );
        let text = match (reason, message) {
            (_, Some(m)) if !m.trim().is_empty() => printable(m, 300),
            (DenyReason::RateLimited, _) => "Too many failed attempts. Try again later.".into(),
            (DenyReason::NotEnrolled, _) => "This account has no second factor enrolled.".into(),
            _ => "Second-factor authentication failed.".into(),
        };
        self.conv.error(&text);
        Outcome::AuthErr
    }
}

/// `ask` preceded by the pending note, if any. OpenSSH shows PAM messages only together
/// with a prompt, and sudo silences them, so what the person must know rides on the prompt.
pub(crate) fn with_note(note: &mut Option<String>, ask: &str) -> String {
    match note.take() {
        Some(n) => format!("{n}\n{ask}"),
        None => ask.to_owned(),
    }
}

/// The answer's type, for debug lines (never its content, which may hold secrets).
pub(crate) fn describe(r: &LoginResponse) -> &'static str {
    match r {
        LoginResponse::Allow { .. } => "allow",
        LoginResponse::Challenge { .. } => "challenge",
        LoginResponse::Register { .. } => "register",
        LoginResponse::Granted { .. } => "granted",
        LoginResponse::Denied { .. } => "denied",
        LoginResponse::Pending => "pending",
        LoginResponse::Unavailable { .. } => "unavailable",
        LoginResponse::Registration { .. } => "registration",
        LoginResponse::GraceToken { .. } => "grace_token",
        LoginResponse::Bound { .. } => "bound",
        LoginResponse::Error(_) => "error",
    }
}
