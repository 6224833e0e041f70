//! mayfly-core: the words of docs/ARCHITECTURE.md as types, label routing, the billing model and the planner.
//! Everything here is pure: no I/O, no clock, no async, so it can be property-tested and simulated.

pub mod apply;
pub mod billing;
pub mod forge;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod naming;
pub mod pace;
pub mod plan;
pub mod secret;
pub mod time;

pub use billing::{Billing, Recycle};
pub use labels::{Arch, Image, ImageKind, LabelRules, Labels, Requirements};
pub use model::{
    Deadlines, ForgeKind, Instance, InstanceState, Job, JobKey, JobStatus, Limits, MachineSpec,
    Placement, Pool, Pools, Recycling, Refused, RefusedJob, RefusedSpec, Runner, RunnerScope,
    RunnerStatus, Snapshot,
};
pub use pace::{Ended, Pace, Pacer};
pub use plan::{Action, Assignment, How, LimitKind, Plan, Reason, WaitReason, Waiting, plan};
pub use secret::Secret;
pub use time::{Clock, Time};
