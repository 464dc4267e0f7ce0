//! The service on the client listener: the gateway's own endpoints under
//! `/_tollgate`, and for everything else the body limit, enforcement and the
//! proxy called directly, with no router, no body boxing and no per-request
//! service clones on the way.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::layer::Enforcement;
use crate::proxy::{ClientBody, Proxy};
use crate::upstream::Idle;

/// The path prefix of the gateway's own endpoints (nested in [`Gateway::app`](crate::Gateway::app)).
const OWN_PREFIX: &str = "/_tollgate";

/// What clients talk to: makes the service of each client connection.
#[derive(Clone)]
pub(crate) struct Front {
    inner: Arc<Inner>,
}

/// The service of one client connection, with the upstream connections it
/// keeps. Cloned for each request, and only ever on that connection's thread,
/// so its reference count stays in one core's cache.
#[derive(Clone)]
pub(crate) struct Connection {
    state: Arc<ConnectionState>,
}

struct ConnectionState {
    inner: Arc<Inner>,
    idle: Idle,
}

struct Inner {
    /// The whole router, for the gateway's own endpoints (and whatever else
    /// falls under their prefix).
    app: Router,
    enforcement: Arc<ArcSwap<Enforcement>>,
    proxy: Arc<Proxy>,
    max_body: usize,
}

impl Front {
    pub(crate) fn new(
        app: Router,
        enforcement: Arc<ArcSwap<Enforcement>>,
        proxy: Arc<Proxy>,
        max_body: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                app,
                enforcement,
                proxy,
                max_body,
            }),
        }
    }

    /// A front with the same parts for another worker thread, so that the
    /// reference counts each connection takes stay with that worker.
    pub(crate) fn for_worker(&self) -> Self {
        Self {
            inner: Arc::new(Inner {
                app: self.inner.app.clone(),
                enforcement: Arc::clone(&self.inner.enforcement),
                proxy: Arc::clone(&self.inner.proxy),
                max_body: self.inner.max_body,
            }),
        }
    }

    /// The service for a new client connection.
    pub(crate) fn connection(&self) -> Connection {
        Connection {
            state: Arc::new(ConnectionState {
                inner: Arc::clone(&self.inner),
                idle: Idle::default(),
            }),
        }
    }
}

type Answer = Result<Response<ClientBody>, Infallible>;

impl hyper::service::Service<Request<Incoming>> for Connection {
    type Response = Response<ClientBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if request.uri().path().starts_with(OWN_PREFIX) {
            let app = self.state.inner.app.clone();
            return Box::pin(async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                Ok(response.map(Either::Right))
            });
        }
        let state = Arc::clone(&self.state);
        Box::pin(async move { Ok(state.inner.proxied(request, &state.idle).await) })
    }
}

impl Inner {
    /// The body limit, enforcement and the proxy, in that order (as the
    /// router's layers have them).
    async fn proxied(&self, request: Request<Incoming>, idle: &Idle) -> Response<ClientBody> {
        let content_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        let limit = match content_length {
            Some(len) if len > self.max_body => return payload_too_large(),
            Some(len) => self.max_body.min(len),
            None => self.max_body,
        };
        let enforcement = self.enforcement.load_full();
        let (parts, body) = request.into_parts();
        let admitted = match enforcement.admit(&parts).await {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal.map(Either::Right),
        };
        let request = Request::from_parts(parts, Either::Left(Limited::new(body, limit)));
        let target = admitted.endpoint.map(|e| (e, admitted.key.id));
        let mut response = self.proxy.forward(request, target, idle).await;
        enforcement.annotate_headers(response.headers_mut(), &admitted);
        response
    }
}

/// `413`, as `tower_http`'s body limit answers it.
fn payload_too_large() -> Response<ClientBody> {
    let mut response = Response::new(Either::Right(Body::from("length limit exceeded")));
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
