//! What the catalogue says about a spec, without calling anything: which server types can be
//! ordered where and when, and the problems `check` reports. Pure, so every rule is unit-tested.

use crate::{SpecIssue, SpecItem, SpecProblem, closest};
use mayfly_core::{Arch, MachineSpec, Time};
use std::collections::{BTreeMap, HashMap};

/// A deprecation as the API reports it: announced, and unorderable after `unavailable_after`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deprecation {
    pub announced: Option<Time>,
    pub unavailable_after: Option<Time>,
}

impl Deprecation {
    /// Past its date at `now`: the type can no longer be ordered where it applies.
    fn passed(&self, now: Time) -> bool {
        self.unavailable_after.is_some_and(|u| now > u)
    }
}

/// What mayfly needs of one server type.
#[derive(Clone, Debug, Default)]
pub(crate) struct TypeInfo {
    pub arch: Option<Arch>,
    /// Gross EUR an hour, per location.
    pub prices: HashMap<String, f64>,
    /// Every location that offers the type, with its deprecation there if one was announced.
    /// Read from `locations[]` (per location since 2025-09-24); an older answer without it gives
    /// the priced locations and the top-level deprecation.
    pub locations: BTreeMap<String, Option<Deprecation>>,
}

/// Whether a type can be ordered in one location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    Orderable,
    /// Orderable, but announced to go.
    Deprecated(Deprecation),
    /// Past its deprecation's date there.
    Retired(Deprecation),
    /// The location does not offer the type (or does not exist).
    NotOffered,
}

impl TypeInfo {
    pub fn offer(&self, location: &str, now: Time) -> Offer {
        match self.locations.get(location) {
            None => Offer::NotOffered,
            Some(None) => Offer::Orderable,
            Some(Some(d)) if d.passed(now) => Offer::Retired(*d),
            Some(Some(d)) => Offer::Deprecated(*d),
        }
    }

    fn orderable(&self, location: &str, now: Time) -> bool {
        matches!(
            self.offer(location, now),
            Offer::Orderable | Offer::Deprecated(_)
        )
    }
}

/// Every server type by name.
pub(crate) type Types = HashMap<String, TypeInfo>;

/// A type by the spec's spelling: exact, else in lower case (Hetzner's names are).
pub(crate) fn lookup<'a>(types: &'a Types, name: &str) -> Option<&'a TypeInfo> {
    types
        .get(name)
        .or_else(|| types.get(&name.to_ascii_lowercase()))
}

/// The locations a spec asks for that the catalogue knows of (every location of every type);
/// all known locations when it names none.
fn wanted_locations(types: &Types, spec: &MachineSpec) -> Vec<String> {
    let known: Vec<&String> = {
        let mut all: Vec<&String> = types.values().flat_map(|t| t.locations.keys()).collect();
        all.sort();
        all.dedup();
        all
    };
    if spec.locations.is_empty() {
        return known.into_iter().cloned().collect();
    }
    spec.locations
        .iter()
        .filter(|l| known.contains(l))
        .cloned()
        .collect()
}

/// The types of `arch` orderable in one of `locations` at `now`: what alternatives are drawn from.
fn orderable_names<'a>(
    types: &'a Types,
    arch: Arch,
    locations: &[String],
    now: Time,
) -> Vec<&'a str> {
    let mut names: Vec<&str> = types
        .iter()
        .filter(|(_, t)| t.arch.is_none_or(|a| a == arch))
        .filter(|(_, t)| locations.iter().any(|l| t.orderable(l, now)))
        .map(|(n, _)| n.as_str())
        .collect();
    names.sort_unstable();
    names
}

