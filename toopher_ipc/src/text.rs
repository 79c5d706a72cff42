//! Which characters may reach a terminal or a log line: shared by the module (what the
//! person sees) and toopherd (what the log says).

/// Control characters (escape sequences, newlines, NUL) and the invisible characters
/// that change how text around them is shown: bidirectional overrides and isolates
/// (which can make a host name read backwards), zero-width characters, line and
/// paragraph separators and the byte-order mark.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::is_hidden;

    #[test]
    fn hides_controls_and_reordering_characters_but_not_text() {
        for c in [
            '\x1b', '\n', '\0', '\u{202E}', '\u{2066}', '\u{200B}', '\u{2028}', '\u{FEFF}',
        ] {
            assert!(is_hidden(c), "{:?}", c);
        }
        for c in ['a', 'é', 'ß', '東', ' ', '-', '\u{2003}'] {
            assert!(!is_hidden(c), "{:?}", c);
        }
    }
}
