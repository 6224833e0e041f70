//! Runner labels, GitHub's matching rule, and the dynamic labels (`type-`, `in-`, `image-`, meta
//! labels) through which a job overrides its pool's machine spec, as the Python Hetzner peer does.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// An ordered, de-duplicated set of lower-case labels. Order is kept because dynamic labels use it
/// for fallbacks (`type-cx23, type-cpx22` tries cx23 first). Shared on clone: a plan copies the
/// same few label sets into thousands of actions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct Labels(Arc<Vec<String>>);

impl Labels {
    /// Linear in the number of labels: a set remembers what is in already (`insert` alone scans,
    /// which is fine for one label and quadratic for thousands).
    pub fn new<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for l in labels {
            let l = l.as_ref().trim().to_lowercase();
            if !l.is_empty() && seen.insert(l.clone()) {
                out.push(l);
            }
        }
        Labels(Arc::new(out))
    }

    pub fn insert(&mut self, label: &str) {
        let l = label.trim().to_lowercase();
        if !l.is_empty() && !self.0.contains(&l) {
            Arc::make_mut(&mut self.0).push(l);
        }
    }

    pub fn contains(&self, label: &str) -> bool {
        self.0.iter().any(|l| l.eq_ignore_ascii_case(label))
    }

    /// GitHub's rule: a runner can take a job when every label of the job is one of the runner's.
    pub fn is_subset_of(&self, runner: &Labels) -> bool {
        self.0.iter().all(|l| runner.contains(l))
    }

    /// Identifies the shared allocation: clones of one `Labels` have the same id, and equal ids
    /// mean equal labels (they are never changed in place once shared).
    pub fn shared_id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Equal as sets: the same labels in any order.
    pub fn same_set(&self, other: &Labels) -> bool {
        self.len() == other.len() && self.is_subset_of(other)
    }

    pub fn union(&self, other: &Labels) -> Labels {
        let mut out = self.clone();
        for l in other.0.iter() {
            out.insert(l);
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels sorted and joined: equal for equal sets whatever the order. Used to count
    /// instances per label set.
    pub fn set_key(&self) -> String {
        let mut v: Vec<&str> = self.iter().collect();
        v.sort_unstable();
        v.join(",")
    }
}

impl From<Vec<String>> for Labels {
    fn from(v: Vec<String>) -> Self {
        Labels::new(v)
    }
}

impl From<Labels> for Vec<String> {
    fn from(l: Labels) -> Self {
        Arc::unwrap_or_clone(l.0)
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86,
    Arm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    System,
    Snapshot,
    Backup,
    App,
}

/// A machine image: architecture, kind and name, written `x86:system:ubuntu-24.04` in
/// configuration and `image-x86-system-ubuntu-24.04` as a job label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Image {
    pub arch: Arch,
    pub kind: ImageKind,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("image {0:?}: expected <x86|arm>:<system|snapshot|backup|app>:<name>")]
    BadImage(String),
    #[error("label {0:?}: expected {1}image-<x86|arm>-<system|snapshot|backup|app>-<name>")]
    BadImageLabel(String, String),
    #[error("label {0:?}: nothing after the {1:?} prefix")]
    Empty(String, String),
}

impl FromStr for Arch {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "x86" | "x64" | "amd64" | "x86_64" => Ok(Arch::X86),
            "arm" | "arm64" | "aarch64" => Ok(Arch::Arm),
            _ => Err(()),
        }
    }
}

impl FromStr for ImageKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "system" => Ok(ImageKind::System),
            "snapshot" => Ok(ImageKind::Snapshot),
            "backup" => Ok(ImageKind::Backup),
            "app" => Ok(ImageKind::App),
            _ => Err(()),
        }
    }
}

