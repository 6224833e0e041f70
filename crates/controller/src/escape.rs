//! Text from outside (job scopes, labels, runner and workflow names, cloud error messages) as
//! it may be printed in a log line or a table: control characters and bidirectional overrides
//! are escaped, so a name cannot break a line, forge a log entry or reorder a table's text.

use std::fmt;

/// Displays the wrapped text with its control and bidi-override characters escaped
/// (`\n`, `\u{1b}`, `\u{202e}`); everything else, non-ASCII letters included, as it is.
pub struct Text<'a>(pub &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if needs_escape(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_str(c.encode_utf8(&mut [0; 4]))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The text escaped, as an owned string (for table cells).
pub fn text(s: &str) -> String {
    if s.chars().any(needs_escape) {
        Text(s).to_string()
    } else {
        s.to_string()
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_cannot_break_a_line_or_turn_text_around() {
        assert_eq!(text("acme/app"), "acme/app");
        assert_eq!(text("größe-runner"), "größe-runner");
        assert_eq!(
            text("acme/app\n2026-12-07 INFO fake"),
            "acme/app\\n2026-12-07 INFO fake"
        );
        assert_eq!(text("x\u{1b}[31m"), "x\\u{1b}[31m");
        assert_eq!(text("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(format!("{:?}", Text("a\tb")), "\"a\\tb\"");
    }
}
