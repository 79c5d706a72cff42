//! Text that reaches a terminal or a log line.

/// Removes control characters (escape sequences, newlines, NUL) and bounds the length,
/// so text from toopherd or the network cannot drive the person's terminal.
pub fn printable(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

/// Like [`printable`], keeping line breaks (for multi-line text such as a QR drawing).
pub fn printable_lines(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_escapes_and_newlines() {
        assert_eq!(super::printable("a\x1b[2Jb\nc\0d", 100), "a[2Jbcd");
        assert_eq!(super::printable("abcdef", 3), "abc");
    }
}
