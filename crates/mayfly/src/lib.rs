//! The parts of the mayfly binary that tests drive in-process: the HTTP server's router, the
//! demand pass (polling and confirming jobs) and the reconciler.
//! Everything else lives in the binary's own modules (see main.rs).

pub mod demand;
pub mod estimate;
pub mod http;
pub mod local;
pub mod reconcile;
