//! A JSON reader that accepts exactly what serde_json 1.x accepts where the module reads:
//! strictly inside a message (as serde buffers it: strings checked to the last escape and
//! byte, containers counted against serde_json's recursion limit), leniently in a field
//! of the envelope it skips (as serde_json's `ignore_value`: syntax only, any depth).

use super::number::Number;
use zeroize::{Zeroize, Zeroizing};

/// Every string read: it may be a code or a secret, so it is wiped when dropped.
pub(super) type Text = Zeroizing<String>;

/// Where the body stopped making sense (a byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bad(pub(super) usize);

/// A value as serde buffers one before it knows its type.
pub(super) enum Value {
    Null,
    Bool(bool),
    /// A non-negative integer that fits a u64.
    Uint(u64),
    /// A negative or fractional number, or one too large for a u64: never a count.
    OtherNumber,
    Str(Text),
    Array(Vec<Value>),
    Object(Vec<(Text, Value)>),
}

/// serde_json's recursion limit: a container at this nesting level (the outermost is 1)
/// is an error. Also what bounds this reader's recursion.
const DEPTH_LIMIT: usize = 128;

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(super) fn bad(&self) -> Bad {
        Bad(self.pos)
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(super) fn bump(&mut self) {
        self.pos += 1;
    }

    pub(super) fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek();
        self.pos += 1;
        b
    }

    pub(super) fn eat_if(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    pub(super) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// After optional whitespace, exactly `b`.
    pub(super) fn expect(&mut self, b: u8) -> Result<(), Bad> {
        self.skip_ws();
        if self.eat_if(b) {
            Ok(())
        } else {
            Err(self.bad())
        }
    }

    /// Nothing but whitespace left.
    pub(super) fn end(&mut self) -> Result<(), Bad> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.bad()),
        }
    }

    fn ident(&mut self, word: &[u8]) -> Result<(), Bad> {
        match self.buf.get(self.pos..self.pos + word.len()) {
            Some(w) if w == word => {
                self.pos += word.len();
                Ok(())
            }
            _ => Err(self.bad()),
        }
    }

    /// A value, strictly, whose containers would sit at nesting level `depth`.
    pub(super) fn value(&mut self, depth: usize) -> Result<Value, Bad> {
        self.skip_ws();
        match self.peek() {
            Some(b'n') => self.ident(b"null").map(|()| Value::Null),
            Some(b't') => self.ident(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.ident(b"false").map(|()| Value::Bool(false)),
            Some(b'-' | b'0'..=b'9') => Ok(match self.number()? {
                Number::Uint(n) => Value::Uint(n),
                Number::Other => Value::OtherNumber,
            }),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') if depth < DEPTH_LIMIT => {
                self.bump();
                let mut items = Vec::new();
                self.skip_ws();
                if self.eat_if(b']') {
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.next_byte() {
                        Some(b',') => {}
                        Some(b']') => return Ok(Value::Array(items)),
                        _ => return Err(Bad(self.pos - 1)),
                    }
                }
            }
            Some(b'{') if depth < DEPTH_LIMIT => {
                self.bump();
                let mut entries = Vec::new();
                self.skip_ws();
                if self.eat_if(b'}') {
                    return Ok(Value::Object(entries));
                }
                loop {
                    let key = self.key()?;
                    entries.push((key, self.value(depth + 1)?));
                    self.skip_ws();
                    match self.next_byte() {
                        Some(b',') => {}
                        Some(b'}') => return Ok(Value::Object(entries)),
                        _ => return Err(Bad(self.pos - 1)),
                    }
                }
            }
            _ => Err(self.bad()),
        }
    }

    /// An object's key and its colon, strictly.
    pub(super) fn key(&mut self) -> Result<Text, Bad> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(self.bad());
        }
        let key = self.string()?;
        self.expect(b':')?;
        Ok(key)
    }

    /// A string at `"`, strictly: no raw control character, only JSON's escapes,
    /// surrogates in pairs, valid UTF-8.
    pub(super) fn string(&mut self) -> Result<Text, Bad> {
        self.bump();
        let start = self.pos;
        // Unescaping only shortens, so the raw length is room enough: the buffer never
        // grows, and never leaves a copy of a secret behind in freed memory.
        let mut raw = start;
        while let Some(&c) = self.buf.get(raw) {
            match c {
                b'"' => break,
                b'\\' => raw += 2,
                _ => raw += 1,
            }
        }
        let mut out = Zeroizing::new(Vec::with_capacity(raw.saturating_sub(start)));
        loop {
            match self.next_byte() {
                Some(b'"') => break,
                Some(b'\\') => self.escape(&mut out)?,
                Some(c) if c >= 0x20 => out.push(c),
                _ => return Err(Bad(self.pos - 1)),
            }
        }
        match String::from_utf8(std::mem::take(&mut *out)) {
            Ok(s) => Ok(Zeroizing::new(s)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(Bad(start))
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Bad> {
        let b = match self.next_byte() {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => return self.unicode(out),
            _ => return Err(Bad(self.pos - 1)),
        };
        out.push(b);
        Ok(())
    }

    /// `\uXXXX` (after `\u`), a surrogate pair taken together.
    fn unicode(&mut self, out: &mut Vec<u8>) -> Result<(), Bad> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => return Err(self.bad()),
            0xD800..=0xDBFF => {
                if !(self.eat_if(b'\\') && self.eat_if(b'u')) {
                    return Err(self.bad());
                }
                let n2 = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&n2) {
                    return Err(self.bad());
                }
                0x1_0000 + ((u32::from(n - 0xD800) << 10) | u32::from(n2 - 0xDC00))
            }
            _ => u32::from(n),
        };
        let c = char::from_u32(code).ok_or(self.bad())?;
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        utf8.zeroize();
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, Bad> {
        let mut n = 0u16;
        for _ in 0..4 {
            let d = match self.next_byte() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(Bad(self.pos - 1)),
            };
            n = (n << 4) | u16::from(d);
        }
        Ok(n)
    }

    /// Skips a value as serde_json skips a field it ignores (`ignore_value`): its syntax
    /// is checked, its strings only for control characters and escapes, and it may nest
    /// to any depth (it is walked with a stack, not by recursion).
    pub(super) fn skip(&mut self) -> Result<(), Bad> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'n') => self.ident(b"null")?,
                Some(b't') => self.ident(b"true")?,
                Some(b'f') => self.ident(b"false")?,
                Some(b'-') => {
                    self.bump();
                    self.skip_number()?;
                }
                Some(b'0'..=b'9') => self.skip_number()?,
                Some(b'"') => {
                    self.bump();
                    self.skip_string()?;
                }
                Some(b'[') => {
                    self.bump();
                    self.skip_ws();
                    if !self.eat_if(b']') {
                        open.push(b']');
                        continue;
                    }
                }
                Some(b'{') => {
                    self.bump();
                    self.skip_ws();
                    if !self.eat_if(b'}') {
                        self.skip_key()?;
                        open.push(b'}');
                        continue;
                    }
                }
                _ => return Err(self.bad()),
            }
            // A value ended: close what it ended, or go on to the next one.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.next_byte() {
                    Some(b',') => {
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(c) if c == close => {
                        open.pop();
                    }
                    _ => return Err(Bad(self.pos - 1)),
                }
            }
        }
    }

    fn skip_key(&mut self) -> Result<(), Bad> {
        self.expect(b'"')?;
        self.skip_string()?;
        self.expect(b':')
    }

    /// The rest of a string after its `"`, as serde_json's `ignore_str`.
    fn skip_string(&mut self) -> Result<(), Bad> {
        loop {
            match self.next_byte() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => match self.next_byte() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        self.hex4()?;
                    }
                    _ => return Err(Bad(self.pos - 1)),
                },
                Some(c) if c >= 0x20 => {}
                _ => return Err(Bad(self.pos - 1)),
            }
        }
    }

    /// A number after its optional `-`, as serde_json's `ignore_integer`: no range.
    fn skip_number(&mut self) -> Result<(), Bad> {
        match self.next_byte() {
            Some(b'0') => {
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.bad());
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(Bad(self.pos - 1)),
        }
        if self.eat_if(b'.') {
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.bad());
            }
            self.skip_digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.bump();
            if let Some(b'+' | b'-') = self.peek() {
                self.bump();
            }
            if !matches!(self.next_byte(), Some(b'0'..=b'9')) {
                return Err(Bad(self.pos - 1));
            }
            self.skip_digits();
        }
        Ok(())
    }

    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.bump();
        }
    }
}
