//! The clients' response parsing: any frame body toopherd (or whoever holds its socket)
//! can answer with, read as the module reads it (`LoginResponse`) and as toopherctl does
//! (`AdminResponse`). Every answer decodes to one typed message that round-trips; only
//! the answers both families have (`denied`, `error`) decode in both, so an
//! administrative answer can never pass for a login's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_toopher_fuzz::assert_round_trip;
use toopher_ipc::{
    AdminResponse, DenyReason, FrameError, LoginResponse, PROTOCOL_VERSION, Response, decode,
};

/// The one retry rule, as pam_toopher's flow applies it: only a wrong code, a push
/// denied on the phone or an unanswered push lets the module ask again.
fn check_retry_rule(reason: DenyReason) {
    assert_eq!(
        reason.allows_retry(),
        matches!(
            reason,
            DenyReason::WrongCode | DenyReason::PushDenied | DenyReason::PushTimeout
        )
    );
}

fn check_error(e: FrameError) {
    match e {
        FrameError::Version(v) => assert_ne!(v, PROTOCOL_VERSION),
        FrameError::Malformed { .. } => {}
        e => panic!("decode failed with an unexpected error: {e}"),
    }
}

fuzz_target!(|body: &[u8]| {
    let login = decode::<LoginResponse>(body);
    let admin = decode::<AdminResponse>(body);
    match &login {
        Ok(resp) => {
            assert_round_trip(resp);
            if let LoginResponse::Denied { reason, .. } = resp {
                check_retry_rule(*reason);
            }
        }
        Err(_) => {}
    }
    if let Ok(resp) = &admin {
        assert_round_trip(resp);
    }
    // Both families read a body only when it is an answer they share.
    if let (Ok(l), Ok(a)) = (&login, &admin) {
        assert!(
            matches!(
                (l, a),
                (LoginResponse::Denied { .. }, AdminResponse::Denied { .. })
                    | (LoginResponse::Error(_), AdminResponse::Error(_))
            ),
            "one body read as {l:?} and as {a:?}"
        );
    }
    // What toopherd writes (either family) reads back as one of them.
    match decode::<Response>(body) {
        Ok(resp) => {
            assert_round_trip(&resp);
            assert!(login.is_ok() || admin.is_ok());
        }
        Err(_) => assert!(login.is_err() && admin.is_err()),
    }
    for e in [login.err(), admin.err()].into_iter().flatten() {
        check_error(e);
    }
});