impl FromStr for Image {
    type Err = LabelError;
    /// `arch:kind:name`, or a bare name meaning an x86 system image.
    fn from_str(s: &str) -> Result<Self, LabelError> {
        let bad = || LabelError::BadImage(s.to_string());
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        match parts.as_slice() {
            [name] if !name.is_empty() => Ok(Image {
                arch: Arch::X86,
                kind: ImageKind::System,
                name: name.to_string(),
            }),
            [arch, kind, name] if !name.is_empty() => Ok(Image {
                arch: arch.parse().map_err(|_| bad())?,
                kind: kind.parse().map_err(|_| bad())?,
                name: name.to_string(),
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arch = match self.arch {
            Arch::X86 => "x86",
            Arch::Arm => "arm",
        };
        let kind = match self.kind {
            ImageKind::System => "system",
            ImageKind::Snapshot => "snapshot",
            ImageKind::Backup => "backup",
            ImageKind::App => "app",
        };
        write!(f, "{arch}:{kind}:{}", self.name)
    }
}

/// How job labels are read: an optional prefix in front of every dynamic label (`prefix = "hz-"`
/// makes `hz-type-cx23` dynamic and leaves `type-cx23` an ordinary label), and meta labels, each
/// standing for several labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRules {
    pub prefix: String,
    /// Keyed by the meta label in lower case, as job labels are ([`LabelRules::new`] makes
    /// them so): a job label is looked up, not compared with every key.
    pub meta: BTreeMap<String, Vec<String>>,
}

/// What a job's labels ask for once dynamic and meta labels are taken out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirements {
    /// The ordinary labels: a pool serves the job when it has all of them.
    pub routing: Labels,
    /// Server types in order of preference; empty means the pool's default.
    pub types: Vec<String>,
    /// Locations in order of preference; empty means the pool's default.
    pub locations: Vec<String>,
    /// The image; `None` means the pool's default.
    pub image: Option<Image>,
}

impl LabelRules {
    /// Rules with meta labels keyed in lower case; of two keys equal but for case, the last
    /// in order wins (configuration validation reports them).
    pub fn new(prefix: impl Into<String>, meta: BTreeMap<String, Vec<String>>) -> LabelRules {
        LabelRules {
            prefix: prefix.into(),
            meta: meta
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        }
    }

    /// What `labels` ask for. Linear in the labels and their expansions (sets, not scans), so
    /// that a configuration with tens of thousands of meta labels validates in moments.
    pub fn requirements(&self, labels: &Labels) -> Result<Requirements, LabelError> {
        let mut read = Read::default();
        for label in labels.iter() {
            match self.meta.get(label) {
                Some(expansion) => {
                    for l in expansion {
                        self.read_one(&l.trim().to_lowercase(), &mut read)?;
                    }
                }
                None => self.read_one(label, &mut read)?,
            }
        }
        Ok(Requirements {
            routing: Labels::new(read.routing),
            types: read.types.0,
            locations: read.locations.0,
            image: read.image,
        })
    }

