//! The token list of `mayfly gitlab register`: a file or standard input (never the command
//! line, which other users see in `ps` and which has a length limit), one `glrt-` token a line.

use mayfly_core::Secret;
use std::io::Read;
use std::path::Path;

/// One token and the line it came from, for errors that must not show the token.
pub struct Listed {
    pub line: usize,
    pub token: Secret,
}

pub fn read(path: &Path) -> Result<(String, Vec<Listed>), String> {
    let (name, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read tokens from standard input: {e}"))?;
        ("standard input".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        (path.display().to_string(), text)
    };
    Ok((name.clone(), parse(&name, &text)?))
}

/// Blank lines and `#` comments are skipped; anything else must be a `glrt-` token. A token
/// listed twice counts once.
pub fn parse(name: &str, text: &str) -> Result<Vec<Listed>, String> {
    let mut out: Vec<Listed> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !t.starts_with("glrt-")
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "{name}, line {}: not a runner authentication token (glrt-…); \
                 registration tokens (GR1348941…) are deprecated and not taken",
                i + 1
            ));
        }
        if out.iter().any(|l| l.token.expose() == t) {
            continue;
        }
        out.push(Listed {
            line: i + 1,
            token: Secret::new(t),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checked_without_showing_tokens() {
        let l = parse("t", "# ours\nglrt-abc\n\nglrt-def\nglrt-abc\n").unwrap();
        assert_eq!(l.iter().map(|l| l.line).collect::<Vec<_>>(), [2, 4]);
        let e = parse("t", "glrt-ok\nGR1348941secret\n").err().unwrap();
        assert!(
            e.contains("line 2") && !e.contains("GR1348941secret"),
            "{e}"
        );
    }
}
