//! pam-script: one real PAM transaction (pam_start_confdir, pam_authenticate and, when it
//! succeeds, pam_setcred and pam_acct_mgmt, then pam_end) with a scripted conversation,
//! small enough to run under valgrind. It counts the process's descriptors and threads
//! before pam_start and after pam_end, so a module that leaves either behind is caught.
//!
//! ```text
//! pam-script --confdir DIR --service NAME --user USER [--rhost HOST]
//!            [--conv script|null-reply|null-text] [--answer TEXT]... [--self-test leak]
//! ```
//!
//! `--self-test leak` loses one heap block on purpose after pam_end, so a test can prove
//! memcheck, as the suite runs it, fails a run with a definite leak.
//!
//! Conversations: `script` answers prompts with the `--answer`s in order and fails
//! (PAM_CONV_ERR) once they run out, as when the person goes away; `null-reply` returns
//! PAM_SUCCESS without a response array; `null-text` returns responses whose text is null.
//!
//! Prints `key=value` lines (`auth=`, `setcred=`, `acct=`, `fds_before=`, `fds_after=`,
//! `threads_before=`, `threads_after=`, and `msg=<style> <text>` per message) and exits
//! 0 when the transaction ran and left nothing behind, 3 when it leaked a descriptor or a
//! thread, 2 on bad usage or when pam_start_confdir failed.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_void};
use std::os::raw::c_int;
use toopher_tests::pam::ffi::{
    PamConv, PamMessage, PamResponse, pam_acct_mgmt, pam_authenticate, pam_end, pam_set_item,
    pam_setcred, pam_start_confdir,
};
use toopher_tests::pam::{PAM_CONV_ERR, PAM_SUCCESS, PROMPT_ECHO_OFF, PROMPT_ECHO_ON};

const PAM_RHOST: c_int = 4;
const PAM_ESTABLISH_CRED: c_int = 0x2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Script,
    NullReply,
    NullText,
}

struct Script {
    mode: Mode,
    answers: VecDeque<CString>,
    messages: Vec<(c_int, String)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: pam-script --confdir DIR --service NAME --user USER [--rhost HOST] \
         [--conv script|null-reply|null-text] [--answer TEXT]... [--self-test leak]"
    );
    std::process::exit(2)
}

unsafe extern "C" fn conversation(
    n: c_int,
    msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    // SAFETY: libpam passes our Script as appdata and n valid messages (Linux-PAM: an
    // array of pointers); the response array is malloc'ed, as the module frees it.
    unsafe {
        let script = &mut *(appdata as *mut Script);
        let n = usize::try_from(n).unwrap_or(0);
        for i in 0..n {
            let m = &**msgs.add(i);
            let text = if m.msg.is_null() {
                String::new()
            } else {
                CStr::from_ptr(m.msg).to_string_lossy().into_owned()
            };
            script.messages.push((m.msg_style, text));
        }
        match script.mode {
            Mode::NullReply => return PAM_SUCCESS,
            Mode::NullText => {
                *resp = libc::calloc(n.max(1), std::mem::size_of::<PamResponse>()).cast();
                return if (*resp).is_null() {
                    PAM_CONV_ERR
                } else {
                    PAM_SUCCESS
                };
            }
            Mode::Script => {}
        }
        let out: *mut PamResponse =
            libc::calloc(n.max(1), std::mem::size_of::<PamResponse>()).cast();
        if out.is_null() {
            return PAM_CONV_ERR;
        }
        for i in 0..n {
            let style = (**msgs.add(i)).msg_style;
            if style != PROMPT_ECHO_OFF && style != PROMPT_ECHO_ON {
                continue;
            }
            let Some(answer) = script.answers.pop_front() else {
                // The person went away: nothing was handed over, so free what was made.
                for j in 0..i {
                    libc::free((*out.add(j)).resp.cast());
                }
                libc::free(out.cast());
                return PAM_CONV_ERR;
            };
            (*out.add(i)).resp = libc::strdup(answer.as_ptr());
        }
        *resp = out;
        PAM_SUCCESS
    }
}

/// The entries of a /proc/self directory (descriptors or threads), with what they are.
fn entries(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            eprintln!("cannot read {dir}: {e}");
            std::process::exit(2)
        })
        .filter_map(Result::ok)
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            format!("{}->{target}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    v
}

