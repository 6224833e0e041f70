//! Reading the config file: TOML parsed with spans, `${VAR}` interpolated in string values, then
//! deserialized with key paths. Errors point at file:line:col and never repeat a value.

use super::error::{ConfigError, Origin, Problem, did_you_mean};
use super::interpolate::{InterpolationError, interpolate, references};
use super::{Config, Env};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where each key of the file is, by dotted path (`pools[1].max`), so that problems found after
/// parsing can still name a line and column.
#[derive(Clone, Debug, Default)]
pub struct FileSpans {
    pub path: PathBuf,
    /// Line and column of each key's value.
    positions: BTreeMap<String, (usize, usize)>,
}

impl FileSpans {
    /// The position of `key`'s value, if the key is in the file.
    pub fn origin(&self, key: &str) -> Option<Origin> {
        let &(line, column) = self.positions.get(key)?;
        Some(Origin::File {
            path: self.path.clone(),
            line,
            column,
        })
    }
}

/// `pools[1].max` → `pools[1]` → `pools` → none.
pub fn parent(key: &str) -> Option<&str> {
    let cut = key.rfind(['.', '['])?;
    Some(&key[..cut])
}

/// Byte offsets to 1-based line and character column. The line starts are found once: every
/// key of the file asks for its position, and counting newlines from the top for each made
/// reading a file of 38,000 keys take minutes.
struct Lines<'a> {
    text: &'a str,
    /// Byte offset of each line's first character.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // The last line starting at or before `offset`.
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        (line, column)
    }
}

/// Parse `text`, the contents of the file at `path`.
pub fn parse(path: &Path, text: &str, env: &Env) -> Result<(Config, FileSpans), ConfigError> {
    let lines = Lines::new(text);
    let at = |offset: usize| {
        let (line, column) = lines.position(offset);
        Origin::File {
            path: path.to_path_buf(),
            line,
            column,
        }
    };

    let mut root = DeTable::parse(text).map_err(|e| {
        Problem::new("", format!("not valid TOML: {}", e.message()))
            .at(e.span().map(|s| at(s.start)))
    })?;

    let mut spans = FileSpans {
        path: path.to_path_buf(),
        positions: BTreeMap::new(),
    };
    index_table(root.get_ref(), "", &lines, &mut spans.positions);

    let mut problems = Vec::new();
    interpolate_table(root.get_mut(), "", env, &mut |key, span, err| {
        let offset = match &err {
            InterpolationError::Missing { reference, .. } => text
                .get(span.clone())
                .and_then(|raw| raw.find(reference.as_str()))
                .map_or(span.start, |i| span.start + i),
            _ => span.start,
        };
        problems.push(Problem::new(key, err.message()).at(Some(at(offset))));
    });
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }

    let config: Config = serde_path_to_error::deserialize(toml::de::Deserializer::from(root))
        .map_err(|e| {
            let key = dotted(e.path());
            let origin = e.inner().span().map(|s| at(s.start));
            readable(&key, e.inner().message()).at(origin)
        })?;
    Ok((config, spans))
}

/// The environment variables that string values of `text` refer to with `${NAME}`: what a
/// process reading the same file elsewhere (a systemd service, a cloud server) must be given.
pub fn referenced_variables(text: &str) -> std::collections::BTreeSet<String> {
    fn walk(v: &DeValue<'_>, out: &mut std::collections::BTreeSet<String>) {
        match v {
            DeValue::String(s) => out.extend(references(s).into_iter().map(str::to_string)),
            DeValue::Table(t) => t.iter().for_each(|(_, v)| walk(v.get_ref(), out)),
            DeValue::Array(items) => items.iter().for_each(|v| walk(v.get_ref(), out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    if let Ok(root) = DeTable::parse(text) {
        root.get_ref()
            .iter()
            .for_each(|(_, v)| walk(v.get_ref(), &mut out));
    }
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn index_table(
    table: &DeTable<'_>,
    prefix: &str,
    lines: &Lines<'_>,
    out: &mut BTreeMap<String, (usize, usize)>,
) {
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        // A table's own position is its key (its header), not the body.
        let offset = if v.get_ref().is_table() {
            k.span().start
        } else {
            v.span().start
        };
        out.insert(path.clone(), lines.position(offset));
        index_value(v, &path, lines, out);
    }
}

fn index_value(
    v: &Spanned<DeValue<'_>>,
    path: &str,
    lines: &Lines<'_>,
    out: &mut BTreeMap<String, (usize, usize)>,
) {
    match v.get_ref() {
        DeValue::Table(t) => index_table(t, path, lines, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.insert(p.clone(), lines.position(item.span().start));
                index_value(item, &p, lines, out);
            }
        }
        _ => {}
    }
}

type OnError<'a> = dyn FnMut(String, Range<usize>, InterpolationError) + 'a;

fn interpolate_table(table: &mut DeTable<'_>, prefix: &str, env: &Env, on_error: &mut OnError<'_>) {
    for (k, v) in table.iter_mut() {
        let path = join(prefix, k.get_ref());
        interpolate_value(v, &path, env, on_error);
    }
}

fn interpolate_value(
    v: &mut Spanned<DeValue<'_>>,
    path: &str,
    env: &Env,
    on_error: &mut OnError<'_>,
) {
    let span = v.span();
    match v.get_mut() {
        DeValue::String(s) => match interpolate(s, env) {
            Ok(std::borrow::Cow::Owned(replaced)) => *s = replaced.into(),
            Ok(std::borrow::Cow::Borrowed(_)) => {}
            Err(e) => on_error(path.to_string(), span, e),
        },
        DeValue::Table(t) => interpolate_table(t, path, env, on_error),
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env, on_error);
            }
        }
        _ => {}
    }
}