/// The problems of a spec's server types at `now`: unknown, of another architecture than the
/// image, orderable in none of the spec's locations, or deprecated where still orderable.
pub(crate) fn type_problems(types: &Types, spec: &MachineSpec, now: Time) -> Vec<SpecProblem> {
    let arch = spec.image.arch;
    let wanted = wanted_locations(types, spec);
    let instead = orderable_names(types, arch, &wanted, now);
    let mut problems = Vec::new();
    for name in &spec.types {
        let problem = |issue: SpecIssue| SpecProblem {
            item: SpecItem::ServerType,
            name: name.clone(),
            alternatives: match issue {
                SpecIssue::Deprecated { .. } => Vec::new(),
                _ => closest(name, instead.iter().copied()),
            },
            issue,
        };
        let Some(info) = lookup(types, name) else {
            problems.push(problem(SpecIssue::Unknown));
            continue;
        };
        if let Some(a) = info.arch.filter(|a| *a != arch) {
            problems.push(problem(SpecIssue::OtherArchitecture {
                arch: a,
                image: arch,
            }));
            continue;
        }
        // Locations the catalogue does not know are reported as locations, not once per type.
        if wanted.is_empty() && !spec.locations.is_empty() {
            continue;
        }
        // Without locations in the spec, the API picks among the type's own.
        let here: Vec<&String> = match spec.locations.is_empty() {
            true => info.locations.keys().collect(),
            false => wanted.iter().collect(),
        };
        let offers: Vec<(&String, Offer)> = here.iter().map(|l| (*l, info.offer(l, now))).collect();
        let orderable: Vec<&(&String, Offer)> = offers
            .iter()
            .filter(|(_, o)| matches!(o, Offer::Orderable | Offer::Deprecated(_)))
            .collect();
        let at = |ls: Vec<String>| {
            if spec.locations.is_empty() {
                Vec::new()
            } else {
                ls
            }
        };
        if orderable.is_empty() {
            // "Since" only when every location retired it; a location that never had it says so.
            let retired: Option<Vec<Time>> = offers
                .iter()
                .map(|(_, o)| match o {
                    Offer::Retired(d) => d.unavailable_after,
                    _ => None,
                })
                .collect();
            let since = retired.and_then(|ts| ts.into_iter().max());
            problems.push(problem(SpecIssue::Unavailable {
                since,
                locations: at(wanted.clone()),
            }));
            continue;
        }
        let deprecated: Vec<(&String, Deprecation)> = orderable
            .iter()
            .filter_map(|(l, o)| match o {
                Offer::Deprecated(d) => Some((*l, *d)),
                _ => None,
            })
            .collect();
        if !deprecated.is_empty() {
            let unavailable_after = deprecated
                .iter()
                .filter_map(|(_, d)| d.unavailable_after)
                .min();
            let everywhere = deprecated.len() == orderable.len();
            let locations = match everywhere && spec.locations.is_empty() {
                true => Vec::new(),
                false => deprecated.iter().map(|(l, _)| (*l).clone()).collect(),
            };
            problems.push(problem(SpecIssue::Deprecated {
                unavailable_after,
                locations,
            }));
        }
    }
    problems
}

/// The spec's locations that `known` (the `GET /locations` names) lacks.
pub(crate) fn location_problems(known: &[String], spec: &MachineSpec) -> Vec<SpecProblem> {
    spec.locations
        .iter()
        .filter(|l| !known.contains(l))
        .map(|l| SpecProblem {
            item: SpecItem::Location,
            name: l.clone(),
            issue: SpecIssue::Unknown,
            alternatives: closest(l, known.iter().map(String::as_str)),
        })
        .collect()
}

/// A system image as `GET /images?type=system` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SystemImage {
    pub name: String,
    pub arch: Option<Arch>,
    /// When Hetzner deprecated it, if it did.
    pub deprecated: Option<Time>,
    pub available: bool,
}

