//! The `tower` layer and service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::response::Response;
use http::Request;
use tower::{Layer, Service};

use super::Enforcement;

/// Adds rate-limit enforcement to a service.
///
/// The enforcement is held in an [`ArcSwap`], so a reload swaps policies for the
/// next request without touching connections or windows.
#[derive(Clone)]
pub struct RateLimitLayer {
    enforcement: Arc<ArcSwap<Enforcement>>,
}

impl RateLimitLayer {
    /// A layer that enforces what `enforcement` currently holds.
    pub fn new(enforcement: Arc<ArcSwap<Enforcement>>) -> Self {
        Self { enforcement }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            enforcement: Arc::clone(&self.enforcement),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around an inner one.
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    enforcement: Arc<ArcSwap<Enforcement>>,
}

impl<S> Service<Request<Body>> for RateLimitService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone waits for its own readiness; this one was made ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let enforcement = self.enforcement.load_full();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let admitted = match enforcement.admit(&parts).await {
                Ok(admitted) => admitted,
                Err(refusal) => return Ok(refusal),
            };
            parts.extensions.insert(admitted.clone());
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            enforcement.annotate(&mut response, &admitted);
            Ok(response)
        })
    }
}
