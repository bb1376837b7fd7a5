//! The one place where failures become HTTP responses: RFC 9457 `application/problem+json`.
//!
//! Internal errors are logged with their detail and answered with a generic message, so a client
//! never sees paths, SQL or other internals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sealtrail_model::limits::RETRY_AFTER_SECS;
use serde::Serialize;

/// One invalid item of a request: which event (for ingest), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub field: String,
    pub reason: String,
}

/// Every way an API call can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API key is required (Authorization: Bearer <key>)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{detail}")]
    Invalid {
        detail: String,
        errors: Vec<InvalidItem>,
    },
    #[error("{0}")]
    TooLarge(String),
    #[error("{detail}")]
    Conflict {
        detail: String,
        errors: Vec<InvalidItem>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Overloaded(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 about one query parameter or body field.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError::Invalid {
            detail: format!("{field}: {reason}"),
            errors: vec![InvalidItem {
                index: None,
                field: field.to_owned(),
                reason,
            }],
        }
    }

    /// Logs an operating failure and hides its detail from the client.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        ApiError::Internal(error.to_string())
    }

    fn status_and_kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::Invalid { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            ApiError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request too large",
            ),
            ApiError::Conflict { .. } => (
                StatusCode::CONFLICT,
                "event-id-conflict",
                "Event id conflict",
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Service overloaded",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "<[InvalidItem]>::is_empty")]
    errors: &'a [InvalidItem],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.status_and_kind();
        let errors: &[InvalidItem] = match &self {
            ApiError::Invalid { errors, .. } | ApiError::Conflict { errors, .. } => errors,
            _ => &[],
        };
        let problem = Problem {
            kind: format!("https://sealtrail.dev/problems/{kind}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        };
        let body = serde_json::to_vec(&problem).expect("a problem document always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Overloaded(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

impl From<sealtrail_hot::Error> for ApiError {
    fn from(error: sealtrail_hot::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<sealtrail_query::Error> for ApiError {
    fn from(error: sealtrail_query::Error) -> Self {
        // The caller's SQL at fault (it does not plan, is not a read, or ran out of time) is a
        // 400 about the `sql` field; anything else is the service's failure.
        if error.is_client_error() {
            ApiError::invalid_field("sql", error.to_string())
        } else {
            ApiError::internal(error)
        }
    }
}
