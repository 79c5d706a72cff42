//! Text that reaches a terminal or a log line.

/// Removes control and other hidden characters ([`toopher_ipc::is_hidden`]: escape
/// sequences, newlines, NUL, bidi overrides) and bounds the length, so text from
/// toopherd or the network can neither drive the person's terminal nor disguise itself.
pub fn printable(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !toopher_ipc::is_hidden(*c))
        .take(max_chars)
        .collect()
}

/// Like [`printable`], keeping line breaks (for multi-line text such as a QR drawing).
pub fn printable_lines(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| *c == '\n' || !toopher_ipc::is_hidden(*c))
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_escapes_and_newlines() {
        assert_eq!(super::printable("a\x1b[2Jb\nc\0d", 100), "a[2Jbcd");
        assert_eq!(super::printable("abcdef", 3), "abc");
        assert_eq!(
            super::printable("10.0.0.1\u{202E}moc.evil", 100),
            "10.0.0.1moc.evil"
        );
    }
}
