//! Requests without a body, sent and answered on upstream connections the
//! request's own task reads and writes.
//!
//! Most requests through an API gateway are `GET`s. hyper's client gives each
//! upstream connection a task of its own: a request travels to it through a
//! channel, the answer's head comes back through another, and the body through
//! a third, each hop a wake-up of one task or the other. Here the request's
//! head is written to the socket by the request's task, the answer's head is
//! parsed there (with `httparse`, hyper's own parser), and the body is read
//! from the socket by whoever reads the body: hyper's server, writing it to the
//! client. One task, no channels, as nginx does it.
//!
//! It takes only what is plain: `GET`, `HEAD`, `OPTIONS` and `DELETE` without a
//! body, from HTTP/1.1 or HTTP/2 clients. Every other request (a body to
//! stream, `CONNECT`, an HTTP/1.0 client) goes through hyper's client. Those
//! four methods are idempotent (RFC 9110 §9.2.2), so a request that finds its
//! kept connection closed by the upstream may be sent again on a new one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version, request};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Idle;

/// The most an answer's head may take; a longer one is an upstream error.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most header fields an answer may carry (hyper's client allows 100).
const MAX_HEADERS: usize = 100;

/// The most a chunk-size line or the trailer section may take.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Header fields the gateway adds to every answer it passes on
/// (`RateLimit-Policy` and `RateLimit`): the answer's map is made with room
/// for them, so that adding them does not grow it (a second allocation and
/// the map's index rebuilt).
const ADDED_FIELDS: usize = 2;

/// How much room a read gets in the buffer.
const READ_RESERVE: usize = 8 * 1024;

/// Whether a request goes the direct way (see the module's documentation).
pub(crate) fn takes(parts: &request::Parts, body_is_empty: bool) -> bool {
    body_is_empty
        && matches!(parts.version, Version::HTTP_11 | Version::HTTP_2)
        && matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
        )
}

/// An upstream connection driven by the request that uses it.
#[derive(Debug)]
pub(crate) struct DirectConnection {
    stream: TcpStream,
    /// What has been read and not yet used (none between requests).
    read: BytesMut,
}

/// Why an upstream gave no usable answer on a direct connection.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The socket failed before any byte of an answer had arrived.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before any byte of an answer.
    #[error("the upstream closed the connection without answering")]
    ClosedBeforeAnswer,
    /// The socket failed, or the upstream closed it, inside the answer's head.
    #[error("the connection failed inside the answer's head: {0}")]
    CutShort(io::Error),
    /// The answer is not well-formed HTTP/1.1.
    #[error("the upstream's answer is not valid HTTP/1.1: {0}")]
    Malformed(&'static str),
}

/// How the answer's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: a `HEAD` request, or a 204 or 304 answer.
    Empty,
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// Neither: the body ends when the upstream closes the connection.
    UntilClose,
}

/// Where a chunked body's reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes still to come.
    Data(u64),
    /// At the line end after a chunk's data.
    DataEnd,
    /// In the trailer section, after the last chunk; this many bytes of it seen.
    Trailers(usize),
}

