//! `forward_pass`: password and one-time password typed into one prompt, for clients that
//! cannot do keyboard-interactive (sshd `PasswordAuthentication`, GUI SFTP clients, VPN and
//! RADIUS front ends). The trailing code is taken off and verified here; the password is
//! handed to the next module as PAM_AUTHTOK (which then needs `use_first_pass`).

use crate::daemon::LoginLink;
use crate::login::{Level, Login, MAX_CODE_LEN, Outcome};
use crate::wait::wait_for_answer;
use std::time::Instant;
use toopher_ipc::{LoginRequest, LoginResponse, Method, Secret};

/// Digits of a one-time password.
pub const CODE_DIGITS: usize = 6;

/// The prompt when a second factor is needed.
pub const PROMPT: &str = "Password & one-time password: ";
/// The prompt when the policy needs no second factor: the answer is all password.
pub const PASSWORD_PROMPT: &str = "Password: ";

/// One answer, taken apart.
pub struct Split {
    pub password: Secret,
    /// `None`: no code was typed (with a push-capable backend: send a push).
    pub code: Option<Secret>,
}

/// The answer does not end in a code and no push can stand in for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoCode;

/// Splits `answer` into password and trailing [`CODE_DIGITS`]-digit code. Without such a
/// code, the whole answer is the password when `push` is possible (an empty code after the
/// password means "push"), and [`NoCode`] otherwise. A password that itself ends in six
/// digits must therefore always be followed by a code.
pub fn split(answer: &str, push: bool) -> Result<Split, NoCode> {
    let bytes = answer.as_bytes();
    let tail = bytes.len().checked_sub(CODE_DIGITS);
    match tail {
        // The last six bytes are ASCII digits, so `at` is a char boundary.
        Some(at) if bytes[at..].iter().all(u8::is_ascii_digit) => Ok(Split {
            password: Secret::new(&answer[..at]),
            code: Some(Secret::new(&answer[at..])),
        }),
        _ if push => Ok(Split {
            password: Secret::new(answer),
            code: None,
        }),
        _ => Err(NoCode),
    }
}

/// Said when toopherd asks for a two-way enrolment: its prompts do not fit in one line.
pub const NO_REGISTRATION: &str = "This account must be paired with the Toopher app first. \
     Log in once with keyboard-interactive authentication (for example plain `ssh`) to pair it.";
/// Said when the answer holds no password: no push is sent for it.
pub const NO_PASSWORD: &str = "Type your password, then the one-time password.";

/// The login after toopherd's answer to `Begin`, with one prompt for password and code:
/// toopherd's final answer and the password, which the caller hands on only when that
/// answer lets the login through. The password is `Some` only when one was asked for (and
/// split off a code): the next module is never handed an empty or unasked PAM_AUTHTOK.
/// `Err` is an outcome already decided here.
pub(crate) fn run<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    begin: LoginResponse,
) -> Result<(LoginResponse, Option<Secret>), Outcome> {
    match begin {
        // No second factor for this login, or one already given (an automated grant that
        // comes back at once with autopush): the whole answer is the password.
        LoginResponse::Allow { .. } | LoginResponse::Granted { .. } => {
            let password = ask(login, PASSWORD_PROMPT)?;
            Ok((begin, Some(password)))
        }
        LoginResponse::Challenge {
            methods,
            push_pending,
        } => {
            let can_push = methods.contains(&Method::Push);
            let cancel = |daemon: &mut D| {
                if push_pending {
                    let _ = daemon.call(&LoginRequest::Cancel);
                }
            };
            let answer = match ask(login, PROMPT) {
                Ok(a) => a,
                Err(o) => {
                    cancel(daemon);
                    return Err(o);
                }
            };
            let split = match split(answer.expose(), can_push) {
                // An empty answer (or one without a password before "push"): nobody is
                // sent a push for a login that has not even typed a password.
                Ok(s) if s.code.is_none() && s.password.expose().is_empty() => {
                    cancel(daemon);
                    login.note(
                        Level::Notice,
                        "outcome=denied reason=no_password forward_pass",
                    );
                    login.conv.error(NO_PASSWORD);
                    return Err(Outcome::AuthErr);
                }
                Ok(s) => s,
                Err(NoCode) => {
                    cancel(daemon);
                    login.note(Level::Notice, "outcome=denied reason=no_code forward_pass");
                    login
                        .conv
                        .error("Type the one-time password right after the password.");
                    return Err(Outcome::AuthErr);
                }
            };
            drop(answer);
            let verdict = match split.code {
                Some(code) if code.expose().len() <= MAX_CODE_LEN => {
                    daemon.call(&LoginRequest::Otp { code })
                }
                Some(_) => return Err(Outcome::AuthErr),
                None => push(login, daemon, push_pending),
            };
            match verdict {
                Ok(answer) => Ok((answer, Some(split.password))),
                Err(e) => Err(login.failed_mid_login(&e)),
            }
        }
        // A two-way enrolment needs prompts of its own: not in one line.
        LoginResponse::Register { .. } => {
            login.note(
                Level::Notice,
                "outcome=denied reason=registration_needs_prompts forward_pass",
            );
            login.conv.error(NO_REGISTRATION);
            Err(Outcome::AuthErr)
        }
        // Denials and the rest end the login as usual, with no password asked.
        other => Ok((other, None)),
    }
}

/// An empty code: the push (sent now, or already out with `autopush`) and its answer.
fn push<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    pending: bool,
) -> Result<LoginResponse, toopher_ipc::FrameError> {
    if !pending {
        match daemon.call(&LoginRequest::Push)? {
            LoginResponse::Pending => {}
            other => return Ok(other),
        }
    }
    let deadline = Instant::now() + login.opts.timeout;
    match wait_for_answer(login, daemon, deadline) {
        Ok(answer) => Ok(answer),
        // Timed out (cancelled and said), or toopherd failed (logged): a denial.
        Err(_) => Ok(LoginResponse::denied(toopher_ipc::DenyReason::PushTimeout)),
    }
}

/// The raw answer (a password is not trimmed); a failed conversation ends the login.
fn ask(login: &mut Login<'_>, prompt: &str) -> Result<Secret, Outcome> {
    login.conv.prompt_hidden(prompt).map_err(|_| {
        login.note(Level::Notice, "outcome=aborted conversation failed");
        Outcome::ConvErr
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailing_six_digits_are_the_code() {
        let s = split("correct horse123456", false).unwrap();
        assert_eq!(s.password.expose(), "correct horse");
        assert_eq!(s.code.unwrap().expose(), "123456");
        // A password ending in digits keeps them: only the last six are the code.
        let s = split("pw2024123456", false).unwrap();
        assert_eq!(s.password.expose(), "pw2024");
        // Multi-byte characters before the code are fine.
        let s = split("pässwört654321", false).unwrap();
        assert_eq!(s.password.expose(), "pässwört");
        // Only a code: an empty password, for the next module to refuse.
        let s = split("654321", false).unwrap();
        assert_eq!(s.password.expose(), "");
    }

    #[test]
    fn without_a_code_push_or_refuse() {
        assert_eq!(split("password", false).err(), Some(NoCode));
        assert_eq!(split("pw12345", false).err(), Some(NoCode));
        assert_eq!(split("", false).err(), Some(NoCode));
        assert_eq!(
            split("12345６", false).err(),
            Some(NoCode),
            "fullwidth digit"
        );
        let s = split("password", true).unwrap();
        assert_eq!(s.password.expose(), "password");
        assert!(s.code.is_none());
    }
}
