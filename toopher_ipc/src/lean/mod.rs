//! The module's own codec: a login's requests written and its answers read without
//! serde, byte for byte as serde_json writes and reads them (the wire format is pinned by
//! the tests in message.rs and frame.rs). serde and serde_json made up most of the
//! module's code (see doc/benchmark.md, "Module size (codec)"); toopherd and toopherctl
//! keep using them. The tests below and the `lean_vs_serde` fuzz target hold the two
//! codecs to the same bytes and the same answers.
//!
//! No panics on input, recursion bounded by serde_json's own limit. Strings are unescaped
//! into a buffer sized for them and wiped when a read fails; a field read into a
//! [`crate::Secret`] stays wiped on drop, plain `String` fields (as with serde) do not.

mod number;
mod read;
mod response;
mod write;

#[cfg(all(test, feature = "serde"))]
mod tests;

use crate::{FrameError, LoginRequest, LoginResponse, PROTOCOL_VERSION};
use read::{Bad, Reader, Value};
use zeroize::Zeroizing;

/// The frame (header and body) carrying `req`, as `encode` writes it.
pub fn encode_request(req: &LoginRequest) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    write::frame(req)
}

/// An answer from a frame body, as `decode::<LoginResponse>` reads it: the version is
/// checked first (a body of another version is [`FrameError::Version`] whatever its
/// message), then the message.
pub fn decode_response(body: &[u8]) -> Result<LoginResponse, FrameError> {
    let malformed = |Bad(at): Bad| {
        let before = body.get(..at).unwrap_or(body);
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = at
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        FrameError::Malformed { line, column }
    };
    let version = version(body).map_err(malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    let (msg, at) = message(body).map_err(malformed)?;
    response::login_response(msg).map_err(|_| malformed(Bad(at)))
}

/// The envelope's `v`, read as serde reads a struct of that one field: every other
/// entry (the message too) skipped, or an array of exactly the version.
fn version(body: &[u8]) -> Result<u16, Bad> {
    let mut r = Reader::new(body);
    r.skip_ws();
    let version = if r.eat_if(b'[') {
        let v = u16_of(&mut r)?;
        r.expect(b']')?;
        v
    } else {
        r.expect(b'{')?;
        let mut version = None;
        entries(&mut r, |r, key| {
            if key != "v" {
                return r.skip();
            }
            if version.is_some() {
                return Err(r.bad());
            }
            version = Some(u16_of(r)?);
            Ok(())
        })?;
        version.ok_or(r.bad())?
    };
    r.end()?;
    Ok(version)
}

/// The envelope's `msg`, buffered strictly, and where it starts; every other entry skipped.
fn message(body: &[u8]) -> Result<(Value, usize), Bad> {
    let mut r = Reader::new(body);
    // An array's first element would be the message, but the version read above was
    // that element: a number, never a message.
    r.expect(b'{')?;
    let mut msg = None;
    entries(&mut r, |r, key| {
        if key != "msg" {
            return r.skip();
        }
        if msg.is_some() {
            return Err(r.bad());
        }
        r.skip_ws();
        let at = r.bad().0;
        // The envelope is the first container, the message the second (serde_json's count).
        msg = Some((r.value(2)?, at));
        Ok(())
    })?;
    let msg = msg.ok_or(r.bad())?;
    r.end()?;
    Ok(msg)
}

/// The entries of an object whose `{` was read, each key (read strictly) handed to `each`
/// with the reader at its value.
fn entries(
    r: &mut Reader<'_>,
    mut each: impl FnMut(&mut Reader<'_>, &str) -> Result<(), Bad>,
) -> Result<(), Bad> {
    r.skip_ws();
    if r.eat_if(b'}') {
        return Ok(());
    }
    loop {
        let key = r.key()?;
        each(r, &key)?;
        r.skip_ws();
        match r.next_byte() {
            Some(b',') => {}
            Some(b'}') => return Ok(()),
            _ => return Err(r.bad()),
        }
    }
}

/// A u16 as serde_json reads one: any number, in range.
fn u16_of(r: &mut Reader<'_>) -> Result<u16, Bad> {
    r.skip_ws();
    if !matches!(r.peek(), Some(b'-' | b'0'..=b'9')) {
        return Err(r.bad());
    }
    match r.number()? {
        number::Number::Uint(n) => u16::try_from(n).map_err(|_| r.bad()),
        number::Number::Other => Err(r.bad()),
    }
}
