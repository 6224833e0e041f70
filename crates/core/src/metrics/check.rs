//! The one test helper: reads a Prometheus text exposition and says, one line per problem,
//! which metric is missing, has the wrong type, lacks a label, carries an extra one, or holds
//! a value its label does not allow.

use super::contract::{CONTRACT, Kind, Metric, Values, metric};
use std::collections::{BTreeMap, BTreeSet};

/// Checks `text` against the whole contract: every metric present with its type and labels,
/// and no `mayfly_` metric the contract does not name.
pub fn check_contract(text: &str) -> Result<(), Vec<String>> {
    let names: Vec<&str> = CONTRACT.iter().map(|m| m.name).collect();
    let (families, mut problems) = parse(text);
    for name in families.keys() {
        if name.starts_with("mayfly_") && metric(name).is_none() {
            problems.insert(format!("{name}: not in the contract"));
        }
    }
    finish(&families, &names, problems)
}

/// Checks only the metrics `names` (each must be in the contract): what a forge or provider
/// test uses for the metrics its client reports.
pub fn check(text: &str, names: &[&str]) -> Result<(), Vec<String>> {
    let (families, problems) = parse(text);
    finish(&families, names, problems)
}

/// The sum of the samples named `sample` (`mayfly_jobs`, `mayfly_job_queue_wait_seconds_count`)
/// whose labels include every pair of `matching`; 0 when there is none. For tests that compare
/// what was exported with what happened.
pub fn sum(text: &str, sample: &str, matching: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(sample) && !l.starts_with('#'))
        .filter_map(|l| self::sample(l).ok())
        .filter(|s| s.name == sample)
        .filter(|s| {
            matching
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
        })
        .map(|s| s.value)
        .sum()
}

fn finish(
    families: &BTreeMap<String, Family>,
    names: &[&str],
    mut problems: BTreeSet<String>,
) -> Result<(), Vec<String>> {
    for name in names {
        match metric(name) {
            Some(m) => check_metric(m, families.get(*name), &mut problems),
            None => {
                problems.insert(format!("{name}: not in the contract"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.into_iter().collect())
    }
}

#[derive(Debug, Default)]
struct Family {
    /// From the `# TYPE` line.
    kind: Option<String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    /// The sample's own name: a histogram's has its `_bucket`, `_sum` or `_count` suffix.
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The families of `text` by name, and the lines that could not be read.
fn parse(text: &str) -> (BTreeMap<String, Family>, BTreeSet<String>) {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut problems = BTreeSet::new();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                match (words.next(), words.next()) {
                    (Some(name), Some(kind)) => {
                        families.entry(name.to_string()).or_default().kind = Some(kind.to_string())
                    }
                    _ => {
                        problems.insert(format!("line {}: a TYPE line without a type", i + 1));
                    }
                }
            }
            continue;
        }
        match sample(line) {
            Ok(s) => samples.push(s),
            Err(why) => {
                problems.insert(format!("line {}: {why}: {line:?}", i + 1));
            }
        }
    }
    for s in samples {
        let family = family_of(&s.name, &families);
        families.entry(family).or_default().samples.push(s);
    }
    (families, problems)
}

/// A histogram's `_bucket`, `_sum` and `_count` samples belong to the family its TYPE names.
fn family_of(sample: &str, families: &BTreeMap<String, Family>) -> String {
    if families.get(sample).is_some_and(|f| f.kind.is_some()) {
        return sample.to_string();
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && families
                .get(base)
                .and_then(|f| f.kind.as_deref())
                .is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base.to_string();
        }
    }
    sample.to_string()
}

/// One sample line: `name{label="value",…} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a name without a value")?;
    let name = &line[..end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        for (k, v) in parsed {
            if labels.insert(k.clone(), v).is_some() {
                return Err(format!("label `{k}` twice"));
            }
        }
        rest = after;
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = value
        .parse::<f64>()
        .map_err(|_| format!("`{value}` is not a number"))?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Label names and values in the order written.
type Pairs = Vec<(String, String)>;

/// The labels up to the closing brace, and what follows it.
fn label_set(mut s: &str) -> Result<(Pairs, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("a label without a value")?;
        let name = s[..eq].trim().to_string();
        let quoted = s[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label `{name}`: the value is not quoted"))?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let close = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label `{name}`: unterminated value")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("label `{name}`: unterminated value")),
            }
        };
        labels.push((name, value));
        s = &quoted[close + 1..];
    }
}

