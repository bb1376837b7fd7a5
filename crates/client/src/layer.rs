//! A tower layer that gives every request a [`RequestContext`] (usable in axum, or any tower
//! HTTP stack).
//!
//! For each request it takes or makes the request id, stores it with the client address and
//! user agent in the task-local context for as long as the inner service runs (so events the
//! handler records carry them), puts the context in the request's extensions (for handlers that
//! want it as `Extension<RequestContext>`), and sets `X-Request-Id` on the response.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::context::{RequestContext, X_REQUEST_ID};

/// See the module documentation. `RequestContextLayer::new()` trusts `X-Forwarded-For`: use it
/// behind a proxy that sets that header, or call [`RequestContextLayer::ignore_forwarded_for`]
/// when clients reach the service directly (they could otherwise claim any address).
#[derive(Debug, Clone, Copy)]
pub struct RequestContextLayer {
    trust_forwarded_for: bool,
}

impl RequestContextLayer {
    pub fn new() -> Self {
        RequestContextLayer {
            trust_forwarded_for: true,
        }
    }

    /// Takes the client address from the connection only, never from `X-Forwarded-For`.
    pub fn ignore_forwarded_for(mut self) -> Self {
        self.trust_forwarded_for = false;
        self
    }
}

impl Default for RequestContextLayer {
    fn default() -> Self {
        RequestContextLayer::new()
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContextService {
            inner,
            trust_forwarded_for: self.trust_forwarded_for,
        }
    }
}

/// The service [`RequestContextLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct RequestContextService<S> {
    inner: S,
    trust_forwarded_for: bool,
}

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for RequestContextService<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let peer = peer_address(&request);
        let context =
            RequestContext::from_headers(request.headers(), peer, self.trust_forwarded_for);
        request.extensions_mut().insert(context.clone());
        let header = HeaderValue::from_str(&context.request_id)
            .expect("a request id is visible ASCII by construction");
        // Some services do work in `call` itself, not only in the future it returns: both run
        // inside the context.
        let inner = &mut self.inner;
        let future = context.clone().sync_scope(|| inner.call(request));
        Box::pin(context.scope(async move {
            let mut response = future.await?;
            response.headers_mut().insert(X_REQUEST_ID, header);
            Ok(response)
        }))
    }
}

#[cfg(feature = "axum")]
fn peer_address<B>(request: &Request<B>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

#[cfg(not(feature = "axum"))]
fn peer_address<B>(_request: &Request<B>) -> Option<IpAddr> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::current_context;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_handler_sees_the_context_and_the_response_carries_the_id() {
        let service = RequestContextLayer::new().layer(tower::service_fn(
            |request: Request<()>| async move {
                tokio::task::yield_now().await;
                let current = current_context().expect("a context inside the layer");
                let extension = request.extensions().get::<RequestContext>().cloned();
                assert_eq!(extension.as_ref(), Some(&current));
                Ok::<_, Infallible>(Response::new(format!(
                    "{} {:?} {:?}",
                    current.request_id, current.ip_address, current.user_agent
                )))
            },
        ));
        let request = Request::builder()
            .header("x-request-id", "req-9")
            .header("x-forwarded-for", "198.51.100.4")
            .header("user-agent", "tests/1.0")
            .body(())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()["x-request-id"], "req-9");
        assert_eq!(
            response.body(),
            "req-9 Some(198.51.100.4) Some(\"tests/1.0\")"
        );
        // Without any id, one is made and returned.
        let response = service
            .oneshot(Request::builder().body(()).unwrap())
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(response.body().starts_with(id), "{}", response.body());
    }
}
