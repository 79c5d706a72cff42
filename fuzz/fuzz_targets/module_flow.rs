//! The module's whole login against whatever toopherd answers: the answers are frames
//! read and decoded exactly as the module's client does (`read_frame`, `decode`), the
//! person's answers come from a script. Properties: the module grants only when toopherd
//! granted or allowed (or, with `failmode=safe`, when toopherd could not be reached at
//! all); nothing it shows or logs carries a control character from toopherd's text;
//! a typed code never reaches the log.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_toopher::Outcome;
use pam_toopher::conversation::{ConvError, Conversation};
use pam_toopher::daemon::LoginLink;
use pam_toopher::flow::{Level, Syslog, authenticate};
use pam_toopher::options::{Failmode, Options};
use pam_toopher_fuzz::{is_log_safe, is_terminal_safe};
use std::cell::Cell;
use std::time::Duration;
use toopher_ipc::{
    FrameError, LoginContext, LoginRequest, LoginResponse, Secret, decode, read_frame,
};

/// A code the person types; it must never appear in a log line.
const TYPED_OTP: &str = "731982";
const TYPED_RECOVERY: &str = "qzvb-xk2m-7tnd";

/// What the person answers, chosen by one byte each.
fn answer(b: u8) -> Result<&'static str, ConvError> {
    match b % 6 {
        0 => Ok(""),
        1 => Ok(TYPED_OTP),
        2 => Ok(TYPED_RECOVERY),
        3 => Ok("  731982\t"),
        4 => Ok("this answer is much longer than any code the module is willing to send on"),
        _ => Err(ConvError),
    }
}

struct Person<'a> {
    script: &'a [u8],
    shown: Vec<String>,
}

impl Person<'_> {
    fn next(&mut self, text: &str) -> Result<Secret, ConvError> {
        self.shown.push(text.to_owned());
        let (&b, rest) = self.script.split_first().ok_or(ConvError)?;
        self.script = rest;
        answer(b).map(Secret::new)
    }
}

impl Conversation for Person<'_> {
    fn prompt_hidden(&mut self, text: &str) -> Result<Secret, ConvError> {
        self.next(text)
    }
    fn prompt_visible(&mut self, text: &str) -> Result<Secret, ConvError> {
        self.next(text)
    }
    fn info(&mut self, text: &str) {
        self.shown.push(text.to_owned());
    }
    fn error(&mut self, text: &str) {
        self.shown.push(text.to_owned());
    }
}

/// What the module was told, as far as the properties care.
#[derive(Clone, Copy, Default)]
struct Told {
    /// The first exchange failed as an unreachable toopherd does (the failmode case).
    first_unreachable: bool,
    /// Some answer was a grant or an allow.
    granted: bool,
}

/// toopherd as a byte stream of frames. The module owns it; what it told is kept in `told`.
struct Stream<'a, 'b> {
    bytes: &'a [u8],
    calls: usize,
    told: &'b Cell<Told>,
}

impl LoginLink for Stream<'_, '_> {
    fn call(&mut self, _req: &LoginRequest) -> Result<LoginResponse, FrameError> {
        self.calls += 1;
        let answer = read_frame(&mut self.bytes).and_then(|body| decode::<LoginResponse>(&body));
        let mut told = self.told.get();
        match &answer {
            Ok(LoginResponse::Granted { .. } | LoginResponse::Allow { .. }) => told.granted = true,
            Err(FrameError::Io(_) | FrameError::Closed) if self.calls == 1 => {
                told.first_unreachable = true
            }
            _ => {}
        }
        self.told.set(told);
        answer
    }
    fn call_within(
        &mut self,
        req: &LoginRequest,
        _wait: Duration,
    ) -> Result<LoginResponse, FrameError> {
        self.call(req)
    }
}

#[derive(Default)]
struct Log(Vec<String>);

impl Syslog for Log {
    fn log(&mut self, _level: Level, msg: &str) {
        self.0.push(msg.to_owned());
    }
}

const SCRIPT_LEN: usize = 8;

/// `code` as a word of its own in `line` (not digits inside a longer number).
fn contains_code(line: &str, code: &str) -> bool {
    line.match_indices(code).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < SCRIPT_LEN {
        return;
    }
    let (script, stream) = rest.split_at(SCRIPT_LEN);
    let opts = Options {
        failmode: if flags & 1 == 1 {
            Failmode::Safe
        } else {
            Failmode::Secure
        },
        autopush: flags & 2 == 2,
        debug: flags & 4 == 4,
        prompts: 1 + u32::from(flags >> 3) % 4,
        ..Options::default()
    };
    let ctx = LoginContext {
        user: "alice".into(),
        service: "sshd".into(),
        rhost: Some("192.0.2.7".into()),
        tty: None,
        ruser: None,
        autopush: opts.autopush,
        notify: flags & 0x80 == 0x80,
    };
    let mut person = Person {
        script,
        shown: Vec::new(),
    };
    let mut log = Log::default();
    let told = Cell::new(Told::default());
    let outcome = authenticate(&ctx, &opts, &mut person, &mut log, || {
        Ok(Stream {
            bytes: stream,
            calls: 0,
            told: &told,
        })
    });
    let Told {
        first_unreachable,
        granted,
    } = told.get();

    if outcome == Outcome::Success {
        assert!(
            granted || (opts.failmode == Failmode::Safe && first_unreachable),
            "the module granted a login toopherd did not grant"
        );
    }
    if first_unreachable && opts.failmode == Failmode::Secure {
        assert_eq!(
            outcome,
            Outcome::AuthInfoUnavail,
            "failmode=secure fails closed"
        );
    }
    for text in &person.shown {
        assert!(is_terminal_safe(text), "control character shown: {text:?}");
    }
    let typed_in_answers = [TYPED_OTP, TYPED_RECOVERY]
        .iter()
        .any(|needle| stream.windows(needle.len()).any(|w| w == needle.as_bytes()));
    for line in &log.0 {
        assert!(is_log_safe(line), "control character logged: {line:?}");
        if !typed_in_answers {
            for secret in [TYPED_OTP, TYPED_RECOVERY] {
                assert!(
                    !contains_code(line, secret),
                    "a typed code was logged: {line:?}"
                );
            }
        }
    }
});
