//! pam-login: one real PAM authentication through a private PAM directory, talking to
//! the person with libpam_misc's `misc_conv` (the terminal conversation `login` uses).
//! Used by the quick start: `pam-login --confdir DIR --service NAME --user USER`.

use std::ffi::CString;
use toopher_tests::pam::ffi::{
    PamConv, misc_conv, pam_acct_mgmt, pam_authenticate, pam_end, pam_start_confdir, pam_strerror,
};

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
        conv: misc_conv,
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