/// The problem of a system image spec: no available image of that name for the architecture
/// (alternatives: the names there are), or a deprecated one.
pub(crate) fn system_image_problem(
    images: &[SystemImage],
    spec: &MachineSpec,
) -> Option<SpecProblem> {
    let (arch, name) = (spec.image.arch, spec.image.name.as_str());
    let for_arch: Vec<&SystemImage> = images
        .iter()
        .filter(|i| i.available && i.arch.is_none_or(|a| a == arch))
        .collect();
    let problem = |issue, alternatives| SpecProblem {
        item: SpecItem::Image,
        name: spec.image.to_string(),
        issue,
        alternatives,
    };
    match for_arch.iter().find(|i| i.name == name) {
        None => {
            let mut names: Vec<&str> = for_arch.iter().map(|i| i.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            Some(problem(SpecIssue::Unknown, closest(name, names)))
        }
        Some(i) => i.deprecated.map(|_| {
            problem(
                SpecIssue::Deprecated {
                    unavailable_after: None,
                    locations: Vec::new(),
                },
                Vec::new(),
            )
        }),
    }
}

/// Why a create skips a type, for the error when nothing of the spec was left to try.
pub(crate) fn why_skipped(problems: &[SpecProblem], name: &str) -> Option<String> {
    problems
        .iter()
        .find(|p| p.item == SpecItem::ServerType && p.name == *name && p.is_error())
        .map(ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: Time = Time::from_millis(1_780_272_000_000);

    fn dep(after: i64) -> Option<Deprecation> {
        Some(Deprecation {
            announced: Some(Time::from_millis(NOW.millis() - 90 * DAY)),
            unavailable_after: Some(Time::from_millis(NOW.millis() + after)),
        })
    }

    fn t(arch: Arch, locations: &[(&str, Option<Deprecation>)]) -> TypeInfo {
        TypeInfo {
            arch: Some(arch),
            prices: HashMap::new(),
            locations: locations.iter().map(|(l, d)| (l.to_string(), *d)).collect(),
        }
    }

    fn catalogue() -> Types {
        let eu = |d: Option<Deprecation>| [("fsn1", d), ("nbg1", d), ("hel1", d)];
        HashMap::from([
            ("cx23".into(), t(Arch::X86, &eu(None))),
            ("cx33".into(), t(Arch::X86, &eu(None))),
            ("cx22".into(), t(Arch::X86, &eu(dep(-150 * DAY)))),
            ("cax11".into(), t(Arch::Arm, &eu(None))),
            (
                "cpx21".into(),
                t(Arch::X86, &[("fsn1", dep(-150 * DAY)), ("ash", None)]),
            ),
            (
                "cx43".into(),
                t(Arch::X86, &[("fsn1", dep(30 * DAY)), ("nbg1", None)]),
            ),
            (
                "ccx13".into(),
                t(Arch::X86, &[("fsn1", None), ("ash", None)]),
            ),
        ])
    }

    fn spec(types: &[&str], locations: &[&str]) -> MachineSpec {
        MachineSpec {
            types: types.iter().map(|t| t.to_string()).collect(),
            locations: locations.iter().map(|l| l.to_string()).collect(),
            image: "x86:system:ubuntu-24.04".parse().unwrap(),
        }
    }

    fn said(types: &[&str], locations: &[&str]) -> Vec<String> {
        type_problems(&catalogue(), &spec(types, locations), NOW)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn offers_follow_the_dates_per_location() {
        let c = catalogue();
        assert_eq!(
            c["cx22"].offer("fsn1", NOW),
            Offer::Retired(dep(-150 * DAY).unwrap())
        );
        assert_eq!(
            c["cx43"].offer("fsn1", NOW),
            Offer::Deprecated(dep(30 * DAY).unwrap())
        );
        assert_eq!(c["cx23"].offer("ash", NOW), Offer::NotOffered);
        assert!(lookup(&c, "CX23").is_some());
    }

    #[test]
    fn unknown_retired_unsold_and_other_architecture_types_are_named() {
        assert_eq!(
            said(&["cx22", "cx24", "cax11", "cx23"], &["fsn1"]),
            [
                "server type cx22 is unavailable in fsn1 after 2026-01-02 (try: cx23, cx33, cx43, ccx13)",
                "server type cx24 does not exist (known: cx23, cx33, cx43, ccx13)",
                "server type cax11 is arm, the image is x86 (try: ccx13, cx23)",
            ]
        );
        assert_eq!(
            said(&["cx23"], &["ash"]),
            ["server type cx23 is not offered in ash (try: ccx13, cpx21)"]
        );
        // Retired in fsn1, never sold in nbg1: not "since" a date.
        assert_eq!(
            said(&["cpx21"], &["fsn1", "nbg1"]),
            ["server type cpx21 is not offered in fsn1, nbg1 (try: cx23, ccx13)"]
        );
        // Without locations: anywhere; cpx21 is still sold in ash.
        assert!(said(&["cpx21"], &[]).is_empty());
        assert_eq!(
            said(&["cx22"], &[]),
            [
                "server type cx22 is unavailable after 2026-01-02 (try: cx23, cx33, cx43, cpx21, ccx13)"
            ]
        );
    }

    #[test]
    fn a_type_orderable_but_announced_to_go_is_a_warning_where_it_applies() {
        let p = type_problems(&catalogue(), &spec(&["cx43"], &["fsn1", "nbg1"]), NOW);
        assert_eq!(
            p.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["server type cx43 is deprecated in fsn1: orderable until 2026-07-01"]
        );
        assert!(!p[0].is_error());
        assert!(said(&["cx43"], &["nbg1"]).is_empty());
        // Unknown locations are reported once, as locations, not per type.
        assert!(said(&["cx23"], &["mars"]).is_empty());
        let known = ["fsn1".to_string(), "nbg1".to_string(), "ash".to_string()];
        let l = location_problems(&known, &spec(&["cx23"], &["fsn", "nbg1"]));
        assert_eq!(l.len(), 1);
        assert_eq!(
            l[0].to_string(),
            "location fsn does not exist (known: fsn1, ash, nbg1)"
        );
    }

    #[test]
    fn system_images_are_judged_by_name_and_architecture() {
        let img = |name: &str, arch, deprecated| SystemImage {
            name: name.into(),
            arch: Some(arch),
            deprecated,
            available: true,
        };
        let images = [
            img("ubuntu-24.04", Arch::X86, None),
            img("ubuntu-22.04", Arch::X86, None),
            img("ubuntu-20.04", Arch::X86, Some(NOW)),
            img("debian-13", Arch::Arm, None),
        ];
        assert_eq!(system_image_problem(&images, &spec(&["cx23"], &[])), None);
        let mut s = spec(&["cx23"], &[]);
        s.image = "x86:system:ubuntu-24.4".parse().unwrap();
        assert_eq!(
            system_image_problem(&images, &s).unwrap().to_string(),
            "image x86:system:ubuntu-24.4 does not exist (known: ubuntu-24.04, ubuntu-20.04, ubuntu-22.04)"
        );
        s.image = "x86:system:debian-13".parse().unwrap();
        assert!(
            system_image_problem(&images, &s).unwrap().is_error(),
            "arm only"
        );
        s.image = "x86:system:ubuntu-20.04".parse().unwrap();
        let p = system_image_problem(&images, &s).unwrap();
        assert_eq!(
            (p.to_string(), p.is_error()),
            (
                "image x86:system:ubuntu-20.04 is deprecated".to_string(),
                false
            )
        );
    }
}