impl DirectConnection {
    /// A connection on `stream`, just opened.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            read: BytesMut::new(),
        }
    }

    /// Reads what the socket has onto the end of the buffer, waiting for it
    /// to have something; `0` when the upstream has closed the connection.
    ///
    /// Through `AsyncRead`, not `try_read_buf`: a read that leaves room in the
    /// buffer clears the socket's readiness, so the next read waits for the
    /// reactor instead of first making a system call that finds nothing.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_RESERVE / 2 {
            self.read.reserve(READ_RESERVE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }

    /// Whether the connection can take a request: the upstream has neither
    /// closed it nor sent anything while it was idle (a `408` before closing,
    /// say, which would otherwise be read as the next request's answer).
    /// Free while nothing has arrived: the socket is not marked readable, so
    /// no system call is made.
    pub(crate) fn is_clean(&self) -> bool {
        let mut probe = [0; 1];
        matches!(self.stream.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends the request `head` (from [`write_head`]) and reads the answer's
    /// head. The body is read from the returned [`DirectBody`], which gives
    /// the connection back to `idle` once the whole body has been read and the
    /// connection can take another request.
    pub(crate) async fn send(
        mut self,
        head: &[u8],
        method: &Method,
        idle: &Arc<Idle>,
        authority: &Authority,
    ) -> Result<Response<DirectBody>, DirectError> {
        self.stream.write_all(head).await?;
        let mut answered = false;
        let (parts, framing, reusable) = loop {
            let n = std::future::poll_fn(|cx| self.poll_read(cx))
                .await
                .map_err(|err| {
                    if answered {
                        DirectError::CutShort(err)
                    } else {
                        DirectError::Io(err)
                    }
                })?;
            if n == 0 {
                return Err(if answered {
                    DirectError::CutShort(io::ErrorKind::UnexpectedEof.into())
                } else {
                    DirectError::ClosedBeforeAnswer
                });
            }
            answered = true;
            if let Some(head) = parse_head(&mut self.read, method)? {
                break head;
            }
        };
        let mut body = DirectBody {
            connection: Some(self),
            framing,
            keep: reusable.then(|| (Arc::clone(idle), authority.clone())),
        };
        if matches!(framing, Framing::Empty | Framing::Length(0)) {
            // Read whole already: hyper's server will not ask for it.
            body.finish();
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// Writes the request head for `parts`, with `target` as its request target
/// (origin form) and HTTP/1.1 as its version, into `out`.
pub(crate) fn write_head(out: &mut Vec<u8>, parts: &request::Parts, target: &str) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head, how its body is delimited, and whether the connection
/// takes another request after it.
type Head = (http::response::Parts, Framing, bool);

/// Parses an answer's head from the start of `read` and removes it from there;
/// `None` while it is incomplete. Interim (1xx) answers are skipped.
fn parse_head(read: &mut BytesMut, method: &Method) -> Result<Option<Head>, DirectError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut headers);
        let len = match answer.parse(read) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if read.len() > MAX_HEAD_BYTES => {
                return Err(DirectError::Malformed("the head is larger than 64 KiB"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(DirectError::Malformed("more than 100 header fields"));
            }
            Err(_) => return Err(DirectError::Malformed("the head does not parse")),
        };
        let code = answer.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .map_err(|_| DirectError::Malformed("the status code is out of range"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(DirectError::Malformed(
                "101 to a request that asked no upgrade",
            ));
        }
        if status.is_informational() {
            read.advance(len);
            continue;
        }
        let version = if answer.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        // Where each field's name and value lie in the head, so that the
        // values can share the head's bytes instead of being copied.
        let base = read.as_ptr() as usize;
        let mut fields = Vec::with_capacity(answer.headers.len());
        for header in answer.headers.iter() {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| DirectError::Malformed("a header field name is not valid"))?;
            let start = header.value.as_ptr() as usize - base;
            fields.push((name, start..start + header.value.len()));
        }
        let head = read.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(fields.len() + ADDED_FIELDS);
        for (name, range) in fields {
            let value = HeaderValue::from_maybe_shared(head.slice(range))
                .map_err(|_| DirectError::Malformed("a header field value is not valid"))?;
            headers.append(name, value);
        }
        let (framing, reusable) = framing(method, status, version, &mut headers)?;
        let (mut parts, ()) = Response::new(()).into_parts();
        (parts.status, parts.version, parts.headers) = (status, version, headers);
        return Ok(Some((parts, framing, reusable)));
    }
}

/// How the body of an answer with `status` and `headers` to `method` is
/// delimited, and whether the connection takes another request after it.
///
/// A transfer coding other than a lone `chunked` is refused: the gateway
/// would pass on a body whose coding the client is no longer told. With
/// `Content-Length` beside `chunked`, the length is removed (RFC 9112 §6.3:
/// the coding wins) and the connection is not used again.
fn framing(
    method: &Method,
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), DirectError> {
    let keep_alive = version == Version::HTTP_11
        && !headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"));
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, keep_alive));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        if !super::lone_chunked(headers) {
            return Err(DirectError::Malformed(
                "a transfer coding other than a lone chunked",
            ));
        }
        // With a length as well the message is suspect (a smuggling
        // attempt): read by its coding, the length dropped, never reused.
        let reusable = keep_alive && headers.remove(CONTENT_LENGTH).is_none();
        return Ok((Framing::Chunked(Chunk::Size), reusable));
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|b| *b == b',') {
            let item = item.trim_ascii();
            let n = std::str::from_utf8(item)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(DirectError::Malformed("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(DirectError::Malformed("two different Content-Lengths"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::UntilClose, false),
    })
}

/// Whether the comma-separated list `value` holds `token` (ASCII case aside).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// An answer's body, read from its direct connection as it is asked for.
#[derive(Debug)]
pub struct DirectBody {
    /// `None` once the body has been read whole.
    connection: Option<DirectConnection>,
    framing: Framing,
    /// Where the connection goes once the body has been read, when it can
    /// take another request.
    keep: Option<(Arc<Idle>, Authority)>,
}

impl DirectBody {
    /// The body has been read whole: the connection goes back to be kept,
    /// unless it cannot take another request or the upstream sent more than
    /// the answer.
    fn finish(&mut self) {
        let connection = self.connection.take();
        if let (Some(connection), Some((idle, authority))) = (connection, self.keep.take())
            && connection.read.is_empty()
        {
            idle.put_direct(authority, connection);
        }
    }

