//! The frame layer as both ends read it: a byte stream split into length-prefixed frames
//! (`read_frame`, as the module's client does; toopherd checks the same `parse_header`),
//! each body decoded both as a request (toopherd) and as a response of either family (the
//! module's and toopherctl's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_toopher_fuzz::assert_round_trip;
use toopher_ipc::{
    AdminResponse, FrameError, LoginResponse, MAX_FRAME_LEN, Request, decode, read_frame,
};

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    loop {
        let before = stream.len();
        match read_frame(&mut stream) {
            Ok(body) => {
                assert!(!body.is_empty() && body.len() <= MAX_FRAME_LEN);
                assert_eq!(before - stream.len(), body.len() + 4, "one frame consumed");
                if let Ok(req) = decode::<Request>(&body) {
                    assert_round_trip(&req);
                }
                if let Ok(resp) = decode::<LoginResponse>(&body) {
                    assert_round_trip(&resp);
                }
                if let Ok(resp) = decode::<AdminResponse>(&body) {
                    assert_round_trip(&resp);
                }
            }
            Err(FrameError::TooLarge(n)) => {
                assert!(n > MAX_FRAME_LEN);
                break;
            }
            Err(FrameError::Closed | FrameError::Malformed { .. }) => break,
            Err(e) => panic!("reading from memory failed unexpectedly: {e}"),
        }
    }
});
