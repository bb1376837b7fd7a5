//! The one place where failures become HTTP responses: RFC 9457 `application/problem+json`.
//!
//! Internal errors are logged with their detail and answered with a generic message, so a client
//! never sees paths, SQL or other internals.
//!
//! Three layers make sure no error leaves the server in another shape: handlers return
//! [`ApiError`]; [`problem_for_bare_errors`] rewrites every other error response the router
//! produces (axum's 405, extractor rejections, body-limit 413s) into a problem document that
//! keeps its status and headers; and [`ProblemListener`] rewrites the bodiless responses hyper
//! answers by itself, before any handler runs, to requests it cannot parse (400, 414, 431).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sealtrail_model::limits::RETRY_AFTER_SECS;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// A key whose secret matched but that no longer authenticates (revoked, expired): 401,
    /// saying which, by key id.
    #[error("{0}")]
    KeyRefused(String),
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
    /// A request the router refused before any handler ran (wrong method, unreadable path or
    /// query string, …): its status is kept and its reason passed on.
    #[error("{detail}")]
    Refused {
        status: StatusCode,
        detail: String,
        errors: Vec<InvalidItem>,
    },
    #[error("{0}")]
    Overloaded(String),
    /// The caller already runs as many of these calls as one tenant may (429, Retry-After).
    #[error("{0}")]
    TooManyRequests(String),
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

    /// A 400 listing every problem of a JSON body, each naming its field.
    pub fn invalid_fields(errors: Vec<sealtrail_model::FieldError>) -> Self {
        ApiError::Invalid {
            detail: errors
                .iter()
                .map(|error| format!("{}: {}", error.field, error.reason))
                .collect::<Vec<_>>()
                .join("; "),
            errors: errors
                .into_iter()
                .map(|error| InvalidItem {
                    index: None,
                    field: error.field,
                    reason: error.reason,
                })
                .collect(),
        }
    }

    /// An error about the request as a whole (its method, path, media type, …), kept with its
    /// own status; `field` names the part of the request at fault.
    pub fn refused(status: StatusCode, field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError::Refused {
            status,
            detail: reason.clone(),
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
            ApiError::Refused { status, .. } => refused_kind(*status),
            ApiError::Unauthorized | ApiError::KeyRefused(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            }
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
            ApiError::TooManyRequests(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
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
            ApiError::Invalid { errors, .. }
            | ApiError::Conflict { errors, .. }
            | ApiError::Refused { errors, .. } => errors,
            _ => &[],
        };
        let body = problem_json(status, kind, title, self.to_string(), errors);
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unauthorized | ApiError::KeyRefused(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Overloaded(_) | ApiError::TooManyRequests(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

/// The RFC 9457 document of one failure.
fn problem_json(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: String,
    errors: &[InvalidItem],
) -> Vec<u8> {
    let problem = Problem {
        kind: format!("https://sealtrail.dev/problems/{kind}"),
        title,
        status: status.as_u16(),
        detail,
        errors,
    };
    serde_json::to_vec(&problem).expect("a problem document always serializes")
}

/// The problem type and title of a status the router or hyper answered with.
fn refused_kind(status: StatusCode) -> (StatusCode, &'static str, &'static str) {
    let (kind, title) = match status {
        StatusCode::BAD_REQUEST => ("invalid-request", "Invalid request"),
        StatusCode::NOT_FOUND => ("not-found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ("too-large", "Request too large"),
        StatusCode::URI_TOO_LONG => ("uri-too-long", "URI too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("header-fields-too-large", "Request header fields too large")
        }
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "Service unavailable"),
        StatusCode::TOO_MANY_REQUESTS => ("too-many-requests", "Too many requests"),
        status if status.is_server_error() => ("internal", "Internal error"),
        _ => ("invalid-request", "Request refused"),
    };
    (status, kind, title)
}

/// Longest body of a bare error response that is quoted as the problem's detail.
const BARE_ERROR_BYTES_MAX: usize = 4 * 1024;

/// Middleware: every error response that is not already a problem document becomes one, with
/// its status and headers (such as `Allow` on a 405) kept and its text as the detail. These are
/// axum's own answers: a method the path does not have, a path or query string that does not
/// decode, a body over the extractor's limit.
pub(crate) async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, BARE_ERROR_BYTES_MAX)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let (detail, field) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (
                format!("{path} does not accept {method}; it accepts {allowed}"),
                "method",
            )
        }
        _ if text.starts_with("Failed to deserialize query string") => (text, "query"),
        _ if text.contains("path") || text.contains("URL") => (text, "path"),
        _ if text.is_empty() => (
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_owned(),
            "request",
        ),
        _ => (text, "body"),
    };
    let (_, kind, title) = refused_kind(status);
    let errors = [InvalidItem {
        index: None,
        field: field.to_owned(),
        reason: detail.clone(),
    }];
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        problem_json(status, kind, title, detail, &errors)
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// `response`, or a 503 with Retry-After when its head is not ready within `limit`. Only the
/// head is timed: a body streamed after it (an export) runs for as long as it keeps sending.
pub(crate) async fn respond_within(
    limit: std::time::Duration,
    response: impl std::future::Future<Output = Response>,
) -> Response {
    match tokio::time::timeout(limit, response).await {
        Ok(response) => response,
        Err(_elapsed) => ApiError::Overloaded(format!(
            "the request did not complete within {} ms; retry later",
            limit.as_millis()
        ))
        .into_response(),
    }
}

/// The bound on connections served at once ([`CONNECTIONS_MAX`] in the server): a permit per
/// open connection, held by its [`ProblemIo`] until the connection closes.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    pub(crate) fn new(max: usize) -> Self {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Connections being served now.
    pub(crate) fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// The listener the server accepts on: plain TCP, with every connection wrapped in
/// [`ProblemIo`]. At the connection limit it stops accepting until a connection closes, so
/// further clients wait in the kernel's accept backlog instead of being served half-way.
#[derive(Debug)]
pub(crate) struct ProblemListener {
    pub(crate) listener: TcpListener,
    pub(crate) limit: ConnectionLimit,
}

impl axum::serve::Listener for ProblemListener {
    type Io = ProblemIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = Arc::clone(&self.limit.permits)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        (
            ProblemIo {
                stream,
                replacement: None,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection whose bodiless automatic error responses become problem documents.
///
/// hyper answers a request it cannot parse (a malformed request line or header: 400; a target
/// over its limit: 414; header fields over its limit: 431) with a bare status line and no body,
/// and closes the connection; no handler or middleware ever sees the request. Those are the only
/// error responses without a `content-type` (the router's all carry one), so a write of exactly
/// such a head is replaced by a complete problem response. Vectored writes are turned off so
/// hyper hands over each response head in one contiguous buffer.
#[derive(Debug)]
pub(crate) struct ProblemIo {
    stream: TcpStream,
    /// The replacement being written: its bytes, how many are written, and the length of the
    /// buffer it replaces (reported to hyper once all of it is written).
    replacement: Option<(Vec<u8>, usize, usize)>,
    /// This connection's place under the connection limit, given back when it closes.
    _permit: OwnedSemaphorePermit,
}

/// The problem response that replaces `head` when it is one of hyper's automatic error answers.
fn automatic_error_replacement(head: &[u8]) -> Option<Vec<u8>> {
    // Every write of every response passes here: bodies and ordinary heads leave at once.
    const AUTOMATIC_HEAD_BYTES_MAX: usize = 512;
    if head.len() > AUTOMATIC_HEAD_BYTES_MAX || !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let header_end = text.find("\r\n\r\n")?;
    if header_end + 4 != text.len() {
        return None;
    }
    let status_line = text.lines().next()?;
    let code = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let status = StatusCode::from_bytes(code.as_bytes()).ok()?;
    let detail = match status {
        StatusCode::BAD_REQUEST => "the request line or a header field is not valid HTTP/1.1",
        StatusCode::URI_TOO_LONG => "the request target is longer than the server reads",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request's header fields are larger or more numerous than the server reads"
        }
        _ => return None,
    };
    let lower = text.to_ascii_lowercase();
    if lower.contains("\r\ncontent-type:") {
        return None;
    }
    let (_, kind, title) = refused_kind(status);
    let errors = [InvalidItem {
        index: None,
        field: "request".into(),
        reason: detail.into(),
    }];
    let body = problem_json(status, kind, title, detail.into(), &errors);
    let mut response = format!("{status_line}\r\n");
    for line in text[..header_end].lines().skip(1) {
        if !line.to_ascii_lowercase().starts_with("content-length:") {
            response.push_str(line);
            response.push_str("\r\n");
        }
    }
    response.push_str(&format!(
        "content-type: application/problem+json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(&body);
    Some(bytes)
}

impl AsyncRead for ProblemIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buf)
    }
}

impl AsyncWrite for ProblemIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none() {
            match automatic_error_replacement(buf) {
                Some(bytes) => this.replacement = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut this.stream).poll_write(context, buf),
            }
        }
        loop {
            let (bytes, written, replaced) = this
                .replacement
                .as_mut()
                .expect("set above or by an earlier call");
            if *written == bytes.len() {
                let replaced = *replaced;
                this.replacement = None;
                return Poll::Ready(Ok(replaced));
            }
            let count = ready!(Pin::new(&mut this.stream).poll_write(context, &bytes[*written..]))?;
            if count == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += count;
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
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
        if let sealtrail_query::Error::OutOfScope(reason) = error {
            ApiError::Forbidden(reason)
        } else if error.is_client_error() {
            ApiError::invalid_field("sql", error.to_string())
        } else {
            ApiError::internal(error)
        }
    }
}