/// The descriptors open now, without the one read_dir itself holds while listing.
fn fds() -> Vec<String> {
    let all = entries("/proc/self/fd");
    // read_dir's own descriptor shows as a link to /proc/<pid>/fd; nothing else points there.
    all.into_iter()
        .filter(|e| {
            let target = e.split_once("->").map_or("", |(_, t)| t);
            !(target.starts_with("/proc/") && target.ends_with("/fd"))
        })
        .collect()
}

/// Allocates a block and forgets its address; in its own frame, so no live stack slot or
/// register keeps a pointer to it and memcheck sees it as definitely lost.
#[inline(never)]
fn lose_a_block() {
    // SAFETY: malloc has no preconditions; the block is lost on purpose.
    let lost = unsafe { libc::malloc(4096) };
    std::hint::black_box(lost);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut confdir, mut service, mut user, mut rhost) = (None, None, None, None);
    let mut script = Script {
        mode: Mode::Script,
        answers: VecDeque::new(),
        messages: Vec::new(),
    };
    let mut leak = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let c = || CString::new(value.as_str()).unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--confdir" => confdir = Some(c()),
            "--service" => service = Some(c()),
            "--user" => user = Some(c()),
            "--rhost" => rhost = Some(c()),
            "--answer" => script.answers.push_back(c()),
            "--self-test" if value == "leak" => leak = true,
            "--conv" => {
                script.mode = match value.as_str() {
                    "script" => Mode::Script,
                    "null-reply" => Mode::NullReply,
                    "null-text" => Mode::NullText,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    let (Some(confdir), Some(service), Some(user)) = (confdir, service, user) else {
        usage()
    };

    // An application has its syslog connection before PAM runs (sshd, sudo); make it so
    // here, so glibc's /dev/log socket is not counted against the module.
    // SAFETY: a static ident and a constant message; no format arguments are read.
    unsafe {
        libc::openlog(
            c"pam-script".as_ptr(),
            libc::LOG_NDELAY | libc::LOG_PID,
            libc::LOG_AUTHPRIV,
        );
        libc::syslog(libc::LOG_DEBUG, c"starting".as_ptr());
    }
    let fds_before = fds();
    let threads_before = entries("/proc/self/task").len();

    let conv = PamConv {
        conv: conversation,
        appdata_ptr: (&raw mut script).cast(),
    };
    let mut pamh: *mut c_void = std::ptr::null_mut();
    let (auth, setcred, acct);
    // SAFETY: every pointer outlives the transaction, which pam_end closes; the script is
    // only touched through the conversation while libpam runs.
    unsafe {
        let rc = pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        );
        if rc != PAM_SUCCESS {
            eprintln!("pam_start_confdir failed ({rc})");
            std::process::exit(2);
        }
        if let Some(r) = &rhost {
            pam_set_item(pamh, PAM_RHOST, r.as_ptr().cast());
        }
        auth = pam_authenticate(pamh, 0);
        if auth == PAM_SUCCESS {
            setcred = Some(pam_setcred(pamh, PAM_ESTABLISH_CRED));
            acct = Some(pam_acct_mgmt(pamh, 0));
        } else {
            (setcred, acct) = (None, None);
        }
        pam_end(pamh, auth);
    }

    if leak {
        lose_a_block();
    }

    let fds_after = fds();
    let threads_after = entries("/proc/self/task").len();
    let show = |v: Option<c_int>| v.map_or_else(|| "-".to_string(), |c| c.to_string());
    println!("auth={auth}");
    println!("setcred={}", show(setcred));
    println!("acct={}", show(acct));
    for (style, text) in &script.messages {
        println!("msg={style} {text:?}");
    }
    println!("answers_left={}", script.answers.len());
    println!("fds_before={}", fds_before.len());
    println!("fds_after={}", fds_after.len());
    println!("threads_before={threads_before}");
    println!("threads_after={threads_after}");
    let leaked: Vec<&String> = fds_after
        .iter()
        .filter(|f| !fds_before.contains(f))
        .collect();
    for f in &leaked {
        println!("leaked_fd={f}");
    }
    let clean = leaked.is_empty() && threads_after == threads_before;
    std::process::exit(if clean { 0 } else { 3 });
}