fn check_metric(m: &Metric, family: Option<&Family>, problems: &mut BTreeSet<String>) {
    let name = m.name;
    let Some(family) = family else {
        problems.insert(format!("{name}: missing"));
        return;
    };
    let want = m.kind.as_str();
    match family.kind.as_deref() {
        None => {
            problems.insert(format!(
                "{name}: no `# TYPE` line (the contract says {want})"
            ));
        }
        Some(kind) if kind != want => {
            problems.insert(format!("{name}: type is {kind}, the contract says {want}"));
            return;
        }
        Some(_) => {}
    }
    if family.samples.is_empty() {
        problems.insert(format!("{name}: no samples"));
        return;
    }
    for s in &family.samples {
        let own = if m.kind == Kind::Histogram {
            match s.name.strip_prefix(name) {
                Some("_bucket") => {
                    if !s.labels.contains_key("le") {
                        problems.insert(format!("{name}: a `_bucket` sample without `le`"));
                    }
                    Some("le")
                }
                Some("_sum" | "_count") => None,
                _ => {
                    problems.insert(format!(
                        "{name}: sample `{}` is not a histogram's _bucket, _sum or _count",
                        s.name
                    ));
                    continue;
                }
            }
        } else {
            None
        };
        for label in m.labels {
            match (s.labels.get(label.name), label.values) {
                (None, _) => {
                    problems.insert(format!("{name}: missing label `{}`", label.name));
                }
                (Some(v), Values::OneOf(allowed)) if !allowed.contains(&v.as_str()) => {
                    problems.insert(format!(
                        "{name}: label `{}` has value `{v}`, not one of {}",
                        label.name,
                        allowed.join(", ")
                    ));
                }
                _ => {}
            }
        }
        for extra in s.labels.keys() {
            if m.label(extra).is_none() && Some(extra.as_str()) != own {
                problems.insert(format!("{name}: unexpected label `{extra}`"));
            }
        }
    }
    if m.kind == Kind::Histogram {
        check_histogram(m, family, problems);
    }
}

/// What one label set of a histogram has: its bucket bounds, a `_sum`, a `_count`.
#[derive(Default)]
struct Series {
    buckets: BTreeSet<String>,
    sum: bool,
    count: bool,
}

/// Every label set of a histogram has its `_count`, `_sum` and exactly the contract's buckets.
fn check_histogram(m: &Metric, family: &Family, problems: &mut BTreeSet<String>) {
    let name = m.name;
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for s in &family.samples {
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let at = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let entry = series.entry(at).or_default();
        match s.name.strip_prefix(name) {
            Some("_bucket") => {
                if let Some(le) = s.labels.get("le") {
                    entry.buckets.insert(bound(le));
                }
            }
            Some("_sum") => entry.sum = true,
            Some("_count") => entry.count = true,
            _ => {}
        }
    }
    let mut want: BTreeSet<String> = m.buckets.iter().map(|b| bound(&b.to_string())).collect();
    want.insert("+Inf".into());
    for (at, s) in series {
        if !s.count {
            problems.insert(format!("{name}{at}: no `_count` sample"));
        }
        if !s.sum {
            problems.insert(format!("{name}{at}: no `_sum` sample"));
        }
        if s.buckets != want {
            let missing: Vec<&str> = want.difference(&s.buckets).map(String::as_str).collect();
            let extra: Vec<&str> = s.buckets.difference(&want).map(String::as_str).collect();
            problems.insert(format!(
                "{name}{at}: buckets differ from the contract (missing le {missing:?}, \
                 unexpected le {extra:?})"
            ));
        }
    }
}

