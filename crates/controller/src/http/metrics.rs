//! `GET /metrics`: everything recorded, in the Prometheus text format. No token, as
//! Prometheus expects; the labels are bounded names (pools, providers, states), never secrets.

use crate::metrics::Exporter;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

/// The text exposition format's media type, version 0.0.4.
pub const CONTENT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route, to merge into the server's router.
pub fn router(exporter: Exporter) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let exporter = exporter.clone();
            async move { ([(CONTENT_TYPE, CONTENT)], exporter.render()).into_response() }
        }),
    )
}
