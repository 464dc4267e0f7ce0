//! Forwarding admitted requests to their upstream.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName};
use http::{Request, StatusCode};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;

use crate::config::{Route, Upstream};
use crate::layer::Admitted;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::upstream::{AnswerBody, Idle, Target};

/// Where each route forwards to; swapped on reload.
pub struct ForwardTable {
    /// Indexed by endpoint id (route index).
    pub routes: Vec<Route>,
    /// The upstreams routes point into.
    pub upstreams: Vec<Upstream>,
    /// Where each upstream's connections go, in the same order.
    targets: Vec<Option<Target>>,
}

impl ForwardTable {
    /// The table for `routes` into `upstreams`.
    pub fn new(routes: Vec<Route>, upstreams: Vec<Upstream>) -> Self {
        let targets = upstreams.iter().map(|u| Target::new(&u.url)).collect();
        Self {
            routes,
            upstreams,
            targets,
        }
    }
}

/// A request body on its way upstream: straight from the client connection
/// (capped at the body limit), or from an axum router.
pub type UpstreamBody = Either<Limited<Incoming>, Body>;

/// A response on its way back: the upstream's body as it came, or one the
/// gateway made.
pub type ClientBody = Either<AnswerBody, Body>;

/// The proxy's shared state.
pub struct Proxy {
    /// Upstream connections for requests that come through a router, which
    /// has no client connection of its own to keep them.
    idle: Arc<Idle>,
    table: Arc<ArcSwap<ForwardTable>>,
    metrics: Arc<Metrics>,
    /// The header that carried the API key: never forwarded.
    key_header: HeaderName,
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
/// `Upgrade` is among them: the gateway does not pass protocol switches on.
/// `Proxy-Connection` is the obsolete field some clients still send.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The header that tells the upstream which key (by id) sent the request.
pub static KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-tollgate-key-id");

impl Proxy {
    /// A proxy over `table`.
    pub fn new(
        table: Arc<ArcSwap<ForwardTable>>,
        metrics: Arc<Metrics>,
        key_header: HeaderName,
    ) -> Self {
        Self {
            idle: Arc::default(),
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
        .forward(request.map(Either::Right), target, &proxy.idle)
        .await
        .map(|body| match body {
            Either::Left(upstream) => Body::new(upstream),
            Either::Right(body) => body,
        })
}

impl Proxy {
    /// Forwards `request`, admitted for `target` (endpoint, key id), to its
    /// upstream, on one of the connections `idle` keeps (or a new one).
    pub async fn forward(
        &self,
        mut request: Request<UpstreamBody>,
        target: Option<(u32, u32)>,
        idle: &Arc<Idle>,
    ) -> http::Response<ClientBody> {
        let table = self.table.load();
        let Some((route, key_id)) =
            target.and_then(|(e, k)| table.routes.get(e as usize).map(|r| (r, k)))
        else {
            return made(Problem::no_route(request.method(), request.uri().path()));
        };
        let upstream = &table.upstreams[route.upstream];
        let Some((connect, uri)) = table.targets[route.upstream]
            .as_ref()
            .and_then(|t| Some((t, t.origin_form(request.uri())?)))
        else {
            return made(Problem::upstream(
                StatusCode::BAD_GATEWAY,
                "cannot build the upstream URL",
            ));
        };
        *request.uri_mut() = uri;
        let from_http2 = request.version() == http::Version::HTTP_2;
        let headers = request.headers_mut();
        if from_http2 {
            join_cookies(headers);
        }
        // The front refuses such a request before it is charged; one that
        // came through a router is refused here.
        if !strip_hop_by_hop(headers) {
            return made(transfer_coding_not_supported());
        }
        headers.remove(&self.key_header);
        // `Host` is replaced by the upstream's where the request is sent.
        headers.insert(KEY_ID_HEADER.clone(), key_id.into());
        let started = Instant::now();
        let answer = tokio::time::timeout(upstream.timeout, idle.send(connect, request)).await;
        self.metrics
            .upstream_seconds
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                if !strip_hop_by_hop(&mut parts.headers) {
                    tracing::warn!(upstream = %upstream.name, "upstream answered with a transfer coding other than chunked");
                    return made(Problem::upstream(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "upstream `{}` answered with a transfer coding other than a lone chunked, which the gateway cannot pass on",
                            upstream.name
                        ),
                    ));
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

/// Removes the hop-by-hop headers. Most messages carry none, and a removal
/// hashes the name even when it finds nothing, so the names present are
/// checked first.
///
/// The fields `Connection` names are hop-by-hop too (RFC 9110 §7.6.1), and
/// go with it.
///
/// Removing `Transfer-Encoding` is what would lose the name of a coding other
/// than `chunked`, whose framing alone is undone on the way: such a message is
/// refused here instead, `false`, with nothing removed.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) -> bool {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return true;
    }
    if headers.contains_key(header::TRANSFER_ENCODING) && !crate::upstream::lone_chunked(headers) {
        return false;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    true
}

/// `501` for a request whose body has a transfer coding the gateway cannot
/// pass on (see [`foreign_transfer_coding`](crate::upstream::foreign_transfer_coding)).
pub(crate) fn transfer_coding_not_supported() -> Problem {
    Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "transfer-coding-not-supported",
        "Transfer coding not supported",
        "Transfer-Encoding names a coding other than chunked: send the body with Content-Length or `Transfer-Encoding: chunked` alone, and name a compression in Content-Encoding",
    )
}

/// Joins the `cookie` fields of a request into one, with `; ` between them.
/// HTTP/2 clients may send a cookie per field, and an HTTP/1.1 upstream must
/// get them as one (RFC 9113 §8.2.3); many read only the first.
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for cookie in &headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(cookie.as_bytes());
    }
    if let Ok(joined) = http::HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, joined);
    }
}

/// A response the gateway made itself.
pub(crate) fn made(problem: Problem) -> http::Response<ClientBody> {
    problem.into_response().map(Either::Right)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn append_all(headers: &mut HeaderMap, fields: &[(&'static str, &'static str)]) {
        for &(name, value) in fields {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
    }

    fn names(headers: &HeaderMap) -> Vec<String> {
        let mut names: Vec<String> = headers.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn an_http2_clients_cookie_fields_are_joined_into_one() {
        let mut headers = HeaderMap::new();
        for cookie in ["a=1", "b=2", "c=3"] {
            headers.append(header::COOKIE, HeaderValue::from_static(cookie));
        }
        join_cookies(&mut headers);
        let cookies: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"]);

        let mut one = HeaderMap::new();
        one.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        join_cookies(&mut one);
        assert_eq!(one.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(one[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn hop_by_hop_headers_are_removed_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        append_all(
            &mut headers,
            &[
                ("connection", "keep-alive"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("trailer", "expires"),
                ("proxy-authorization", "Basic x"),
                ("proxy-authenticate", "Basic"),
                ("content-type", "text/plain"),
                ("x-request-id", "7"),
            ],
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["content-type", "x-request-id"]);

        // The fields `Connection` names go with it; the others stay.
        append_all(
            &mut headers,
            &[
                ("connection", "X-Internal, upgrade"),
                ("connection", " x-trace "),
                ("x-internal", "1"),
                ("x-trace", "2"),
                ("upgrade", "websocket"),
                ("proxy-connection", "keep-alive"),
            ],
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["content-type", "x-request-id"]);

        // Only one of them: still found and removed.
        headers.insert(
            HeaderName::from_static("keep-alive"),
            HeaderValue::from_static("timeout=5"),
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["content-type", "x-request-id"]);
    }
}