/// A bucket bound in one spelling: `1`, `1.0` and `1e0` are the same bound.
fn bound(le: &str) -> String {
    match le.parse::<f64>() {
        Ok(v) if v.is_infinite() && v > 0.0 => "+Inf".into(),
        Ok(v) => format!("{v}"),
        Err(_) => le.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal exposition that satisfies the contract: one sample of every metric with
    /// allowed label values, histograms with every bucket.
    fn complete() -> String {
        let mut out = String::new();
        for m in CONTRACT {
            out.push_str(&format!("# HELP {} {}\n", m.name, m.help));
            out.push_str(&format!("# TYPE {} {}\n", m.name, m.kind.as_str()));
            let labels: Vec<String> = m
                .labels
                .iter()
                .map(|l| {
                    let v = match l.values {
                        Values::Named => "linux",
                        Values::OneOf(v) => v[0],
                    };
                    format!("{}=\"{v}\"", l.name)
                })
                .collect();
            let set = |extra: Option<String>| {
                let all: Vec<String> = labels.iter().cloned().chain(extra).collect();
                if all.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", all.join(","))
                }
            };
            if m.kind == Kind::Histogram {
                for b in m.buckets {
                    let le = Some(format!("le=\"{b}\""));
                    out.push_str(&format!("{}_bucket{} 0\n", m.name, set(le)));
                }
                let inf = Some("le=\"+Inf\"".to_string());
                out.push_str(&format!("{}_bucket{} 0\n", m.name, set(inf)));
                out.push_str(&format!("{}_sum{} 0\n", m.name, set(None)));
                out.push_str(&format!("{}_count{} 0\n", m.name, set(None)));
            } else {
                out.push_str(&format!("{}{} 1\n", m.name, set(None)));
            }
        }
        out
    }

    fn problems(text: &str) -> Vec<String> {
        check_contract(text).err().unwrap_or_default()
    }

    #[test]
    fn a_complete_exposition_passes() {
        assert_eq!(check_contract(&complete()), Ok(()));
    }

    #[test]
    fn a_missing_metric_is_named() {
        let text: String = complete()
            .lines()
            .filter(|l| !l.contains("mayfly_runners"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(problems(&text), ["mayfly_runners: missing"]);
    }

    #[test]
    fn a_wrong_type_is_named() {
        let text = complete().replace("# TYPE mayfly_jobs gauge", "# TYPE mayfly_jobs counter");
        assert_eq!(
            problems(&text),
            ["mayfly_jobs: type is counter, the contract says gauge"]
        );
    }

    #[test]
    fn missing_extra_and_unknown_label_values_are_named() {
        let text = complete().replace(
            "mayfly_instances{pool=\"linux\",state=\"pending\"}",
            "mayfly_instances{state=\"flying\",zone=\"a\"}",
        );
        assert_eq!(
            problems(&text),
            [
                "mayfly_instances: label `state` has value `flying`, not one of pending, \
                 starting, running, stopping, off, deleting, unknown",
                "mayfly_instances: missing label `pool`",
                "mayfly_instances: unexpected label `zone`",
            ]
        );
    }

    #[test]
    fn histogram_parts_and_buckets_are_checked() {
        let text: String = complete()
            .lines()
            .filter(|l| {
                !l.starts_with("mayfly_reconcile_duration_seconds_count")
                    && !l.starts_with("mayfly_reconcile_duration_seconds_bucket{le=\"0.005\"}")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            problems(&text),
            [
                "mayfly_reconcile_duration_seconds: buckets differ from the contract (missing le \
                 [\"0.005\"], unexpected le [])",
                "mayfly_reconcile_duration_seconds: no `_count` sample",
            ]
        );
        // A summary where a histogram belongs: the exporter without the contract's buckets.
        let text = complete().replace(
            "# TYPE mayfly_job_queue_wait_seconds histogram",
            "# TYPE mayfly_job_queue_wait_seconds summary",
        );
        assert_eq!(
            problems(&text),
            ["mayfly_job_queue_wait_seconds: type is summary, the contract says histogram"]
        );
    }

    #[test]
    fn metrics_outside_the_contract_and_unreadable_lines_are_named() {
        let text = format!(
            "{}# TYPE mayfly_surprise gauge\nmayfly_surprise 1\nmayfly_jobs{{state=\"queued\" 3\n",
            complete()
        );
        assert_eq!(
            problems(&text),
            [
                format!(
                    "line {}: a label without a value: \"mayfly_jobs{{state=\\\"queued\\\" 3\"",
                    complete().lines().count() + 3
                ),
                "mayfly_surprise: not in the contract".to_string(),
            ]
        );
    }

    #[test]
    fn sums_add_the_matching_samples() {
        let text = "# TYPE mayfly_instances gauge\n\
                    mayfly_instances{pool=\"a\",state=\"running\"} 2\n\
                    mayfly_instances{pool=\"b\",state=\"running\"} 3\n\
                    mayfly_instances{pool=\"b\",state=\"off\"} 1\n\
                    mayfly_instances_other 7\n";
        assert_eq!(sum(text, "mayfly_instances", &[]), 6.0);
        assert_eq!(sum(text, "mayfly_instances", &[("pool", "b")]), 4.0);
        assert_eq!(sum(text, "mayfly_instances", &[("state", "running")]), 5.0);
        assert_eq!(sum(text, "mayfly_instances", &[("pool", "c")]), 0.0);
    }

    #[test]
    fn escaped_label_values_are_read() {
        let s = sample(r#"mayfly_build_info{version="1.0 \"x\" a\\b"} 1"#).unwrap();
        assert_eq!(s.labels["version"], r#"1.0 "x" a\b"#);
        assert!(sample("mayfly_jobs{state=\"queued\"} many").is_err());
    }

    #[test]
    fn a_subset_check_looks_at_the_named_metrics_only() {
        let text = "# TYPE mayfly_api_rate_limit_remaining gauge\n\
                    mayfly_api_rate_limit_remaining{api=\"hetzner\"} 3599\n";
        assert_eq!(check(text, &["mayfly_api_rate_limit_remaining"]), Ok(()));
        assert_eq!(
            check(text, &["mayfly_api_calls_total", "mayfly_nothing"]),
            Err(vec![
                "mayfly_api_calls_total: missing".to_string(),
                "mayfly_nothing: not in the contract".to_string(),
            ])
        );
    }
}
