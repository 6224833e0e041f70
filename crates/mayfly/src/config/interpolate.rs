//! `${VAR}` in config strings, replaced from the environment so tokens stay out of the file;
//! `$${` writes a literal `${`. Applied to parsed string values, never to keys or comments.

use super::Env;
use std::borrow::Cow;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterpolationError {
    /// The variable is not set; `reference` is the `${NAME}` text, to find it in the file.
    Missing {
        name: String,
        reference: String,
    },
    Unterminated,
    BadName,
}

impl InterpolationError {
    pub fn message(&self) -> String {
        match self {
            InterpolationError::Missing { name, .. } => format!("environment variable `{name}` is not set"),
            InterpolationError::Unterminated => "`${` without a closing `}` (write `$${` for a literal `${`)".into(),
            InterpolationError::BadName => {
                "`${…}` must hold a variable name of letters, digits and `_` (write `$${` for a literal `${`)".into()
            }
        }
    }
}

/// The string with every `${NAME}` replaced; borrowed when there is nothing to replace.
pub fn interpolate<'s>(s: &'s str, env: &Env) -> Result<Cow<'s, str>, InterpolationError> {
    if !s.contains("${") {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            // `$${` is an escaped `${`.
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or(InterpolationError::Unterminated)?;
        let name = &after[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(InterpolationError::BadName);
        }
        let value = env
            .interpolated(name)
            .ok_or_else(|| InterpolationError::Missing {
                name: name.into(),
                reference: format!("${{{name}}}"),
            })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// The names of the variables `s` refers to, in order, without those escaped with `$${`.
/// Malformed references are left out: interpolating reports them.
pub fn references(s: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let escaped = rest[..i].ends_with('$');
        let after = &rest[i + 2..];
        if escaped {
            rest = after;
            continue;
        }
        let Some(end) = after.find('}') else { break };
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    names.retain(|n| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_the_names_interpolation_reads() {
        assert_eq!(
            references("a ${ONE} $${TWO} ${THREE}-${1x} ${UNCLOSED"),
            ["ONE", "THREE"]
        );
        assert!(references("plain $TOKEN").is_empty());
    }

    fn env() -> Env {
        Env::from_pairs([("TOKEN", "abc"), ("EMPTY", "")])
    }

    #[test]
    fn replaces_variables_and_keeps_the_rest() {
        assert_eq!(
            interpolate("x-${TOKEN}-${TOKEN}", &env()).unwrap(),
            "x-abc-abc"
        );
        assert_eq!(interpolate("${EMPTY}", &env()).unwrap(), "");
        assert_eq!(
            interpolate("$5 and $TOKEN", &env()).unwrap(),
            "$5 and $TOKEN"
        );
        assert!(matches!(
            interpolate("plain", &env()).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(
            interpolate("$${TOKEN} ${TOKEN}", &env()).unwrap(),
            "${TOKEN} abc"
        );
    }

    #[test]
    fn reports_missing_unterminated_and_bad_names() {
        let e = interpolate("a ${NOPE} b", &env()).unwrap_err();
        assert_eq!(
            e,
            InterpolationError::Missing {
                name: "NOPE".into(),
                reference: "${NOPE}".into()
            }
        );
        assert_eq!(
            interpolate("${TOKEN", &env()).unwrap_err(),
            InterpolationError::Unterminated
        );
        assert_eq!(
            interpolate("${1x}", &env()).unwrap_err(),
            InterpolationError::BadName
        );
        assert_eq!(
            interpolate("${}", &env()).unwrap_err(),
            InterpolationError::BadName
        );
    }
}
