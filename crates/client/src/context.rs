//! The request context: which request an event was recorded in, from whom.
//!
//! [`crate::RequestContextLayer`] puts a [`RequestContext`] in a Tokio task-local for the
//! duration of a handler, and [`crate::Client::record`] stamps its `request_id`, `ip_address` and
//! `user_agent` on every event recorded there (unless the event sets them). A task-local, not a
//! thread-local: a handler moves between threads at every `.await`, the task-local moves with it.
//! It does not follow `tokio::spawn`; wrap a spawned future in [`RequestContext::scope`] to
//! carry it along.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use sealtrail_model::limits::{REQUEST_ID_CHARS_MAX, USER_AGENT_CHARS_MAX};

/// The request id header, read from incoming requests and set on responses and outgoing calls.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C Trace Context header; its trace id serves as request id when no X-Request-Id came.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The request an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Always set: taken from the request or made up.
    pub request_id: String,
    /// The client's address, if known and valid.
    pub ip_address: Option<IpAddr>,
    /// The `User-Agent`, if sent and valid for format v1.
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// A context with a new UUIDv7 request id, for work that starts outside any request (a job,
    /// a consumer).
    pub fn new() -> RequestContext {
        RequestContext {
            request_id: uuid::Uuid::now_v7().to_string(),
            ip_address: None,
            user_agent: None,
        }
    }

    /// The context of an incoming request: the request id from `X-Request-Id`, else the trace id
    /// of a valid `traceparent`, else a new UUIDv7; the address from the first hop of
    /// `X-Forwarded-For` (when `trust_forwarded_for`), else `peer`; the `User-Agent`.
    ///
    /// A header value that format v1 would refuse (a request id over 128 characters or with
    /// characters outside visible ASCII, a user agent over 512 characters) is treated as absent:
    /// a request's odd header must never make its audit events fail.
    pub fn from_headers(
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        trust_forwarded_for: bool,
    ) -> RequestContext {
        let request_id = headers
            .get(X_REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|id| valid_request_id(id))
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(TRACEPARENT)
                    .and_then(|value| value.to_str().ok())
                    .and_then(trace_id)
            })
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let forwarded = trust_forwarded_for
            .then(|| {
                headers
                    .get(X_FORWARDED_FOR)
                    .and_then(|value| value.to_str().ok())
                    .and_then(first_forwarded_hop)
            })
            .flatten();
        let user_agent = headers
            .get(USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .filter(|agent| {
                !agent.is_empty()
                    && agent.len() <= USER_AGENT_CHARS_MAX
                    && agent.bytes().all(|byte| (0x20..0x7f).contains(&byte))
            })
            .map(str::to_owned);
        RequestContext {
            request_id,
            ip_address: forwarded.or(peer),
            user_agent,
        }
    }

    /// Runs `future` with this context as the current one.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CONTEXT.scope(self, future).await
    }

    /// Runs `f` with this context as the current one (for synchronous code).
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CONTEXT.sync_scope(self, f)
    }
}

impl Default for RequestContext {
    fn default() -> Self {
        RequestContext::new()
    }
}

/// The context of the request being handled, if any.
pub fn current_context() -> Option<RequestContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// The id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    CONTEXT.try_with(|context| context.request_id.clone()).ok()
}

/// Sets `X-Request-Id` to the current request's id on an outgoing call, so the next service
/// logs and records under the same id. Does nothing outside a request context.
pub fn forward_headers(headers: &mut HeaderMap) {
    if let Some(value) = current_request_id().and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(X_REQUEST_ID, value);
    }
}

/// [`forward_headers`] for a `reqwest` request: `client.get(url).forward_request_id().send()`.
pub trait ForwardRequestId {
    /// Sets `X-Request-Id` to the current request's id, if any.
    #[must_use]
    fn forward_request_id(self) -> Self;
}

impl ForwardRequestId for reqwest::RequestBuilder {
    fn forward_request_id(self) -> Self {
        match current_request_id() {
            Some(id) => self.header(X_REQUEST_ID, id),
            None => self,
        }
    }
}