fn dotted(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { variant } => out = join(&out, variant),
            Segment::Unknown => out = join(&out, "?"),
        }
    }
    out
}

/// A serde message in the words of a config file, without the value serde likes to quote
/// (`invalid type: string "ghp_…"` could be a token).
fn readable(key: &str, message: &str) -> Problem {
    let ticked = |s: &str| -> Vec<String> {
        s.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = ticked(rest);
        let Some((unknown, known)) = names.split_first() else {
            return Problem::new(key, "unknown key");
        };
        let key = if key.rsplit(['.', '[']).next() == Some(unknown.as_str()) {
            key.to_string()
        } else {
            join(key, unknown)
        };
        let hint = did_you_mean(unknown, known.iter().map(String::as_str))
            .or_else(|| (!known.is_empty()).then(|| format!("known keys: {}", known.join(", "))));
        return Problem::new(key, "unknown key").hint(hint);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let names = ticked(rest);
        let known: Vec<&str> = names.iter().skip(1).map(String::as_str).collect();
        let hint = names
            .first()
            .and_then(|u| did_you_mean(u, known.iter().copied()));
        let list = known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Problem::new(key, format!("unknown value, expected one of {list}")).hint(hint);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return Problem::new(key, format!("missing key {rest}"));
    }
    for (prefix, invalid_type) in [("invalid type: ", true), ("invalid value: ", false)] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest
                .rsplit_once(", expected ")
                .unwrap_or((rest, "another value"));
            let expected = expected_words(expected);
            let message = if invalid_type {
                format!("expected {expected}, found {}", found_words(found))
            } else {
                format!("invalid value, expected {expected}")
            };
            return Problem::new(key, message);
        }
    }
    Problem::new(key, message)
}

fn expected_words(expected: &str) -> &str {
    match expected {
        "u32" => "an integer from 0 to 4294967295",
        "u8" | "u16" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "a sequence" => "an array",
        "a map" => "a table",
        "a boolean" | "a string" => expected,
        "socket address" => "an address like \"127.0.0.1:8080\"",
        "path string" => "a path",
        e if e.starts_with("struct ") => "a table",
        e if e.starts_with("enum ") => "a string",
        e => e,
    }
}

/// The kind of the value found, never the value itself.
fn found_words(found: &str) -> &'static str {
    match found.split(' ').next().unwrap_or("") {
        "string" | "char" => "a string",
        "integer" => "an integer",
        "floating" => "a float",
        "boolean" => "a boolean",
        "map" => "a table",
        "sequence" => "an array",
        _ => "another kind of value",
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn positions_are_lines_and_character_columns() {
        let text = "a = 1\nbé = 2\n\nc = 3";
        let lines = Lines::new(text);
        assert_eq!(lines.position(0), (1, 1));
        assert_eq!(lines.position(4), (1, 5));
        assert_eq!(lines.position(6), (2, 1));
        // `é` is two bytes and one column.
        assert_eq!(lines.position(text.find("= 2").unwrap()), (2, 4));
        assert_eq!(lines.position(text.find('c').unwrap()), (4, 1));
        assert_eq!(lines.position(text.len()), (4, 6));
        assert_eq!(lines.position(text.len() + 10), (4, 6));
        assert_eq!(Lines::new("").position(0), (1, 1));
    }
}
