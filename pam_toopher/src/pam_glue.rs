//! The PAM entry points: read the login from PAM, run [`crate::flow`], map the outcome.

use crate::conversation::{ConvError, Conversation};
use crate::flow;
use crate::handle::{GRACE_ENV, Handle};
use crate::login::{Level, Outcome, Syslog};
use crate::options::Options;
use crate::text::printable;
use pam::constants::{
    PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_SILENT, PAM_TEXT_INFO, PamFlag,
    PamResultCode,
};
use pam::conv::Conv;
use pam::items::{RHost, RUser, Service, Tty};
use pam::module::{PamHandle, PamHooks};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use toopher_ipc::{FrameError, LoginContext, LoginRequest, LoginResponse, Secret};
use zeroize::Zeroizing;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;
}

/// PAM_AUTHTOK from <security/_pam_types.h>.
const PAM_AUTHTOK: c_int = 6;

/// What the login leaves in the PAM handle: the forwarded password and the grace token.
/// libpam's item and environment calls take the handle as mutable; they touch the item
/// table and environment list, never the conversation or data this module borrows
/// (`PamHandle` is an opaque, zero-sized type on the Rust side: no Rust reference covers
/// the memory libpam changes).
struct PamState {
    pamh: *mut PamHandle,
    /// The `grace_session` option: the session hook is configured, so a grace bind token
    /// has somewhere to go. Without it none is asked for (it would only linger in the PAM
    /// environment, which sshd copies into the session's environment).
    grace_session: bool,
}

/// `parts` joined into one NUL-terminated buffer that is zeroized on drop (no intermediate
/// `String` or `CString` left behind with a secret in it); `None` when a part holds a NUL.
fn nul_terminated(parts: &[&str]) -> Option<Zeroizing<Vec<u8>>> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    let mut buf = Zeroizing::new(Vec::with_capacity(len));
    for p in parts {
        if p.as_bytes().contains(&0) {
            return None;
        }
        buf.extend_from_slice(p.as_bytes());
    }
    buf.push(0);
    Some(buf)
}

impl Handle for PamState {
    fn set_authtok(&mut self, password: &Secret) -> bool {
        let Some(c) = nul_terminated(&[password.expose()]) else {
            return false;
        };
        // SAFETY: the handle is live for this call; libpam copies the NUL-terminated item.
        unsafe { pam_set_item(self.pamh, PAM_AUTHTOK, c.as_ptr().cast()) == 0 }
    }

    fn takes_grace_token(&self) -> bool {
        self.grace_session
    }

    fn keep_grace_token(&mut self, token: &Secret) {
        let Some(c) = nul_terminated(&[GRACE_ENV, "=", token.expose()]) else {
            return;
        };
        // SAFETY: the handle is live for this call; libpam copies the NUL-terminated string.
        let _ = unsafe { pam_putenv(self.pamh, c.as_ptr().cast()) };
    }
}

/// Takes the grace token out of the PAM environment (so it never reaches the person's
/// environment); `None` when there is none.
fn take_grace_token(pamh: *mut PamHandle) -> Option<Secret> {
    let name = CString::new(GRACE_ENV).ok()?;
    // SAFETY: the handle is live; pam_getenv returns null or a string libpam owns, which
    // is copied before the pam_putenv below frees it.
    let token = unsafe {
        let v = pam_getenv(pamh, name.as_ptr());
        if v.is_null() {
            return None;
        }
        Secret::new(CStr::from_ptr(v).to_string_lossy().as_ref())
    };
    // SAFETY: the handle is live; a name without `=` removes the variable.
    let _ = unsafe { pam_putenv(pamh, name.as_ptr()) };
    Some(token)
}

/// pam_syslog(3): authpriv, tagged with the module and service by libpam.
struct PamLog<'a>(&'a PamHandle);

impl Syslog for PamLog<'_> {
    fn log(&mut self, level: Level, msg: &str) {
        let priority = match level {
            Level::Err => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
        let Ok(text) = CString::new(printable(msg, 1000)) else {
            return;
        };
        // SAFETY: the handle is live for this call; "%s" with one C string argument.
        unsafe { pam_syslog(self.0, priority, c"%s".as_ptr(), text.as_ptr()) };
    }
}

/// The application's conversation function; info and error lines are dropped under PAM_SILENT.
struct PamConversation<'a> {
    conv: Option<Conv<'a>>,
    silent: bool,
}

impl PamConversation<'_> {
    fn ask(&self, style: c_int, text: &str) -> Result<Secret, ConvError> {
        let conv = self.conv.as_ref().ok_or(ConvError)?;
        match conv.send(style, text) {
            Ok(Some(answer)) => {
                let s = answer.as_str().map_err(|_| ConvError)?;
                Ok(Secret::new(s))
            }
            Ok(None) => Ok(Secret::default()),
            Err(_) => Err(ConvError),
        }
    }
}

impl Conversation for PamConversation<'_> {
    fn prompt_hidden(&mut self, text: &str) -> Result<Secret, ConvError> {
        self.ask(PAM_PROMPT_ECHO_OFF, text)
    }

    fn prompt_visible(&mut self, text: &str) -> Result<Secret, ConvError> {
        self.ask(PAM_PROMPT_ECHO_ON, text)
    }

    fn info(&mut self, text: &str) {
        if let (false, Some(conv)) = (self.silent, self.conv.as_ref()) {
            let _ = conv.send(PAM_TEXT_INFO, text);
        }
    }

    fn error(&mut self, text: &str) {
        if let (false, Some(conv)) = (self.silent, self.conv.as_ref()) {
            let _ = conv.send(PAM_ERROR_MSG, text);
        }
    }
}

