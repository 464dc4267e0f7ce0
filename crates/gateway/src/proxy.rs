//! Forwarding admitted requests to their upstream.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName};
use http::{Request, StatusCode, Uri};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{Route, Upstream};
use crate::layer::Admitted;
use crate::metrics::Metrics;
use crate::problem::Problem;

/// Where each route forwards to; swapped on reload.
pub struct ForwardTable {
    /// Indexed by endpoint id (route index).
    pub routes: Vec<Route>,
    /// The upstreams routes point into.
    pub upstreams: Vec<Upstream>,
}

/// A request body on its way upstream: straight from the client connection
/// (capped at the body limit), or from an axum router.
pub type UpstreamBody = Either<Limited<Incoming>, Body>;

/// A response on its way back: the upstream's body as it came, or one the
/// gateway made.
pub type ClientBody = Either<Incoming, Body>;

/// The proxy's shared state.
pub struct Proxy {
    client: Client<HttpConnector, UpstreamBody>,
    table: Arc<ArcSwap<ForwardTable>>,
    metrics: Arc<Metrics>,
    /// The header that carried the API key: never forwarded.
    key_header: HeaderName,
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The header that tells the upstream which key (by id) sent the request.
pub static KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-tollgate-key-id");

impl Proxy {
    /// A proxy over `table`, with a pooled HTTP/1 client.
    pub fn new(
        table: Arc<ArcSwap<ForwardTable>>,
        metrics: Arc<Metrics>,
        key_header: HeaderName,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            client,
            table,
            metrics,
            key_header,
        }
    }
}

/// Forwards an admitted request (the fallback handler of the proxy router).
pub async fn forward(State(proxy): State<Arc<Proxy>>, request: Request<Body>) -> Response {
    let target = request
        .extensions()
        .get::<Admitted>()
        .and_then(|a| a.endpoint.map(|e| (e, a.key.id)));
    proxy
        .forward(request.map(Either::Right), target)
        .await
        .map(|body| match body {
            Either::Left(upstream) => Body::new(upstream),
            Either::Right(body) => body,
        })
}

impl Proxy {
    /// Forwards `request`, admitted for `target` (endpoint, key id), to its
    /// upstream.
    pub async fn forward(
        &self,
        mut request: Request<UpstreamBody>,
        target: Option<(u32, u32)>,
    ) -> http::Response<ClientBody> {
        let table = self.table.load();
        let Some((route, key_id)) =
            target.and_then(|(e, k)| table.routes.get(e as usize).map(|r| (r, k)))
        else {
            return made(Problem::no_route(request.method(), request.uri().path()));
        };
        let upstream = &table.upstreams[route.upstream];
        let Some(uri) = upstream_uri(&upstream.url, request.uri()) else {
            return made(Problem::upstream(
                StatusCode::BAD_GATEWAY,
                "cannot build the upstream URL",
            ));
        };
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        headers.remove(&self.key_header);
        headers.remove(header::HOST);
        headers.insert(KEY_ID_HEADER.clone(), key_id.into());
        let started = Instant::now();
        let answer = tokio::time::timeout(upstream.timeout, self.client.request(request)).await;
        self.metrics
            .upstream_seconds
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                for name in &HOP_BY_HOP {
                    parts.headers.remove(name);
                }
                http::Response::from_parts(parts, Either::Left(body))
            }
            Ok(Err(err)) => {
                tracing::warn!(upstream = %upstream.name, %err, "upstream request failed");
                made(Problem::upstream(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream `{}` did not answer: {err}", upstream.name),
                ))
            }
            Err(_) => made(Problem::upstream(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "upstream `{}` took longer than {} ms",
                    upstream.name,
                    upstream.timeout.as_millis()
                ),
            )),
        }
    }
}

/// A response the gateway made itself.
fn made(problem: Problem) -> http::Response<ClientBody> {
    problem.into_response().map(Either::Right)
}

/// The upstream's scheme and authority, its path prefix, then the request's path
/// and query.
fn upstream_uri(base: &Uri, original: &Uri) -> Option<Uri> {
    let prefix = base.path().trim_end_matches('/');
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(base.scheme()?.clone());
    parts.authority = Some(base.authority()?.clone());
    parts.path_and_query = match (prefix, original.path_and_query()) {
        // No prefix: the request's own path and query, as parsed already.
        ("", Some(path_and_query)) => Some(path_and_query.clone()),
        (prefix, path_and_query) => {
            let path_and_query = path_and_query.map_or("/", |p| p.as_str());
            Some(format!("{prefix}{path_and_query}").try_into().ok()?)
        }
    };
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_prefix_comes_before_the_request_path_and_query() {
        let base: Uri = "http://127.0.0.1:9000/api/".parse().unwrap();
        let original: Uri = "/dev/v1/x?page=2".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, &original).unwrap(),
            "http://127.0.0.1:9000/api/dev/v1/x?page=2"
        );
        let base: Uri = "http://127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, &original).unwrap(),
            "http://127.0.0.1:9000/dev/v1/x?page=2"
        );
        let base: Uri = "http://127.0.0.1:9000/".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, &"/".parse().unwrap()).unwrap(),
            "http://127.0.0.1:9000/"
        );
        let absolute: Uri = "http://client.example/a?b".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, &absolute).unwrap(),
            "http://127.0.0.1:9000/a?b"
        );
    }
}
