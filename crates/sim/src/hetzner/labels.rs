//! Labels: the API's validation of keys and values, and the `label_selector` query language
//! (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated: all must hold).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Eq(String, String),
    /// Holds when the key is absent too, as in Kubernetes, whose language the API borrows.
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for term in split_top_level(text)? {
            let term = term.trim();
            if term.is_empty() {
                return Err(format!("empty requirement in {text:?}"));
            }
            reqs.push(requirement(term)?);
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::Ne(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

/// Splits on commas outside parentheses, so `k in (a,b),x` is two requirements.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced parentheses in {text:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {text:?}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement(term: &str) -> Result<Requirement, String> {
    let key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        if valid_key(k) {
            Ok(k.to_string())
        } else {
            Err(format!("invalid label key {k:?}"))
        }
    };
    let value = |v: &str| -> Result<String, String> {
        let v = v.trim();
        if valid_value(v) {
            Ok(v.to_string())
        } else {
            Err(format!("invalid label value {v:?}"))
        }
    };
    if let Some(rest) = term.strip_prefix('!') {
        return Ok(Requirement::Absent(key(rest)?));
    }
    if let Some(open) = term.find('(') {
        let inner = term[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("expected ')' at the end of {term:?}"))?;
        let values = inner.split(',').map(value).collect::<Result<Vec<_>, _>>()?;
        let mut words = term[..open].split_whitespace();
        let (k, op) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if words.next().is_some() {
            return Err(format!("unexpected words in {term:?}"));
        }
        return match op {
            "in" => Ok(Requirement::In(key(k)?, values)),
            "notin" => Ok(Requirement::NotIn(key(k)?, values)),
            _ => Err(format!("expected 'in' or 'notin' in {term:?}")),
        };
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::Ne(key(k)?, value(v)?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Eq(key(k)?, value(v)?));
    }
    Ok(Requirement::Exists(key(term)?))
}

/// A name segment or a value: up to 63 characters, alphanumeric at both ends, `-_.` inside.
fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `[prefix/]name`, the prefix a DNS subdomain; `hetzner.cloud/` is reserved.
pub fn valid_key(k: &str) -> bool {
    match k.rsplit_once('/') {
        None => valid_segment(k),
        Some((prefix, name)) => {
            prefix.len() <= 253
                && prefix != "hetzner.cloud"
                && prefix.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                })
                && valid_segment(name)
        }
    }
}

pub fn valid_value(v: &str) -> bool {
    v.is_empty() || valid_segment(v)
}

/// Checks a label map as the create and update endpoints do.
pub fn validate(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in labels {
        if !valid_key(k) {
            return Err(format!("invalid label key {k:?}"));
        }
        if !valid_value(v) {
            return Err(format!("invalid label value {v:?} of key {k:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_selects_as_documented() {
        let l = labels(&[
            ("env", "prod"),
            ("pool", "x64"),
            ("mayfly.dev/controller", "c1"),
        ]);
        for (sel, want) in [
            ("env=prod", true),
            ("env==prod", true),
            ("env!=prod", false),
            ("team!=a", true),
            ("env", true),
            ("!env", false),
            ("!team", true),
            ("pool in (arm, x64)", true),
            ("pool notin (arm,x64)", false),
            ("team notin (a)", true),
            (
                "env=prod,pool in (x64),!team,mayfly.dev/controller=c1",
                true,
            ),
            ("env=prod,pool=arm", false),
        ] {
            assert_eq!(
                Selector::parse(sel).map(|s| s.matches(&l)),
                Ok(want),
                "{sel}"
            );
        }
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for sel in [
            "",
            "a,,b",
            "k in (a",
            "k of (a)",
            "k in a)",
            "-bad=x",
            "hetzner.cloud/x=y",
        ] {
            assert!(Selector::parse(sel).is_err(), "{sel}");
        }
    }
}