    /// Reads more into the buffer; an error when the connection closes.
    fn fill(connection: &mut DirectConnection, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if ready!(connection.poll_read(cx))? == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream closed the connection inside the body",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

/// The size on a chunk-size line (without its CRLF): one to sixteen hex
/// digits, then nothing or extensions (`;name=value`, ignored) free of
/// control characters. Stricter than `httparse::parse_chunk_size`, which
/// reads a line without digits as the last chunk and allows a bare LF in an
/// extension: either would let a body end early, and the rest of it be read
/// as the next answer.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(invalid("a chunk size is not 1 to 16 hex digits"));
    }
    let rest = &line[digits..];
    let extensions = rest.trim_ascii();
    if !(extensions.is_empty() || extensions.first() == Some(&b';'))
        || rest
            .iter()
            .any(|b| (b.is_ascii_control() && *b != b'\t') || *b == 0x7f)
    {
        return Err(invalid(
            "a chunk size is followed by something other than extensions",
        ));
    }
    let digits =
        std::str::from_utf8(&line[..digits]).map_err(|_| invalid("a chunk size is not hex"))?;
    u64::from_str_radix(digits, 16).map_err(|_| invalid("a chunk size is not hex"))
}

/// Where the line at the start of `read` ends (its CRLF); `None` while it is
/// incomplete, an error once `seen` bytes before it and what `read` holds
/// come to more than `limit` without one.
fn line_end(
    read: &[u8],
    seen: usize,
    limit: usize,
    too_long: &'static str,
) -> io::Result<Option<usize>> {
    match read.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some(end)),
        None if seen + read.len() > limit => Err(invalid(too_long)),
        None => Ok(None),
    }
}

/// Takes what `read` holds of the `left` bytes a body or chunk still has to
/// come; the bytes, and how many are left after them.
fn take_up_to(read: &mut BytesMut, left: u64) -> (Bytes, u64) {
    let take = read.len().min(usize::try_from(left).unwrap_or(usize::MAX));
    (read.split_to(take).freeze(), left - take as u64)
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing {
                Framing::Empty | Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if connection.read.is_empty() {
                        ready!(Self::fill(connection, cx))?;
                    }
                    let (data, left) = take_up_to(&mut connection.read, left);
                    this.framing = Framing::Length(left);
                    if left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::UntilClose => {
                    if connection.read.is_empty() && ready!(connection.poll_read(cx))? == 0 {
                        this.connection = None;
                        return Poll::Ready(None);
                    }
                    let data = connection.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(chunk) => {
                    if let Some(data) =
                        step_chunked(&mut connection.read, &mut this.framing, chunk)?
                    {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    if this.framing == Framing::Chunked(chunk) {
                        // No progress on what is buffered: read more.
                        ready!(Self::fill(connection, cx))?;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Every way a body ends lets go of the connection (`finish`).
        self.connection.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Takes one step of a chunked body over what is buffered: data to give on,
/// or `None` when the step needs more bytes or only moved the reader on (the
/// framing then says where it is; `Empty` once the body has ended).
fn step_chunked(
    read: &mut BytesMut,
    framing: &mut Framing,
    chunk: Chunk,
) -> io::Result<Option<Bytes>> {
    match chunk {
        Chunk::Size => {
            let Some(end) = line_end(
                read,
                0,
                MAX_CHUNK_LINE_BYTES,
                "a chunk-size line is too long",
            )?
            else {
                return Ok(None);
            };
            let size = chunk_size(&read[..end])?;
            read.advance(end + 2);
            *framing = Framing::Chunked(if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            });
            Ok(None)
        }
        Chunk::Data(left) => {
            if read.is_empty() {
                return Ok(None);
            }
            let (data, left) = take_up_to(read, left);
            *framing = Framing::Chunked(if left == 0 {
                Chunk::DataEnd
            } else {
                Chunk::Data(left)
            });
            Ok(Some(data))
        }
        Chunk::DataEnd => {
            if read.len() < 2 {
                return Ok(None);
            }
            if &read[..2] != b"\r\n" {
                return Err(invalid("a chunk's data does not end with CRLF"));
            }
            read.advance(2);
            *framing = Framing::Chunked(Chunk::Size);
            Ok(None)
        }
        Chunk::Trailers(seen) => {
            // Trailer fields are dropped, as hyper's client drops them; the
            // section ends at an empty line.
            let too_long = "the trailer section is too long";
            let Some(end) = line_end(read, seen, MAX_TRAILER_BYTES, too_long)? else {
                return Ok(None);
            };
            read.advance(end + 2);
            *framing = if end == 0 {
                Framing::Empty
            } else {
                Framing::Chunked(Chunk::Trailers(seen + end + 2))
            };
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests;