/// Whether `id` may serve as a request id: 1 to 128 characters of visible ASCII (what a header
/// carries without escaping, and what format v1 accepts in `request_id`).
pub(crate) fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_CHARS_MAX
        && id.bytes().all(|byte| byte.is_ascii_graphic())
}

/// The trace id of a W3C `traceparent` header (Trace Context, level 1): `version-traceid-
/// parentid-flags`, lowercase hex of 2, 32, 16 and 2 digits. Version `ff` and all-zero ids are
/// invalid. A version above `00` may append fields after the flags (`-…`), which are ignored;
/// version `00` may not.
pub fn trace_id(traceparent: &str) -> Option<String> {
    let value = traceparent.trim();
    let mut parts = value.splitn(5, '-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    let lower_hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !lower_hex(version, 2) || version == "ff" {
        return None;
    }
    if version == "00" && rest.is_some() {
        return None;
    }
    if !lower_hex(trace_id, 32) || !lower_hex(parent_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(trace_id.to_owned())
}

/// The first (client-most) address of an `X-Forwarded-For` value. Entries may carry a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`); anything that is not an address gives `None`.
fn first_forwarded_hop(value: &str) -> Option<IpAddr> {
    let first = value.split(',').next()?.trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|address| address.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_gives_its_trace_id() {
        assert_eq!(
            trace_id(VALID).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // A later version may carry more fields; its trace id is still read.
        assert_eq!(
            trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn request_id_comes_from_the_header_then_traceparent_then_a_new_uuid_v7() {
        let peer = Some("10.1.2.3".parse().unwrap());
        let given = RequestContext::from_headers(
            &headers(&[("x-request-id", "req-42"), ("traceparent", VALID)]),
            peer,
            true,
        );
        assert_eq!(given.request_id, "req-42");
        let traced = RequestContext::from_headers(&headers(&[("traceparent", VALID)]), peer, true);
        assert_eq!(traced.request_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let fresh = RequestContext::from_headers(&headers(&[]), peer, true);
        let uuid = uuid::Uuid::parse_str(&fresh.request_id).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        // An id format v1 would refuse is not used.
        let too_long = "r".repeat(REQUEST_ID_CHARS_MAX + 1);
        let refused = RequestContext::from_headers(
            &headers(&[("x-request-id", &too_long), ("traceparent", VALID)]),
            peer,
            true,
        );
        assert_eq!(refused.request_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn address_comes_from_the_first_forwarded_hop_then_the_peer() {
        let peer = Some("10.1.2.3".parse().unwrap());
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.1")]);
        let context = RequestContext::from_headers(&forwarded, peer, true);
        assert_eq!(context.ip_address, Some("203.0.113.7".parse().unwrap()));
        let untrusted = RequestContext::from_headers(&forwarded, peer, false);
        assert_eq!(untrusted.ip_address, peer);
        let with_port = headers(&[("x-forwarded-for", "[2001:db8::1]:4711")]);
        let context = RequestContext::from_headers(&with_port, None, true);
        assert_eq!(context.ip_address, Some("2001:db8::1".parse().unwrap()));
        let garbage = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(
            RequestContext::from_headers(&garbage, peer, true).ip_address,
            peer
        );
    }

    #[tokio::test]
    async fn the_context_is_current_inside_its_scope_only() {
        assert_eq!(current_request_id(), None);
        let context = RequestContext {
            request_id: "req-7".into(),
            ip_address: None,
            user_agent: None,
        };
        let seen = context
            .scope(async {
                tokio::task::yield_now().await;
                let mut headers = HeaderMap::new();
                forward_headers(&mut headers);
                (current_request_id(), headers.get(X_REQUEST_ID).cloned())
            })
            .await;
        assert_eq!(seen.0.as_deref(), Some("req-7"));
        assert_eq!(seen.1.unwrap(), "req-7");
        assert_eq!(current_request_id(), None);
    }
}
