//! The parts of the mayfly binary that tests drive in-process: the HTTP server's router, the
//! demand pass (polling and confirming jobs), the reconciler and its metrics; and the ssh client
//! and progress bars the commands share.
//! Everything else lives in the binary's own modules (see main.rs).

#[cfg(feature = "aws")]
pub mod asg;
pub mod demand;
pub mod escape;
pub mod estimate;
pub mod gitlab_demand;
pub mod http;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod progress;
pub mod reconcile;
pub mod retention;
pub mod ssh;
pub mod view;
