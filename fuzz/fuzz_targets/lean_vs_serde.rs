//! The module's lean codec (`toopher_ipc::lean`) against serde's, which toopherd uses:
//! every body is read alike (the same answer, the same other protocol version, or a
//! refusal by both), and every login request is written byte for byte alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toopher_ipc::{FrameError, LoginRequest, LoginResponse, decode, encode, lean};

fuzz_target!(|body: &[u8]| {
    let serde = decode::<LoginResponse>(body);
    let lean = lean::decode_response(body);
    match (&serde, &lean) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(FrameError::Version(a)), Err(FrameError::Version(b))) => assert_eq!(a, b),
        (Err(FrameError::Malformed { .. }), Err(FrameError::Malformed { .. })) => {}
        _ => panic!("serde read {serde:?}, the lean codec {lean:?}"),
    }
    // What toopherd writes, the lean codec reads back as it was.
    if let Ok(answer) = &serde
        && let Ok(frame) = encode(answer)
    {
        assert_eq!(lean::decode_response(&frame[4..]).ok().as_ref(), Some(answer));
    }
    // Any login request (the body read as toopherd reads one) is written alike.
    if let Ok(req) = decode::<LoginRequest>(body) {
        match (encode(&req), lean::encode_request(&req)) {
            (Ok(a), Ok(b)) => assert_eq!(*a, *b),
            (Err(FrameError::TooLarge(a)), Err(FrameError::TooLarge(b))) => assert_eq!(a, b),
            (a, b) => panic!("serde wrote {a:?}, the lean codec {b:?}"),
        }
    }
});
