//! What a pool's machine spec names that the provider's catalogue does not offer as written: the
//! answer of [`crate::Provider::check`], worded so an operator can fix the configuration.

use mayfly_core::{Arch, MachineSpec, Time};
use serde::Serialize;
use std::fmt;

/// The part of a spec a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecItem {
    /// A machine type (Hetzner server type, EC2 instance type).
    ServerType,
    Image,
    Location,
}

impl SpecItem {
    pub fn word(self) -> &'static str {
        match self {
            SpecItem::ServerType => "server type",
            SpecItem::Image => "image",
            SpecItem::Location => "location",
        }
    }
}

/// What is wrong with one item. As JSON: `{"kind": "unavailable", "since": 1767225599000,
/// "locations": ["fsn1"]}` (times in Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpecIssue {
    /// The catalogue has no such name (never had, or the provider removed it).
    Unknown,
    /// Known, but it cannot be ordered in any of `locations` (the spec's; empty: anywhere).
    /// `since` is when it stopped being orderable there (a deprecation's `unavailable_after`),
    /// `None` when those locations never offered it.
    Unavailable {
        since: Option<Time>,
        locations: Vec<String>,
    },
    /// A server type of another architecture than the spec's image: creates skip it.
    OtherArchitecture { arch: Arch, image: Arch },
    /// Still orderable in `locations` (empty: wherever it is offered), but announced to go; after
    /// `unavailable_after` (if the provider said when) it is `Unavailable`. A warning.
    Deprecated {
        unavailable_after: Option<Time>,
        locations: Vec<String>,
    },
}

/// One problem of a spec, for a log line, `config check` or `mayfly status`. Its `Display` is a
/// sentence without the pool's name: "server type cx22 does not exist (known: cx23, cx33, …)".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecProblem {
    pub item: SpecItem,
    /// As the spec wrote it (an image as `arch:kind:name`).
    pub name: String,
    pub issue: SpecIssue,
    /// Names the catalogue does offer in the spec's place (same architecture, in its locations),
    /// closest first (same family, then fewest edits), at most [`ALTERNATIVES`]: for "did you mean".
    pub alternatives: Vec<String>,
}

/// How many alternatives a problem names at most.
pub const ALTERNATIVES: usize = 5;

impl SpecProblem {
    /// Whether the item can never be used as written (everything but `Deprecated`, which is a
    /// warning: the item still works until its date).
    pub fn is_error(&self) -> bool {
        !matches!(self.issue, SpecIssue::Deprecated { .. })
    }
}

/// Whether a spec with these problems can never get a machine: its image is refused, or every
/// type, or every location it names. A spec with only some bad types or locations still works
/// through its others (creates skip the bad ones), so its problems are warnings for the pool.
pub fn spec_unusable(spec: &MachineSpec, problems: &[SpecProblem]) -> bool {
    let refused = |item: SpecItem, name: &str| {
        problems
            .iter()
            .any(|p| p.item == item && p.name == name && p.is_error())
    };
    let image = problems
        .iter()
        .any(|p| p.item == SpecItem::Image && p.is_error());
    let types = spec.types.iter().all(|t| refused(SpecItem::ServerType, t));
    let locations = !spec.locations.is_empty()
        && spec
            .locations
            .iter()
            .all(|l| refused(SpecItem::Location, l));
    image || types || locations
}

/// `2025-12-31`: the day, in UTC, which is how Hetzner announces deprecations.
pub fn day(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.millis())
        .map(|ts| ts.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn arch_word(a: Arch) -> &'static str {
    match a {
        Arch::X86 => "x86",
        Arch::Arm => "arm",
    }
}

fn places(locations: &[String]) -> String {
    match locations.is_empty() {
        true => String::new(),
        false => format!(" in {}", locations.join(", ")),
    }
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (item, name) = (self.item.word(), &self.name);
        let hint = match self.issue {
            SpecIssue::Unknown => "known",
            _ => "try",
        };
        match &self.issue {
            SpecIssue::Unknown => write!(f, "{item} {name} does not exist")?,
            SpecIssue::Unavailable {
                since: Some(since),
                locations,
            } => write!(
                f,
                "{item} {name} is unavailable{} after {}",
                places(locations),
                day(*since)
            )?,
            SpecIssue::Unavailable {
                since: None,
                locations,
            } if locations.is_empty() => write!(f, "{item} {name} is not offered anywhere")?,
            SpecIssue::Unavailable {
                since: None,
                locations,
            } => write!(f, "{item} {name} is not offered{}", places(locations))?,
            SpecIssue::OtherArchitecture { arch, image } => write!(
                f,
                "{item} {name} is {}, the image is {}",
                arch_word(*arch),
                arch_word(*image)
            )?,
            SpecIssue::Deprecated {
                unavailable_after,
                locations,
            } => {
                write!(f, "{item} {name} is deprecated{}", places(locations))?;
                if let Some(t) = unavailable_after {
                    write!(f, ": orderable until {}", day(*t))?;
                }
            }
        }
        if !self.alternatives.is_empty() {
            write!(f, " ({hint}: {})", self.alternatives.join(", "))?;
        }
        Ok(())
    }
}

/// The family of a name: its leading letters (`cx` of `cx23`, `cpx` of `cpx22`, `ubuntu-` of
/// `ubuntu-24.04`), so alternatives of the same line come first.
fn family(name: &str) -> &str {
    let end = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    &name[..end]
}

