//! The variants an estimate compares: recycling on and off, each with no standby runners and
//! with N per pool, plus the configuration as given when it is none of these.

use mayfly_core::Pools;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub recycling: bool,
    /// Standby runners of each pool, in the configuration's order.
    pub standby: Vec<u32>,
    /// This is the configuration as given.
    pub configured: bool,
}

impl Scenario {
    /// `2` when every pool keeps the same number, `2,0` otherwise.
    pub fn standby_label(&self) -> String {
        match self.standby.split_first() {
            None => "0".to_string(),
            Some((first, rest)) if rest.iter().all(|n| n == first) => first.to_string(),
            Some(_) => self
                .standby
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// `pools` with this scenario's recycling and standby.
    pub fn apply(&self, pools: &Pools) -> Pools {
        let mut out = pools.clone();
        out.recycling.enabled = self.recycling;
        for (pool, n) in out.pools.iter_mut().zip(&self.standby) {
            pool.standby = *n;
        }
        out
    }
}

/// Recycling on and off, each with standby 0 and N per pool. N is `standby` when given, else
/// the configured standby when a pool has any, else 1; never beyond a pool's or the global
/// limit. The configured scenario is marked, and added first when the grid lacks it.
pub fn scenarios(pools: &Pools, standby: Option<u32>) -> Vec<Scenario> {
    let configured: Vec<u32> = pools.pools.iter().map(|p| p.standby).collect();
    let cap = |pool: &mayfly_core::Pool, n: u32| {
        let n = pool.max.map_or(n, |m| n.min(m));
        pools.limits.max_instances.map_or(n, |m| n.min(m))
    };
    let n: Vec<u32> = match standby {
        Some(n) => pools.pools.iter().map(|p| cap(p, n)).collect(),
        None if configured.iter().any(|&n| n > 0) => configured.clone(),
        None => pools.pools.iter().map(|p| cap(p, 1)).collect(),
    };
    let zero = vec![0; pools.pools.len()];
    let mut out: Vec<Scenario> = Vec::new();
    for recycling in [true, false] {
        for standby in [&zero, &n] {
            let s = Scenario {
                recycling,
                standby: standby.clone(),
                configured: recycling == pools.recycling.enabled && *standby == configured,
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    if !out.iter().any(|s| s.configured) {
        out.insert(
            0,
            Scenario {
                recycling: pools.recycling.enabled,
                standby: configured,
                configured: true,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local;
    use mayfly_core::Arch;

    fn pools(standby: &[u32], recycling: bool) -> Pools {
        let list = standby
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut p = local::pool(
                    &format!("p{i}"),
                    &["self-hosted"],
                    &["cx23"],
                    &["fsn1"],
                    Arch::X86,
                );
                p.standby = *n;
                p.max = Some(2);
                p
            })
            .collect();
        local::pools("mf", list, recycling)
    }

    fn grid(s: &[Scenario]) -> Vec<(bool, String, bool)> {
        s.iter()
            .map(|s| (s.recycling, s.standby_label(), s.configured))
            .collect()
    }

    #[test]
    fn without_standby_the_alternative_is_one_per_pool() {
        let s = scenarios(&pools(&[0, 0], true), None);
        assert_eq!(
            grid(&s),
            [
                (true, "0".into(), true),
                (true, "1".into(), false),
                (false, "0".into(), false),
                (false, "1".into(), false),
            ]
        );
    }

    #[test]
    fn configured_standby_is_n_and_a_given_n_adds_the_configured_row() {
        let s = scenarios(&pools(&[2, 0], false), None);
        assert_eq!(
            grid(&s),
            [
                (true, "0".into(), false),
                (true, "2,0".into(), false),
                (false, "0".into(), false),
                (false, "2,0".into(), true),
            ]
        );
        // 5 is capped at each pool's max of 2; the configured 2,0 is not in the grid.
        let s = scenarios(&pools(&[2, 0], false), Some(5));
        assert_eq!(grid(&s)[0], (false, "2,0".into(), true));
        assert_eq!(grid(&s)[2], (true, "2".into(), false));
        assert_eq!(s.len(), 5);
        let applied = s[2].apply(&pools(&[2, 0], false));
        assert!(applied.recycling.enabled);
        assert_eq!(applied.pools[1].standby, 2);
    }
}
