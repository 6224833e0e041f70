//! Planning configurations for examples, benchmarks and tests: a pool on the simulated Hetzner
//! provider, and pools under a controller with default limits and deadlines.

use mayfly_core::{
    Arch, Deadlines, Image, ImageKind, LabelRules, Labels, Limits, MachineSpec, Pool, Pools,
    Recycling,
};

/// The name the simulated Hetzner provider goes by in pools.
pub const PROVIDER: &str = "hetzner";

/// A pool on the simulated Hetzner provider: Ubuntu 24.04 of `arch`, in the given types and
/// locations (in order of preference), no limit, no standby.
pub fn pool(name: &str, labels: &[&str], types: &[&str], locations: &[&str], arch: Arch) -> Pool {
    Pool {
        name: name.into(),
        provider: PROVIDER.into(),
        labels: Labels::new(labels),
        spec: MachineSpec {
            types: types.iter().map(|t| t.to_string()).collect(),
            locations: locations.iter().map(|l| l.to_string()).collect(),
            image: Image {
                arch,
                kind: ImageKind::System,
                name: "ubuntu-24.04".into(),
            },
        },
        max: None,
        standby: 0,
        forges: Vec::new(),
    }
}

/// These pools under `controller` with default limits and deadlines, recycling on or off. The
/// runner scope is set by the reconciler from where its runners register.
pub fn pools(controller: &str, pools: Vec<Pool>, recycling: bool) -> Pools {
    Pools {
        controller: controller.into(),
        pools,
        limits: Limits::default(),
        deadlines: Deadlines::default(),
        labels: LabelRules::default(),
        recycling: Recycling {
            enabled: recycling,
            ..Recycling::default()
        },
        runner_scope: Default::default(),
        forge_scopes: Default::default(),
    }
}
