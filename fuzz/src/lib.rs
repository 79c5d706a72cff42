//! Helpers shared by the fuzz targets in `fuzz_targets/`: the properties they assert.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use toopher_ipc::{FrameError, MAX_FRAME_LEN, decode, encode, parse_header};

/// A message that was decoded encodes again, and that encoding decodes to the same
/// message (unless it is over the frame limit, which `encode` must then refuse).
pub fn assert_round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match encode(msg) {
        Ok(frame) => {
            let header: [u8; 4] = frame[..4].try_into().expect("a frame has a header");
            let len = parse_header(header).expect("an encoded header is valid");
            assert_eq!(len, frame.len() - 4, "header announces the body length");
            assert!(len <= MAX_FRAME_LEN);
            let back: T = decode(&frame[4..]).expect("an encoded message decodes");
            assert_eq!(&back, msg, "decode(encode(m)) == m");
        }
        Err(FrameError::TooLarge(n)) => assert!(n > MAX_FRAME_LEN),
        Err(e) => panic!("a decoded message failed to encode: {e}"),
    }
}

/// No control character but the line break: text that reaches a terminal.
pub fn is_terminal_safe(s: &str) -> bool {
    s.chars().all(|c| c == '\n' || !c.is_control())
}

/// No control character at all: one log line.
pub fn is_log_safe(s: &str) -> bool {
    !s.chars().any(char::is_control)
}
