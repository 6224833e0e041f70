//! The parts of the mayfly binary that tests drive in-process: the engine (re-exported from
//! mayfly-controller: the HTTP server's router, the demand passes, the reconciler and its
//! metrics), the in-process controller against the simulator (`local`), the estimate; and the
//! ssh client and progress bars the commands share.
//! Everything else lives in the binary's own modules (see main.rs).

#[cfg(feature = "aws")]
pub mod asg;
pub mod estimate;
pub mod local;
pub mod progress;
pub mod ssh;

// The engine lives in mayfly-controller; its modules keep their paths here for the binary,
// the tests and the benchmarks.
pub use mayfly_controller::{
    control_loop, demand, escape, gitlab_demand, http, leader, metrics, reconcile, retention, view,
};
