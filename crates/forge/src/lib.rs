//! mayfly-forge: the CI services that have jobs needing runners. GitHub Actions first: its REST
//! client (tokens, GitHub App auth, rate limits), webhook verification and parsing, polling.

pub mod github;
