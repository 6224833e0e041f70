//! What both forges' webhook parsers share: how much of an offending value (an event name, a
//! field, a time) an error repeats, enough to recognise it and never a whole body or a secret.

/// Characters of an offending value an error repeats.
const ECHO_LIMIT: usize = 64;

/// At most `ECHO_LIMIT` characters of `s`, with `…` where it was cut.
pub(crate) fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_LIMIT) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character() {
        assert_eq!(echo("ping"), "ping");
        let long = "é".repeat(100);
        assert_eq!(echo(&long), format!("{}…", "é".repeat(ECHO_LIMIT)));
    }
}