/// Reads a JSON request body (a settings document: a policy, an alert rule, a webhook). What
/// parsing would change silently (a repeated key, an integer beyond 64 bits) is refused naming
/// its path, as for events.
pub(crate) fn json_document(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid_field("body", format!("not valid JSON: {error}")))?;
    let silently_changed = sealtrail_model::check_events_json(body, &mut value);
    if !silently_changed.is_empty() {
        return Err(ApiError::invalid_fields(
            silently_changed
                .into_iter()
                .map(|(_, error)| error)
                .collect(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::serve::Listener;
    use futures::StreamExt;

    use super::*;

    /// A slow handler is cut at the limit with a 503 problem; a response whose head is ready in
    /// time keeps streaming its body past the limit.
    #[tokio::test]
    async fn only_the_response_head_is_timed() {
        let limit = Duration::from_millis(50);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Response::new(Body::empty())
        };
        let response = respond_within(limit, slow).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );

        let chunks = futures::stream::iter(0..4).then(|chunk| async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok::<_, std::io::Error>(format!("chunk {chunk}\n"))
        });
        let streaming = async { Response::new(Body::from_stream(chunks)) };
        let started = std::time::Instant::now();
        let response = respond_within(limit, streaming).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert!(started.elapsed() > limit, "the body outlived the limit");
        assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    }

    /// At the limit the listener accepts nothing more until a served connection closes; the
    /// waiting client is already connected (in the kernel's backlog) and is served then.
    #[tokio::test]
    async fn connections_over_the_limit_wait_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnectionLimit::new(1);
        let mut listener = ProblemListener {
            listener,
            limit: limit.clone(),
        };
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let (first, _) = listener.accept().await;
        assert_eq!(limit.open(), 1);
        let _second_client = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(
            waiting.is_err(),
            "a second connection was accepted over the limit"
        );
        drop(first);
        assert_eq!(limit.open(), 0);
        let (second, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the waiting connection is accepted once the first closes");
        assert_eq!(limit.open(), 1);
        drop(second);
    }
}
