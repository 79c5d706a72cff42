//! The module's response parsing: any frame body toopherd (or whoever holds its socket)
//! can answer with. Every answer decodes to one typed message that round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_toopher_fuzz::assert_round_trip;
use toopher_ipc::{DenyReason, FrameError, PROTOCOL_VERSION, Response, decode};

fuzz_target!(|body: &[u8]| {
    match decode::<Response>(body) {
        Ok(resp) => {
            assert_round_trip(&resp);
            if let Response::Denied { reason, .. } = resp {
                // Only a wrong code, a push denied on the phone or an unanswered push lets
                // the module ask again (the one rule, as pam_toopher's flow applies it).
                assert_eq!(
                    reason.allows_retry(),
                    matches!(
                        reason,
                        DenyReason::WrongCode | DenyReason::PushDenied | DenyReason::PushTimeout
                    )
                );
            }
        }
        Err(FrameError::Version(v)) => assert_ne!(v, PROTOCOL_VERSION),
        Err(FrameError::Malformed { .. }) => {}
        Err(e) => panic!("decode failed with an unexpected error: {e}"),
    }
});
