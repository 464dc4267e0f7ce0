//! Connections to upstreams: HTTP/1.1 with keep-alive, each one kept by the
//! client connection that opened it (or by the proxy, for requests that come
//! through a router), so a request, its upstream connection and the task that
//! drives that connection stay together on one thread.
//!
//! What hyper-util's pooled client did is kept: the `Host` header, origin-form
//! request targets, and a request that could not be sent on a kept-alive
//! connection the upstream had meanwhile closed goes out again on a fresh one.

mod direct;

use std::sync::{Arc, Mutex};

use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::Either;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy::UpstreamBody;
use direct::DirectConnection;

pub use direct::{DirectBody, DirectError};

/// An upstream's answer body: read by hyper's client, or, for a request
/// without a body, straight from the connection by whoever reads the body.
pub type AnswerBody = Either<Incoming, DirectBody>;

/// Whether `headers` name a transfer coding other than a lone `chunked`
/// (`gzip, chunked`, say). A body is passed on with its chunked framing
/// undone and `Transfer-Encoding` removed (it is hop-by-hop), so any other
/// coding would reach the other side still applied but no longer named.
///
/// Every request is checked, and most carry a few fields and no
/// `Transfer-Encoding`: the names are compared one by one, which costs less
/// than hashing one to look it up.
pub(crate) fn foreign_transfer_coding(headers: &http::HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name == http::header::TRANSFER_ENCODING)
        && !lone_chunked(headers)
}

/// Whether the `Transfer-Encoding` fields of `headers` say `chunked` and
/// nothing else.
pub(crate) fn lone_chunked(headers: &http::HeaderMap) -> bool {
    let mut codings = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    codings
        .next()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// Where an upstream's connections go, worked out once per configuration.
#[derive(Debug)]
pub struct Target {
    /// Identifies the upstream's connections among the kept ones.
    authority: Authority,
    /// `host:port`, for connecting.
    address: String,
    /// The `Host` header: the host, and the port unless it is 80.
    host: HeaderValue,
    /// The path prefix, without a trailing `/` (empty for none).
    prefix: String,
}

impl Target {
    /// The target for an upstream `url` (`http://host[:port][/prefix]`);
    /// `None` when it has no authority or a host that cannot be a header.
    pub fn new(url: &Uri) -> Option<Self> {
        let authority = url.authority()?.clone();
        let host = authority.host();
        let address = format!("{host}:{}", authority.port_u16().unwrap_or(80));
        let host = match authority.port_u16() {
            Some(port) if port != 80 => HeaderValue::try_from(format!("{host}:{port}")).ok()?,
            _ => HeaderValue::try_from(host).ok()?,
        };
        Some(Self {
            authority,
            address,
            host,
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The origin-form target to send upstream: the prefix, then the request's
    /// path and query (`/` when there is none).
    pub fn origin_form(&self, original: &Uri) -> Option<Uri> {
        let path_and_query = match (self.prefix.as_str(), original.path_and_query()) {
            // No prefix: the request's own path and query, as parsed already.
            ("", Some(path_and_query)) => path_and_query.clone(),
            ("", None) => PathAndQuery::from_static("/"),
            (prefix, path_and_query) => {
                let path_and_query = path_and_query.map_or("/", |p| p.as_str());
                PathAndQuery::try_from(format!("{prefix}{path_and_query}")).ok()?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).ok()
    }
}

/// An upstream connection between requests.
struct Kept {
    authority: Authority,
    sender: http1::SendRequest<UpstreamBody>,
}

/// Upstream connections waiting for the next request. A client connection
/// keeps its own, so under HTTP/1 it holds at most one and never waits for
/// another; the lock is there for HTTP/2 clients and is never contended under
/// HTTP/1.
#[derive(Default, Debug)]
pub struct Idle {
    kept: Mutex<Vec<Kept>>,
    /// Connections for requests without a body ([`direct`]).
    direct: Mutex<Vec<(Authority, DirectConnection)>>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// More idle connections than this (an HTTP/2 client's burst) are closed.
const MAX_IDLE: usize = 16;

/// Why a request got no answer from its upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No TCP connection.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed, or the upstream's answer was not HTTP.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The same, on a connection the request drove itself.
    #[error(transparent)]
    Direct(#[from] DirectError),
}

impl Idle {
    /// A kept connection to `authority` that is ready for a request.
    fn take(&self, authority: &Authority) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|k| !k.sender.is_closed());
        let i = kept
            .iter()
            .rposition(|k| k.authority == *authority && k.sender.is_ready())?;
        Some(kept.swap_remove(i).sender)
    }

    /// Keeps `sender` for the next request (unless there are enough).
    fn put(&self, authority: &Authority, sender: http1::SendRequest<UpstreamBody>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_IDLE {
            kept.push(Kept {
                authority: authority.clone(),
                sender,
            });
        }
    }

    /// A kept direct connection to `authority` that can take a request;
    /// those found closed or spoken on while idle are dropped.
    fn take_direct(&self, authority: &Authority) -> Option<DirectConnection> {
        let mut kept = self.direct.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let i = kept.iter().rposition(|(a, _)| a == authority)?;
            let (_, connection) = kept.swap_remove(i);
            if connection.is_clean() {
                return Some(connection);
            }
        }
    }

    /// Keeps a direct connection whose answer has been read whole; those
    /// kept that the upstream has closed meanwhile are let go.
    fn put_direct(&self, authority: Authority, connection: DirectConnection) {
        let mut kept = self.direct.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(_, kept)| kept.is_clean());
        if kept.len() < MAX_IDLE {
            kept.push((authority, connection));
        }
    }

    /// Sends `request` to `target`, on a kept connection when there is one,
    /// else on a new one; the connection is kept again once the answer has
    /// been read. A `GET`, `HEAD`, `OPTIONS` or `DELETE` without a body is
    /// written and its answer read by this request's task; any other request
    /// goes through hyper's client.
    pub async fn send(
        self: &Arc<Self>,
        target: &Target,
        request: Request<UpstreamBody>,
    ) -> Result<Response<AnswerBody>, SendError> {
        let (mut parts, body) = request.into_parts();
        parts
            .headers
            .insert(http::header::HOST, target.host.clone());
        if direct::takes(&parts, body.is_end_stream()) {
            let response = self.send_direct(target, &parts).await?;
            return Ok(response.map(Either::Right));
        }
        let request = Request::from_parts(parts, body);
        Ok(self.send_hyper(target, request).await?.map(Either::Left))
    }

    /// Sends a request without a body on a direct connection. When a kept one
    /// fails before any byte of an answer (the upstream closed it while it
    /// was idle), the request goes once more, on a new connection: it is
    /// idempotent ([`direct::takes`]), and RFC 9110 §9.2.2 allows that.
    async fn send_direct(
        self: &Arc<Self>,
        target: &Target,
        parts: &http::request::Parts,
    ) -> Result<Response<DirectBody>, SendError> {
        let mut head = Vec::with_capacity(256 + 64 * parts.headers.len());
        let request_target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        direct::write_head(&mut head, parts, request_target);
        if let Some(connection) = self.take_direct(&target.authority) {
            match connection
                .send(&head, &parts.method, self, &target.authority)
                .await
            {
                Err(DirectError::ClosedBeforeAnswer | DirectError::Io(_)) => {}
                answer => return Ok(answer?),
            }
        }
        // Boxed: connecting takes more future state than sending.
        let connection = Box::pin(connect_direct(target)).await?;
        Ok(connection
            .send(&head, &parts.method, self, &target.authority)
            .await?)
    }

    /// Sends `request` through hyper's client.
    async fn send_hyper(
        &self,
        target: &Target,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        if request.version() != Version::HTTP_10 {
            *request.version_mut() = Version::HTTP_11;
        }
        while let Some(mut sender) = self.take(&target.authority) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.put(&target.authority, sender);
                    return Ok(response);
                }
                Err(mut failed) => match failed.take_message() {
                    // Not sent: the upstream had closed this connection.
                    // Another one gets it.
                    Some(unsent) => request = unsent,
                    None => return Err(failed.into_error().into()),
                },
            }
        }
        // Boxed: connecting takes far more future state than sending on a
        // kept connection, and every request's future would carry it.
        Box::pin(self.send_on_new(target, request)).await
    }

    /// Sends `request` on a new connection to `target`, kept afterwards.
    async fn send_on_new(
        &self,
        target: &Target,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sender = connect(target).await?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        self.put(&target.authority, sender);
        Ok(response)
    }
}

