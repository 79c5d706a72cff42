//! Length-prefixed JSON frames with a protocol version and a size limit.

#[cfg(feature = "serde")]
use serde::de::DeserializeOwned;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
#[cfg(feature = "serde")]
use std::io::Write;
use std::io::{self, Read};
use zeroize::Zeroizing;

/// Bumped on any incompatible change of the messages.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest JSON body accepted in either direction. Real messages are well under 2 KiB.
pub const MAX_FRAME_LEN: usize = 16 * 1024;

#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The peer closed the connection before a frame began.
    Closed,
    /// A frame announced (or a message needed) more than [`MAX_FRAME_LEN`] bytes.
    TooLarge(usize),
    /// The body is not a valid message. Carries only the position, never the input.
    Malformed {
        line: usize,
        column: usize,
    },
    /// The peer speaks another protocol version.
    Version(u16),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "socket error: {e}"),
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::TooLarge(n) => {
                write!(
                    f,
                    "frame of {n} bytes is over the {MAX_FRAME_LEN}-byte limit"
                )
            }
            FrameError::Malformed { line, column } => {
                write!(f, "malformed message (line {line}, column {column})")
            }
            // "version mismatch" is what an administrator greps for after an upgrade
            // that left a module and a daemon of different packages side by side.
            FrameError::Version(v) => write!(
                f,
                "protocol version mismatch: the peer speaks version {v}, this side speaks {PROTOCOL_VERSION}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Closed
        } else {
            FrameError::Io(e)
        }
    }
}

impl FrameError {
    /// serde_json's own messages may quote the offending input (a code sent as the
    /// wrong type, say), so only its position is kept.
    #[cfg(feature = "serde")]
    fn malformed(e: &serde_json::Error) -> Self {
        FrameError::Malformed {
            line: e.line(),
            column: e.column(),
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

#[cfg(feature = "serde")]
#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u16,
    msg: &'a T,
}

#[cfg(feature = "serde")]
#[derive(Deserialize)]
struct EnvelopeIn<T> {
    msg: T,
}

#[cfg(feature = "serde")]
#[derive(Deserialize)]
struct VersionOnly {
    v: u16,
}

#[cfg(feature = "serde")]
/// The 4-byte header followed by the JSON envelope, ready to write.
pub fn encode<T: Serialize>(msg: &T) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut buf = Zeroizing::new(Vec::with_capacity(512));
    buf.extend_from_slice(&[0; 4]);
    serde_json::to_writer(
        &mut *buf,
        &EnvelopeOut {
            v: PROTOCOL_VERSION,
            msg,
        },
    )
    .map_err(|e| FrameError::malformed(&e))?;
    let body = buf.len() - 4;
    if body > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body));
    }
    let len = u32::try_from(body).map_err(|_| FrameError::TooLarge(body))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// The body length announced by a header, checked against the limit.
pub fn parse_header(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    if len == 0 {
        return Err(FrameError::Malformed { line: 0, column: 0 });
    }
    Ok(len)
}

#[cfg(feature = "serde")]
/// A message from a frame body; the version is checked before the message is parsed.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let version: VersionOnly =
        serde_json::from_slice(body).map_err(|e| FrameError::malformed(&e))?;
    if version.v != PROTOCOL_VERSION {
        return Err(FrameError::Version(version.v));
    }
    let env: EnvelopeIn<T> = serde_json::from_slice(body).map_err(|e| FrameError::malformed(&e))?;
    Ok(env.msg)
}

/// Reads one frame body. The caller bounds the wait with the stream's read timeout.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    let len = parse_header(header)?;
    let mut body = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut body)?;
    Ok(body)
}

#[cfg(feature = "serde")]
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;
    use crate::{LoginRequest, Request, Response, Secret};

    #[test]
    fn round_trip() {
        let req = Request::from(LoginRequest::Otp {
            code: Secret::new("123456"),
        });
        let mut wire = Vec::new();
        write_frame(&mut wire, &req).unwrap();
        let body = read_frame(&mut wire.as_slice()).unwrap();
        assert_eq!(decode::<Request>(&body).unwrap(), req);
    }

    #[test]
    fn oversized_header_is_refused_before_reading_the_body() {
        let mut wire = (MAX_FRAME_LEN as u32 + 1).to_be_bytes().to_vec();
        wire.extend(std::iter::repeat_n(b' ', 8));
        assert!(matches!(
            read_frame(&mut wire.as_slice()),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn oversized_message_is_not_encoded() {
        let big = Response::error(crate::ErrorKind::Internal, "x".repeat(MAX_FRAME_LEN));
        assert!(matches!(encode(&big), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn other_versions_are_refused() {
        let body = br#"{"v":99,"msg":{"type":"push"}}"#;
        let err = decode::<Request>(body).unwrap_err();
        assert!(matches!(err, FrameError::Version(99)));
        assert!(err.to_string().contains("version mismatch"), "{err}");
    }

    #[test]
    fn malformed_input_error_does_not_echo_the_input() {
        let body = br#"{"v":1,"msg":{"type":"otp","code":123456}}"#;
        let err = decode::<Request>(body).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { .. }));
        assert!(!err.to_string().contains("123456"));
    }

    #[test]
    fn truncated_frame_is_closed_not_hung() {
        let wire = [0u8, 0, 0, 10, b'{'];
        assert!(matches!(
            read_frame(&mut &wire[..]),
            Err(FrameError::Closed)
        ));
        assert!(matches!(read_frame(&mut &[][..]), Err(FrameError::Closed)));
    }
}
