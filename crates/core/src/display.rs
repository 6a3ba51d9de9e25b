//! Text for people: names from a file shown so that they cannot drive the terminal.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1), bidirectional-text control and
/// backslash escaped Rust's way (`\u{1b}`, `\r`, `\n`, `\\`), for human output only:
/// `--json` output keeps names exact. Text without any comes back borrowed.
pub fn escaped(text: &str) -> Cow<'_, str> {
    let needs = |c: char| {
        c == '\\'
            || c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn control_characters_are_escaped_and_plain_text_kept() {
        assert_eq!(escaped("plain é name"), "plain é name");
        assert_eq!(escaped("ctl\x1b[31mRED"), "ctl\\u{1b}[31mRED");
        assert_eq!(escaped("cr\rX\x07\n\t"), "cr\\rX\\u{7}\\n\\t");
        assert_eq!(escaped("a\\b"), "a\\\\b");
        assert_eq!(escaped("\u{202e}x\u{9b}"), "\\u{202e}x\\u{9b}");
    }
}
