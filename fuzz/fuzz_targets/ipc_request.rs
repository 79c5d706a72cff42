//! toopherd's request parsing: any frame body a local user can send. A request decodes
//! to one typed message that round-trips, and its log form never shows a code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_toopher_fuzz::assert_round_trip;
use toopher_ipc::{FrameError, LoginRequest, PROTOCOL_VERSION, Request, decode};

fuzz_target!(|body: &[u8]| {
    match decode::<Request>(body) {
        Ok(req) => {
            assert_round_trip(&req);
            if let Request::Admin(a) = &req {
                let _ = (a.target(), a.needs_admin(), a.name());
            }
            let shown = format!("{req:?}");
            match &req {
                Request::Login(LoginRequest::Otp { .. }) => {
                    assert_eq!(shown, "Login(Otp { code: Secret(<redacted>) })")
                }
                Request::Login(LoginRequest::RegistrationResponse { .. }) => {
                    assert_eq!(
                        shown,
                        "Login(RegistrationResponse { code: Secret(<redacted>) })"
                    )
                }
                _ => {}
            }
        }
        Err(FrameError::Version(v)) => assert_ne!(v, PROTOCOL_VERSION),
        Err(e @ FrameError::Malformed { .. }) => {
            // The error names a position, never the input.
            let text = e.to_string();
            assert!(text.starts_with("malformed message (line "), "{text}");
        }
        Err(e) => panic!("decode failed with an unexpected error: {e}"),
    }
});