/// Up to [`ALTERNATIVES`] of `candidates`, closest to `name` first: the same family before
/// others, then the fewest edits, then by name; of each other family only its closest, so one
/// line (`ccx13`, `ccx23`, …) does not crowd out the rest. A few dozen names at most are
/// compared, so plain edit distance is all it takes.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let wanted = name.to_ascii_lowercase();
    let mut ranked: Vec<(bool, usize, &str, String)> = candidates
        .into_iter()
        .filter(|c| !c.eq_ignore_ascii_case(name))
        .map(|c| {
            let lower = c.to_ascii_lowercase();
            let other = family(&lower) != family(&wanted);
            (
                other,
                strsim::levenshtein(&lower, &wanted),
                c,
                family(&lower).to_string(),
            )
        })
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.2 == b.2);
    let mut seen: Vec<String> = Vec::new();
    ranked
        .into_iter()
        .filter(|(other, _, _, fam)| {
            let first = !seen.contains(fam);
            seen.push(fam.clone());
            !other || first
        })
        .take(ALTERNATIVES)
        .map(|(_, _, c, _)| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(types: &[&str], locations: &[&str]) -> MachineSpec {
        MachineSpec {
            types: types.iter().map(|t| t.to_string()).collect(),
            locations: locations.iter().map(|l| l.to_string()).collect(),
            image: "x86:system:ubuntu-24.04".parse().unwrap(),
        }
    }

    fn problem(item: SpecItem, name: &str, issue: SpecIssue) -> SpecProblem {
        SpecProblem {
            item,
            name: name.into(),
            issue,
            alternatives: Vec::new(),
        }
    }

    #[test]
    fn problems_read_as_sentences() {
        let mut p = problem(SpecItem::ServerType, "cx22", SpecIssue::Unknown);
        p.alternatives = vec!["cx23".into(), "cx33".into()];
        assert_eq!(
            p.to_string(),
            "server type cx22 does not exist (known: cx23, cx33)"
        );
        // 2025-12-31T23:59:59Z
        let since = Some(Time::from_secs(1_767_225_599));
        p.issue = SpecIssue::Unavailable {
            since,
            locations: vec![],
        };
        assert_eq!(
            p.to_string(),
            "server type cx22 is unavailable after 2025-12-31 (try: cx23, cx33)"
        );
        p.issue = SpecIssue::Unavailable {
            since: None,
            locations: vec!["ash".into()],
        };
        p.alternatives.clear();
        assert_eq!(p.to_string(), "server type cx22 is not offered in ash");
        p.issue = SpecIssue::Deprecated {
            unavailable_after: since,
            locations: vec!["fsn1".into(), "nbg1".into()],
        };
        assert_eq!(
            p.to_string(),
            "server type cx22 is deprecated in fsn1, nbg1: orderable until 2025-12-31"
        );
        assert!(!p.is_error());
        p.issue = SpecIssue::OtherArchitecture {
            arch: Arch::Arm,
            image: Arch::X86,
        };
        assert_eq!(p.to_string(), "server type cx22 is arm, the image is x86");
        let l = problem(SpecItem::Location, "mars", SpecIssue::Unknown);
        assert_eq!(l.to_string(), "location mars does not exist");
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            serde_json::json!({ "item": "location", "name": "mars", "issue": { "kind": "unknown" }, "alternatives": [] })
        );
    }

    #[test]
    fn alternatives_prefer_the_same_family_then_fewer_edits() {
        let known = ["cpx22", "cx53", "cx23", "cax11", "cx33", "ccx13", "cx43"];
        assert_eq!(
            closest("cx22", known),
            ["cx23", "cx33", "cx43", "cx53", "cpx22"]
        );
        assert_eq!(closest("CPX21", known)[0], "cpx22");
        assert_eq!(closest("fsn", ["nbg1", "fsn1", "hel1"])[0], "fsn1");
        assert!(closest("cx23", ["cx23"]).is_empty(), "not itself");
    }

    #[test]
    fn a_spec_is_unusable_when_its_image_or_all_its_types_or_locations_are_refused() {
        let s = spec(&["cx22", "cx23"], &["fsn1", "mars"]);
        let cx22 = problem(SpecItem::ServerType, "cx22", SpecIssue::Unknown);
        let mars = problem(SpecItem::Location, "mars", SpecIssue::Unknown);
        assert!(!spec_unusable(&s, &[cx22.clone(), mars.clone()]));
        let cx23 = problem(
            SpecItem::ServerType,
            "cx23",
            SpecIssue::Deprecated {
                unavailable_after: None,
                locations: vec![],
            },
        );
        assert!(!spec_unusable(&s, &[cx22.clone(), cx23]), "a warning");
        let cx23 = problem(
            SpecItem::ServerType,
            "cx23",
            SpecIssue::Unavailable {
                since: None,
                locations: vec![],
            },
        );
        assert!(spec_unusable(&s, &[cx22, cx23]));
        let fsn1 = problem(SpecItem::Location, "fsn1", SpecIssue::Unknown);
        assert!(spec_unusable(&s, &[mars, fsn1]));
        let image = problem(
            SpecItem::Image,
            "x86:system:ubuntu-24.04",
            SpecIssue::Unknown,
        );
        assert!(spec_unusable(&s, &[image]));
        assert!(!spec_unusable(&spec(&["cx23"], &[]), &[]));
    }
}
