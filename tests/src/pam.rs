//! Drives the real libpam: `pam_start_confdir` with a private PAM directory (nothing is
//! written to the machine's /etc/pam.d) and a scripted conversation that records every
//! message the module shows.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_void};
use std::os::raw::c_int;
use std::path::Path;

pub const PAM_SUCCESS: i32 = 0;
pub const PAM_SERVICE_ERR: i32 = 3;
pub const PAM_AUTH_ERR: i32 = 7;
pub const PAM_AUTHINFO_UNAVAIL: i32 = 9;
pub const PAM_MAXTRIES: i32 = 11;
pub const PAM_CONV_ERR: i32 = 19;

pub const PROMPT_ECHO_OFF: i32 = 1;
pub const PROMPT_ECHO_ON: i32 = 2;
pub const ERROR_MSG: i32 = 3;
pub const TEXT_INFO: i32 = 4;

const PAM_RHOST: c_int = 4;

/// The few libpam and libpam_misc entry points the harness and `pam-login` use.
pub mod ffi {
    use std::ffi::c_void;
    use std::os::raw::{c_char, c_int};

    #[repr(C)]
    pub struct PamMessage {
        pub msg_style: c_int,
        pub msg: *const c_char,
    }

    #[repr(C)]
    pub struct PamResponse {
        pub resp: *mut c_char,
        pub resp_retcode: c_int,
    }

    pub type ConvFn = unsafe extern "C" fn(
        c_int,
        *mut *const PamMessage,
        *mut *mut PamResponse,
        *mut c_void,
    ) -> c_int;

    #[repr(C)]
    pub struct PamConv {
        pub conv: ConvFn,
        pub appdata_ptr: *mut c_void,
    }

    #[link(name = "pam")]
    unsafe extern "C" {
        pub fn pam_start_confdir(
            service: *const c_char,
            user: *const c_char,
            conv: *const PamConv,
            confdir: *const c_char,
            pamh: *mut *mut c_void,
        ) -> c_int;
        pub fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
        pub fn pam_setcred(pamh: *mut c_void, flags: c_int) -> c_int;
        pub fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
        pub fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
        pub fn pam_strerror(pamh: *mut c_void, errnum: c_int) -> *const c_char;
        pub fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    }

    #[link(name = "pam_misc")]
    unsafe extern "C" {
        /// The terminal conversation of `login` and friends.
        pub fn misc_conv(
            n: c_int,
            msgs: *mut *const PamMessage,
            resp: *mut *mut PamResponse,
            appdata: *mut c_void,
        ) -> c_int;
    }
}

use ffi::*;

/// A private PAM configuration directory with one service file.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub service: String,
}

impl Stack {
    pub fn new(service: &str, contents: &str) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("pam-d-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join(service), contents).expect("write service");
        Stack {
            dir,
            service: service.into(),
        }
    }

    /// `auth required pam_toopher.so <options>` with the socket of `socket`, plus the
    /// account and setcred phases so the module is exercised as a stacked module.
    pub fn toopher(socket: &Path, options: &str) -> Stack {
        let module = crate::module_path();
        Stack::new(
            "toopher-test",
            &format!(
                "auth     required {m} socket={s} {options}\n\
                 account  required pam_permit.so\n\
                 account  required {m}\n",
                m = module.display(),
                s = socket.display()
            ),
        )
    }
}

/// What one PAM transaction did.
#[derive(Debug, Default)]
pub struct Transcript {
    pub auth: i32,
    pub setcred: Option<i32>,
    pub acct: Option<i32>,
    /// Every message the module showed, with its style.
    pub messages: Vec<(i32, String)>,
}

impl Transcript {
    pub fn prompts(&self) -> usize {
        self.messages
            .iter()
            .filter(|(s, _)| *s == PROMPT_ECHO_OFF || *s == PROMPT_ECHO_ON)
            .count()
    }

    pub fn shown(&self, needle: &str) -> bool {
        self.messages.iter().any(|(_, m)| m.contains(needle))
    }
}

/// Answers each prompt (style, text); `None` ends the conversation (the person left).
type Responder<'a> = dyn FnMut(i32, &str) -> Option<String> + 'a;

struct Script<'a> {
    respond: &'a mut Responder<'a>,
    messages: Vec<(i32, String)>,
}

