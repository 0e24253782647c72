//! API errors as RFC 9457 problem details.

use axum::response::{IntoResponse, Response};
use helix_core::api::Problem;
use http::StatusCode;

/// A JSON request body, or a 400 naming `what` it should have been.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("request body is not a valid {what}: {e}")))
}

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
    /// Another 4xx the framework answered (a method not allowed, a media
    /// type not supported), kept as it was.
    #[error("{1}")]
    Status(StatusCode, String),
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
            ApiError::Status(status, _) => *status,
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
            ApiError::Status(..) => "request",
        }
    }
}

impl ApiError {
    /// The problem details a client is told.
    pub(crate) fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("https://helixstack.dev/problems/{}", self.kind()),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            missing: match self {
                ApiError::MissingBlobs { missing, .. } => Some(missing.clone()),
                _ => None,
            },
            // What went wrong inside (a database's words, a path) stays in
            // the server's log; the client learns that it did.
            detail: match self {
                ApiError::Internal(_) => "the server failed to answer this request; its log has the details".into(),
                other => other.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "api request failed");
        }
        let problem = self.problem();
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

/// Error answers not made by [`ApiError`] (the framework's rejections of a
/// query string, a method or a body past the limit) become problem
/// details too, so every error of the API has one shape.
pub(crate) async fn framework_errors_as_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The framework's messages are a line; anything longer is cut.
    let text = match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 4096)).await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let detail = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
    let error = match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(detail),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(detail),
        StatusCode::FORBIDDEN => ApiError::Forbidden(detail),
        StatusCode::NOT_FOUND => ApiError::NotFound(detail),
        StatusCode::CONFLICT => ApiError::Conflict(detail),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(detail),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(detail),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(detail),
        s if s.is_server_error() => ApiError::Internal(detail),
        _ => ApiError::Status(status, detail),
    };
    let mut answer = error.into_response();
    for (name, value) in &parts.headers {
        if name == http::header::ALLOW || name == http::header::RETRY_AFTER {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}
