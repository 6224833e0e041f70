//! Planning configurations for examples, benchmarks and tests: a pool on the simulated Hetzner
//! provider, and pools under a controller with default limits and deadlines.

use mayfly_core::{
    Arch, Deadlines, Image, ImageKind, Instance, InstanceState, LabelRules, Labels, Limits,
    MachineSpec, Placement, Pool, Pools, Recycling, Time,
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
        spec: spec(types, locations, arch),
        max: None,
        standby: 0,
        forges: Vec::new(),
    }
}

/// Ubuntu 24.04 of `arch` in the given types and locations (in order of preference).
pub fn spec(types: &[&str], locations: &[&str], arch: Arch) -> MachineSpec {
    MachineSpec {
        types: types.iter().map(|t| t.to_string()).collect(),
        locations: locations.iter().map(|l| l.to_string()).collect(),
        image: Image {
            arch,
            kind: ImageKind::System,
            name: "ubuntu-24.04".into(),
        },
    }
}

/// Where a machine of [`pool`]'s default kind runs: a cx23 in fsn1, Ubuntu 24.04 on x86.
pub fn placement() -> Placement {
    Placement {
        machine_type: "cx23".into(),
        location: "fsn1".into(),
        image: "x86:system:ubuntu-24.04".parse().expect("a valid image"),
    }
}

/// A machine `name` of `pool` under controller `mf`, in `state` since its creation at `at`,
/// provider id `id-<name>`: no labels, placement, job, billing or address (set what a test
/// needs with `..sample::instance(…)`).
pub fn instance(name: &str, pool: &str, state: InstanceState, at: Time) -> Instance {
    Instance {
        name: name.into(),
        provider_id: Some(format!("id-{name}")),
        controller: Some("mf".into()),
        pool: pool.into(),
        state,
        created_at: at,
        state_since: at,
        labels: Labels::default(),
        placement: None,
        job: None,
        run_id: None,
        billing: None,
        address: None,
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