/// A new direct connection to `target`.
async fn connect_direct(target: &Target) -> Result<DirectConnection, SendError> {
    Ok(DirectConnection::new(open(target).await?))
}

/// A new TCP connection to `target`, without Nagle's delay: a head goes out
/// as soon as it is written.
async fn open(target: &Target) -> Result<TcpStream, SendError> {
    let stream = TcpStream::connect(target.address.as_str())
        .await
        .map_err(|source| SendError::Connect {
            address: target.address.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A new connection to `target`, driven by a task on this thread's runtime
/// until the upstream or the last sender closes it.
async fn connect(target: &Target) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
    let stream = open(target).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::new(&url.parse().unwrap()).unwrap()
    }

    #[test]
    fn the_upstream_prefix_comes_before_the_request_path_and_query() {
        let original: Uri = "/dev/v1/x?page=2".parse().unwrap();
        let prefixed = target("http://127.0.0.1:9000/api/");
        assert_eq!(
            prefixed.origin_form(&original).unwrap(),
            "/api/dev/v1/x?page=2"
        );
        let bare = target("http://127.0.0.1:9000");
        assert_eq!(bare.origin_form(&original).unwrap(), "/dev/v1/x?page=2");
        let slash = target("http://127.0.0.1:9000/");
        assert_eq!(slash.origin_form(&"/".parse().unwrap()).unwrap(), "/");
        let absolute: Uri = "http://client.example/a?b".parse().unwrap();
        assert_eq!(slash.origin_form(&absolute).unwrap(), "/a?b");
    }

    #[test]
    fn the_host_header_names_the_port_unless_it_is_80() {
        assert_eq!(target("http://127.0.0.1:9000/api").host, "127.0.0.1:9000");
        assert_eq!(target("http://api.example").host, "api.example");
        assert_eq!(target("http://api.example:80/").host, "api.example");
        assert_eq!(target("http://api.example").address, "api.example:80");
        assert_eq!(target("http://[::1]:8080").address, "[::1]:8080");
    }
}
