//! Two-way registration at the login prompt (the account has no second factor yet and
//! toopherd is configured with `enroll = "two-way"`), then enrolment in the same login.
//! Everything the person must read is carried on prompts: OpenSSH shows PAM messages only
//! with a prompt, and sudo silences them.

use crate::daemon::LoginLink;
use crate::login::{Echo, Level, Login, MAX_CODE_LEN, Outcome, with_note};
use crate::text::{printable, printable_lines};
use crate::wait::wait_for_answer;
use std::time::Instant;
use toopher_ipc::{
    DenyReason, LoginRequest, LoginResponse, RegistrationNext, RegistrationStatus, Secret,
};

const FINISH_PROMPT: &str = "Type the code your authenticator app shows to finish enrolment: ";
const PHRASE_PROMPT: &str = "Type the pairing phrase the Toopher app shows: ";

/// Shows the registration code, takes response codes until one completes registration,
/// then enrols. Bounded by `prompts` at each stage.
pub(crate) fn register<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    code: String,
    expires_in_secs: u32,
) -> Outcome {
    let user = printable(&login.ctx.user, 64);
    let mut code = printable(&code, 12);
    let mut minutes = expires_in_secs.div_ceil(60);
    let mut note = None;
    login.note(Level::Notice, "outcome=registration_started");
    for _ in 0..login.opts.prompts {
        let prompt = with_note(
            &mut note,
            &format!(
                "This account has no second factor yet. Registration code: {code} (valid {minutes} min).\n\
                 Have it approved where you are known (an administrator runs: toopherctl registration approve {user} {code}),\n\
                 then type the response code: "
            ),
        );
        let response = match login.ask(&prompt, Echo::Visible) {
            Ok(r) => r,
            Err(o) => return o,
        };
        if response.is_empty() || response.expose().len() > MAX_CODE_LEN {
            note = Some("No response code entered.".into());
            continue;
        }
        match daemon.call(&LoginRequest::RegistrationResponse { code: response }) {
            Ok(LoginResponse::Registration {
                status,
                message,
                next,
            }) => {
                login.note(
                    Level::Notice,
                    &format!("outcome=registration status={}", status.code()),
                );
                let message = printable(&message, 300);
                match (status, next) {
                    (
                        RegistrationStatus::Registered,
                        RegistrationNext::EnrollTotp {
                            qr_text,
                            secret,
                            otpauth_uri,
                            recovery_codes,
                        },
                    ) => {
                        return enroll_totp(
                            login,
                            daemon,
                            &message,
                            qr_text.expose(),
                            &secret,
                            &otpauth_uri,
                            &recovery_codes,
                        );
                    }
                    (RegistrationStatus::Registered, RegistrationNext::PairPhrase) => {
                        return pair_phone(login, daemon, &message);
                    }
                    (
                        _,
                        RegistrationNext::StartOver {
                            registration_code,
                            expires_in_secs,
                        },
                    ) => {
                        code = printable(&registration_code, 12);
                        minutes = expires_in_secs.div_ceil(60);
                        note = Some(message);
                    }
                    (
                        RegistrationStatus::WrongResponse | RegistrationStatus::NotApproved,
                        RegistrationNext::Retry,
                    ) => {
                        note = Some(message);
                    }
                    _ => {
                        login.note(Level::Err, "outcome=error inconsistent registration answer");
                        return Outcome::AuthErr;
                    }
                }
            }
            Ok(other) => return login.end(other),
            Err(e) => return login.failed_mid_login(&e),
        }
    }
    if let Some(n) = note {
        login.conv.error(&n);
    }
    login.note(
        Level::Notice,
        "outcome=denied reason=registration_max_tries",
    );
    Outcome::MaxTries
}

/// Local backend: show the new TOTP enrolment, then its first code activates it.
fn enroll_totp<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    message: &str,
    qr_text: &str,
    secret: &Secret,
    uri: &Secret,
    recovery_codes: &[Secret],
) -> Outcome {
    let codes: Vec<String> = recovery_codes
        .iter()
        .map(|c| format!("    {}", printable(c.expose(), 20)))
        .collect();
    let mut shown = Some(format!(
        "{message}\n\n{}\nKey: {}\nURI: {}\n\nRecovery codes (each works once; keep them somewhere safe):\n{}\n",
        printable_lines(qr_text, 20_000),
        printable(secret.expose(), 64),
        printable(uri.expose(), 400),
        codes.join("\n")
    ));
    for _ in 0..login.opts.prompts {
        let prompt = with_note(&mut shown, FINISH_PROMPT);
        let code = match login.ask(&prompt, Echo::Hidden) {
            Ok(c) => c,
            Err(o) => return o,
        };
        if code.is_empty() || code.expose().len() > MAX_CODE_LEN {
            shown = Some("No code entered.".into());
            continue;
        }
        match daemon.call(&LoginRequest::Otp { code }) {
            Ok(LoginResponse::Granted { .. }) => {
                login.note(Level::Info, "outcome=granted method=otp detail=enrolled");
                return Outcome::Success;
            }
            Ok(LoginResponse::Denied {
                reason: DenyReason::WrongCode,
                ..
            }) => shown = Some("Incorrect code.".into()),
            Ok(other) => return login.end(other),
            Err(e) => return login.failed_mid_login(&e),
        }
    }
    login.note(
        Level::Notice,
        "outcome=denied reason=max_tries detail=enrolment",
    );
    Outcome::MaxTries
}

/// Toopher backend: the app's pairing phrase, then wait until the phone confirms.
fn pair_phone<D: LoginLink>(login: &mut Login<'_>, daemon: &mut D, message: &str) -> Outcome {
    let mut note = Some(message.to_owned());
    let deadline = Instant::now() + login.opts.timeout;
    for _ in 0..login.opts.prompts {
        let prompt = with_note(&mut note, PHRASE_PROMPT);
        let phrase = match login.ask(&prompt, Echo::Visible) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let answer = match daemon.call(&LoginRequest::PairPhrase {
            phrase: phrase.expose().to_owned(),
        }) {
            Ok(LoginResponse::Pending) => match wait_for_answer(login, daemon, deadline) {
                Ok(a) => a,
                Err(o) => return o,
            },
            Ok(a) => a,
            Err(e) => return login.failed_mid_login(&e),
        };
        match answer {
            LoginResponse::Granted { .. } => {
                login.note(Level::Info, "outcome=granted detail=paired");
                return Outcome::Success;
            }
            LoginResponse::Denied {
                reason: DenyReason::WrongCode,
                message,
            } => {
                note = Some(message.map_or_else(
                    || "That pairing phrase was refused.".into(),
                    |m| printable(&m, 200),
                ))
            }
            // A denial, an unavailable backend, a refusal or an answer out of place.
            other => return login.end(other),
        }
    }
    login.note(
        Level::Notice,
        "outcome=denied reason=max_tries detail=pairing",
    );
    Outcome::MaxTries
}