fn item<'a, T>(pamh: &'a PamHandle, get: impl Fn(T) -> &'a CStr) -> Option<String>
where
    T: pam::items::Item<'a>,
{
    match pamh.get_item::<T>() {
        Ok(Some(v)) => Some(get(v).to_string_lossy().into_owned()).filter(|s| !s.is_empty()),
        _ => None,
    }
}

fn to_pam(outcome: Outcome) -> PamResultCode {
    match outcome {
        Outcome::Success => PamResultCode::PAM_SUCCESS,
        Outcome::AuthErr => PamResultCode::PAM_AUTH_ERR,
        Outcome::MaxTries => PamResultCode::PAM_MAXTRIES,
        Outcome::AuthInfoUnavail => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        Outcome::ConvErr => PamResultCode::PAM_CONV_ERR,
        Outcome::ServiceErr => PamResultCode::PAM_SERVICE_ERR,
    }
}

fn authenticate(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let opts = match Options::parse(args.iter().map(String::as_str)) {
        Ok(o) => o,
        Err(e) => {
            PamLog(pamh).log(Level::Err, &format!("refusing to run: {e}"));
            let mut conv = PamConversation {
                conv: pamh.get_item::<Conv>().ok().flatten(),
                silent: flags & PAM_SILENT != 0,
            };
            conv.error(crate::options::MISCONFIGURED);
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    let user = match pamh.get_user(None) {
        Ok(u) if !u.is_empty() => u,
        Ok(_) => return PamResultCode::PAM_USER_UNKNOWN,
        Err(code) => return code,
    };
    // For the handle's item and environment calls below (see `PamState`).
    let raw: *mut PamHandle = pamh;
    let pamh: &PamHandle = pamh;
    let ctx = LoginContext {
        user,
        service: item::<Service>(pamh, |v| v.0).unwrap_or_else(|| "unknown".into()),
        rhost: item::<RHost>(pamh, |v| v.0),
        tty: item::<Tty>(pamh, |v| v.0),
        ruser: item::<RUser>(pamh, |v| v.0),
        autopush: opts.autopush,
        // Under PAM_SILENT the notice cannot be shown: toopherd keeps it for later.
        notify: flags & PAM_SILENT == 0,
    };
    let mut conv = PamConversation {
        conv: pamh.get_item::<Conv>().ok().flatten(),
        silent: flags & PAM_SILENT != 0,
    };
    let mut log = PamLog(pamh);
    let mut state = PamState {
        pamh: raw,
        grace_session: opts.grace_session,
    };
    let outcome = flow::authenticate_in(&ctx, &opts, &mut conv, &mut log, &mut state, || {
        crate::daemon::connect(&opts.socket)
    });
    to_pam(outcome)
}

/// The session hook, after pam_loginuid: a login that passed its second factor binds its
/// grant to the audit session it now runs in, so a sudo inside it is within the grace
/// period. Never fails the session: without a binding the grace only does less.
fn open_session(pamh: &mut PamHandle, args: &[&CStr]) -> PamResultCode {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let opts = match Options::parse(args.iter().map(String::as_str)) {
        Ok(o) => o,
        Err(e) => {
            PamLog(pamh).log(Level::Err, &format!("refusing to run: {e}"));
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    let Some(token) = take_grace_token(pamh) else {
        return PamResultCode::PAM_IGNORE;
    };
    let user = match pamh.get_user(None) {
        Ok(u) if !u.is_empty() => u,
        _ => return PamResultCode::PAM_IGNORE,
    };
    let answer = crate::daemon::connect(&opts.socket)
        .map_err(FrameError::Io)
        .and_then(|mut d| {
            crate::daemon::LoginLink::call(
                &mut d,
                &LoginRequest::BindSession {
                    user: user.clone(),
                    token,
                },
            )
        });
    let mut log = PamLog(pamh);
    match answer {
        Ok(LoginResponse::Bound { session }) => {
            log.log(
                Level::Info,
                &format!(
                    "user={} grace bound to audit session {session}",
                    printable(&user, 64)
                ),
            );
            PamResultCode::PAM_SUCCESS
        }
        Ok(other) => {
            log.log(
                Level::Notice,
                &format!(
                    "user={} grace not bound: {}",
                    printable(&user, 64),
                    crate::login::describe(&other)
                ),
            );
            PamResultCode::PAM_IGNORE
        }
        Err(e) => {
            log.log(
                Level::Notice,
                &format!("user={} grace not bound: {e}", printable(&user, 64)),
            );
            PamResultCode::PAM_IGNORE
        }
    }
}

/// Runs an entry point; a panic becomes a logged denial, never an unwind into C.
fn guarded(pamh: &mut PamHandle, f: impl FnOnce(&mut PamHandle) -> PamResultCode) -> PamResultCode {
    // The closure only reborrows the handle: once catch_unwind returns, it is ours again.
    match catch_unwind(AssertUnwindSafe(|| f(&mut *pamh))) {
        Ok(code) => code,
        Err(payload) => {
            PamLog(pamh).log(Level::Err, "internal error (panic); denying");
            std::mem::forget(payload);
            PamResultCode::PAM_AUTH_ERR
        }
    }
}

pub struct PamToopher;
pam::pam_hooks!(PamToopher);

impl PamHooks for PamToopher {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(pamh, |pamh| authenticate(pamh, &args, flags))
    }

    /// No credentials of its own to set; success keeps `auth` stacks whole (as
    /// pam_google_authenticator and pam_duo do).
    fn sm_setcred(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }

    /// No opinion on accounts: ignored, so the rest of the stack decides.
    fn acct_mgmt(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }

    /// Binds a passed second factor to the login's audit session (grace period); must run
    /// after pam_loginuid.
    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        guarded(pamh, |pamh| open_session(pamh, &args))
    }

    fn sm_close_session(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
}