    fn read_one(&self, label: &str, req: &mut Read) -> Result<(), LabelError> {
        let Some(rest) = label.strip_prefix(self.prefix.as_str()) else {
            req.routing.push(label.to_string());
            return Ok(());
        };
        let nonempty = |v: &str, p: &str| {
            if v.is_empty() {
                Err(LabelError::Empty(
                    label.to_string(),
                    format!("{}{p}", self.prefix),
                ))
            } else {
                Ok(v.to_string())
            }
        };
        if let Some(t) = rest.strip_prefix("type-") {
            req.types.push(nonempty(t, "type-")?);
        } else if let Some(loc) = rest.strip_prefix("in-") {
            req.locations.push(nonempty(loc, "in-")?);
        } else if let Some(img) = rest.strip_prefix("image-") {
            let bad = || LabelError::BadImageLabel(label.to_string(), self.prefix.clone());
            let mut parts = img.splitn(3, '-');
            let arch = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
            let kind = parts.next().and_then(|k| k.parse().ok()).ok_or_else(bad)?;
            let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
            req.image = Some(Image {
                arch,
                kind,
                name: name.to_string(),
            });
        } else {
            req.routing.push(label.to_string());
        }
        Ok(())
    }
}

/// [`Requirements`] as they are read: labels in order, duplicates dropped at the end.
#[derive(Default)]
struct Read {
    routing: Vec<String>,
    types: Ordered,
    locations: Ordered,
    image: Option<Image>,
}

/// Values in first-seen order without repeats, with a set beside them for the test.
#[derive(Default)]
struct Ordered(Vec<String>, std::collections::HashSet<String>);

impl Ordered {
    fn push(&mut self, v: String) {
        if self.1.insert(v.clone()) {
            self.0.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LabelRules {
        LabelRules::default()
    }

    #[test]
    fn matching_is_a_case_insensitive_subset() {
        let runner = Labels::new(["self-hosted", "Linux", "X64"]);
        assert!(Labels::new(["SELF-HOSTED", "linux"]).is_subset_of(&runner));
        assert!(Labels::new(Vec::<String>::new()).is_subset_of(&runner));
        assert!(!Labels::new(["self-hosted", "gpu"]).is_subset_of(&runner));
    }

    #[test]
    fn labels_are_lowercased_and_deduplicated_in_order() {
        let l = Labels::new(["B", "a", "b", " A "]);
        assert_eq!(l.iter().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(l.set_key(), "a,b");
    }

    #[test]
    fn dynamic_labels_give_ordered_fallbacks() {
        let req = rules()
            .requirements(&Labels::new([
                "self-hosted",
                "type-cx23",
                "in-fsn1",
                "type-cpx22",
                "in-nbg1",
            ]))
            .unwrap();
        assert_eq!(req.routing, Labels::new(["self-hosted"]));
        assert_eq!(req.types, ["cx23", "cpx22"]);
        assert_eq!(req.locations, ["fsn1", "nbg1"]);
        assert_eq!(req.image, None);
    }

    #[test]
    fn image_labels_keep_dashes_in_the_name() {
        let req = rules()
            .requirements(&Labels::new(["image-arm-system-ubuntu-24.04"]))
            .unwrap();
        assert_eq!(
            req.image,
            Some(Image {
                arch: Arch::Arm,
                kind: ImageKind::System,
                name: "ubuntu-24.04".into()
            })
        );
        let err = rules()
            .requirements(&Labels::new(["image-sparc-system-x"]))
            .unwrap_err();
        assert!(err.to_string().contains("image-sparc-system-x"), "{err}");
        assert!(
            rules()
                .requirements(&Labels::new(["image-x86-system-"]))
                .is_err()
        );
        assert!(rules().requirements(&Labels::new(["type-"])).is_err());
    }

    #[test]
    fn prefix_makes_only_prefixed_labels_dynamic() {
        let r = LabelRules {
            prefix: "hz-".into(),
            ..Default::default()
        };
        let req = r
            .requirements(&Labels::new(["type-cx23", "hz-type-cpx32", "hz-in-hel1"]))
            .unwrap();
        assert_eq!(req.routing, Labels::new(["type-cx23"]));
        assert_eq!(req.types, ["cpx32"]);
        assert_eq!(req.locations, ["hel1"]);
    }

    #[test]
    fn meta_labels_expand_to_several() {
        let r = LabelRules::new(
            "",
            BTreeMap::from([(
                "Big-ARM".to_string(),
                vec!["type-cax41".into(), "in-fsn1".into(), "arm64".into()],
            )]),
        );
        let req = r
            .requirements(&Labels::new(["self-hosted", "big-arm"]))
            .unwrap();
        assert_eq!(req.types, ["cax41"]);
        assert_eq!(req.locations, ["fsn1"]);
        assert_eq!(req.routing, Labels::new(["self-hosted", "arm64"]));
    }

    /// 40,000 meta labels, each checked as configuration validation does, and one job with
    /// 40,000 labels: linear work, done in well under a second even unoptimised (it took
    /// minutes when every label was compared with every key).
    #[test]
    fn many_meta_labels_and_many_labels_stay_linear() {
        let n = 40_000;
        let meta: BTreeMap<String, Vec<String>> = (0..n)
            .map(|i| {
                (
                    format!("Meta-{i}"),
                    vec![format!("type-t{i}"), format!("l{i}")],
                )
            })
            .collect();
        let r = LabelRules::new("", meta.clone());
        for expansion in meta.values() {
            r.requirements(&Labels::new(expansion)).unwrap();
        }
        let job = Labels::new(
            (0..n)
                .map(|i| format!("meta-{i}"))
                .chain(["self-hosted".into()]),
        );
        assert_eq!(job.len(), n + 1);
        let req = r.requirements(&job).unwrap();
        assert_eq!((req.types.len(), req.routing.len()), (n, n + 1));
        assert_eq!(req.types[..2], ["t0", "t1"]);
        let dup = Labels::new((0..n).map(|i| format!("L{}", i % 7)));
        assert_eq!(
            dup.iter().collect::<Vec<_>>(),
            ["l0", "l1", "l2", "l3", "l4", "l5", "l6"]
        );
    }

    #[test]
    fn images_parse_from_config_form() {
        let i: Image = "arm:snapshot:my-runner".parse().unwrap();
        assert_eq!(i.to_string(), "arm:snapshot:my-runner");
        let bare: Image = "ubuntu-24.04".parse().unwrap();
        assert_eq!(bare.to_string(), "x86:system:ubuntu-24.04");
        assert!("x86:floppy:dos".parse::<Image>().is_err());
    }
}
