//! Which task definition runs a runner: each family says which labels it serves through a tag;
//! a runner's label set matches the family with exactly its labels first, else the smallest
//! family whose labels include all of them. Pure, so the choice is tested without AWS.

use mayfly_core::Labels;

/// One task definition family as the catalogue knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    pub family: String,
    /// The ARN of its latest active revision.
    pub arn: String,
    pub labels: Labels,
    /// Container names in the definition's order.
    pub containers: Vec<String>,
}

/// The labels a tag value lists: comma- or space-separated.
pub fn labels(tag: &str) -> Labels {
    Labels::new(
        tag.split([',', ' '])
            .map(str::trim)
            .filter(|l| !l.is_empty()),
    )
}

/// The family for `wanted`: an exact match, else the smallest superset (ties: by name).
pub fn choose<'a>(families: &'a [Family], wanted: &Labels) -> Option<&'a Family> {
    let lower = |l: &Labels| -> Vec<String> { l.iter().map(|s| s.to_ascii_lowercase()).collect() };
    let want = lower(wanted);
    let mut supersets: Vec<(&Family, usize)> = families
        .iter()
        .filter_map(|f| {
            let have = lower(&f.labels);
            want.iter()
                .all(|w| have.contains(w))
                .then_some((f, have.len()))
        })
        .collect();
    supersets.sort_by(|(a, n), (b, m)| n.cmp(m).then_with(|| a.family.cmp(&b.family)));
    supersets.first().map(|(f, _)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(name: &str, tag: &str) -> Family {
        Family {
            family: name.into(),
            arn: format!("arn:{name}:1"),
            labels: labels(tag),
            containers: vec!["runner".into()],
        }
    }

    #[test]
    fn the_exact_set_wins_then_the_smallest_superset() {
        let fams = [
            family("big", "self-hosted, linux, x64, gpu, large"),
            family("linux", "self-hosted,linux,x64"),
            family("linux-docker", "self-hosted linux x64 docker"),
        ];
        let pick = |l: &[&str]| choose(&fams, &Labels::new(l)).map(|f| f.family.as_str());
        assert_eq!(pick(&["self-hosted", "linux", "x64"]), Some("linux"));
        assert_eq!(pick(&["self-hosted", "docker"]), Some("linux-docker"));
        assert_eq!(pick(&["gpu"]), Some("big"));
        assert_eq!(
            pick(&["Linux", "X64"]),
            Some("linux"),
            "labels match case-insensitively"
        );
        assert_eq!(pick(&["arm64"]), None);
    }

    #[test]
    fn ties_go_by_name_not_by_listing_order() {
        let a = [family("b", "x,y"), family("a", "x,z")];
        assert_eq!(choose(&a, &Labels::new(["x"])).unwrap().family, "a");
    }
}
