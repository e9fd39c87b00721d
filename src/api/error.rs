//! The one error shape of the API, `{"error": {"code", "message", "field"?}}`, and the mapping of
//! every failure to a status, decided in one place.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::layers::LayerError;
use crate::serving::{ServeError, SwapError, WriteError};

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// A field is missing, of the wrong type or out of range.
    #[error("{field}: {message}")]
    InvalidField {
        /// Path of the field, e.g. `queries[2].k`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such user and no features to serve them from.
    #[error("{0}")]
    UnknownUser(String),
    /// No such item.
    #[error("{0}")]
    UnknownItem(String),
    /// No model is serving yet.
    #[error("no model is serving yet")]
    NotReady,
    /// The recall index is external (Milvus) and did not answer in time, or refused.
    #[error("{0}")]
    IndexUnavailable(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Admin routes are off because no token is configured.
    #[error("admin routes are disabled: no admin token is configured")]
    AdminDisabled,
    /// A model failed to load or validate; the previous one keeps serving.
    #[error("model refused: {0}")]
    ModelRefused(String),
    /// The body is larger than `server.body_limit_bytes`. Whatever refused it (an extractor, the
    /// limit itself) does not know the number: every 413 is answered by [`payload_too_large`].
    #[error("request body too large")]
    PayloadTooLarge,
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The route needs the database and the service runs without one.
    #[error(
        "this route needs a database; this replica has none and is read-only (set database.url)"
    )]
    NoDatabase,
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code, message and (for invalid input) the field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The offending field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// Status and code, one exhaustive match with no catch-all arm.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::UnknownUser(_) => (StatusCode::NOT_FOUND, "unknown_user"),
            ApiError::UnknownItem(_) => (StatusCode::NOT_FOUND, "unknown_item"),
            ApiError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::IndexUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "index_unavailable"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::AdminDisabled => (StatusCode::FORBIDDEN, "admin_disabled"),
            ApiError::ModelRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "model_refused"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::NoDatabase => (StatusCode::SERVICE_UNAVAILABLE, "no_database"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// A field-level validation error.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A JSON error response with this status, code and message.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: String,
    field: Option<String>,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
            field,
        },
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The 413 answer, naming the configured limit (the telemetry layer answers every 413 with it).
pub fn payload_too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body exceeds {limit} bytes (server.body_limit_bytes)"),
        None,
    )
}

impl ApiError {
    /// Status and JSON body.
    pub fn body(&self) -> (StatusCode, ErrorBody) {
        let (status, code) = self.status_and_code();
        let (field, message) = match self {
            ApiError::InvalidField { field, message } => (Some(field.clone()), message.clone()),
            other => (None, other.to_string()),
        };
        let detail = ErrorDetail {
            code: code.to_string(),
            message,
            field,
        };
        (status, ErrorBody { error: detail })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let ErrorDetail {
            code,
            message,
            field,
        } = body.error;
        error_response(status, &code, message, field)
    }
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::UnknownUser(_) => ApiError::UnknownUser(e.to_string()),
            ServeError::NoUser => ApiError::field("user_id", e.to_string()),
            ServeError::UnknownItem(_) => ApiError::UnknownItem(e.to_string()),
            ServeError::Index(crate::recall::IndexError::NonFiniteQuery) => {
                ApiError::field("features", "the user's vector is not finite")
            }
            ServeError::Index(crate::recall::IndexError::Unavailable(_)) => {
                ApiError::IndexUnavailable(e.to_string())
            }
            ServeError::Artifact(_) | ServeError::Index(_) | ServeError::Render(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NoDatabase => ApiError::NoDatabase,
            WriteError::Store(e) => e.into(),
            WriteError::Serve(e) => e.into(),
            WriteError::Task(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SwapError> for ApiError {
    fn from(e: SwapError) -> Self {
        match e {
            SwapError::Refused(reason) => ApiError::ModelRefused(reason),
            SwapError::Loader(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<LayerError> for ApiError {
    fn from(e: LayerError) -> Self {
        if e.field() == "body" {
            return ApiError::InvalidJson(e.to_string());
        }
        ApiError::field(e.field(), e.to_string())
    }
}

/// Status codes a response with a non-JSON body gets translated from (404 from the router, 413
/// from the body limit, 408 from the timeout, 503 from load shedding, …).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        409 => "conflict",
        422 => "unprocessable",
        429 => "too_many_requests",
        503 => "overloaded",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// A JSON body extractor whose failures come back in the API's error shape, naming the field.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Maps a failure to read the body (too large, broken connection) to an API error.
pub fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::InvalidJson(e.body_text())
    }
}

/// Deserialises a JSON object, naming the path of a field with the wrong type or value. Any other
/// JSON value is refused: serde would otherwise read a struct from an array, field by position
/// (`[]` as `{}`, `["3", null, 5]` as a recall request).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(kind) = not_an_object(bytes) {
        return Err(ApiError::InvalidJson(format!(
            "the body must be a JSON object, got {kind}"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        if let Some(name) = missing_field(&message) {
            // A missing field has no path of its own: serde names it in the message.
            let field = if path == "." {
                name
            } else {
                format!("{path}.{name}")
            };
            return ApiError::field(field, message);
        }
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::InvalidJson(format!("malformed JSON: {message}"));
        }
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::field(field, message)
    })?;
    de.end()
        .map_err(|e| ApiError::InvalidJson(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// What a body holds instead of a JSON object (`an array`, `a string`, …), judged by its first
/// character; `None` for an object, and for an empty or malformed body (the parser names those).
pub fn not_an_object(bytes: &[u8]) -> Option<&'static str> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => Some("an array"),
        b'"' => Some("a string"),
        b'-' | b'0'..=b'9' => Some("a number"),
        b't' | b'f' => Some("a boolean"),
        b'n' => Some("null"),
        _ => None,
    }
}

/// `missing field `k`` → `k`.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}
