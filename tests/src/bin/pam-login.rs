//! pam-login: one real PAM authentication through a private PAM directory, talking to
//! the person with libpam_misc's `misc_conv` (the terminal conversation `login` uses).
//! Used by the quick start: `pam-login --confdir DIR --service NAME --user USER`.

use std::ffi::{CString, c_void};
use std::os::raw::{c_char, c_int};

#[repr(C)]
struct PamConv {
    conv: *const c_void,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_strerror(pamh: *mut c_void, errnum: c_int) -> *const c_char;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

#[link(name = "pam_misc")]
unsafe extern "C" {
    fn misc_conv(n: c_int, m: *mut *const c_void, r: *mut *mut c_void, a: *mut c_void) -> c_int;
}

fn arg(name: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| {
            eprintln!("usage: pam-login --confdir DIR --service NAME --user USER");
            std::process::exit(2)
        })
}

fn main() {
    let (confdir, service, user) = (arg("--confdir"), arg("--service"), arg("--user"));
    let (confdir, service, user) = (
        CString::new(confdir).expect("confdir"),
        CString::new(service).expect("service"),
        CString::new(user).expect("user"),
    );
    let conv = PamConv {
        conv: misc_conv as *const c_void,
        appdata_ptr: std::ptr::null_mut(),
    };
    let mut pamh = std::ptr::null_mut();
    // SAFETY: the strings and conv outlive the transaction.
    let rc = unsafe {
        let rc = pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        );
        if rc != 0 {
            eprintln!("pam_start_confdir failed ({rc})");
            std::process::exit(2);
        }
        let mut rc = pam_authenticate(pamh, 0);
        if rc == 0 {
            rc = pam_acct_mgmt(pamh, 0);
        }
        let msg = std::ffi::CStr::from_ptr(pam_strerror(pamh, rc))
            .to_string_lossy()
            .into_owned();
        pam_end(pamh, rc);
        println!("PAM result: {msg} ({rc})");
        rc
    };
    std::process::exit(if rc == 0 { 0 } else { 1 });
}