unsafe extern "C" fn scripted(
    n: c_int,
    msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    // SAFETY: libpam passes n messages and our Script as appdata.
    unsafe {
        let script = &mut *(appdata as *mut Script<'_>);
        let n = n as usize;
        let out = libc::calloc(n, std::mem::size_of::<PamResponse>()) as *mut PamResponse;
        for i in 0..n {
            // Linux-PAM passes an array of pointers.
            let m = &**msgs.add(i);
            let text = if m.msg.is_null() {
                String::new()
            } else {
                CStr::from_ptr(m.msg).to_string_lossy().into_owned()
            };
            script.messages.push((m.msg_style, text));
            if m.msg_style == PROMPT_ECHO_OFF || m.msg_style == PROMPT_ECHO_ON {
                let text = script
                    .messages
                    .last()
                    .map(|(_, t)| t.clone())
                    .unwrap_or_default();
                let Some(answer) = (script.respond)(m.msg_style, &text) else {
                    // No more answers: the person walked away.
                    for j in 0..i {
                        libc::free((*out.add(j)).resp as *mut c_void);
                    }
                    libc::free(out as *mut c_void);
                    return PAM_CONV_ERR;
                };
                let c = CString::new(answer).expect("answer");
                (*out.add(i)).resp = libc::strdup(c.as_ptr());
            }
        }
        *resp = out;
        PAM_SUCCESS
    }
}

/// Runs `pam_authenticate` (and, when it succeeds, `pam_setcred` and `pam_acct_mgmt`)
/// for `user` on `stack`, answering prompts from `answers` in order.
pub fn login(stack: &Stack, user: &str, answers: &[&str], rhost: Option<&str>) -> Transcript {
    let mut answers: VecDeque<String> = answers.iter().map(|s| s.to_string()).collect();
    login_with(stack, user, rhost, &mut |_, _| answers.pop_front())
}

/// One transaction as the benchmark times it, and as sshd runs the auth phase: only
/// `pam_start_confdir`, `pam_authenticate` and `pam_end` (which loads and unloads every
/// module of the stack), each prompt answered with `answer`. Returns pam_authenticate's
/// result and the number of prompts shown.
pub fn authenticate(stack: &Stack, user: &str, answer: &str) -> (i32, usize) {
    let mut respond = |_: i32, _: &str| Some(answer.to_string());
    let mut script = Script {
        respond: &mut respond,
        messages: Vec::new(),
    };
    let conv = PamConv {
        conv: scripted,
        appdata_ptr: &mut script as *mut Script<'_> as *mut c_void,
    };
    let service = CString::new(stack.service.as_str()).expect("service");
    let user_c = CString::new(user).expect("user");
    let confdir = CString::new(stack.dir.path().to_str().expect("utf8 path")).expect("confdir");
    let mut pamh: *mut c_void = std::ptr::null_mut();
    // SAFETY: all pointers outlive the transaction, which ends with pam_end below.
    let rc = unsafe {
        let rc = pam_start_confdir(
            service.as_ptr(),
            user_c.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        );
        assert_eq!(rc, PAM_SUCCESS, "pam_start_confdir failed");
        let rc = pam_authenticate(pamh, 0);
        pam_end(pamh, rc);
        rc
    };
    let prompts = script
        .messages
        .iter()
        .filter(|(s, _)| *s == PROMPT_ECHO_OFF || *s == PROMPT_ECHO_ON)
        .count();
    (rc, prompts)
}

/// Like [`login`], answering each prompt with `respond(style, prompt text)`.
pub fn login_with<'a>(
    stack: &Stack,
    user: &str,
    rhost: Option<&str>,
    respond: &'a mut Responder<'a>,
) -> Transcript {
    login_flags(stack, user, rhost, 0, respond)
}

/// `PAM_SILENT`: the application asks for no informational or error messages.
pub const PAM_SILENT: i32 = 0x8000;

/// Like [`login_with`], with `flags` for each PAM call (e.g. [`PAM_SILENT`]).
pub fn login_flags<'a>(
    stack: &Stack,
    user: &str,
    rhost: Option<&str>,
    flags: i32,
    respond: &'a mut Responder<'a>,
) -> Transcript {
    let mut script = Script {
        respond,
        messages: Vec::new(),
    };
    let conv = PamConv {
        conv: scripted,
        appdata_ptr: &mut script as *mut Script<'_> as *mut c_void,
    };
    let service = CString::new(stack.service.as_str()).expect("service");
    let user_c = CString::new(user).expect("user");
    let confdir = CString::new(stack.dir.path().to_str().expect("utf8 path")).expect("confdir");
    let mut pamh: *mut c_void = std::ptr::null_mut();
    let mut t = Transcript::default();
    // SAFETY: all pointers outlive the transaction, which ends with pam_end below.
    unsafe {
        let rc = pam_start_confdir(
            service.as_ptr(),
            user_c.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        );
        assert_eq!(rc, PAM_SUCCESS, "pam_start_confdir failed");
        let rhost_c = rhost.map(|r| CString::new(r).expect("rhost"));
        if let Some(r) = &rhost_c {
            pam_set_item(pamh, PAM_RHOST, r.as_ptr() as *const c_void);
        }
        t.auth = pam_authenticate(pamh, flags);
        if t.auth == PAM_SUCCESS {
            t.setcred = Some(pam_setcred(pamh, flags | 0x2)); // PAM_ESTABLISH_CRED
            t.acct = Some(pam_acct_mgmt(pamh, flags));
        }
        pam_end(pamh, t.auth);
    }
    t.messages = std::mem::take(&mut script.messages);
    t
}
