//! API errors as RFC 9457 problem details.

use axum::response::{IntoResponse, Response};
use helix_core::api::Problem;
use http::StatusCode;

/// Why a request was refused, carried on a 403 for the audit log.
#[derive(Clone, Debug)]
pub(crate) struct Denied(pub String);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A policy's denial (audited by the decision itself).
    #[error("{0}")]
    PolicyDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{detail}")]
    MissingBlobs { detail: String, missing: Vec<String> },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    /// Over the token's rate: the detail, and when to retry.
    #[error("{0}")]
    TooMany(String, std::time::Duration),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::PolicyDenied(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::MissingBlobs { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::PolicyDenied(_) => "policy-denied",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::MissingBlobs { .. } => "missing-blobs",
            ApiError::TooLarge(_) => "too-large",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooMany(..) => "too-many-requests",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "api request failed");
        }
        let problem = Problem {
            kind: format!("https://helixstack.dev/problems/{}", self.kind()),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            missing: match &self {
                ApiError::MissingBlobs { missing, .. } => Some(missing.clone()),
                _ => None,
            },
            // What went wrong inside (a database's words, a path) stays in
            // the server's log; the client learns that it did.
            detail: match &self {
                ApiError::Internal(_) => "the server failed to answer this request; its log has the details".into(),
                other => other.to_string(),
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, [(http::header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if matches!(self, ApiError::Forbidden(_)) {
            response.extensions_mut().insert(Denied(problem.detail));
        } else if let ApiError::TooMany(_, wait) = &self
            && let Ok(secs) = http::HeaderValue::from_str(&wait.as_secs_f64().ceil().max(1.0).to_string())
        {
            response.headers_mut().insert(http::header::RETRY_AFTER, secs);
        }
        response
    }
}

impl From<helix_store::StoreError> for ApiError {
    fn from(e: helix_store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<helix_artifacts::BlobError> for ApiError {
    fn from(e: helix_artifacts::BlobError) -> Self {
        use helix_artifacts::BlobError as B;
        match e {
            B::DigestMismatch { .. } => ApiError::Unprocessable(e.to_string()),
            B::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            B::Body(_) => ApiError::BadRequest(e.to_string()),
            B::NotFound(_) | B::Io(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<helix_store::PointerError> for ApiError {
    fn from(e: helix_store::PointerError) -> Self {
        use helix_store::PointerError as P;
        match e {
            P::UnknownDeployment(_) | P::UnknownProject(_) => ApiError::NotFound(e.to_string()),
            P::NotReady(_) | P::WrongProject { .. } | P::NothingToRollBackTo(_) => ApiError::Conflict(e.to_string()),
            P::Store(e) => e.into(),
        }
    }
}
