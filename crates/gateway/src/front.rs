//! The service on the client listener: the gateway's own endpoints under
//! `/_tollgate`, and for everything else the body limit, enforcement and the
//! proxy called directly, with no router, no body boxing and no per-request
//! service clones on the way. With the limit store in this process, a refused
//! request is decided and answered within `call`, with no future allocated.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use axum::Router;
use axum::body::Body;
use futures_util::future;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::layer::{Admitted, Enforcement};
use crate::proxy::{ClientBody, Proxy, UpstreamBody};
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
    idle: Arc<Idle>,
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
                idle: Arc::default(),
            }),
        }
    }
}

type Answer = Result<Response<ClientBody>, Infallible>;

/// An answer made while the request was handed over (a refusal decided at
/// once), or one still to come.
type Answering = future::Either<Ready<Answer>, Pin<Box<dyn Future<Output = Answer> + Send>>>;

impl hyper::service::Service<Request<Incoming>> for Connection {
    type Response = Response<ClientBody>;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if request.uri().path().starts_with(OWN_PREFIX) {
            let app = self.state.inner.app.clone();
            return future::Either::Right(Box::pin(async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                Ok(response.map(Either::Right))
            }));
        }
        crate::turns::request_started();
        let inner = &self.state.inner;
        let Some(limit) = inner.body_limit(&request) else {
            return answered(payload_too_large());
        };
        // Refused before it is charged: nothing about the request changes.
        if crate::upstream::foreign_transfer_coding(request.headers()) {
            return answered(crate::proxy::made(
                crate::proxy::transfer_coding_not_supported(),
            ));
        }
        let enforcement = inner.enforcement.load();
        let (parts, body) = request.into_parts();
        let body = Limited::new(body, limit);
        // A store in this process decides at once: a refusal is answered
        // without a future, and only an admitted request gets one, for the
        // upstream's answer.
        match enforcement.admit_at_once(&parts) {
            Some(Err(refusal)) => answered(refusal.map(Either::Right)),
            Some(Ok(admitted)) => {
                let (enforcement, state) =
                    (Guard::into_inner(enforcement), Arc::clone(&self.state));
                future::Either::Right(Box::pin(async move {
                    let request = Request::from_parts(parts, Either::Left(body));
                    Ok(state.forward(request, &enforcement, &admitted).await)
                }))
            }
            None => {
                let (enforcement, state) =
                    (Guard::into_inner(enforcement), Arc::clone(&self.state));
                future::Either::Right(Box::pin(async move {
                    let admitted = match enforcement.admit(&parts).await {
                        Ok(admitted) => admitted,
                        Err(refusal) => return Ok(refusal.map(Either::Right)),
                    };
                    let request = Request::from_parts(parts, Either::Left(body));
                    Ok(state.forward(request, &enforcement, &admitted).await)
                }))
            }
        }
    }
}

/// An answer that is ready now.
fn answered(response: Response<ClientBody>) -> Answering {
    future::Either::Left(std::future::ready(Ok(response)))
}

impl Inner {
    /// The body limit for `request`: the smaller of the configured one and the
    /// length it declares; `None` when it declares more than allowed.
    fn body_limit(&self, request: &Request<Incoming>) -> Option<usize> {
        let content_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        match content_length {
            Some(len) if len > self.max_body => None,
            Some(len) => Some(self.max_body.min(len)),
            None => Some(self.max_body),
        }
    }
}

impl ConnectionState {
    /// Forwards an admitted request on this connection's upstream
    /// connections and adds its RateLimit headers to the answer.
    ///
    /// `admitted` is borrowed from the request's future, which holds it
    /// already, so that this future does not hold a second copy.
    async fn forward(
        &self,
        request: Request<UpstreamBody>,
        enforcement: &Enforcement,
        admitted: &Admitted,
    ) -> Response<ClientBody> {
        let target = admitted.endpoint.map(|e| (e, admitted.key.id));
        let mut response = self.inner.proxy.forward(request, target, &self.idle).await;
        enforcement.annotate_headers(response.headers_mut(), admitted);
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

#[cfg(test)]
mod tests {
    use tollgate_core::{Charge, Store as _};

    use super::*;
    use crate::store::LimitStore;

    /// The size of the future `f` returns, without calling it.
    fn future_size<'a, A: 'a, B: 'a, R, F>(_: impl FnOnce(&'a A, &'a B, R) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request's future is copied whole into its allocation, so what
    /// only rare paths need is boxed where they are taken. Prints the sizes
    /// (`-- --nocapture`); the bounds fail when a rare path's state or a
    /// second copy of the admission comes back into them.
    #[test]
    fn request_futures_stay_small() {
        let decide = future_size(|s: &LimitStore, c: &Vec<Charge<u64>>, (): ()| s.decide(c));
        let admit = future_size(|e: &Enforcement, p: &http::request::Parts, (): ()| e.admit(p));
        let proxy =
            future_size(|p: &Proxy, idle: &Arc<Idle>, request| p.forward(request, None, idle));
        let forward = future_size(
            |s: &ConnectionState, with: &(Enforcement, Admitted), request| {
                s.forward(request, &with.0, &with.1)
            },
        );
        eprintln!(
            "decide {decide} B, admit {admit} B, proxy forward {proxy} B, forward {forward} B"
        );
        assert!(
            decide <= 256,
            "a decision's future holds Redis's: {decide} B"
        );
        assert!(
            admit <= 768,
            "the enforcement's future holds Redis's: {admit} B"
        );
        assert!(
            forward < proxy + size_of::<Admitted>() + 128,
            "the forward holds a copy of the admission: {forward} B"
        );
    }
}
