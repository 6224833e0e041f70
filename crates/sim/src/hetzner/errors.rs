//! The API's error body (`{"error": {code, message, details}}`) with the real codes and statuses.
//! Handlers return `Result<_, ApiError>`, so bad input always gets an answer, never a panic.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        details: Value,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
            json!({}),
        )
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
            json!({}),
        )
    }

    /// One field failed validation; `details.fields` names it as the real API does.
    pub fn invalid_field(field: &str, message: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("invalid input in field '{field}': {message}"),
            json!({ "fields": [{ "name": field, "messages": [message] }] }),
        )
    }

    /// A create of a type retired in every location that sold it. Status and wording as the
    /// real API answered for cx22 after 2025-12-31 (422, "server type 104 is deprecated").
    pub fn deprecated_type(id: u64) -> ApiError {
        let message = format!("server type {id} is deprecated");
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            message.clone(),
            json!({ "fields": [{ "name": "server_type", "messages": [message] }] }),
        )
    }

    /// A create of a type in a location that does not sell it (never did, or retired it there).
    /// As the real API answered for cx23 in ash and for cpx21 in nbg1 (422).
    pub fn unsupported_location() -> ApiError {
        let message = "unsupported location for server type";
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            message,
            json!({ "fields": [{ "name": "location", "messages": [message] }] }),
        )
    }

    #[cfg(test)]
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn json_error(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "json_error", message, json!({}))
    }

    /// A name (or key fingerprint) is taken: the idempotency signal for deterministic names.
    pub fn uniqueness(field: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "uniqueness_error",
            format!("{field} is already used"),
            json!({ "fields": [{ "name": field }] }),
        )
    }

    pub fn server_limit(limit: u32) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "resource_limit_exceeded",
            format!("server limit exceeded: the project may have at most {limit} servers"),
            json!({ "limits": [{ "name": "server_limit" }] }),
        )
    }

    pub fn unavailable(server_type: &str, location: &str) -> ApiError {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "resource_unavailable",
            format!("server type {server_type} is unavailable in location {location}"),
            json!({}),
        )
    }

    pub fn locked() -> ApiError {
        ApiError::new(
            StatusCode::LOCKED,
            "locked",
            "server is locked: an action is running",
            json!({}),
        )
    }

    pub fn rate_limited() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "limit of requests per hour reached",
            json!({}),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message, "details": self.details } });
        (self.status, Json(body)).into_response()
    }
}

/// Parses a JSON body: broken JSON is `json_error`, a missing or mistyped field `invalid_input`
/// naming the field.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::json_error(format!("invalid JSON: {e}")))?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = match path.as_str() {
            "." | "" => inner.split('`').nth(1).unwrap_or("body").to_string(),
            p => p.to_string(),
        };
        ApiError::invalid_field(&field, &inner)
    })
}
