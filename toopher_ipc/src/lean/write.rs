//! A [`LoginRequest`] framed as serde_json writes it: fields in declaration order, the
//! tag first, strings escaped as serde_json escapes them, no whitespace.

use crate::{FrameError, LoginRequest, MAX_FRAME_LEN, PROTOCOL_VERSION};
use zeroize::Zeroizing;

pub(super) fn frame(req: &LoginRequest) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    // A request whose text alone is over the limit is refused before anything is
    // allocated for it (a remote user chooses the user name sshd passes on).
    let text = text_len(req);
    if text > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(text));
    }
    // Room for the worst case (every byte escaped as `\u00XX`) from the start: the buffer
    // never grows, so no copy of a code is left behind in memory it gave up.
    let mut w = Writer(Zeroizing::new(Vec::with_capacity(256 + 6 * text)));
    w.0.extend_from_slice(&[0; 4]);
    w.raw("{\"v\":");
    w.uint(u64::from(PROTOCOL_VERSION));
    w.raw(",\"msg\":{\"type\":");
    match req {
        LoginRequest::Begin(c) => {
            w.string("begin");
            w.field("user", &c.user);
            w.field("service", &c.service);
            w.optional("rhost", c.rhost.as_deref());
            w.optional("tty", c.tty.as_deref());
            w.optional("ruser", c.ruser.as_deref());
            w.boolean("autopush", c.autopush);
            w.boolean("notify", c.notify);
        }
        LoginRequest::Otp { code } => {
            w.string("otp");
            w.field("code", code.expose());
        }
        LoginRequest::Push => w.string("push"),
        LoginRequest::Wait { timeout_ms } => {
            w.string("wait");
            w.key("timeout_ms");
            w.uint(u64::from(*timeout_ms));
        }
        LoginRequest::Cancel => w.string("cancel"),
        LoginRequest::RegistrationResponse { code } => {
            w.string("registration_response");
            w.field("code", code.expose());
        }
        LoginRequest::PairPhrase { phrase } => {
            w.string("pair_phrase");
            w.field("phrase", phrase);
        }
        LoginRequest::GraceToken => w.string("grace_token"),
        LoginRequest::BindSession { user, token } => {
            w.string("bind_session");
            w.field("user", user);
            w.field("token", token.expose());
        }
    }
    w.raw("}}");
    let mut buf = w.0;
    let body = buf.len() - 4;
    if body > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body));
    }
    let len = u32::try_from(body).map_err(|_| FrameError::TooLarge(body))?;
    if let Some(header) = buf.get_mut(..4) {
        header.copy_from_slice(&len.to_be_bytes());
    }
    Ok(buf)
}

/// The bytes of every string the request carries.
fn text_len(req: &LoginRequest) -> usize {
    match req {
        LoginRequest::Begin(c) => {
            c.user.len()
                + c.service.len()
                + [&c.rhost, &c.tty, &c.ruser]
                    .iter()
                    .map(|o| o.as_ref().map_or(0, String::len))
                    .sum::<usize>()
        }
        LoginRequest::Otp { code } | LoginRequest::RegistrationResponse { code } => {
            code.expose().len()
        }
        LoginRequest::PairPhrase { phrase } => phrase.len(),
        LoginRequest::BindSession { user, token } => user.len() + token.expose().len(),
        LoginRequest::Push
        | LoginRequest::Wait { .. }
        | LoginRequest::Cancel
        | LoginRequest::GraceToken => 0,
    }
}

struct Writer(Zeroizing<Vec<u8>>);

impl Writer {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    fn key(&mut self, name: &str) {
        self.raw(",\"");
        self.raw(name);
        self.raw("\":");
    }

    fn field(&mut self, name: &str, value: &str) {
        self.key(name);
        self.string(value);
    }

    fn optional(&mut self, name: &str, value: Option<&str>) {
        self.key(name);
        match value {
            Some(v) => self.string(v),
            None => self.raw("null"),
        }
    }

    fn boolean(&mut self, name: &str, value: bool) {
        self.key(name);
        self.raw(if value { "true" } else { "false" });
    }

    fn uint(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.0
            .extend_from_slice(digits.get(i..).unwrap_or_default());
    }

    /// serde_json's escaping: `"` and `\`, the short forms of five control characters,
    /// `\u00XX` (lower-case hex) for the other ones below 0x20; everything else as is.
    fn string(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut self.0;
        out.push(b'"');
        for &b in s.as_bytes() {
            let short = match b {
                b'"' => b'"',
                b'\\' => b'\\',
                0x08 => b'b',
                0x0c => b'f',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x00..=0x1f => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                    continue;
                }
                _ => {
                    out.push(b);
                    continue;
                }
            };
            out.push(b'\\');
            out.push(short);
        }
        out.push(b'"');
    }
}
