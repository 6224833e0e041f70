//! One shape for every AWS service's errors: the error code the service answered with (or the
//! transport failure), so each provider maps codes to the typed errors the executor acts on.
//! The message is the service's own and never holds request data such as user data.

use crate::credentials::CredentialsError;
use std::fmt;

/// An AWS call that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The service's code (`InsufficientInstanceCapacity`, `ThrottlingException`); empty when
    /// no answer came.
    pub code: String,
    pub message: String,
    /// The HTTP status of the answer, if one came.
    pub status: Option<u16>,
    /// No answer: timeout, connection refused, TLS.
    pub transport: bool,
}

impl ApiError {
    /// An answer from the service with this code: how tests inject what emulators never say.
    pub fn service(code: &str, message: &str) -> ApiError {
        ApiError {
            code: code.to_string(),
            message: message.to_string(),
            status: Some(400),
            transport: false,
        }
    }

    /// No answer: a timeout, a refused connection, an answer cut off.
    pub fn no_answer(message: &str) -> ApiError {
        ApiError {
            code: String::new(),
            message: message.to_string(),
            status: None,
            transport: true,
        }
    }

    /// An answer that says the call worked but cannot be read.
    pub fn unreadable(status: u16, message: &str) -> ApiError {
        ApiError {
            code: "UnreadableResponse".into(),
            message: format!("the answer could not be read: {message}"),
            status: Some(status),
            transport: false,
        }
    }

    /// The request could not be built (a bad endpoint).
    pub fn construction(message: &str) -> ApiError {
        ApiError {
            code: "ConstructionFailure".into(),
            message: message.to_string(),
            status: None,
            transport: false,
        }
    }

    /// No credentials to sign with: an endpoint that did not answer is worth trying again,
    /// a source that cannot work is not.
    pub fn credentials(e: &CredentialsError) -> ApiError {
        ApiError {
            code: if matches!(e, CredentialsError::Unreachable { .. }) {
                String::new()
            } else {
                "CredentialsNotLoaded".into()
            },
            message: e.to_string(),
            status: None,
            transport: matches!(e, CredentialsError::Unreachable { .. }),
        }
    }

    /// Maps what every AWS service answers alike: throttling, refused credentials, no answer,
    /// server errors. `None` for a code the caller maps itself.
    pub fn common(&self) -> Option<mayfly_provider::Error> {
        use mayfly_provider::Error;
        if self.transport {
            return Some(Error::Transport(self.message.clone()));
        }
        let c = self.code.as_str();
        if matches!(
            c,
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "ThrottledException"
        ) {
            return Some(Error::RateLimited { retry_after: None });
        }
        if matches!(
            c,
            "AuthFailure"
                | "UnauthorizedOperation"
                | "AccessDenied"
                | "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "SignatureDoesNotMatch"
        ) {
            return Some(Error::Unauthorized {
                status: self.status.unwrap_or(403),
            });
        }
        if self.status.is_some_and(|s| s >= 500)
            || c == "ConstructionFailure"
            || c == "CredentialsNotLoaded"
        {
            return Some(self.api());
        }
        None
    }

    /// The generic error of an answer no mapping knows.
    pub fn api(&self) -> mayfly_provider::Error {
        mayfly_provider::Error::Api {
            status: self.status.unwrap_or(0),
            code: self.code.clone(),
            message: self.message.clone(),
        }
    }

    pub fn invalid(&self) -> mayfly_provider::Error {
        mayfly_provider::Error::Invalid {
            message: self.to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_provider::Error;

    #[test]
    fn throttling_credentials_and_outages_map_alike_for_every_service() {
        assert_eq!(
            ApiError::service("RequestLimitExceeded", "slow down").common(),
            Some(Error::RateLimited { retry_after: None })
        );
        assert_eq!(
            ApiError::service("ThrottlingException", "").common(),
            Some(Error::RateLimited { retry_after: None })
        );
        assert!(matches!(
            ApiError::service("AuthFailure", "").common(),
            Some(Error::Unauthorized { .. })
        ));
        assert!(matches!(
            ApiError::no_answer("timeout").common(),
            Some(Error::Transport(_))
        ));
        let mut e = ApiError::service("InternalError", "oops");
        e.status = Some(503);
        assert!(e.common().unwrap().is_transient());
        assert_eq!(
            ApiError::service("InvalidAMIID.Malformed", "").common(),
            None
        );
    }
}
